"""Per-request DataLoaders, one per relation, named "X by Y"; results align with keys."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import cached_property
from typing import TypeVar

from strawberry.dataloader import DataLoader

from popmap_gql.db import queries
from popmap_gql.db.models import Business, Category, Event
from popmap_gql.db.queries import Audience

__all__ = ["Loaders"]

V = TypeVar("V")


def _many(
    fetch: Callable[[Audience, Sequence[int]], Awaitable[Mapping[int, list[V]]]],
    audience: Audience,
) -> DataLoader[int, list[V]]:
    async def load(keys: list[int]) -> list[list[V]]:
        found = await fetch(audience, keys)
        return [found.get(key, []) for key in keys]

    return DataLoader(load_fn=load)


def _one(
    fetch: Callable[[Audience, Sequence[int]], Awaitable[Mapping[int, V]]],
    audience: Audience,
) -> DataLoader[int, V | None]:
    async def load(keys: list[int]) -> list[V | None]:
        found = await fetch(audience, keys)
        return [found.get(key) for key in keys]

    return DataLoader(load_fn=load)


def _unfiltered(
    fetch: Callable[[Sequence[int]], Awaitable[Mapping[int, list[V]]]],
) -> DataLoader[int, list[V]]:
    """A loader of rows that need no visibility filter (categories, the viewer's own)."""

    async def load(keys: list[int]) -> list[list[V]]:
        found = await fetch(keys)
        return [found.get(key, []) for key in keys]

    return DataLoader(load_fn=load)


class Loaders:
    """The DataLoaders of one request, each built on first use (most requests need two or
    three of the nine); visibility follows the request's viewer."""

    def __init__(self, audience: Audience) -> None:
        self.audience = audience

    @cached_property
    def categories_by_business(self) -> DataLoader[int, list[Category]]:
        return _unfiltered(queries.categories_by_business_ids)

    @cached_property
    def businesses_by_owner(self) -> DataLoader[int, list[Business]]:
        return _unfiltered(queries.businesses_by_owner_ids)

    @cached_property
    def events_by_creator(self) -> DataLoader[int, list[Event]]:
        return _unfiltered(queries.events_by_creator_ids)

    @cached_property
    def available_events_by_business(self) -> DataLoader[int, list[Event]]:
        return _unfiltered(queries.available_events_by_business_ids)

    @cached_property
    def business_by_id(self) -> DataLoader[int, Business | None]:
        return _one(queries.businesses_by_ids, self.audience)

    @cached_property
    def event_by_id(self) -> DataLoader[int, Event | None]:
        return _one(queries.events_by_ids, self.audience)

    @cached_property
    def businesses_by_event(self) -> DataLoader[int, list[Business]]:
        return _many(queries.businesses_by_event_ids, self.audience)

    @cached_property
    def events_by_business(self) -> DataLoader[int, list[Event]]:
        return _many(queries.events_by_business_ids, self.audience)

    @cached_property
    def hosted_events_by_business(self) -> DataLoader[int, list[Event]]:
        return _many(queries.hosted_events_by_business_ids, self.audience)
