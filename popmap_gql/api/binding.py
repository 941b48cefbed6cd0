"""Binding the read model to the built schema, and the start-up check that they agree.

For each read-model entity, every field of its GraphQL type must be declared (a column,
a computed field, a relation, or a field the object gives itself), every declaration must
name a field of the type, a relation must return its target type (a list exactly when it
is to-many) with a declared size, and a field's arguments must be the relation's. Any
disagreement stops the schema from being built, naming each one.
"""

from __future__ import annotations

from dataclasses import dataclass

from graphql import (
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    get_named_type,
    is_leaf_type,
)
from strawberry.types import get_object_definition

from popmap_gql.api.engine import strawberry_field, value_shape
from popmap_gql.api.sizes import Capped, declared
from popmap_gql.read.model import (
    ENUM,
    INSTANT,
    OPTIONAL_TEXT,
    PLAIN,
    Column,
    Entity,
    Form,
    ReadModel,
    graphql_name,
)
from popmap_gql.read.selections import Binding, FieldBinding

__all__ = ["Bound", "ReadModelMismatch", "bind", "derive_columns"]

_FORMS = {"instant": INSTANT, "enum": ENUM, "optional_text": OPTIONAL_TEXT, "plain": PLAIN}


def derive_columns(entity: Entity, cls: type) -> Entity:
    """`entity` with a column field for each plain field of its class that it does not
    declare otherwise (by the conventions in read/model.py `Column`); an entity without a
    table (the viewer) is returned as is."""
    if not entity.table:
        return entity
    declared_names = entity.field_names | frozenset(entity.given)
    derived: list[Column] = []
    for field in get_object_definition(cls, strict=True).fields:
        if field.python_name in declared_names:
            continue
        shape = value_shape(field)
        if shape is None:
            continue  # not a column: the binding reports it as undeclared
        form = Form("id", entity.name) if shape == "id" else _FORMS[shape]
        derived.append(Column(field.python_name, form))
    return entity.with_columns(tuple(derived))


class ReadModelMismatch(TypeError):
    """The GraphQL schema and the read model disagree."""


@dataclass(frozen=True, slots=True)
class Bound:
    model: ReadModel
    binding: Binding
    caps: dict[tuple[str, str], int]  # (entity, relation field) -> declared size


def bind(schema: GraphQLSchema, model: ReadModel) -> Bound:
    binding: dict[tuple[str, str], FieldBinding] = {}
    caps: dict[tuple[str, str], int] = {}
    problems: list[str] = []
    for entity in model.values():
        problems += _bind(schema, entity, binding, caps)
    if problems:
        raise ReadModelMismatch("the read model and the schema disagree: " + "; ".join(problems))
    return Bound(model, binding, caps)


def _bind(
    schema: GraphQLSchema,
    entity: Entity,
    binding: dict[tuple[str, str], FieldBinding],
    caps: dict[tuple[str, str], int],
) -> list[str]:
    graphql_type = schema.type_map.get(entity.name)
    if not isinstance(graphql_type, GraphQLObjectType):
        return [f"{entity.name} is declared but is no object type of the schema"]
    problems: list[str] = []
    declared_names = entity.field_names | frozenset(entity.given)
    seen: set[str] = set()
    for name, graphql_field in graphql_type.fields.items():
        field = strawberry_field(graphql_field)
        python_name = field.python_name if field is not None else name
        where = f"{entity.name}.{name}"
        seen.add(python_name)
        if python_name not in declared_names:
            problems.append(f"{where} is not declared in the read model")
            continue
        if graphql_name(python_name) != name:
            problems.append(f"{where}: its GraphQL name is not {graphql_name(python_name)}")
        arguments = {
            argument.graphql_name or argument.python_name: argument.python_name
            for argument in (field.arguments if field is not None else [])
        }
        relation = entity.relation(python_name)
        target = get_named_type(graphql_field.type)
        if relation is None:
            if arguments:
                problems.append(f"{where} takes arguments the read model does not declare")
            if python_name not in entity.given and not is_leaf_type(target):
                problems.append(f"{where} is declared as a value but returns {target}")
        else:
            unwrapped = graphql_field.type
            if isinstance(unwrapped, GraphQLNonNull):
                unwrapped = unwrapped.of_type
            if target.name != relation.target:
                problems.append(f"{where} returns {target.name}, declared {relation.target}")
            if isinstance(unwrapped, GraphQLList) != relation.many:
                problems.append(f"{where}: a list in one and not in the other")
            if set(arguments.values()) != set(relation.arguments):
                problems.append(f"{where}: arguments differ from the relation's")
            size = declared(field.metadata if field is not None else None)
            if relation.many:
                if not isinstance(size, Capped):
                    problems.append(f"{where} declares no size")
                else:
                    caps[(entity.name, python_name)] = size.cap
            else:
                caps[(entity.name, python_name)] = 1
        binding[(entity.name, name)] = FieldBinding(python_name, arguments)
    for missing in sorted(declared_names - seen):
        problems.append(f"{entity.name}.{missing} is declared but the type has no such field")
    return problems
