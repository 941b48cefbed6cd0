"""Test harness: a real PostgreSQL, real migrations, the real app on a loopback port.

The database server is `TEST_DATABASE_URL` when set, else an embedded PostgreSQL in
`.popmap/test-pgdata`. Each session gets a fresh database, built by running
`popmap-gql migrate` in a subprocess, and drops it at the end. The app runs under
uvicorn in the tests' own event loop, so tests can also reach the database through
the ORM; every request goes over real HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp
from tortoise.connection import connections

from popmap_gql.app import create_app
from popmap_gql.config import Settings
from popmap_gql.db.embedded import create_database, start_embedded, with_database
from popmap_gql.db.orm import connection_credentials
from tests.fake_cognito import (
    MOBILE_CLIENT,
    OTHER_SERVICE_CLIENT,
    POOL_ID,
    REGION,
    SERVICE_CLIENT,
    WEB_CLIENT,
    FakeCognito,
)
from tests.postgres_control import StoppablePostgres, scratch_folder

ROOT = Path(__file__).resolve().parent.parent
TABLES = (
    "participation",
    "event",
    "business_category",
    "business",
    "category",
    "cognito_identity",
    "popmap_user",
)


@pytest.fixture(scope="session")
def server_url() -> str:
    """Admin URL of the PostgreSQL server the tests run against."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return url
    return start_embedded(ROOT / ".popmap" / "test-pgdata")


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """Run `popmap-gql ARGS` in a subprocess; fail the test with its output if it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "popmap_gql", *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, f"popmap-gql {args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


async def fresh_database(server: str) -> str:
    name = f"popmap_test_{os.getpid()}_{secrets.token_hex(4)}"
    await create_database(server, name)
    return with_database(server, name)


async def drop_database(server: str, url: str) -> None:
    name = connection_credentials(url)["database"]
    conn = await asyncpg.connect(**connection_credentials(server))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def database_url(server_url: str) -> AsyncIterator[str]:
    url = await fresh_database(server_url)
    run_cli("migrate", env={"DATABASE_URL": url})
    yield url
    await drop_database(server_url, url)


@asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """Run `app` under uvicorn on a free loopback port in this event loop."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # re-raise the start-up failure
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@pytest.fixture(scope="session")
async def cognito() -> AsyncIterator[FakeCognito]:
    fake = FakeCognito()
    async with serving(fake.app()) as url:
        fake.base_url = url
        yield fake


JWKS_COOLDOWN_SECONDS = 5.0
# The session's app is one client to itself (127.0.0.1, and user ids that restart at 1
# each test): its budgets are on, so every answer carries the RateLimit fields, but never
# met, since the suite sends more than any client should (the fuzz test alone hundreds of
# documents of up to 200,000 points). tests/test_budgets.py runs servers with small ones.
UNMET_BUDGET = 10**12
# Likewise its database cost limit (POPMAP_MAX_DATABASE_COST, 22,000 by default: two
# counts) is not met: tests ask for several counts at once to test counting, and the
# default is tested on servers of its own (tests/test_limits.py).
UNMET_DATABASE_COST = 10**9


@pytest.fixture(scope="session")
def settings(
    database_url: str, cognito: FakeCognito, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    return Settings(
        database_url=database_url,
        data_dir=tmp_path_factory.mktemp("data"),
        cognito_user_pool_id=POOL_ID,
        cognito_app_client_ids=(WEB_CLIENT, MOBILE_CLIENT),
        cognito_region=REGION,
        cognito_domain="popmap-auth",
        cognito_jwks_url_override=cognito.jwks_url,
        cognito_userinfo_url_override=cognito.userinfo_url,
        cognito_service_client_ids=(SERVICE_CLIENT, OTHER_SERVICE_CLIENT),
        jwks_cooldown_seconds=JWKS_COOLDOWN_SECONDS,
        userinfo_retry_seconds=1.0,
        graphiql=True,  # off by default with a pool; the GraphiQL tests opt in
        budget_anonymous_per_minute=UNMET_BUDGET,
        budget_user_per_minute=UNMET_BUDGET,
        budget_service_per_minute=UNMET_BUDGET,
        max_database_cost=UNMET_DATABASE_COST,
    )


@pytest.fixture(scope="session")
def api_app(settings: Settings) -> Starlette:
    """The app `client` talks to, for tests that watch its state (never to patch it)."""
    return create_app(settings)


@pytest.fixture(scope="session")
async def api_url(api_app: Starlette) -> AsyncIterator[str]:
    async with serving(api_app) as url:
        yield url


@pytest.fixture
async def clean_db(api_url: str) -> None:
    """Empty every table, so each test starts from nothing."""
    await connections.get("default").execute_script(
        f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"
    )


@pytest.fixture
async def client(api_url: str, clean_db: None) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=api_url, timeout=30) as http:
        yield http


class QueryCounter(logging.Handler):
    """Counts the SQL statements Tortoise sends, from its `tortoise.db_client` log."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.statements: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not message.startswith(("Created connection pool", "Closed connection pool")):
            self.statements.append(message)


@pytest.fixture
def sql_counter() -> Iterator[QueryCounter]:
    counter = QueryCounter()
    logger = logging.getLogger("tortoise.db_client")
    previous_level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(counter)
    try:
        yield counter
    finally:
        logger.removeHandler(counter)
        logger.setLevel(previous_level)


# A PostgreSQL server of a module's own, which its tests stop and start (faults, recovery).
@pytest.fixture(scope="module")
async def postgres() -> AsyncIterator[StoppablePostgres]:
    with scratch_folder() as folder:
        server = await asyncio.to_thread(StoppablePostgres, folder / "pgdata")
        await asyncio.to_thread(server.start)
        try:
            yield server
        finally:
            await asyncio.to_thread(server.stop)


@pytest.fixture(scope="module")
async def database(postgres: StoppablePostgres) -> AsyncIterator[str]:
    url = await fresh_database(postgres.url)
    await asyncio.to_thread(run_cli, "migrate", env={"DATABASE_URL": url})
    yield url
    await drop_database(postgres.url, url)
