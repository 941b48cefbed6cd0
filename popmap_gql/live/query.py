"""A subscription document turned into the list query that evaluates it.

`eventsChanged(filter: F) { change eventId event { S } }` is the live form of
`events(filter: F) { edges { node { S } } }`, so a cohort evaluates it by running that
list query, restricted to the events a window touched (`filter.ids`), through the schema's
own execution: visibility, argument checks, the compiled read path and the cost and depth
limits are exactly the HTTP endpoint's. Each `event` selection of the document (there may
be several, under aliases) becomes one root field of the derived query; the fields of
`EventChange` itself (`change`, `eventId`, `__typename`) are filled in here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLSchema,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    Undefined,
    VariableNode,
    Visitor,
    print_ast,
    value_from_ast_untyped,
    visit,
)

from popmap_gql.api.admission import Admission
from popmap_gql.read.ids import encode_id
from popmap_gql.read.selections import Selector

__all__ = ["ID_KEY", "LiveQuery", "NotLive", "derive"]

# The alias under which the derived query reads each event's id (a name no client's
# selection can reach: it is only ever in our own document).
ID_KEY = "popmapLiveId"
_FILTER = "popmapLiveFilter"
_FIRST = "popmapLiveFirst"
_AFTER = "popmapLiveAfter"


class NotLive(Exception):
    """A subscription this endpoint cannot evaluate (the message says why)."""


@dataclass(frozen=True, slots=True)
class LiveQuery:
    """What a cohort runs and how it builds each change from the answer.

    `root_key` is the subscription field's response key; `shape` the response keys of
    `EventChange` in order, each with what it holds (`change`, `eventId`, `__typename` or
    `event:<i>`, the derived query's root field `e<i>`).
    """

    root_key: str
    shape: tuple[tuple[str, str], ...]
    text: str
    filter: dict[str, Any]
    variables: dict[str, Any]
    event_roots: tuple[str, ...]

    def variables_for(
        self, ids: list[int] | None, first: int, after: str | None = None
    ) -> dict[str, Any]:
        """The derived query's variables for these events (None: every event of the
        filter). Routing gives a cohort only events its own `filter.ids` names (Cohort
        .watched), so `ids` replaces those."""
        flt = dict(self.filter)
        if ids is not None:
            flt["ids"] = [encode_id("Event", i) for i in ids]
        return {**self.variables, _FILTER: flt, _FIRST: first, _AFTER: after}

    def change(self, kind: str, event_id: int, nodes: Mapping[str, Any] | None) -> dict[str, Any]:
        """One `EventChange` in the document's shape; `nodes` by event root (None: REMOVED)."""
        value: dict[str, Any] = {}
        for key, what in self.shape:
            if what == "change":
                value[key] = kind
            elif what == "eventId":
                value[key] = encode_id("Event", event_id)
            elif what == "__typename":
                value[key] = "EventChange"
            else:
                value[key] = None if nodes is None else nodes[what]
        return {self.root_key: value}


def derive(
    schema: GraphQLSchema,
    document: DocumentNode,
    admission: Admission,
    raw_variables: Mapping[str, Any] | None,
) -> LiveQuery:
    """The live query of an admitted subscription operation (NotLive if not one)."""
    operation = admission.operation
    if operation is None or operation.operation is not OperationType.SUBSCRIPTION:
        raise NotLive("not a subscription")
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    selector = Selector(schema, {}, fragments, admission.values)
    # Validation leaves exactly one root field, without @skip or @include, and
    # eventsChanged is the schema's only subscription.
    [(root_key, [root, *_])] = selector.fields("Subscription", [operation.selection_set]).items()
    assert root.name.value == "eventsChanged", root.name.value
    changes = selector.fields("EventChange", [root.selection_set] if root.selection_set else [])
    raw = _with_defaults(operation, raw_variables)
    flt: Any = None
    for argument in root.arguments or ():
        if argument.name.value == "filter":
            flt = _given(value_from_ast_untyped(argument.value, raw))
    shape: list[tuple[str, str]] = []
    event_sets: list[list[SelectionSetNode]] = []
    for key, nodes in changes.items():
        name = nodes[0].name.value
        if name == "event":
            shape.append((key, f"e{len(event_sets)}"))
            event_sets.append([n.selection_set for n in nodes if n.selection_set is not None])
        else:
            shape.append((key, name))
    if not event_sets:  # `event` not selected: one root still reads which events are in
        event_sets.append([])
    text, used = _derived_text(operation, fragments, event_sets)
    return LiveQuery(
        root_key=root_key,
        shape=tuple(shape),
        text=text,
        filter=dict(flt) if isinstance(flt, dict) else {},
        variables={name: raw[name] for name in used if name in raw},
        event_roots=tuple(f"e{i}" for i in range(len(event_sets))),
    )


def _with_defaults(
    operation: OperationDefinitionNode, raw_variables: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The client's variables, and the default of each one it left out, as GraphQL
    gives them to the operation."""
    raw = dict(raw_variables or {})
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        if name not in raw and definition.default_value is not None:
            raw[name] = value_from_ast_untyped(definition.default_value)
    return raw


def _given(value: Any) -> Any:
    """`value` without the input fields whose variable nobody gave (GraphQL leaves such
    a field out; a list item so given is null)."""
    if isinstance(value, dict):
        return {key: _given(item) for key, item in value.items() if item is not Undefined}
    if isinstance(value, list):
        return [None if item is Undefined else _given(item) for item in value]
    return value


def _derived_text(
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    event_sets: list[list[SelectionSetNode]],
) -> tuple[str, list[str]]:
    """The derived query's text and the client's variables it uses."""
    roots = []
    collect = _Collect(fragments)
    for i, sets in enumerate(event_sets):
        inner = " ".join(print_ast(s)[1:-1].strip() for s in sets)
        roots.append(
            f"e{i}: events(filter: ${_FILTER}, first: ${_FIRST}, after: ${_AFTER})"
            f" {{ edges {{ node {{ {ID_KEY}: id {inner} }} }} pageInfo {{ hasNextPage"
            " endCursor } }"
        )
        for selection_set in sets:
            visit(selection_set, collect)
    used_variables = sorted(collect.variables)
    definitions = {d.variable.name.value: d for d in operation.variable_definitions or ()}
    declared = []
    for name in used_variables:
        definition = definitions.get(name)
        if definition is None:
            continue
        default = definition.default_value
        suffix = "" if default is None else f" = {print_ast(default)}"
        declared.append(f"${name}: {print_ast(definition.type)}{suffix}")
    header = ", ".join(
        [f"${_FILTER}: EventFilter!", f"${_FIRST}: Int!", f"${_AFTER}: String", *declared]
    )
    text = f"query PopmapLive({header}) {{ {' '.join(roots)} }}"
    for name in collect.fragments_used:
        text += "\n" + print_ast(fragments[name])
    return text, used_variables


class _Collect(Visitor):
    """The fragments the visited nodes spread, directly or through other fragments (each
    visited in turn, once), and the variables all of them use."""

    def __init__(self, fragments: Mapping[str, FragmentDefinitionNode]) -> None:
        super().__init__()
        self.fragments = fragments
        self.fragments_used: list[str] = []
        self.variables: set[str] = set()

    def enter_fragment_spread(self, node: FragmentSpreadNode, *_: Any) -> None:
        name = node.name.value
        if name not in self.fragments_used and name in self.fragments:
            self.fragments_used.append(name)
            visit(self.fragments[name], self)

    def enter_variable(self, node: VariableNode, *_: Any) -> None:
        self.variables.add(node.name.value)
