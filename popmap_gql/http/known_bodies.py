"""POST bodies seen before, each with the response cache's key for it (and what else the
endpoint keeps of them: the operation they run, for its access line and metrics).

Clients repeat the same few request bodies byte for byte (a map page, a business lookup).
When a body has once passed every check before the response cache (JSON, the types of
its fields, the nesting of its variables, its document's validation and the cost limit)
and its answer may be shared, the endpoint remembers it with its `request_key`: a repeat
goes from the raw bytes to the cache without parsing or checking anything again. Those
checks read nothing but the body's bytes and the process's settings, so their verdict on
the same bytes cannot change. Who asks is not part of it: the Content-Type, the viewer,
the cache's scope and the data version are still decided on every request.

A body that names its document only by a persisted query's hash is remembered with that
hash: the hash always names the same text, but the shared store may evict it, so the
endpoint asks the store again (in memory, in the common case) before using the key, and
forgets the body when the store no longer knows the hash. A hash the store did not know
was refused, so it was never remembered.

Only admitted, cacheable bodies are kept: a body refused once is checked and refused
again every time. At most MAX_ENTRIES bodies of at most MAX_BODY_BYTES each are kept,
the least recently used going first, so a stream of distinct bodies costs bounded memory.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

__all__ = ["MAX_BODY_BYTES", "MAX_ENTRIES", "KnownBodies"]

MAX_ENTRIES = 512
# Real map and lookup requests are a few hundred bytes; larger bodies are checked each time.
MAX_BODY_BYTES = 4096

V = TypeVar("V")


class KnownBodies(Generic[V]):
    """An LRU from request bodies to their `request_key` (with what else goes with it)."""

    def __init__(self, max_entries: int = MAX_ENTRIES, max_body_bytes: int = MAX_BODY_BYTES):
        self.max_entries = max_entries
        self.max_body_bytes = max_body_bytes
        self._keys: OrderedDict[bytes, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, body: bytes) -> V | None:
        """What is remembered for exactly these bytes, if anything."""
        key = self._keys.get(body)
        if key is not None:
            self._keys.move_to_end(body)
        return key

    def remember(self, body: bytes, key: V) -> None:
        """Call only for a body that passed every check and may be cached."""
        if len(body) > self.max_body_bytes:
            return
        self._keys[body] = key
        self._keys.move_to_end(body)
        if len(self._keys) > self.max_entries:
            self._keys.popitem(last=False)

    def forget(self, body: bytes) -> None:
        self._keys.pop(body, None)
