"""The adapter: the one module that uses private graphql-core and Strawberry APIs.

Everything else in the package imports graphql-core only from the top-level `graphql`
package (its `__all__`) and Strawberry only from its documented modules; whatever needs
more comes from here (tests/test_engine_boundary.py fails on any private use elsewhere).
pyproject.toml pins both libraries exactly: before raising a pin, re-check every item of
this list against the new release, then run the differential test
(tests/test_differential.py), which compares our answers with plain Strawberry's.

Private APIs used, and what each assumes:
- `strawberry.Schema._schema`: the built graphql-core schema (`graphql_schema`).
- `Info._raw_info`: graphql-core's resolve info behind Strawberry's (`raw_info`).
- `GraphQLField.extensions["strawberry-definition"]`: the StrawberryField a graphql-core
  field was built from (`strawberry_field`).
- `strawberry.schema.schema.StrawberryGraphQLCoreExecutionContext` and its
  `middleware_manager`, and graphql-core's `ExecutionContext.execute_fields`,
  `execute_field`, `complete_iterable_value` and `collect_subfields` (signatures and
  the grouped-field-set shape): overridden by `PopmapExecutionContext` below.
- Replacing a built field's `resolve` (`install_direct_resolvers`): assumes Strawberry's
  resolver wrapper does nothing for a field without permissions or extensions but call
  the method with the coerced arguments.
- `strawberry.types.arguments.convert_arguments` and `Schema.schema_converter.scalar_registry`:
  how Strawberry turns graphql-core's coerced arguments into resolver arguments (input
  classes, enums), used by the compiled read path (`strawberry_arguments`).
- `StrawberryField.type`, `strawberry.types.base.StrawberryOptional` and
  `strawberry.types.enum.StrawberryEnumDefinition`/`has_enum_definition`: reading a plain field's
  annotation (`value_shape`), from which the read model derives column fields.
- `strawberry.execution.optimized_is_awaitable`, `strawberry.utils.operation`,
  `strawberry.schema.exceptions`, `strawberry.utils.str_converters.to_camel_case`,
  `strawberry.http.ides.get_graphql_ide_html`: non-public modules, re-exported.

The fast path: most fields of a Popmap answer are plain attributes holding a scalar (a
title, a time, an id). graphql-core resolves each through Strawberry's resolver wrapper,
a resolve-info object and the completion machinery, about ten times the cost of reading
the attribute. For fields that Strawberry would resolve by plain attribute access — no
resolver, no arguments, no extensions or permissions — `PopmapExecutionContext` reads the
attribute and coerces it with the field's own scalar or enum type. An object whose
selected fields are all plain (a category's id, name and slug, hundreds of them on a map
page) is built in one step, without a path or a call per field, and so is a whole list
of such objects. Anything else, and any value that does not coerce cleanly (so that
errors read exactly as graphql-core words them), takes the normal path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, TypeGuard, cast

import strawberry
from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLLeafType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    Undefined,
)
from graphql.pyutils import Path
from strawberry.execution import optimized_is_awaitable
from strawberry.http.ides import get_graphql_ide_html
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types import Info
from strawberry.types.arguments import convert_arguments
from strawberry.types.base import StrawberryOptional
from strawberry.types.enum import StrawberryEnumDefinition, has_enum_definition
from strawberry.types.field import StrawberryField
from strawberry.utils.operation import get_first_operation, get_operation_type
from strawberry.utils.str_converters import to_camel_case

__all__ = [
    "CannotGetOperationTypeError",
    "InvalidOperationTypeError",
    "PlainField",
    "PopmapExecutionContext",
    "get_first_operation",
    "get_operation_type",
    "graphiql_html",
    "graphql_schema",
    "install_direct_resolvers",
    "is_awaitable",
    "plain_scalar_fields",
    "raw_info",
    "strawberry_arguments",
    "strawberry_definition",
    "strawberry_field",
    "to_camel_case",
    "value_shape",
]

# graphql-core's `execute` wants a TypeGuard; Strawberry's (faster) check is typed as bool.
is_awaitable = cast("Callable[[Any], TypeGuard[Awaitable[Any]]]", optimized_is_awaitable)


def graphql_schema(schema: strawberry.Schema) -> GraphQLSchema:
    """The graphql-core schema Strawberry built."""
    return schema._schema


def raw_info(info: Info[Any, Any]) -> GraphQLResolveInfo[Any]:
    """graphql-core's resolve info (the document's nodes, without Strawberry's conversion)."""
    return info._raw_info


def strawberry_definition(holder: Any) -> Any:
    """What Strawberry built a graphql-core field, input field or named type from (a
    field, or a type definition whose `origin` is our class), or None."""
    extensions = getattr(holder, "extensions", None) or {}
    return extensions.get("strawberry-definition")


def strawberry_field(graphql_field: GraphQLField) -> StrawberryField | None:
    """The Strawberry field a graphql-core field was built from, if any."""
    found = strawberry_definition(graphql_field)
    return found if isinstance(found, StrawberryField) else None


def strawberry_arguments(
    schema: strawberry.Schema, field: StrawberryField, raw: dict[str, Any]
) -> dict[str, Any]:
    """graphql-core's coerced arguments of `field` as its resolver receives them (by
    Python name, inputs as their classes, enums as members)."""
    return convert_arguments(
        raw,
        field.arguments,
        scalar_registry=schema.schema_converter.scalar_registry,
        config=schema.config,
    )


def value_shape(field: StrawberryField) -> str | None:
    """How a plain field of a Strawberry type (no resolver, no arguments) shows a stored
    value, read from its annotation: "id", "instant", "enum", "optional_text" (a nullable
    String) or "plain"; None for any other field (one with a resolver or arguments, or
    of an object or list type)."""
    if field.base_resolver is not None or field.arguments:
        return None
    annotation: Any = field.type
    optional = isinstance(annotation, StrawberryOptional)
    if optional:
        annotation = annotation.of_type
    if annotation is strawberry.ID:
        return "id"
    if annotation is datetime:
        return "instant"
    if isinstance(annotation, StrawberryEnumDefinition) or has_enum_definition(annotation):
        return "enum"
    if annotation is str:
        return "optional_text" if optional else "plain"
    if annotation in (bool, int, float):
        return "plain"
    return None


def graphiql_html() -> str:
    """Strawberry's GraphiQL page."""
    return get_graphql_ide_html(graphql_ide="graphiql")


def install_direct_resolvers(
    schema: GraphQLSchema, resolvers: Mapping[tuple[str, str], Callable[..., Any]]
) -> None:
    """Give each (type name, field name) a graphql-core resolver calling its method with
    the context and the (already coerced) arguments; refused for a field with
    permissions or extensions, which only Strawberry's wrapper would apply."""
    for (type_name, field_name), method in resolvers.items():
        graphql_type = schema.type_map[type_name]
        assert isinstance(graphql_type, GraphQLObjectType)
        graphql_field = graphql_type.fields[field_name]
        field = strawberry_field(graphql_field)
        assert field is not None
        if field.permission_classes or field.extensions:
            msg = f"{type_name}.{field_name} has permissions or extensions: no direct resolver"
            raise TypeError(msg)
        if {argument.python_name for argument in field.arguments} != set(graphql_field.args):
            msg = f"{type_name}.{field_name}: arguments must keep their Python names"
            raise TypeError(msg)
        graphql_field.resolve = _direct(method)


def _direct(method: Callable[..., Any]) -> Callable[..., Any]:
    def resolve(source: Any, info: GraphQLResolveInfo[Any], **arguments: Any) -> Any:
        return method(source, info.context, **arguments)

    return resolve


_MISSING = object()


@dataclass(frozen=True, slots=True)
class PlainField:
    attribute: str
    leaf_type: GraphQLLeafType
    nullable: bool


PlainFields = dict[tuple[str, str], PlainField]


def plain_scalar_fields(schema: GraphQLSchema) -> PlainFields:
    """(type name, field name) -> how to read it, for every plain scalar field."""
    found: PlainFields = {}
    for graphql_type in schema.type_map.values():
        if not isinstance(graphql_type, GraphQLObjectType):
            continue
        for name, graphql_field in graphql_type.fields.items():
            field = strawberry_field(graphql_field)
            if field is None or graphql_field.args:
                continue
            if field.base_resolver or field.extensions or field.permission_classes:
                continue
            field_type = graphql_field.type
            nullable = not isinstance(field_type, GraphQLNonNull)
            named = field_type.of_type if isinstance(field_type, GraphQLNonNull) else field_type
            if isinstance(named, GraphQLScalarType | GraphQLEnumType):
                found[(graphql_type.name, name)] = PlainField(
                    attribute=field.python_name, leaf_type=named, nullable=nullable
                )
    return found


# (response name, how to read it) for each field of an all-plain selection
PlainSelection = tuple[tuple[str, PlainField], ...]


def _coerced(plain: PlainField, source: Any) -> Any:
    """The field's output value, or _MISSING when only the normal path can tell."""
    value = getattr(source, plain.attribute, _MISSING)
    if value is None and plain.nullable:
        return None
    if value is None or value is _MISSING:
        return _MISSING
    try:
        coerced = plain.leaf_type.coerce_output_value(value)
    except Exception:  # the normal path reports it properly
        return _MISSING
    return _MISSING if coerced is Undefined or coerced is None else coerced


def _read(selection: PlainSelection, source: Any) -> dict[str, Any] | None:
    """The object's answer, or None when a field needs the normal path."""
    results: dict[str, Any] = {}
    for response_name, plain in selection:
        value = _coerced(plain, source)
        if value is _MISSING:
            return None
        results[response_name] = value
    return results


class PopmapExecutionContext(StrawberryGraphQLCoreExecutionContext):
    plain_fields: ClassVar[PlainFields] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Strawberry always passes a manager; it wraps nothing unless an extension resolves.
        manager = self.middleware_manager
        self._has_middleware = manager is not None and bool(manager.middlewares)
        # per grouped field set (memoized by graphql-core for the whole execution, and
        # kept alive here so that its id is not reused): its plain reading, or None
        self._plain_selections: dict[tuple[str, int], tuple[Any, PlainSelection | None]] = {}

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: Any,
        position_context: Any,
    ) -> Any:
        if not self._has_middleware:
            selection = self._plain_selection(parent_type, grouped_field_set)
            if selection is not None:
                results = _read(selection, source_value)
                if results is not None:
                    return results
        return super().execute_fields(
            parent_type, source_value, path, grouped_field_set, position_context
        )

    def complete_iterable_value(
        self,
        item_type: GraphQLOutputType,
        field_details_list: Any,
        info: GraphQLResolveInfo[Any],
        path: Path,
        items: Iterable[Any],
        position_context: Any,
    ) -> Any:
        """A list of objects with an all-plain selection, completed in one loop."""
        non_null = isinstance(item_type, GraphQLNonNull)
        object_type = item_type.of_type if isinstance(item_type, GraphQLNonNull) else item_type
        if (
            not self._has_middleware
            and isinstance(object_type, GraphQLObjectType)
            and object_type.is_type_of is None
            and isinstance(items, list | tuple)
        ):
            grouped_field_set = self.collect_subfields(object_type, field_details_list)[0]
            selection = self._plain_selection(object_type, grouped_field_set)
            if selection is not None:
                completed: list[Any] = []
                for item in items:
                    if item is None and not non_null:
                        completed.append(None)
                        continue
                    results = None if item is None else _read(selection, item)
                    if results is None:
                        break
                    completed.append(results)
                else:
                    return completed
        return super().complete_iterable_value(
            item_type, field_details_list, info, path, items, position_context
        )

    def _plain_selection(
        self, parent_type: GraphQLObjectType, grouped_field_set: Any
    ) -> PlainSelection | None:
        key = (parent_type.name, id(grouped_field_set))
        known = self._plain_selections.get(key)
        if known is not None:
            return known[1]
        fields: list[tuple[str, PlainField]] = []
        for response_name, field_details_list in grouped_field_set.items():
            node = field_details_list[0].node
            plain = self.plain_fields.get((parent_type.name, node.name.value))
            if plain is None or node.arguments:
                self._plain_selections[key] = (grouped_field_set, None)
                return None
            fields.append((response_name, plain))
        selection = tuple(fields)
        self._plain_selections[key] = (grouped_field_set, selection)
        return selection

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Path,
        position_context: Any,
    ) -> Any:
        node = field_details_list[0].node
        plain = self.plain_fields.get((parent_type.name, node.name.value))
        if plain is not None and not node.arguments and not self._has_middleware:
            value = _coerced(plain, source)
            if value is not _MISSING:
                return value
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )
