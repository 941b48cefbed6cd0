"""The process's one LISTEN connection: committed changes in, cohorts told.

A LISTEN belongs to a session, so it needs a connection of its own, straight to
PostgreSQL (POPMAP_DB_LISTEN_URL; PgBouncer in transaction mode would hand the session to
others between statements). The connection is checked every `CHECK_SECONDS`; when it is
lost (a restart, a failover, a network fault) it is opened again with a growing pause,
and once it is back every cohort re-reads its list: notifications sent meanwhile went
to nobody, and the subscribers are told the state after recovery instead.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import asyncpg

from popmap_gql.db.notify import CHANNEL, Touched, read_payload
from popmap_gql.db.orm import connection_credentials

__all__ = ["CHECK_SECONDS", "Listener"]

logger = logging.getLogger(__name__)

CHECK_SECONDS = 5.0
CONNECT_TIMEOUT_SECONDS = 5.0
MAX_PAUSE_SECONDS = 5.0


class Listener:
    """LISTENs on `url` while `run` runs; `on_touched` gets each notification's ids,
    `on_recovered` is called each time the connection is back after a loss."""

    def __init__(
        self,
        url: str,
        on_touched: Callable[[Touched], None],
        on_recovered: Callable[[], None],
    ) -> None:
        self.url = url
        self.on_touched = on_touched
        self.on_recovered = on_recovered

    async def run(self) -> None:
        pause = 0.1
        lost_before = False
        while True:
            try:
                connection = await asyncpg.connect(
                    **connection_credentials(self.url), timeout=CONNECT_TIMEOUT_SECONDS
                )
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                logger.warning("live: cannot LISTEN (%s); again in %.1f s", exc, pause)
                lost_before = True
                await asyncio.sleep(pause)
                pause = min(pause * 2, MAX_PAUSE_SECONDS)
                continue
            pause = 0.1
            try:
                await self._listen(connection, recovered=lost_before)
            finally:
                if not connection.is_closed():
                    connection.terminate()
            lost_before = True
            logger.warning("live: the LISTEN connection was lost; connecting again")

    async def _listen(self, connection: asyncpg.Connection, *, recovered: bool) -> None:
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _connection: lost.set())
        await connection.add_listener(CHANNEL, self._notified)
        if recovered:
            logger.info("live: LISTENing again; every subscription re-reads its list")
            self.on_recovered()
        while not lost.is_set():
            try:
                await asyncio.wait_for(lost.wait(), CHECK_SECONDS)
            except TimeoutError:
                try:
                    await connection.fetchval("SELECT 1", timeout=CHECK_SECONDS)
                except (
                    OSError,
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                    asyncpg.InternalClientError,
                    TimeoutError,
                ):
                    return

    def _notified(self, _connection: Any, _pid: int, _channel: str, payload: object) -> None:
        self.on_touched(read_payload(str(payload)))
