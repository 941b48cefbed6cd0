"""Business rules stated once and used in two forms: both forms must agree on real rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from popmap_gql.db.client import fetch
from popmap_gql.db.models import Business, Event, EventStatus
from popmap_gql.db.powers import ANONYMOUS, Audience, Scope
from popmap_gql.db.rules import ACTIVE_EVENTS, ACTS_FOR_BUSINESS
from tests.helpers import error_codes, global_id, gql, make_business, make_event, make_user


async def test_active_events_in_sql_and_in_python_are_the_same_events(
    client: httpx.AsyncClient,
) -> None:
    for status in EventStatus:
        await make_event(f"{status.value} running", status=status, starts_in=timedelta(hours=-1))
        await make_event(f"{status.value} ended", status=status, starts_in=timedelta(days=-2))
        await make_event(f"{status.value} coming", status=status, starts_in=timedelta(days=2))

    rows = await fetch(
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


async def test_owner_or_staff_in_sql_and_in_python_are_the_same_businesses(
    client: httpx.AsyncClient,
) -> None:
    owner, other = await make_user("owner"), await make_user("other")
    await make_business("Owner's", owner=owner)
    await make_business("Owner's draft", owner=owner, verified=False)
    await make_business("Other's", owner=other)
    await make_business("Nobody's")
    audiences = {
        "anonymous": (ANONYMOUS, []),
        "owner": (Audience(user_id=owner.id), ["Owner's", "Owner's draft"]),
        "other": (Audience(user_id=other.id), ["Other's"]),
        "staff": (
            Audience(user_id=other.id, is_staff=True),
            ["Nobody's", "Other's", "Owner's", "Owner's draft"],
        ),
        "service with every scope": (Audience(client_id="app", scopes=frozenset(Scope)), []),
    }
    businesses = await Business.all()

    for name, (audience, expected) in audiences.items():
        params: list[object] = []
        condition = ACTS_FOR_BUSINESS.sql(audience, "b", params)
        rows = await fetch(
            # the condition is fixed text from the rule; the user id is a parameter
            f"SELECT b.name FROM business b WHERE {condition} ORDER BY b.name",  # noqa: S608
            params,
        )
        in_python = sorted(
            b.name for b in businesses if ACTS_FOR_BUSINESS.holds(audience, b.owner_id)
        )
        assert [row["name"] for row in rows] == in_python == expected, name
