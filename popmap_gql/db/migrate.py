"""Apply the migrations in `migrations/` under a PostgreSQL advisory lock."""

from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil

import asyncpg
from tortoise import Tortoise
from tortoise.migrations.api import migrate as tortoise_migrate

from popmap_gql.db.client import MIGRATION_RECORD_TABLE
from popmap_gql.db.orm import (
    APP_LABEL,
    MIGRATIONS_MODULE,
    connection_credentials,
    pooler_options,
    tortoise_config,
)

__all__ = ["MIGRATION_LOCK_KEY", "migrate", "pending_migrations"]

logger = logging.getLogger(__name__)

# Any constant shared by every replica; "popmap" in ASCII.
MIGRATION_LOCK_KEY = 0x706F706D6170


async def migrate(url: str) -> None:
    """Bring the database at `url` up to the latest migration.

    Replicas starting at once all call this: the session-level advisory lock makes the
    second wait until the first has finished, after which it finds nothing to apply.
    The lock belongs to one server session, so `url` must lead to PostgreSQL itself: a
    pooler in transaction mode could run the unlock on another server connection and
    leave the lock held.
    """
    lock_conn = await asyncpg.connect(**connection_credentials(url))
    try:
        await _lock(lock_conn)
        try:
            await tortoise_migrate(config=tortoise_config(url, pool_size=2))
        finally:
            await Tortoise.close_connections()
            await lock_conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await lock_conn.close()
    logger.info("database schema is up to date")


async def _lock(conn: asyncpg.Connection) -> None:
    """Take the migration lock, trying again every LOCK_RETRY_SECONDS.

    A session waiting inside pg_advisory_lock holds a snapshot all the while, and
    CREATE INDEX CONCURRENTLY (migration 0009) waits for every snapshot older than its
    own: the replica holding the lock would wait for the one waiting for it. Between
    tries this session holds none.
    """
    while True:
        if await conn.fetchval("SELECT pg_try_advisory_lock($1)", MIGRATION_LOCK_KEY):
            return
        await asyncio.sleep(LOCK_RETRY_SECONDS)


LOCK_RETRY_SECONDS = 0.25


def _migrations_on_disk() -> list[str]:
    """The migrations shipped in MIGRATIONS_MODULE, named as Tortoise's loader names them."""
    package = importlib.import_module(MIGRATIONS_MODULE)
    return sorted(
        name
        for _, name, is_package in pkgutil.iter_modules(package.__path__)
        if not is_package and name[0] not in "_~"
    )


async def pending_migrations(url: str, *, pooler: str | None = None) -> list[str]:
    """The migrations not yet applied to the database at `url` (one small query), which
    may be reached through the pooler `pooler` (POPMAP_DB_POOLER).

    Raises asyncpg's and OSError's exceptions when the database cannot be reached.
    """
    conn = await asyncpg.connect(
        **connection_credentials(url), **pooler_options(pooler), timeout=10
    )
    try:
        if await conn.fetchval("SELECT to_regclass($1)", MIGRATION_RECORD_TABLE) is None:
            applied: set[str] = set()
        else:
            rows = await conn.fetch(
                f'SELECT name FROM "{MIGRATION_RECORD_TABLE}" WHERE app = $1',  # noqa: S608  # a constant
                APP_LABEL,
            )
            applied = {row["name"] for row in rows}
    finally:
        await conn.close()
    return [name for name in _migrations_on_disk() if name not in applied]
