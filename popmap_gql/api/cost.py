"""The cost of an operation: how many objects its answer can hold at most.

Computed before anything executes, as GitHub's node limit: each object the answer can
contain costs 1. A field returning one object costs 1 plus its selections; a list of
at most N objects costs N times (1 plus its selections), so sizes multiply down the
tree. Scalars, enums and lists of them cost nothing (the token limit bounds how many
a document names). A connection costs 1 plus its selections, and its `edges` hold
`first` items (default and cap as declared, see sizes.py). The sizes come from the
declarations on the fields; the model is built from the schema at start-up and fails
there if a list of objects has none. Introspection lists are sized from the schema
itself (how many types, the most fields of a type, ...).

Database work that the answer does not show is declared too: a connection's count
(`totalCount`, `totalCountIsExact`, declared `COUNTS`) reads up to the count limit + 1
rows, and costs that many points (`count_cost`), once per connection's selection.

Beside it, each operation has a database cost, limited on its own
(`POPMAP_MAX_DATABASE_COST`): what PostgreSQL reads for it, in the same unit (an object
loaded is about one row read), so that the limit bounds a request's database time.
Introspection reads nothing, and a count is priced at what it may read
(`count_database_cost`: counting the thousandth match of a filter can read several
rows per match; see sizes.py), as is a connection ordered by reading its matches
(`RANKING_ORDERS`).

The walk is linear in the document: a fragment's cost is computed once per page size
it is spread under, then multiplied at each spread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from graphql import (
    EnumValueNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLSchema,
    GraphQLUnionType,
    InlineFragmentNode,
    IntValueNode,
    OperationDefinitionNode,
    SchemaMetaFieldDef,
    SelectionSetNode,
    TypeMetaFieldDef,
    VariableNode,
    get_named_type,
    is_leaf_type,
)

from popmap_gql.api.engine import strawberry_field
from popmap_gql.api.sizes import RANKING_ORDERS, Capped, Counts, Paged, PageItems, declared

__all__ = ["MAX_REPORTED_COST", "Cost", "CostModel", "too_costly"]

# Costs saturate here (the largest integer a JavaScript client reads exactly).
MAX_REPORTED_COST = 2**53 - 1


class _Kind(Enum):
    LEAF = "leaf"  # scalars, enums, lists of them
    ONE = "one"  # one object
    LIST = "list"  # a list of at most `cap` objects
    PAGED = "paged"  # a connection: `first` items in its edges
    PAGE_ITEMS = "page items"  # a connection's edges
    COUNT = "count"  # a connection's count: `count_cost` rows read, once per connection


@dataclass(frozen=True, slots=True)
class _Field:
    kind: _Kind
    type_name: str  # the named type of its value
    cap: int = 1
    paged: Paged | None = None


def _is_list(graphql_type: GraphQLOutputType) -> bool:
    while isinstance(graphql_type, GraphQLNonNull | GraphQLList):
        if isinstance(graphql_type, GraphQLList):
            return True
        graphql_type = graphql_type.of_type
    return False


def _introspection_caps(schema: GraphQLSchema) -> dict[tuple[str, str], int]:
    """The longest each introspection list can be in this schema."""
    types = list(schema.type_map.values())
    with_fields = [t for t in types if isinstance(t, GraphQLObjectType | GraphQLInterfaceType)]
    fields = [f for t in with_fields for f in t.fields.values()]
    abstract = [t for t in types if isinstance(t, GraphQLInterfaceType | GraphQLUnionType)]
    return {
        ("__Schema", "types"): len(types),
        ("__Schema", "directives"): len(schema.directives),
        ("__Type", "fields"): max((len(t.fields) for t in with_fields), default=0),
        ("__Type", "interfaces"): max((len(t.interfaces) for t in with_fields), default=0),
        ("__Type", "possibleTypes"): max(
            (len(schema.get_possible_types(t)) for t in abstract), default=0
        ),
        ("__Type", "enumValues"): max((len(getattr(t, "values", ())) for t in types), default=0),
        ("__Type", "inputFields"): max(
            (len(t.fields) for t in types if isinstance(t, GraphQLInputObjectType)), default=0
        ),
        ("__Field", "args"): max((len(f.args) for f in fields), default=0),
        ("__Directive", "args"): max((len(d.args) for d in schema.directives), default=0),
    }


def _describe(
    type_name: str, name: str, field: GraphQLField, introspection: Mapping[tuple[str, str], int]
) -> _Field:
    named = get_named_type(field.type)
    definition = strawberry_field(field)
    size = declared(getattr(definition, "metadata", None))
    if isinstance(size, Counts) and is_leaf_type(named):
        return _Field(_Kind.COUNT, named.name)
    if is_leaf_type(named):
        return _Field(_Kind.LEAF, named.name)
    listed = _is_list(field.type)
    where = f"{type_name}.{name}"
    if isinstance(size, Paged):
        return _Field(_Kind.PAGED, named.name, paged=size)
    if isinstance(size, PageItems) and listed:
        return _Field(_Kind.PAGE_ITEMS, named.name)
    if isinstance(size, Capped) and listed:
        return _Field(_Kind.LIST, named.name, cap=size.cap)
    if size is not None:
        msg = f"{where}: {size!r} does not fit a field of type {field.type}"
        raise TypeError(msg)
    if not listed:
        return _Field(_Kind.ONE, named.name)
    if (type_name, name) in introspection:
        return _Field(_Kind.LIST, named.name, cap=introspection[(type_name, name)])
    msg = f"{where} is a list of objects without a declared size (see popmap_gql.api.sizes)"
    raise TypeError(msg)


def _check_pages(fields: Mapping[tuple[str, str], _Field]) -> None:
    """A connection's edges take their size from the field that returned it, so every
    field returning a type with edges must be paged, and only such fields."""
    with_edges = {key[0] for key, field in fields.items() if field.kind is _Kind.PAGE_ITEMS}
    for (type_name, name), field in fields.items():
        if (field.kind is _Kind.PAGED) != (field.type_name in with_edges):
            msg = f"{type_name}.{name}: connections and paged fields must go together"
            raise TypeError(msg)


@dataclass(frozen=True, slots=True)
class Cost:
    """An operation's cost: the objects its answer can hold (`objects`, what budgets
    charge) and the rows PostgreSQL may read for it (`database`)."""

    objects: int
    database: int

    def __add__(self, other: Cost) -> Cost:
        return Cost(_add(self.objects, other.objects), _add(self.database, other.database))

    def __mul__(self, n: int) -> Cost:
        return Cost(_times(n, self.objects), _times(n, self.database))


FREE = Cost(0, 0)


class CostModel:
    """Every field's size, from the schema; costs operations against it."""

    def __init__(self, schema: GraphQLSchema, count_cost: int, count_database_cost: int) -> None:
        self.count = Cost(count_cost, count_database_cost)
        introspection = _introspection_caps(schema)
        self.fields: dict[tuple[str, str], _Field] = {}
        for graphql_type in schema.type_map.values():
            if isinstance(graphql_type, GraphQLObjectType | GraphQLInterfaceType):
                for name, field in graphql_type.fields.items():
                    self.fields[(graphql_type.name, name)] = _describe(
                        graphql_type.name, name, field, introspection
                    )
        _check_pages(self.fields)
        self._meta = {
            "__schema": _Field(_Kind.ONE, get_named_type(SchemaMetaFieldDef.type).name),
            "__type": _Field(_Kind.ONE, get_named_type(TypeMetaFieldDef.type).name),
        }

    def field(self, type_name: str, name: str) -> _Field:
        found = self.fields.get((type_name, name))
        if found is not None:
            return found
        # __typename anywhere, __schema and __type on the query root
        return self._meta.get(name, _Field(_Kind.LEAF, "String"))

    def cost(
        self,
        fragments: Mapping[str, FragmentDefinitionNode],
        operation: OperationDefinitionNode,
        root_type: str,
        variables: Mapping[str, Any] | None,
    ) -> Cost:
        """The operation's cost with these coerced variable values (admission.py) of a
        validated document."""
        return _Costing(self, fragments, operation, variables or {}).selection_set(
            operation.selection_set, root_type, None
        )


def _add(a: int, b: int) -> int:
    return min(a + b, MAX_REPORTED_COST)


def _times(a: int, b: int) -> int:
    return min(a * b, MAX_REPORTED_COST)


class _Costing:
    def __init__(
        self,
        model: CostModel,
        fragments: Mapping[str, FragmentDefinitionNode],
        operation: OperationDefinitionNode,
        variables: Mapping[str, Any],
    ) -> None:
        self.model = model
        self.fragments = fragments
        self.variables = variables
        # (fragment name, page size of the enclosing connection) -> cost of one spread
        self.memo: dict[tuple[str, int | None], Cost] = {}

    def selection_set(
        self, selection_set: SelectionSetNode, type_name: str, page: int | None
    ) -> Cost:
        total = FREE
        counted = False  # a connection counts once, however many count fields it selects
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                if self.model.field(type_name, selection.name.value).kind is _Kind.COUNT:
                    if not counted:
                        total += self.model.count
                    counted = True
                    continue
                total += self._field(selection, type_name, page)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                inner = condition.name.value if condition else type_name
                total += self.selection_set(selection.selection_set, inner, page)
            elif isinstance(selection, FragmentSpreadNode):
                total += self._spread(selection.name.value, page)
        return total

    def _spread(self, name: str, page: int | None) -> Cost:
        key = (name, page)
        known = self.memo.get(key)
        if known is None:
            fragment = self.fragments[name]
            known = self.memo[key] = self.selection_set(
                fragment.selection_set, fragment.type_condition.name.value, page
            )
        return known

    def _field(self, node: FieldNode, type_name: str, page: int | None) -> Cost:
        field = self.model.field(type_name, node.name.value)
        if field.kind is _Kind.LEAF:
            return FREE
        inner = FREE
        if field.kind is _Kind.PAGED:
            assert field.paged is not None
            page = self._page_size(node, field.paged)
            if self._ranked(node):
                inner = self.model.count
        if node.selection_set is not None:
            inner += self.selection_set(node.selection_set, field.type_name, page)
        # an object loaded is a row read, but introspection's come from the schema
        one = inner + (_SCHEMA_OBJECT if field.type_name.startswith("__") else _ROW)
        if field.kind is _Kind.LIST:
            return one * field.cap
        if field.kind is _Kind.PAGE_ITEMS:
            return one * (page if page is not None else 0)
        return one

    def _page_size(self, node: FieldNode, paged: Paged) -> int:
        """`first` as the request gives it; a value the resolver would refuse counts as
        the cap (the request fails either way)."""
        value: Any = None
        for argument in node.arguments or ():
            if argument.name.value == "first":
                value = self._value(argument.value)
        if value is None:
            return paged.default
        if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= paged.cap:
            return value
        return paged.cap

    def _ranked(self, node: FieldNode) -> bool:
        """Whether the connection is ordered by reading its matches (RANKING_ORDERS)."""
        for argument in node.arguments or ():
            if argument.name.value == "orderBy":
                value = self._value(argument.value)  # a name, or a variable's Enum member
                return getattr(value, "name", value) in RANKING_ORDERS
        return False

    def _value(self, node: Any) -> Any:
        if isinstance(node, IntValueNode):
            return int(node.value)
        if isinstance(node, EnumValueNode):
            return node.value
        if isinstance(node, VariableNode):
            # coerced values: a default is already in them, an omitted value is absent
            return self.variables.get(node.name.value)
        return None  # null, or a literal validation has refused


_ROW = Cost(1, 1)
_SCHEMA_OBJECT = Cost(1, 0)


def too_costly(cost: Cost, limit: Cost, operation: OperationDefinitionNode) -> GraphQLError | None:
    """The refusal of an operation over either limit, or None."""
    if cost.objects > limit.objects:
        return GraphQLError(
            f"Query cost {cost.objects} exceeds the limit of {limit.objects}; ask for smaller"
            " pages or fewer nested lists.",
            operation,
            extensions={"code": "QUERY_TOO_COSTLY", "cost": cost.objects, "maxCost": limit.objects},
        )
    if cost.database > limit.database:
        return GraphQLError(
            f"Query database cost {cost.database} exceeds the limit of {limit.database}; ask"
            " for fewer counts (totalCount) or smaller pages.",
            operation,
            extensions={
                "code": "QUERY_TOO_COSTLY",
                "databaseCost": cost.database,
                "maxDatabaseCost": limit.database,
            },
        )
    return None
