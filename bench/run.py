"""The benchmark driver: the real API against the floor, on the same data.

    .venv/bin/python bench/run.py [--quick] [--json PATH]

Starts, side by side on the benchmark database, one worker each of: the real server
("ours"), the real server without its response cache ("uncached") and the floor
(bench/floor.py). Checks that all three give JSON-equal answers to every scenario, then
loads them in turn with wrk (ours, uncached, floor, ours, ...) for a few rounds per
scenario, counts SQL statements per request, prints a table and, as the last line,
`ratio_vs_floor Q1=.. Q2=.. auth_overhead=.. uncached_Q1=.. uncached_Q2=.. Q3=.. M1=..
mixed_Q1=..`. Q1_mixed is Q1 on ours while a writer joins and leaves M1's pair through
the API at MIXED_WRITES_PER_SECOND; it shares Q1's rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import uvicorn  # noqa: E402

from bench import dataset  # noqa: E402
from bench.scenarios import Scenario, build  # noqa: E402
from tests.processes import REDIS_SERVER  # noqa: E402
from tests.processes import redis_server as start_redis  # noqa: E402

VENV_BIN = ROOT / ".venv" / "bin"
WRK = "/usr/bin/wrk"
WRK_SCRIPT = ROOT / "bench" / "wrk.lua"
RUN_DIR = dataset.DATA_DIR / "run"  # request bodies and server logs of the last run
STARTUP_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
WRK_CONNECTIONS = 8
STATEMENT_SAMPLES = 10  # requests per scenario when counting statements (even: M1)
TOKEN_TTL_SECONDS = 86_400

OURS, UNCACHED, FLOOR = "ours", "uncached", "floor"
SERVER_ORDER = (OURS, UNCACHED, FLOOR)
MIXED = "Q1_mixed"  # Q1 on ours while a writer joins and leaves M1's pair
MIXED_WRITES_PER_SECOND = 5.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_environment() -> dict[str, str]:
    """The environment without any setting of the API, so only ours apply."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("POPMAP_", "AWS_COGNITO_", "DATABASE_URL", "LOG_LEVEL"))
    }


@dataclass
class Server:
    key: str
    port: int
    command: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=dataset.DATA_DIR,  # no stray .env file is read
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log(f"{self.key}: no exit {STOP_TIMEOUT:.0f}s after SIGINT, killing")
            process.kill()
            process.wait(timeout=STOP_TIMEOUT)


# --budgets: how ours and uncached keep per-client budgets. One client sends the whole
# load here, thousands of map pages a second, so with budgets on each is set this high:
# every request is charged and carries the RateLimit fields, none is ever refused.
BUDGET_MODES = ("memory", "redis", "off")
_UNMET_BUDGET = str(10**15)


def budget_environment(mode: str, redis_url: str | None) -> dict[str, str]:
    if mode == "off":
        return {"POPMAP_BUDGETS": "false"}
    env = {
        f"POPMAP_BUDGET_{kind}_PER_MINUTE": _UNMET_BUDGET
        for kind in ("ANONYMOUS", "USER", "SERVICE")
    }
    if mode == "redis":
        assert redis_url is not None
        env["POPMAP_BUDGET_REDIS_URL"] = redis_url
    return env


@contextlib.contextmanager
def redis_server(mode: str) -> Iterator[str | None]:
    """With --budgets redis, a redis-server of the driver's own on a free loopback port."""
    if mode != "redis":
        yield None
        return
    with start_redis(RUN_DIR) as url:
        yield url


def make_servers(database_url: str, budgets: dict[str, str] | None = None) -> dict[str, Server]:
    base = {
        **clean_environment(),
        "DATABASE_URL": database_url,
        "POPMAP_DATA_DIR": str(dataset.APP_DATA_DIR),
        "POPMAP_GRAPHIQL": "false",
        "LOG_LEVEL": "warning",
    }
    servers = {}
    ours = budgets or {}
    for key, extra in ((OURS, ours), (UNCACHED, {**ours, "POPMAP_RESPONSE_CACHE": "false"})):
        port = free_port()
        servers[key] = Server(
            key,
            port,
            [str(VENV_BIN / "popmap-gql"), "serve", "--port", str(port)],
            {**base, **extra},
            RUN_DIR / f"{key}.log",
        )
    port = free_port()
    servers[FLOOR] = Server(
        FLOOR,
        port,
        [
            str(VENV_BIN / "python"),
            "-m",
            "uvicorn",
            "--factory",
            "bench.floor:app_from_environment",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        {**base, "PYTHONPATH": str(ROOT)},
        RUN_DIR / f"{FLOOR}.log",
    )
    return servers


async def wait_ready(http: httpx.AsyncClient, server: Server) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        assert server.process is not None
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.key} exited at start-up:\n{server.log_tail()}")
        with contextlib.suppress(httpx.TransportError):
            response = await http.get(f"{server.url}/healthz", timeout=2)
            if response.status_code == 200:
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"{server.key} not ready after {STARTUP_TIMEOUT:.0f}s:\n{server.log_tail()}")


def mint_token(email: str, groups: tuple[str, ...] = ()) -> str:
    """An access token from the local identity provider the real server trusts (in
    Cognito `groups`, e.g. staff)."""
    dataset.APP_DATA_DIR.mkdir(parents=True, exist_ok=True)  # also the working directory
    result = subprocess.run(
        [
            str(VENV_BIN / "popmap-gql"),
            "dev-token",
            "--email",
            email,
            "--ttl",
            str(TOKEN_TTL_SECONDS),
            *(option for group in groups for option in ("--group", group)),
        ],
        env={**clean_environment(), "POPMAP_DATA_DIR": str(dataset.APP_DATA_DIR)},
        cwd=dataset.DATA_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"popmap-gql dev-token failed:\n{result.stdout}\n{result.stderr}")
    token: str = json.loads(result.stdout)["access_token"]
    return token


# --- correctness ------------------------------------------------------------------------


class Mismatch(Exception):
    pass


def _first_difference(a: Any, b: Any, path: str = "$") -> str | None:
    if type(a) is not type(b):
        return f"{path}: {type(a).__name__} {a!r:.80} != {type(b).__name__} {b!r:.80}"
    if isinstance(a, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{path}.{key}: present in only one answer"
            found = _first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)} items"
        for index, (x, y) in enumerate(zip(a, b, strict=True)):
            found = _first_difference(x, y, f"{path}[{index}]")
            if found:
                return found
        return None
    return None if a == b else f"{path}: {a!r:.80} != {b!r:.80}"


async def graphql(
    http: httpx.AsyncClient, url: str, content: bytes, token: str | None = None
) -> tuple[dict[str, Any], httpx.Response]:
    """POST a body to `url`'s /graphql: the answer and the response, or Mismatch when it
    is not a 200 without errors."""
    headers = {"content-type": "application/json", "accept": "application/json"}
    if token:
        headers["authorization"] = f"Bearer {token}"
    response = await http.post(f"{url}/graphql", content=content, headers=headers, timeout=30)
    answer: dict[str, Any] = response.json()
    if response.status_code != 200 or "errors" in answer:
        raise Mismatch(f"{url}: HTTP {response.status_code}: {response.text[:500]}")
    return answer, response


async def post(
    http: httpx.AsyncClient, url: str, content: bytes, token: str | None
) -> dict[str, Any]:
    answer, _ = await graphql(http, url, content, token)
    return answer


def _sanity(scenario: Scenario, answer: dict[str, Any]) -> None:
    """The answer is not trivially empty, so equality means something."""
    data = answer["data"]
    if scenario.key == "Q1":
        edges = data["events"]["edges"]
        ok = len(edges) > 0 and all(edge["node"]["businesses"] for edge in edges)
    elif scenario.key.startswith("Q2"):
        ok = data["business"] is not None and len(data["business"]["events"]) >= 2
    elif scenario.key == "Q3":
        businesses = data["me"]["businesses"]
        ok = len(businesses) >= 2 and any(b["availableEvents"] for b in businesses)
    else:
        ok = True
    if not ok:
        raise Mismatch(f"{scenario.key}: answer unexpectedly empty: {json.dumps(data)[:300]}")


async def check_answers(
    http: httpx.AsyncClient, servers: dict[str, Server], scenarios: list[Scenario], token: str
) -> None:
    """Every server gives the same answers; for M1: join, join again, leave, leave again."""
    for scenario in scenarios:
        auth = token if scenario.authenticated else None
        answers: dict[str, Any] = {}
        for key in SERVER_ORDER:
            url = servers[key].url
            if scenario.key == "M1":
                join, leave = scenario.bodies
                answers[key] = [await post(http, url, b, auth) for b in (join, join, leave, leave)]
                changed = [next(iter(a["data"].values()))["changed"] for a in answers[key]]
                if changed != [True, False, True, False]:
                    raise Mismatch(f"M1 on {key}: changed was {changed}, not join/no/leave/no")
            else:
                answers[key] = await post(http, url, scenario.bodies[0], auth)
                _sanity(scenario, answers[key])
        for key in (UNCACHED, FLOOR):
            difference = _first_difference(answers[OURS], answers[key])
            if difference:
                for name in (OURS, key):
                    path = RUN_DIR / f"answer-{scenario.key}-{name}.json"
                    path.write_text(json.dumps(answers[name], indent=1, sort_keys=True))
                raise Mismatch(
                    f"{scenario.key}: {key} differs from {OURS}: {difference}"
                    f" (answers in {RUN_DIR})"
                )
        log(f"check: {scenario.key} equal on {', '.join(SERVER_ORDER)}")


async def reset_join_pair(database_url: str, picks: dataset.Picks) -> None:
    """M1's business out of M1's event again, as in the data set."""
    conn = await dataset._connect(database_url)
    try:
        await conn.execute(
            "DELETE FROM participation WHERE business_id = $1 AND event_id = $2",
            picks.join_business_id,
            picks.join_event_id,
        )
    finally:
        await conn.close()


# --- statements per request -------------------------------------------------------------


class StatementCounter(logging.Handler):
    """Counts the SQL statements Tortoise logs on `tortoise.db_client` at DEBUG."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not message.startswith(("Created connection pool", "Closed connection pool")):
            self.count += 1


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """`app` under uvicorn on a free loopback port, in this event loop."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not server.started:
        if task.done():
            task.result()  # re-raise the start-up failure
        if time.monotonic() > deadline:
            raise RuntimeError("in-process server did not start")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def _send_samples(
    http: httpx.AsyncClient, url: str, scenario: Scenario, token: str, samples: int
) -> None:
    auth = token if scenario.authenticated else None
    for index in range(samples):
        await post(http, url, scenario.bodies[index % len(scenario.bodies)], auth)


async def _warm_up(http: httpx.AsyncClient, url: str, scenario: Scenario, token: str) -> None:
    """One uncounted cycle of the scenario's bodies (M1: a join and a leave), so that the
    counts describe a server in its steady state (caches filled)."""
    await _send_samples(http, url, scenario, token, len(scenario.bodies))


async def count_ours(
    database_url: str, scenarios: list[Scenario], token: str, response_cache: bool | None
) -> dict[str, float] | None:
    """Statements per request of the real app, run in this process; None when the
    setting asked for (response_cache) does not exist."""
    from popmap_gql.app import create_app
    from popmap_gql.config import Settings

    options: dict[str, Any] = {}
    if response_cache is not None:
        if "response_cache" not in {f.name for f in dataclasses.fields(Settings)}:
            return None
        options["response_cache"] = response_cache
    settings = Settings(database_url=database_url, data_dir=dataset.APP_DATA_DIR, **options)
    counter = StatementCounter()
    db_logger = logging.getLogger("tortoise.db_client")
    previous_level = db_logger.level
    logging.getLogger("popmap_gql").setLevel(logging.ERROR)  # the local-IdP warning
    results: dict[str, float] = {}
    async with serving(create_app(settings)) as url, httpx.AsyncClient() as http:
        db_logger.setLevel(logging.DEBUG)
        db_logger.addHandler(counter)
        try:
            for scenario in scenarios:
                await _warm_up(http, url, scenario, token)
                counter.count = 0
                await _send_samples(http, url, scenario, token, STATEMENT_SAMPLES)
                results[scenario.key] = counter.count / STATEMENT_SAMPLES
        finally:
            db_logger.removeHandler(counter)
            db_logger.setLevel(previous_level)
    return results


async def count_floor(
    http: httpx.AsyncClient, floor: Server, scenarios: list[Scenario], token: str
) -> dict[str, float]:
    results: dict[str, float] = {}
    for scenario in scenarios:
        await _warm_up(http, floor.url, scenario, token)
        before = (await http.get(f"{floor.url}/stats")).json()["statements"]
        await _send_samples(http, floor.url, scenario, token, STATEMENT_SAMPLES)
        after = (await http.get(f"{floor.url}/stats")).json()["statements"]
        results[scenario.key] = (after - before) / STATEMENT_SAMPLES
    return results


# --- load -------------------------------------------------------------------------------


@dataclass
class WrkRun:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    writes_per_second: float | None = None  # Q1_mixed: the writer's achieved rate


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _latency_ms(output: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    if not match:
        raise ValueError(f"no {percentile}% latency in wrk output:\n{output}")
    return float(match.group(1)) * _UNITS_MS[match.group(2)]


def parse_wrk(output: str) -> WrkRun:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.MULTILINE)
    total = re.search(r"^\s+(\d+) requests in", output, re.MULTILINE)
    errors = re.search(r"^bench_errors (\d+)", output, re.MULTILINE)
    if not (rps and total and errors):
        raise ValueError(f"unexpected wrk output:\n{output}")
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    failed = sum(int(n) for n in socket_errors.groups()) if socket_errors else 0
    return WrkRun(
        requests_per_second=float(rps.group(1)),
        p50_ms=_latency_ms(output, "50"),
        p99_ms=_latency_ms(output, "99"),
        requests=int(total.group(1)),
        errors=int(errors.group(1)) + failed,
    )


def run_wrk(server: Server, scenario: Scenario, seconds: int, token: str) -> WrkRun:
    paths = []
    for index, content in enumerate(scenario.bodies):
        path = RUN_DIR / f"body-{scenario.key}-{index}.json"
        path.write_bytes(content)
        paths.append(str(path))
    env = {**os.environ, "WRK_BODIES": ",".join(paths)}
    if scenario.authenticated:
        env["WRK_AUTHORIZATION"] = f"Bearer {token}"
    command = [
        WRK,
        "-t1",
        f"-c{WRK_CONNECTIONS}",
        f"-d{seconds}s",
        "--timeout",
        "5s",
        "--latency",
        "-s",
        str(WRK_SCRIPT),
        f"{server.url}/graphql",
    ]
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=seconds + 30, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"wrk failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return parse_wrk(result.stdout)


@dataclass
class Figures:
    runs: list[WrkRun] = field(default_factory=list)
    statements: float | None = None

    @property
    def rps(self) -> float:
        return statistics.median(run.requests_per_second for run in self.runs)

    @property
    def p50(self) -> float:
        return statistics.median(run.p50_ms for run in self.runs)

    @property
    def p99(self) -> float:
        return statistics.median(run.p99_ms for run in self.runs)

    @property
    def errors(self) -> int:
        return sum(run.errors for run in self.runs)


Results = dict[str, dict[str, Figures]]  # scenario key -> server key -> figures


@dataclass
class Writes:
    sent: int = 0
    failed: int = 0


def write_steadily(
    url: str, m1: Scenario, token: str, stop: threading.Event, writes: Writes
) -> None:
    """Join, leave, join, ... at MIXED_WRITES_PER_SECOND (each write once the previous one
    was answered), always ending on a leave, so the pair is as the data set has it."""
    headers = {
        "content-type": "application/json",
        "accept": "application/json",
        "authorization": f"Bearer {token}",
    }
    started = time.monotonic()
    with httpx.Client(timeout=30) as http:
        index = 0
        while index % 2 == 1 or not stop.is_set():
            due = started + index / MIXED_WRITES_PER_SECOND
            time.sleep(max(0.0, due - time.monotonic()))
            writes.sent += 1
            try:
                response = http.post(
                    f"{url}/graphql", content=m1.bodies[index % 2], headers=headers
                )
            except httpx.TransportError:
                writes.failed += 1
            else:
                if response.status_code != 200 or b'"errors"' in response.content:
                    writes.failed += 1
            index += 1


def run_mixed(server: Server, q1: Scenario, m1: Scenario, seconds: int, token: str) -> WrkRun:
    """wrk on Q1 while the writer runs; the writer's failures count as errors."""
    stop, writes = threading.Event(), Writes()
    writer = threading.Thread(
        target=write_steadily, args=(server.url, m1, token, stop, writes), daemon=True
    )
    started = time.monotonic()
    writer.start()
    try:
        run = run_wrk(server, q1, seconds, token)
    finally:
        stop.set()
        writer.join(timeout=60)
    run.writes_per_second = writes.sent / (time.monotonic() - started)
    run.errors += writes.failed
    return run


def load_all(
    servers: dict[str, Server],
    scenarios: list[Scenario],
    token: str,
    rounds: int,
    seconds: int,
    results: Results,
    cancelled: threading.Event,
) -> None:
    """Runs in a worker thread; returns early once `cancelled` is set."""
    by_key = {scenario.key: scenario for scenario in scenarios}
    for group in _groups(scenarios):
        for scenario in group:
            for key in SERVER_ORDER:  # warm-up, not counted
                if cancelled.is_set():
                    return
                run_wrk(servers[key], scenario, 1, token)
        for round_number in range(1, rounds + 1):
            for scenario in group:
                for key in SERVER_ORDER:
                    if cancelled.is_set():
                        return
                    run = run_wrk(servers[key], scenario, seconds, token)
                    results[scenario.key][key].runs.append(run)
                    _log_run(scenario.key, round_number, rounds, key, run)
                if scenario.key == "Q1" and not cancelled.is_set():
                    # in Q1's rounds, so mixed_Q1 compares runs made seconds apart
                    run = run_mixed(servers[OURS], scenario, by_key["M1"], seconds, token)
                    results[MIXED][OURS].runs.append(run)
                    _log_run(MIXED, round_number, rounds, OURS, run)


def _log_run(scenario: str, round_number: int, rounds: int, server: str, run: WrkRun) -> None:
    writes = "" if run.writes_per_second is None else f"  writes/s {run.writes_per_second:.1f}"
    log(
        f"load: {scenario:<8} round {round_number}/{rounds} {server:<8}"
        f" {run.requests_per_second:8.1f} req/s  p50 {run.p50_ms:6.2f} ms"
        f"  p99 {run.p99_ms:6.2f} ms  errors {run.errors}{writes}"
    )


def _groups(scenarios: list[Scenario]) -> list[list[Scenario]]:
    """Consecutive scenarios sending the same bodies (Q2 anonymous and with a token) share
    their rounds, so that auth_overhead compares runs made seconds apart, not minutes
    apart on a machine whose speed drifts."""
    groups: list[list[Scenario]] = []
    for scenario in scenarios:
        if groups and groups[-1][0].bodies == scenario.bodies:
            groups[-1].append(scenario)
        else:
            groups.append([scenario])
    return groups


# --- report -----------------------------------------------------------------------------


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def table(scenarios: list[Scenario], results: Results) -> str:
    header = (
        f"{'scenario':<10} {'server':<9} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'errors':>7} {'vs floor':>9} {'stmts/req':>10}"
    )
    lines = [header, "-" * len(header)]
    for scenario in scenarios:
        floor_rps = results[scenario.key][FLOOR].rps
        for key in SERVER_ORDER:
            figures = results[scenario.key][key]
            statements = "n/a" if figures.statements is None else f"{figures.statements:.1f}"
            lines.append(
                f"{scenario.key:<10} {key:<9} {figures.rps:>9.1f} {figures.p50:>8.2f}"
                f" {figures.p99:>8.2f} {figures.errors:>7d}"
                f" {_ratio(figures.rps, floor_rps):>9.2f} {statements:>10}"
            )
        if scenario.key == "Q1" and results[MIXED][OURS].runs:
            # no mixed run of the floor: it caches nothing, so writes cost it nothing
            figures = results[MIXED][OURS]
            lines.append(
                f"{MIXED:<10} {OURS:<9} {figures.rps:>9.1f} {figures.p50:>8.2f}"
                f" {figures.p99:>8.2f} {figures.errors:>7d}"
                f" {_ratio(figures.rps, floor_rps):>9.2f} {'n/a':>10}"
            )
    return "\n".join(lines)


def final_line(results: Results) -> str:
    def vs_floor(scenario: str, server: str) -> float:
        return _ratio(results[scenario][server].rps, results[scenario][FLOOR].rps)

    auth = _ratio(results["Q2"][OURS].rps, results["Q2_token"][OURS].rps)
    mixed = results[MIXED][OURS]
    mixed_q1 = _ratio(mixed.rps, results["Q1"][OURS].rps) if mixed.runs else float("nan")
    return (
        f"ratio_vs_floor Q1={vs_floor('Q1', OURS):.2f} Q2={vs_floor('Q2', OURS):.2f}"
        f" auth_overhead={auth:.2f} uncached_Q1={vs_floor('Q1', UNCACHED):.2f}"
        f" uncached_Q2={vs_floor('Q2', UNCACHED):.2f} Q3={vs_floor('Q3', OURS):.2f}"
        f" M1={vs_floor('M1', OURS):.2f} mixed_Q1={mixed_q1:.2f}"
    )


def as_json(results: Results, settings: dict[str, Any]) -> dict[str, Any]:
    return {
        "settings": settings,
        "results": {
            scenario: {
                server: {
                    "requests_per_second": figures.rps,
                    "p50_ms": figures.p50,
                    "p99_ms": figures.p99,
                    "errors": figures.errors,
                    "statements_per_request": figures.statements,
                    "rounds": [dataclasses.asdict(run) for run in figures.runs],
                }
                for server, figures in by_server.items()
            }
            for scenario, by_server in results.items()
        },
        "final_line": final_line(results),
    }


# --- main -------------------------------------------------------------------------------


async def benchmark(args: argparse.Namespace) -> tuple[list[Scenario], Results]:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    ds = dataset.generate()
    assert ds.picks is not None
    picks = ds.picks
    admin_url = await asyncio.to_thread(dataset.server_admin_url)
    database_url = await dataset.prepare_database(admin_url, ds, log=log)
    await reset_join_pair(database_url, picks)  # in case an earlier run was interrupted
    log(f"dataset: {dataset.summary(ds)}")

    token = await asyncio.to_thread(mint_token, picks.owner_email)
    scenarios = build(picks)
    results: Results = {s.key: {k: Figures() for k in SERVER_ORDER} for s in scenarios}
    results[MIXED] = {OURS: Figures()}
    budgets = contextlib.ExitStack()
    redis_url = budgets.enter_context(redis_server(args.budgets))
    servers = make_servers(database_url, budget_environment(args.budgets, redis_url))
    cancelled = threading.Event()
    try:
        for server in servers.values():
            server.start()
        async with httpx.AsyncClient() as http:
            await asyncio.gather(*(wait_ready(http, s) for s in servers.values()))
            log("servers: " + ", ".join(f"{k} {s.url}" for k, s in servers.items()))
            await check_answers(http, servers, scenarios, token)
            floor_counts = await count_floor(http, servers[FLOOR], scenarios, token)
        ours_counts = await count_ours(database_url, scenarios, token, response_cache=None)
        uncached_counts = await count_ours(database_url, scenarios, token, response_cache=False)
        if uncached_counts is None:
            log("statements: Settings has no response_cache field; uncached count skipped")
        for scenario in scenarios:
            figures = results[scenario.key]
            figures[FLOOR].statements = floor_counts[scenario.key]
            figures[OURS].statements = ours_counts[scenario.key] if ours_counts else None
            if uncached_counts is not None:
                figures[UNCACHED].statements = uncached_counts[scenario.key]
        await asyncio.to_thread(
            load_all, servers, scenarios, token, args.rounds, args.seconds, results, cancelled
        )
    finally:
        cancelled.set()  # an interrupted run: the load thread starts no more wrk
        for server in servers.values():
            server.stop()
        budgets.close()
        with contextlib.suppress(Exception):
            await reset_join_pair(database_url, picks)
    return scenarios, results


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def code_revision() -> str:
    """The commit measured, "+dirty" when the work tree has changes."""
    result = subprocess.run(
        ["git", "describe", "--always", "--dirty=+dirty"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.stdout.strip() or "unknown"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 rounds of 3 s per scenario")
    parser.add_argument("--rounds", type=int, help="rounds per scenario and server (default 3)")
    parser.add_argument("--seconds", type=int, help="seconds per wrk run (default 10)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    parser.add_argument(
        "--scale",
        type=int,
        help="also run the reads uncached on the data set x1 and xN (bench/scale.py)",
    )
    parser.add_argument(
        "--only-scale", action="store_true", help="with --scale: skip the floor comparison"
    )
    parser.add_argument(
        "--budgets",
        choices=BUDGET_MODES,
        default="memory",
        help="per-client budgets of ours and uncached: in the process (default), in a"
        " redis-server the driver starts, or off",
    )
    args = parser.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 3)
    args.seconds = args.seconds or (3 if args.quick else 10)
    if not 1 <= args.rounds <= 20 or not 1 <= args.seconds <= 120:
        parser.error("--rounds must be 1-20 and --seconds 1-120")
    if not Path(WRK).exists():
        parser.error(f"{WRK} not found: apt-get install wrk")
    if args.budgets == "redis" and not Path(REDIS_SERVER).exists():
        parser.error(f"{REDIS_SERVER} not found: apt-get install redis-server")

    # SIGTERM stops the servers like Ctrl-C does (the finally clauses run).
    signal.signal(signal.SIGTERM, _interrupt)
    if args.scale is not None and args.scale < 2:
        parser.error("--scale must be at least 2")
    if args.only_scale and args.scale is None:
        parser.error("--only-scale needs --scale")
    scaled = None
    if args.scale is not None:
        from bench import scale  # imports this module

        try:
            scaled = asyncio.run(scale.measure(args.scale, args.rounds, args.seconds))
        except KeyboardInterrupt:
            log("\ninterrupted; servers stopped")
            return 130
        if args.only_scale:
            print(
                f"Popmap benchmark at scale, code {code_revision()}:"
                f" {args.rounds} rounds x {args.seconds}s, uncached, wrk -t1 -c{WRK_CONNECTIONS}"
            )
            print(scaled[0])
            print(scaled[1])
            return 0
    started = time.monotonic()
    revision = code_revision()
    try:
        scenarios, results = asyncio.run(benchmark(args))
    except Mismatch as exc:
        log(f"\nCORRECTNESS CHECK FAILED: {exc}")
        return 1
    except KeyboardInterrupt:
        log("\ninterrupted; servers stopped")
        return 130
    settings = {
        "rounds": args.rounds,
        "seconds": args.seconds,
        "connections": WRK_CONNECTIONS,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "revision": revision,
        "budgets": args.budgets,
        "elapsed_seconds": round(time.monotonic() - started, 1),
    }
    if args.json:
        args.json.write_text(json.dumps(as_json(results, settings), indent=2) + "\n")
    print(
        f"Popmap benchmark, {settings['date']}, code {revision}:"
        f" {args.rounds} rounds x {args.seconds}s,"
        f" wrk -t1 -c{WRK_CONNECTIONS}, one worker per server, budgets {args.budgets};"
        f" medians over rounds ({settings['elapsed_seconds']}s in all)"
    )
    print(table(scenarios, results))
    if scaled is not None:
        print(scaled[0])
    print(final_line(results))
    if scaled is not None:
        print(scaled[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
