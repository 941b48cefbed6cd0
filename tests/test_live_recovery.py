"""Live updates across a PostgreSQL restart: the LISTEN connection comes back, and every
subscription re-reads its list, so a change nobody was told of still reaches subscribers.
A notification naming no ids the server can read makes it re-read every list too.

The change is written behind the API's back (no NOTIFY), as one committed while the
listener was away would be: only the recovery (or the unreadable notification) can tell
the subscriber about it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from popmap_gql.db.notify import CHANNEL
from popmap_gql.db.orm import connection_credentials
from tests.fake_cognito import FakeCognito
from tests.helpers import global_id
from tests.live_client import live
from tests.postgres_control import StoppablePostgres
from tests.processes import running_server
from tests.test_live import change_of, open_subscription


@pytest.fixture(scope="module")
def server(
    database: str, cognito: FakeCognito, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    data_dir: Path = tmp_path_factory.mktemp("live-recovery")
    env = cognito.server_env(database, data_dir)
    with running_server(env, log=data_dir / "server.log") as base:
        yield base


async def _sql(database: str, statement: str, *args: object) -> int | None:
    connection = await asyncpg.connect(**connection_credentials(database))
    try:
        value: int | None = await connection.fetchval(statement, *args)
        return value
    finally:
        await connection.close()


async def test_a_subscriber_is_told_the_state_after_postgresql_restarts(
    postgres: StoppablePostgres, database: str, server: str
) -> None:
    event_id = await _sql(
        database,
        "INSERT INTO event (title, description, location_name, address, latitude, longitude,"
        " starts_at, ends_at, image_url, status, created_at, updated_at) VALUES"
        " ('after the restart', '', '', '', 30.3, -97.7, now() + interval '1 day',"
        " now() + interval '2 days', '', 'PENDING', now(), now()) RETURNING id",
    )
    assert event_id is not None
    async with live(server) as anonymous:
        await open_subscription(anonymous, None)
        await _sql(database, "UPDATE event SET status = 'APPROVED' WHERE id = $1", event_id)
        await asyncio.to_thread(postgres.stop)
        await asyncio.to_thread(postgres.start)
        assert change_of(await anonymous.next_change()) == (
            "ADDED",
            global_id("Event", event_id),
            {"title": "after the restart", "status": "APPROVED"},
        )


@pytest.mark.parametrize(
    "payload",
    ['{"all": true}', "not json", '["a", "list"]', '{"e": ["7"]}', '{"e": 7}'],
)
async def test_a_notification_saying_all_or_unreadable_makes_every_subscription_re_read(
    database: str, server: str, payload: str
) -> None:
    """Another program on the channel (or a newer format) names no ids this server can
    use: it re-reads every list rather than miss a change."""
    event_id = await _sql(
        database,
        "INSERT INTO event (title, description, location_name, address, latitude, longitude,"
        " starts_at, ends_at, image_url, status, created_at, updated_at) VALUES"
        " ('told of anyway', '', '', '', 30.3, -97.7, now() + interval '1 day',"
        " now() + interval '2 days', '', 'PENDING', now(), now()) RETURNING id",
    )
    assert event_id is not None
    async with live(server) as anonymous:
        await open_subscription(anonymous, None)
        await _sql(database, "UPDATE event SET status = 'APPROVED' WHERE id = $1", event_id)
        await _sql(database, "SELECT pg_notify($1, $2)", CHANNEL, payload)
        assert change_of(await anonymous.next_change()) == (
            "ADDED",
            global_id("Event", event_id),
            {"title": "told of anyway", "status": "APPROVED"},
        )
