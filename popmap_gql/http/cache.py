"""A server-side cache of query results, never older than the last committed write.

Each entry records the database's `data_version` (migration 0003) read before the query
ran; an entry is served only while that version is still current and for at most `ttl`
seconds (answers such as "upcoming" also depend on the clock). The version is read on
every request, so a write committed through any worker or any other client invalidates
every worker's entries at once. An entry older than the TTL with no write since is
recomputed by one request while the others keep receiving it (for at most
REFRESH_TIMEOUT more seconds).

An answer is stored under version V only if it is the answer *of* V: a version read that
began after the query finished must still return V. Every statement of the request ran
between the two reads, so no write committed in between and all of them saw V. Without
this check, a write committed while the query ran (the viewer submitting a business)
would end up in an entry that requests still reading V share.

Who shares an entry (the scope): anonymous people and signed-in people whose view equals
the public one share "public"; staff and services that see everything (read.all) share
"staff"; anyone else, other services included, is not cached. Whether a
signed-in person's view is the public one is read in the same statement as a version,
so the decision holds for exactly that version; it is remembered for that version only.
Operations that select a field marked private (its answer depends on who asks, see
privacy.py; the marks are read from the schema at start-up, matched by type and field
through aliases and fragments), mutations and documents that do not validate are never
cached.

Single flight: a request that finds no valid entry for its (key, version) while another
request is already computing that same (key, version) waits for that computation (at
most REFRESH_TIMEOUT seconds) and is answered with its body, instead of executing the
query again; after a write, one request per entry recomputes it while the others wait.
The computing request shares its answer only when it passes the check above (the answer
*of* that version, which every waiter also read, and for the same scope), so a waiter
never gets an answer it could not have got from the cache. When the version moved
during the computation, waiters read the version again and join or lead the flight of
the new one; when the computation failed, was cancelled or its answer was too large to
store, each waiter executes the query itself.

Memory is bounded in bytes: every entry costs its body, its key and ENTRY_OVERHEAD;
least recently used entries go first, and an answer larger than the per-entry cap is
served but not stored. Documents longer than LONG_DOCUMENT (documents.py) are executed
but never cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from graphql import DocumentNode, OperationDefinitionNode, OperationType

from popmap_gql import observe
from popmap_gql.api.documents import LONG_DOCUMENT, Prepared
from popmap_gql.api.privacy import PrivateFields
from popmap_gql.auth.viewer import Viewer
from popmap_gql.db import lists
from popmap_gql.memory import LRU

__all__ = [
    "ENTRY_OVERHEAD",
    "CachedResponses",
    "DataVersion",
    "Lookup",
    "PrivateViews",
    "ResponseCache",
    "Slot",
    "cacheable",
    "request_key",
]


def request_key(query: str, operation_name: str | None, variables: bytes = b"{}") -> bytes:
    """What a request asks, as the response cache's keys spell it (without who asks):
    the document, the name of the operation that runs and the canonical form of its
    coerced variables (api/admission.py), so that two requests share an entry exactly
    when execution would see the same thing."""
    # The document enters the key as a digest: keys stay small whatever was sent.
    digest = hashlib.blake2b(query.encode(), digest_size=16).hexdigest()
    return orjson.dumps([digest, operation_name]) + variables


def cacheable(document: DocumentNode, private: PrivateFields) -> bool:
    """Only read-only validated documents selecting no private field are cached."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if any(op.operation is not OperationType.QUERY for op in operations):
        return False
    return not private.selected_by(document)


# What a cached entry costs besides its body and key: the entry object, the two bytes
# objects' headers and the LRU's node, so that a flood of tiny answers is bounded too.
ENTRY_OVERHEAD = 256


@dataclass(slots=True)
class _Entry:
    version: int
    stored_at: float
    body: bytes
    refreshing_since: float | None = None


# How long one request may take to recompute an aged entry before another tries.
REFRESH_TIMEOUT = 5.0


class ResponseCache:
    """An LRU of encoded response bodies keyed by (scope, query, operation, variables),
    bounded by the bytes it holds."""

    def __init__(self, *, max_bytes: int, max_entry_bytes: int, ttl: float) -> None:
        self.ttl = ttl
        self._entries: LRU[bytes, _Entry] = LRU(
            max_bytes=max_bytes, max_entry_bytes=max_entry_bytes, size=_entry_cost
        )

    @property
    def bytes_held(self) -> int:
        return self._entries.bytes

    @staticmethod
    def key(scope: str, request: bytes) -> bytes:
        """The entry's key: who shares it (`scope`, a JSON string, so that where it ends is
        unambiguous) followed by what was asked (`request_key`)."""
        return orjson.dumps(scope) + request

    @staticmethod
    def cost(key: bytes, body: bytes) -> int:
        return len(key) + len(body) + ENTRY_OVERHEAD

    def fits(self, key: bytes, body: bytes) -> bool:
        limit = self._entries.max_entry_bytes
        return limit is None or self.cost(key, body) <= limit

    def get(self, key: bytes, version: int) -> bytes | None:
        """The body stored for `key` if still valid; None tells the caller to compute it.

        An entry of another data version is never served. One that is merely older than
        the TTL (no write since) is recomputed by one caller while the others keep getting
        it, so expiry causes no stampede of identical executions.
        """
        entry = self._entries.peek(key)
        if entry is None or entry.version != version:
            return None
        now = time.monotonic()
        if now - entry.stored_at > self.ttl and (
            entry.refreshing_since is None or now - entry.refreshing_since > REFRESH_TIMEOUT
        ):
            entry.refreshing_since = now
            return None
        self._entries.get(key)  # now the most recently used
        return entry.body

    def put(self, key: bytes, version: int, body: bytes) -> bool:
        """Store `body` unless it is larger than one entry may be; whether it was stored."""
        if not self._entries.put(key, _Entry(version, time.monotonic(), body)):
            return False
        if (metrics := observe.metrics) is not None:
            metrics.cache_bytes.set(self.bytes_held)
        return True


def _entry_cost(key: bytes, entry: _Entry) -> int:
    return ResponseCache.cost(key, entry.body)


class DataVersion:
    """Reads of the data version, shared by requests that arrive before a read starts.

    A request may only use a read that began after it arrived (otherwise it could miss
    a write committed just before it). Requests arriving in the same turn of the event
    loop join one read; the read starts on the next turn, and later arrivals wait for
    the next one.
    """

    def __init__(self, read: Callable[[], Awaitable[int]]) -> None:
        self._read = read
        self._next: asyncio.Task[int] | None = None
        self.reads = 0

    async def current(self) -> int:
        if self._next is None:
            self._next = asyncio.ensure_future(self._start())  # runs from the next turn on
        # shield: one waiter's cancellation must not cancel the read for the others
        return await asyncio.shield(self._next)

    async def _start(self) -> int:
        self._next = None  # from here on, arrivals need a read of their own
        self.reads += 1
        return await self._read()


class PrivateViews:
    """Whether a user's view differs from the public one, as read at one data version.

    Only the newest version's answers are kept (an older version's are of no use once a
    newer one has been read), at most `max_users` of them, least recently used first out.
    """

    def __init__(self, max_users: int) -> None:
        self.version = 0
        self._private: LRU[int, bool] = LRU(max_entries=max_users)

    def __len__(self) -> int:
        return len(self._private)

    def get(self, user_id: int, version: int) -> bool | None:
        if version != self.version:
            return None
        return self._private.get(user_id)

    def remember(self, user_id: int, view: lists.PrivateView) -> None:
        if view.version < self.version:
            return
        if view.version > self.version:
            self.version = view.version
            self._private.clear()
        self._private.put(user_id, view.private)


# Signed-in users whose public-or-not view is remembered: a lookup each is saved on
# every request they make until the next write.
PRIVATE_VIEWS_SIZE = 10_000

# Documents whose cache policy is remembered, by digest of their text.
POLICY_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class Slot:
    """Where one request's answer lives in the cache, and the version it must match."""

    key: bytes
    version: int


# How a flight ends for its waiters, when not with a body: the version moved while it
# ran (the waiters read it again), or there is nothing to share (they execute).
_MOVED = "moved"
_FAILED = "failed"
_Outcome = bytes | str


@dataclass(slots=True)
class Lookup:
    """What the cache has for one request: a body to send, or the slot to compute.

    `flight` is set when this request computes the slot's answer for waiting requests;
    it must then call `CachedResponses.land` when done, whatever happened.
    """

    slot: Slot | None
    body: bytes | None = None
    flight: asyncio.Future[_Outcome] | None = None


class CachedResponses:
    """The response cache as the endpoint uses it: who shares, which version, what body.

    `prepare` is the schema's own parse-and-validate cache, so deciding whether a document
    may be cached parses nothing the executor would not, under the same token limit;
    `private` is the same schema's private fields.
    """

    def __init__(
        self,
        prepare: Callable[[str], Prepared],
        *,
        private: PrivateFields,
        ttl: float,
        max_bytes: int,
        max_entry_bytes: int,
    ) -> None:
        self.prepare = prepare
        self.private = private
        self.store = ResponseCache(max_bytes=max_bytes, max_entry_bytes=max_entry_bytes, ttl=ttl)
        self.version = DataVersion(lists.data_version)
        self.private_views = PrivateViews(PRIVATE_VIEWS_SIZE)
        self._policies: LRU[bytes, bool] = LRU(max_entries=POLICY_CACHE_SIZE)
        # One per (key, version) being computed: at most one per request in progress.
        self._flights: dict[Slot, asyncio.Future[_Outcome]] = {}
        self.waiting = 0  # requests waiting for another's computation right now

    def request_key(self, query: str, operation_name: str | None, variables: bytes) -> bytes | None:
        """The request's `request_key`, or None when its document is never cached (not
        a valid query, too long, or selecting a private field)."""
        return request_key(query, operation_name, variables) if self._cacheable(query) else None

    async def lookup(self, viewer: Viewer, request: bytes, origin: str = "") -> Lookup:
        """The cached body, or one computed meanwhile by another request, or the slot this
        request must compute (see "Single flight" in the module docstring). `request` is
        the request's `request_key`."""
        deadline = time.monotonic() + REFRESH_TIMEOUT
        while True:
            slot = await self.slot(viewer, request, origin)
            if slot is None:
                return Lookup(None)
            body = self.get(slot)
            if body is not None:
                return Lookup(slot, body)
            flight = self._flights.get(slot)
            if flight is None:
                flight = asyncio.get_running_loop().create_future()
                self._flights[slot] = flight
                return Lookup(slot, flight=flight)
            outcome = await self._wait(flight, deadline)
            if isinstance(outcome, bytes):
                return Lookup(slot, outcome)
            if outcome != _MOVED or time.monotonic() >= deadline:
                return Lookup(slot)  # execute it, without making anyone wait for it

    async def _wait(self, flight: asyncio.Future[_Outcome], deadline: float) -> _Outcome:
        self.waiting += 1
        try:
            async with asyncio.timeout(deadline - time.monotonic()):  # `deadline`: monotonic
                # shield: a waiter's cancellation must not end the flight for the others
                return await asyncio.shield(flight)
        except TimeoutError:
            return _FAILED
        finally:
            self.waiting -= 1

    def land(self, lookup: Lookup) -> None:
        """The computing request is done: if it shared nothing, its waiters execute."""
        slot = lookup.slot
        # only its own flight: another request may lead a new one for the same slot by now
        if (
            slot is not None
            and lookup.flight is not None
            and self._flights.get(slot) is lookup.flight
        ):
            self._settle(slot, _FAILED)

    def _settle(self, slot: Slot, outcome: _Outcome) -> None:
        flight = self._flights.pop(slot, None)
        if flight is not None and not flight.done():
            flight.set_result(outcome)

    async def slot(self, viewer: Viewer, request: bytes, origin: str = "") -> Slot | None:
        """The request's place in the cache (`request` is its `request_key`), or None when
        its answer must not be shared with anyone.

        `origin` separates answers that embed the URL the request came through (media
        URLs of the embedded store): one Host header cannot leak into another's answers.
        """
        version = await self.version.current()
        if viewer.audience.sees_everything:  # staff, and services with read.all
            scope = "staff"
        elif viewer.is_service:
            return None  # it also sees the events it submitted: a view of its own
        elif viewer.user_id is None:
            scope = "public"
        else:
            private = self.private_views.get(viewer.user_id, version)
            if private is None:
                view = await lists.private_view(viewer.user_id)
                self.private_views.remember(viewer.user_id, view)
                version, private = view.version, view.private
            if private:
                return None
            scope = "public"
        scope = f"{scope} {origin}" if origin else scope
        return Slot(ResponseCache.key(scope, request), version)

    def get(self, slot: Slot) -> bytes | None:
        return self.store.get(slot.key, slot.version)

    async def put(self, slot: Slot, data: dict[str, Any]) -> bool:
        """Store the answer if it is the answer of the slot's version (see the module
        docstring); whether it was stored. Call it only once the query has finished."""
        body = orjson.dumps({"data": data})
        if not self.store.fits(slot.key, body):
            self._settle(slot, _FAILED)
            return False
        if await self.version.current() != slot.version:
            self._settle(slot, _MOVED)
            return False
        self._settle(slot, body)
        return self.store.put(slot.key, slot.version, body)

    def _cacheable(self, query: str) -> bool:
        if len(query) > LONG_DOCUMENT:  # executed, never cached
            return False
        digest = hashlib.blake2b(query.encode(), digest_size=16).digest()
        known = self._policies.get(digest)
        if known is not None:
            return known
        prepared = self.prepare(query)
        document = prepared.document
        policy = document is not None and not prepared.errors and cacheable(document, self.private)
        self._policies.put(digest, policy)
        return policy
