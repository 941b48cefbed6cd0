"""A graphql-core execution context with a short path for plain scalar fields.

Most fields of a Popmap answer are plain attributes holding a scalar (a title, a time,
an id). graphql-core resolves each through Strawberry's resolver wrapper, a resolve-info
object and the completion machinery, about ten times the cost of reading the attribute.
For fields that Strawberry would resolve by plain attribute access — no resolver, no
arguments, no extensions or permissions — this context reads the attribute and coerces
it with the field's own scalar or enum type. An object whose selected fields are all
plain (a category's id, name and slug, hundreds of them on a map page) is built in one
step, without a path or a call per field, and so is a whole list of such objects.
Anything else, and any value that does not
coerce cleanly (so that errors read exactly as graphql-core words them), takes the
normal path.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from graphql import (
    GraphQLEnumType,
    GraphQLLeafType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
)
from graphql.pyutils import Path, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.field import StrawberryField

__all__ = ["PlainField", "PopmapExecutionContext", "plain_scalar_fields"]

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
            field = graphql_field.extensions.get("strawberry-definition")
            if not isinstance(field, StrawberryField) or graphql_field.args:
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
