"""Limits on a document's shape, checked before graphql-core's rules.

Each definition (operation or fragment) is walked once; a fragment spread is a
reference whose depth and alias count are combined afterwards, one fragment at a time,
so a fragment spread twice at every level (whose expansion doubles per level) costs no
more than its text.

graphql-core's OverlappingFieldsCanBeMerged compares every pair of fields that share a
response name, then merges their sub-selections and compares again: repeated fields
cost the square of their count, and repeated nested fields multiply that per level.
`_MergeWork` replays that merging, counting the comparisons it implies, and stops at
MAX_MERGE_WORK: its own work is bounded by the budget, and a document over it is
refused (QUERY_TOO_COMPLEX) before the rule runs. Only a document passing every check
here goes on to graphql-core's rules (see `documents.Documents`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from graphql import (
    DocumentNode,
    ExecutableDefinitionNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    Node,
    OperationDefinitionNode,
    SelectionSetNode,
)

__all__ = ["MAX_MERGE_WORK", "ShapeLimits", "shape_errors"]

# Field comparisons the overlapping-fields rule may need for one operation (a few
# microseconds each). A field selected once costs 1; k fields sharing a response name
# in one merged selection cost k * k, as do k distinct fragments spread into one.
# GraphiQL's schema query needs about 150, a map page about 30.
MAX_MERGE_WORK = 2_000

_INTROSPECTION_FIELDS = frozenset({"__schema", "__type"})


@dataclass(frozen=True, slots=True)
class ShapeLimits:
    max_depth: int
    max_aliases: int
    introspection: bool = True


def _error(message: str, code: str, *nodes: Node) -> GraphQLError:
    return GraphQLError(message, list(nodes) or None, extensions={"code": code})


@dataclass
class _Definition:
    """What one definition contributes on its own; spreads are references to resolve."""

    node: ExecutableDefinitionNode
    height: int = 0  # depth of its deepest field below its top-level fields
    aliases: int = 0
    # fragment name -> (spread occurrences, deepest level of a spread counting for depth,
    # first spread node)
    spreads: dict[str, tuple[int, int | None, FragmentSpreadNode]] = field(default_factory=dict)


class _Walk:
    """One pass over one definition's selections (recursion bounded by the parser's
    nesting limit)."""

    def __init__(self, limits: ShapeLimits, errors: list[GraphQLError]) -> None:
        self.limits = limits
        self.errors = errors

    def definition(self, node: ExecutableDefinitionNode) -> _Definition:
        found = _Definition(node)
        self._selections(node.selection_set, 0, found)
        return found

    def _selections(
        self, selection_set: SelectionSetNode, level: int | None, into: _Definition
    ) -> None:
        """`level` is None inside an introspection field, which adds no depth (as with
        Strawberry's depth limiter, so that GraphiQL's schema query passes; the cost
        limit bounds it instead). Fields of inline fragments count with their enclosing
        selection set, as graphql-core merges them."""
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                self._field(selection, level, into)
            elif isinstance(selection, InlineFragmentNode):
                self._selections(selection.selection_set, level, into)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                count, deepest, first = into.spreads.get(name, (0, None, selection))
                if level is not None:
                    deepest = level if deepest is None else max(deepest, level)
                into.spreads[name] = (count + 1, deepest, first)

    def _field(self, node: FieldNode, level: int | None, into: _Definition) -> None:
        if node.alias is not None:
            into.aliases += 1
        if not self.limits.introspection and node.name.value in _INTROSPECTION_FIELDS:
            self.errors.append(
                _error(
                    "GraphQL introspection is not allowed on this server.",
                    "GRAPHQL_VALIDATION_FAILED",
                    node,
                )
            )
        if node.name.value.startswith("__"):
            level = None
        if level is not None:
            into.height = max(into.height, level)
        if node.selection_set is not None:
            self._selections(node.selection_set, None if level is None else level + 1, into)


@dataclass(frozen=True, slots=True)
class _Totals:
    height: int
    aliases: int


class _Combine:
    """Each fragment's totals (own plus what it spreads), computed once; unknown
    fragments and cycles are reported instead of followed."""

    def __init__(self, fragments: dict[str, _Definition], errors: list[GraphQLError]) -> None:
        self.fragments = fragments
        self.errors = errors
        self.totals: dict[str, _Totals] = {}
        self.unknown: set[str] = set()
        self.cyclic: set[str] = set()

    def of(self, definition: _Definition) -> _Totals:
        """The definition's totals, its spreads resolved (each fragment once overall)."""
        height, aliases = definition.height, definition.aliases
        for name, (count, level, node) in definition.spreads.items():
            spread = self._spread(name, node)
            if level is not None:
                height = max(height, level + spread.height)
            aliases += count * spread.aliases
        return _Totals(height, aliases)

    def fragment(self, name: str) -> _Totals:
        if name not in self.totals:
            self._resolve(name)
        return self.totals[name]

    def _spread(self, name: str, node: FragmentSpreadNode) -> _Totals:
        if name in self.fragments:
            return self.fragment(name)
        if name not in self.unknown:
            self.unknown.add(name)
            self.errors.append(
                _error(f"Unknown fragment '{name}'.", "GRAPHQL_VALIDATION_FAILED", node)
            )
        return _Totals(0, 0)

    def _resolve(self, root: str) -> None:
        """Totals of `root` and the fragments it reaches, children first (an explicit
        stack: a chain of fragments is as long as the token limit allows)."""
        on_path: set[str] = set()
        stack: list[tuple[str, bool]] = [(root, False)]
        while stack:
            name, children_done = stack.pop()
            if name in self.totals:
                continue
            definition = self.fragments[name]
            if children_done:
                on_path.discard(name)
                self.totals[name] = self.of(definition)
                continue
            on_path.add(name)
            stack.append((name, True))
            for child, (_count, _level, node) in definition.spreads.items():
                if child in on_path:
                    self._report_cycle(child, node)
                    self.totals.setdefault(child, _Totals(0, 0))
                elif child in self.fragments and child not in self.totals:
                    stack.append((child, False))

    def _report_cycle(self, name: str, node: FragmentSpreadNode) -> None:
        if name not in self.cyclic:
            self.cyclic.add(name)
            self.errors.append(
                _error(
                    f"Cannot spread fragment '{name}' within itself.",
                    "GRAPHQL_VALIDATION_FAILED",
                    node,
                )
            )


def shape_errors(document: DocumentNode, limits: ShapeLimits) -> list[GraphQLError]:
    """Errors of depth, aliases, selection breadth, fragment references and (when
    disabled) introspection; empty when the document may go on to full validation."""
    errors: list[GraphQLError] = []
    walk = _Walk(limits, errors)
    operations: list[_Definition] = []
    fragments: dict[str, _Definition] = {}
    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode):
            operations.append(walk.definition(definition))
        elif isinstance(definition, FragmentDefinitionNode):
            # a repeated name is graphql-core's error to report; the first one counts here
            fragments.setdefault(definition.name.value, walk.definition(definition))
    combine = _Combine(fragments, errors)
    for name in fragments:  # unused ones too: cycles among them are errors
        combine.fragment(name)
    aliases = 0
    for operation in operations:
        totals = combine.of(operation)
        aliases += totals.aliases
        if totals.height > limits.max_depth:
            name = operation.node.name.value if operation.node.name else "anonymous"
            errors.append(
                _error(
                    f"'{name}' exceeds maximum operation depth of {limits.max_depth}",
                    "QUERY_TOO_DEEP",
                    operation.node,
                )
            )
    if aliases > limits.max_aliases:
        errors.append(
            _error(f"{aliases} aliases found. Allowed: {limits.max_aliases}", "TOO_MANY_ALIASES")
        )
    if not errors:  # the replay needs known, acyclic fragments and a bounded depth
        nodes = {name: found.node for name, found in fragments.items()}
        for operation in operations:
            assert isinstance(operation.node, OperationDefinitionNode)
            errors.extend(_MergeWork(nodes).check(operation.node))
    return errors


class _OverBudget(Exception):
    pass


class _MergeWork:
    """Replays how the overlapping-fields rule merges selections, counting comparisons.

    Like the rule, a fragment is taken once per merged selection however often it is
    spread there; fields of inline fragments and fragments join the selection they are
    in. Recursion follows field nesting (bounded by the depth limit, checked first) and
    fragment chains (acyclic, checked first).
    """

    def __init__(self, fragments: Mapping[str, ExecutableDefinitionNode]) -> None:
        self.fragments = fragments
        self.work = 0

    def check(self, operation: OperationDefinitionNode) -> list[GraphQLError]:
        try:
            self._merged([operation.selection_set])
        except _OverBudget:
            return [
                _error(
                    "The selections of this operation repeat too much to be checked"
                    f" cheaply (more than {MAX_MERGE_WORK} field comparisons); select"
                    " each field once per object.",
                    "QUERY_TOO_COMPLEX",
                    operation,
                )
            ]
        return []

    def _spend(self, units: int) -> None:
        self.work += units
        if self.work > MAX_MERGE_WORK:
            raise _OverBudget

    def _merged(self, selection_sets: list[SelectionSetNode]) -> None:
        """One merged selection: the selection sets of fields sharing a response name."""
        by_name: dict[str, list[FieldNode]] = {}
        spread: set[str] = set()
        for selection_set in selection_sets:
            self._collect(selection_set, by_name, spread)
        self._spend(len(spread) * len(spread))
        for fields in by_name.values():
            self._spend(len(fields) * len(fields))
            nested = [field.selection_set for field in fields if field.selection_set]
            if nested:
                self._merged(nested)

    def _collect(
        self, selection_set: SelectionSetNode, by_name: dict[str, list[FieldNode]], spread: set[str]
    ) -> None:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                by_name.setdefault((selection.alias or selection.name).value, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                self._collect(selection.selection_set, by_name, spread)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name not in spread:
                    spread.add(name)
                    self._collect(self.fragments[name].selection_set, by_name, spread)
