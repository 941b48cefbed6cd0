"""Mutations: validation that writes nothing, join/leave rules, races, cache-friendly payloads."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import strawberry

from popmap_gql.api.mutations import CommandOf, Decoded
from popmap_gql.config import Settings
from popmap_gql.db.client import fetch
from popmap_gql.db.lists import data_version
from popmap_gql.db.models import Business, Event, EventStatus, Participation
from popmap_gql.db.orm import connection_credentials
from tests.fake_cognito import FakeCognito
from tests.helpers import NOW, error_codes, global_id, make_business, make_category, make_event
from tests.people import Person, person, post

SUBMIT_BUSINESS = """
mutation ($input: BusinessInput!) {
  submitBusiness(input: $input) {
    business { id name isVerified viewerIsOwner website contactPhone categories { slug } }
  }
}
"""
UPDATE_BUSINESS = """
mutation ($id: ID!, $input: BusinessInput!) {
  updateBusiness(businessId: $id, input: $input) {
    business { id name website categories { slug } }
  }
}
"""
SUBMIT_EVENT = """
mutation ($input: EventInput!) { submitEvent(input: $input) { event { id title status } } }
"""
JOIN = """
mutation ($e: ID!, $b: ID!) {
  joinEvent(eventId: $e, businessId: $b) {
    changed
    event { id title businesses { id name } }
    business { id name events { id title } }
  }
}
"""
LEAVE = """
mutation ($e: ID!, $b: ID!) {
  leaveEvent(eventId: $e, businessId: $b) {
    changed
    event { id businesses { id } }
    business { id events { id } }
  }
}
"""
MODERATE = """
mutation ($id: ID!, $s: EventStatus!) { moderateEvent(id: $id, status: $s) { event { id status } } }
"""

EVENT = {
    "title": "Pop-up",
    "latitude": 30.27,
    "longitude": -97.74,
    "startsAt": (NOW + timedelta(days=5)).isoformat(),
    "endsAt": (NOW + timedelta(days=5, hours=3)).isoformat(),
}


@pytest.fixture
async def owner(client: httpx.AsyncClient, cognito: FakeCognito) -> Person:
    return await person(cognito, "owner")


@pytest.fixture
async def staff(client: httpx.AsyncClient, cognito: FakeCognito) -> Person:
    return await person(cognito, "moderator", groups=("staff",))


async def row_counts() -> dict[str, int]:
    counts = {}
    for table in ("business", "business_category", "event", "participation"):
        [row] = await fetch(f"SELECT count(*) AS n FROM {table}")  # noqa: S608
        counts[table] = row["n"]
    return counts


# --- submitting and updating a business ---------------------------------------------------


async def test_submitted_business_is_unverified_owned_and_returned_whole(
    client: httpx.AsyncClient, owner: Person
) -> None:
    await make_category("Bakery")

    body = await post(
        client,
        owner,
        SUBMIT_BUSINESS,
        {
            "input": {
                "name": "  Crumbs  ",
                "website": "https://crumbs.example",
                "contactPhone": "+15125550100",
                "categorySlugs": ["bakery"],
            }
        },
    )

    business = body["data"]["submitBusiness"]["business"]
    assert business["name"] == "Crumbs"
    assert business["isVerified"] is False
    assert business["viewerIsOwner"] is True
    assert business["categories"] == [{"slug": "bakery"}]
    row = await Business.get(name="Crumbs")
    assert owner.user is not None
    assert row.owner_id == owner.user.id
    assert business["id"] == global_id("Business", row.id)


async def test_submitted_business_keeps_its_contact_email_and_availability(
    client: httpx.AsyncClient, owner: Person
) -> None:
    body = await post(
        client,
        owner,
        "mutation ($input: BusinessInput!) { submitBusiness(input: $input)"
        " { business { contactEmail availableForHire } } }",
        {
            "input": {
                "name": "Crumbs",
                "contactEmail": " hello@crumbs.example ",
                "availableForHire": True,
            }
        },
    )

    assert body["data"]["submitBusiness"]["business"] == {
        "contactEmail": "hello@crumbs.example",
        "availableForHire": True,
    }
    row = await Business.get(name="Crumbs")
    assert (row.contact_email, row.available_for_hire) == ("hello@crumbs.example", True)


async def test_update_changes_only_the_given_fields_and_replaces_categories(
    client: httpx.AsyncClient, owner: Person
) -> None:
    bakery, coffee = await make_category("Bakery"), await make_category("Coffee")
    business = await make_business(
        "Crumbs", owner=owner.user, categories=[bakery], website="https://old.example"
    )

    body = await post(
        client,
        owner,
        UPDATE_BUSINESS,
        {
            "id": global_id("Business", business.id),
            "input": {"name": "Crumbs & Co", "categoryIds": [global_id("Category", coffee.id)]},
        },
    )

    updated = body["data"]["updateBusiness"]["business"]
    assert updated == {
        "id": global_id("Business", business.id),
        "name": "Crumbs & Co",
        "website": "https://old.example",
        "categories": [{"slug": "coffee"}],
    }


BUSINESS_RULES = [
    ({"name": "   "}, "input.name"),
    ({"name": "x" * 201}, "input.name"),
    ({"name": "Nul\x00byte"}, "input.name"),
    ({"name": "Ok", "contactEmail": "not-an-email"}, "input.contactEmail"),
    ({"name": "Ok", "contactPhone": "5125550100"}, "input.contactPhone"),
    ({"name": "Ok", "contactPhone": "+1234"}, "input.contactPhone"),
    ({"name": "Ok", "contactPhone": "+1234567890123456"}, "input.contactPhone"),
    ({"name": "Ok", "website": "javascript:alert(1)"}, "input.website"),
    ({"name": "Ok", "website": "ftp://files.example"}, "input.website"),
    ({"name": "Ok", "instagramUrl": "//evil.example"}, "input.instagramUrl"),
    ({"name": "Ok", "tiktokUrl": "https://"}, "input.tiktokUrl"),
    ({"name": "Ok", "logoUrl": "data:image/png;base64,AAAA"}, "input.logoUrl"),
    ({"name": "Ok", "categorySlugs": ["bakery", "no-such-category"]}, "input.categorySlugs"),
    ({"name": "Ok", "categoryIds": ["Q2F0ZWdvcnk6OTk5OQ"]}, "input.categoryIds"),  # Category:9999
    ({"name": "Ok", "categoryIds": ["garbage"]}, "input.categoryIds"),
    ({"name": "Ok", "categorySlugs": [f"c{n}" for n in range(11)]}, "input.categoryIds"),
    ({"name": "Ok", "website": "https://[::1/menu"}, "input.website"),
    ({"name": "Ok", "website": "https://crumbs.example/our menu"}, "input.website"),
]


@pytest.mark.parametrize(("business_input", "field"), BUSINESS_RULES)
async def test_invalid_business_is_refused_and_nothing_is_written(
    client: httpx.AsyncClient, owner: Person, business_input: dict[str, Any], field: str
) -> None:
    await make_category("Bakery")
    before = await row_counts()

    body = await post(client, owner, SUBMIT_BUSINESS, {"input": business_input})

    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == field
    assert await row_counts() == before


@pytest.mark.parametrize(("business_input", "field"), BUSINESS_RULES[:4])
async def test_invalid_update_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, owner: Person, business_input: dict[str, Any], field: str
) -> None:
    business = await make_business("Crumbs", owner=owner.user)

    body = await post(
        client,
        owner,
        UPDATE_BUSINESS,
        {"id": global_id("Business", business.id), "input": business_input},
    )

    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == field
    assert (await Business.get(id=business.id)).name == "Crumbs"


# --- submitting an event --------------------------------------------------------------------


async def test_submitted_event_is_pending_and_seen_by_its_creator_only(
    client: httpx.AsyncClient, owner: Person, cognito: FakeCognito
) -> None:
    body = await post(client, owner, SUBMIT_EVENT, {"input": EVENT})
    event = body["data"]["submitEvent"]["event"]
    stranger = await person(cognito, "stranger")
    lookup = "query ($id: ID!) { event(id: $id) { title } }"

    assert event["status"] == "PENDING"
    assert (await post(client, owner, lookup, {"id": event["id"]}))["data"]["event"] == {
        "title": "Pop-up"
    }
    assert error_codes(await post(client, stranger, lookup, {"id": event["id"]})) == ["NOT_FOUND"]


EVENT_RULES = [
    ({"title": " "}, "input.title"),
    ({"title": "t" * 201}, "input.title"),
    ({"latitude": 90.5}, "input.latitude"),
    ({"latitude": -91}, "input.latitude"),
    ({"longitude": 180.01}, "input.longitude"),
    ({"longitude": -200}, "input.longitude"),
    ({"endsAt": EVENT["startsAt"]}, "input.endsAt"),
    ({"endsAt": (NOW + timedelta(days=4)).isoformat()}, "input.endsAt"),
    ({"endsAt": (NOW + timedelta(days=5 + 366, seconds=1)).isoformat()}, "input.endsAt"),
    ({"startsAt": "2026-12-01T10:00:00", "endsAt": "2026-12-01T12:00:00"}, "input.startsAt"),
    ({"imageUrl": "javascript:alert(document.cookie)"}, "input.imageUrl"),
    ({"description": "d" * 5001}, "input.description"),
    ({"hostBusinessId": "garbage"}, "input.hostBusinessId"),
    ({"hostBusinessId": global_id("Event", 1)}, "input.hostBusinessId"),
]


@pytest.mark.parametrize(("override", "field"), EVENT_RULES)
async def test_invalid_event_is_refused_and_nothing_is_written(
    client: httpx.AsyncClient, owner: Person, override: dict[str, Any], field: str
) -> None:
    before = await row_counts()

    body = await post(client, owner, SUBMIT_EVENT, {"input": {**EVENT, **override}})

    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == field
    assert await row_counts() == before


async def test_an_event_may_last_a_year_and_a_day_then_its_end_cannot_move_later(
    client: httpx.AsyncClient, owner: Person
) -> None:
    longest = {**EVENT, "endsAt": (NOW + timedelta(days=5 + 366)).isoformat()}
    body = await post(client, owner, SUBMIT_EVENT, {"input": longest})
    assert error_codes(body) == [], body
    event_id = body["data"]["submitEvent"]["event"]["id"]

    later = (NOW + timedelta(days=5 + 366, seconds=1)).isoformat()
    body = await post(
        client,
        owner,
        "mutation ($id: ID!, $input: EventUpdateInput!) { updateEvent(id: $id, input: $input)"
        " { changed } }",
        {"id": event_id, "input": {"endsAt": later}},
    )

    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == "input.endsAt"


async def test_event_hosted_by_someone_elses_business_is_refused(
    client: httpx.AsyncClient, owner: Person, cognito: FakeCognito
) -> None:
    other = await person(cognito, "other")
    theirs = await make_business("Theirs", owner=other.user)
    before = await row_counts()

    body = await post(
        client,
        owner,
        SUBMIT_EVENT,
        {"input": {**EVENT, "hostBusinessId": global_id("Business", theirs.id)}},
    )

    assert error_codes(body) == ["FORBIDDEN"]
    assert await row_counts() == before


async def test_event_hosted_by_a_business_the_submitter_cannot_see_is_not_found(
    client: httpx.AsyncClient, owner: Person
) -> None:
    hidden = await make_business("Unverified", verified=False)
    before = await row_counts()

    for host in (hidden.id, 999_999):
        body = await post(
            client,
            owner,
            SUBMIT_EVENT,
            {"input": {**EVENT, "hostBusinessId": global_id("Business", host)}},
        )
        assert error_codes(body) == ["NOT_FOUND"]
        assert body["data"] is None
    assert await row_counts() == before


# --- moderation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "target", "allowed"),
    [
        (EventStatus.PENDING, "APPROVED", True),
        (EventStatus.PENDING, "REJECTED", True),
        (EventStatus.APPROVED, "CANCELLED", True),
        (EventStatus.REJECTED, "APPROVED", True),
        (EventStatus.APPROVED, "APPROVED", True),  # no change, no error
        (EventStatus.CANCELLED, "APPROVED", False),
        (EventStatus.CANCELLED, "PENDING", False),
        (EventStatus.APPROVED, "PENDING", False),
        (EventStatus.REJECTED, "CANCELLED", False),
    ],
)
async def test_moderation_follows_the_allowed_transitions(
    client: httpx.AsyncClient, staff: Person, start: EventStatus, target: str, allowed: bool
) -> None:
    event = await make_event("Fair", status=start)

    body = await post(client, staff, MODERATE, {"id": global_id("Event", event.id), "s": target})

    if allowed:
        assert body["data"]["moderateEvent"]["event"]["status"] == target
        assert (await Event.get(id=event.id)).status.value == target
    else:
        assert error_codes(body) == ["BAD_USER_INPUT"]
        assert body["errors"][0]["extensions"]["field"] == "status"
        assert (await Event.get(id=event.id)).status is start


# --- joining and leaving --------------------------------------------------------------------


async def test_join_and_leave_return_both_sides_for_caches(
    client: httpx.AsyncClient, owner: Person
) -> None:
    business = await make_business("Crumbs", owner=owner.user)
    event = await make_event("Fair")
    ids = {"e": global_id("Event", event.id), "b": global_id("Business", business.id)}

    joined = (await post(client, owner, JOIN, ids))["data"]["joinEvent"]
    joined_again = (await post(client, owner, JOIN, ids))["data"]["joinEvent"]
    left = (await post(client, owner, LEAVE, ids))["data"]["leaveEvent"]
    left_again = (await post(client, owner, LEAVE, ids))["data"]["leaveEvent"]

    assert joined["changed"] is True
    assert joined["event"]["businesses"] == [{"id": ids["b"], "name": "Crumbs"}]
    assert joined["business"]["events"] == [{"id": ids["e"], "title": "Fair"}]
    assert joined_again["changed"] is False
    assert left["changed"] is True
    assert left["event"]["businesses"] == []
    assert left["business"]["events"] == []
    assert left_again["changed"] is False
    assert await Participation.all().count() == 0


JOIN_WITH_RELATIONS = """
mutation ($e: ID!, $b: ID!) {
  joinEvent(eventId: $e, businessId: $b) {
    event {
      hostBusiness { name categories { slug } }
      businesses { name categories { slug } soon: events(upcoming: true) { title } }
      categories { slug }
    }
    business { hostedEvents { title } events { title businesses { name } } }
  }
}
"""


async def test_payload_relations_load_through_the_dataloaders(
    client: httpx.AsyncClient, owner: Person
) -> None:
    """A mutation's payload is answered by the resolvers: every relation loads through its
    DataLoader on demand, with the same lists as the compiled reads."""
    bakery, music = await make_category("Bakery"), await make_category("Music")
    host = await make_business("Host", categories=[music])
    business = await make_business("Crumbs", owner=owner.user, categories=[bakery])
    event = await make_event("Fair", host_business=host, businesses=[host])
    await make_event("Own party", host_business=business)
    ids = {"e": global_id("Event", event.id), "b": global_id("Business", business.id)}

    body = await post(client, owner, JOIN_WITH_RELATIONS, ids)

    assert "errors" not in body, body
    assert body["data"]["joinEvent"] == {
        "event": {
            "hostBusiness": {"name": "Host", "categories": [{"slug": "music"}]},
            "businesses": [
                {"name": "Host", "categories": [{"slug": "music"}], "soon": [{"title": "Fair"}]},
                {"name": "Crumbs", "categories": [{"slug": "bakery"}], "soon": [{"title": "Fair"}]},
            ],
            "categories": [{"slug": "bakery"}, {"slug": "music"}],
        },
        "business": {
            "hostedEvents": [{"title": "Own party"}],
            "events": [{"title": "Fair", "businesses": [{"name": "Host"}, {"name": "Crumbs"}]}],
        },
    }


async def test_join_refuses_an_unverified_business(
    client: httpx.AsyncClient, owner: Person
) -> None:
    business = await make_business("Draft", owner=owner.user, verified=False)
    event = await make_event("Fair")

    body = await post(
        client,
        owner,
        JOIN,
        {"e": global_id("Event", event.id), "b": global_id("Business", business.id)},
    )

    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == "businessId"
    assert await Participation.all().count() == 0


@pytest.mark.parametrize(
    ("status", "starts_in", "code"),
    [
        (EventStatus.PENDING, timedelta(days=1), "NOT_FOUND"),  # not visible to the owner
        (EventStatus.CANCELLED, timedelta(days=1), "NOT_FOUND"),
        (EventStatus.APPROVED, timedelta(days=-2), "BAD_USER_INPUT"),  # ended
    ],
)
async def test_join_needs_an_approved_event_that_has_not_ended(
    client: httpx.AsyncClient, owner: Person, status: EventStatus, starts_in: timedelta, code: str
) -> None:
    business = await make_business("Crumbs", owner=owner.user)
    event = await make_event("Fair", status=status, starts_in=starts_in)

    body = await post(
        client,
        owner,
        JOIN,
        {"e": global_id("Event", event.id), "b": global_id("Business", business.id)},
    )

    assert error_codes(body) == [code]
    assert await Participation.all().count() == 0


async def test_staff_cannot_join_their_own_pending_event_either(
    client: httpx.AsyncClient, staff: Person
) -> None:
    business = await make_business("Crumbs")
    event = await make_event("Fair", status=EventStatus.PENDING)

    body = await post(
        client,
        staff,
        JOIN,
        {"e": global_id("Event", event.id), "b": global_id("Business", business.id)},
    )

    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == "eventId"


async def test_a_business_can_leave_an_event_that_was_cancelled_since(
    client: httpx.AsyncClient, owner: Person
) -> None:
    business = await make_business("Crumbs", owner=owner.user)
    event = await make_event("Fair", status=EventStatus.CANCELLED, businesses=[business])

    body = await post(
        client,
        owner,
        LEAVE,
        {"e": global_id("Event", event.id), "b": global_id("Business", business.id)},
    )

    assert body["data"]["leaveEvent"]["changed"] is True
    assert await Participation.all().count() == 0


async def test_a_malformed_event_id_is_refused_after_the_business_checks(
    client: httpx.AsyncClient, owner: Person
) -> None:
    """The business is checked first (as a permission), then the event id."""
    others = await make_business("Someone else's")
    own = await make_business("Crumbs", owner=owner.user)
    for business, code in ((others, "FORBIDDEN"), (own, "BAD_USER_INPUT")):
        for operation in (JOIN, LEAVE):
            body = await post(
                client,
                owner,
                operation,
                {"e": global_id("Business", own.id), "b": global_id("Business", business.id)},
            )
            assert error_codes(body) == [code], body
    assert body["errors"][0]["extensions"]["field"] == "eventId"


async def test_only_a_join_or_leave_that_changes_a_row_moves_the_data_version(
    client: httpx.AsyncClient, owner: Person
) -> None:
    """A refused or idempotent call writes nothing, so cached answers stay valid."""
    business = await make_business("Crumbs", owner=owner.user)
    draft = await make_business("Draft", owner=owner.user, verified=False)
    event = await make_event("Fair")
    ids = {"e": global_id("Event", event.id), "b": global_id("Business", business.id)}
    start = await data_version()

    refused = await post(client, owner, JOIN, {**ids, "b": global_id("Business", draft.id)})
    assert error_codes(refused) == ["BAD_USER_INPUT"]
    assert await data_version() == start
    assert (await post(client, owner, LEAVE, ids))["data"]["leaveEvent"]["changed"] is False
    assert await data_version() == start

    assert (await post(client, owner, JOIN, ids))["data"]["joinEvent"]["changed"] is True
    joined = await data_version()
    assert joined > start
    assert (await post(client, owner, JOIN, ids))["data"]["joinEvent"]["changed"] is False
    assert await data_version() == joined
    assert (await post(client, owner, LEAVE, ids))["data"]["leaveEvent"]["changed"] is True
    assert await data_version() > joined


async def test_a_join_waiting_for_moderation_sees_the_event_as_moderation_left_it(
    client: httpx.AsyncClient, owner: Person, settings: Settings
) -> None:
    """Moderation holds the event's row lock while it cancels the event; the join waits
    for it and then finds no event it can join, rather than joining the event as it was."""
    business = await make_business("Crumbs", owner=owner.user)
    event = await make_event("Fair")
    ids = {"e": global_id("Event", event.id), "b": global_id("Business", business.id)}
    assert settings.database_url is not None
    credentials = connection_credentials(settings.database_url)
    moderator, watcher = [await asyncpg.connect(**credentials) for _ in range(2)]
    try:
        moderating = moderator.transaction()
        await moderating.start()
        await moderator.execute("SELECT id FROM event WHERE id = $1 FOR UPDATE", event.id)
        await moderator.execute("UPDATE event SET status = 'CANCELLED' WHERE id = $1", event.id)
        joining = asyncio.create_task(post(client, owner, JOIN, ids))
        for _ in range(1000):
            waiting = await watcher.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            if waiting or joining.done():
                break
            await asyncio.sleep(0.01)
        assert not joining.done(), "the join did not wait for the event's row lock"
        await moderating.commit()
        body = await joining
    finally:
        for connection in (moderator, watcher):
            await connection.close()

    assert error_codes(body) == ["NOT_FOUND"]
    assert await Participation.all().count() == 0


async def test_thirty_concurrent_joins_make_one_participation(
    client: httpx.AsyncClient, owner: Person
) -> None:
    business = await make_business("Crumbs", owner=owner.user)
    event = await make_event("Fair")
    ids = {"e": global_id("Event", event.id), "b": global_id("Business", business.id)}

    bodies = await asyncio.gather(*(post(client, owner, JOIN, ids) for _ in range(30)))

    assert all("errors" not in body for body in bodies), bodies
    assert sum(body["data"]["joinEvent"]["changed"] for body in bodies) == 1
    assert await Participation.filter(event_id=event.id, business_id=business.id).count() == 1


async def test_concurrent_joins_and_leaves_end_consistent(
    client: httpx.AsyncClient, owner: Person
) -> None:
    business = await make_business("Crumbs", owner=owner.user)
    event = await make_event("Fair")
    ids = {"e": global_id("Event", event.id), "b": global_id("Business", business.id)}

    bodies = await asyncio.gather(
        *(post(client, owner, JOIN if n % 2 else LEAVE, ids) for n in range(40))
    )

    assert all("errors" not in body for body in bodies), bodies
    changes = [
        (name, body["data"][name]["changed"])
        for body in bodies
        for name in ("joinEvent", "leaveEvent")
        if name in body["data"]
    ]
    joins = sum(1 for name, changed in changes if name == "joinEvent" and changed)
    leaves = sum(1 for name, changed in changes if name == "leaveEvent" and changed)
    rows = await Participation.filter(event_id=event.id, business_id=business.id).count()
    # every successful join was matched by a successful leave, except possibly the last
    assert joins - leaves == rows
    assert rows in (0, 1)
    listed = await post(
        client, owner, "query ($e: ID!) { event(id: $e) { businesses { id } } }", {"e": ids["e"]}
    )
    assert len(listed["data"]["event"]["businesses"]) == rows


async def test_verify_business_makes_it_public(
    client: httpx.AsyncClient, owner: Person, staff: Person
) -> None:
    draft = await make_business("Draft", owner=owner.user, verified=False)
    verify = (
        "mutation ($id: ID!, $v: Boolean!) { verifyBusiness(id: $id, verified: $v)"
        " { business { id isVerified } } }"
    )

    verified = await post(client, staff, verify, {"id": global_id("Business", draft.id), "v": True})
    listed = await post(client, owner, "{ businesses { edges { node { name } } } }")

    assert verified["data"]["verifyBusiness"]["business"]["isVerified"] is True
    assert listed["data"]["businesses"]["edges"] == [{"node": {"name": "Draft"}}]


async def test_moderating_an_unknown_business_or_event_is_not_found(
    client: httpx.AsyncClient, staff: Person
) -> None:
    verify = "mutation ($id: ID!) { verifyBusiness(id: $id) { business { id } } }"

    unknown_business = await post(client, staff, verify, {"id": global_id("Business", 999_999)})
    unknown_event = await post(
        client, staff, MODERATE, {"id": global_id("Event", 999_999), "s": "APPROVED"}
    )

    for body in (unknown_business, unknown_event):
        assert error_codes(body) == ["NOT_FOUND"]
        assert body["data"] is None


# --- inputs and their commands --------------------------------------------------------------


@strawberry.input
class _Input:
    name: str | None = None
    tag_ids: list[strawberry.ID] | None = None


@dataclass(frozen=True)
class _Command:
    name: str | None = None
    tag_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class _WrongType:
    name: int | None = None
    tag_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class _OtherFields:
    name: str | None = None


def test_an_input_and_its_command_must_agree_field_by_field() -> None:
    assert CommandOf(_Input, _Command, {"tag_ids": Decoded("Category")}).command is _Command

    with pytest.raises(TypeError, match="tag_ids is list"):
        CommandOf(_Input, _Command)  # an ID is no primary key: the conversion is declared
    with pytest.raises(TypeError, match=re.escape("name is str | None in one and int | None")):
        CommandOf(_Input, _WrongType, {"tag_ids": Decoded("Category")})
    with pytest.raises(TypeError, match=r"same fields: \['tag_ids'\]"):
        CommandOf(_Input, _OtherFields)
    with pytest.raises(TypeError, match="no fields"):
        CommandOf(_Input, _Command, {"tag_ids": Decoded("Category"), "nope": Decoded("Event")})
