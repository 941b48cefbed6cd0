"""Owners change and cancel their events; updateBusiness names its business with `id`."""

from __future__ import annotations

import asyncio
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from popmap_gql.db.models import Business, Event, EventStatus
from tests.fake_cognito import FakeCognito
from tests.helpers import NOW, error_codes, global_id, make_business, make_event
from tests.people import ANONYMOUS, Person, person, post

ROOT = Path(__file__).resolve().parent.parent

UPDATE_EVENT = """
mutation ($id: ID!, $input: EventUpdateInput!) {
  updateEvent(id: $id, input: $input) {
    changed
    returnedToPending
    event { id title description status startsAt endsAt locationName address latitude longitude }
  }
}
"""
CANCEL_EVENT = """
mutation ($id: ID!) { cancelEvent(id: $id) { changed event { id status } } }
"""
UPDATE_BUSINESS = """
mutation ($id: ID, $businessId: ID, $input: BusinessInput!) {
  updateBusiness(id: $id, businessId: $businessId, input: $input) { business { id name } }
}
"""
EVENTS = "{ events { edges { node { id title status } } } }"


@pytest.fixture
async def owner(client: httpx.AsyncClient, cognito: FakeCognito) -> Person:
    return await person(cognito, "owner")


@pytest.fixture
async def staff(client: httpx.AsyncClient, cognito: FakeCognito) -> Person:
    return await person(cognito, "moderator", groups=("staff",))


async def own_event(owner: Person, status: EventStatus, **fields: Any) -> Event:
    return await make_event(
        "Fair",
        status=status,
        created_by=owner.user,
        location_name="Town square",
        address="1 Main St",
        description="Stalls and music",
        **fields,
    )


async def columns(event: Event) -> dict[str, Any]:
    """Every column of the event as stored now."""
    [row] = await Event.filter(id=event.id).values()
    return row


async def update(
    client: httpx.AsyncClient, who: Person, event: Event, changes: dict[str, Any]
) -> dict[str, Any]:
    return await post(
        client, who, UPDATE_EVENT, {"id": global_id("Event", event.id), "input": changes}
    )


# --- updating -------------------------------------------------------------------------------


async def test_creator_edits_a_pending_event_and_omitted_fields_stay(
    client: httpx.AsyncClient, owner: Person
) -> None:
    event = await own_event(owner, EventStatus.PENDING)
    starts = event.starts_at - timedelta(hours=1)

    body = await update(
        client,
        owner,
        event,
        {"title": "  Night fair ", "startsAt": starts.isoformat(), "endsAt": None},
    )

    assert "errors" not in body, body
    payload = body["data"]["updateEvent"]
    assert payload["changed"] is True
    assert payload["returnedToPending"] is False
    assert payload["event"]["id"] == global_id("Event", event.id)
    assert payload["event"]["title"] == "Night fair"
    assert payload["event"]["status"] == "PENDING"
    assert payload["event"]["description"] == "Stalls and music"
    stored = await Event.get(id=event.id)
    assert (stored.title, stored.starts_at, stored.ends_at) == ("Night fair", starts, event.ends_at)
    assert stored.address == "1 Main St"


PLACE_AND_TIME_CHANGES = [
    {"startsAt": (NOW + timedelta(days=1, hours=1)).isoformat()},
    {"endsAt": (NOW + timedelta(days=1, hours=5)).isoformat()},
    {"locationName": "Old mill"},
    {"address": "2 Mill Rd"},
    {"latitude": 30.5},
    {"longitude": -97.5},
]


@pytest.mark.parametrize("changes", PLACE_AND_TIME_CHANGES)
async def test_creator_moving_an_approved_event_returns_it_to_pending(
    client: httpx.AsyncClient, owner: Person, changes: dict[str, Any]
) -> None:
    event = await own_event(owner, EventStatus.APPROVED)

    body = await update(client, owner, event, changes)

    payload = body["data"]["updateEvent"]
    assert payload["returnedToPending"] is True
    assert payload["event"]["status"] == "PENDING"
    assert (await Event.get(id=event.id)).status is EventStatus.PENDING


async def test_host_owner_moving_an_approved_event_returns_it_to_pending_and_public_loses_it(
    client: httpx.AsyncClient, owner: Person
) -> None:
    host = await make_business("Crumbs", owner=owner.user)
    event = await make_event("Fair", host_business=host)
    assert (await post(client, ANONYMOUS, EVENTS))["data"]["events"]["edges"] != []

    body = await update(client, owner, event, {"address": "2 Mill Rd"})

    assert body["data"]["updateEvent"]["returnedToPending"] is True
    assert (await post(client, ANONYMOUS, EVENTS))["data"]["events"]["edges"] == []


async def test_staff_moving_an_approved_event_keeps_it_approved(
    client: httpx.AsyncClient, owner: Person, staff: Person
) -> None:
    event = await own_event(owner, EventStatus.APPROVED)

    body = await update(client, staff, event, {"latitude": 31.0, "locationName": "Old mill"})

    payload = body["data"]["updateEvent"]
    assert (payload["changed"], payload["returnedToPending"]) == (True, False)
    assert payload["event"]["status"] == "APPROVED"
    stored = await Event.get(id=event.id)
    assert (stored.status, stored.latitude) == (EventStatus.APPROVED, 31.0)


@pytest.mark.parametrize(
    "changes",
    [
        {"title": "Night fair"},
        {"description": "Now with tacos"},
        {"imageUrl": "https://i.example/a"},
    ],
)
async def test_a_change_of_neither_place_nor_time_keeps_an_approved_event_approved(
    client: httpx.AsyncClient, owner: Person, changes: dict[str, Any]
) -> None:
    event = await own_event(owner, EventStatus.APPROVED)

    body = await update(client, owner, event, changes)

    payload = body["data"]["updateEvent"]
    assert (payload["changed"], payload["returnedToPending"]) == (True, False)
    assert (await Event.get(id=event.id)).status is EventStatus.APPROVED


async def test_resending_the_same_place_and_time_changes_nothing(
    client: httpx.AsyncClient, owner: Person
) -> None:
    event = await own_event(owner, EventStatus.APPROVED)
    before = await columns(event)
    same_instant = event.starts_at.astimezone(timezone(timedelta(hours=-5)))

    body = await update(
        client,
        owner,
        event,
        {"startsAt": same_instant.isoformat(), "address": "1 Main St", "latitude": 30.27},
    )

    payload = body["data"]["updateEvent"]
    assert (payload["changed"], payload["returnedToPending"]) == (False, False)
    assert await columns(event) == before


UPDATE_RULES = [
    ({"title": " "}, "input.title"),
    ({"title": "t" * 201}, "input.title"),
    ({"title": "Nul\x00byte"}, "input.title"),
    ({"latitude": 90.5}, "input.latitude"),
    ({"longitude": -200}, "input.longitude"),
    ({"description": "d" * 5001}, "input.description"),
    ({"imageUrl": "javascript:alert(document.cookie)"}, "input.imageUrl"),
    ({"startsAt": "2026-12-01T10:00:00"}, "input.startsAt"),
    # only one end given: the merged event would end before it starts
    ({"endsAt": (NOW + timedelta(hours=1)).isoformat()}, "input.endsAt"),
    ({"startsAt": (NOW + timedelta(days=2)).isoformat()}, "input.endsAt"),
]


@pytest.mark.parametrize(("changes", "field"), UPDATE_RULES)
async def test_invalid_update_is_refused_with_the_field_and_writes_nothing(
    client: httpx.AsyncClient, owner: Person, changes: dict[str, Any], field: str
) -> None:
    event = await own_event(owner, EventStatus.APPROVED)  # starts in a day, lasts 3 hours
    before = await columns(event)

    body = await update(client, owner, event, {"locationName": "Old mill", **changes})

    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == field
    assert await columns(event) == before


async def test_a_bad_event_id_is_bad_user_input(client: httpx.AsyncClient, owner: Person) -> None:
    body = await post(
        client, owner, UPDATE_EVENT, {"id": global_id("Business", 1), "input": {"title": "x"}}
    )

    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == "id"


async def test_someone_else_gets_forbidden_before_their_input_is_looked_at(
    client: httpx.AsyncClient, owner: Person, cognito: FakeCognito
) -> None:
    event = await own_event(owner, EventStatus.APPROVED)
    stranger = await person(cognito, "stranger")
    before = await columns(event)

    body = await update(client, stranger, event, {"title": " ", "latitude": 500})

    assert error_codes(body) == ["FORBIDDEN"]
    assert await columns(event) == before


async def test_a_host_owner_cannot_reach_a_pending_event_someone_else_submitted(
    client: httpx.AsyncClient, owner: Person, staff: Person
) -> None:
    host = await make_business("Crumbs", owner=owner.user)
    event = await make_event(
        "Fair", status=EventStatus.PENDING, host_business=host, created_by=staff.user
    )

    edited = await update(client, owner, event, {"title": "Mine now"})
    cancelled = await post(client, owner, CANCEL_EVENT, {"id": global_id("Event", event.id)})

    # pending events are visible to their submitter and staff only, and the unseen is absent
    assert error_codes(edited) == error_codes(cancelled) == ["NOT_FOUND"]
    assert (await Event.get(id=event.id)).status is EventStatus.PENDING


# --- cancelling -----------------------------------------------------------------------------


async def test_cancelling_is_final_and_cancelling_again_changes_nothing(
    client: httpx.AsyncClient, owner: Person, staff: Person
) -> None:
    event = await own_event(owner, EventStatus.APPROVED)
    ids = {"id": global_id("Event", event.id)}

    cancelled = (await post(client, owner, CANCEL_EVENT, ids))["data"]["cancelEvent"]
    again = (await post(client, owner, CANCEL_EVENT, ids))["data"]["cancelEvent"]
    before = await columns(event)
    edited = await update(client, owner, event, {"title": "Back on"})
    edited_by_staff = await update(client, staff, event, {"title": "Back on"})

    assert cancelled == {"changed": True, "event": {**ids, "status": "CANCELLED"}}
    assert again == {"changed": False, "event": {**ids, "status": "CANCELLED"}}
    for body in (edited, edited_by_staff):
        assert error_codes(body) == ["BAD_USER_INPUT"]
        assert body["errors"][0]["extensions"]["field"] == "id"
    assert await columns(event) == before


async def test_a_rejected_event_can_be_neither_changed_nor_cancelled(
    client: httpx.AsyncClient, owner: Person
) -> None:
    event = await own_event(owner, EventStatus.REJECTED)
    before = await columns(event)

    edited = await update(client, owner, event, {"title": "Try again"})
    cancelled = await post(client, owner, CANCEL_EVENT, {"id": global_id("Event", event.id)})

    for body in (edited, cancelled):
        assert error_codes(body) == ["BAD_USER_INPUT"]
        assert body["errors"][0]["extensions"]["field"] == "id"
    assert await columns(event) == before


async def test_twenty_concurrent_cancels_change_the_event_once(
    client: httpx.AsyncClient, owner: Person
) -> None:
    event = await own_event(owner, EventStatus.APPROVED)
    ids = {"id": global_id("Event", event.id)}

    bodies = await asyncio.gather(*(post(client, owner, CANCEL_EVENT, ids) for _ in range(20)))

    assert all("errors" not in body for body in bodies), bodies
    assert sum(body["data"]["cancelEvent"]["changed"] for body in bodies) == 1
    assert (await Event.get(id=event.id)).status is EventStatus.CANCELLED


# --- the response cache ---------------------------------------------------------------------


async def cached_events(client: httpx.AsyncClient) -> tuple[list[dict[str, Any]], str | None]:
    response = await client.post("/graphql", json={"query": EVENTS})
    assert response.status_code == 200, response.text
    edges = response.json()["data"]["events"]["edges"]
    return [edge["node"] for edge in edges], response.headers.get("x-popmap-cache")


async def test_cached_lists_show_an_update_and_a_cancel_at_once(
    client: httpx.AsyncClient, owner: Person
) -> None:
    event = await own_event(owner, EventStatus.APPROVED)
    node = {"id": global_id("Event", event.id), "title": "Fair", "status": "APPROVED"}
    assert await cached_events(client) == ([node], "miss")
    assert await cached_events(client) == ([node], "hit")

    await update(client, owner, event, {"title": "Night fair"})
    renamed = await cached_events(client)
    await post(client, owner, CANCEL_EVENT, {"id": node["id"]})
    after_cancel = await cached_events(client)

    assert renamed == ([{**node, "title": "Night fair"}], "miss")
    assert after_cancel == ([], "miss")


# --- updateBusiness(id:) and the deprecated businessId ------------------------------------


@pytest.mark.parametrize("argument", ["id", "businessId"])
async def test_update_business_takes_id_and_still_the_deprecated_business_id(
    client: httpx.AsyncClient, owner: Person, argument: str
) -> None:
    business = await make_business("Crumbs", owner=owner.user)
    business_id = global_id("Business", business.id)

    body = await post(
        client, owner, UPDATE_BUSINESS, {argument: business_id, "input": {"name": "Crumbs & Co"}}
    )

    assert "errors" not in body, body
    assert body["data"]["updateBusiness"]["business"] == {"id": business_id, "name": "Crumbs & Co"}
    assert (await Business.get(id=business.id)).name == "Crumbs & Co"


@pytest.mark.parametrize("given", [("id", "businessId"), ()])
async def test_update_business_needs_exactly_one_of_id_and_business_id(
    client: httpx.AsyncClient, owner: Person, given: tuple[str, ...]
) -> None:
    business = await make_business("Crumbs", owner=owner.user)
    arguments = dict.fromkeys(given, global_id("Business", business.id))

    body = await post(client, owner, UPDATE_BUSINESS, {**arguments, "input": {"name": "Other"}})

    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == "id"
    assert (await Business.get(id=business.id)).name == "Crumbs"


async def test_business_id_of_update_business_is_deprecated_in_the_schema(
    client: httpx.AsyncClient,
) -> None:
    query = """{ __type(name: "Mutation") { fields { name
      args(includeDeprecated: true) { name isDeprecated deprecationReason } } } }"""

    body = await post(client, ANONYMOUS, query)

    [field] = [f for f in body["data"]["__type"]["fields"] if f["name"] == "updateBusiness"]
    deprecated = {arg["name"]: arg["isDeprecated"] for arg in field["args"]}
    assert deprecated == {"id": False, "input": False, "businessId": True}
    sdl = (ROOT / "schema.graphql").read_text()
    assert 'businessId: ID = null @deprecated(reason: "Use `id`' in sdl
