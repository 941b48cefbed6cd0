"""Documents parsed and validated once per distinct query text.

A map client sends the same few documents over and over; parsing and validating each
costs more than executing it. Parse errors and validation errors are kept as well, so a
client repeating a broken document costs no more than one repeating a good one.

Validation runs our shape limits first (`limits`, linear in the text); graphql-core's
rules, some of which cost more than linear time, run only on a document within them.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

from graphql import (
    ASTValidationRule,
    DocumentNode,
    FragmentDefinitionNode,
    GraphQLError,
    GraphQLSchema,
    parse,
    validate,
)

from popmap_gql import tracing
from popmap_gql.api.limits import ShapeLimits, shape_errors

__all__ = ["Documents", "Prepared"]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A document ready to execute, or the errors that stop it (then `document` is None
    for a syntax error, or the parsed document for validation errors)."""

    document: DocumentNode | None
    errors: tuple[GraphQLError, ...] = ()
    # Costs computed per (operation, paging variables); bounded by COSTS_KEPT.
    costs: dict[Hashable, int] = field(default_factory=dict)

    @property
    def fragments(self) -> dict[str, FragmentDefinitionNode]:
        assert self.document is not None
        return {
            definition.name.value: definition
            for definition in self.document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }


# Costs remembered per document (one per distinct set of paging variables).
COSTS_KEPT = 32


class Documents:
    """An LRU of prepared documents keyed by their text; bounded by entry count, and by
    the request body limit in the size of each entry."""

    def __init__(
        self,
        schema: GraphQLSchema,
        rules: Sequence[type[ASTValidationRule]],
        *,
        shape: ShapeLimits,
        max_tokens: int,
        maxsize: int,
    ) -> None:
        self.schema = schema
        self.rules = tuple(rules)
        self.shape = shape
        self.max_tokens = max_tokens
        self.maxsize = maxsize
        self._prepared: OrderedDict[str, Prepared] = OrderedDict()

    def prepare(self, query: str) -> Prepared:
        prepared = self._prepared.get(query)
        if prepared is not None:
            self._prepared.move_to_end(query)
            return prepared
        prepared = self._prepare(query)
        self._prepared[query] = prepared
        if len(self._prepared) > self.maxsize:
            self._prepared.popitem(last=False)
        return prepared

    def _prepare(self, query: str) -> Prepared:
        try:
            with tracing.span("graphql.parse"):
                document = parse(query, max_tokens=self.max_tokens)
        except GraphQLError as error:
            return Prepared(None, (error,))
        with tracing.span("graphql.validate"):
            errors = shape_errors(document, self.shape)
            if not errors:
                # Without introspection, "Did you mean ...?" would reveal the schema instead.
                errors = validate(
                    self.schema,
                    document,
                    self.rules,
                    hide_suggestions=not self.shape.introspection,
                )
        return Prepared(document, tuple(errors))
