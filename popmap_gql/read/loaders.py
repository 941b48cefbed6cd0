"""Per-request DataLoaders, derived from the read model: one per relation (and argument
values) that the request uses, and one per type for lookups by id.

Each relation's statement is the read model's (`read.sql.relation_rows_sql`): the same
SQL, limits, orders and visibility as the compiled read path. Objects are built straight
from the rows by the GraphQL type's builder; within one batch a row shared by several
keys (a category of many businesses) becomes one object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from strawberry.dataloader import DataLoader

from popmap_gql.db import lists
from popmap_gql.db.client import fetch
from popmap_gql.db.powers import Audience
from popmap_gql.read.model import ReadModel, SqlScope
from popmap_gql.read.sql import group_rows, relation_rows_sql

__all__ = ["Builders", "LoaderSetup", "Loaders"]

# GraphQL type name -> the function building its object from a row
Builders = Mapping[str, Callable[[Mapping[str, Any]], Any]]


@dataclass(frozen=True, slots=True)
class LoaderSetup:
    """What a request's loaders need from the schema: each relation's declared size and
    each type's builder."""

    model: ReadModel
    caps: Mapping[tuple[str, str], int]
    builders: Builders

    def loaders(self, audience: Audience) -> Loaders:
        return Loaders(audience, self)


class Loaders:
    """The DataLoaders of one request, each built on first use; visibility follows the
    request's viewer."""

    def __init__(self, audience: Audience, setup: LoaderSetup) -> None:
        self.audience = audience
        self.setup = setup
        self._loaders: dict[Any, DataLoader[Any, Any]] = {}

    def related(
        self, entity_name: str, field: str, arguments: Mapping[str, Any] | None = None
    ) -> DataLoader[Any, Any]:
        """Objects of the relation `entity_name.field` by the parent's key (a list, or for
        a to-one relation the object or None)."""
        given = tuple(sorted((arguments or {}).items()))
        key = (entity_name, field, given)
        if key not in self._loaders:
            self._loaders[key] = self._relation_loader(entity_name, field, dict(given))
        return self._loaders[key]

    def by_id(self, entity_name: str) -> DataLoader[int, Any]:
        """Visible objects of `entity_name` by id (None when hidden or missing)."""
        key = (entity_name, "id")
        if key not in self._loaders:
            self._loaders[key] = self._id_loader(entity_name)
        return self._loaders[key]

    def _relation_loader(
        self, entity_name: str, field: str, arguments: Mapping[str, Any]
    ) -> DataLoader[Any, Any]:
        model, caps = self.setup.model, self.setup.caps
        entity = model[entity_name]
        relation = entity.relation(field)
        assert relation is not None
        cap = caps[(entity_name, field)]
        build = self.setup.builders[relation.target]

        async def load(keys: list[Any]) -> list[Any]:
            params: list[Any] = []
            scope = SqlScope(self.audience, params, model=model, caps=caps)
            sql = relation_rows_sql(entity, relation, scope, keys, cap, arguments)
            rows = await fetch(sql, params)
            grouped = group_rows(rows)
            built: dict[int, Any] = {}

            def once(row: Mapping[str, Any]) -> Any:
                found = built.get(id(row))
                if found is None:
                    found = built[id(row)] = build(row)
                return found

            if relation.many:
                return [[once(row) for row in grouped.get(key, ())] for key in keys]
            return [next((once(row) for row in grouped.get(key, ())), None) for key in keys]

        return DataLoader(load_fn=load)

    def _id_loader(self, entity_name: str) -> DataLoader[int, Any]:
        entity = self.setup.model[entity_name]
        build = self.setup.builders[entity_name]

        async def load(keys: list[int]) -> list[Any]:
            found = await lists.visible_by_ids(self.audience, entity.table, entity.visibility, keys)
            return [None if (row := found.get(key)) is None else build(row) for key in keys]

        return DataLoader(load_fn=load)
