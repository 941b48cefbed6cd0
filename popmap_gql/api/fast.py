"""The compiled read path: a query on read-model fields answered by SQL that builds its
JSON in PostgreSQL, one statement per root field.

`FastReads.answer` takes a validated query operation within the cost limit. Each root
field it knows (the lists, the lookups by id, the categories, `me`) has its arguments
checked by the very functions its resolver uses (`event_list_query`, `lookup_pk`, ...),
and its selection turned into SQL from the read model (`read.sql`). The JSON comes back
as text and is embedded in the answer as is (orjson `Fragment`s): no object is built per
row and no resolver runs.

Whenever a root field, a selection or a viewer needs more than the read model declares
(an error to report, a guarded field the viewer may not read, a directive other than
@skip/@include, a field without SQL), `answer` returns None and graphql-core runs the
resolvers instead, which answer it exactly as they always have. Errors are therefore
only ever written by the resolvers; tests/test_differential.py compares both paths.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    get_named_type,
    get_variable_values,
)
from tortoise.connection import connections

from popmap_gql.api.binding import Bound
from popmap_gql.api.context import Context
from popmap_gql.api.engine import strawberry_arguments, strawberry_field
from popmap_gql.api.queries import (
    CATEGORIES_CAP,
    business_list_query,
    event_list_query,
    viewer_object,
)
from popmap_gql.db.queries import ListQuery, count_of
from popmap_gql.errors import DatabaseUnavailable, PopmapError
from popmap_gql.read.compile import Selector
from popmap_gql.read.ids import encode_cursor, lookup_pk
from popmap_gql.read.model import CATEGORY_ORDER, ENTITIES, SqlScope
from popmap_gql.read.sql import FALLBACK_MARK, NotCompilable, object_json, relation_json

__all__ = ["FastReads"]

logger = logging.getLogger(__name__)


class _Fallback(Exception):
    """The resolvers must answer this request."""


Run = Callable[[], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class _Request:
    selector: Selector
    context: Context
    caps: Mapping[tuple[str, str], int]

    def scope(self, params: list[Any]) -> SqlScope:
        return SqlScope(
            self.context.viewer.audience,
            params,
            caps=self.caps,
            media_base=self.context.media_base,
        )


async def _texts(sql: str, params: list[Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = await connections.get("default").execute_query_dict(sql, params)
    return rows


def _fragment(text: str | None) -> Any:
    """JSON text from PostgreSQL, embedded as is; a fallback mark sends the request to the
    resolvers."""
    if text is None:
        return None
    if FALLBACK_MARK in text:
        raise _Fallback
    return orjson.Fragment(text)


class FastReads:
    def __init__(self, strawberry_schema: Any, schema: GraphQLSchema, bound: Bound) -> None:
        self.strawberry_schema = strawberry_schema
        self.schema = schema
        self.bound = bound
        query_type = schema.query_type
        assert query_type is not None
        self.query_type = query_type
        self.roots: dict[str, Callable[[_Request, str, list[FieldNode]], Run]] = {
            "events": self._events,
            "businesses": self._businesses,
            "event": self._event,
            "business": self._business,
            "categories": self._categories,
            "me": self._me,
        }

    async def answer(
        self,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variable_values: dict[str, Any] | None,
        context: Context,
    ) -> dict[str, Any] | None:
        """The operation's `data`, or None when the resolvers must answer it."""
        if operation.operation is not OperationType.QUERY:
            return None
        coerced = get_variable_values(
            self.schema, operation.variable_definitions or (), variable_values or {}
        )
        if isinstance(coerced, list):  # errors: the normal path reports them
            return None
        fragments = {
            definition.name.value: definition
            for definition in document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }
        selector = Selector(self.schema, self.bound.binding, fragments, coerced)
        request = _Request(selector, context, self.bound.caps)
        try:
            runs: list[tuple[str, Run]] = []
            for key, nodes in selector.fields("Query", [operation.selection_set]).items():
                name = nodes[0].name.value
                if name == "__typename":
                    runs.append((key, _constant("Query")))
                    continue
                root = self.roots.get(name)
                if root is None:
                    return None
                runs.append((key, root(request, name, nodes)))
            return {key: await run() for key, run in runs}
        except (NotCompilable, _Fallback):
            return None
        except DatabaseUnavailable:
            raise  # a fault of the database: 503, as on the resolvers' path
        except PopmapError:
            return None  # a coded error: the resolvers report it, with its path
        except Exception:
            # Not expected: logged in full, and the resolvers answer (their own failure,
            # if any, is reported and masked as usual).
            logger.exception("the compiled read failed; the resolvers answer instead")
            return None

    # --- helpers -------------------------------------------------------------------------

    def _arguments(self, selector: Selector, name: str, node: FieldNode) -> dict[str, Any]:
        definition = self.query_type.fields[name]
        field = strawberry_field(definition)
        assert field is not None
        raw = selector.arguments(definition, node)
        return strawberry_arguments(self.strawberry_schema, field, raw)

    def _type_of(self, parent: GraphQLObjectType, name: str) -> GraphQLObjectType:
        named = get_named_type(parent.fields[name].type)
        assert isinstance(named, GraphQLObjectType)
        return named

    # --- roots ---------------------------------------------------------------------------

    def _events(self, request: _Request, name: str, nodes: list[FieldNode]) -> Run:
        arguments = self._arguments(request.selector, name, nodes[0])
        query = event_list_query(request.context, **arguments)
        return self._connection(request, name, nodes, "Event", query)

    def _businesses(self, request: _Request, name: str, nodes: list[FieldNode]) -> Run:
        arguments = self._arguments(request.selector, name, nodes[0])
        query = business_list_query(request.context, **arguments)
        return self._connection(request, name, nodes, "Business", query)

    def _connection(
        self,
        request: _Request,
        name: str,
        nodes: list[FieldNode],
        entity_name: str,
        query: ListQuery,
    ) -> Run:
        selector = request.selector
        connection_type = self._type_of(self.query_type, name)
        edge_type = self._type_of(connection_type, "edges")
        page_info_type = self._type_of(connection_type, "pageInfo")
        top = selector.fields(connection_type.name, _sets(nodes))
        edge_fields: dict[str, list[FieldNode]] = {}
        for field_nodes in top.values():
            if field_nodes[0].name.value == "edges":
                for key, found in selector.fields(edge_type.name, _sets(field_nodes)).items():
                    edge_fields.setdefault(key, []).extend(found)
        node_nodes = [
            n for found in edge_fields.values() if found[0].name.value == "node" for n in found
        ]
        selection = selector.selected(entity_name, node_nodes)
        params: list[Any] = list(query.params)
        page = query.page_sql(params)
        scope = request.scope(params)
        node_json = object_json(ENTITIES[entity_name], "r", selection, scope)
        column = query.order.value[0]
        sql = (
            f"SELECT ({node_json})::text AS node, r.{column} AS sort, r.id AS id"
            f" FROM ({page}) r ORDER BY {query.order_by('r')}"
        )
        order_name = query.order.name

        async def run() -> Any:
            rows = await _texts(sql, params)
            items = rows[: query.first]
            cursors = [encode_cursor(order_name, row["sort"], row["id"]) for row in items]
            result: dict[str, Any] = {}
            for key, field_nodes in top.items():
                field_name = field_nodes[0].name.value
                if field_name == "__typename":
                    result[key] = connection_type.name
                elif field_name == "totalCount":
                    result[key] = await count_of(query)
                elif field_name == "pageInfo":
                    info = {
                        "hasNextPage": len(rows) > query.first,
                        "hasPreviousPage": False,
                        "startCursor": cursors[0] if cursors else None,
                        "endCursor": cursors[-1] if cursors else None,
                        "__typename": page_info_type.name,
                    }
                    result[key] = {
                        k: info[n[0].name.value]
                        for k, n in selector.fields(page_info_type.name, _sets(field_nodes)).items()
                    }
                else:  # edges
                    edges_here = selector.fields(edge_type.name, _sets(field_nodes))
                    result[key] = [
                        {
                            k: (
                                _fragment(row["node"])
                                if n[0].name.value == "node"
                                else cursor
                                if n[0].name.value == "cursor"
                                else edge_type.name
                            )
                            for k, n in edges_here.items()
                        }
                        for row, cursor in zip(items, cursors, strict=True)
                    ]
            return result

        return run

    def _event(self, request: _Request, name: str, nodes: list[FieldNode]) -> Run:
        return self._lookup(request, name, nodes, "Event", "event")

    def _business(self, request: _Request, name: str, nodes: list[FieldNode]) -> Run:
        return self._lookup(request, name, nodes, "Business", "business")

    def _lookup(
        self, request: _Request, name: str, nodes: list[FieldNode], entity_name: str, table: str
    ) -> Run:
        arguments = self._arguments(request.selector, name, nodes[0])
        pk = lookup_pk(entity_name, arguments["id"])
        if pk is None:
            raise _Fallback  # NOT_FOUND, from the resolver
        entity = ENTITIES[entity_name]
        selection = request.selector.selected(entity_name, nodes)
        params: list[Any] = [pk]
        scope = request.scope(params)
        visible = scope.visible(entity_name, "r")
        shown = object_json(entity, "r", selection, scope)
        sql = f"SELECT ({shown})::text AS value FROM {table} r WHERE r.id = $1 AND {visible}"

        async def run() -> Any:
            rows = await _texts(sql, params)
            if not rows:
                raise _Fallback  # NOT_FOUND, from the resolver
            return _fragment(rows[0]["value"])

        return run

    def _categories(self, request: _Request, name: str, nodes: list[FieldNode]) -> Run:
        cap = CATEGORIES_CAP
        selection = request.selector.selected("Category", nodes)
        params: list[Any] = []
        scope = request.scope(params)
        order = ", ".join(term.format(a="r") for term in CATEGORY_ORDER)
        shown = object_json(ENTITIES["Category"], "r", selection, scope)
        sql = (
            f"SELECT (COALESCE(json_agg({shown} ORDER BY {order}), '[]'::json))::text AS value"
            f" FROM (SELECT c.* FROM category c ORDER BY"
            f" {', '.join(term.format(a='c') for term in CATEGORY_ORDER)} LIMIT {cap}) r"
        )

        async def run() -> Any:
            rows = await _texts(sql, params)
            return _fragment(rows[0]["value"])

        return run

    def _me(self, request: _Request, name: str, nodes: list[FieldNode]) -> Run:
        viewer = viewer_object(request.context.viewer)
        if viewer is None:
            return _constant(None)
        entity = ENTITIES["Viewer"]
        viewer_type = self._type_of(self.query_type, name)
        selection = request.selector.selected("Viewer", nodes)
        params: list[Any] = []
        scope = request.scope(params)
        user = scope.param(viewer.pk)
        columns: list[str] = []
        shown: dict[str, Any] = {}
        for position, selected in enumerate(selection):
            if selected.name is None:
                shown[selected.key] = viewer_type.name
                continue
            relation = entity.relation(selected.name)
            if relation is None:
                graphql_name = next(
                    graphql
                    for (type_name, graphql), bound in self.bound.binding.items()
                    if type_name == "Viewer" and bound.python_name == selected.name
                )
                value = getattr(viewer, selected.name)
                shown[selected.key] = _serialize(viewer_type.fields[graphql_name].type, value)
                continue
            column = _Column(f"v{position}")
            columns.append(
                f"({relation_json(entity, relation, user, selected, scope)})::text AS {column.name}"
            )
            shown[selected.key] = column
        sql = f"SELECT {', '.join(columns)}" if columns else ""

        async def run() -> Any:
            if not sql:
                return shown
            row = (await _texts(sql, params))[0]
            return {
                key: _fragment(row[value.name]) if isinstance(value, _Column) else value
                for key, value in shown.items()
            }

        return run


@dataclass(frozen=True, slots=True)
class _Column:
    """Where a relation's JSON is in the statement's row."""

    name: str


def _sets(nodes: list[FieldNode]) -> list[Any]:
    return [node.selection_set for node in nodes if node.selection_set is not None]


def _constant(value: Any) -> Run:
    async def run() -> Any:
        return value

    return run


def _serialize(field_type: Any, value: Any) -> Any:
    """A value the object gives itself, as graphql-core would write it."""
    if isinstance(field_type, GraphQLNonNull):
        field_type = field_type.of_type
    if value is None:
        return None
    if isinstance(field_type, GraphQLList):
        return [_serialize(field_type.of_type, item) for item in value]
    if isinstance(field_type, GraphQLLeafType):
        return field_type.serialize(value)
    raise NotCompilable("an object-valued field given by the object")
