"""Hostile input: every malformed value is a coded refusal naming its field, never a 500.

Covers instants at the edges of what a datetime can hold, cursors carrying text that
PostgreSQL cannot store, and IDs in any form other than the one the API hands out.
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any

import httpx
import pytest

from popmap_gql.db.models import Business, Event, EventStatus
from tests.fake_cognito import FakeCognito
from tests.helpers import NOW, error_codes, global_id, gql, make_business, make_event
from tests.people import person, post

EVENTS = """
query ($first: Int, $after: String, $filter: EventFilter, $orderBy: EventOrder) {
  events(first: $first, after: $after, filter: $filter, orderBy: $orderBy) {
    totalCount
    pageInfo { endCursor }
    edges { node { title } }
  }
}
"""
BUSINESSES = """
query ($after: String, $orderBy: BusinessOrder) {
  businesses(first: 1, after: $after, orderBy: $orderBy) {
    pageInfo { endCursor }
    edges { node { name } }
  }
}
"""
SUBMIT_EVENT = """
mutation ($input: EventInput!) { submitEvent(input: $input) { event { id startsAt endsAt } } }
"""

# Each is a valid ISO 8601 instant whose UTC equivalent lies outside years 1..9999.
BEYOND_UTC_RANGE = ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"]


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def refused(body: dict[str, Any], field: str) -> None:
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == field


# --- instants ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", BEYOND_UTC_RANGE)
@pytest.mark.parametrize("name", ["startsAfter", "startsBefore", "endsAfter"])
async def test_event_filter_instants_beyond_the_utc_range_are_bad_user_input(
    client: httpx.AsyncClient, name: str, value: str
) -> None:
    await make_event("Fair")

    body = await gql(client, EVENTS, {"filter": {name: value, "upcoming": False}})

    refused(body, f"filter.{name}")


async def test_event_filter_instants_in_any_offset_compare_as_the_same_moment(
    client: httpx.AsyncClient,
) -> None:
    await make_event("Fair", starts_in=timedelta(days=2))
    starts = NOW + timedelta(days=2)
    # the same instant written 14 hours west of UTC
    west = (starts - timedelta(hours=14)).replace(tzinfo=None).isoformat() + "-14:00"

    on_time = await gql(client, EVENTS, {"filter": {"startsAfter": west}})
    too_late = await gql(client, EVENTS, {"filter": {"startsBefore": west}})

    assert [e["node"]["title"] for e in on_time["data"]["events"]["edges"]] == ["Fair"]
    assert too_late["data"]["events"]["edges"] == []


@pytest.mark.parametrize("value", BEYOND_UTC_RANGE)
@pytest.mark.parametrize("name", ["startsAt", "endsAt"])
async def test_submitted_event_instants_beyond_the_utc_range_are_bad_user_input(
    client: httpx.AsyncClient, cognito: FakeCognito, name: str, value: str
) -> None:
    owner = await person(cognito, "owner")
    event = {
        "title": "Pop-up",
        "latitude": 30.27,
        "longitude": -97.74,
        "startsAt": (NOW + timedelta(days=5)).isoformat(),
        "endsAt": (NOW + timedelta(days=5, hours=3)).isoformat(),
        name: value,
    }

    body = await post(client, owner, SUBMIT_EVENT, {"input": event})

    refused(body, f"input.{name}")
    assert await Event.all().count() == 0


@pytest.mark.parametrize(
    ("name", "value"),
    [("startsAt", "0001-01-01T00:00:00Z"), ("endsAt", "9999-12-31T23:59:59.999999Z")],
)
async def test_submitted_event_at_the_first_or_last_representable_instant_is_refused(
    client: httpx.AsyncClient, cognito: FakeCognito, name: str, value: str
) -> None:
    # asyncpg would store these as -infinity/infinity and read them back without a zone:
    # every later read of the event comparing them with now() would be a 500
    owner = await person(cognito, "owner")
    event = {
        "title": "Forever",
        "latitude": 30.27,
        "longitude": -97.74,
        "startsAt": (NOW + timedelta(days=5)).isoformat(),
        "endsAt": (NOW + timedelta(days=6)).isoformat(),
        name: value,
    }

    body = await post(client, owner, SUBMIT_EVENT, {"input": event})
    mine = await post(client, owner, "{ me { submittedEvents { isActive } } }")

    refused(body, f"input.{name}")
    assert mine == {"data": {"me": {"submittedEvents": []}}}


@pytest.mark.parametrize("value", BEYOND_UTC_RANGE)
@pytest.mark.parametrize("name", ["startsAt", "endsAt"])
async def test_updated_event_instants_beyond_the_utc_range_are_bad_user_input(
    client: httpx.AsyncClient, cognito: FakeCognito, name: str, value: str
) -> None:
    owner = await person(cognito, "owner")
    event = await make_event("Fair", status=EventStatus.PENDING, created_by=owner.user)

    body = await post(
        client,
        owner,
        "mutation ($id: ID!, $input: EventUpdateInput!) {"
        " updateEvent(id: $id, input: $input) { event { startsAt endsAt } } }",
        {"id": global_id("Event", event.id), "input": {name: value}},
    )

    refused(body, f"input.{name}")
    stored = await Event.get(id=event.id)
    assert (stored.starts_at, stored.ends_at) == (event.starts_at, event.ends_at)


# --- cursors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "cursor_json"),
    [
        ("NAME_ASC", '["NAME_ASC","a\\u0000b",1]'),  # PostgreSQL text cannot hold NUL
        ("NAME_ASC", '["NAME_ASC","\\ud800",1]'),  # a lone surrogate has no UTF-8 form
        ("NAME_ASC", '["NAME_ASC","x",true]'),  # json's true is not the id 1
        ("NAME_ASC", '["NAME_ASC", "x", 1]'),  # not the spacing we write
        ("NEWEST_FIRST", '["NEWEST_FIRST","9999-12-31T23:59:59-14:00",1]'),
        ("NEWEST_FIRST", '["NEWEST_FIRST","0001-01-01T00:00:00+14:00",1]'),
    ],
)
async def test_business_cursor_holding_unstorable_or_odd_values_is_bad_user_input(
    client: httpx.AsyncClient, order: str, cursor_json: str
) -> None:
    await make_business("Shop")

    body = await gql(client, BUSINESSES, {"after": b64(cursor_json), "orderBy": order})

    refused(body, "after")


@pytest.mark.parametrize("value", BEYOND_UTC_RANGE)
async def test_event_cursor_beyond_the_utc_range_is_bad_user_input(
    client: httpx.AsyncClient, value: str
) -> None:
    await make_event("Fair")
    cursor = b64(json.dumps(["STARTS_AT_ASC", value, 1], separators=(",", ":")))

    body = await gql(client, EVENTS, {"after": cursor})

    refused(body, "after")


async def test_cursors_are_accepted_only_in_the_form_the_api_wrote_them(
    client: httpx.AsyncClient,
) -> None:
    await make_event("Day 1", starts_in=timedelta(days=1))
    await make_event("Day 2", starts_in=timedelta(days=2))
    first = await gql(client, EVENTS, {"first": 1})
    cursor = first["data"]["events"]["pageInfo"]["endCursor"]
    [made_for, starts_at, pk] = json.loads(base64.urlsafe_b64decode(cursor + "=="))

    second = await gql(client, EVENTS, {"first": 1, "after": cursor})
    assert [e["node"]["title"] for e in second["data"]["events"]["edges"]] == ["Day 2"]
    odd_forms = [
        cursor + "=" * (-len(cursor) % 4 or 4),  # padded
        cursor[:4] + "\n" + cursor[4:],  # base64 decoders skip such characters
        cursor[:4] + "!" + cursor[4:],
        cursor + "\x00",
        b64(json.dumps([made_for, starts_at, pk])),  # same content, other spacing
    ]
    for odd in odd_forms:
        refused(await gql(client, EVENTS, {"first": 1, "after": odd}), "after")


# --- IDs --------------------------------------------------------------------------------

ODD_FORMS_OF_ONE = [
    "Business: 1",  # int() skips spaces
    "Business:1 ",
    "Business:+1",
    "Business:01",  # leading zero
    "Business:1_0",  # int() reads "1_0" as 10
    "Business:\u0661",  # ARABIC-INDIC DIGIT ONE, which int() reads as 1
    "Business:\uff11",  # FULLWIDTH DIGIT ONE
    "business:1",
    "Business:1:",
    "Business:1\x00",
]


def odd_ids() -> list[str]:
    ids = [b64(text) for text in ODD_FORMS_OF_ONE]
    canonical = global_id("Business", 1)
    ids += [
        canonical + "=" * (-len(canonical) % 4 or 4),  # padded
        base64.b64encode(b"Business:1").decode(),  # standard alphabet, padded
        canonical[:3] + "\n" + canonical[3:],  # a skipped character inside
        canonical + "\x00",
        " " + canonical,
    ]
    return ids


async def test_canonical_id_still_finds_the_business(client: httpx.AsyncClient) -> None:
    shop = await make_business("Shop")
    assert shop.id == 1

    body = await gql(
        client, "query ($id: ID!) { business(id: $id) { name } }", {"id": global_id("Business", 1)}
    )

    assert body == {"data": {"business": {"name": "Shop"}}}


@pytest.mark.parametrize("odd", odd_ids())
async def test_lookup_by_any_other_form_of_an_id_finds_nothing(
    client: httpx.AsyncClient, odd: str
) -> None:
    await make_business("Shop")  # id 1 (and id 10, for "1_0")
    for _ in range(9):
        await make_business("Filler")

    body = await gql(client, "query ($id: ID!) { business(id: $id) { name } }", {"id": odd})

    # An ID has one form: any other text names no business, as an unknown ID does.
    assert body["data"] == {"business": None}
    assert error_codes(body) == ["NOT_FOUND"], body


@pytest.mark.parametrize("odd", odd_ids())
async def test_event_filter_by_any_other_form_of_a_business_id_is_refused(
    client: httpx.AsyncClient, odd: str
) -> None:
    shop = await make_business("Shop")
    await make_event("Fair", businesses=[shop])

    body = await gql(client, EVENTS, {"filter": {"businessId": odd}})

    refused(body, "filter.businessId")


@pytest.mark.parametrize("odd", odd_ids())
async def test_mutation_with_any_other_form_of_an_id_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, cognito: FakeCognito, odd: str
) -> None:
    staff = await person(cognito, "moderator", groups=("staff",))
    await make_business("Draft", verified=False)

    body = await post(
        client,
        staff,
        "mutation ($id: ID!) { verifyBusiness(id: $id) { business { isVerified } } }",
        {"id": odd},
    )

    refused(body, "id")
    assert not (await Business.get(id=1)).is_verified


async def test_join_with_another_form_of_the_event_id_is_refused(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    owner = await person(cognito, "owner")
    shop = await make_business("Shop", owner=owner.user)
    fair = await make_event("Fair", status=EventStatus.APPROVED)
    assert fair.id == 1

    body = await post(
        client,
        owner,
        "mutation ($e: ID!, $b: ID!) { joinEvent(eventId: $e, businessId: $b) { changed } }",
        {"e": b64("Event:01"), "b": global_id("Business", shop.id)},
    )

    refused(body, "eventId")
