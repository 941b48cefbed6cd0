"""A graphql-core execution context with a short path for plain scalar fields.

Most fields of a Popmap answer are plain attributes holding a scalar (a title, a time,
an id). graphql-core resolves each through Strawberry's resolver wrapper, a resolve-info
object and the completion machinery, about ten times the cost of reading the attribute.
For fields that Strawberry would resolve by plain attribute access — no resolver, no
arguments, no extensions or permissions — this context reads the attribute and coerces
it with the field's own scalar or enum type. Anything else, and any value that does not
coerce cleanly (so that errors read exactly as graphql-core words them), takes the
normal path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from graphql import (
    GraphQLEnumType,
    GraphQLLeafType,
    GraphQLNonNull,
    GraphQLObjectType,
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


class PopmapExecutionContext(StrawberryGraphQLCoreExecutionContext):
    plain_fields: ClassVar[PlainFields] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Strawberry always passes a manager; it wraps nothing unless an extension resolves.
        manager = self.middleware_manager
        self._has_middleware = manager is not None and bool(manager.middlewares)

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
            value = getattr(source, plain.attribute, _MISSING)
            if value is None and plain.nullable:
                return None
            if value is not None and value is not _MISSING:
                try:
                    coerced = plain.leaf_type.coerce_output_value(value)
                except Exception:  # the normal path reports it properly
                    coerced = Undefined
                if coerced is not Undefined and coerced is not None:
                    return coerced
        return super().execute_field(
            parent_type, source, field_details_list, path, position_context
        )
