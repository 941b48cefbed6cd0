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

What it saves, measured in-process on the benchmark's bodies (the checks a known body
skips against the lookup, on a loaded 2-core machine): 19 us of a Q2 hit, 63 us of a Q1
hit (its filter's coercion and cost check), against hits of 250-600 us.

Only admitted, cacheable bodies are kept: a body refused once is checked and refused
again every time. At most MAX_ENTRIES bodies of at most MAX_BODY_BYTES each are kept,
within their share of POPMAP_DOCUMENT_MEMORY_BYTES (each counting its bytes, its cache
key and ENTRY_OVERHEAD), the least recently used going first, so a stream of distinct
bodies costs bounded memory.
"""

from __future__ import annotations

from typing import NamedTuple

from popmap_gql.memory import LRU

__all__ = ["ENTRY_OVERHEAD", "MAX_BODY_BYTES", "MAX_ENTRIES", "Remembered", "known_bodies"]

MAX_ENTRIES = 512
# Real map and lookup requests are a few hundred bytes; larger bodies are checked each time.
MAX_BODY_BYTES = 4096
# The entry's objects and the LRU's node, besides the body and the key
ENTRY_OVERHEAD = 512


class Remembered(NamedTuple):
    """What the endpoint keeps of an admitted body: its cache key, the operation it runs
    (name and type, for the access line and metrics), the persisted query's hash when
    the body names its document only by that, and what it is charged (budgets.py)."""

    key: bytes
    described: tuple[str | None, str | None]
    stored_hash: str | None
    cost: int


def known_bodies(max_bytes: int) -> LRU[bytes, Remembered]:
    """An LRU from request bodies to what is remembered of them (the endpoint keeps only
    bodies of at most MAX_BODY_BYTES that passed every check and may be cached)."""
    return LRU(max_entries=MAX_ENTRIES, max_bytes=max_bytes, size=_size)


def _size(body: bytes, remembered: Remembered) -> int:
    return len(body) + len(remembered.key) + ENTRY_OVERHEAD
