"""In-process cost of a response-cache hit: one code tree against others, side by side.

The real app (`create_app` with default settings but a one-hour cache TTL, on the
benchmark database) is called directly as an ASGI application, without sockets or an HTTP
client, with the same request body over and over; every answer must be a 200, and 99 %
from the cache (a write to the database from elsewhere causes a miss). Each measurement is
the best of several rounds of microseconds per request, so that the machine's noise,
which only ever adds time, falls out.

    .venv/bin/python bench/cache_hit.py                       # this tree only
    .venv/bin/python bench/cache_hit.py --against /tmp/old    # this tree and another, alternated
    .venv/bin/python bench/cache_hit.py --budgets both        # budgets off and on, alternated

With `--against`, each tree runs in its own process (PYTHONPATH set to the tree, so its
`popmap_gql` is imported), the trees taking turns `--turns` times; the summary gives
each tree's median over its turns. The database is the one `bench/dataset.py` prepares
(on `BENCH_DATABASE_URL`, else on the embedded server it starts), or `--database-url`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _scope(path: str, body: bytes, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [*headers, (b"content-length", str(len(body)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _measure(
    body: bytes, requests: int, rounds: int, database_url: str | None, budgets: bool
) -> list[float]:
    """Microseconds per request of `rounds` rounds of `requests` identical requests."""
    # Imported here: the tree measured is the one on PYTHONPATH.
    from bench import dataset
    from popmap_gql.app import create_app
    from popmap_gql.config import Settings

    if database_url is None:
        admin_url = dataset.server_admin_url()
        ds = dataset.generate()
        database_url = await dataset.prepare_database(admin_url, ds, log=lambda _: None)
    settings = Settings(
        database_url=database_url,
        data_dir=dataset.APP_DATA_DIR,
        response_cache_ttl_seconds=3600.0,  # no entry ages: every request measured is a hit
        budgets=budgets,  # on: charged, with the header fields, but never met
        budget_anonymous_per_minute=10**15,
    )
    app: Any = create_app(settings)
    headers = [
        (b"host", b"127.0.0.1"),
        (b"content-type", b"application/json"),
        (b"accept", b"application/graphql-response+json, application/json"),
    ]
    status: list[int] = []
    sent: list[bytes] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])
            sent.extend(v for k, v in message["headers"] if k == b"x-popmap-cache")

    async def one() -> None:
        await app(_scope("/graphql", body, headers), receive, send)

    async with app.router.lifespan_context(app):
        for _ in range(50):  # fill the cache, warm every cache on the way
            await one()
        status.clear()
        sent.clear()
        results = []
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(requests):
                await one()
            results.append((time.perf_counter() - started) / requests * 1e6)
        # A write to the database from elsewhere makes a miss; a few are tolerated.
        if set(status) != {200} or sent.count(b"hit") < 0.99 * requests * rounds:
            counts = f"{collections.Counter(status)} {collections.Counter(sent)}"
            raise SystemExit(f"not all cache hits: {counts}")
    return results


def _body(scenario: str) -> bytes:
    from bench import dataset, scenarios

    picks = dataset.generate().picks
    assert picks is not None
    return next(s for s in scenarios.build(picks) if s.key == scenario).bodies[0]


def _child(args: argparse.Namespace) -> None:
    body = _body(args.scenario)
    results = asyncio.run(
        _measure(body, args.requests, args.rounds, args.database_url, args.budgets == "on")
    )
    print(json.dumps({"best": min(results), "rounds": results}))


def _run_tree(tree: Path, args: argparse.Namespace, budgets: str) -> float:
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        "--scenario",
        args.scenario,
        "--requests",
        str(args.requests),
        "--rounds",
        str(args.rounds),
        "--budgets",
        budgets,
        *(["--database-url", args.database_url] if args.database_url else []),
    ]
    output = subprocess.run(
        command, cwd=tree, env=environment, capture_output=True, text=True, check=False
    )
    if output.returncode != 0:
        raise SystemExit(f"{tree}: {output.stderr[-2000:]}")
    best = float(json.loads(output.stdout.strip().splitlines()[-1])["best"])
    print(f"{tree} (budgets {budgets}): {best:.1f} us per hit", file=sys.stderr)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--against", type=Path, action="append", default=[])
    parser.add_argument("--scenario", default="Q2", help="Q1 or Q2 (anonymous)")
    parser.add_argument("--requests", type=int, default=1000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per process")
    parser.add_argument("--turns", type=int, default=3, help="processes per tree")
    parser.add_argument(
        "--database-url",
        help="a copy of the benchmark database, to measure while something else writes to it",
    )
    parser.add_argument(
        "--budgets",
        choices=("on", "off", "both"),
        default="on",
        help="per-client budgets (set far above the load); both: each tree both ways, alternated",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    trees = [ROOT, *(tree.resolve() for tree in args.against)]
    modes = ("off", "on") if args.budgets == "both" else (args.budgets,)
    best: dict[tuple[Path, str], list[float]] = {(t, m): [] for t in trees for m in modes}
    for _ in range(args.turns):
        for tree in trees:
            for mode in modes:
                best[tree, mode].append(_run_tree(tree, args, mode))
    for (tree, mode), values in best.items():
        runs = " ".join(f"{value:.1f}" for value in values)
        print(
            f"{args.scenario} hit {statistics.median(values):7.1f} us  ({runs})  {tree}"
            f"  budgets {mode}"
        )


if __name__ == "__main__":
    main()
