"""What the server keeps between requests: one LRU bounded by entries and by bytes, and
how the per-process budget for client-supplied text is shared among the caches.

Every cache of the server (parsed documents, their cost memos, compiled plans, persisted
queries in memory, known request bodies, cached answers, verified tokens) is an `LRU`:
at most `max_entries` entries and at most `max_bytes` bytes, each entry costing what the
caller's `size` function says, least recently used out first. An entry larger than one
entry may be (`max_entry_bytes`, at most `max_bytes`) is not kept at all.

The caches are used from the event loop only (nothing of the server reads or writes them
from another thread), so there is no lock.

The caches that keep text a client sent share one budget, `POPMAP_DOCUMENT_MEMORY_BYTES`
(`DocumentMemory`); the response cache has its own (`POPMAP_RESPONSE_CACHE_MAX_BYTES`),
and the caches of the authenticator hold only tokens our identity provider signed, so
they are bounded by entries.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar, overload

__all__ = ["LRU", "DocumentMemory"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
D = TypeVar("D")


class LRU(Generic[K, V]):
    """A least-recently-used mapping bounded by entries and by the bytes `size` counts."""

    def __init__(
        self,
        *,
        max_entries: int | None = None,
        max_bytes: int | None = None,
        size: Callable[[K, V], int] | None = None,
        max_entry_bytes: int | None = None,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_entry_bytes = (
            max_entry_bytes if max_bytes is None else min(max_entry_bytes or max_bytes, max_bytes)
        )
        self._size = size
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[K]:
        """The keys, least recently used first."""
        return iter(self._entries)

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: D) -> V | D: ...
    def get(self, key: K, default: object = None) -> object:
        """The value (now the most recently used), or `default`."""
        entry = self._entries.get(key)
        if entry is None:
            return default
        self._entries.move_to_end(key)
        return entry[0]

    def peek(self, key: K) -> V | None:
        """The value, leaving the order as it is."""
        entry = self._entries.get(key)
        return None if entry is None else entry[0]

    def put(self, key: K, value: V) -> bool:
        """Keep `value` as the most recently used, making room; whether it was kept (an
        entry larger than `max_entry_bytes` is not, and replaces nothing)."""
        cost = 0 if self._size is None else self._size(key, value)
        if self.max_entry_bytes is not None and cost > self.max_entry_bytes:
            return False
        self.pop(key)
        self._entries[key] = (value, cost)
        self.bytes += cost
        while (self.max_entries is not None and len(self._entries) > self.max_entries) or (
            self.max_bytes is not None and self.bytes > self.max_bytes
        ):
            self.pop(next(iter(self._entries)))
        return True

    def pop(self, key: K) -> V | None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        self.bytes -= entry[1]
        return entry[0]

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0


@dataclass(frozen=True, slots=True)
class DocumentMemory:
    """`POPMAP_DOCUMENT_MEMORY_BYTES` shared among the caches that keep client-supplied
    text, in sixteenths: parsed documents (with their cost memos) half, compiled plans
    (each key holds its document's text) a quarter, persisted queries in memory and
    known request bodies an eighth each."""

    total: int

    @property
    def documents(self) -> int:
        return self.total * 8 // 16

    @property
    def plans(self) -> int:
        return self.total * 4 // 16

    @property
    def persisted(self) -> int:
        return self.total * 2 // 16

    @property
    def known_bodies(self) -> int:
        return self.total * 2 // 16
