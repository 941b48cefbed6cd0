"""Who may do what: every mutation and viewer-dependent field, for four kinds of viewer.

The owner is also the creator of `proposal` and the owner of the host of `hosted`, so the
event rows cover an event's creator and its host's owner."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from popmap_gql.db.models import Business, Event, EventStatus
from tests.fake_cognito import FakeCognito
from tests.helpers import (
    NOW,
    error_codes,
    global_id,
    make_business,
    make_category,
    make_event,
    make_user,
)
from tests.people import ANONYMOUS, Person, person, post


@dataclass
class World:
    people: dict[str, Person]
    owned: Business  # the owner's verified business
    draft: Business  # the owner's unverified business
    fair: Event  # approved, upcoming
    joined: Event  # approved, upcoming, with `owned` taking part
    proposal: Event  # pending, created by the owner
    hosted: Event  # approved, upcoming, hosted by `owned` (taking part), created by another


@pytest.fixture
async def world(client: httpx.AsyncClient, cognito: FakeCognito) -> World:
    owner = await person(cognito, "owner")
    people = {
        "anonymous": ANONYMOUS,
        "stranger": await person(cognito, "stranger"),
        "owner": owner,
        "staff": await person(cognito, "moderator", groups=("staff",)),
    }
    await make_category("Bakery")
    owned = await make_business("Owned", owner=owner.user)
    draft = await make_business("Draft", owner=owner.user, verified=False)
    fair = await make_event("Fair", starts_in=timedelta(days=2))
    joined = await make_event("Joined", starts_in=timedelta(days=3), businesses=[owned])
    proposal = await make_event(
        "Proposal", starts_in=timedelta(days=4), status=EventStatus.PENDING, created_by=owner.user
    )
    hosted = await make_event(
        "Hosted",
        starts_in=timedelta(days=6),
        host_business=owned,
        businesses=[owned],
        created_by=await make_user("organiser"),
    )
    return World(people, owned, draft, fair, joined, proposal, hosted)


EVENT_INPUT = {
    "title": "Pop-up",
    "latitude": 30.27,
    "longitude": -97.74,
    "startsAt": (NOW + timedelta(days=5)).isoformat(),
    "endsAt": (NOW + timedelta(days=5, hours=3)).isoformat(),
}

# operation -> (query, variables for the world, what to read from `data`)
Operation = tuple[str, Callable[[World], dict[str, Any]], Callable[[dict[str, Any]], Any]]


def _ok(field: str) -> Callable[[dict[str, Any]], Any]:
    return lambda data: "OK" if data.get(field) else data


OPERATIONS: dict[str, Operation] = {
    "submitBusiness": (
        'mutation { submitBusiness(input: {name: "New"}) { business { id isVerified } } }',
        lambda w: {},
        _ok("submitBusiness"),
    ),
    "updateBusiness": (
        'mutation ($id: ID!) { updateBusiness(businessId: $id, input: {name: "Renamed"})'
        " { business { name } } }",
        lambda w: {"id": global_id("Business", w.owned.id)},
        _ok("updateBusiness"),
    ),
    "updateBusiness (unverified)": (
        'mutation ($id: ID!) { updateBusiness(businessId: $id, input: {description: "x"})'
        " { business { name } } }",
        lambda w: {"id": global_id("Business", w.draft.id)},
        _ok("updateBusiness"),
    ),
    "updateBusiness(id:)": (
        'mutation ($id: ID!) { updateBusiness(id: $id, input: {name: "Renamed"})'
        " { business { name } } }",
        lambda w: {"id": global_id("Business", w.owned.id)},
        _ok("updateBusiness"),
    ),
    "submitEvent": (
        "mutation ($input: EventInput!) { submitEvent(input: $input) { event { status } } }",
        lambda w: {"input": EVENT_INPUT},
        _ok("submitEvent"),
    ),
    "submitEvent (hosted by owned)": (
        "mutation ($input: EventInput!) { submitEvent(input: $input) { event { status } } }",
        lambda w: {"input": {**EVENT_INPUT, "hostBusinessId": global_id("Business", w.owned.id)}},
        _ok("submitEvent"),
    ),
    "joinEvent": (
        "mutation ($e: ID!, $b: ID!) { joinEvent(eventId: $e, businessId: $b) { changed } }",
        lambda w: {"e": global_id("Event", w.fair.id), "b": global_id("Business", w.owned.id)},
        _ok("joinEvent"),
    ),
    "leaveEvent": (
        "mutation ($e: ID!, $b: ID!) { leaveEvent(eventId: $e, businessId: $b) { changed } }",
        lambda w: {"e": global_id("Event", w.joined.id), "b": global_id("Business", w.owned.id)},
        _ok("leaveEvent"),
    ),
    "updateEvent (their proposal)": (
        'mutation ($id: ID!) { updateEvent(id: $id, input: {title: "Renamed"})'
        " { event { title } } }",
        lambda w: {"id": global_id("Event", w.proposal.id)},
        _ok("updateEvent"),
    ),
    "updateEvent (hosted by owned)": (
        'mutation ($id: ID!) { updateEvent(id: $id, input: {title: "Renamed"})'
        " { event { title } } }",
        lambda w: {"id": global_id("Event", w.hosted.id)},
        _ok("updateEvent"),
    ),
    "cancelEvent (their proposal)": (
        "mutation ($id: ID!) { cancelEvent(id: $id) { event { status } } }",
        lambda w: {"id": global_id("Event", w.proposal.id)},
        _ok("cancelEvent"),
    ),
    "cancelEvent (hosted by owned)": (
        "mutation ($id: ID!) { cancelEvent(id: $id) { event { status } } }",
        lambda w: {"id": global_id("Event", w.hosted.id)},
        _ok("cancelEvent"),
    ),
    "verifyBusiness": (
        "mutation ($id: ID!) { verifyBusiness(id: $id) { business { isVerified } } }",
        lambda w: {"id": global_id("Business", w.draft.id)},
        _ok("verifyBusiness"),
    ),
    "moderateEvent": (
        "mutation ($id: ID!) { moderateEvent(id: $id, status: APPROVED) { event { status } } }",
        lambda w: {"id": global_id("Event", w.proposal.id)},
        _ok("moderateEvent"),
    ),
    "Business.viewerIsOwner": (
        "query ($id: ID!) { business(id: $id) { viewerIsOwner } }",
        lambda w: {"id": global_id("Business", w.owned.id)},
        lambda data: data["business"]["viewerIsOwner"],
    ),
    "Business.availableEvents": (
        "query ($id: ID!) { business(id: $id) { availableEvents { title } } }",
        lambda w: {"id": global_id("Business", w.owned.id)},
        lambda data: [e["title"] for e in data["business"]["availableEvents"]],
    ),
    "me.businesses": (
        "{ me { businesses { name } } }",
        lambda w: {},
        lambda data: data["me"] and [b["name"] for b in data["me"]["businesses"]],
    ),
    "me.submittedEvents": (
        "{ me { submittedEvents { title status } } }",
        lambda w: {},
        lambda data: data["me"] and [e["title"] for e in data["me"]["submittedEvents"]],
    ),
    "business(id) unverified": (
        "query ($id: ID!) { business(id: $id) { name } }",
        lambda w: {"id": global_id("Business", w.draft.id)},
        lambda data: data["business"]["name"],
    ),
    "event(id) pending": (
        "query ($id: ID!) { event(id: $id) { title } }",
        lambda w: {"id": global_id("Event", w.proposal.id)},
        lambda data: data["event"]["title"],
    ),
    "events(status: PENDING)": (
        "{ events(filter: {status: PENDING}) { edges { node { title } } } }",
        lambda w: {},
        lambda data: [e["node"]["title"] for e in data["events"]["edges"]],
    ),
}

U, F, N = "UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND"

# What each viewer gets: "OK", an error code, or the value read from the answer.
MATRIX: dict[str, tuple[Any, Any, Any, Any]] = {
    #                               anonymous  stranger  owner                 staff
    "submitBusiness":               (U,        "OK",     "OK",                 "OK"),
    "updateBusiness":               (U,        F,        "OK",                 "OK"),
    "updateBusiness (unverified)":  (U,        N,        "OK",                 "OK"),
    "updateBusiness(id:)":          (U,        F,        "OK",                 "OK"),
    "submitEvent":                  (U,        "OK",     "OK",                 "OK"),
    "submitEvent (hosted by owned)": (U,       F,        "OK",                 "OK"),
    "joinEvent":                    (U,        F,        "OK",                 "OK"),
    "leaveEvent":                   (U,        F,        "OK",                 "OK"),
    "updateEvent (their proposal)": (U,        N,        "OK",                 "OK"),
    "updateEvent (hosted by owned)": (U,       F,        "OK",                 "OK"),
    "cancelEvent (their proposal)": (U,        N,        "OK",                 "OK"),
    "cancelEvent (hosted by owned)": (U,       F,        "OK",                 "OK"),
    "verifyBusiness":               (U,        F,        F,                    "OK"),
    "moderateEvent":                (U,        F,        F,                    "OK"),
    "Business.viewerIsOwner":       (False,    False,    True,                 False),
    "Business.availableEvents":     (U,        F,        ["Fair"],             ["Fair"]),
    "me.businesses":                (None,     [],       ["Draft", "Owned"],   []),
    "me.submittedEvents":           (None,     [],       ["Proposal"],         []),
    "business(id) unverified":      (N,        N,        "Draft",              "Draft"),
    "event(id) pending":            (N,        N,        "Proposal",           "Proposal"),
    "events(status: PENDING)":      (F,        F,        F,                    ["Proposal"]),
}  # fmt: skip

VIEWERS = ("anonymous", "stranger", "owner", "staff")
CELLS = [
    pytest.param(operation, viewer, MATRIX[operation][index], id=f"{operation}-{viewer}")
    for operation in MATRIX
    for index, viewer in enumerate(VIEWERS)
]


def test_matrix_covers_every_operation() -> None:
    assert set(MATRIX) == set(OPERATIONS)


@pytest.mark.parametrize(("operation", "viewer", "expected"), CELLS)
async def test_authorization_matrix(
    client: httpx.AsyncClient, world: World, operation: str, viewer: str, expected: Any
) -> None:
    query, variables, read = OPERATIONS[operation]

    body = await post(client, world.people[viewer], query, variables(world))

    if expected in (U, F, N):
        assert error_codes(body) == [expected], body
    else:
        assert "errors" not in body, body
        assert read(body["data"]) == expected
