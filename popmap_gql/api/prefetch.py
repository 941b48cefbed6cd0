"""Look-ahead loading: fill the request's DataLoaders for a whole selection, level by level.

graphql-core runs an async resolver as a coroutine (often a task) per object, which costs
more than the SQL for a page of events. The root resolvers therefore load every relation
the query selects, one batched statement per relation and level, through the same
DataLoaders; the relation resolvers then find their values ready and answer
synchronously (see `dataloading.ready`). Anything not prefetched still loads lazily,
just slower.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Mapping
from typing import Any, TypeVar

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionNode,
)
from strawberry.dataloader import DataLoader

from popmap_gql.api.engine import raw_info
from popmap_gql.api.loaders import BUSINESS_CATEGORIES, BUSINESS_EVENTS, HOSTED_EVENTS, Loaders
from popmap_gql.api.types import Business, Category, Event
from popmap_gql.db import queries

__all__ = [
    "Selections",
    "lookup_business",
    "prefetch_businesses",
    "prefetch_events",
    "selected",
]

ObjectT = TypeVar("ObjectT", Business, Event)


class Selections(dict[str, "Selections"]):
    """The fields selected under a field, by name, merged across aliases and fragments,
    each with its own sub-selections (arguments and directives are not looked at: at worst
    a relation is loaded and not shown)."""

    def under(self, name: str) -> Selections:
        return self.get(name) or _NOTHING


_NOTHING = Selections()


def _collect(
    nodes: Iterable[SelectionNode],
    fragments: Mapping[str, FragmentDefinitionNode],
    into: Selections,
) -> None:
    for node in nodes:
        if isinstance(node, FieldNode):
            child = into.setdefault(node.name.value, Selections())
            if node.selection_set is not None:
                _collect(node.selection_set.selections, fragments, child)
        elif isinstance(node, InlineFragmentNode):
            _collect(node.selection_set.selections, fragments, into)
        elif isinstance(node, FragmentSpreadNode):
            fragment = fragments.get(node.name.value)
            if fragment is not None:  # validation rejects unknown and cyclic fragments
                _collect(fragment.selection_set.selections, fragments, into)


def selected(info: Any, *path: str) -> Selections:
    """The selections under the current field, following `path` (e.g. "edges", "node").

    Read from the document itself (graphql-core's nodes), not from Strawberry's
    `selected_fields`, which converts every node, argument and directive on each call.
    """
    raw = raw_info(info)
    current = Selections()
    for field_node in raw.field_nodes:
        if field_node.selection_set is not None:
            _collect(field_node.selection_set.selections, raw.fragments, current)
    for name in path:
        current = current.under(name)
    return current


async def _gather(*steps: Awaitable[None]) -> None:
    """Run the steps concurrently; a single step is awaited as is (no task for it)."""
    if len(steps) == 1:
        await steps[0]
    elif steps:
        await asyncio.gather(*steps)


async def prefetch_events(loaders: Loaders, rows: list[Event], selections: Selections) -> None:
    if not rows:
        return
    steps: list[Awaitable[None]] = []
    if "businesses" in selections or "categories" in selections:
        steps.append(_event_businesses(loaders, rows, selections))
    if "hostBusiness" in selections:
        steps.append(_event_hosts(loaders, rows, selections["hostBusiness"]))
    await _gather(*steps)


async def _event_businesses(loaders: Loaders, rows: list[Event], selections: Selections) -> None:
    per_event = await loaders.businesses_by_event.load_many([row.pk for row in rows])
    businesses = _distinct(business for group in per_event for business in group)
    nested = Selections(selections.under("businesses"))
    if "categories" in selections:
        nested.setdefault("categories", _NOTHING)  # Event.categories reads their categories
    await prefetch_businesses(loaders, businesses, nested)


async def _event_hosts(loaders: Loaders, rows: list[Event], selections: Selections) -> None:
    host_ids = sorted({row.host_business_id for row in rows if row.host_business_id is not None})
    hosts = await loaders.business_by_id.load_many(host_ids)
    await prefetch_businesses(loaders, [host for host in hosts if host is not None], selections)


async def prefetch_businesses(
    loaders: Loaders, rows: list[Business], selections: Selections
) -> None:
    ids = [row.pk for row in rows]
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
            steps.append(_business_events(loaders, loader, ids, selections[field]))
    await _gather(*steps)


async def lookup_business(loaders: Loaders, pk: int, selections: Selections) -> Business | None:
    """One business and its selected relations in one statement; the request's loaders
    are primed with all of it, and the events' own relations prefetched."""
    found = await queries.business_with_relations(
        loaders.audience,
        pk,
        categories=BUSINESS_CATEGORIES if "categories" in selections else None,
        events=BUSINESS_EVENTS if "events" in selections else None,
        hosted_events=HOSTED_EVENTS if "hostedEvents" in selections else None,
    )
    business = None if found.business is None else Business.from_values(found.business)
    loaders.business_by_id.prime(pk, business)
    if business is None:
        return None
    if found.categories is not None:
        loaders.categories_by_business.prime(
            pk, [Category.from_values(row) for row in found.categories]
        )
    steps: list[Awaitable[None]] = []
    for field, loader, rows in (
        ("events", loaders.events_by_business, found.events),
        ("hostedEvents", loaders.hosted_events_by_business, found.hosted_events),
    ):
        if rows is not None:
            events = [Event.from_values(row) for row in rows]
            loader.prime(pk, events)
            steps.append(prefetch_events(loaders, events, selections[field]))
    await _gather(*steps)
    return business


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


def _distinct(rows: Iterable[ObjectT]) -> list[ObjectT]:
    return list({row.pk: row for row in rows}.values())
