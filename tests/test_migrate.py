"""`popmap-gql migrate` under an advisory lock: replicas starting together cannot race."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from popmap_gql.db.migrate import MIGRATION_LOCK_KEY
from popmap_gql.db.orm import connection_credentials
from tests.conftest import drop_database, fresh_database
from tests.processes import ROOT, clean_env

# Every migration in the folder, in order: each must be applied exactly once.
MIGRATIONS = sorted(path.stem for path in (ROOT / "migrations").glob("0*.py"))

EXPECTED_TABLES = {
    "business",
    "business_category",
    "category",
    "cognito_identity",
    "data_version",
    "event",
    "event_category",
    "local_idp_code",
    "local_idp_session",
    "media_upload",
    "participation",
    "persisted_query",
    "popmap_user",
    "tortoise_migrations",
}


@pytest.fixture
async def empty_database(server_url: str) -> AsyncIterator[str]:
    url = await fresh_database(server_url)
    yield url
    await drop_database(server_url, url)


def start_migrate(url: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "popmap_gql", "migrate"],
        env=clean_env(DATABASE_URL=url),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


async def finish(process: subprocess.Popen[str]) -> tuple[int, str]:
    output, _ = await asyncio.to_thread(process.communicate, timeout=120)
    return process.returncode, output


async def test_two_concurrent_migrations_both_succeed_and_apply_once(empty_database: str) -> None:
    first, second = start_migrate(empty_database), start_migrate(empty_database)

    results = [await finish(first), await finish(second)]

    assert [code for code, _ in results] == [0, 0], results
    conn = await asyncpg.connect(**connection_credentials(empty_database))
    try:
        applied = await conn.fetch(
            "SELECT name, count(*) AS times FROM tortoise_migrations GROUP BY name ORDER BY name"
        )
        tables = {
            row["tablename"]
            for row in await conn.fetch(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
    finally:
        await conn.close()
    assert [(row["name"], row["times"]) for row in applied] == [(name, 1) for name in MIGRATIONS]
    assert tables == EXPECTED_TABLES


async def test_migrate_waits_while_another_holds_the_lock(empty_database: str) -> None:
    holder = await asyncpg.connect(**connection_credentials(empty_database))
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        process = start_migrate(empty_database)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert process.poll() is None, "migrate ran without taking the lock"
            await asyncio.sleep(0.1)
        created = await holder.fetchval("SELECT to_regclass('public.event') IS NOT NULL")
        assert created is False
        await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)

        code, output = await finish(process)
        assert code == 0, output
        assert await holder.fetchval("SELECT to_regclass('public.event') IS NOT NULL") is True
    finally:
        await holder.close()


async def test_migrate_again_is_a_no_op(empty_database: str) -> None:
    for _ in range(2):
        code, output = await finish(start_migrate(empty_database))
        assert code == 0, output

    conn = await asyncpg.connect(**connection_credentials(empty_database))
    try:
        assert await conn.fetchval("SELECT count(*) FROM tortoise_migrations") == len(MIGRATIONS)
    finally:
        await conn.close()


async def test_a_migrated_database_compiles_no_plans_and_starts_no_workers(
    empty_database: str,
) -> None:
    # Migrations 0018 and 0019: every new session of the database has JIT off and no
    # parallel workers, whoever connects and through any pooler (settings of the
    # database, not of our connections).
    async def settings() -> tuple[str, str]:
        conn = await asyncpg.connect(**connection_credentials(empty_database))
        try:
            jit: str = await conn.fetchval("SHOW jit")
            workers: str = await conn.fetchval("SHOW max_parallel_workers_per_gather")
            return jit, workers
        finally:
            await conn.close()

    assert await settings() == ("on", "2")  # PostgreSQL's defaults
    code, output = await finish(start_migrate(empty_database))
    assert code == 0, output
    assert await settings() == ("off", "0")
