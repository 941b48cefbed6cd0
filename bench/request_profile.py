"""Where a request's time goes: one scenario through the real app, in this process.

The app (`create_app`) runs under its own lifespan with the response cache off and is
called through httpx's ASGI transport (no sockets, no uvicorn), one request at a time,
against the benchmark's database (built as `bench/dataset.py` builds it). It prints the
mean time per request, then cProfile's top functions by their own time.

    BENCH_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        .venv/bin/python bench/request_profile.py Q1 --requests 100
    .venv/bin/python bench/request_profile.py Q2 --compiled-reads false   # the resolver path

Without BENCH_DATABASE_URL it uses the embedded server of bench/run.py (started here if
it is not running).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import dataset  # noqa: E402
from bench.run import mint_token  # noqa: E402
from bench.scenarios import Scenario, build  # noqa: E402
from popmap_gql.app import create_app  # noqa: E402
from popmap_gql.config import Settings  # noqa: E402


async def _measure(
    database_url: str, body: bytes, headers: dict[str, str], requests: int, compiled: bool
) -> tuple[float, str]:
    settings = Settings(
        database_url=database_url,
        response_cache=False,
        graphiql=False,
        compiled_reads=compiled,
        data_dir=dataset.APP_DATA_DIR,
    )
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1"
        ) as client,
    ):

        async def send() -> None:
            response = await client.post("/graphql", content=body, headers=headers)
            if response.status_code != 200 or b'"errors"' in response.content:
                raise SystemExit(f"unexpected answer: {response.text[:300]}")

        for _ in range(20):  # warm: documents, plans, prepared statements
            await send()
        started = time.perf_counter()
        for _ in range(requests):
            await send()
        mean = (time.perf_counter() - started) / requests
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(requests):
            await send()
        profile.disable()
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(15)
    return mean, out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=["Q1", "Q2", "Q3"])
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--compiled-reads", choices=["true", "false"], default="true")
    args = parser.parse_args()
    data = dataset.generate()
    database_url = asyncio.run(dataset.prepare_database(dataset.server_admin_url(), data, log=_log))
    scenario = _scenario(args.scenario, data.picks)
    headers = {"content-type": "application/json"}
    if scenario.authenticated:
        headers["authorization"] = f"Bearer {mint_token(data.picks.owner_email)}"
    mean, profile = asyncio.run(
        _measure(
            database_url, scenario.bodies[0], headers, args.requests, args.compiled_reads == "true"
        )
    )
    print(
        f"{args.scenario} compiled_reads={args.compiled_reads}:"
        f" {mean * 1e6:.0f} us per request ({args.requests} requests, one at a time)"
    )
    print(profile)


def _scenario(key: str, picks: dataset.Picks) -> Scenario:
    return next(scenario for scenario in build(picks) if scenario.key == key)


def _log(message: str) -> None:
    print(message, file=sys.stderr)


if __name__ == "__main__":
    main()
