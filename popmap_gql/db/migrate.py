"""Apply the migrations in `migrations/` under a PostgreSQL advisory lock."""

from __future__ import annotations

import logging

import asyncpg
from tortoise import Tortoise
from tortoise.migrations.api import migrate as tortoise_migrate

from popmap_gql.db.orm import connection_credentials, tortoise_config

__all__ = ["MIGRATION_LOCK_KEY", "migrate"]

logger = logging.getLogger(__name__)

# Any constant shared by every replica; "popmap" in ASCII.
MIGRATION_LOCK_KEY = 0x706F706D6170


async def migrate(url: str) -> None:
    """Bring the database at `url` up to the latest migration.

    Replicas starting at once all call this: the session-level advisory lock makes the
    second wait until the first has finished, after which it finds nothing to apply.
    """
    lock_conn = await asyncpg.connect(**connection_credentials(url))
    try:
        await lock_conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        try:
            await tortoise_migrate(config=tortoise_config(url, pool_size=2))
        finally:
            await Tortoise.close_connections()
            await lock_conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    finally:
        await lock_conn.close()
    logger.info("database schema is up to date")
