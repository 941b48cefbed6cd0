"""Tortoise configuration built from a PostgreSQL URL."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg

from popmap_gql.db.client import DEFAULT_POOL_TIMEOUT

__all__ = [
    "APP_LABEL",
    "MIGRATIONS_MODULE",
    "MODELS_MODULE",
    "connection_credentials",
    "pooler_options",
    "tortoise_config",
]

MODELS_MODULE = "popmap_gql.db.models"
MIGRATIONS_MODULE = "migrations"
APP_LABEL = "models"


def connection_credentials(url: str) -> dict[str, Any]:
    """Split a postgres URL (as the settings check it: config.py) into asyncpg
    credentials; `?host=/dir` selects a Unix socket."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "localhost"])[0]
    database = unquote(parts.path.lstrip("/")) or "postgres"
    port = parts.port or int(query.get("port", ["5432"])[0])
    return {
        "host": host,
        "port": port,
        "user": unquote(parts.username or "postgres"),
        "password": unquote(parts.password or ""),
        "database": database,
    }


async def release_connection(connection: asyncpg.Connection) -> None:
    """Make a connection fit for reuse when it returns to the pool.

    asyncpg's default sends RESET ALL, CLOSE ALL, UNLISTEN * and an advisory-unlock-all on
    every release: a second round trip for every statement. This application sets no
    session state, opens no cursors, listens to nothing and takes advisory locks only on
    connections of its own (migrate), so only a transaction left open needs undoing.
    """
    if connection.is_in_transaction():
        await connection.execute("ROLLBACK")


def pooler_options(pooler: str | None) -> dict[str, Any]:
    """asyncpg connection options for what stands between us and PostgreSQL.

    PgBouncer in transaction pooling mode hands each transaction (each statement outside
    one) to whichever server connection is free, so a statement prepared on one server
    connection is unknown to the next: asyncpg's cache of named prepared statements then
    fails with "prepared statement ... does not exist". With the cache off, asyncpg sends
    each statement unnamed and parses it again in the same round trip as its execution.
    """
    if pooler == "pgbouncer":
        return {"statement_cache_size": 0}
    return {}


# A connection attempt that gets no answer (a host gone, a black-holed network) gives up
# after this many seconds; a refused one fails at once.
CONNECT_TIMEOUT_SECONDS = 5.0
# The client-side timeout waits this much longer than statement_timeout, so that the
# server cancels first (and reports it) whenever it still can answer at all.
_COMMAND_TIMEOUT_MARGIN_SECONDS = 2.0


def tortoise_config(
    url: str,
    *,
    pool_size: int = 10,
    statement_timeout_ms: int = 0,
    pool_timeout: float = DEFAULT_POOL_TIMEOUT,
    pooler: str | None = None,
) -> dict[str, Any]:
    """Tortoise's configuration on our fault-converting client (`popmap_gql.db.client`).

    `statement_timeout_ms` (0: none) becomes PostgreSQL's `statement_timeout` on every
    pooled connection, so that a statement stuck behind a lock or running too long is
    cancelled by the server, plus a client-side timeout a little longer for a server
    that no longer answers at all. `pooler` is POPMAP_DB_POOLER (see `pooler_options`).
    """
    credentials = connection_credentials(url)
    credentials.update(
        # No floor: with one, asyncpg reconnects in the background while PostgreSQL is
        # down and logs a traceback per attempt; connections open on demand instead.
        minsize=0,
        maxsize=pool_size,
        reset=release_connection,
        pool_timeout=pool_timeout,
        timeout=CONNECT_TIMEOUT_SECONDS,
        # Tortoise passes options it does not know on to asyncpg.create_pool.
        **pooler_options(pooler),
    )
    if statement_timeout_ms > 0:
        credentials["server_settings"] = {"statement_timeout": str(statement_timeout_ms)}
        credentials["command_timeout"] = (
            statement_timeout_ms / 1000 + _COMMAND_TIMEOUT_MARGIN_SECONDS
        )
    return {
        "connections": {"default": {"engine": "popmap_gql.db.client", "credentials": credentials}},
        "apps": {
            APP_LABEL: {
                "models": [MODELS_MODULE],
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }
