"""The compiled read path answers what an oracle that shares none of its SQL answers, and
every case is answered by the path it is meant to take.

Every read query below goes through the real endpoint over HTTP, under each kind of
viewer. Its access line says who answered (`answered_by`: compiled, or the resolvers
with the reason the compiled path `declined`), and each case states which it must be:
a case the compiled path silently stopped answering fails here, whatever the answer.
The answer, errors included (formatted as the endpoint formats them), must be the JSON
the oracle gives (tests/oracle.py: Strawberry's own pipeline over the API's object
types, with root fields and loaders computed from the ORM's form of each rule, so a
visibility or ordering mistake in the SQL cannot hide behind the same SQL). The
resolver path (our schema with the compiled path off, i.e. Strawberry resolvers with
the read model's DataLoaders) must agree with the oracle too. This is the test to run
after raising the graphql-core or Strawberry pin (see popmap_gql/api/engine.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
import strawberry
from starlette.requests import Request

from bench.scenarios import Q1, Q2, Q3
from popmap_gql.api.compiled import DECLINED
from popmap_gql.api.context import Context
from popmap_gql.api.errors import format_error
from popmap_gql.api.schema import build_schema
from popmap_gql.api.types import LOADER_SETUP
from popmap_gql.auth.authenticator import Authenticator, build_authenticator
from popmap_gql.config import Settings
from popmap_gql.db.lists import BusinessOrder, Near, cursor_order
from popmap_gql.db.lists import EventOrder as QueriesEventOrder
from popmap_gql.db.models import Business, Event, EventStatus
from popmap_gql.db.seed import seed_demo
from popmap_gql.http.observe import ACCESS_LOGGER
from popmap_gql.logs import FIELDS
from popmap_gql.read.ids import encode_cursor
from tests.fake_cognito import FakeCognito
from tests.helpers import global_id
from tests.oracle import oracle_context, oracle_schema, similarity
from tests.people import ANONYMOUS, Person, person, service

MAP = """query Map($after: String) {
  events(first: 20, after: $after,
         filter: { bbox: { north: 30.40, south: 30.20, east: -97.60, west: -97.85 } }) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node { id title startsAt endsAt latitude longitude
                   categories { name } businesses { id name } } }
  }
}"""

FOR_HIRE = """{
  businesses(first: 10, filter: { search: "bake", categorySlugs: ["bakery", "coffee"],
                                  availableForHire: true }, orderBy: NAME_ASC) {
    edges { node { id name website categories { slug } events { title startsAt } } }
  }
}"""

ONE_EVENT = """query ($id: ID!) {
  event(id: $id) { title hostBusiness { name } businesses { name } isActive }
}"""

EVERY_EVENT_FIELD = """query Every($first: Int, $after: String, $filter: EventFilter,
                                    $orderBy: EventOrder!) {
  events(first: $first, after: $after, filter: $filter, orderBy: $orderBy) {
    totalCount
    pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    edges { cursor node { ...EventFields } }
  }
}
fragment EventFields on Event {
  __typename id title description locationName address latitude longitude startsAt endsAt
  status createdAt updatedAt imageUrl isActive
  hostBusiness { id name viewerIsOwner }
  businesses { ...BusinessFields }
  categories { id name slug }
}
fragment BusinessFields on Business {
  id name description contactEmail contactPhone website instagramUrl tiktokUrl
  availableForHire isVerified createdAt updatedAt logoUrl viewerIsOwner
  categories { id slug }
}"""

EVERY_BUSINESS_FIELD = """query Businesses($filter: BusinessFilter, $orderBy: BusinessOrder!) {
  businesses(first: 40, filter: $filter, orderBy: $orderBy) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { node {
      id name logoUrl isVerified viewerIsOwner
      categories { name }
      events(upcoming: false) { id title status }
      upcoming: events(upcoming: true) { id }
      hostedEvents { id title hostBusiness { id } }
      availableEvents { id title }
    } }
  }
}"""

LOOKUPS = """query Lookups($business: ID!, $event: ID!, $unknown: ID!) {
  business(id: $business) { id name viewerIsOwner availableEvents { id } }
  event(id: $event) { id title status hostBusiness { name } }
  nobody: business(id: $unknown) { id }
  me { id }
  serviceClient { clientId scopes }
  categories { id name slug }
  authConfig { region scopes identityProviders localDevelopment }
}"""


COMPILED = "compiled"


def declined(reason: str) -> str:
    assert reason in DECLINED
    return f"declined: {reason}"


@dataclass(frozen=True)
class Case:
    name: str
    query: str
    variables: dict[str, Any]
    # who answers, by viewer name (anonymous, owner, moderator, reader); compiled unless said
    paths: Mapping[str, str] = field(default_factory=dict)

    def path(self, who: Person) -> str:
        return self.paths.get(who.name, COMPILED)


@dataclass(frozen=True)
class World:
    owner: Person
    staff: Person
    reader: Person
    owned: Business
    pending: Event
    after_third_nearest: str  # a cursor of NEAR_ME's list, after its third approved event
    after_most_relevant: str  # a cursor of SEARCHED by relevance, after its first verified


async def _world(cognito: FakeCognito) -> World:
    """The demo data, with an owner of three businesses (one hosting two events, one with
    an uploaded logo and one with a given logo URL) who submitted one of those events,
    and an event with an uploaded image."""
    await seed_demo()
    owner = await person(cognito, "owner")
    businesses = await Business.filter(is_verified=True).order_by("id").limit(3)
    for business in businesses:
        business.owner = owner.user
        await business.save()
    businesses[0].logo_key = "logos/abc.png"
    businesses[1].logo_url = "https://cdn.example/logo.png"
    await businesses[0].save()
    await businesses[1].save()
    events = await Event.filter(status=EventStatus.APPROVED).order_by("id").limit(2)
    for event in events:
        event.host_business = businesses[0]
        await event.save()
    events[0].image_key = "events/xyz.webp"
    await events[0].save()
    events[1].created_by = owner.user
    await events[1].save()
    pending = await Event.filter(status=EventStatus.PENDING).order_by("id").first()
    assert pending is not None
    near = Near(**{k: NEAR_ME[k] for k in ("latitude", "longitude")}, radius_km=NEAR_ME["radiusKm"])
    approved = [
        (near.distance_km(e.latitude, e.longitude), e.id)
        for e in await Event.filter(status=EventStatus.APPROVED)
        if near.holds(e.latitude, e.longitude)
    ]
    distance, third = sorted(approved)[2]
    relevant = [
        (similarity(b.name, SEARCHED), b.id)
        for b in await Business.filter(is_verified=True)
        if SEARCHED in f"{b.name}\n{b.description}".lower()
    ]
    relevance, most = max(relevant)
    return World(
        owner=owner,
        staff=await person(cognito, "moderator", groups=("staff",)),
        reader=service(cognito, "reader", scopes=("read.all",)),
        owned=businesses[0],
        pending=pending,
        after_third_nearest=encode_cursor(
            cursor_order(QueriesEventOrder.DISTANCE, near), distance, third
        ),
        after_most_relevant=encode_cursor(
            cursor_order(BusinessOrder.RELEVANCE, search=SEARCHED), relevance, most
        ),
    )


SEARCHED = "street"  # in several of the demo's names and descriptions


# Around Republic Square, every event within 3 km: most of the demo's venues.
NEAR_ME = {"latitude": 30.2677, "longitude": -97.7467, "radiusKm": 3.0}


def _cases(world: World) -> list[Case]:
    since = (datetime.now(UTC) - timedelta(days=30)).isoformat()
    owned = global_id("Business", world.owned.pk)
    pending = global_id("Event", world.pending.pk)
    return [
        Case("README map", MAP, {"after": None}),
        Case("README businesses for hire", FOR_HIRE, {}),
        Case("README one event", ONE_EVENT, {"id": global_id("Event", 1)}),
        Case("bench Q1", Q1, {"first": 20, "filter": {"upcoming": False, "endsAfter": since}}),
        Case("bench Q2", Q2, {"id": owned}),
        Case("bench Q3", Q3, {}),
        Case(
            "every event field, past and future, newest first",
            EVERY_EVENT_FIELD,
            {"first": 50, "filter": {"upcoming": False}, "orderBy": "NEWEST_FIRST"},
        ),
        Case(
            "events by category, latest start first",
            EVERY_EVENT_FIELD,
            {
                "first": 5,
                "filter": {"categorySlugs": ["bakery", "live-music"]},
                "orderBy": "STARTS_AT_DESC",
            },
        ),
        Case(
            "events of one business",
            EVERY_EVENT_FIELD,
            {"filter": {"businessId": owned, "upcoming": False}, "orderBy": "STARTS_AT_ASC"},
        ),
        Case(
            "pending events (staff only)",
            EVERY_EVENT_FIELD,
            {"filter": {"status": "PENDING", "upcoming": False}, "orderBy": "STARTS_AT_ASC"},
            # FORBIDDEN for the others: the resolver reports it
            {"anonymous": declined("error"), "owner": declined("error")},
        ),
        Case(
            "every business",
            EVERY_BUSINESS_FIELD,
            {"filter": None, "orderBy": "NAME_DESC"},
            # availableEvents: staff's for every business, the owner's for their own only
            GUARDED_BUT_FOR_STAFF,
        ),
        Case(
            "businesses filtered",
            EVERY_BUSINESS_FIELD,
            {"filter": {"categorySlugs": ["crafts"]}, "orderBy": "NEWEST_FIRST"},
            GUARDED_BUT_FOR_STAFF,
        ),
        Case(
            "a search by relevance",
            EVERY_BUSINESS_FIELD,
            {"filter": {"search": SEARCHED}, "orderBy": "RELEVANCE"},
            GUARDED_BUT_FOR_STAFF,
        ),
        Case(
            "a search by relevance, the page after its first",
            EVERY_BUSINESS_FIELD.replace("first: 40", "first: 3, after: $after").replace(
                "$orderBy: BusinessOrder!", "$orderBy: BusinessOrder!, $after: String"
            ),
            {
                "after": world.after_most_relevant,
                "filter": {"search": SEARCHED, "categorySlugs": None},
                "orderBy": "RELEVANCE",
            },
            GUARDED_BUT_FOR_STAFF,
        ),
        Case(
            "relevance without a search",
            EVERY_BUSINESS_FIELD,
            {"filter": {"categorySlugs": ["crafts"]}, "orderBy": "RELEVANCE"},
            {who: declined("error") for who in ("anonymous", "owner", "moderator", "reader")},
        ),
        Case(
            "near me, nearest first, past and future",
            EVERY_EVENT_FIELD,
            {"first": 6, "filter": {"upcoming": False, "near": NEAR_ME}, "orderBy": "DISTANCE"},
        ),
        Case(
            "near me, nearest first, the page after the third",
            EVERY_EVENT_FIELD,
            {
                "first": 4,
                "after": world.after_third_nearest,
                "filter": {"upcoming": False, "near": NEAR_ME},
                "orderBy": "DISTANCE",
            },
        ),
        Case(
            "near me in a category, by start",
            EVERY_EVENT_FIELD,
            {
                "filter": {"near": {**NEAR_ME, "radiusKm": 5}, "categorySlugs": ["bakery"]},
                "orderBy": "STARTS_AT_ASC",
            },
        ),
        Case(
            "nearest first without a centre",
            EVERY_EVENT_FIELD,
            {"filter": {"upcoming": False}, "orderBy": "DISTANCE"},
            {who: declined("error") for who in ("anonymous", "owner", "moderator", "reader")},
        ),
        Case(
            "a circle too wide",
            EVERY_EVENT_FIELD,
            {"filter": {"near": {**NEAR_ME, "radiusKm": 10_000}}, "orderBy": "DISTANCE"},
            {who: declined("error") for who in ("anonymous", "owner", "moderator", "reader")},
        ),
        Case(
            "a map area out of range",
            MAP.replace("north: 30.40", "north: 130.40"),
            {"after": None},
            {who: declined("error") for who in ("anonymous", "owner", "moderator", "reader")},
        ),
        Case(
            "the constant roots and __typename",
            "{ __typename authConfig { __typename region issuer scopes localDevelopment }"
            " serviceClient { __typename clientId scopes } me { __typename username } }",
            {},
        ),
        Case(
            "__typename of a connection, its page and its edges",
            "{ events(first: 2) { __typename pageInfo { __typename hasNextPage }"
            " edges { __typename cursor node { __typename id } } } }",
            {},
        ),
        Case(
            "the viewer's submitted events",
            "{ me { submittedEvents { id title status hostBusiness { name } } } }",
            {},
        ),
        Case(
            "categories with their businesses and those businesses' categories",
            "{ categories { slug businesses { name viewerIsOwner categories { slug } } } }",
            {},
        ),
        Case(
            "lookups, a pending event and an unknown id",
            LOOKUPS,
            {"business": owned, "event": pending, "unknown": global_id("Business", 999999)},
            # the owner's business's availableEvents, then NOT_FOUND for the unknown id
            {
                "anonymous": declined("guarded"),
                "owner": declined("not_found"),
                "moderator": declined("not_found"),
                "reader": declined("guarded"),
            },
        ),
        Case(
            "the owner's own business",
            LOOKUPS.replace("nobody: business(id: $unknown) { id }", "")
            .replace(", $unknown: ID!", "")
            .replace("event(id: $event) {", "event(id: $event) @skip(if: true) {"),
            {"business": owned, "event": pending},
            {"anonymous": declined("guarded"), "reader": declined("guarded")},
        ),
    ]


GUARDED_BUT_FOR_STAFF = {
    "anonymous": declined("guarded"),
    "owner": declined("guarded"),
    "reader": declined("guarded"),
}


def _request_like_the_endpoints(api_url: str, who: Person) -> Request:
    """What Starlette gives the endpoint for a POST to /graphql at api_url."""
    address = urlsplit(api_url)
    assert address.hostname is not None
    assert address.port is not None
    headers = [(b"host", address.netloc.encode()), (b"content-type", b"application/json")]
    headers += [(k.lower().encode(), v.encode()) for k, v in who.headers.items()]
    return Request(
        {
            "type": "http",
            "http_version": "1.1",
            "method": "POST",
            "scheme": address.scheme,
            "server": (address.hostname, address.port),
            "path": "/graphql",
            "root_path": "",
            "query_string": b"",
            "headers": headers,
        }
    )


async def _context(
    authenticator: Authenticator, settings: Settings, api_url: str, who: Person
) -> Context:
    """The context the endpoint would make for this viewer's POST to api_url."""
    request = _request_like_the_endpoints(api_url, who)
    viewer = await authenticator.authenticate(request.headers.get("authorization"))
    return Context(request=request, settings=settings, loader_setup=LOADER_SETUP, viewer=viewer)


async def _answer(schema: strawberry.Schema, context: Context, case: Case) -> Any:
    result = await schema.execute(case.query, variable_values=case.variables, context_value=context)
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [format_error(error) for error in result.errors]
    return orjson.loads(orjson.dumps(payload))


def _in_error_order(answer: dict[str, Any]) -> dict[str, Any]:
    """Fields resolve concurrently, so errors come in no order GraphQL defines: by path."""
    errors = answer.get("errors")
    if errors:
        answer["errors"] = sorted(errors, key=lambda error: orjson.dumps(error.get("path")))
    return answer


@pytest.fixture
async def authenticator(settings: Settings) -> AsyncIterator[Authenticator]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield build_authenticator(settings, http)


class AccessLines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.fields: dict[str, dict[str, Any]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, FIELDS, None) or {}
        self.fields[fields.get("request_id", "")] = fields

    async def path(self, request_id: str) -> str:
        """Who answered the request (its line is written just after the response)."""
        for _ in range(1000):
            if request_id in self.fields:
                fields = self.fields[request_id]
                if fields["answered_by"] == COMPILED:
                    assert fields["declined"] is None
                    return COMPILED
                assert fields["answered_by"] == "resolvers", fields
                return f"declined: {fields['declined']}"
            await asyncio.sleep(0.005)
        raise AssertionError(f"no access line for {request_id}")


@pytest.fixture
def access_lines() -> Iterator[AccessLines]:
    logger = logging.getLogger(ACCESS_LOGGER)
    handler, level = AccessLines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


async def test_the_compiled_path_answers_as_the_oracle_and_takes_the_path_it_should(
    client: httpx.AsyncClient,
    access_lines: AccessLines,
    cognito: FakeCognito,
    settings: Settings,
    api_url: str,
    authenticator: Authenticator,
) -> None:
    world = await _world(cognito)
    oracle = oracle_schema()
    resolvers = build_schema(replace(settings, compiled_reads=False))
    viewers = [ANONYMOUS, world.owner, world.staff, world.reader]
    cases = _cases(world)
    answers: dict[tuple[str, str], Any] = {}
    for number, case in enumerate(cases):
        for who in viewers:
            request_id = f"differential-{number}-{who.name}"
            # a text of its own, so that the response cache never answers instead
            query = f"{case.query}\n# {request_id}"
            response = await client.post(
                "/graphql",
                json={"query": query, "variables": case.variables},
                headers={**who.headers, "X-Request-ID": request_id},
            )
            assert response.status_code == 200, (case.name, who.name, response.text)
            assert await access_lines.path(request_id) == case.path(who), (case.name, who.name)
            answer = _in_error_order(response.json())
            context = await _context(authenticator, settings, api_url, who)
            expected = _in_error_order(await _answer(oracle, oracle_context(context), case))
            assert answer == expected, (case.name, who.name)
            resolved = _in_error_order(await _answer(resolvers, context, case))
            assert resolved == expected, (case.name, who.name, "resolver path")
            answers[(case.name, who.name)] = answer["data"]
    # The cases reach what they are meant to: pages, owner-only and staff-only answers.
    assert len(answers) == len(cases) * 4
    assert sum(case.path(who) == COMPILED for case in cases for who in viewers) >= 40
    shown = answers[("categories with their businesses and those businesses' categories", "owner")]
    assert any(category["businesses"] for category in shown["categories"])
    assert len(answers[("README map", "anonymous")]["events"]["edges"]) == 20
    owned = answers[("every business", "owner")]["businesses"]["edges"]
    assert sum(edge["node"]["viewerIsOwner"] for edge in owned) == 3
    assert any(edge["node"]["availableEvents"] for edge in owned)
    assert answers[("pending events (staff only)", "moderator")]["events"]["totalCount"] == 4
    nearest = answers[("near me, nearest first, past and future", "anonymous")]["events"]
    assert len(nearest["edges"]) == 6
    assert nearest["pageInfo"]["hasNextPage"]
    after_third = answers[("near me, nearest first, the page after the third", "anonymous")]
    assert [e["node"]["id"] for e in nearest["edges"][3:]] == [
        e["node"]["id"] for e in after_third["events"]["edges"][:3]
    ]
    assert answers[("bench Q3", "owner")]["me"]["businesses"]
    submitted = answers[("the viewer's submitted events", "owner")]["me"]["submittedEvents"]
    assert [event["hostBusiness"] for event in submitted] == [{"name": world.owned.name}]
    assert answers[("lookups, a pending event and an unknown id", "reader")]["serviceClient"]
    assert answers[("the owner's own business", "owner")]["business"]["availableEvents"]
    # the owner sees their pending event, anonymous does not
    every = "every event field, past and future, newest first"
    statuses = {e["node"]["status"] for e in answers[(every, "moderator")]["events"]["edges"]}
    assert "PENDING" in statuses
    assert "PENDING" not in {
        e["node"]["status"] for e in answers[(every, "anonymous")]["events"]["edges"]
    }
