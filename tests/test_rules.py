"""Business rules stated once and used in two forms: both forms must agree on real rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from tortoise.connection import connections

from popmap_gql.db.models import Event, EventStatus
from popmap_gql.db.queries import ACTIVE_EVENTS
from tests.helpers import error_codes, global_id, gql, make_event


async def test_active_events_in_sql_and_in_python_are_the_same_events(
    client: httpx.AsyncClient,
) -> None:
    for status in EventStatus:
        await make_event(f"{status.value} running", status=status, starts_in=timedelta(hours=-1))
        await make_event(f"{status.value} ended", status=status, starts_in=timedelta(days=-2))
        await make_event(f"{status.value} coming", status=status, starts_in=timedelta(days=2))

    rows = await connections.get("default").execute_query_dict(
        # the fragment is fixed text from the rule, no value of anyone's
        f"SELECT e.title FROM event e WHERE {ACTIVE_EVENTS.sql('e')} ORDER BY e.title"  # noqa: S608
    )
    now = datetime.now(UTC)
    in_python = sorted(
        event.title
        for event in await Event.all()
        if ACTIVE_EVENTS.holds(event.status, event.ends_at, now)
    )

    assert [row["title"] for row in rows] == in_python == ["APPROVED coming", "APPROVED running"]


async def test_is_active_shows_the_rule_for_a_running_and_an_ended_event(
    client: httpx.AsyncClient,
) -> None:
    ended = await make_event("Ended", starts_in=timedelta(days=-2))
    running = await make_event("Running", starts_in=timedelta(hours=-1))

    body = await gql(
        client,
        "query ($a: ID!, $b: ID!) { a: event(id: $a) { isActive } b: event(id: $b) { isActive } }",
        {"a": global_id("Event", ended.id), "b": global_id("Event", running.id)},
    )

    assert body == {"data": {"a": {"isActive": False}, "b": {"isActive": True}}}
    assert error_codes(body) == []
