"""Business rules stated once and used in two forms: both forms must agree on real rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from popmap_gql.db.client import fetch
from popmap_gql.db.models import Business, Event, EventStatus
from popmap_gql.db.powers import ANONYMOUS, Audience, Scope
from popmap_gql.db.rules import ACTIVE_EVENTS, ACTS_FOR_BUSINESS, EVENT_VISIBILITY, SPAN
from tests.fake_cognito import FakeCognito
from tests.helpers import error_codes, global_id, gql, make_business, make_event, make_user
from tests.people import person


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


async def test_lists_of_events_not_ended_keep_one_that_began_long_ago(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    """The lists bound the start by the longest event held (`Ended.not_ended_rows_sql`):
    a 90-day fair that began 60 days ago is still in every "not ended" list, beside a
    short event, and one that ended is in none."""
    owner = await person(cognito, "owner")
    assert owner.user is not None
    host = await make_business("Host", owner=owner.user)
    await make_business("Joiner", owner=owner.user)
    await make_event("Long fair", starts_in=timedelta(days=-60), hours=90 * 24, businesses=[host])
    await make_event("Soon", starts_in=timedelta(days=1), businesses=[host])
    await make_event("Over", starts_in=timedelta(days=-2), businesses=[host])
    now = datetime.now(UTC).isoformat()

    body = await gql(
        client,
        """query ($host: ID!, $now: DateTime!) {
          upcoming: events(filter: {upcoming: true}) { edges { node { title } } totalCount }
          after: events(filter: {endsAfter: $now}) { edges { node { title } } totalCount }
          business(id: $host) { events(upcoming: true) { title } }
          me { businesses { name availableEvents { title } } }
        }""",
        {"host": global_id("Business", host.id), "now": now},
        headers=owner.headers,
    )

    assert error_codes(body) == []
    data = body["data"]
    both = ["Long fair", "Soon"]
    for name in ("upcoming", "after"):
        assert [edge["node"]["title"] for edge in data[name]["edges"]] == both
        assert data[name]["totalCount"] == 2
    assert [event["title"] for event in data["business"]["events"]] == both
    available = {
        b["name"]: [e["title"] for e in b["availableEvents"]] for b in data["me"]["businesses"]
    }
    assert available == {"Host": [], "Joiner": both}


async def test_an_event_of_ten_thousand_years_leaves_the_lists_of_events_not_ended_working(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    """The bound on the start is the instant minus the longest duration held. An event
    from year 1 to year 9999 put that bound before the first timestamp PostgreSQL can
    hold, so every "not ended" list failed with "timestamp out of range" for every viewer.
    Such an event can no longer be submitted (at most MAX_EVENT_DAYS), but a row from
    before that rule, or written by an operator, must not break the lists either."""
    submitter, owner = await person(cognito, "submitter"), await person(cognito, "owner")
    assert owner.user is not None
    host = await make_business("Host", owner=owner.user)
    await make_event("Soon", starts_in=timedelta(days=1), businesses=[host])
    submit = """mutation ($input: EventInput!) { submitEvent(input: $input) { event { id } } }"""
    forever = {
        "title": "Forever",
        "latitude": 30.27,
        "longitude": -97.74,
        "startsAt": "0001-01-02T00:00:00Z",
        "endsAt": "9999-12-30T00:00:00Z",
    }
    refused = await gql(client, submit, {"input": forever}, headers=submitter.headers)
    assert error_codes(refused) == ["BAD_USER_INPUT"], refused
    assert refused["errors"][0]["extensions"]["field"] == "input.endsAt", refused
    await Event.create(
        title="Forever",
        starts_at=datetime(1, 1, 2, tzinfo=UTC),
        ends_at=datetime(9999, 12, 30, tzinfo=UTC),
        status=EventStatus.PENDING,
        latitude=30.27,
        longitude=-97.74,
    )

    body = await gql(
        client,
        """query ($host: ID!, $then: DateTime!) {
          upcoming: events(filter: {upcoming: true}) { edges { node { title } } totalCount }
          after: events(filter: {endsAfter: $then}) { edges { node { title } } }
          business(id: $host) { events(upcoming: true) { title } }
          me { businesses { availableEvents { title } } }
        }""",
        {"host": global_id("Business", host.id), "then": "0001-01-02T00:00:00Z"},
        headers=owner.headers,
    )

    assert error_codes(body) == [], body
    data = body["data"]
    assert [edge["node"]["title"] for edge in data["upcoming"]["edges"]] == ["Soon"]
    assert data["upcoming"]["totalCount"] == 1
    assert [edge["node"]["title"] for edge in data["after"]["edges"]] == ["Soon"]
    assert [event["title"] for event in data["business"]["events"]] == ["Soon"]
    assert data["me"]["businesses"] == [{"availableEvents": []}]


def test_the_longest_duration_is_what_migration_0011_indexes() -> None:
    source = (Path(__file__).parent.parent / "migrations" / "0011_event_span_index.py").read_text()
    assert f"ON event (({SPAN}))" in source


async def test_visibility_branches_are_disjoint_and_together_the_rule(
    client: httpx.AsyncClient,
) -> None:
    # A list in an index's order reads each branch in that order and merges them
    # (ListQuery.page_sql), so the branches must hold exactly the rule's rows, each once.
    owner = await make_user("owner")
    await make_event("Public")
    await make_event("Own pending", status=EventStatus.PENDING, created_by=owner)
    await make_event("Own approved", created_by=owner)
    await make_event("Other pending", status=EventStatus.PENDING)
    await make_event("Cancelled", status=EventStatus.CANCELLED)
    await make_event("Rejected", status=EventStatus.REJECTED)
    audiences = {
        "anonymous": ANONYMOUS,
        "owner": Audience(user_id=owner.id),
        "service": Audience(client_id="app"),
        "staff": Audience(user_id=owner.id, is_staff=True),
    }

    for name, audience in audiences.items():
        params: list[object] = []
        whole, branches = EVENT_VISIBILITY.sql_branches(audience, "e", params)

        async def titles(condition: str, params: list[object] = params) -> list[str]:
            rows = await fetch(
                # fixed text from the rule; the values are parameters
                f"SELECT e.title FROM event e WHERE {condition} ORDER BY e.title",  # noqa: S608
                params,
            )
            return [row["title"] for row in rows]

        expected = await titles(whole)
        if not branches:
            assert name == "anonymous", name
            continue
        found = await titles(" OR ".join(f"({b})" for b in branches))  # the same rows
        each = [
            row["title"]
            for row in await fetch(
                " UNION ALL ".join(
                    f"SELECT e.title FROM event e WHERE {branch}"  # noqa: S608 (the rule's)
                    for branch in branches
                ),
                params,
            )
        ]
        assert found == expected, name
        assert sorted(each) == expected, name  # in one branch each
        staff = ["Cancelled", "Other pending", "Own pending", "Rejected"]
        mine = {"owner": ["Own pending"], "staff": staff}
        assert expected == sorted(["Own approved", "Public", *mine.get(name, [])]), name
