"""Per-request DataLoaders, one per relation, named "X by Y"; results align with keys."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
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
    """The DataLoaders of one request; visibility follows the request's viewer."""

    def __init__(self, audience: Audience) -> None:
        self.categories_by_business: DataLoader[int, list[Category]] = _unfiltered(
            queries.categories_by_business_ids
        )
        self.businesses_by_owner: DataLoader[int, list[Business]] = _unfiltered(
            queries.businesses_by_owner_ids
        )
        self.events_by_creator: DataLoader[int, list[Event]] = _unfiltered(
            queries.events_by_creator_ids
        )
        self.available_events_by_business: DataLoader[int, list[Event]] = _unfiltered(
            queries.available_events_by_business_ids
        )
        self.business_by_id: DataLoader[int, Business | None] = _one(
            queries.businesses_by_ids, audience
        )
        self.event_by_id: DataLoader[int, Event | None] = _one(queries.events_by_ids, audience)
        self.businesses_by_event: DataLoader[int, list[Business]] = _many(
            queries.businesses_by_event_ids, audience
        )
        self.events_by_business: DataLoader[int, list[Event]] = _many(
            queries.events_by_business_ids, audience
        )
        self.hosted_events_by_business: DataLoader[int, list[Event]] = _many(
            queries.hosted_events_by_business_ids, audience
        )
