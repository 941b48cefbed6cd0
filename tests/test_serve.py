"""`popmap-gql serve` as a process manager runs it: start-up checks, stop signals, workers,
and the limits on connections."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from popmap_gql.config import Settings
from tests.conftest import drop_database, fresh_database, run_cli
from tests.postgres_control import postmaster_pid, scratch_folder, wait_until_gone
from tests.processes import (
    ROOT,
    clean_env,
    free_port,
    running_server,
    serve_to_the_end,
    server_process,
)

# --- start-up -----------------------------------------------------------------------------


@pytest.fixture
async def unmigrated_database(server_url: str) -> AsyncIterator[str]:
    url = await fresh_database(server_url)
    yield url
    await drop_database(server_url, url)


def test_serve_refuses_an_unmigrated_database_and_names_the_migrate_command(
    unmigrated_database: str, tmp_path: Path
) -> None:
    env = clean_env(DATABASE_URL=unmigrated_database, POPMAP_DATA_DIR=str(tmp_path))
    try:
        result = serve_to_the_end(env)
    except subprocess.TimeoutExpired as still_running:
        raise AssertionError("serve started on a database without its tables") from still_running

    assert result.returncode != 0
    assert "popmap-gql migrate" in result.stderr
    assert "0001_initial" in result.stderr


async def test_serve_demo_migrates_and_seeds_an_empty_database_then_serves_it(
    unmigrated_database: str, tmp_path: Path
) -> None:
    env = clean_env(DATABASE_URL=unmigrated_database, POPMAP_DATA_DIR=str(tmp_path))
    log = tmp_path / "server.log"

    with running_server(env, "--demo", log=log) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            answer = await http.post(
                "/graphql", json={"query": "{ businesses(first: 1) { totalCount } }"}
            )

    assert answer.json()["data"]["businesses"]["totalCount"] > 0  # the verified ones
    assert "demo data ready: 8 categories, 30 businesses, 40 events" in log.read_text()


def test_serve_refuses_a_database_it_cannot_reach_and_says_so(tmp_path: Path) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/popmap"  # nothing listens
    env = clean_env(DATABASE_URL=nowhere, POPMAP_DATA_DIR=str(tmp_path))

    result = serve_to_the_end(env)

    assert result.returncode == 1
    assert "popmap-gql: cannot reach the database to check its schema" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("kind", ["ec-key", "not-pem"])
def test_serve_refuses_a_local_key_file_that_holds_no_rsa_key_before_uvicorn_starts(
    database_url: str, tmp_path: Path, kind: str
) -> None:
    # As dev-token does (test_auth_processes): one line naming the file and the mend.
    key_file = tmp_path / "local-idp" / "private-key.pem"
    key_file.parent.mkdir(mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_file.write_bytes(pem if kind == "ec-key" else b"-----BEGIN PRIVATE KEY-----\ncut off")
    env = clean_env(DATABASE_URL=database_url, POPMAP_DATA_DIR=str(tmp_path))

    result = serve_to_the_end(env)

    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"popmap-gql: configuration error: {key_file} does not hold an RSA key; remove it"
        " to make a new one (the tokens the old one signed stop verifying)"
    )
    assert "Traceback" not in result.stderr
    assert "Popmap GraphQL API on" not in result.stdout  # refused before uvicorn ran


def test_serve_refuses_a_media_key_file_it_did_not_make_before_uvicorn_starts(
    database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "media.key").write_bytes(b"too short")
    env = clean_env(DATABASE_URL=database_url, POPMAP_DATA_DIR=str(tmp_path))

    result = serve_to_the_end(env)

    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"popmap-gql: configuration error: {tmp_path / 'media.key'} is not a key made by"
        " popmap-gql; remove it to make a new one"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("given", ["--tls-cert", "--tls-key"])
def test_serve_https_refuses_a_certificate_without_its_key_or_a_key_without_its_certificate(
    database_url: str, tmp_path: Path, given: str
) -> None:
    env = clean_env(DATABASE_URL=database_url, POPMAP_DATA_DIR=str(tmp_path))

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "popmap_gql",
            "serve",
            "--port",
            "0",
            "--https",
            given,
            str(tmp_path / "local.pem"),
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.strip().endswith("popmap-gql: --tls-cert and --tls-key go together")
    assert "Traceback" not in result.stderr


# --- stop signals -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    """A data folder whose embedded PostgreSQL is migrated once, then started by each serve."""
    with scratch_folder() as folder:
        run_cli("migrate", env=clean_env(POPMAP_DATA_DIR=str(folder)))
        yield folder


@asynccontextmanager
async def category_locked(pgdata: Path) -> AsyncIterator[asyncpg.Connection]:
    """The category table locked by a connection of the test's own to the embedded server.

    Yields the connection; the lock goes with `release(conn)` or at the end of the block.
    """
    # postmaster.pid: pid, data folder, start time, port, socket folder, ...
    lines = (pgdata / "postmaster.pid").read_text().splitlines()
    conn = await asyncpg.connect(
        host=lines[4], port=int(lines[3]), user="postgres", database="popmap"
    )
    try:
        await conn.execute("BEGIN; LOCK TABLE category IN ACCESS EXCLUSIVE MODE")
        yield conn
    finally:
        await conn.close()


async def release(conn: asyncpg.Connection) -> None:
    await conn.execute("ROLLBACK")


async def one_request_waits_for_the_lock(conn: asyncpg.Connection) -> bool:
    await conn.execute("SELECT pg_stat_clear_snapshot()")  # not the transaction's snapshot
    waiting: int = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    return waiting == 1


async def eventually(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + 30
    while not await condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
async def test_stop_signal_drains_the_request_in_flight_and_stops_the_embedded_postgres(
    stop_signal: signal.Signals, data_dir: Path
) -> None:
    pgdata = data_dir / "pgdata"
    log = data_dir / f"serve-{stop_signal.name}.log"
    env = clean_env(POPMAP_DATA_DIR=str(data_dir), POPMAP_DB_STATEMENT_TIMEOUT_MS="60000")

    async def shutting_down() -> bool:
        return "Shutting down" in log.read_text()

    with server_process(env, log=log) as (process, base):
        postmaster = postmaster_pid(pgdata)
        try:
            async with (
                category_locked(pgdata) as locker,
                httpx.AsyncClient(base_url=base, timeout=60) as http,
            ):
                in_flight = asyncio.create_task(
                    http.post("/graphql", json={"query": "{ categories { name } }"})
                )
                await eventually(partial(one_request_waits_for_the_lock, locker), "the request")
                process.send_signal(stop_signal)
                await eventually(shutting_down, "the server to start shutting down")
                await release(locker)  # only now can the request in flight finish
                response = await in_flight
            exit_status = await asyncio.to_thread(process.wait, 60)
        finally:
            stopped = await asyncio.to_thread(wait_until_gone, postmaster)
            if not stopped:
                os.kill(postmaster, signal.SIGINT)  # leave no server behind, pass or fail

    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"categories": []}}
    assert exit_status == 0, log.read_text()
    assert stopped, "the embedded PostgreSQL is still running"


def _workers(process: subprocess.Popen[str]) -> list[psutil.Process]:
    """The uvicorn workers `serve --workers N` spawned (not multiprocessing's tracker)."""
    return [
        child
        for child in psutil.Process(process.pid).children(recursive=True)
        if "spawn_main" in (command := " ".join(child.cmdline()))
        and "resource_tracker" not in command
    ]


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_drains_first_readyz_answers_503_while_requests_are_still_served(
    workers: int, settings: Settings, tmp_path: Path
) -> None:
    assert settings.database_url is not None
    log = tmp_path / "serve.log"
    env = clean_env(
        DATABASE_URL=settings.database_url,
        POPMAP_DATA_DIR=str(tmp_path),
        # far longer than the test: the drain is ended by a second SIGTERM below
        POPMAP_SHUTDOWN_DRAIN_SECONDS="600",
    )
    query = {"query": "{ categories { name } }"}

    async def every_worker_draining() -> bool:
        return log.read_text().count("SIGTERM: draining") == workers

    with server_process(env, "--workers", str(workers), log=log) as (process, base):
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            ready_before = await http.get("/readyz")
            stopping = _workers(process) if workers > 1 else [psutil.Process(process.pid)]
            process.send_signal(signal.SIGTERM)  # to `serve`, which passes it to its workers
            await eventually(every_worker_draining, "every worker to start draining")
            # on the connection opened before the signal, and on new connections
            ready_during = await http.get("/readyz")
            answer_during = await http.post("/graphql", json=query)
            async with httpx.AsyncClient(base_url=base, timeout=30) as fresh:
                fresh_ready = await fresh.get("/readyz")
                fresh_health = await fresh.get("/healthz")
                fresh_answer = await fresh.post("/graphql", json=query)
        for stopped in stopping:  # a second SIGTERM ends each worker's drain at once
            stopped.send_signal(signal.SIGTERM)
        exit_status = await asyncio.to_thread(process.wait, 60)

    assert ready_before.status_code == 200
    assert ready_during.status_code == 503
    assert ready_during.json() == {"status": "draining"}
    assert ready_during.headers["retry-after"]
    assert fresh_ready.status_code == 503
    assert fresh_health.status_code == 200
    for answer in (answer_during, fresh_answer):
        assert answer.status_code == 200, answer.text
        assert isinstance(answer.json()["data"]["categories"], list), answer.text
    assert exit_status == 0, log.read_text()
    assert log.read_text().count("Shutting down") == workers


@pytest.mark.parametrize(
    "signals", [[signal.SIGINT], [signal.SIGTERM, signal.SIGINT]], ids=["INT", "TERM-then-INT"]
)
async def test_sigint_stops_at_once_even_while_a_sigterm_drains(
    signals: list[signal.Signals], settings: Settings, tmp_path: Path
) -> None:
    assert settings.database_url is not None
    log = tmp_path / "serve.log"
    env = clean_env(
        DATABASE_URL=settings.database_url,
        POPMAP_DATA_DIR=str(tmp_path),
        POPMAP_SHUTDOWN_DRAIN_SECONDS="600",  # far longer than the test waits
    )

    async def draining() -> bool:
        return "SIGTERM: draining" in log.read_text()

    with server_process(env, log=log) as (process, base):
        for stop_signal in signals:
            if stop_signal == signal.SIGINT and signal.SIGTERM in signals:
                await eventually(draining, "the drain to start")
            process.send_signal(stop_signal)
        exit_status = await asyncio.to_thread(process.wait, 60)
        ready_after = await asyncio.to_thread(lambda: _refused(f"{base}/readyz"))

    assert exit_status == 0, log.read_text()
    assert "stopped by SIGINT" in log.read_text()
    assert ready_after  # nothing answers there any more


def _refused(url: str) -> bool:
    try:
        httpx.get(url, timeout=5)
    except httpx.ConnectError:
        return True
    return False


# --- workers and connection limits --------------------------------------------------------

LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+: "
)


def test_every_worker_logs_in_the_configured_format(settings: Settings, tmp_path: Path) -> None:
    assert settings.database_url is not None
    log = tmp_path / "server.log"
    env = clean_env(DATABASE_URL=settings.database_url, POPMAP_DATA_DIR=str(tmp_path))
    with running_server(env, "--workers", "2", log=log):
        deadline = time.monotonic() + 60
        while log.read_text().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    lines = log.read_text().splitlines()

    # each worker announces the local identity provider from its own lifespan
    warnings = [line for line in lines if "NO COGNITO USER POOL CONFIGURED" in line]
    assert len(warnings) == 2, lines
    for line in warnings:
        assert LOG_LINE.match(line), line
        assert " WARNING popmap_gql.auth.authenticator: " in line
    startups = [line for line in lines if "Application startup complete" in line]
    assert all(LOG_LINE.match(line) for line in startups), startups
    # our access line (the server was polled on /healthz until it answered), not uvicorn's
    access = [line for line in lines if " popmap_gql.access: GET /healthz 200 " in line]
    assert access, lines
    for line in access:
        assert LOG_LINE.match(line), line
        assert re.search(r" request_id=[0-9a-f]{16} .*route=/healthz status=200 ", line), line
    assert not any("uvicorn.access" in line for line in lines)


def _raw_connection(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def test_idle_keep_alive_connection_is_closed_after_the_configured_time(
    settings: Settings, tmp_path: Path
) -> None:
    assert settings.database_url is not None
    env = clean_env(
        DATABASE_URL=settings.database_url,
        POPMAP_DATA_DIR=str(tmp_path),
        POPMAP_KEEP_ALIVE_SECONDS="1",
    )
    with running_server(env) as base, _raw_connection(base) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        while not answer.endswith(b'{"status":"ok"}'):
            answer += conn.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200")
        # uvicorn's default would keep it for 5 s; the setting says 1 s
        conn.settimeout(3.5)
        closed_by_server = conn.recv(4096) == b""

    assert closed_by_server


def test_connections_beyond_the_limit_are_answered_503(settings: Settings, tmp_path: Path) -> None:
    assert settings.database_url is not None
    env = clean_env(
        DATABASE_URL=settings.database_url,
        POPMAP_DATA_DIR=str(tmp_path),
        POPMAP_MAX_CONNECTIONS="3",
        POPMAP_WS_MAX_CONNECTIONS="1",  # uvicorn's limit is both: 4 connections
    )
    with running_server(env) as base:
        # connections that never send a request (or send it slowly) hold their place
        idle = [_raw_connection(base) for _ in range(4)]
        try:
            refused = httpx.get(f"{base}/healthz", timeout=10)
        finally:
            for conn in idle:
                conn.close()
        # once they are gone (as soon as the server has seen them close) there is room
        deadline = time.monotonic() + 10
        while (accepted := httpx.get(f"{base}/healthz", timeout=10)).status_code == 503:
            assert time.monotonic() < deadline
            time.sleep(0.1)

    assert refused.status_code == 503
    assert accepted.status_code == 200
