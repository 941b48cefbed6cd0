"""The look-ahead plan of the resolver path, derived from the read model: fill the
request's DataLoaders for a whole selection, one statement per relation and level.

graphql-core runs an async resolver as a coroutine (often a task) per object, which costs
more than the SQL for a page of events. The root resolvers therefore load every relation
of the read model that the query selects, through the same DataLoaders the relation
resolvers read, which then find their values ready and answer synchronously. Anything
not prefetched (a relation selected with other than its default arguments, a guarded one)
still loads lazily, just slower.

Most reads never come here: the compiled path answers them in SQL. This is the path for
what it declines, and for mutation payloads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from popmap_gql.read.loaders import Loaders, keys_of
from popmap_gql.read.model import graphql_name

__all__ = ["Selections", "prefetch"]


class Selections(dict[str, "Selections"]):
    """The fields selected under a field, by GraphQL name, merged across aliases and
    fragments, each with its own sub-selections (arguments and directives are not looked
    at: at worst a relation is loaded and not shown)."""

    def under(self, name: str) -> Selections:
        return self.get(name) or _NOTHING


_NOTHING = Selections()


async def prefetch(
    loaders: Loaders, entity_name: str, objects: list[Any], selections: Selections
) -> None:
    """Load every unguarded relation of `entity_name` selected under `selections` for
    `objects`, then theirs, level by level."""
    if not objects:
        return
    steps: list[Awaitable[None]] = []
    for relation in loaders.model[entity_name].relations:
        below = selections.get(graphql_name(relation.field))
        if below is None or relation.guard is not None:
            continue
        steps.append(_relation(loaders, entity_name, relation.field, objects, below))
    if len(steps) == 1:
        await steps[0]
    elif steps:
        await asyncio.gather(*steps)


async def _relation(
    loaders: Loaders, entity_name: str, field: str, objects: list[Any], below: Selections
) -> None:
    relation = loaders.model[entity_name].relation(field)
    assert relation is not None
    keys = keys_of(objects, relation.key_attribute)
    found = await loaders.related(entity_name, field).load_many(keys)
    children = [child for group in found for child in (group if relation.many else [group])]
    distinct = list({id(child): child for child in children if child is not None}.values())
    await prefetch(loaders, relation.target, distinct, below)
