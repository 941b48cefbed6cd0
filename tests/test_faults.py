"""PostgreSQL failing under `popmap-gql serve`: 503 with Retry-After, never 500, then recovery.

The server runs as a subprocess against a PostgreSQL of this module's own, which the tests
stop and start (a real fast shutdown) or block with a lock held from their own connection.
Tokens are real ones signed by the fake Cognito on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from popmap_gql.db.client import breaks_connection, fault_kind
from popmap_gql.db.orm import connection_credentials
from tests.fake_cognito import FakeCognito
from tests.postgres_control import StoppablePostgres
from tests.processes import running_server

STATEMENT_TIMEOUT_MS = 6000
POOL_SIZE = 2
POOL_TIMEOUT_SECONDS = 0.5
# Long enough for any answer on a busy machine, far shorter than "hangs until the lock goes".
CLIENT_TIMEOUT = 30.0

CACHEABLE = "{ categories { name } }"
# viewerIsOwner depends on the viewer, so this query is never answered from the cache
UNCACHED = "{ businesses(first: 5) { edges { node { name viewerIsOwner } } } }"
ME = "{ me { id username } }"
SUBMIT = 'mutation { submitBusiness(input: { name: "Crumbs" }) { business { id name } } }'


@dataclass(frozen=True)
class Server:
    base: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text()


def _server_env(database: str, cognito: FakeCognito, data_dir: Path) -> dict[str, str]:
    return cognito.server_env(
        database,
        data_dir,
        POPMAP_DB_POOL_SIZE=str(POOL_SIZE),
        POPMAP_DB_POOL_TIMEOUT_SECONDS=str(POOL_TIMEOUT_SECONDS),
        POPMAP_DB_STATEMENT_TIMEOUT_MS=str(STATEMENT_TIMEOUT_MS),
    )


@contextmanager
def _started_server(database: str, cognito: FakeCognito, tmp: Path) -> Iterator[Server]:
    log = tmp / "server.log"
    with running_server(_server_env(database, cognito, tmp), log=log) as base:
        yield Server(base, log)


@pytest.fixture(scope="module")
def server(
    database: str, cognito: FakeCognito, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with _started_server(database, cognito, tmp_path_factory.mktemp("server")) as started:
        yield started


@pytest.fixture
async def http(server: Server) -> AsyncIterator[httpx.AsyncClient]:
    # One connection at most: every request of a test goes over the same one when the
    # server keeps it alive.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=server.base, timeout=CLIENT_TIMEOUT, limits=limits) as c:
        yield c


@asynccontextmanager
async def stopped(postgres: StoppablePostgres) -> AsyncIterator[None]:
    await asyncio.to_thread(postgres.stop)
    try:
        yield
    finally:
        await asyncio.to_thread(postgres.start)


def new_token(cognito: FakeCognito) -> str:
    """An ID token of someone this server has never seen."""
    name = f"new-{uuid.uuid4().hex[:8]}"
    return cognito.id_token(
        sub=str(uuid.uuid4()), email=f"{name}@example.com", **{"cognito:username": name}
    )


async def ask(http: httpx.AsyncClient, query: str, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await http.post("/graphql", json={"query": query}, headers=headers)


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "5"
    body: dict[str, Any] = response.json()
    assert [e["extensions"]["code"] for e in body["errors"]] == ["SERVICE_UNAVAILABLE"]
    assert "data" not in body or body["data"] is None


def client_port(response: httpx.Response) -> int:
    """The local port of the TCP connection that carried `response`."""
    stream = response.extensions["network_stream"]
    port: int = stream.get_extra_info("client_addr")[1]
    return port


# --- PostgreSQL stopped -------------------------------------------------------------------


async def test_cacheable_query_answers_503_with_retry_after_while_postgres_is_down(
    postgres: StoppablePostgres, http: httpx.AsyncClient
) -> None:
    async with stopped(postgres):
        response = await ask(http, CACHEABLE)

    assert_unavailable(response)


async def test_uncached_query_answers_503_while_postgres_is_down(
    postgres: StoppablePostgres, http: httpx.AsyncClient
) -> None:
    healthy = await ask(http, UNCACHED)
    assert healthy.status_code == 200, healthy.text
    assert "x-popmap-cache" not in healthy.headers  # really a query the cache leaves alone

    async with stopped(postgres):
        response = await ask(http, UNCACHED)

    assert_unavailable(response)


async def test_first_request_with_a_new_token_answers_503_not_401_while_postgres_is_down(
    postgres: StoppablePostgres, http: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    token = new_token(cognito)  # its user must be created: a write

    async with stopped(postgres):
        response = await ask(http, ME, token)

    assert_unavailable(response)
    assert "www-authenticate" not in response.headers


async def test_mutation_answers_503_while_postgres_is_down(
    postgres: StoppablePostgres, http: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    token = new_token(cognito)
    known = await ask(http, ME, token)  # the server now knows this person without the database
    assert known.status_code == 200, known.text

    async with stopped(postgres):
        response = await ask(http, SUBMIT, token)

    assert_unavailable(response)


async def test_connection_stays_usable_after_a_503(
    postgres: StoppablePostgres, http: httpx.AsyncClient
) -> None:
    before = await ask(http, CACHEABLE)
    async with stopped(postgres):
        failed = await ask(http, CACHEABLE)
        health = await http.get("/healthz")

    assert_unavailable(failed)
    assert health.status_code == 200
    # the 503 did not close the connection: all three went over the same one
    assert client_port(before) == client_port(failed) == client_port(health)


async def test_readyz_is_503_while_postgres_is_down_and_200_once_it_is_back(
    postgres: StoppablePostgres, http: httpx.AsyncClient
) -> None:
    async with stopped(postgres):
        down = await http.get("/readyz")
    back = await _eventually_ok(http, "/readyz")

    assert down.status_code == 503
    assert back.status_code == 200


async def test_service_recovers_without_a_restart_once_postgres_is_back(
    postgres: StoppablePostgres, http: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    token = new_token(cognito)
    async with stopped(postgres):
        assert_unavailable(await ask(http, CACHEABLE))
        assert_unavailable(await ask(http, ME, token))

    recovered = await _eventually_ok(http, "/graphql", CACHEABLE)
    me = await ask(http, ME, token)
    # more writes than the pool has connections: none was lost to the restart
    submitted = [await ask(http, SUBMIT, token) for _ in range(POOL_SIZE * 2)]

    assert recovered.json() == {"data": {"categories": []}}
    assert me.status_code == 200, me.text
    assert me.json()["data"]["me"]["username"].startswith("new-")
    assert [r.status_code for r in submitted] == [200] * (POOL_SIZE * 2)


async def _eventually_ok(
    http: httpx.AsyncClient, path: str, query: str | None = None
) -> httpx.Response:
    """The first 200 within a generous time: the pool reconnects on its own."""
    deadline = time.monotonic() + 30
    while True:
        if query is None:
            response = await http.get(path)
        else:
            response = await http.post(path, json={"query": query})
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        assert response.status_code == 503, response.text
        await asyncio.sleep(0.2)


async def test_a_failing_database_is_logged_once_per_interval_without_tracebacks(
    postgres: StoppablePostgres,
    database: str,
    cognito: FakeCognito,
    tmp_path: Path,
) -> None:
    # A server of its own, so that no earlier test's report falls in the interval.
    with _started_server(database, cognito, tmp_path) as fresh:
        async with (
            httpx.AsyncClient(base_url=fresh.base, timeout=CLIENT_TIMEOUT) as http,
            stopped(postgres),
        ):
            answers = [await ask(http, query) for query in (CACHEABLE, UNCACHED) * 5]
        log = fresh.log_text()

    assert {r.status_code for r in answers} == {503}
    reports = [line for line in log.splitlines() if "service unavailable" in line]
    assert len(reports) == 1, log
    assert "database unreachable" in reports[0]
    assert "Traceback" not in log


# --- PostgreSQL slow: a lock held elsewhere -------------------------------------------------


@asynccontextmanager
async def table_locked(database: str, table: str) -> AsyncIterator[asyncpg.Connection]:
    """`table` locked ACCESS EXCLUSIVE by a connection of the test until the block ends."""
    conn = await asyncpg.connect(**connection_credentials(database))
    try:
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        try:
            yield conn
        finally:
            await transaction.rollback()
    finally:
        await conn.close()


async def waiting_on_locks(conn: asyncpg.Connection) -> int:
    # Inside a transaction PostgreSQL keeps serving its first snapshot of the statistics.
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    count: int = await conn.fetchval(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    return count


async def test_statement_stuck_behind_a_lock_answers_503_after_the_statement_timeout(
    server: Server, http: httpx.AsyncClient, database: str
) -> None:
    async with table_locked(database, "category"):
        response = await ask(http, "{ categories { id name } }")

    assert_unavailable(response)
    log = server.log_text()
    assert "service unavailable (database statement timeout)" in log
    assert "Traceback" not in log


async def test_exhausted_pool_answers_503_and_readyz_says_not_ready(
    server: Server, http: httpx.AsyncClient, database: str
) -> None:
    async with httpx.AsyncClient(base_url=server.base, timeout=CLIENT_TIMEOUT) as others:
        async with table_locked(database, "category") as locker:
            # every pooled connection waits for the lock: queries no earlier test cached,
            # each its own (identical ones would wait for the first one's answer)
            stuck = [
                asyncio.create_task(ask(others, f"{{ c{n}: categories {{ slug }} }}"))
                for n in range(POOL_SIZE)
            ]
            deadline = time.monotonic() + 20
            while await waiting_on_locks(locker) < POOL_SIZE and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert await waiting_on_locks(locker) == POOL_SIZE

            other = await ask(http, UNCACHED)
            ready = await http.get("/readyz")
        # the lock is gone: the stuck requests finish normally
        finished = await asyncio.gather(*stuck)
    ready_again = await _eventually_ok(http, "/readyz")

    assert_unavailable(other)
    assert ready.status_code == 503
    assert [r.status_code for r in finished] == [200] * POOL_SIZE
    assert ready_again.status_code == 200
    assert "service unavailable (database no connection within the pool timeout)" in (
        server.log_text()
    )


async def test_a_statement_cut_off_by_a_shutdown_answers_503_and_the_pool_recovers(
    postgres: StoppablePostgres, server: Server, http: httpx.AsyncClient, database: str
) -> None:
    # The statement is running (waiting for a lock) when PostgreSQL shuts down: its
    # connection is terminated under it, and the server must not keep it.
    locker = await asyncpg.connect(**connection_credentials(database))
    try:
        await locker.execute("BEGIN; LOCK TABLE category IN ACCESS EXCLUSIVE MODE")
        cut = asyncio.create_task(ask(http, "{ cut: categories { slug name } }"))
        deadline = time.monotonic() + 20
        while await waiting_on_locks(locker) < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await waiting_on_locks(locker) == 1
        async with stopped(postgres):
            response = await cut
    finally:
        locker.terminate()
    recovered = await _eventually_ok(http, "/graphql", UNCACHED)
    # more reads than the pool has connections, none on a connection the shutdown cut
    after = [await ask(http, f"{{ a{n}: categories {{ id }} }}") for n in range(POOL_SIZE * 2)]

    assert_unavailable(response)
    log = server.log_text()
    assert "service unavailable (database unreachable)" in log
    assert "Traceback" not in log
    assert recovered.status_code == 200
    assert [r.status_code for r in after] == [200] * (POOL_SIZE * 2)


async def _set_max_connections(postgres: StoppablePostgres, value: int | None) -> None:
    """PostgreSQL's max_connections (None: its default), which takes a restart."""
    admin = await asyncpg.connect(**connection_credentials(postgres.url))
    try:
        if value is None:
            await admin.execute("ALTER SYSTEM RESET max_connections")
        else:
            await admin.execute(f"ALTER SYSTEM SET max_connections = {value}")
    finally:
        await admin.close()
    await asyncio.to_thread(postgres.stop)
    await asyncio.to_thread(postgres.start)


async def test_postgres_out_of_connection_slots_answers_503_server_out_of_resources(
    postgres: StoppablePostgres, server: Server, http: httpx.AsyncClient, database: str
) -> None:
    # Every slot taken by other clients: PostgreSQL refuses the server's new connection
    # with "too many clients" (53300), a fault of the server's resources, not of ours.
    held: list[asyncpg.Connection] = []
    await _set_max_connections(postgres, 8)
    try:
        with contextlib.suppress(asyncpg.TooManyConnectionsError):
            while len(held) < 20:
                held.append(await asyncpg.connect(**connection_credentials(database)))
        response = await ask(http, UNCACHED)
    finally:
        for connection in held:
            await connection.close()
        await _set_max_connections(postgres, None)
    recovered = await _eventually_ok(http, "/graphql", UNCACHED)

    assert len(held) < 20  # the slots ran out
    assert_unavailable(response)
    assert "service unavailable (database server out of resources)" in server.log_text()
    assert "Traceback" not in server.log_text()
    assert recovered.status_code == 200


async def test_readyz_is_503_when_no_connection_answers_within_its_timeout(
    database: str, cognito: FakeCognito, tmp_path: Path
) -> None:
    # One connection, waited for longer than /readyz waits (READY_TIMEOUT_SECONDS, 2 s).
    env = cognito.server_env(
        database,
        tmp_path,
        POPMAP_DB_POOL_SIZE="1",
        POPMAP_DB_POOL_TIMEOUT_SECONDS="60",
        POPMAP_DB_STATEMENT_TIMEOUT_MS="60000",
    )
    log = tmp_path / "server.log"
    with running_server(env, log=log) as base:
        async with httpx.AsyncClient(base_url=base, timeout=CLIENT_TIMEOUT) as http:
            async with table_locked(database, "category") as locker:
                stuck = asyncio.create_task(ask(http, "{ stuck: categories { slug } }"))
                deadline = time.monotonic() + 20
                while await waiting_on_locks(locker) < 1 and time.monotonic() < deadline:
                    await asyncio.sleep(0.05)
                ready = await http.get("/readyz")
            finished = await stuck
            ready_again = await _eventually_ok(http, "/readyz")

    assert ready.status_code == 503
    assert ready.json() == {"status": "unavailable"}
    assert ready.headers["retry-after"] == "5"
    assert finished.status_code == 200
    assert ready_again.status_code == 200
    text = log.read_text()
    assert "service unavailable (database no answer within the readiness timeout)" in text
    assert "Traceback" not in text


def test_a_driver_that_lost_its_protocol_state_is_a_fault_that_retires_the_connection() -> None:
    # Seen in bench/soak.py: PostgreSQL shutting down in the middle of a statement left
    # asyncpg saying "cannot switch to state 12; another operation (2) is in progress",
    # which surfaced as a masked 500 and stayed on a pooled connection.
    lost = asyncpg.InternalClientError("cannot switch to state 12")

    assert fault_kind(lost) == "connection broken"
    assert breaks_connection(lost)
    assert not breaks_connection(asyncpg.QueryCanceledError("statement timeout"))
    assert not breaks_connection(None)
