"""Look-ahead loading: fill the request's DataLoaders for a whole selection, level by level.

graphql-core runs an async resolver as a coroutine (often a task) per object, which costs
more than the SQL for a page of events. The root resolvers therefore load every relation
the query selects, one batched statement per relation and level, through the same
DataLoaders; the relation resolvers then find their values ready and answer
synchronously (see `ready`). Anything not prefetched still loads lazily, just slower.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable
from typing import Any, TypeVar, cast

from strawberry.dataloader import DataLoader
from strawberry.types.nodes import FragmentSpread, InlineFragment, SelectedField, Selection

from popmap_gql.api.loaders import Loaders
from popmap_gql.db.models import Business, Event

__all__ = [
    "Missing",
    "children",
    "peek",
    "prefetch_business_ids",
    "prefetch_businesses",
    "prefetch_events",
    "ready",
    "selected",
]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
R = TypeVar("R")
ModelT = TypeVar("ModelT", Business, Event)

Selections = dict[str, list[Selection]]


def children(selections: Iterable[Selection]) -> Selections:
    """The sub-selections of each field selected here, through fragments and aliases."""
    found: Selections = {}
    for selection in selections:
        if isinstance(selection, SelectedField):
            found.setdefault(selection.name, []).extend(selection.selections)
        elif isinstance(selection, FragmentSpread | InlineFragment):
            for name, subselections in children(selection.selections).items():
                found.setdefault(name, []).extend(subselections)
    return found


class Missing:
    """What `peek` returns when the loader does not hold the value yet."""


_MISSING = Missing()


def peek(loader: DataLoader[K, V], key: K) -> V | Missing:
    """The loader's value for `key` if it already holds one, else a Missing."""
    future = loader.cache_map.get(key)
    if (
        future is not None
        and future.done()
        and not future.cancelled()
        and future.exception() is None
    ):
        return future.result()
    return _MISSING


def selected(info: Any, *path: str) -> Selections:
    """The selections under the current field, following `path` (e.g. "edges", "node")."""
    current = children(
        selection for field in info.selected_fields for selection in field.selections
    )
    for name in path:
        current = children(current.get(name, []))
    return current


def ready(loader: DataLoader[K, V], key: K, convert: Callable[[V], R]) -> R:
    """`convert(value)` now if the loader already holds the value, else an awaitable of it.

    graphql-core awaits an awaitable returned by a sync resolver, so resolvers using this
    stay correct when nothing was prefetched; the annotation states the resolved type.
    """
    value = peek(loader, key)
    if not isinstance(value, Missing):
        return convert(value)

    async def later() -> R:
        return convert(await loader.load(key))

    return cast(R, later())


async def _gather(*steps: Awaitable[None]) -> None:
    await asyncio.gather(*steps)


async def prefetch_events(loaders: Loaders, rows: list[Event], selections: Selections) -> None:
    if not rows:
        return
    steps: list[Awaitable[None]] = []
    if "businesses" in selections or "categories" in selections:
        steps.append(_event_businesses(loaders, rows, selections))
    if "hostBusiness" in selections:
        steps.append(_event_hosts(loaders, rows, children(selections["hostBusiness"])))
    await _gather(*steps)


async def _event_businesses(loaders: Loaders, rows: list[Event], selections: Selections) -> None:
    per_event = await loaders.businesses_by_event.load_many([row.id for row in rows])
    businesses = _distinct(business for group in per_event for business in group)
    nested = children(selections.get("businesses", []))
    if "categories" in selections:
        nested.setdefault("categories", [])  # Event.categories reads its businesses' categories
    await prefetch_businesses(loaders, businesses, nested)


async def _event_hosts(loaders: Loaders, rows: list[Event], selections: Selections) -> None:
    host_ids = sorted({row.host_business_id for row in rows if row.host_business_id is not None})
    hosts = await loaders.business_by_id.load_many(host_ids)
    await prefetch_businesses(loaders, [host for host in hosts if host is not None], selections)


async def prefetch_businesses(
    loaders: Loaders, rows: list[Business], selections: Selections
) -> None:
    await prefetch_business_ids(loaders, [row.id for row in rows], selections)


async def prefetch_business_ids(loaders: Loaders, ids: list[int], selections: Selections) -> None:
    """Like prefetch_businesses, by id alone: a lookup can load relations alongside the row
    itself (one round trip, not two); relations of a business the viewer may not see are
    loaded for nothing but never shown."""
    if not ids:
        return
    steps: list[Awaitable[None]] = []
    if "categories" in selections:
        steps.append(_load(loaders.categories_by_business, ids))
    for field, loader in (
        ("events", loaders.events_by_business),
        ("hostedEvents", loaders.hosted_events_by_business),
    ):
        if field in selections:
            steps.append(_business_events(loaders, loader, ids, children(selections[field])))
    await _gather(*steps)


async def _load(loader: DataLoader[int, Any], ids: list[int]) -> None:
    await loader.load_many(ids)


async def _business_events(
    loaders: Loaders,
    loader: DataLoader[int, list[Event]],
    ids: list[int],
    selections: Selections,
) -> None:
    per_business = await loader.load_many(ids)
    events = _distinct(event for group in per_business for event in group)
    await prefetch_events(loaders, events, selections)


def _distinct(rows: Iterable[ModelT]) -> list[ModelT]:
    return list({row.id: row for row in rows}.values())
