"""Per-request DataLoaders, one per relation, named "X by Y"; results align with keys.

They hold GraphQL objects built straight from the SQL rows: a map page shows hundreds
of businesses, and building an ORM model for each on the way costs more than the query.
Within one batch a row shared by several keys (a category of many businesses) becomes
one object.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import cached_property, partial
from typing import TypeVar

from strawberry.dataloader import DataLoader

from popmap_gql.api.sizes import cap_of
from popmap_gql.api.types import Business, Category, Event, Viewer
from popmap_gql.db import queries
from popmap_gql.db.queries import Audience, Row

__all__ = [
    "AVAILABLE_EVENTS",
    "BUSINESS_CATEGORIES",
    "BUSINESS_EVENTS",
    "EVENT_BUSINESSES",
    "HOSTED_EVENTS",
    "OWNED_BUSINESSES",
    "SUBMITTED_EVENTS",
    "Loaders",
]

# Each relation loads at most what its field declares (see sizes.py).
BUSINESS_CATEGORIES = cap_of(Business, "categories")
BUSINESS_EVENTS = cap_of(Business, "events")
HOSTED_EVENTS = cap_of(Business, "hosted_events")
AVAILABLE_EVENTS = cap_of(Business, "available_events")
EVENT_BUSINESSES = cap_of(Event, "businesses")
OWNED_BUSINESSES = cap_of(Viewer, "businesses")
SUBMITTED_EVENTS = cap_of(Viewer, "submitted_events")

T = TypeVar("T")

Build = Callable[[Row], T]


def _builder(build: Build[T]) -> Callable[[Row], T]:
    """`build`, once per row mapping (rows shared by several keys are one mapping)."""
    built: dict[int, T] = {}

    def once(row: Row) -> T:
        found = built.get(id(row))
        if found is None:
            found = built[id(row)] = build(row)
        return found

    return once


def _many(
    fetch: Callable[[Sequence[int]], Awaitable[Mapping[int, list[Row]]]], build: Build[T]
) -> DataLoader[int, list[T]]:
    async def load(keys: list[int]) -> list[list[T]]:
        found = await fetch(keys)
        once = _builder(build)
        return [[once(row) for row in found.get(key, ())] for key in keys]

    return DataLoader(load_fn=load)


def _one(
    fetch: Callable[[Sequence[int]], Awaitable[Mapping[int, Row]]], build: Build[T]
) -> DataLoader[int, T | None]:
    async def load(keys: list[int]) -> list[T | None]:
        found = await fetch(keys)
        return [None if (row := found.get(key)) is None else build(row) for key in keys]

    return DataLoader(load_fn=load)


class Loaders:
    """The DataLoaders of one request, each built on first use (most requests need two or
    three of the nine); visibility follows the request's viewer."""

    def __init__(self, audience: Audience) -> None:
        self.audience = audience

    @cached_property
    def categories_by_business(self) -> DataLoader[int, list[Category]]:
        return _many(
            partial(queries.categories_by_business_ids, limit=BUSINESS_CATEGORIES),
            Category.from_values,
        )

    @cached_property
    def businesses_by_owner(self) -> DataLoader[int, list[Business]]:
        return _many(
            partial(queries.businesses_by_owner_ids, limit=OWNED_BUSINESSES), Business.from_values
        )

    @cached_property
    def events_by_creator(self) -> DataLoader[int, list[Event]]:
        return _many(
            partial(queries.events_by_creator_ids, limit=SUBMITTED_EVENTS), Event.from_values
        )

    @cached_property
    def available_events_by_business(self) -> DataLoader[int, list[Event]]:
        return _many(
            partial(queries.available_events_by_business_ids, limit=AVAILABLE_EVENTS),
            Event.from_values,
        )

    @cached_property
    def business_by_id(self) -> DataLoader[int, Business | None]:
        return _one(partial(queries.businesses_by_ids, self.audience), Business.from_values)

    @cached_property
    def event_by_id(self) -> DataLoader[int, Event | None]:
        return _one(partial(queries.events_by_ids, self.audience), Event.from_values)

    @cached_property
    def businesses_by_event(self) -> DataLoader[int, list[Business]]:
        return _many(
            partial(queries.businesses_by_event_ids, self.audience, limit=EVENT_BUSINESSES),
            Business.from_values,
        )

    @cached_property
    def events_by_business(self) -> DataLoader[int, list[Event]]:
        return _many(
            partial(queries.events_by_business_ids, self.audience, limit=BUSINESS_EVENTS),
            Event.from_values,
        )

    @cached_property
    def hosted_events_by_business(self) -> DataLoader[int, list[Event]]:
        return _many(
            partial(queries.hosted_events_by_business_ids, self.audience, limit=HOSTED_EVENTS),
            Event.from_values,
        )
