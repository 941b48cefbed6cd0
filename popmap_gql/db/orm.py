"""Tortoise configuration built from a PostgreSQL URL."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import asyncpg

from popmap_gql.config import ConfigError

__all__ = ["MODELS_MODULE", "connection_credentials", "tortoise_config"]

MODELS_MODULE = "popmap_gql.db.models"
MIGRATIONS_MODULE = "migrations"


def connection_credentials(url: str) -> dict[str, Any]:
    """Split a postgres URL into asyncpg credentials; `?host=/dir` selects a Unix socket."""
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ConfigError(f"not a PostgreSQL URL: scheme {parts.scheme!r}")
    query = parse_qs(parts.query)
    host = query.get("host", [parts.hostname or "localhost"])[0]
    database = unquote(parts.path.lstrip("/")) or "postgres"
    try:
        port = parts.port or int(query.get("port", ["5432"])[0])
    except ValueError as exc:
        raise ConfigError(f"bad port in database URL: {exc}") from exc
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


def tortoise_config(url: str, *, pool_size: int = 10) -> dict[str, Any]:
    credentials = connection_credentials(url)
    credentials.update(minsize=1, maxsize=pool_size, reset=release_connection)
    return {
        "connections": {
            "default": {"engine": "tortoise.backends.asyncpg", "credentials": credentials}
        },
        "apps": {
            "models": {
                "models": [MODELS_MODULE],
                "default_connection": "default",
                "migrations": MIGRATIONS_MODULE,
            }
        },
        "use_tz": True,
        "timezone": "UTC",
    }
