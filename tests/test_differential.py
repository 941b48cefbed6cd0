"""Our fast path answers exactly what plain Strawberry answers.

Every read query below goes through the real endpoint over HTTP (the leaner
`PopmapSchema.execute`, the compiled read path that builds the JSON in SQL from the read
model, and where it declines, the short path for plain fields, the direct relation
resolvers, the prefetch; the response cache) and through `strawberry.Schema.execute` of a schema
built separately from the same root types, which has none of that: Strawberry's own
pipeline, resolver wrappers and execution context. The context for the plain run is
made as the endpoint makes it (the viewer from the same token, through the same
authenticator). The answers, errors included (formatted as the endpoint formats them),
must be the same JSON. A third run, through our schema with the compiled path off
(`compiled_reads=False`: our `execute`, the engine's fast paths, the loaders and the
look-ahead plan), must agree as well. This is the test to run after raising the
graphql-core or Strawberry pin (see popmap_gql/api/engine.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
import pytest
import strawberry
from graphql import GraphQLObjectType
from starlette.requests import Request
from strawberry.schema.config import StrawberryConfig

from bench.scenarios import Q1, Q2, Q3
from popmap_gql.api.context import Context
from popmap_gql.api.engine import graphql_schema, to_camel_case
from popmap_gql.api.errors import format_error
from popmap_gql.api.mutations import Mutation
from popmap_gql.api.queries import Query
from popmap_gql.api.schema import build_schema
from popmap_gql.api.types import LOADER_SETUP, direct_resolvers
from popmap_gql.auth.authenticator import Authenticator, build_authenticator
from popmap_gql.config import Settings
from popmap_gql.db.models import Business, Event, EventStatus
from popmap_gql.db.seed import seed_demo
from tests.fake_cognito import FakeCognito
from tests.helpers import global_id
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


@dataclass(frozen=True)
class Case:
    name: str
    query: str
    variables: dict[str, Any]


@dataclass(frozen=True)
class World:
    owner: Person
    staff: Person
    reader: Person
    owned: Business
    pending: Event


async def _world(cognito: FakeCognito) -> World:
    """The demo data, with an owner of three businesses (one hosting two events, one with
    an uploaded logo and one with a given logo URL) and an event with an uploaded image."""
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
    pending = await Event.filter(status=EventStatus.PENDING).order_by("id").first()
    assert pending is not None
    return World(
        owner=owner,
        staff=await person(cognito, "moderator", groups=("staff",)),
        reader=service(cognito, "reader", scopes=("read.all",)),
        owned=businesses[0],
        pending=pending,
    )


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
        ),
        Case("every business", EVERY_BUSINESS_FIELD, {"filter": None, "orderBy": "NAME_DESC"}),
        Case(
            "businesses filtered",
            EVERY_BUSINESS_FIELD,
            {"filter": {"categorySlugs": ["crafts"]}, "orderBy": "NEWEST_FIRST"},
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
        ),
    ]


def _plain_schema() -> strawberry.Schema:
    return strawberry.Schema(
        query=Query, mutation=Mutation, config=StrawberryConfig(auto_camel_case=True)
    )


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


async def _plain_answer(
    plain: strawberry.Schema,
    authenticator: Authenticator,
    settings: Settings,
    api_url: str,
    who: Person,
    case: Case,
) -> Any:
    request = _request_like_the_endpoints(api_url, who)
    viewer = await authenticator.authenticate(request.headers.get("authorization"))
    context = Context(request=request, settings=settings, loader_setup=LOADER_SETUP, viewer=viewer)
    result = await plain.execute(case.query, variable_values=case.variables, context_value=context)
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


def test_the_plain_schema_has_none_of_our_direct_resolvers(settings: Settings) -> None:
    ours = graphql_schema(build_schema(settings))
    plain = graphql_schema(_plain_schema())
    resolvers = direct_resolvers()
    assert resolvers
    for type_name, python_name in resolvers:
        field_name = to_camel_case(python_name)
        ours_type, plain_type = ours.type_map[type_name], plain.type_map[type_name]
        assert isinstance(ours_type, GraphQLObjectType)
        assert isinstance(plain_type, GraphQLObjectType)
        assert plain_type.fields[field_name].resolve is not ours_type.fields[field_name].resolve


async def test_the_fast_path_answers_every_read_query_as_plain_strawberry_does(
    client: httpx.AsyncClient,
    cognito: FakeCognito,
    settings: Settings,
    api_url: str,
    authenticator: Authenticator,
) -> None:
    world = await _world(cognito)
    plain = _plain_schema()
    # our own schema with the compiled path off: the resolver path with our engine
    resolvers = build_schema(replace(settings, compiled_reads=False))
    viewers = [ANONYMOUS, world.owner, world.staff, world.reader]
    answers: dict[tuple[str, str], Any] = {}
    for case in _cases(world):
        for who in viewers:
            response = await client.post(
                "/graphql",
                json={"query": case.query, "variables": case.variables},
                headers=who.headers,
            )
            assert response.status_code == 200, (case.name, who.name, response.text)
            fast = _in_error_order(response.json())
            slow = _in_error_order(
                await _plain_answer(plain, authenticator, settings, api_url, who, case)
            )
            assert fast == slow, (case.name, who.name)
            resolved = _in_error_order(
                await _plain_answer(resolvers, authenticator, settings, api_url, who, case)
            )
            assert resolved == slow, (case.name, who.name, "resolver path")
            answers[(case.name, who.name)] = fast["data"]
    # The cases reach what they are meant to: pages, owner-only and staff-only answers.
    assert len(answers) == 14 * 4
    shown = answers[("categories with their businesses and those businesses' categories", "owner")]
    assert any(category["businesses"] for category in shown["categories"])
    assert len(answers[("README map", "anonymous")]["events"]["edges"]) == 20
    owned = answers[("every business", "owner")]["businesses"]["edges"]
    assert sum(edge["node"]["viewerIsOwner"] for edge in owned) == 3
    assert any(edge["node"]["availableEvents"] for edge in owned)
    assert answers[("pending events (staff only)", "moderator")]["events"]["totalCount"] == 4
    assert answers[("bench Q3", "owner")]["me"]["businesses"]
    assert answers[("lookups, a pending event and an unknown id", "reader")]["serviceClient"]
