"""Who may do what: every mutation and viewer-dependent field, for four kinds of person and
four services (client-credentials tokens of one app client, with no scope or one scope each).

The owner is also the creator of `proposal` and the owner of the host of `hosted`, so the
event rows cover an event's creator and its host's owner; `imported` was submitted by the
services' app client. The permission table of docs/services.md is the one these cells check."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from popmap_gql.db.models import Business, Event, EventStatus
from tests.fake_cognito import SERVICE_CLIENT, FakeCognito
from tests.helpers import (
    NOW,
    error_codes,
    global_id,
    make_business,
    make_category,
    make_event,
    make_user,
    matrix_cells,
)
from tests.people import ANONYMOUS, Person, person, post, service


@dataclass
class World:
    people: dict[str, Person]
    owned: Business  # the owner's verified business
    draft: Business  # the owner's unverified business
    fair: Event  # approved, upcoming
    joined: Event  # approved, upcoming, with `owned` taking part
    proposal: Event  # pending, created by the owner
    hosted: Event  # approved, upcoming, hosted by `owned` (taking part), created by another
    imported: Event  # pending, submitted by the services' app client


@pytest.fixture
async def world(client: httpx.AsyncClient, cognito: FakeCognito) -> World:
    owner = await person(cognito, "owner")
    people = {
        "anonymous": ANONYMOUS,
        "stranger": await person(cognito, "stranger"),
        "owner": owner,
        "staff": await person(cognito, "moderator", groups=("staff",)),
        "service": service(cognito, "service"),
        "writer": service(cognito, "writer", ("events.write",)),
        "moderator": service(cognito, "moderator", ("moderate",)),
        "reader": service(cognito, "reader", ("read.all",)),
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
    imported = await make_event(
        "Imported",
        starts_in=timedelta(days=7),
        status=EventStatus.PENDING,
        created_by_client=SERVICE_CLIENT,
    )
    return World(people, owned, draft, fair, joined, proposal, hosted, imported)


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
    "createUpload (event image)": (
        'mutation { createUpload(kind: EVENT_IMAGE, contentType: "image/png", byteSize: 100)'
        " { key } }",
        lambda w: {},
        _ok("createUpload"),
    ),
    "createUpload (business logo)": (
        'mutation { createUpload(kind: BUSINESS_LOGO, contentType: "image/png", byteSize: 100)'
        " { key } }",
        lambda w: {},
        _ok("createUpload"),
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
    "updateEvent (imported by the service)": (
        'mutation ($id: ID!) { updateEvent(id: $id, input: {title: "Renamed"})'
        " { event { title } } }",
        lambda w: {"id": global_id("Event", w.imported.id)},
        _ok("updateEvent"),
    ),
    "cancelEvent (imported by the service)": (
        "mutation ($id: ID!) { cancelEvent(id: $id) { event { status } } }",
        lambda w: {"id": global_id("Event", w.imported.id)},
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
    "event(id) imported, pending": (
        "query ($id: ID!) { event(id: $id) { title } }",
        lambda w: {"id": global_id("Event", w.imported.id)},
        lambda data: data["event"]["title"],
    ),
    "serviceClient": (
        "{ serviceClient { clientId scopes } }",
        lambda w: {},
        lambda data: data["serviceClient"] and data["serviceClient"]["scopes"],
    ),
    "events(status: PENDING)": (
        "{ events(filter: {status: PENDING}) { edges { node { title } } } }",
        lambda w: {},
        lambda data: [e["node"]["title"] for e in data["events"]["edges"]],
    ),
}

U, F, N = "UNAUTHENTICATED", "FORBIDDEN", "NOT_FOUND"


@dataclass(frozen=True)
class Needs:
    """FORBIDDEN for a service that lacks this scope, naming it in `requiredScope`."""

    scope: str


W, M, R = Needs("popmap/events.write"), Needs("popmap/moderate"), Needs("popmap/read.all")
DF, DP, OW = ["Draft", "Owned"], ["Proposal"], ["Fair"]
PENDING = ["Proposal", "Imported"]

# What each viewer gets: "OK", an error code, or the value read from the answer.
# People: anonymous, stranger, owner, staff. Services (one app client): no scope,
# events.write (writer), moderate (moderator), read.all (reader).
MATRIX: dict[str, tuple[Any, Any, Any, Any, Any, Any, Any, Any]] = {
    #                         people: anonymous, stranger, owner, staff | services: see above
    "submitBusiness":                         (U, "OK", "OK", "OK",     F, F, F, F),
    "updateBusiness":                         (U, F, "OK", "OK",        F, F, F, F),
    "updateBusiness (unverified)":            (U, N, "OK", "OK",        F, F, F, F),
    "updateBusiness(id:)":                    (U, F, "OK", "OK",        F, F, F, F),
    "submitEvent":                            (U, "OK", "OK", "OK",     W, "OK", W, W),
    "submitEvent (hosted by owned)":          (U, F, "OK", "OK",        W, F, W, W),
    "createUpload (event image)":             (U, "OK", "OK", "OK",     W, "OK", W, W),
    "createUpload (business logo)":           (U, "OK", "OK", "OK",     F, F, F, F),
    "joinEvent":                              (U, F, "OK", "OK",        F, F, F, F),
    "leaveEvent":                             (U, F, "OK", "OK",        F, F, F, F),
    "updateEvent (their proposal)":           (U, N, "OK", "OK",        W, N, W, W),
    "updateEvent (hosted by owned)":          (U, F, "OK", "OK",        W, F, W, W),
    "updateEvent (imported by the service)":  (U, N, N, "OK",           W, "OK", W, W),
    "cancelEvent (their proposal)":           (U, N, "OK", "OK",        W, N, W, W),
    "cancelEvent (hosted by owned)":          (U, F, "OK", "OK",        W, F, W, W),
    "cancelEvent (imported by the service)":  (U, N, N, "OK",           W, "OK", W, W),
    "verifyBusiness":                         (U, F, F, "OK",           M, M, "OK", M),
    "moderateEvent":                          (U, F, F, "OK",           M, M, "OK", M),
    "Business.viewerIsOwner":                 (False, False, True, False,
                                               False, False, False, False),
    "Business.availableEvents":               (U, F, OW, OW,            R, R, R, OW),
    "me.businesses":                          (None, [], DF, [],        None, None, None, None),
    "me.submittedEvents":                     (None, [], DP, [],        None, None, None, None),
    "business(id) unverified":                (N, N, "Draft", "Draft",  N, N, N, "Draft"),
    "event(id) pending":                      (N, N, "Proposal", "Proposal", N, N, N, "Proposal"),
    "event(id) imported, pending":            (N, N, N, "Imported",
                                               "Imported", "Imported", "Imported", "Imported"),
    "serviceClient":                          (None, None, None, None,
                                               [], ["popmap/events.write"], ["popmap/moderate"],
                                               ["popmap/read.all"]),
    "events(status: PENDING)":                (F, F, F, PENDING,        R, R, R, PENDING),
}  # fmt: skip

VIEWERS = ("anonymous", "stranger", "owner", "staff", "service", "writer", "moderator", "reader")
CELLS = matrix_cells(MATRIX, VIEWERS)


def test_matrix_covers_every_operation() -> None:
    assert set(MATRIX) == set(OPERATIONS)


@pytest.mark.parametrize(("operation", "viewer", "expected"), CELLS)
async def test_authorization_matrix(
    client: httpx.AsyncClient, world: World, operation: str, viewer: str, expected: Any
) -> None:
    query, variables, read = OPERATIONS[operation]

    body = await post(client, world.people[viewer], query, variables(world))

    if isinstance(expected, Needs):
        assert error_codes(body) == [F], body
        assert body["errors"][0]["extensions"]["requiredScope"] == expected.scope
    elif expected in (U, F, N):
        assert error_codes(body) == [expected], body
        assert "requiredScope" not in body["errors"][0]["extensions"]
    else:
        assert "errors" not in body, body
        assert read(body["data"]) == expected
