"""The adapter: the one module that uses private graphql-core and Strawberry APIs.

Everything else in the package imports graphql-core only from the top-level `graphql`
package (its `__all__`) and Strawberry only from its documented modules; whatever needs
more comes from here (tests/test_engine_boundary.py fails on any private use elsewhere).
pyproject.toml pins both libraries exactly: before raising a pin, re-check every item of
this list against the new release, then run the differential test
(tests/test_differential.py), which compares the compiled answers with resolvers over
the ORM's form of each rule.

Private APIs used, and what each assumes (none replaces any part of execution:
graphql-core and Strawberry execute as they ship):
- `strawberry.Schema._schema`: the built graphql-core schema (`graphql_schema`).
- `GraphQLField.extensions["strawberry-definition"]`: the StrawberryField a graphql-core
  field was built from (`strawberry_field`).
- `strawberry.types.arguments.convert_arguments` and `Schema.schema_converter.scalar_registry`:
  how Strawberry turns graphql-core's coerced arguments into resolver arguments (input
  classes, enums), used by the compiled read path (`strawberry_arguments`).
- `StrawberryField.type`, `strawberry.types.base.StrawberryOptional` and
  `strawberry.types.enum.StrawberryEnumDefinition`/`has_enum_definition`: reading a plain field's
  annotation (`value_shape`), from which the read model derives column fields.
- `strawberry.schema.exceptions`, `strawberry.utils.str_converters.to_camel_case`,
  `strawberry.http.ides.get_graphql_ide_html`: non-public modules, re-exported.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from graphql import GraphQLField, GraphQLSchema
from strawberry.http.ides import get_graphql_ide_html
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.arguments import convert_arguments
from strawberry.types.base import StrawberryOptional
from strawberry.types.enum import StrawberryEnumDefinition, has_enum_definition
from strawberry.types.field import StrawberryField
from strawberry.utils.str_converters import to_camel_case

__all__ = [
    "CannotGetOperationTypeError",
    "InvalidOperationTypeError",
    "graphiql_html",
    "graphql_schema",
    "strawberry_arguments",
    "strawberry_definition",
    "strawberry_field",
    "to_camel_case",
    "value_shape",
]


def graphql_schema(schema: strawberry.Schema) -> GraphQLSchema:
    """The graphql-core schema Strawberry built."""
    return schema._schema


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
