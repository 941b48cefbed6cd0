"""Documents parsed and validated once per distinct query text.

A map client sends the same few documents over and over; parsing and validating each
costs more than executing it. Parse errors and validation errors are kept as well, so a
client repeating a broken document costs no more than one repeating a good one.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from graphql import ASTValidationRule, DocumentNode, GraphQLError, GraphQLSchema, parse
from strawberry.schema.schema import validate_document

__all__ = ["Documents", "Prepared"]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A document ready to execute, or the errors that stop it (then `document` is None
    for a syntax error, or the parsed document for validation errors)."""

    document: DocumentNode | None
    errors: tuple[GraphQLError, ...] = ()


class Documents:
    """An LRU of prepared documents keyed by their text; bounded by entry count, and by
    the request body limit in the size of each entry."""

    def __init__(
        self,
        schema: GraphQLSchema,
        rules: Sequence[type[ASTValidationRule]],
        *,
        max_tokens: int,
        maxsize: int,
    ) -> None:
        self.schema = schema
        self.rules = tuple(rules)
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
            document = parse(query, max_tokens=self.max_tokens)
        except GraphQLError as error:
            return Prepared(None, (error,))
        return Prepared(document, tuple(validate_document(self.schema, document, self.rules)))
