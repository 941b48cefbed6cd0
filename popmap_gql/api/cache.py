"""A server-side cache of query results, never older than the last committed write.

Each entry records the database's `data_version` (migration 0003) read before the query
ran; an entry is served only while that version is still current and for at most `ttl`
seconds (answers such as "upcoming" also depend on the clock). The version is read on
every request, so a write committed through any worker or any other client invalidates
every worker's entries at once.

An entry older than the TTL with no write since is recomputed by one request while the
others keep receiving it (for at most REFRESH_TIMEOUT more seconds).

Who shares an entry (the scope): anonymous people and signed-in people whose view equals
the public one share "public"; staff share "staff"; anyone else is not cached. Operations
that select viewer-dependent fields (`me`, `viewerIsOwner`, `availableEvents`) and
mutations are never cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
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

from popmap_gql.auth.viewer import Viewer
from popmap_gql.db import queries

__all__ = [
    "MAX_CACHED_QUERY_LENGTH",
    "CachePolicy",
    "CachedResponses",
    "DataVersion",
    "ResponseCache",
    "Slot",
    "analyse",
]

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


# Longer documents are executed but never cached, so that caches keyed on the document
# text cannot be made to hold megabytes per entry.
MAX_CACHED_QUERY_LENGTH = 20_000


def analyse(query: str) -> CachePolicy:
    if len(query) > MAX_CACHED_QUERY_LENGTH:
        return CachePolicy(cacheable=False)
    return _analyse(query)


@lru_cache(maxsize=1024)
def _analyse(query: str) -> CachePolicy:
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


@dataclass(slots=True)
class _Entry:
    version: int
    stored_at: float
    body: bytes
    refreshing_since: float | None = None


# How long one request may take to recompute an aged entry before another tries.
REFRESH_TIMEOUT = 5.0


class ResponseCache:
    """An LRU of encoded response bodies keyed by (scope, query, operation, variables)."""

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
        # The document enters the key as a digest: keys stay small whatever was sent.
        digest = hashlib.blake2b(query.encode(), digest_size=16).hexdigest()
        return orjson.dumps(
            [scope, digest, operation_name, variables or {}], option=orjson.OPT_SORT_KEYS
        )

    def get(self, key: bytes, version: int) -> bytes | None:
        """The body stored for `key` if still valid; None tells the caller to compute it.

        An entry of another data version is never served. One that is merely older than
        the TTL (no write since) is recomputed by one caller while the others keep getting
        it, so expiry causes no stampede of identical executions.
        """
        entry = self._entries.get(key)
        if entry is None or entry.version != version:
            self.misses += 1
            return None
        now = time.monotonic()
        if now - entry.stored_at > self.ttl and (
            entry.refreshing_since is None or now - entry.refreshing_since > REFRESH_TIMEOUT
        ):
            entry.refreshing_since = now
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry.body

    def put(self, key: bytes, version: int, body: bytes) -> None:
        self._entries[key] = _Entry(version=version, stored_at=time.monotonic(), body=body)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class DataVersion:
    """Reads of the data version, shared by requests that arrive before a read starts.

    A request may only use a read that began after it arrived (otherwise it could miss
    a write committed just before it). Requests arriving in the same turn of the event
    loop join one read; the read starts on the next turn, and later arrivals wait for
    the next one.
    """

    def __init__(self, read: Callable[[], Awaitable[int]]) -> None:
        self._read = read
        self._next: asyncio.Future[int] | None = None
        self.reads = 0

    async def current(self) -> int:
        if self._next is None:
            loop = asyncio.get_running_loop()
            self._next = loop.create_future()
            loop.call_soon(self._start, self._next)
        # shield: one waiter's cancellation must not cancel the read for the others
        return await asyncio.shield(self._next)

    def _start(self, future: asyncio.Future[int]) -> None:
        self._next = None  # from here on, arrivals need a read of their own
        self.reads += 1
        task = asyncio.ensure_future(self._read())
        task.add_done_callback(lambda done: _settle(future, done))


def _settle(future: asyncio.Future[int], done: asyncio.Future[int]) -> None:
    if future.done():
        return
    if done.cancelled():
        future.cancel()
    elif (error := done.exception()) is not None:
        future.set_exception(error)
    else:
        future.set_result(done.result())


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one request's answer lives in the cache, and the version it must match."""

    key: bytes
    version: int


class CachedResponses:
    """The response cache as the endpoint uses it: who shares, which version, what body."""

    def __init__(self, ttl: float) -> None:
        self.store = ResponseCache(ttl=ttl)
        self.version = DataVersion(queries.data_version)
        # (user id, data version) -> whether that user's view differs from the public one
        self._private_views: dict[tuple[int, int], bool] = {}

    async def slot(
        self,
        viewer: Viewer,
        query: str,
        operation_name: str | None,
        variables: dict[str, Any] | None,
        origin: str = "",
    ) -> Slot | None:
        """The request's place in the cache, or None when its answer must not be shared.

        `origin` separates answers that embed the URL the request came through (media
        URLs of the embedded store): one Host header cannot leak into another's answers.
        """
        if not analyse(query).cacheable:
            return None
        version = await self.version.current()
        scope = await self._scope(viewer, version)
        if scope is None:
            return None
        scope = f"{scope} {origin}" if origin else scope
        return Slot(ResponseCache.key(scope, query, operation_name, variables), version)

    def get(self, slot: Slot) -> bytes | None:
        return self.store.get(slot.key, slot.version)

    def put(self, slot: Slot, data: dict[str, Any]) -> None:
        self.store.put(slot.key, slot.version, orjson.dumps({"data": data}))

    async def _scope(self, viewer: Viewer, version: int) -> str | None:
        if viewer.user_id is None:
            return "public"
        if viewer.is_staff:
            return "staff"
        key = (viewer.user_id, version)
        private = self._private_views.get(key)
        if private is None:
            if len(self._private_views) > 10_000:
                self._private_views.clear()
            private = await queries.sees_more_than_the_public(viewer.user_id)
            self._private_views[key] = private
        return None if private else "public"
