"""Filters and relations show only rows the viewer may see, for four kinds of viewer.

A business the viewer cannot see contributes nothing anywhere: no events through
`businessId` or `categorySlugs`, no entry in an event's `businesses` or `categories`, no
`hostBusiness`; a hidden event shows up in no business's lists and no filter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
import pytest

from popmap_gql.db.models import Business, Event, EventStatus
from tests.fake_cognito import FakeCognito
from tests.helpers import global_id, make_business, make_category, make_event, matrix_cells
from tests.people import ANONYMOUS, Person, person, post


@dataclass
class World:
    people: dict[str, Person]
    owned: Business  # the owner's verified business, category "coffee"
    draft: Business  # the owner's unverified business, category "bakery"
    joined_by_draft: Event  # approved; the draft takes part
    hosted_by_draft: Event  # approved; the draft hosts it
    proposal: Event  # pending, created by the owner; `owned` takes part


@pytest.fixture
async def world(client: httpx.AsyncClient, cognito: FakeCognito) -> World:
    owner = await person(cognito, "owner")
    people = {
        "anonymous": ANONYMOUS,
        "stranger": await person(cognito, "stranger"),
        "owner": owner,
        "staff": await person(cognito, "moderator", groups=("staff",)),
    }
    bakery, coffee = await make_category("Bakery"), await make_category("Coffee")
    owned = await make_business("Owned", owner=owner.user, categories=[coffee])
    draft = await make_business("Draft", owner=owner.user, verified=False, categories=[bakery])
    await make_event("Public", starts_in=timedelta(days=1), businesses=[owned])
    joined = await make_event("Joined by draft", starts_in=timedelta(days=2), businesses=[draft])
    hosted = await make_event("Hosted by draft", starts_in=timedelta(days=3), host_business=draft)
    proposal = await make_event(
        "Proposal",
        starts_in=timedelta(days=4),
        status=EventStatus.PENDING,
        created_by=owner.user,
        businesses=[owned],
    )
    return World(people, owned, draft, joined, hosted, proposal)


EVENTS = (
    "query ($filter: EventFilter) { events(filter: $filter)"
    " { totalCount edges { node { title } } } }"
)
BUSINESSES = (
    "query ($filter: BusinessFilter) { businesses(filter: $filter)"
    " { totalCount edges { node { name } } } }"
)


def _titles(data: dict[str, Any]) -> list[str]:
    titles = [edge["node"]["title"] for edge in data["events"]["edges"]]
    assert data["events"]["totalCount"] == len(titles)
    return titles


def _names(data: dict[str, Any]) -> list[str]:
    names = [edge["node"]["name"] for edge in data["businesses"]["edges"]]
    assert data["businesses"]["totalCount"] == len(names)
    return names


def _event(query: str) -> str:
    return f"query ($id: ID!) {{ event(id: $id) {{ {query} }} }}"


def _business(query: str) -> str:
    return f"query ($id: ID!) {{ business(id: $id) {{ {query} }} }}"


# check -> (query, variables for the world, what to read from `data`)
Check = tuple[str, Callable[[World], dict[str, Any]], Callable[[dict[str, Any]], Any]]

CHECKS: dict[str, Check] = {
    "events(businessId: draft)": (
        EVENTS,
        lambda w: {"filter": {"businessId": global_id("Business", w.draft.id)}},
        _titles,
    ),
    "events(businessId: owned)": (
        EVENTS,
        lambda w: {"filter": {"businessId": global_id("Business", w.owned.id)}},
        _titles,
    ),
    "events(categorySlugs: bakery)": (
        EVENTS,
        lambda w: {"filter": {"categorySlugs": ["bakery"]}},
        _titles,
    ),
    "events(categorySlugs: coffee)": (
        EVENTS,
        lambda w: {"filter": {"categorySlugs": ["coffee"]}},
        _titles,
    ),
    "businesses(categorySlugs: bakery)": (
        BUSINESSES,
        lambda w: {"filter": {"categorySlugs": ["bakery"]}},
        _names,
    ),
    "businesses(search: draft)": (
        BUSINESSES,
        lambda w: {"filter": {"search": "draft"}},
        _names,
    ),
    "Event.businesses": (
        _event("businesses { name }"),
        lambda w: {"id": global_id("Event", w.joined_by_draft.id)},
        lambda data: [b["name"] for b in data["event"]["businesses"]],
    ),
    "Event.categories": (
        _event("categories { slug }"),
        lambda w: {"id": global_id("Event", w.joined_by_draft.id)},
        lambda data: [c["slug"] for c in data["event"]["categories"]],
    ),
    "Event.hostBusiness": (
        _event("hostBusiness { name }"),
        lambda w: {"id": global_id("Event", w.hosted_by_draft.id)},
        lambda data: data["event"]["hostBusiness"],
    ),
    "Business.events": (
        _business("events { title }"),
        lambda w: {"id": global_id("Business", w.owned.id)},
        lambda data: [e["title"] for e in data["business"]["events"]],
    ),
    "Business.events (listed)": (
        "{ businesses { edges { node { name events { title } } } } }",
        lambda w: {},
        lambda data: {
            edge["node"]["name"]: [e["title"] for e in edge["node"]["events"]]
            for edge in data["businesses"]["edges"]
        },
    ),
    "Business.hostedEvents (listed)": (
        "{ businesses { edges { node { name hostedEvents { title } } } } }",
        lambda w: {},
        lambda data: {
            edge["node"]["name"]: [e["title"] for e in edge["node"]["hostedEvents"]]
            for edge in data["businesses"]["edges"]
        },
    ),
}

P, PP = ["Public"], ["Public", "Proposal"]  # events of `owned` without and with the pending one
J, JH = ["Joined by draft"], ["Joined by draft", "Hosted by draft"]
DR, H = ["Draft"], {"name": "Draft"}
BOTH = {"Draft": J, "Owned": PP}
HOSTS = {"Draft": ["Hosted by draft"], "Owned": []}

# What each viewer reads; the owner and staff see the draft, anonymous and strangers do not.
MATRIX: dict[str, tuple[Any, Any, Any, Any]] = {
    #                                    anonymous        stranger         owner      staff
    "events(businessId: draft)":         ([],             [],              JH,        JH),
    "events(businessId: owned)":         (P,              P,               PP,        PP),
    "events(categorySlugs: bakery)":     ([],             [],              J,         J),
    "events(categorySlugs: coffee)":     (P,              P,               PP,        PP),
    "businesses(categorySlugs: bakery)": ([],             [],              DR,        DR),
    "businesses(search: draft)":         ([],             [],              DR,        DR),
    "Event.businesses":                  ([],             [],              DR,        DR),
    "Event.categories":                  ([],             [],              ["bakery"], ["bakery"]),
    "Event.hostBusiness":                (None,           None,            H,         H),
    "Business.events":                   (P,              P,               PP,        PP),
    "Business.events (listed)":          ({"Owned": P},   {"Owned": P},    BOTH,      BOTH),
    "Business.hostedEvents (listed)":    ({"Owned": []},  {"Owned": []},   HOSTS,     HOSTS),
}  # fmt: skip

VIEWERS = ("anonymous", "stranger", "owner", "staff")
CELLS = matrix_cells(MATRIX, VIEWERS)


def test_matrix_covers_every_check() -> None:
    assert set(MATRIX) == set(CHECKS)


@pytest.mark.parametrize(("check", "viewer", "expected"), CELLS)
async def test_filters_and_relations_show_only_what_the_viewer_may_see(
    client: httpx.AsyncClient, world: World, check: str, viewer: str, expected: Any
) -> None:
    query, variables, read = CHECKS[check]

    body = await post(client, world.people[viewer], query, variables(world))

    assert "errors" not in body, body
    assert read(body["data"]) == expected
