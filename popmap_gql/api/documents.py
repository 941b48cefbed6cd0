"""Documents parsed and validated once per distinct query text.

A map client sends the same few documents over and over; parsing and validating each
costs more than executing it. Parse errors and validation errors are kept as well, so a
client repeating a broken document costs no more than one repeating a good one.

Validation runs our shape limits first (`limits`, linear in the text); graphql-core's
rules, some of which cost more than linear time, run only on a document within them.

The cache is bounded by entries and by bytes (its share of POPMAP_DOCUMENT_MEMORY_BYTES,
memory.py): each document costs what `document_bytes` estimates of its text, its tokens
and its cost memo. Documents longer than LONG_DOCUMENT characters (real ones are a few
hundred) go to a small LRU of their own, a quarter of the budget, so that a stream of
them cannot push out the documents in common use; nothing else keeps them (plans, the
response cache, the persisted-query store).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
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
from popmap_gql.api.cost import Cost
from popmap_gql.api.limits import ShapeLimits, shape_errors
from popmap_gql.memory import LRU

__all__ = ["COSTS_KEPT", "LONG_DOCUMENT", "Documents", "Prepared", "document_bytes"]

# Longer documents are kept apart, and by nothing but the document cache.
LONG_DOCUMENT = 20_000

# Costs remembered per document (one per distinct operation and variables), and the
# bytes their keys may hold: 32 map-page memos take about 7 KB.
COSTS_KEPT = 32
COSTS_MAX_BYTES = 8 * 1024
COST_MEMO_OVERHEAD = 240  # the key's tuple and bytes headers, the entry, the Cost and its ints

# What a parsed document costs, measured with tracemalloc (bench/document_memory.py):
# its text and the copies of comments and strings its tokens and nodes hold (up to 3
# bytes per byte of text, as sys.getsizeof counts the text), each token with its nodes
# and locations (up to 640 bytes), and about 8 KiB for the rest (the Prepared, its
# errors, the memo's table); plus what its cost memo may hold.
BYTES_PER_TEXT_BYTE = 3
BYTES_PER_TOKEN = 640
BYTES_PER_DOCUMENT = 8 * 1024


@dataclass(frozen=True, slots=True)
class Prepared:
    """A document ready to execute, or the errors that stop it (then `document` is None
    for a syntax error, or the parsed document for validation errors)."""

    document: DocumentNode | None
    errors: tuple[GraphQLError, ...] = ()
    # What keeping it costs (document_bytes)
    size: int = 0
    # Costs computed per (operation name, canonical variables)
    costs: LRU[tuple[str | None, bytes], Cost] = field(
        default_factory=lambda: LRU(
            max_entries=COSTS_KEPT, max_bytes=COSTS_MAX_BYTES, size=_memo_size
        )
    )

    @property
    def fragments(self) -> dict[str, FragmentDefinitionNode]:
        assert self.document is not None
        return {
            definition.name.value: definition
            for definition in self.document.definitions
            if isinstance(definition, FragmentDefinitionNode)
        }


def _memo_size(key: tuple[str | None, bytes], cost: Cost) -> int:
    return len(key[0] or "") + len(key[1]) + COST_MEMO_OVERHEAD


def document_bytes(text: str, document: DocumentNode | None) -> int:
    """About what keeping the parse of `text` costs, its text and cost memo included (an
    upper bound for every kind of document measured, see above)."""
    tokens = 0
    token = document.loc.start_token if document is not None and document.loc else None
    while token is not None:  # at most POPMAP_MAX_TOKENS, comments included
        tokens += 1
        token = token.next
    return (
        BYTES_PER_DOCUMENT
        + BYTES_PER_TEXT_BYTE * sys.getsizeof(text)
        + BYTES_PER_TOKEN * tokens
        + COSTS_MAX_BYTES
    )


def _prepared_size(text: str, prepared: Prepared) -> int:
    return prepared.size


class Documents:
    """An LRU of prepared documents keyed by their text, bounded by entries and bytes
    (long documents in an LRU of their own, a quarter of `max_bytes`)."""

    def __init__(
        self,
        schema: GraphQLSchema,
        rules: Sequence[type[ASTValidationRule]],
        *,
        shape: ShapeLimits,
        max_tokens: int,
        max_entries: int,
        max_bytes: int,
    ) -> None:
        self.schema = schema
        self.rules = tuple(rules)
        self.shape = shape
        self.max_tokens = max_tokens
        long_bytes = max_bytes // 4
        self.kept: LRU[str, Prepared] = LRU(
            max_entries=max_entries, max_bytes=max_bytes - long_bytes, size=_prepared_size
        )
        self.long: LRU[str, Prepared] = LRU(
            max_entries=max_entries, max_bytes=long_bytes, size=_prepared_size
        )

    def prepare(self, query: str) -> Prepared:
        kept = self.long if len(query) > LONG_DOCUMENT else self.kept
        prepared = kept.get(query)
        if prepared is None:
            prepared = self._prepare(query)
            kept.put(query, prepared)  # unless it alone is larger than the budget
        return prepared

    def _prepare(self, query: str) -> Prepared:
        try:
            with tracing.span("graphql.parse"):
                document = parse(query, max_tokens=self.max_tokens)
        except GraphQLError as error:
            return Prepared(None, (error,), document_bytes(query, None))
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
        return Prepared(document, tuple(errors), document_bytes(query, document))
