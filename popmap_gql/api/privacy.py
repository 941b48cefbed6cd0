"""Which fields answer differently depending on who asks, declared once on the field.

A field is private when its value depends on the viewer beyond what they may see: who
they are (`Query.me`), what they may do (`Business.viewerIsOwner`). The mark is field
metadata, `metadata=private()` (on a list, with its size: `listed(description, size,
private())`), as Apollo's `@cacheControl(scope: PRIVATE)`. A type is private as a
whole when it describes the caller (`@private_type`, e.g. `Viewer`); its own fields
need no mark, because only a field returning it reaches them. Lists filtered by
visibility are not private: the response cache's scope (public or staff) already
separates those views.

The response cache reads the marks from the built schema (`PrivateFields`) and never
caches an operation selecting a private field, found by (type, field) with the
document's types: aliases and fragments do not hide a field, and a same-named field of
another type is not taken for it.

Building the schema checks the declarations against it and fails naming the field:
- a field returning a private type (or a union or interface one of whose types is
  private), in any list or non-null wrapping, must be marked itself;
- a mark on an input field means nothing and is refused.
Since marks sit on the fields, no mark can name a field that does not exist. A field an
interface shares with the types implementing it is private on all of them when it is
marked on any of them (there is nothing to check: whichever way a document reaches it,
it is found).
"""

from __future__ import annotations

from typing import Any, TypeVar

from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    get_named_type,
    is_abstract_type,
    visit,
)

from popmap_gql.api.engine import strawberry_definition

__all__ = ["PrivateFields", "is_private", "private", "private_coordinates", "private_type"]

_KEY = "popmap.private"
_TYPE_MARK = "__popmap_private_type__"

Coordinate = tuple[str, str]  # (type name, field name) as the schema spells them
T = TypeVar("T", bound=type)


def private() -> dict[str, bool]:
    """Field metadata declaring that the field's value depends on the viewer."""
    return {_KEY: True}


def is_private(metadata: Any) -> bool:
    """Whether a Strawberry field's metadata carries the mark."""
    return bool(metadata) and metadata.get(_KEY) is True


def private_type(cls: T) -> T:
    """Declare a Strawberry type private as a whole: every field returning it must be
    marked private. Put it above `@strawberry.type`."""
    setattr(cls, _TYPE_MARK, True)
    return cls


def _metadata(holder: Any) -> Any:
    return getattr(strawberry_definition(holder), "metadata", None)


def _private_as_a_whole(graphql_type: GraphQLNamedType) -> bool:
    origin = getattr(strawberry_definition(graphql_type), "origin", None)
    return bool(getattr(origin, _TYPE_MARK, False))


def _leads_to_private_type(schema: GraphQLSchema, field: GraphQLField) -> bool:
    named = get_named_type(field.type)
    if is_abstract_type(named):
        return any(_private_as_a_whole(t) for t in schema.get_possible_types(named))
    return _private_as_a_whole(named)


def _check_inputs(schema: GraphQLSchema) -> None:
    for graphql_type in schema.type_map.values():
        if isinstance(graphql_type, GraphQLInputObjectType):
            for name, input_field in graphql_type.fields.items():
                if is_private(_metadata(input_field)):
                    msg = f"{graphql_type.name}.{name}: an input field cannot be private"
                    raise TypeError(msg)


def private_coordinates(schema: GraphQLSchema) -> frozenset[Coordinate]:
    """The schema's private fields, checked against their types (see the module
    docstring); TypeError naming the first field that disagrees."""
    _check_inputs(schema)
    found: set[Coordinate] = set()
    for graphql_type in schema.type_map.values():
        if not isinstance(graphql_type, GraphQLObjectType | GraphQLInterfaceType):
            continue
        for name, field in graphql_type.fields.items():
            marked = is_private(_metadata(field))
            if not marked and _leads_to_private_type(schema, field):
                msg = (
                    f"{graphql_type.name}.{name} returns {get_named_type(field.type).name},"
                    " which is private as a whole, but is not marked private"
                    " (metadata=private(), see popmap_gql.api.privacy)"
                )
                raise TypeError(msg)
            if marked:
                found.add((graphql_type.name, name))
    _spread_over_interfaces(schema, found)
    return frozenset(found)


def _spread_over_interfaces(schema: GraphQLSchema, found: set[Coordinate]) -> None:
    """A field an interface shares with its types is private on all of them when marked
    on any: a document may reach it through the interface or through any of the types."""
    for interface in schema.type_map.values():
        if not isinstance(interface, GraphQLInterfaceType):
            continue
        owners = [interface.name, *(t.name for t in schema.get_possible_types(interface))]
        for name in interface.fields:
            if any((owner, name) in found for owner in owners):
                found.update((owner, name) for owner in owners)


class _Finder(Visitor):
    def __init__(self, type_info: TypeInfo, private: frozenset[Coordinate]) -> None:
        super().__init__()
        self.type_info = type_info
        self.private = private
        self.found = False

    def enter_field(self, node: FieldNode, *_args: Any) -> Any:
        parent = self.type_info.get_parent_type()
        if parent is not None and (parent.name, node.name.value) in self.private:
            self.found = True
            return Visitor.BREAK
        return None


class PrivateFields:
    """The private fields of one schema; built at start-up, where it checks them."""

    def __init__(self, schema: GraphQLSchema) -> None:
        self.schema = schema
        self.coordinates = private_coordinates(schema)

    def selected_by(self, document: DocumentNode) -> bool:
        """Whether a validated document selects a private field anywhere, operations and
        fragments alike (each definition is walked once, so this is linear in it)."""
        type_info = TypeInfo(self.schema)
        finder = _Finder(type_info, self.coordinates)
        visit(document, TypeInfoVisitor(type_info, finder))
        return finder.found
