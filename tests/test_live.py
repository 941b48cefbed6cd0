"""Live updates: real graphql-transport-ws clients over loopback against the real server.

Changes are made through the API (its mutations send the NOTIFY), never by writing rows
behind its back; rows a test needs beforehand are made directly. "Nobody else hears it"
is shown without waiting for silence: a later change the viewer does see must be the
next message it gets.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from tortoise.connection import connections
from websockets.exceptions import InvalidStatus

from popmap_gql.config import Settings
from popmap_gql.db.models import CognitoIdentity, EventStatus, User
from popmap_gql.db.orm import connection_credentials
from popmap_gql.live.cohorts import MAX_EVENTS, Cohort, Hub
from popmap_gql.live.ws import LiveEndpoint
from tests.fake_cognito import ISSUER, FakeCognito
from tests.helpers import global_id, make_business, make_event
from tests.live_client import PATIENCE_SECONDS, LiveClient, SilentClient, live
from tests.people import Person, person
from tests.processes import free_port, server_process

EVENTS = """
subscription Map($filter: EventFilter) {
  eventsChanged(filter: $filter) { change eventId event { title status } }
}"""

AUSTIN = {"north": 31.0, "south": 30.0, "east": -97.0, "west": -98.0}


async def mutate(
    client: httpx.AsyncClient, who: Person, query: str, variables: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables}, headers=who.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    return body


async def moderate(client: httpx.AsyncClient, staff: Person, event_id: int, status: str) -> None:
    await mutate(
        client,
        staff,
        "mutation($id: ID!, $s: EventStatus!)"
        " { moderateEvent(id: $id, status: $s) { event { id } } }",
        {"id": global_id("Event", event_id), "s": status},
    )


def change_of(message: dict[str, Any]) -> tuple[str, str, dict[str, Any] | None]:
    value = message["payload"]["data"]["eventsChanged"]
    return value["change"], value["eventId"], value["event"]


async def open_subscription(
    client: LiveClient,
    who: Person | None,
    variables: dict[str, Any] | None = None,
    query: str = EVENTS,
) -> None:
    payload = {"Authorization": f"Bearer {who.token}"} if who is not None and who.token else None
    assert (await client.init(payload))["type"] == "connection_ack"
    await client.subscribe("map", query, variables or {"filter": {}})
    # The server acknowledges nothing for a subscription; a ping answered after the
    # subscribe message means the subscription is in place (messages are handled in order).
    await client.send({"type": "ping"})
    assert (await client.receive())["type"] == "pong"


# --- the protocol -------------------------------------------------------------------------


async def test_connection_is_acknowledged_and_pings_are_answered(api_url: str) -> None:
    async with live(api_url) as client:
        assert await client.init() == {"type": "connection_ack"}
        await client.send({"type": "ping", "payload": {"n": 1}})
        assert (await client.receive())["type"] == "pong"


@pytest.mark.parametrize(
    ("messages", "code"),
    [
        ([{"id": "1", "type": "subscribe", "payload": {"query": EVENTS}}], 4401),
        ([{"type": "connection_init"}, {"type": "connection_init"}], 4429),
        ([{"type": "connection_init"}, {"type": "nonsense"}], 4400),
        ([{"type": "connection_init"}, {"type": "\U0001f600" * 40}], 4400),
        ([{"type": "connection_init"}, {"id": "1", "type": "subscribe"}], 4400),
        (
            [
                {"type": "connection_init"},
                {"id": "1", "type": "subscribe", "payload": {"query": EVENTS}},
                {"id": "1", "type": "subscribe", "payload": {"query": EVENTS}},
            ],
            4409,
        ),
        (
            [
                {"type": "connection_init"},
                {"id": "\U0001f600" * 40, "type": "subscribe", "payload": {"query": EVENTS}},
                {"id": "\U0001f600" * 40, "type": "subscribe", "payload": {"query": EVENTS}},
            ],
            4409,
        ),
        ([{"type": "connection_init", "payload": {"Authorization": "Bearer not.a.jwt"}}], 4403),
        ([{"type": "connection_init", "payload": {"Authorization": 7}}], 4403),
        ([{"type": "connection_init", "payload": ["Bearer x"]}], 4400),
        ([{"type": "connection_init"}, {"type": "subscribe", "payload": {"query": EVENTS}}], 4400),
        *(
            ([{"type": "connection_init"}, {"id": "1", "type": "subscribe", "payload": p}], 4400)
            for p in (
                {"query": 1},
                {"query": EVENTS, "variables": []},
                {"query": EVENTS, "operationName": 1},
                {"query": EVENTS, "extensions": "x"},
            )
        ),
    ],
    ids=[
        "subscribe-before-ack",
        "second-init",
        "unknown-type",
        "unknown-type-of-long-characters",
        "no-payload",
        "duplicate-id",
        "duplicate-id-of-long-characters",
        "bad-token",
        "authorization-not-a-string",
        "init-payload-not-an-object",
        "subscribe-without-an-id",
        "query-not-a-string",
        "variables-not-an-object",
        "operation-name-not-a-string",
        "extensions-not-an-object",
    ],
)
async def test_protocol_violations_close_with_the_protocols_codes(
    api_url: str, clean_db: None, messages: list[dict[str, Any]], code: int
) -> None:
    async with live(api_url) as client:
        for message in messages:
            await client.send(message)
        assert await client.closed_with() == code


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", 4400),
        ("[1]", 4400),
        ('{"type": 1}', 4400),
        (b'{"type": "connection_init"}', 4400),  # a binary frame
        ('{"type": "ping", "payload": "' + "x" * 100_000 + '"}', 1009),  # > POPMAP_MAX_BODY_BYTES
        ('{"type": "ping", "payload": "' + "\u00e9" * 50_001 + '"}', 1009),  # 2 bytes each
    ],
    ids=["not-json", "not-an-object", "type-not-a-string", "binary", "too-big", "too-big-in-bytes"],
)
async def test_frames_that_are_not_messages_close_the_socket(
    api_url: str, frame: str | bytes, code: int
) -> None:
    async with live(api_url) as client:
        await client.socket.send(frame)
        assert await client.closed_with() == code


async def test_a_pong_from_the_client_is_accepted_and_nothing_answers_it(api_url: str) -> None:
    async with live(api_url) as client:
        assert (await client.init())["type"] == "connection_ack"
        await client.send({"type": "pong", "payload": {"n": 1}})
        await client.send({"type": "ping"})
        assert await client.receive() == {"type": "pong"}


@pytest.mark.parametrize(
    ("payload", "code", "message"),
    [
        ({}, "BAD_REQUEST", "No GraphQL query found in the request"),
        (
            {"query": EVENTS, "operationName": "Elsewhere"},
            "BAD_REQUEST",
            'Unknown operation named "Elsewhere".',  # as over HTTP
        ),
        (
            {
                "query": "subscription { eventsChanged { event { "
                + " ".join(f"a{i}: title" for i in range(31))
                + " } } }"
            },
            "TOO_MANY_ALIASES",
            None,
        ),
    ],
    ids=["no-query", "unknown-operation", "over-an-admission-limit"],
)
async def test_a_subscribe_the_document_checks_refuse_is_an_error_for_its_id(
    api_url: str, payload: dict[str, Any], code: str, message: str | None
) -> None:
    async with live(api_url) as client:
        assert (await client.init())["type"] == "connection_ack"
        await client.send({"id": "s", "type": "subscribe", "payload": payload})
        refused = await client.receive()
        assert refused["type"] == "error", refused
        assert refused["id"] == "s"
        [error] = refused["payload"]
        assert error["extensions"]["code"] == code, error
        if message is not None:
            assert error["message"] == message
        await client.send({"type": "ping"})
        assert (await client.receive())["type"] == "pong"  # the socket goes on


async def test_a_socket_without_the_subprotocol_is_closed_4406(api_url: str) -> None:
    async with live(api_url, subprotocols=[]) as client:
        assert await client.closed_with() == 4406


async def test_a_bad_token_in_the_upgrade_header_closes_4403(api_url: str) -> None:
    async with live(api_url, headers={"Authorization": "Bearer nope"}) as client:
        await client.send({"type": "connection_init"})
        assert await client.closed_with() == 4403


async def test_a_browser_origin_not_allowed_by_cors_is_refused(api_url: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with live(api_url, origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403


async def test_an_allowed_browser_origin_connects(api_url: str, settings: Settings) -> None:
    async with live(api_url, origin=settings.cors_allowed_origins[0]) as client:
        assert (await client.init())["type"] == "connection_ack"


async def test_queries_and_mutations_are_refused_over_the_socket(
    api_url: str, clean_db: None
) -> None:
    async with live(api_url) as client:
        await client.init()
        await client.subscribe("q", "{ categories { name } }")
        message = await client.receive()
        assert message["type"] == "error"
        assert message["id"] == "q"
        assert message["payload"][0]["extensions"]["code"] == "OPERATION_NOT_SUPPORTED"


async def test_an_invalid_subscription_is_an_error_message_not_a_close(
    api_url: str, clean_db: None
) -> None:
    async with live(api_url) as client:
        await client.init()
        await client.subscribe("bad", "subscription { eventsChanged { nope } }")
        message = await client.receive()
        assert message["type"] == "error"
        assert message["id"] == "bad"
        await client.send({"type": "ping"})
        assert (await client.receive())["type"] == "pong"  # still open


async def test_a_status_filter_is_refused_to_anonymous_subscribers_as_over_http(
    api_url: str, clean_db: None
) -> None:
    async with live(api_url) as client:
        await client.init()
        await client.subscribe("s", EVENTS, {"filter": {"status": "PENDING"}})
        message = await client.receive()
        assert message["type"] == "error"
        assert message["payload"][0]["extensions"]["code"] == "FORBIDDEN"


async def test_a_subscription_over_http_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"query": EVENTS})
    assert response.status_code == 405
    assert response.json()["errors"][0]["extensions"]["code"] == "METHOD_NOT_ALLOWED"


async def test_a_token_closes_the_socket_with_4403_when_it_expires(
    api_url: str, clean_db: None, cognito: FakeCognito
) -> None:
    sub = str(uuid.uuid4())
    user = await User.create(username="expiring", email="expiring@example.com")
    await CognitoIdentity.create(user=user, issuer=ISSUER, sub=sub, profile_complete=True)
    token = cognito.id_token(
        sub=sub,
        email="expiring@example.com",
        exp=int(time.time()) + 2,
        **{"cognito:username": "expiring"},
    )
    async with live(api_url) as client:
        assert (await client.init({"authorization": f"Bearer {token}"}))["type"] == "connection_ack"
        assert await client.closed_with() == 4403


async def test_a_service_token_closes_the_socket_with_4403_when_it_expires(
    api_url: str, clean_db: None, cognito: FakeCognito
) -> None:
    """A service has no user, so its viewer is not remembered: its token's expiry is read
    from the token itself."""
    token = cognito.service_token(scopes=["popmap/read.all"], exp=int(time.time()) + 2)
    async with live(api_url) as client:
        assert (await client.init({"authorization": f"Bearer {token}"}))["type"] == "connection_ack"
        assert await client.closed_with() == 4403


# --- what each viewer hears -----------------------------------------------------------------


async def test_an_owner_hears_their_pending_event_and_anonymous_does_not(
    api_url: str, client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    owner = await person(cognito, "owner")
    staff = await person(cognito, "moderator", ("staff",))
    public = await make_event("later approved", status=EventStatus.PENDING)
    async with live(api_url) as anonymous, live(api_url) as mine:
        await open_subscription(anonymous, None)
        # the key's case is the client's affair
        assert (await mine.init({"authorization": f"Bearer {owner.token}"}))[
            "type"
        ] == "connection_ack"
        await mine.subscribe("map", EVENTS, {"filter": {}})
        await mine.send({"type": "ping"})
        assert (await mine.receive())["type"] == "pong"

        body = await mutate(
            client,
            owner,
            "mutation($i: EventInput!) { submitEvent(input: $i) { event { id } } }",
            {
                "i": {
                    "title": "my pop-up",
                    "latitude": 30.3,
                    "longitude": -97.7,
                    "startsAt": "2031-01-01T10:00:00Z",
                    "endsAt": "2031-01-01T12:00:00Z",
                }
            },
        )
        own_id = body["data"]["submitEvent"]["event"]["id"]
        kind, event_id, event = change_of(await mine.next_change())
        assert (kind, event_id) == ("ADDED", own_id)
        assert event == {"title": "my pop-up", "status": "PENDING"}

        await moderate(client, staff, public.id, "APPROVED")
        # anonymous: the approved event is the first thing it hears of
        kind, event_id, event = change_of(await anonymous.next_change())
        assert (kind, event_id) == ("ADDED", global_id("Event", public.id))
        assert event == {"title": "later approved", "status": "APPROVED"}
        kind, event_id, _ = change_of(await mine.next_change())
        assert (kind, event_id) == ("ADDED", global_id("Event", public.id))


async def test_staff_and_the_owner_hear_a_rejection_and_anonymous_does_not(
    api_url: str, client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    owner = await person(cognito, "owner2")
    staff = await person(cognito, "moderator2", ("staff",))
    assert owner.user is not None
    event = await make_event("owned", status=EventStatus.PENDING, created_by=owner.user)
    sentinel = await make_event("sentinel", status=EventStatus.PENDING)
    async with (
        live(api_url) as watching_staff,
        live(api_url) as watching_owner,
        live(api_url) as anonymous,
    ):
        await open_subscription(watching_staff, staff)
        await open_subscription(watching_owner, owner)
        await open_subscription(anonymous, None)
        await moderate(client, staff, event.id, "REJECTED")
        for watching in (watching_staff, watching_owner):
            kind, event_id, seen = change_of(await watching.next_change())
            assert (kind, event_id) == ("UPDATED", global_id("Event", event.id))
            assert seen == {"title": "owned", "status": "REJECTED"}
        await moderate(client, staff, sentinel.id, "APPROVED")
        assert change_of(await anonymous.next_change())[:2] == (
            "ADDED",
            global_id("Event", sentinel.id),
        )


async def test_cancelling_an_approved_event_removes_it(
    api_url: str, client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    owner = await person(cognito, "canceller")
    assert owner.user is not None
    event = await make_event("to cancel", created_by=owner.user)
    async with live(api_url) as anonymous:
        await open_subscription(anonymous, None)
        await mutate(
            client,
            owner,
            "mutation($id: ID!) { cancelEvent(id: $id) { event { id } } }",
            {"id": global_id("Event", event.id)},
        )
        assert change_of(await anonymous.next_change()) == (
            "REMOVED",
            global_id("Event", event.id),
            None,
        )


async def test_moving_an_event_out_of_the_box_removes_it_and_back_in_adds_it(
    api_url: str, client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    staff = await person(cognito, "mover", ("staff",))
    event = await make_event("mobile", latitude=30.5, longitude=-97.5)
    move = (
        "mutation($id: ID!, $i: EventUpdateInput!) { updateEvent(id: $id, input: $i) { changed } }"
    )
    async with live(api_url) as anonymous:
        await open_subscription(anonymous, None, {"filter": {"bbox": AUSTIN}})
        await mutate(
            client, staff, move, {"id": global_id("Event", event.id), "i": {"latitude": 40.7}}
        )
        assert change_of(await anonymous.next_change())[0] == "REMOVED"
        await mutate(
            client, staff, move, {"id": global_id("Event", event.id), "i": {"latitude": 30.6}}
        )
        assert change_of(await anonymous.next_change())[:2] == (
            "ADDED",
            global_id("Event", event.id),
        )
        await mutate(
            client, staff, move, {"id": global_id("Event", event.id), "i": {"title": "renamed"}}
        )
        kind, _, seen = change_of(await anonymous.next_change())
        assert kind == "UPDATED"
        assert seen is not None
        assert seen["title"] == "renamed"


async def test_a_box_across_the_antimeridian_hears_events_on_both_sides_of_it(
    api_url: str, client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    """Fiji's box runs from 177 E to 178 W (west > east): routing must not drop an event
    east or west of the antimeridian, nor hear one outside the box."""
    staff = await person(cognito, "fijian", ("staff",))
    event = await make_event("on Taveuni", latitude=-16.8, longitude=179.9)
    move = (
        "mutation($id: ID!, $i: EventUpdateInput!) { updateEvent(id: $id, input: $i) { changed } }"
    )
    fiji = {"north": -15.0, "south": -19.0, "east": -178.0, "west": 177.0}
    async with live(api_url) as anonymous:
        await open_subscription(anonymous, None, {"filter": {"bbox": fiji}})
        for longitude, change in ((-179.9, "UPDATED"), (170.0, "REMOVED"), (178.0, "ADDED")):
            await mutate(
                client,
                staff,
                move,
                {"id": global_id("Event", event.id), "i": {"longitude": longitude}},
            )
            # UPDATED: no field it selects changed, but it is still in: so a title change is
            # the next thing heard
            if change == "UPDATED":
                await mutate(
                    client,
                    staff,
                    move,
                    {"id": global_id("Event", event.id), "i": {"title": "across"}},
                )
            assert change_of(await anonymous.next_change())[:2] == (
                change,
                global_id("Event", event.id),
            )


async def test_a_business_joining_updates_subscribers_selecting_businesses(
    api_url: str, client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    owner = await person(cognito, "vendor")
    assert owner.user is not None
    business = await make_business("Tacos", owner=owner.user)
    event = await make_event("market")
    query = """subscription { eventsChanged {
        change eventId kind: __typename event { businesses { name } } } }"""
    async with live(api_url) as anonymous:
        await open_subscription(anonymous, None, {}, query=query)
        await mutate(
            client,
            owner,
            "mutation($e: ID!, $b: ID!) { joinEvent(eventId: $e, businessId: $b) { changed } }",
            {"e": global_id("Event", event.id), "b": global_id("Business", business.id)},
        )
        value = (await anonymous.next_change())["payload"]["data"]["eventsChanged"]
        assert value == {
            "change": "UPDATED",
            "eventId": global_id("Event", event.id),
            "kind": "EventChange",
            "event": {"businesses": [{"name": "Tacos"}]},
        }
        await mutate(
            client,
            owner,
            "mutation($id: ID!, $i: BusinessInput!)"
            " { updateBusiness(id: $id, input: $i) { business { id } } }",
            {"id": global_id("Business", business.id), "i": {"name": "Tacos al Pastor"}},
        )
        value = (await anonymous.next_change())["payload"]["data"]["eventsChanged"]
        assert value["event"] == {"businesses": [{"name": "Tacos al Pastor"}]}


FRAGMENTS = """
subscription Parts($withStatus: Boolean!) {
  eventsChanged { change event { ...Outer } }
}
fragment Outer on Event { title ...Inner ...Shared }
fragment Inner on Event { status @include(if: $withStatus) ...Shared }
fragment Shared on Event { description }"""


async def test_fragments_and_the_variables_they_use_shape_each_change(
    api_url: str, client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    staff = await person(cognito, "fragments", ("staff",))
    event = await make_event("parts", description="said once")
    edit = (
        "mutation($id: ID!, $i: EventUpdateInput!) { updateEvent(id: $id, input: $i) { changed } }"
    )
    async with live(api_url) as with_status, live(api_url) as without:
        await open_subscription(with_status, None, {"withStatus": True}, query=FRAGMENTS)
        await open_subscription(without, None, {"withStatus": False}, query=FRAGMENTS)
        await mutate(client, staff, edit, {"id": global_id("Event", event.id), "i": {"title": "t"}})
        value = (await with_status.next_change())["payload"]["data"]["eventsChanged"]
        assert value == {
            "change": "UPDATED",
            "event": {"title": "t", "status": "APPROVED", "description": "said once"},
        }
        value = (await without.next_change())["payload"]["data"]["eventsChanged"]
        assert value == {"change": "UPDATED", "event": {"title": "t", "description": "said once"}}


async def test_a_change_of_a_field_nobody_selected_sends_nothing(
    api_url: str, client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    staff = await person(cognito, "quiet", ("staff",))
    first = await make_event("first")
    second = await make_event("second")
    edit = (
        "mutation($id: ID!, $i: EventUpdateInput!) { updateEvent(id: $id, input: $i) { changed } }"
    )
    async with live(api_url) as anonymous:
        await open_subscription(anonymous, None)
        await mutate(
            client, staff, edit, {"id": global_id("Event", first.id), "i": {"description": "new"}}
        )
        await mutate(
            client, staff, edit, {"id": global_id("Event", second.id), "i": {"title": "2nd"}}
        )
        assert change_of(await anonymous.next_change()) == (
            "UPDATED",
            global_id("Event", second.id),
            {"title": "2nd", "status": "APPROVED"},
        )


@pytest.mark.parametrize("inline", [False, True], ids=["variable", "inline"])
async def test_a_single_id_given_for_the_ids_list_is_heard(
    api_url: str, client: httpx.AsyncClient, cognito: FakeCognito, inline: bool
) -> None:
    # GraphQL reads one value given for a list input as a list of that one value.
    staff = await person(cognito, "single", ("staff",))
    watched = await make_event("watched")
    other = await make_event("other")
    edit = (
        "mutation($id: ID!, $i: EventUpdateInput!) { updateEvent(id: $id, input: $i) { changed } }"
    )
    watched_id = global_id("Event", watched.id)
    query, variables = EVENTS, {"filter": {"ids": watched_id}}
    if inline:
        query = EVENTS.replace("($filter: EventFilter)", "").replace(
            "(filter: $filter)", f'(filter: {{ids: "{watched_id}"}})'
        )
        variables = {}
    async with live(api_url) as anonymous:
        await open_subscription(anonymous, None, variables, query)
        await mutate(client, staff, edit, {"id": global_id("Event", other.id), "i": {"title": "o"}})
        await mutate(client, staff, edit, {"id": watched_id, "i": {"title": "w"}})
        assert change_of(await anonymous.next_change()) == (
            "UPDATED",
            watched_id,
            {"title": "w", "status": "APPROVED"},
        )


SYDNEY_BOX = "{north: -33.0, south: -34.5, east: 152.0, west: 150.0}"
DEFAULTED = {
    # the filter is a variable the client leaves out: its default applies
    "filter": EVENTS.replace(
        "$filter: EventFilter", f"$filter: EventFilter = {{bbox: {SYDNEY_BOX}}}"
    ),
    # a variable inside an inline filter, left out: its default applies
    "inside": EVENTS.replace("($filter: EventFilter)", "($south: Float = -34.5)").replace(
        "(filter: $filter)",
        "(filter: {bbox: {north: -33.0, south: $south, east: 152.0, west: 150.0}})",
    ),
}


@pytest.mark.parametrize("where", DEFAULTED)
async def test_a_variables_default_applies_to_the_subscriptions_filter(
    api_url: str, client: httpx.AsyncClient, cognito: FakeCognito, where: str
) -> None:
    """As over HTTP, a variable the client does not give takes its default: the list is
    Sydney's, so an approval in Austin is not heard and one in Sydney is."""
    staff = await person(cognito, "defaulting", ("staff",))
    austin = await make_event("in Austin", status=EventStatus.PENDING)
    sydney = await make_event(
        "in Sydney", status=EventStatus.PENDING, latitude=-33.87, longitude=151.2
    )
    async with live(api_url) as anonymous:
        assert (await anonymous.init())["type"] == "connection_ack"
        await anonymous.subscribe("map", DEFAULTED[where])
        await anonymous.send({"type": "ping"})
        answer = await anonymous.receive()
        assert answer["type"] == "pong", answer
        await moderate(client, staff, austin.id, "APPROVED")
        await moderate(client, staff, sydney.id, "APPROVED")
        assert change_of(await anonymous.next_change()) == (
            "ADDED",
            global_id("Event", sydney.id),
            {"title": "in Sydney", "status": "APPROVED"},
        )


async def test_a_subscription_that_selects_no_event_fields_hears_what_enters_and_leaves(
    api_url: str, client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    """`{ change eventId }` alone: the client refetches what it needs by id."""
    staff = await person(cognito, "idsonly", ("staff",))
    event = await make_event("ids only", status=EventStatus.PENDING)
    async with live(api_url) as anonymous:
        await open_subscription(
            anonymous,
            None,
            query="subscription { eventsChanged { change eventId kind: __typename } }",
        )
        for status, change in (("APPROVED", "ADDED"), ("REJECTED", "REMOVED")):
            await moderate(client, staff, event.id, status)
            message = await anonymous.next_change()
            assert message["payload"] == {
                "data": {
                    "eventsChanged": {
                        "change": change,
                        "eventId": global_id("Event", event.id),
                        "kind": "EventChange",
                    }
                }
            }


async def test_completing_a_subscription_stops_its_messages(
    api_url: str, client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    staff = await person(cognito, "completer", ("staff",))
    first = await make_event("one", status=EventStatus.PENDING)
    second = await make_event("two", status=EventStatus.PENDING)
    async with live(api_url) as anonymous:
        await open_subscription(anonymous, None)
        await anonymous.subscribe("other", EVENTS, {"filter": {}})
        await anonymous.send({"id": "map", "type": "complete"})
        await anonymous.send({"type": "ping"})
        assert (await anonymous.receive())["type"] == "pong"
        await moderate(client, staff, first.id, "APPROVED")
        message = await anonymous.next_change()
        assert message["id"] == "other"
        await moderate(client, staff, second.id, "APPROVED")
        assert (await anonymous.next_change())["id"] == "other"


# --- refusals and failed first reads ---------------------------------------------------------


SYDNEY = {"north": -33.0, "south": -34.5, "east": 152.0, "west": 150.0}


def hub_of(app: Starlette) -> Hub:
    """The in-process app's hub, to watch (never to change)."""
    endpoint = next(
        route.endpoint
        for route in app.routes
        if isinstance(route, WebSocketRoute) and route.path == "/graphql"
    )
    assert isinstance(endpoint, LiveEndpoint)
    return endpoint.hub


async def _until(condition: Any, what: str) -> Any:
    """Poll `condition` (an async or plain callable) until it gives a true value; a bound
    on the wait only, against a hang."""
    deadline = time.monotonic() + PATIENCE_SECONDS
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, f"still waiting for {what}"
        await asyncio.sleep(0.01)


async def test_a_filter_showing_more_than_max_events_is_refused_or_ended_and_the_socket_goes_on(
    api_url: str, client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    staff = await person(cognito, "narrowing", ("staff",))
    far = await make_event(
        "in Sydney", status=EventStatus.PENDING, latitude=-33.87, longitude=151.2
    )
    database = connections.get("default")
    # visible to anyone (approved, ending tomorrow), all in Austin: one more than a list holds
    await database.execute_query(
        "INSERT INTO event (title, description, location_name, address, latitude, longitude,"
        " starts_at, ends_at, image_url, status, created_at, updated_at)"
        " SELECT 'crowd ' || n, '', '', '', 30.27, -97.74, now() + interval '1 hour',"
        " now() + interval '1 day', '', 'APPROVED', now(), now()"
        " FROM generate_series(1, $1) AS n",
        [MAX_EVENTS + 1],
    )
    try:
        async with live(api_url) as anonymous:
            assert (await anonymous.init())["type"] == "connection_ack"
            await anonymous.subscribe("everything", EVENTS, {"filter": {}})
            refused = await anonymous.receive()
            assert refused["type"] == "error", refused
            assert refused["id"] == "everything"
            [error] = refused["payload"]
            assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "filter"}
            assert error["message"].startswith(f"the filter shows more than {MAX_EVENTS} events")

            # the same socket, a narrower filter: subscribed
            await anonymous.subscribe("sydney", EVENTS, {"filter": {"bbox": SYDNEY}})
            await anonymous.send({"type": "ping"})
            assert (await anonymous.receive())["type"] == "pong"
            # and the first filter once it shows exactly MAX_EVENTS: subscribed too
            await database.execute_query("DELETE FROM event WHERE title = 'crowd 1'")
            await anonymous.subscribe("all", EVENTS, {"filter": {}})
            await anonymous.send({"type": "ping"})
            assert (await anonymous.receive())["type"] == "pong"
            # one more event: Sydney's list hears it; the whole list, now one too many,
            # ends with the refusal (no cohort grows past MAX_EVENTS either)
            await moderate(client, staff, far.id, "APPROVED")
            added = (
                "ADDED",
                global_id("Event", far.id),
                {"title": "in Sydney", "status": "APPROVED"},
            )
            heard: dict[str, list[dict[str, Any]]] = {"sydney": [], "all": []}
            for _ in range(3):
                message = await anonymous.receive()
                heard[message["id"]].append(message)
            [sydney] = heard["sydney"]
            assert change_of(sydney) == added
            # the whole list is told the change, then ends
            told, ended = heard["all"]
            assert change_of(told) == added
            assert ended["type"] == "error", ended
            assert ended["payload"] == refused["payload"]
            # the id is free again, and the socket goes on
            await anonymous.subscribe("all", EVENTS, {"filter": {"bbox": SYDNEY}})
            await anonymous.send({"type": "ping"})
            assert (await anonymous.receive())["type"] == "pong"
    finally:
        await database.execute_query("DELETE FROM event WHERE title LIKE 'crowd %'")


async def _blocked_by(locker: asyncpg.Connection) -> list[int]:
    """The clients' backends waiting for a lock `locker` holds (not autovacuum's)."""
    rows = await locker.fetch(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'"
        " AND $1 = ANY(pg_blocking_pids(pid))",
        locker.get_server_pid(),
    )
    return [row["pid"] for row in rows]


async def test_a_subscriber_waiting_on_a_first_read_that_fails_is_told_to_subscribe_again(
    api_url: str,
    api_app: Starlette,
    settings: Settings,
    client: httpx.AsyncClient,
    cognito: FakeCognito,
) -> None:
    """A joins a new cohort and its first read waits for a lock on `event`; B subscribes
    to the same list and waits for that read; the read is cancelled. A hears the
    database's fault, B that it should subscribe again, and both sockets go on."""
    staff = await person(cognito, "unlocking", ("staff",))
    pending = await make_event("after the retry", status=EventStatus.PENDING)
    hub = hub_of(api_app)
    assert settings.database_url is not None
    locker = await asyncpg.connect(**connection_credentials(settings.database_url))
    try:
        async with live(api_url) as first, live(api_url) as second:
            for socket in (first, second):
                assert (await socket.init())["type"] == "connection_ack"
            locking = locker.transaction()
            await locking.start()
            try:
                await locker.execute("LOCK TABLE event IN ACCESS EXCLUSIVE MODE")
                await first.subscribe("map", EVENTS, {"filter": {}})
                [reading] = await _until(lambda: _blocked_by(locker), "A's read to wait")
                await second.subscribe("map", EVENTS, {"filter": {}})

                # B's subscribe is handled until it waits for A's read, in A's cohort. No
                # metric shows that (popmap_live_cohorts changes once a first read is done,
                # popmap_ws_subscriptions once a join returns), so the test watches the
                # in-process hub: the one cohort still reading (earlier tests' sockets may
                # still be leaving theirs), both subscribers in it.
                def reading_cohorts() -> list[Cohort]:
                    return [c for c in hub.cohorts.values() if not c.loaded]

                [cohort] = await _until(
                    lambda: [c for c in reading_cohorts() if len(c.members) == 2],
                    "B to join A's cohort",
                )
                assert len(reading_cohorts()) == 1
                assert await locker.fetchval("SELECT pg_cancel_backend($1)", reading)
                # both answers come while the lock is still held: nothing can read yet
                failed = await first.receive()
                told = await second.receive()
            finally:
                await locking.rollback()

            assert failed["type"] == "error", failed
            assert failed["id"] == "map"
            assert failed["payload"] == [
                {
                    "message": "The database is unavailable; retry shortly",
                    "extensions": {"code": "SERVICE_UNAVAILABLE"},
                }
            ]
            assert told["type"] == "error", told
            assert told["id"] == "map"
            assert told["payload"] == [
                {
                    "message": "the list could not be read now; subscribe again",
                    "extensions": {"code": "SERVICE_UNAVAILABLE"},
                }
            ]
            assert not cohort.members
            assert hub.cohorts.get(cohort.key) is not cohort

            # both sockets are open; B subscribes again (the same id, freed) and hears
            for socket in (first, second):
                await socket.send({"type": "ping"})
                assert (await socket.receive())["type"] == "pong"
            await second.subscribe("map", EVENTS, {"filter": {}})
            await second.send({"type": "ping"})
            assert (await second.receive())["type"] == "pong"
            await moderate(client, staff, pending.id, "APPROVED")
            assert change_of(await second.next_change()) == (
                "ADDED",
                global_id("Event", pending.id),
                {"title": "after the retry", "status": "APPROVED"},
            )
    finally:
        await locker.close()


async def test_first_reads_at_once_leave_most_of_the_pool_to_http(
    api_url: str, settings: Settings, client: httpx.AsyncClient
) -> None:
    """A reconnect storm: new cohorts' first reads take no more of the database pool
    than evaluations may (half of it), so HTTP requests are still served meanwhile."""
    assert settings.database_url is not None
    slots = max(1, settings.db_pool_size // 2)
    locker = await asyncpg.connect(**connection_credentials(settings.database_url))
    sockets = [live(api_url) for _ in range(settings.db_pool_size)]
    clients = [await s.__aenter__() for s in sockets]
    try:
        locking = locker.transaction()
        await locking.start()
        try:
            await locker.execute("LOCK TABLE event IN ACCESS EXCLUSIVE MODE")
            for n, c in enumerate(clients):  # each its own box: its own cohort
                await c.init()
                box = {"north": 31.0, "south": 30.0, "east": -97.0 + n, "west": -98.0}
                await c.subscribe("map", EVENTS, {"filter": {"bbox": box}})

            async def waiting() -> int:
                return len(await _blocked_by(locker))

            await _until(waiting, "the reads to wait")
            await asyncio.sleep(1)  # the others are given the time to start theirs
            assert 0 < await waiting() <= slots
            # a request the response cache cannot answer needs a connection of the pool
            query = (
                f"{{ b{uuid.uuid4().hex}: businesses(first: 1) {{ edges {{ node {{ id }} }} }} }}"
            )
            response = await client.post("/graphql", json={"query": query}, timeout=5)
            assert response.status_code == 200, response.text
        finally:
            await locking.rollback()
        for c in clients:
            await c.send({"type": "ping"})
            assert (await c.receive())["type"] == "pong"
    finally:
        for s in sockets:
            await s.__aexit__(None, None, None)
        await locker.close()


async def test_a_socket_closed_while_it_waits_for_a_first_read_leaves_the_cohort(
    api_url: str, api_app: Starlette, settings: Settings, cognito: FakeCognito
) -> None:
    """One user on two sockets subscribes to one list: A's first read waits for a lock on
    `event`, B waits for A's read, and B's token expires meanwhile (4403). B is no longer
    in the cohort once A's read is done: the cohort delivers to A alone, and goes when A
    completes."""
    sub = str(uuid.uuid4())
    user = await User.create(username="twice", email="twice@example.com")
    await CognitoIdentity.create(user=user, issuer=ISSUER, sub=sub, profile_complete=True)

    def token(seconds: int) -> str:
        return cognito.id_token(
            sub=sub,
            email="twice@example.com",
            exp=int(time.time()) + seconds,
            **{"cognito:username": "twice"},
        )

    hub = hub_of(api_app)
    assert settings.database_url is not None
    locker = await asyncpg.connect(**connection_credentials(settings.database_url))
    try:
        async with live(api_url) as first, live(api_url) as second:
            assert (await first.init({"Authorization": f"Bearer {token(3600)}"}))[
                "type"
            ] == "connection_ack"
            locking = locker.transaction()
            await locking.start()
            try:
                await locker.execute("LOCK TABLE event IN ACCESS EXCLUSIVE MODE")
                await first.subscribe("map", EVENTS, {"filter": {}})
                await _until(lambda: _blocked_by(locker), "A's read to wait")
                assert (await second.init({"Authorization": f"Bearer {token(3)}"}))[
                    "type"
                ] == "connection_ack"
                await second.subscribe("map", EVENTS, {"filter": {}})
                [cohort] = await _until(
                    lambda: [
                        c for c in hub.cohorts.values() if not c.loaded and len(c.members) == 2
                    ],
                    "B to join A's cohort",
                )
                assert await second.closed_with() == 4403
                await _until(lambda: len(cohort.members) == 1, "B to leave the cohort")
                assert await _blocked_by(locker), "the one left is A, still reading"
            finally:
                await locking.rollback()
            await first.send({"type": "ping"})
            assert (await first.receive())["type"] == "pong"
            assert cohort.loaded
            assert len(cohort.members) == 1
            await first.send({"id": "map", "type": "complete"})
            await first.send({"type": "ping"})
            assert (await first.receive())["type"] == "pong"
            assert hub.cohorts.get(cohort.key) is not cohort
    finally:
        await locker.close()


# --- a server of the tests' own: limits, metrics, workers -----------------------------------


@dataclass(frozen=True)
class Served:
    base: str
    log: Path


def _env(settings: Settings, cognito: FakeCognito, data_dir: Path, **more: str) -> dict[str, str]:
    assert settings.database_url is not None
    limits = {
        "POPMAP_WS_INIT_TIMEOUT_SECONDS": "1",
        "POPMAP_WS_KEEPALIVE_SECONDS": "0.5",
        "POPMAP_WS_MAX_SUBSCRIPTIONS": "2",
        "POPMAP_WS_SEND_BUFFER": "4",
        "POPMAP_BUDGETS": "false",
    }
    return cognito.server_env(
        settings.database_url,
        data_dir,
        POPMAP_METRICS="true",
        POPMAP_LOG_FORMAT="json",
        **{**limits, **more},
    )


@pytest.fixture(scope="module")
def small_limits(
    settings: Settings, cognito: FakeCognito, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    data_dir = tmp_path_factory.mktemp("live")
    log = data_dir / "server.log"
    with server_process(_env(settings, cognito, data_dir), log=log) as (_, base):
        yield Served(base, log)


async def test_a_socket_that_sends_no_connection_init_is_closed_4408(
    small_limits: Served,
) -> None:
    async with live(small_limits.base) as client:
        assert await client.closed_with() == 4408


async def test_the_server_pings_idle_sockets(small_limits: Served) -> None:
    async with live(small_limits.base) as client:
        await client.init()
        async with asyncio.timeout(30):
            message = json.loads(await client.socket.recv())
        assert message == {"type": "ping"}


async def test_a_sockets_access_line_names_the_kind_of_its_viewer(
    small_limits: Served, cognito: FakeCognito
) -> None:
    staff = await person(cognito, "logged", ("staff",))
    owner = await person(cognito, "logged-owner")

    def lines(kind: str) -> int:
        return sum(f"viewer={kind} " in line for line in _socket_lines(small_limits.log))

    before = {kind: lines(kind) for kind in ("anonymous", "staff", "person")}
    async with (
        live(small_limits.base) as anonymous,
        live(small_limits.base) as as_staff,
        live(small_limits.base) as as_owner,
    ):
        await open_subscription(anonymous, None)
        await open_subscription(as_staff, staff)
        await open_subscription(as_owner, owner)
    deadline = time.monotonic() + 10
    while any(lines(kind) < count + 1 for kind, count in before.items()):
        assert time.monotonic() < deadline, small_limits.log.read_text()
        await asyncio.sleep(0.05)


async def test_subscriptions_beyond_the_limit_are_refused_with_an_error(
    small_limits: Served, clean_db: None
) -> None:
    async with live(small_limits.base) as client:
        await client.init()
        for n in range(3):
            await client.subscribe(str(n), EVENTS, {"filter": {}})
        message = await client.receive()
        assert message["type"] == "error"
        assert message["id"] == "2"
        assert message["payload"][0]["extensions"]["code"] == "TOO_MANY_SUBSCRIPTIONS"


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_identical_subscriptions_share_one_statement_and_far_away_ones_cost_nothing(
    small_limits: Served, client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    staff = await person(cognito, "counter", ("staff",))
    events = [await make_event(f"pending {n}", status=EventStatus.PENDING) for n in range(2)]
    far = {"north": -30.0, "south": -35.0, "east": 150.0, "west": 145.0}  # Sydney
    async with httpx.AsyncClient(base_url=small_limits.base) as server:

        async def statements_for(event_id: int, listeners: list[LiveClient]) -> float:
            before = _metric((await server.get("/metrics")).text, "popmap_live_statements_total")
            await moderate(client, staff, event_id, "APPROVED")
            for listener in listeners:
                assert change_of(await listener.next_change())[0] == "ADDED"
            after = _metric((await server.get("/metrics")).text, "popmap_live_statements_total")
            return after - before

        async with live(small_limits.base) as one, live(small_limits.base) as far_away:
            await open_subscription(one, None, {"filter": {"bbox": AUSTIN}})
            await open_subscription(far_away, None, {"filter": {"bbox": far}})
            alone = await statements_for(events[0].id, [one])
            # the routing statement and the cohort's one; Sydney's cohort ran nothing
            assert alone == 2
            many = [live(small_limits.base) for _ in range(4)]
            clients = [await m.__aenter__() for m in many]
            try:
                for c in clients:
                    await open_subscription(c, None, {"filter": {"bbox": AUSTIN}})
                shared = await statements_for(events[1].id, [one, *clients])
            finally:
                for m in many:
                    await m.__aexit__(None, None, None)
            assert shared == alone


async def test_a_subscription_watching_given_ids_costs_nothing_when_others_change(
    small_limits: Served, client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    """`filter.ids` routes as a box does: a change of an event it does not name runs no
    statement for its cohort."""
    staff = await person(cognito, "id-watcher", ("staff",))
    other, watched = [await make_event(f"ids {n}", status=EventStatus.PENDING) for n in range(2)]
    async with (
        httpx.AsyncClient(base_url=small_limits.base) as server,
        live(small_limits.base) as watcher,
        live(small_limits.base) as whole_map,
    ):
        ids = [global_id("Event", watched.id)]
        await open_subscription(watcher, None, {"filter": {"ids": ids}})
        await open_subscription(whole_map, None, {"filter": {"bbox": AUSTIN}})
        before = _metric((await server.get("/metrics")).text, "popmap_live_statements_total")
        await moderate(client, staff, other.id, "APPROVED")
        assert change_of(await whole_map.next_change())[:2] == (
            "ADDED",
            global_id("Event", other.id),
        )
        await moderate(client, staff, watched.id, "APPROVED")
        for listener in (watcher, whole_map):
            assert change_of(await listener.next_change())[:2] == ("ADDED", ids[0])
        after = _metric((await server.get("/metrics")).text, "popmap_live_statements_total")
        # two routing statements, the map's two evaluations, the watcher's one
        assert after - before == 5


async def test_a_client_that_does_not_read_is_closed_1008_not_buffered(
    small_limits: Served, client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    """Changes pile up for a client that reads nothing until the server gives up on it;
    the server says so in its log, and the client then finds the close code after what
    was sent before."""
    staff = await person(cognito, "flooder", ("staff",))
    long_text = "x" * 4990
    events = [await make_event(f"big {n}", description=long_text) for n in range(20)]
    aliases = " ".join(f"d{n}: description" for n in range(25))
    query = f"subscription {{ eventsChanged {{ change event {{ {aliases} }} }} }}"
    edit = (
        "mutation($id: ID!, $i: EventUpdateInput!) { updateEvent(id: $id, input: $i) { changed } }"
    )
    gave_up = "a client that does not read is closed"
    reader = SilentClient(small_limits.base)
    try:
        reader.send({"type": "connection_init"})
        reader.read_until("connection_ack")
        reader.send({"id": "map", "type": "subscribe", "payload": {"query": query}})
        reader.send({"type": "ping"})
        reader.read_until("pong")
        for round_ in range(50):
            if gave_up in small_limits.log.read_text():
                break
            for event in events:
                await mutate(
                    client,
                    staff,
                    edit,
                    {
                        "id": global_id("Event", event.id),
                        "i": {"description": f"{round_}{long_text}"},
                    },
                )
        assert gave_up in small_limits.log.read_text()
        assert await asyncio.to_thread(reader.closed_with) == 1008
    finally:
        reader.close()


async def test_a_burst_larger_than_the_send_buffer_reaches_a_reading_client(
    small_limits: Served, client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    """Ten events leave one window together: one entry of the buffer of four."""
    owner = await person(cognito, "bursty")
    assert owner.user is not None
    business = await make_business("Bursts", owner=owner.user)
    events = [await make_event(f"burst {n}", businesses=[business]) for n in range(10)]
    query = "subscription { eventsChanged { change eventId event { businesses { name } } } }"
    async with live(small_limits.base) as reader:
        await open_subscription(reader, None, {}, query=query)
        await mutate(
            client,
            owner,
            "mutation($id: ID!, $i: BusinessInput!)"
            " { updateBusiness(id: $id, input: $i) { business { id } } }",
            {"id": global_id("Business", business.id), "i": {"name": "Renamed"}},
        )
        heard = {change_of(await reader.next_change())[1] for _ in events}
        assert heard == {global_id("Event", event.id) for event in events}


async def test_every_worker_delivers_changes(
    settings: Settings, cognito: FakeCognito, tmp_path: Path, client: httpx.AsyncClient
) -> None:
    """Rounds of sockets, each hearing an approval, until the access lines show that
    sockets of both workers heard one (which worker takes a socket is the kernel's)."""
    staff = await person(cognito, "workers", ("staff",))
    log = tmp_path / "server.log"
    with server_process(_env(settings, cognito, tmp_path), "--workers", "2", log=log) as (_, base):
        deadline = time.monotonic() + 60
        while log.read_text().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, log.read_text()
            await asyncio.sleep(0.1)
        pids: set[int] = set()
        closed = 0
        for round_ in range(10):
            event = await make_event(f"round {round_}", status=EventStatus.PENDING)
            async with contextlib.AsyncExitStack() as stack:
                clients = [await stack.enter_async_context(live(base)) for _ in range(4)]
                for c in clients:
                    await open_subscription(c, None)
                await moderate(client, staff, event.id, "APPROVED")
                for c in clients:
                    assert change_of(await c.next_change())[:2] == (
                        "ADDED",
                        global_id("Event", event.id),
                    )
            closed += len(clients)
            while len(_socket_lines(log)) < closed:
                assert time.monotonic() < deadline + 60, log.read_text()
                await asyncio.sleep(0.05)
            pids = {json.loads(line)["pid"] for line in _socket_lines(log)}
            if len(pids) == 2:
                break
        assert len(pids) == 2, "sockets of both workers must have heard the change"


def _socket_lines(log: Path) -> list[str]:
    return [line for line in log.read_text().splitlines() if "websocket /graphql" in line]


async def test_sigterm_closes_sockets_with_1012_so_clients_reconnect_elsewhere(
    settings: Settings, cognito: FakeCognito, tmp_path: Path
) -> None:
    log = tmp_path / "server.log"
    env = _env(settings, cognito, tmp_path, POPMAP_SHUTDOWN_DRAIN_SECONDS="1")
    with server_process(env, log=log) as (process, base):
        async with live(base) as client:
            await open_subscription(client, None)
            process.send_signal(signal.SIGTERM)
            assert await client.closed_with() == 1012


async def test_when_the_touched_events_cannot_be_read_every_list_is_read_again(
    settings: Settings, cognito: FakeCognito, tmp_path: Path, client: httpx.AsyncClient
) -> None:
    """The statement that routes a window's changes (which events where) waits for a lock
    on `participation` past the server's statement timeout: nothing may be lost, so every
    list is read again; that read (of each event's businesses) fails the same way and is
    retried, and the subscriber hears the change once the lock is gone."""
    staff = await person(cognito, "routing", ("staff",))
    event = await make_event("behind a lock", status=EventStatus.PENDING)
    log = tmp_path / "server.log"
    env = _env(settings, cognito, tmp_path, POPMAP_DB_STATEMENT_TIMEOUT_MS="300")
    assert settings.database_url is not None
    locker = await asyncpg.connect(**connection_credentials(settings.database_url))
    try:
        with server_process(env, log=log) as (_, base):
            async with live(base) as anonymous:
                await open_subscription(
                    anonymous,
                    None,
                    query="subscription { eventsChanged"
                    " { change eventId event { title businesses { name } } } }",
                )
                async with locker.transaction():
                    await locker.execute("LOCK TABLE participation IN ACCESS EXCLUSIVE MODE")
                    await moderate(client, staff, event.id, "APPROVED")
                    for what in ("every list is re-read", "evaluation failed"):
                        await _until(lambda line=what: line in log.read_text(), what)
                assert change_of(await anonymous.next_change())[:2] == (
                    "ADDED",
                    global_id("Event", event.id),
                )
    finally:
        await locker.close()


async def test_a_socket_whose_token_cannot_be_checked_now_is_closed_1013_try_again_later(
    settings: Settings, cognito: FakeCognito, tmp_path: Path
) -> None:
    """The pool's signing keys cannot be fetched (nothing listens at the JWKS URL) and none
    is cached: not a bad token (4403) but a server that cannot tell yet, as HTTP's 503."""
    env = _env(
        settings,
        cognito,
        tmp_path,
        AWS_COGNITO_JWKS_URL=f"http://127.0.0.1:{free_port()}/jwks.json",
    )
    with server_process(env, log=tmp_path / "server.log") as (_, base):
        async with live(base) as client:
            await client.send(
                {
                    "type": "connection_init",
                    "payload": {"Authorization": f"Bearer {cognito.access_token()}"},
                }
            )
            assert await client.closed_with() == 1013
        async with live(base) as anonymous:  # a socket without a token needs no key
            assert (await anonymous.init())["type"] == "connection_ack"


async def test_open_sockets_do_not_use_up_the_http_connection_limit(
    settings: Settings, cognito: FakeCognito, tmp_path: Path
) -> None:
    """uvicorn counts an open WebSocket as a connection: with more sockets open than
    POPMAP_MAX_CONNECTIONS, HTTP requests are still answered (sockets have their own limit)."""
    env = _env(settings, cognito, tmp_path, POPMAP_MAX_CONNECTIONS="2")
    with server_process(env, log=tmp_path / "server.log") as (_, base):
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(3):
                client = await stack.enter_async_context(live(base))
                assert (await client.init())["type"] == "connection_ack"
            async with httpx.AsyncClient(base_url=base) as http:
                response = await http.post("/graphql", json={"query": "{ categories { name } }"})
            assert response.status_code == 200, response.text


async def test_sockets_beyond_the_limit_are_closed_1013_and_a_freed_place_is_taken(
    settings: Settings, cognito: FakeCognito, tmp_path: Path
) -> None:
    env = _env(settings, cognito, tmp_path, POPMAP_WS_MAX_CONNECTIONS="2")
    with server_process(env, log=tmp_path / "server.log") as (_, base):
        async with live(base) as first, live(base) as second:
            assert (await first.init())["type"] == "connection_ack"
            assert (await second.init())["type"] == "connection_ack"
            async with live(base) as third:
                assert await third.closed_with() == 1013  # try again later
        async with live(base) as again:  # both closed: there is room again
            assert (await again.init())["type"] == "connection_ack"


# --- trusted documents and budgets over the socket -------------------------------------------


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture(scope="module")
def trusted_only(
    settings: Settings, cognito: FakeCognito, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """A server whose manifest (graphql-codegen's persisted-documents.json) holds EVENTS."""
    data_dir = tmp_path_factory.mktemp("live-trusted")
    manifest = data_dir / "persisted-documents.json"
    manifest.write_text(json.dumps({_sha256(EVENTS): EVENTS}), encoding="utf-8")
    env = _env(settings, cognito, data_dir, POPMAP_TRUSTED_DOCUMENTS=str(manifest))
    with server_process(env, log=data_dir / "server.log") as (_, base):
        yield Served(base, data_dir / "server.log")


async def test_with_a_manifest_only_its_documents_subscribe(
    trusted_only: Served, client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    staff = await person(cognito, "trusting", ("staff",))
    event = await make_event("trusted", status=EventStatus.PENDING)
    other = EVENTS.replace("title status", "title")
    async with live(trusted_only.base) as socket:
        assert (await socket.init())["type"] == "connection_ack"
        persisted = {"persistedQuery": {"version": 1, "sha256Hash": _sha256(EVENTS)}}
        await socket.send(
            {
                "id": "by-hash",
                "type": "subscribe",
                "payload": {"variables": {"filter": {}}, "extensions": persisted},
            }
        )
        await socket.subscribe("other", other, {"filter": {}})
        refused = await socket.receive()
        assert refused["type"] == "error"
        assert refused["id"] == "other"
        assert refused["payload"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_TRUSTED"

        await moderate(client, staff, event.id, "APPROVED")
        message = await socket.next_change()
        assert message["id"] == "by-hash"  # the manifest's document, sent by its hash
        assert change_of(message)[:2] == ("ADDED", global_id("Event", event.id))


SUBSCRIPTION_BUDGET_SUBSCRIPTIONS = 2
# 52 points (api/cost.py): two of them and a point more make a budget (at least 100 points)
PRICED = """
subscription Priced($filter: EventFilter) {
  eventsChanged(filter: $filter) { change eventId event { title businesses { name } } }
}"""


@pytest.fixture(scope="module")
def budgeted(
    settings: Settings, cognito: FakeCognito, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    """Budgets on: a client may pay for two PRICED subscriptions a minute, and a point."""
    data_dir = tmp_path_factory.mktemp("live-budgets")
    points = SUBSCRIPTION_BUDGET_SUBSCRIPTIONS * _subscription_cost() + 1
    env = _env(
        settings,
        cognito,
        data_dir,
        POPMAP_BUDGETS="true",
        POPMAP_BUDGET_ANONYMOUS_PER_MINUTE=str(points),
        POPMAP_BUDGET_USER_PER_MINUTE=str(points),
        POPMAP_WS_MAX_SUBSCRIPTIONS="10",
    )
    with server_process(env, log=data_dir / "server.log") as (_, base):
        yield Served(base, data_dir / "server.log")


def _subscription_cost() -> int:
    from popmap_gql.api.schema import build_schema

    admission = build_schema(Settings()).admits(PRICED, None, {"filter": {}})
    assert admission is not None
    assert admission.cost > 1
    return admission.cost


async def test_subscriptions_are_charged_to_the_budget_http_requests_pay(
    budgeted: Served, clean_db: None, cognito: FakeCognito
) -> None:
    signed_in = await person(cognito, "budgeted")
    async with live(budgeted.base) as anonymous, live(budgeted.base) as own_budget:
        assert (await anonymous.init())["type"] == "connection_ack"
        for n in range(SUBSCRIPTION_BUDGET_SUBSCRIPTIONS + 1):
            await anonymous.subscribe(str(n), PRICED, {"filter": {}})
        refused = await anonymous.receive()
        assert refused["type"] == "error"
        assert refused["id"] == str(SUBSCRIPTION_BUDGET_SUBSCRIPTIONS)  # the third
        extensions = refused["payload"][0]["extensions"]
        assert extensions["code"] == "RATE_LIMITED"
        assert extensions["retryAfter"] >= 1
        # the socket stays open, and its address's HTTP requests pay the same budget
        await anonymous.send({"type": "ping"})
        assert (await anonymous.receive())["type"] == "pong"
        async with httpx.AsyncClient(base_url=budgeted.base) as http:
            answer = await http.post("/graphql", json={"query": "{ categories { name } }"})
        assert answer.status_code == 429, answer.text  # it costs more than the point left
        assert answer.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"

        # a person has a budget of their own
        await open_subscription(own_budget, signed_in, {"filter": {}}, PRICED)


async def test_a_circle_hears_an_event_moving_into_it_and_out_of_it(
    api_url: str, client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    staff = await person(cognito, "mover", ("staff",))
    event = await make_event("mobile", latitude=30.5, longitude=-97.5)  # 34 km away
    near = {"latitude": 30.27, "longitude": -97.74, "radiusKm": 10.0}
    move = (
        "mutation($id: ID!, $i: EventUpdateInput!) { updateEvent(id: $id, input: $i) { changed } }"
    )
    async with live(api_url) as anonymous:
        await open_subscription(anonymous, None, {"filter": {"near": near}})
        inside = {"latitude": 30.3, "longitude": -97.75}  # 3.4 km away
        await mutate(client, staff, move, {"id": global_id("Event", event.id), "i": inside})
        assert change_of(await anonymous.next_change())[:2] == (
            "ADDED",
            global_id("Event", event.id),
        )
        # inside the circle's box, outside the circle: 9.5 km north and 9.5 km east
        corner = {"latitude": 30.27 + 0.0854, "longitude": -97.74 + 0.0988}
        await mutate(client, staff, move, {"id": global_id("Event", event.id), "i": corner})
        assert change_of(await anonymous.next_change())[0] == "REMOVED"
