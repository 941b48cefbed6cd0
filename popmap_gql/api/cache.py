"""A server-side cache of query results, never older than the last committed write.

Each entry records the database's `data_version` (migration 0003) read before the query
ran; an entry is served only while that version is still current and for at most `ttl`
seconds (answers such as "upcoming" also depend on the clock). The version is read on
every request, so a write committed through any worker or any other client invalidates
every worker's entries at once.

Who shares an entry (the scope): anonymous people and signed-in people whose view equals
the public one share "public"; staff share "staff"; anyone else is not cached. Operations
that select viewer-dependent fields (`me`, `viewerIsOwner`, `availableEvents`) and
mutations are never cached.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    GraphQLError,
    OperationDefinitionNode,
    OperationType,
    parse,
    visit,
)
from graphql.language import Visitor

__all__ = ["CachePolicy", "ResponseCache", "analyse"]

PRIVATE_FIELDS = frozenset({"me", "viewerIsOwner", "availableEvents"})


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """What a document allows: only read-only documents without private fields are cached."""

    cacheable: bool


class _PrivateFieldFinder(Visitor):
    def __init__(self) -> None:
        super().__init__()
        self.found = False

    def enter_field(self, node: FieldNode, *_args: Any) -> None:
        if node.name.value in PRIVATE_FIELDS:
            self.found = True


@lru_cache(maxsize=1024)
def analyse(query: str) -> CachePolicy:
    try:
        document: DocumentNode = parse(query, max_tokens=10_000)
    except GraphQLError:
        return CachePolicy(cacheable=False)  # let the executor report it
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if any(op.operation is not OperationType.QUERY for op in operations):
        return CachePolicy(cacheable=False)
    finder = _PrivateFieldFinder()
    visit(document, finder)
    return CachePolicy(cacheable=not finder.found)


@dataclass(frozen=True, slots=True)
class _Entry:
    version: int
    stored_at: float
    data: dict[str, Any]


class ResponseCache:
    """An LRU of `data` objects keyed by (scope, query, operation name, variables)."""

    def __init__(self, *, max_entries: int = 2000, ttl: float = 5.0) -> None:
        self.max_entries = max_entries
        self.ttl = ttl
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(
        scope: str, query: str, operation_name: str | None, variables: dict[str, Any] | None
    ) -> bytes:
        return orjson.dumps(
            [scope, query, operation_name, variables or {}], option=orjson.OPT_SORT_KEYS
        )

    def get(self, key: bytes, version: int) -> dict[str, Any] | None:
        entry = self._entries.get(key)
        if (
            entry is None
            or entry.version != version
            or time.monotonic() - entry.stored_at > self.ttl
        ):
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry.data

    def put(self, key: bytes, version: int, data: dict[str, Any]) -> None:
        self._entries[key] = _Entry(version=version, stored_at=time.monotonic(), data=data)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
