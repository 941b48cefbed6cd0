"""Replicas behind a balancer and a pooler, for real, on loopback.

    .venv/bin/python bench/cluster.py [--seconds 20] [--rounds 2] [--sigterm-seconds 40]
                                      [--json PATH]

Needs HAProxy and PgBouncer (Debian and Ubuntu: `apt-get install -y haproxy pgbouncer`)
and wrk (`apt-get install -y wrk`); without them it prints "skipped: ..." and exits 0.

On the benchmark's data set (bench/dataset.py: BENCH_DATABASE_URL's server, else the
embedded PostgreSQL in bench/.data/pgdata; its own database, `popmap_cluster`, migrated
with `popmap-gql migrate` straight against PostgreSQL, never through the pooler) it starts:

- PgBouncer in transaction pooling mode in front of that database;
- two replicas, `popmap-gql serve --workers 2`, connecting through PgBouncer with
  POPMAP_DB_POOLER=pgbouncer and a drain before shutdown (POPMAP_SHUTDOWN_DRAIN_SECONDS);
- HAProxy in front of the replicas, checking each one's /readyz.

The configuration files it writes (bench/.data/run/cluster/; bench/cluster_config.py)
are the examples of docs/deployment.md (`--print-configs` prints them). Then, in order:

1. pooler: the benchmark's Q3 (never cached: every request reaches PostgreSQL) with wrk
   on a third replica connected through PgBouncer *without* POPMAP_DB_POOLER, and on a
   replica with it: asyncpg's prepared statements break behind transaction pooling
   unless its statement cache is off;
2. visibility: a join through one replica, then at once a read through the other (its
   response cache warmed first), both ways, sent to the replicas' own ports; then the
   same through HAProxy, a read answered by the other replica than the write;
3. load: the benchmark's mixed load (run.py's Q1_mixed: wrk on Q1 while a writer joins
   and leaves M1's pair at 5 writes/s) through HAProxy, and for comparison on one
   replica's own port; then Q1 alone, without writes, on both paths;
4. sigterm: the same load through HAProxy while replica a gets SIGTERM, with one request
   of its own held in flight (a join waiting on a row lock taken here, released after
   the drain): /readyz turns 503, HAProxy marks it DOWN, the held request is answered,
   the replica exits 0, it is started again and HAProxy sends it requests again. No
   request of the load may fail.

The last line is `cluster ok=<bool> ...`; the exit status is 0 when ok (or skipped).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import dataclasses
import io
import json
import os
import pwd
import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402

from bench import dataset  # noqa: E402
from bench.cluster_config import (  # noqa: E402
    CHECK_FALL,
    CHECK_INTER_MS,
    CHECK_RISE,
    DRAIN_SECONDS,
    KEEP_ALIVE_SECONDS,
    PGBOUNCER_POOL_SIZE,
    POOLED_DATABASE,
    SHUTDOWN_TIMEOUT_SECONDS,
    WORKERS,
    examples,
    haproxy_cfg,
    pgbouncer_ini,
    userlist,
)
from bench.run import (  # noqa: E402
    RUN_DIR,
    VENV_BIN,
    WRK,
    WRK_CONNECTIONS,
    Figures,
    Server,
    WrkRun,
    clean_environment,
    free_port,
    graphql,
    log,
    mint_token,
    reset_join_pair,
    run_mixed,
    run_wrk,
)
from bench.scenarios import Scenario, body, build, global_id  # noqa: E402
from popmap_gql.db.orm import connection_credentials  # noqa: E402

CLUSTER_DIR = RUN_DIR / "cluster"
DATABASE = "popmap_cluster"  # its own copy of the data set: other benchmarks write theirs
POOLER_CHECK_SECONDS = 5
# steady loads, "path:mix": through HAProxy or on replica a's own port; the mixed load,
# or Q1 alone
LOADS = ("haproxy:mixed", "replica_a:mixed", "haproxy:Q1", "replica_a:Q1")
STARTUP_TIMEOUT = 60.0
SERVER_HEADER = "x-popmap-server"  # HAProxy adds it: which replica answered

VISIBILITY_QUERY = "query V($e: ID!) { event(id: $e) { businesses { id } } }"


# --- tools ------------------------------------------------------------------------------


def find_tool(name: str) -> str | None:
    """A program on PATH or in the sbin folders, where Debian installs these two."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return shutil.which(name, path=search)


def missing_tools() -> list[str]:
    missing = [name for name in ("haproxy", "pgbouncer") if find_tool(name) is None]
    if not Path(WRK).exists():
        missing.append("wrk")
    return missing


# --- processes --------------------------------------------------------------------------


def run_as_user(target: dict[str, Any]) -> str | None:
    """PgBouncer refuses to run as root: as root, run it as the owner of PostgreSQL's
    socket folder (the embedded server's user), else as nobody."""
    if os.geteuid() != 0:
        return None
    host = str(target["host"])
    if host.startswith("/"):
        return pwd.getpwuid(os.stat(host).st_uid).pw_name
    return "nobody"


def replica(name: str, database_url: str, *, pooler: bool = True) -> Server:
    port = free_port()
    env = {
        **clean_environment(),
        "DATABASE_URL": database_url,
        "POPMAP_DATA_DIR": str(dataset.APP_DATA_DIR),
        "POPMAP_GRAPHIQL": "false",
        "POPMAP_INTROSPECTION": "false",
        "POPMAP_SHUTDOWN_DRAIN_SECONDS": str(DRAIN_SECONDS),
        "POPMAP_SHUTDOWN_TIMEOUT_SECONDS": str(SHUTDOWN_TIMEOUT_SECONDS),
        "POPMAP_KEEP_ALIVE_SECONDS": str(KEEP_ALIVE_SECONDS),
        "LOG_LEVEL": "warning",
    }
    if pooler:
        env["POPMAP_DB_POOLER"] = "pgbouncer"
    return Server(
        name,
        port,
        [str(VENV_BIN / "popmap-gql"), "serve", "--port", str(port), "--workers", str(WORKERS)],
        env,
        CLUSTER_DIR / f"replica-{name}.log",
    )


async def until(
    condition: Callable[[], Awaitable[bool]], what: str, within: float = STARTUP_TIMEOUT
) -> float:
    """Poll `condition` every 50 ms; the monotonic time it first held."""
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(httpx.HTTPError, OSError):
            if await condition():
                return time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what} after {within:.0f}s")
        await asyncio.sleep(0.05)


async def status_of(http: httpx.AsyncClient, url: str) -> int:
    return (await http.get(url, timeout=2)).status_code


async def haproxy_servers(http: httpx.AsyncClient, stats_port: int) -> dict[str, dict[str, str]]:
    """HAProxy's statistics of the backend's servers and the backend itself, by name."""
    response = await http.get(f"http://127.0.0.1:{stats_port}/stats;csv", timeout=2)
    rows = csv.DictReader(io.StringIO(response.text.removeprefix("# ")))
    return {row["svname"]: row for row in rows if row["pxname"] == "popmap"}


async def server_status(http: httpx.AsyncClient, stats_port: int, name: str) -> str:
    return (await haproxy_servers(http, stats_port))[name]["status"]


def start_checked(server: Server) -> None:
    server.start()
    time.sleep(0.3)
    assert server.process is not None
    if server.process.poll() is not None:
        raise RuntimeError(f"{server.key} exited at once:\n{server.log_tail()}")


async def wait_ready(http: httpx.AsyncClient, server: Server) -> None:
    async def ready() -> bool:
        assert server.process is not None
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.key} exited at start-up:\n{server.log_tail()}")
        return await status_of(http, f"{server.url}/readyz") == 200

    await until(ready, f"{server.key} to be ready")


# --- 1. the pooler and asyncpg's statement cache ----------------------------------------


def pooler_check(servers: dict[str, Server], q3: Scenario, token: str) -> dict[str, Any]:
    """Q3 through PgBouncer on a replica without POPMAP_DB_POOLER and on one with it."""
    results: dict[str, Any] = {}
    for key in ("no_setting", "a"):
        run = run_wrk(servers[key], q3, POOLER_CHECK_SECONDS, token)
        results[key] = {"requests": run.requests, "errors": run.errors}
        log(f"pooler: Q3 on {key}: {run.errors} errors of {run.requests} requests")
    text = servers["no_setting"].log_path.read_text(errors="replace")
    causes = Counter(
        line.split("asyncpg.exceptions.", 1)[1].split(":", 1)[0]
        for line in text.splitlines()
        if line.startswith("asyncpg.exceptions.")
    )
    sample = next((line for line in text.splitlines() if "prepared statement" in line), None)
    results["no_setting"]["logged_causes"] = dict(causes)
    results["no_setting"]["sample"] = sample
    return results


# --- 2. a write through one replica, read at once through the other ---------------------


@dataclass
class Pair:
    event: str
    business: str


async def takes_part(http: httpx.AsyncClient, url: str, pair: Pair) -> tuple[bool, str]:
    """Whether the read through `url` shows the business in the event (anonymous: the
    response cache may answer), and which server answered (HAProxy's header)."""
    answer, response = await graphql(http, url, body(VISIBILITY_QUERY, "V", {"e": pair.event}))
    ids = {b["id"] for b in answer["data"]["event"]["businesses"]}
    return pair.business in ids, response.headers.get(SERVER_HEADER, "")


async def write(
    http: httpx.AsyncClient, url: str, m1: Scenario, join: bool, token: str
) -> tuple[bool, str]:
    answer, response = await graphql(http, url, m1.bodies[0 if join else 1], token)
    changed = bool(next(iter(answer["data"].values()))["changed"])
    return changed, response.headers.get(SERVER_HEADER, "")


async def visibility(
    http: httpx.AsyncClient,
    servers: dict[str, Server],
    balancer: str,
    m1: Scenario,
    pair: Pair,
    token: str,
) -> dict[str, Any]:
    checks: list[dict[str, Any]] = []
    for writer, reader in (("a", "b"), ("b", "a")):
        writer_url, reader_url = servers[writer].url, servers[reader].url
        for join in (True, False):
            await takes_part(http, reader_url, pair)  # the reader's cache holds the answer
            await takes_part(http, reader_url, pair)
            changed, _ = await write(http, writer_url, m1, join, token)
            seen, _ = await takes_part(http, reader_url, pair)
            checks.append(
                {
                    "via": "direct",
                    "write": f"{'join' if join else 'leave'} on {writer}",
                    "read": f"on {reader}",
                    "changed": changed,
                    "ok": changed and seen == join,
                }
            )
    for join in (True, False):
        for _attempt in range(10):
            changed, wrote_on = await write(http, balancer, m1, join, token)
            seen, read_on = await takes_part(http, balancer, pair)
            if read_on != wrote_on:
                break
            # the same replica answered both: undo and try again
            await write(http, balancer, m1, not join, token)
        checks.append(
            {
                "via": "haproxy",
                "write": f"{'join' if join else 'leave'} on {wrote_on}",
                "read": f"on {read_on}",
                "changed": changed,
                "ok": changed and seen == join and read_on != wrote_on,
            }
        )
    for check in checks:
        log(f"visibility: {check}")
    return {"ok": all(c["ok"] for c in checks), "checks": checks}


# --- 4. SIGTERM to one replica under load -----------------------------------------------


async def held_event_id(database_url: str, picks: dataset.Picks) -> int:
    """An approved event, other than M1's, far in the future, that M1's business is not in:
    the request held in flight joins it."""
    conn = await asyncpg.connect(**connection_credentials(database_url))
    try:
        event_id: int = await conn.fetchval(
            "SELECT id FROM event WHERE status = 'APPROVED' AND starts_at > $1 AND id <> $2"
            " AND NOT EXISTS (SELECT 1 FROM participation p"
            "   WHERE p.event_id = event.id AND p.business_id = $3)"
            " ORDER BY id LIMIT 1",
            dataset.JOIN_EVENT_AFTER,
            picks.join_event_id,
            picks.join_business_id,
        )
        return event_id
    finally:
        await conn.close()


async def forget_participation(database_url: str, business_id: int, event_id: int) -> None:
    conn = await asyncpg.connect(**connection_credentials(database_url))
    try:
        await conn.execute(
            "DELETE FROM participation WHERE business_id = $1 AND event_id = $2",
            business_id,
            event_id,
        )
    finally:
        await conn.close()


@dataclass
class Timeline:
    """Seconds after SIGTERM."""

    readyz_503: float | None = None
    haproxy_down: float | None = None
    held_answered: float | None = None
    exited: float | None = None
    restarted_up: float | None = None
    marks: dict[str, float] = field(default_factory=dict)


async def sigterm_phase(
    http: httpx.AsyncClient,
    servers: dict[str, Server],
    haproxy: Server,
    stats_port: int,
    scenarios: dict[str, Scenario],
    token: str,
    database_url: str,
    picks: dataset.Picks,
    seconds: int,
) -> dict[str, Any]:
    victim = servers["a"]
    assert victim.process is not None
    before = await haproxy_servers(http, stats_port)
    load = asyncio.create_task(
        asyncio.to_thread(run_mixed, haproxy, scenarios["Q1"], scenarios["M1"], seconds, token)
    )
    await asyncio.sleep(3)

    event_id = await held_event_id(database_url, picks)
    held_body = body(
        "mutation H($e: ID!, $b: ID!) { joinEvent(eventId: $e, businessId: $b) { changed } }",
        "H",
        {"e": global_id("Event", event_id), "b": global_id("Business", picks.join_business_id)},
    )
    locker = await asyncpg.connect(**connection_credentials(database_url))
    watcher = await asyncpg.connect(**connection_credentials(database_url))
    timeline = Timeline()
    try:
        await locker.execute("BEGIN")
        await locker.execute("SELECT 1 FROM event WHERE id = $1 FOR UPDATE", event_id)
        held = asyncio.create_task(graphql(http, victim.url, held_body, token))

        async def held_waits() -> bool:
            if held.done():
                held.result()  # raise what went wrong
                raise RuntimeError("the held request was answered before the lock was released")
            waiting: int = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()"
            )
            return waiting >= 1

        await until(held_waits, "the held request to wait on the row lock", 10)
        log("sigterm: one request held in flight on a; sending SIGTERM to a")
        signalled = time.monotonic()
        victim.process.send_signal(signal.SIGTERM)

        async def not_ready() -> bool:
            return await status_of(http, f"{victim.url}/readyz") == 503

        async def down() -> bool:
            return (await server_status(http, stats_port, "a")).startswith("DOWN")

        timeline.readyz_503 = await until(not_ready, "a's /readyz to answer 503", 10) - signalled
        timeline.haproxy_down = await until(down, "HAProxy to mark a DOWN", 30) - signalled
        log(
            f"sigterm: a's /readyz 503 after {timeline.readyz_503:.2f}s,"
            f" DOWN in HAProxy after {timeline.haproxy_down:.2f}s"
        )
        # Past the drain, the worker has stopped accepting and waits for its requests.
        await asyncio.sleep(max(0.0, signalled + DRAIN_SECONDS + 1.0 - time.monotonic()))
        timeline.marks["lock_released"] = time.monotonic() - signalled
        await locker.execute("ROLLBACK")
        held_answer, _ = await held
        timeline.held_answered = time.monotonic() - signalled
    finally:
        await locker.close()
        await watcher.close()
    exit_status = await asyncio.to_thread(victim.process.wait, 60)
    timeline.exited = time.monotonic() - signalled
    held_changed = bool(held_answer["data"]["joinEvent"]["changed"])
    log(
        f"sigterm: held request answered after {timeline.held_answered:.2f}s"
        f" (changed={held_changed}); a exited with {exit_status} after {timeline.exited:.2f}s"
    )
    await forget_participation(database_url, picks.join_business_id, event_id)

    victim.log_path = CLUSTER_DIR / "replica-a-restarted.log"
    start_checked(victim)

    async def up() -> bool:
        return (await server_status(http, stats_port, "a")).startswith("UP")

    timeline.restarted_up = await until(up, "HAProxy to mark a UP again") - signalled
    log(f"sigterm: a restarted and UP in HAProxy {timeline.restarted_up:.2f}s after SIGTERM")
    served_by: Counter[str] = Counter()
    for _ in range(20):
        _, answered_by = await takes_part(http, haproxy.url, Pair(global_id("Event", event_id), ""))
        served_by[answered_by] += 1
    run = await load
    after = await haproxy_servers(http, stats_port)

    def delta(column: str) -> int:
        return int(after["BACKEND"][column] or 0) - int(before["BACKEND"][column] or 0)

    balancer = {
        column: delta(column)
        for column in ("hrsp_2xx", "hrsp_5xx", "econ", "eresp", "wretr", "wredis")
    }
    log(f"sigterm: load {_describe(run)}; HAProxy backend {balancer}; after: {dict(served_by)}")
    ordered = (
        timeline.readyz_503 < timeline.haproxy_down < timeline.marks["lock_released"]
        and timeline.held_answered < timeline.exited
    )
    return {
        "ok": (
            run.errors == 0
            and exit_status == 0
            and held_changed
            and ordered
            and served_by["a"] > 0
            and served_by["b"] > 0
            and balancer["hrsp_5xx"] == 0
        ),
        "load": dataclasses.asdict(run),
        "timeline_seconds": {
            "readyz_503": round(timeline.readyz_503, 2),
            "haproxy_down": round(timeline.haproxy_down, 2),
            "lock_released": round(timeline.marks["lock_released"], 2),
            "held_request_answered": round(timeline.held_answered, 2),
            "exited": round(timeline.exited, 2),
            "restarted_and_up": round(timeline.restarted_up, 2),
        },
        "held_request": {"status": 200, "changed": held_changed},
        "exit_status": exit_status,
        "haproxy_backend": balancer,
        "served_by_after_restart": dict(served_by),
    }


def steady_load(
    server: Server, mix: str, scenarios: dict[str, Scenario], seconds: int, token: str
) -> WrkRun:
    if mix == "mixed":
        return run_mixed(server, scenarios["Q1"], scenarios["M1"], seconds, token)
    return run_wrk(server, scenarios["Q1"], seconds, token)


def _describe(run: WrkRun) -> str:
    writes = "" if run.writes_per_second is None else f", writes/s {run.writes_per_second:.1f}"
    return (
        f"{run.requests_per_second:.1f} req/s, p50 {run.p50_ms:.2f} ms,"
        f" p99 {run.p99_ms:.2f} ms, errors {run.errors} of {run.requests}{writes}"
    )


# --- main -------------------------------------------------------------------------------


async def cluster_run(args: argparse.Namespace) -> dict[str, Any]:
    CLUSTER_DIR.mkdir(parents=True, exist_ok=True)
    CLUSTER_DIR.chmod(0o755)  # PgBouncer may run as another user and reads its files here
    ds = dataset.generate()
    assert ds.picks is not None
    picks = ds.picks
    admin_url = await asyncio.to_thread(dataset.server_admin_url)
    database_url = await dataset.prepare_database(admin_url, ds, log=log, database=DATABASE)
    await reset_join_pair(database_url, picks)
    token = await asyncio.to_thread(mint_token, picks.owner_email)
    scenarios = {s.key: s for s in build(picks)}
    target = connection_credentials(database_url)

    bouncer_port = free_port()
    auth_file = CLUSTER_DIR / "userlist.txt"
    auth_file.write_text(userlist(target["user"], target["password"]))
    ini = CLUSTER_DIR / "pgbouncer.ini"
    ini.write_text(pgbouncer_ini(bouncer_port, target, auth_file))
    for path in (auth_file, ini):
        path.chmod(0o644)
    user = run_as_user(target)
    pgbouncer = Server(
        "pgbouncer",
        bouncer_port,
        [find_tool("pgbouncer") or "pgbouncer", *(["-u", user] if user else []), str(ini)],
        clean_environment(),
        CLUSTER_DIR / "pgbouncer.log",
    )
    pooled_url = f"postgresql://{target['user']}@127.0.0.1:{bouncer_port}/{POOLED_DATABASE}"
    servers = {
        "a": replica("a", pooled_url),
        "b": replica("b", pooled_url),
        "no_setting": replica("no_setting", pooled_url, pooler=False),
    }
    balancer_port, stats_port = free_port(), free_port()
    cfg = CLUSTER_DIR / "haproxy.cfg"
    cfg.write_text(
        haproxy_cfg(balancer_port, stats_port, {"a": servers["a"].port, "b": servers["b"].port})
    )
    haproxy = Server(
        "haproxy",
        balancer_port,
        [find_tool("haproxy") or "haproxy", "-f", str(cfg), "-db"],
        clean_environment(),
        CLUSTER_DIR / "haproxy.log",
    )
    report: dict[str, Any] = {}
    held_pair = Pair(
        global_id("Event", picks.join_event_id), global_id("Business", picks.join_business_id)
    )
    started: list[Server] = []
    try:
        start_checked(pgbouncer)
        started.append(pgbouncer)
        log(f"pgbouncer: 127.0.0.1:{bouncer_port}, transaction pooling ({ini})")
        for server in servers.values():
            start_checked(server)
            started.append(server)
        limits = httpx.Limits(max_connections=50, max_keepalive_connections=20)
        async with httpx.AsyncClient(limits=limits) as http:
            for server in servers.values():
                await wait_ready(http, server)
            log("replicas: " + ", ".join(f"{k} {s.url}" for k, s in servers.items()))
            start_checked(haproxy)
            started.append(haproxy)

            async def both_up() -> bool:
                states = await haproxy_servers(http, stats_port)
                return all(states[name]["status"].startswith("UP") for name in ("a", "b"))

            await until(both_up, "HAProxy to see both replicas UP")
            log(f"haproxy: {haproxy.url} -> a, b ({cfg}); stats on {stats_port}")

            report["pooler"] = await asyncio.to_thread(
                pooler_check, servers, scenarios["Q3"], token
            )
            servers["no_setting"].stop()  # its work is done; it would only share the CPUs

            report["visibility"] = await visibility(
                http, servers, haproxy.url, scenarios["M1"], held_pair, token
            )

            # alternated, so that all figures come from the same minutes; Q1 alone (no
            # writes) separates the balancer's cost from the writes' (each worker
            # recomputes its cached answers after every write)
            loads = {key: Figures() for key in LOADS}
            paths = {"haproxy": haproxy, "replica_a": servers["a"]}
            for round_number in range(1, args.rounds + 1):
                for key in LOADS:
                    via, mix = key.split(":")
                    run = await asyncio.to_thread(
                        steady_load, paths[via], mix, scenarios, args.seconds, token
                    )
                    loads[key].runs.append(run)
                    log(f"load: round {round_number} {mix} via {via}: {_describe(run)}")
            report["load"] = {
                key: {
                    "requests_per_second": figures.rps,
                    "p50_ms": figures.p50,
                    "p99_ms": figures.p99,
                    "errors": figures.errors,
                    "rounds": [dataclasses.asdict(run) for run in figures.runs],
                }
                for key, figures in loads.items()
            }

            report["sigterm"] = await sigterm_phase(
                http,
                servers,
                haproxy,
                stats_port,
                scenarios,
                token,
                database_url,
                picks,
                args.sigterm_seconds,
            )
    finally:
        for server in reversed(started):
            server.stop()
        with contextlib.suppress(Exception):
            await reset_join_pair(database_url, picks)
    return report


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def summary(report: dict[str, Any]) -> tuple[bool, str]:
    load = report["load"]["haproxy:mixed"]
    direct = report["load"]["replica_a:mixed"]
    reads = report["load"]["haproxy:Q1"]
    direct_reads = report["load"]["replica_a:Q1"]
    pooler = report["pooler"]
    sigterm = report["sigterm"]
    times = sigterm["timeline_seconds"]
    ok = (
        all(figures["errors"] == 0 for figures in report["load"].values())
        and report["visibility"]["ok"]
        and pooler["a"]["errors"] == 0
        and sigterm["ok"]
    )
    line = (
        f"cluster ok={ok} haproxy_rps={load['requests_per_second']:.1f}"
        f" p99={load['p99_ms']:.2f}ms errors={load['errors']}"
        f" one_replica_rps={direct['requests_per_second']:.1f}"
        f" one_replica_p99={direct['p99_ms']:.2f}ms"
        f" q1_only_haproxy_rps={reads['requests_per_second']:.1f}"
        f" q1_only_one_replica_rps={direct_reads['requests_per_second']:.1f}"
        f" visibility={'ok' if report['visibility']['ok'] else 'FAILED'}"
        f" sigterm_rps={sigterm['load']['requests_per_second']:.1f}"
        f" sigterm_errors={sigterm['load']['errors']}"
        f" readyz_503={times['readyz_503']}s haproxy_down={times['haproxy_down']}s"
        f" held_answered={times['held_request_answered']}s exited={times['exited']}s"
        f" back_up={times['restarted_and_up']}s"
        f" pooler_without_setting_errors={pooler['no_setting']['errors']}"
        f"/{pooler['no_setting']['requests']}"
        f" pooler_with_setting_errors={pooler['a']['errors']}/{pooler['a']['requests']}"
    )
    return ok, line


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=int, default=20, help="length of each steady load run (20)"
    )
    parser.add_argument(
        "--sigterm-seconds",
        type=int,
        default=40,
        help="length of the load run during which replica a is stopped and restarted (40)",
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="steady load runs per path, alternated (2)"
    )
    parser.add_argument("--json", type=Path, help="also write the report to this file")
    parser.add_argument(
        "--print-configs",
        action="store_true",
        help="print PgBouncer's and HAProxy's files with example ports, and exit",
    )
    args = parser.parse_args()
    if args.print_configs:
        for name, text in examples().items():
            print(f"# --- {name} ---\n{text}")
        return 0
    if not 3 <= args.seconds <= 600 or not 30 <= args.sigterm_seconds <= 600:
        parser.error("--seconds must be 3-600 and --sigterm-seconds 30-600")
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be 1-10")
    missing = missing_tools()
    if missing:
        print(
            f"skipped: {', '.join(missing)} not found; on Debian or Ubuntu install them with"
            f" `apt-get install -y {' '.join(missing)}`"
        )
        return 0
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    try:
        report = asyncio.run(cluster_run(args))
    except KeyboardInterrupt:
        log("\ninterrupted; processes stopped")
        return 130
    report["settings"] = {
        "seconds": args.seconds,
        "rounds": args.rounds,
        "sigterm_seconds": args.sigterm_seconds,
        "wrk_connections": WRK_CONNECTIONS,
        "replicas": 2,
        "workers_per_replica": WORKERS,
        "drain_seconds": DRAIN_SECONDS,
        "check_inter_ms": CHECK_INTER_MS,
        "check_fall": CHECK_FALL,
        "check_rise": CHECK_RISE,
        "pgbouncer_pool_size": PGBOUNCER_POOL_SIZE,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "elapsed_seconds": round(time.monotonic() - started, 1),
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    ok, line = summary(report)
    print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
