"""What a resolver's field selects below it, for the look-ahead plan (read/plan.py).

Read from the document itself (graphql-core's nodes behind Strawberry's info), not from
Strawberry's `selected_fields`, which converts every node, argument and directive on each
call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    SelectionNode,
)

from popmap_gql.api.engine import raw_info
from popmap_gql.read.plan import Selections

__all__ = ["selected"]


_NOTHING = Selections()


def _collect(
    nodes: Iterable[SelectionNode],
    fragments: Mapping[str, FragmentDefinitionNode],
    into: Selections,
) -> None:
    for node in nodes:
        if isinstance(node, FieldNode):
            child = into.setdefault(node.name.value, Selections())
            if node.selection_set is not None:
                _collect(node.selection_set.selections, fragments, child)
        elif isinstance(node, InlineFragmentNode):
            _collect(node.selection_set.selections, fragments, into)
        elif isinstance(node, FragmentSpreadNode):
            fragment = fragments.get(node.name.value)
            if fragment is not None:  # validation rejects unknown and cyclic fragments
                _collect(fragment.selection_set.selections, fragments, into)


def selected(info: Any, *path: str) -> Selections:
    """The selections under the current field, following `path` (e.g. "edges", "node")."""
    raw = raw_info(info)
    current = Selections()
    for field_node in raw.field_nodes:
        if field_node.selection_set is not None:
            _collect(field_node.selection_set.selections, raw.fragments, current)
    for name in path:
        current = current.under(name)
    return current
