"""The compiled read path: a query on read-model fields answered by SQL that builds its
JSON in PostgreSQL, one statement per root field.

`CompiledReads.answer` takes a validated query operation within the cost limit. Each root
field it knows (the lists, the lookups by id, the categories, `me`) has its arguments
checked by the very functions its resolver uses (`event_list_query`, `api/arguments.py`),
and its selection turned into SQL from the read model (`read.sql`). The JSON comes back
as text and is embedded in the answer as is (orjson `Fragment`s): no object is built per
row and no resolver runs.

A compiled plan depends only on the document's text, the operation's name, the
variables, who asks (the audience: user, staff, service and scopes) and the media base
URL, so plans are kept under exactly that key and a repeated request only runs its
statements. They are kept in an LRU of at most `PLANS_KEPT` entries within its share of
POPMAP_DOCUMENT_MEMORY_BYTES, each entry counting its key (the text included) and its
SQL: a client sending ever new documents or variables cannot make them hold more. Plans
of long documents (documents.py) are not kept. Nothing in a plan depends on the clock:
"not ended" is PostgreSQL's `now()`.

Whenever a root field, a selection or a viewer needs more than the read model declares
(an error to report, a guarded field the viewer may not read, an object too wide for one
statement), `answer` returns None and Strawberry's resolvers
answer instead (with the DataLoaders of `read/loaders.py`). Errors are therefore only
ever written by the resolvers. Which path answered, and why the compiled one declined
(one of `DECLINED`), is noted in the request's facts for its access line;
tests/test_differential.py asserts it per case and compares the compiled answers with
resolvers over the ORM's form of each rule.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

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
    SelectionSetNode,
    VariableValues,
    get_named_type,
)

from popmap_gql import observe
from popmap_gql.api.admission import Admission
from popmap_gql.api.arguments import lookup
from popmap_gql.api.binding import Bound
from popmap_gql.api.context import Context
from popmap_gql.api.documents import LONG_DOCUMENT
from popmap_gql.api.engine import strawberry_arguments, strawberry_field
from popmap_gql.api.query import (
    CATEGORIES_CAP,
    auth_config,
    business_list_query,
    event_list_query,
    viewer_object,
)
from popmap_gql.api.services import service_client
from popmap_gql.db.client import fetch
from popmap_gql.db.lists import Count, ListQuery, count_of
from popmap_gql.errors import DatabaseUnavailable, PopmapError
from popmap_gql.memory import LRU
from popmap_gql.read.ids import encode_cursor
from popmap_gql.read.model import CATEGORY_ORDER, SqlScope
from popmap_gql.read.selections import Selector
from popmap_gql.read.sql import FALLBACK_MARK, NotCompilable, object_json, relation_json

__all__ = ["DECLINED", "PLANS_KEPT", "CompiledReads", "PlanKey"]

logger = logging.getLogger(__name__)

# Compiled plans kept per process (each a few kilobytes of SQL at most).
PLANS_KEPT = 1024
# What an entry costs besides its text, variables and SQL: the key's tuple, the plan's
# objects and the LRU's node.
PLAN_OVERHEAD = 512


# Why the compiled path declines a query, in one word each (the access line's
# `declined`): the selection's reasons (read.sql.NotCompilable) and the request's.
DECLINED = frozenset(
    {
        "size",  # an object too wide for one statement
        "guarded",  # a guarded field the viewer may not read (the resolver refuses it)
        "not_found",  # a lookup of an id that names no row the viewer sees
        "root",  # a root field without a compiled plan
        "error",  # an argument refused with a coded error, which the resolver reports
        "failed",  # the compiled read failed unexpectedly (logged)
        "mutation",  # not a query
        "off",  # POPMAP_COMPILED_READS=false
    }
)


class _Fallback(Exception):
    """The resolvers must answer this request, for `reason` (one of DECLINED)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _fragment(text: str) -> Any:
    """JSON text from PostgreSQL, embedded as is (never null: an object, or a list's
    array); a fallback mark sends the request to the resolvers."""
    if FALLBACK_MARK in text:
        raise _Fallback("guarded")
    return orjson.Fragment(text)


# --- plans: pure data, shared by every request with the same key ---------------------


class Root(Protocol):
    """One root field's plan."""

    async def run(self, context: Context) -> Any: ...


@dataclass(frozen=True, slots=True)
class _Constant(Root):
    value: Any

    async def run(self, context: Context) -> Any:
        return self.value


@dataclass(frozen=True, slots=True)
class _Declined(Root):
    """The plan of a query the resolvers answer (kept, so it is decided once)."""

    reason: str

    async def run(self, context: Context) -> Any:
        raise _Fallback(self.reason)


@dataclass(frozen=True, slots=True)
class _Value(Root):
    """A statement answering one JSON value: a lookup's row, or the categories' one
    aggregate row; no row means NOT_FOUND, which the resolver reports."""

    sql: str
    params: tuple[Any, ...]

    async def run(self, context: Context) -> Any:
        rows = await fetch(self.sql, self.params)
        if not rows:
            raise _Fallback("not_found")
        return _fragment(rows[0]["value"])


# (response key, what it is) for each field of a selection of fixed fields
Shape = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class _Connection(Root):
    sql: str
    params: tuple[Any, ...]
    query: ListQuery
    top: tuple[tuple[str, str, Shape], ...]  # (key, field, shape below)
    type_names: Mapping[str, str]  # "connection", "edge", "page_info" -> type name

    async def run(self, context: Context) -> Any:
        query = self.query
        rows = await fetch(self.sql, self.params)
        items = rows[: query.first]
        order = query.cursor_order
        cursors = [encode_cursor(order, row["sort"], row["id"]) for row in items]
        result: dict[str, Any] = {}
        count: Count | None = None
        for key, field, shape in self.top:
            if field == "__typename":
                result[key] = self.type_names["connection"]
            elif field in ("totalCount", "totalCountIsExact"):
                if count is None:
                    count = await count_of(query)
                result[key] = count.n if field == "totalCount" else count.exact
            elif field == "pageInfo":
                info = {
                    "hasNextPage": len(rows) > query.first,
                    "hasPreviousPage": False,
                    "startCursor": cursors[0] if cursors else None,
                    "endCursor": cursors[-1] if cursors else None,
                    "__typename": self.type_names["page_info"],
                }
                result[key] = {k: info[name] for k, name in shape}
            else:  # edges
                edge = self.type_names["edge"]
                result[key] = [
                    {
                        k: _fragment(row["node"])
                        if name == "node"
                        else cursor
                        if name == "cursor"
                        else edge
                        for k, name in shape
                    }
                    for row, cursor in zip(items, cursors, strict=True)
                ]
        return result


@dataclass(frozen=True, slots=True)
class _Given(Root):
    """An object the root's own function makes from the request (the viewer, the
    service, the sign-in settings; read at run time): its fields as that object gives
    them, and its relations, if any, from one statement."""

    make: Callable[[Context], Any]
    fields: tuple[tuple[str, str, str], ...]  # (key, "given"|"relation"|"typename", name)
    type_name: str
    serializers: Mapping[str, Callable[[Any], Any]]
    sql: str = ""
    params: tuple[Any, ...] = ()

    async def run(self, context: Context) -> Any:
        given = self.make(context)
        if given is None:
            return None
        row = (await fetch(self.sql, self.params))[0] if self.sql else {}
        shown: dict[str, Any] = {}
        for key, kind, name in self.fields:
            if kind == "typename":
                shown[key] = self.type_name
            elif kind == "relation":
                shown[key] = _fragment(row[name])
            else:
                shown[key] = self.serializers[name](getattr(given, name))
        return shown


Plan = tuple[tuple[str, Root], ...]

_UNKNOWN: Any = object()  # no plan kept

# (text, operation name, canonical variables, user, staff, client, scopes, media base)
PlanKey = tuple[str, str | None, bytes, int | None, bool, str | None, frozenset[str], str]


def _entry_size(key: PlanKey, plan: Plan) -> int:
    """About what a kept plan holds: its key's text and variables, its statements' text
    (the rest is small)."""
    sql = sum(len(getattr(root, "sql", "")) for _, root in plan)
    return PLAN_OVERHEAD + sys.getsizeof(key[0]) + len(key[2]) + sql


# --- compiling ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Compiling:
    selector: Selector
    context: Context
    bound: Bound

    def scope(self, params: list[Any]) -> SqlScope:
        return SqlScope(
            self.context.viewer.audience,
            params,
            model=self.bound.model,
            caps=self.bound.caps,
            media_base=self.context.media_base,
        )


class CompiledReads:
    def __init__(
        self, strawberry_schema: Any, schema: GraphQLSchema, bound: Bound, *, plans_max_bytes: int
    ) -> None:
        self.strawberry_schema = strawberry_schema
        self.schema = schema
        self.bound = bound
        query_type = schema.query_type
        assert query_type is not None
        self.query_type = query_type
        self.roots: dict[str, Callable[[_Compiling, str, list[FieldNode]], Root]] = {
            "events": self._events,
            "businesses": self._businesses,
            "event": self._event,
            "business": self._business,
            "categories": self._categories,
            "me": self._me,
            "serviceClient": self._service_client,
            "authConfig": self._auth_config,
        }
        self.plans: LRU[PlanKey, Plan] = LRU(
            max_entries=PLANS_KEPT, max_bytes=plans_max_bytes, size=_entry_size
        )

    async def answer(
        self,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        admission: Admission,
        context: Context,
    ) -> dict[str, Any] | None:
        """The operation's `data`, or None when the resolvers must answer it (and why is
        noted in the request's facts)."""
        declined = "mutation"
        data: dict[str, Any] | None = None
        try:
            if operation.operation is OperationType.QUERY:
                plan = self._plan(document, operation, admission, context)
                data = {key: await root.run(context) for key, root in plan}
        except _Fallback as fallback:
            declined = fallback.reason
        except DatabaseUnavailable:
            raise  # a fault of the database: 503, as on the resolvers' path
        except PopmapError:
            declined = "error"  # a coded error: the resolvers report it, with its path
        except Exception:
            # Not expected: logged in full, and the resolvers answer (their own failure,
            # if any, is reported and masked as usual).
            logger.exception("the compiled read failed; the resolvers answer instead")
            declined = "failed"
        if data is None:
            observe.note_declined(declined)
        return data

    def _plan(
        self,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        admission: Admission,
        context: Context,
    ) -> Plan:
        audience = context.viewer.audience
        # The text the document was parsed from (the document cache's own string, so the
        # key costs no copy): a text and an operation name name one operation.
        text = document.loc.source.body if document.loc else None
        key: PlanKey | None = None
        if text is not None and len(text) <= LONG_DOCUMENT:
            key = (
                text,
                admission.operation_name,
                admission.key,  # the coerced values: equal exactly when the plan would be
                audience.user_id,
                audience.is_staff,
                audience.client_id,
                audience.scopes,
                context.media_base,
            )
            found = self.plans.get(key, _UNKNOWN)
            if found is not _UNKNOWN:
                known: Plan = found
                return known
        try:
            plan = self._compile(document, operation, admission.values, context)
        except NotCompilable as declined:
            plan = (("", _Declined(declined.reason)),)
        # (a PopmapError, from checking arguments, propagates unkept: the resolvers
        # report it, and the next request checks again)
        if key is not None:
            self.plans.put(key, plan)
        return plan

    def _compile(
        self,
        document: DocumentNode,
        operation: OperationDefinitionNode,
        variables: VariableValues,
        context: Context,
    ) -> Plan:
        fragments = {
            definition.name.value: definition
            for definition in document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }
        selector = Selector(self.schema, self.bound.binding, fragments, variables)
        compiling = _Compiling(selector, context, self.bound)
        plan: list[tuple[str, Root]] = []
        for key, nodes in selector.fields("Query", [operation.selection_set]).items():
            name = nodes[0].name.value
            if name == "__typename":
                plan.append((key, _Constant("Query")))
                continue
            root = self.roots.get(name)
            if root is None:
                return (("", _Declined("root")),)
            plan.append((key, root(compiling, name, nodes)))
        return tuple(plan)

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

    @staticmethod
    def _shape(selector: Selector, type_name: str, nodes: list[FieldNode]) -> Shape:
        return tuple(
            (key, found[0].name.value)
            for key, found in selector.fields(type_name, _sets(nodes)).items()
        )

    # --- roots ---------------------------------------------------------------------------

    def _events(self, compiling: _Compiling, name: str, nodes: list[FieldNode]) -> Root:
        arguments = self._arguments(compiling.selector, name, nodes[0])
        query = event_list_query(compiling.context, **arguments)
        return self._connection(compiling, name, nodes, "Event", query)

    def _businesses(self, compiling: _Compiling, name: str, nodes: list[FieldNode]) -> Root:
        arguments = self._arguments(compiling.selector, name, nodes[0])
        query = business_list_query(compiling.context, **arguments)
        return self._connection(compiling, name, nodes, "Business", query)

    def _connection(
        self,
        compiling: _Compiling,
        name: str,
        nodes: list[FieldNode],
        entity_name: str,
        query: ListQuery,
    ) -> Root:
        selector = compiling.selector
        connection_type = self._type_of(self.query_type, name)
        edge_type = self._type_of(connection_type, "edges")
        page_info_type = self._type_of(connection_type, "pageInfo")
        top: list[tuple[str, str, Shape]] = []
        node_nodes: list[FieldNode] = []
        for key, field_nodes in selector.fields(connection_type.name, _sets(nodes)).items():
            field = field_nodes[0].name.value
            shape: Shape = ()
            if field == "edges":
                for found in selector.fields(edge_type.name, _sets(field_nodes)).values():
                    if found[0].name.value == "node":
                        node_nodes.extend(found)
                shape = self._shape(selector, edge_type.name, field_nodes)
            elif field == "pageInfo":
                shape = self._shape(selector, page_info_type.name, field_nodes)
            top.append((key, field, shape))
        selection = selector.selected(entity_name, node_nodes)
        params: list[Any] = list(query.params)
        page = query.page_sql(params)
        node_json = object_json(
            self.bound.model[entity_name], "r", selection, compiling.scope(params)
        )
        sql = (
            f"SELECT ({node_json})::text AS node, r.{query.order.value[0]} AS sort, r.id AS id"
            f" FROM ({page}) r ORDER BY {query.order_by('r')}"
        )
        return _Connection(
            sql,
            tuple(params),
            query,
            tuple(top),
            {
                "connection": connection_type.name,
                "edge": edge_type.name,
                "page_info": page_info_type.name,
            },
        )

    def _event(self, compiling: _Compiling, name: str, nodes: list[FieldNode]) -> Root:
        return self._lookup(compiling, name, nodes, "Event")

    def _business(self, compiling: _Compiling, name: str, nodes: list[FieldNode]) -> Root:
        return self._lookup(compiling, name, nodes, "Business")

    def _lookup(
        self, compiling: _Compiling, name: str, nodes: list[FieldNode], entity_name: str
    ) -> Root:
        arguments = self._arguments(compiling.selector, name, nodes[0])
        pk = lookup(entity_name, arguments["id"])
        if pk is None:
            raise NotCompilable("no such id: NOT_FOUND, from the resolver", "not_found")
        entity = self.bound.model[entity_name]
        selection = compiling.selector.selected(entity_name, nodes)
        params: list[Any] = [pk]
        scope = compiling.scope(params)
        visible = scope.visible(entity_name, "r")
        shown = object_json(entity, "r", selection, scope)
        sql = f"SELECT ({shown})::text AS value FROM {entity.table} r WHERE r.id = $1 AND {visible}"
        return _Value(sql, tuple(params))

    def _categories(self, compiling: _Compiling, name: str, nodes: list[FieldNode]) -> Root:
        selection = compiling.selector.selected("Category", nodes)
        params: list[Any] = []
        shown = object_json(self.bound.model["Category"], "r", selection, compiling.scope(params))
        order = ", ".join(term.format(a="r") for term in CATEGORY_ORDER)
        sql = (
            f"SELECT (COALESCE(json_agg({shown} ORDER BY {order}), '[]'::json))::text AS value"
            f" FROM (SELECT c.* FROM category c ORDER BY"
            f" {', '.join(term.format(a='c') for term in CATEGORY_ORDER)}"
            f" LIMIT {CATEGORIES_CAP}) r"
        )
        return _Value(sql, tuple(params))

    def _me(self, compiling: _Compiling, name: str, nodes: list[FieldNode]) -> Root:
        viewer = viewer_object(compiling.context.viewer)
        if viewer is None:
            return _Constant(None)
        entity = self.bound.model["Viewer"]
        viewer_type = self._type_of(self.query_type, name)
        selection = compiling.selector.selected("Viewer", nodes)
        params: list[Any] = []
        scope = compiling.scope(params)
        user = scope.param(viewer.pk)
        columns: list[str] = []
        fields: list[tuple[str, str, str]] = []
        serializers: dict[str, Callable[[Any], Any]] = {}
        graphql_names = {
            bound.python_name: graphql
            for (type_name, graphql), bound in self.bound.binding.items()
            if type_name == "Viewer"
        }
        for position, selected in enumerate(selection):
            if selected.name is None:
                fields.append((selected.key, "typename", ""))
                continue
            relation = entity.relation(selected.name)
            if relation is None:
                field_type = viewer_type.fields[graphql_names[selected.name]].type
                serializers[selected.name] = _serializer(field_type)
                fields.append((selected.key, "given", selected.name))
                continue
            column = f"v{position}"
            json = relation_json(entity, relation, user, selected, scope)
            columns.append(f"({json})::text AS {column}")
            fields.append((selected.key, "relation", column))
        sql = f"SELECT {', '.join(columns)}" if columns else ""
        return _Given(_viewer, tuple(fields), viewer_type.name, serializers, sql, tuple(params))

    def _service_client(self, compiling: _Compiling, name: str, nodes: list[FieldNode]) -> Root:
        return self._given(compiling, name, nodes, _service)

    def _auth_config(self, compiling: _Compiling, name: str, nodes: list[FieldNode]) -> Root:
        return self._given(compiling, name, nodes, _sign_in)

    def _given(
        self,
        compiling: _Compiling,
        name: str,
        nodes: list[FieldNode],
        make: Callable[[Context], Any],
    ) -> Root:
        """A root whose object `make` gives, with leaf fields only (outside the read
        model), each serialized as graphql-core would."""
        object_type = self._type_of(self.query_type, name)
        fields: list[tuple[str, str, str]] = []
        serializers: dict[str, Callable[[Any], Any]] = {}
        for key, found in compiling.selector.fields(object_type.name, _sets(nodes)).items():
            field_name = found[0].name.value
            if field_name == "__typename":
                fields.append((key, "typename", ""))
                continue
            field = strawberry_field(object_type.fields[field_name])
            assert field is not None
            serializers[field.python_name] = _serializer(object_type.fields[field_name].type)
            fields.append((key, "given", field.python_name))
        return _Given(make, tuple(fields), object_type.name, serializers)


def _viewer(context: Context) -> Any:
    return viewer_object(context.viewer)


def _service(context: Context) -> Any:
    return service_client(context.viewer, context.settings)


def _sign_in(context: Context) -> Any:
    return auth_config(context.settings, context)


def _sets(nodes: list[FieldNode]) -> list[SelectionSetNode]:
    return [node.selection_set for node in nodes if node.selection_set is not None]


def _serializer(field_type: Any) -> Callable[[Any], Any]:
    """How graphql-core writes a value of this leaf (or list of leaves) type."""
    if isinstance(field_type, GraphQLNonNull):
        field_type = field_type.of_type
    if isinstance(field_type, GraphQLList):
        item = _serializer(field_type.of_type)
        return lambda value: None if value is None else [item(v) for v in value]
    assert isinstance(field_type, GraphQLLeafType)  # given objects have leaf fields only
    leaf = field_type
    return lambda value: None if value is None else leaf.serialize(value)
