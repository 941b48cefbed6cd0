"""The benchmark's scenarios: fixed GraphQL operations and variables, shared by the
driver (which sends them) and the floor (which recognises them by operationName)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from bench.dataset import PIN, Picks

Q1 = """query Q1($first: Int!, $filter: EventFilter!) {
  events(first: $first, filter: $filter) {
    edges { node {
      id title startsAt endsAt latitude longitude
      businesses { id name categories { id name } }
      categories { id name }
    } }
  }
}"""

Q2 = """query Q2($id: ID!) {
  business(id: $id) {
    id name description
    categories { id name slug }
    events(upcoming: true) { id title startsAt endsAt }
  }
}"""

Q3 = """query Q3 {
  me { id businesses { id name availableEvents { id title startsAt } } }
}"""

M1_JOIN = """mutation M1Join($e: ID!, $b: ID!) {
  joinEvent(eventId: $e, businessId: $b) { changed event { id } business { id } }
}"""

M1_LEAVE = """mutation M1Leave($e: ID!, $b: ID!) {
  leaveEvent(eventId: $e, businessId: $b) { changed event { id } business { id } }
}"""

Q1_PAGE_SIZE = 20


def global_id(type_name: str, pk: int) -> str:
    """The API's opaque id: base64url, without padding, of "Type:pk"."""
    return base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode().rstrip("=")


def body(query: str, operation: str, variables: dict[str, Any] | None = None) -> bytes:
    payload: dict[str, Any] = {"query": query, "operationName": operation}
    if variables is not None:
        payload["variables"] = variables
    return json.dumps(payload, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Scenario:
    key: str  # "Q1", "Q2", "Q2_token", "Q3", "M1"
    title: str
    bodies: tuple[bytes, ...]  # sent in turn (M1 alternates join and leave)
    authenticated: bool


def build(picks: Picks) -> list[Scenario]:
    """The scenarios in the order they are run; M1 last, as it writes."""
    q1 = body(
        Q1,
        "Q1",
        {"first": Q1_PAGE_SIZE, "filter": {"upcoming": False, "endsAfter": PIN.isoformat()}},
    )
    q2 = body(Q2, "Q2", {"id": global_id("Business", picks.lookup_business_id)})
    pair = {
        "e": global_id("Event", picks.join_event_id),
        "b": global_id("Business", picks.join_business_id),
    }
    return [
        Scenario("Q1", "map page, anonymous", (q1,), authenticated=False),
        Scenario("Q2", "business lookup, anonymous", (q2,), authenticated=False),
        Scenario("Q2_token", "business lookup, with a token", (q2,), authenticated=True),
        Scenario("Q3", "owner dashboard", (body(Q3, "Q3"),), authenticated=True),
        Scenario(
            "M1",
            "join/leave an event",
            (body(M1_JOIN, "M1Join", pair), body(M1_LEAVE, "M1Leave", pair)),
            authenticated=True,
        ),
    ]


# --- the map's own reads, sent uncached on the data set x1 and xN (`run.py --scale N`) ---

MAP = """query Map($bbox: BoundingBox!) {
  events(first: 20, filter: {bbox: $bbox}) {
    totalCount totalCountIsExact
    edges { node { id title startsAt endsAt latitude longitude } }
  }
}"""

SEARCH = """query Search($search: String!) {
  businesses(first: 20, filter: {search: $search}) {
    totalCount totalCountIsExact
    edges { node { id name } }
  }
}"""

CATEGORY = """query Category($slugs: [String!]!) {
  businesses(first: 20, filter: {categorySlugs: $slugs, availableForHire: true}) {
    totalCount totalCountIsExact
    edges { node { id name } }
  }
}"""

NEAR = """query Near($near: NearInput!) {
  events(first: 20, filter: {near: $near}, orderBy: DISTANCE) {
    totalCount totalCountIsExact
    edges { node { id title startsAt endsAt latitude longitude } }
  }
}"""

# About 4 x 4 km of central Austin, today's city.
VIEWPORT = {"south": 30.252, "north": 30.288, "west": -97.761, "east": -97.719}
# "Near me" from the viewport's centre: 5 km around it, nearest first.
NEAR_ME = {"latitude": 30.27, "longitude": -97.74, "radiusKm": 5.0}


def build_map() -> list[Scenario]:
    """The map's viewport, a search, a category filter and "near me", anonymous."""
    return [
        Scenario(
            "map",
            "a viewport, first 20, totalCount",
            (body(MAP, "Map", {"bbox": VIEWPORT}),),
            False,
        ),
        Scenario(
            "search",
            'search "goat", first 20, totalCount',
            (body(SEARCH, "Search", {"search": "goat"}),),
            False,
        ),
        Scenario(
            "category",
            "bakery, available for hire",
            (body(CATEGORY, "Category", {"slugs": ["bakery"]}),),
            False,
        ),
        Scenario(
            "near",
            "near me, 5 km, nearest first, first 20, totalCount",
            (body(NEAR, "Near", {"near": NEAR_ME}),),
            False,
        ),
    ]
