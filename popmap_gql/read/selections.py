"""From a GraphQL selection on read-model types to `Selected` trees for `read.sql`.

The collection follows GraphQL's field collection: fields merged by response key across
fragments, `@skip`/`@include` applied with the request's variables. It takes what
validation left: the schema has no other executable directive, and no interface or union,
so a fragment is only ever valid on the very type it is spread in (its type condition
needs no check), and every field of a read-model type is bound (api/binding.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLField,
    GraphQLIncludeDirective,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLSkipDirective,
    InlineFragmentNode,
    SelectionSetNode,
    get_argument_values,
    get_directive_values,
    get_named_type,
)

from popmap_gql.read.sql import Selected

__all__ = ["Binding", "FieldBinding", "Selector"]


@dataclass(frozen=True, slots=True)
class FieldBinding:
    """A GraphQL field of a read-model type: its Python name and its arguments' Python
    names by GraphQL name."""

    python_name: str
    arguments: Mapping[str, str]


# (GraphQL type name, GraphQL field name) -> its binding, for every field of every type
# the read model declares (see api/binding.py, which checks both agree)
Binding = Mapping[tuple[str, str], FieldBinding]


class Selector:
    """Collects the selections of one operation under the request's variables."""

    def __init__(
        self,
        schema: GraphQLSchema,
        binding: Binding,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Any,
    ) -> None:
        self.schema = schema
        self.binding = binding
        self.fragments = fragments
        self.variables = variables  # graphql-core's coerced VariableValues

    def included(self, node: FieldNode | FragmentSpreadNode | InlineFragmentNode) -> bool:
        skip = get_directive_values(GraphQLSkipDirective, node, self.variables)
        if skip is not None and skip.get("if") is True:
            return False
        include = get_directive_values(GraphQLIncludeDirective, node, self.variables)
        return not (include is not None and include.get("if") is False)

    def fields(
        self, type_name: str, selection_sets: Iterable[SelectionSetNode]
    ) -> dict[str, list[FieldNode]]:
        """The field nodes under `selection_sets` for an object of `type_name`, grouped by
        response key, in first-seen order."""
        grouped: dict[str, list[FieldNode]] = {}
        for selection_set in selection_sets:
            self._gather(type_name, selection_set, grouped)
        return grouped

    def _gather(
        self, type_name: str, selection_set: SelectionSetNode, into: dict[str, list[FieldNode]]
    ) -> None:
        for node in selection_set.selections:
            if isinstance(node, FieldNode):
                if self.included(node):
                    key = node.alias.value if node.alias else node.name.value
                    into.setdefault(key, []).append(node)
            elif isinstance(node, InlineFragmentNode) and self.included(node):
                self._gather(type_name, node.selection_set, into)
            elif isinstance(node, FragmentSpreadNode) and self.included(node):
                self._gather(type_name, self.fragments[node.name.value].selection_set, into)

    def arguments(self, definition: GraphQLField, node: FieldNode) -> dict[str, Any]:
        return get_argument_values(definition, node, self.variables)

    def selected(self, type_name: str, nodes: list[FieldNode]) -> list[Selected]:
        """The `Selected` tree of a read-model type under the given field nodes (all of one
        response key)."""
        sets = [node.selection_set for node in nodes if node.selection_set is not None]
        graphql_type = self.schema.type_map[type_name]
        assert isinstance(graphql_type, GraphQLObjectType)
        result: list[Selected] = []
        for key, field_nodes in self.fields(type_name, sets).items():
            name = field_nodes[0].name.value
            if name == "__typename":
                result.append(Selected(key, None))
                continue
            bound = self.binding[(type_name, name)]  # every field of the type is bound
            definition = graphql_type.fields[name]
            given = self.arguments(definition, field_nodes[0])
            arguments = {bound.arguments[arg]: value for arg, value in given.items()}
            below: list[Selected] = []
            target = get_named_type(definition.type)
            if isinstance(target, GraphQLObjectType):
                below = self.selected(target.name, field_nodes)
            result.append(Selected(key, bound.python_name, arguments, below))
        return result
