"""The shared store of automatic persisted queries (migration 0008), as plain SQL.

A document's row is found by the SHA-256 of its text, so a hash always names the same
text: a row may be evicted and stored again, never changed. `last_used` orders the
evictions; it is written at most once per TOUCH_INTERVAL_SECONDS per hash by the
statements below (the condition is in the SQL, so replicas touching the same hash at once
write the row once), and callers keep their own clock so as not to send a statement for
every request.
"""

from __future__ import annotations

from dataclasses import dataclass

from popmap_gql.db.client import execute, fetch

__all__ = ["TOUCH_INTERVAL_SECONDS", "Stored", "find", "store", "touch"]

TOUCH_INTERVAL_SECONDS = 60.0


async def find(document_hash: str) -> str | None:
    """The text stored under this hash, if any; a find also counts as a use."""
    rows = await fetch(
        "WITH touched AS (UPDATE persisted_query SET last_used = now()"
        " WHERE hash = $1 AND last_used < now() - make_interval(secs => $2) RETURNING 1)"
        " SELECT document FROM persisted_query WHERE hash = $1",
        [document_hash, TOUCH_INTERVAL_SECONDS],
    )
    return rows[0]["document"] if rows else None


async def touch(document_hash: str) -> None:
    """Record a use of this hash (unless one was recorded within the interval)."""
    await execute(
        "UPDATE persisted_query SET last_used = now()"
        " WHERE hash = $1 AND last_used < now() - make_interval(secs => $2)",
        [document_hash, TOUCH_INTERVAL_SECONDS],
    )


@dataclass(frozen=True, slots=True)
class Stored:
    """What storing one document did: whether its row is new, and how many rows the
    least recently used end of the table lost to make room."""

    inserted: bool
    evicted: int


def eviction_batch(max_documents: int) -> int:
    """How far below the bound a full table is brought, so that the next registrations
    find room without deleting anything: a tenth of it (at least one row)."""
    return max(1, max_documents // 10)


async def store(document_hash: str, text: str, max_documents: int, max_bytes: int) -> Stored:
    """Store `text` under its hash (the caller checked that it is its SHA-256) as just
    used; when the table then holds more than `max_documents`, or more than `max_bytes`
    of text (UTF-8), delete the least recently used rows (never the one just stored)
    down to a tenth below the bound that was passed."""
    rows = await fetch(
        "WITH stored AS (INSERT INTO persisted_query (hash, document) VALUES ($1, $2)"
        " ON CONFLICT (hash) DO UPDATE SET last_used = now() RETURNING (xmax = 0) AS inserted)"
        " SELECT (SELECT inserted FROM stored) AS inserted, count(*) AS before,"
        " COALESCE(sum(octet_length(document)), 0) AS bytes FROM persisted_query",
        [document_hash, text],
    )
    inserted = bool(rows[0]["inserted"])
    # The count and the sum are of the snapshot before the insert.
    held = int(rows[0]["before"]) + (1 if inserted else 0)
    held_bytes = int(rows[0]["bytes"]) + (len(text.encode()) if inserted else 0)
    if held <= max_documents and held_bytes <= max_bytes:
        return Stored(inserted, 0)
    excess = held - (max_documents - eviction_batch(max_documents)) if held > max_documents else 0
    excess_bytes = held_bytes - (max_bytes - max_bytes // 10) if held_bytes > max_bytes else 0
    # The shortest run of least recently used rows holding both excesses.
    deleted = await fetch(
        "DELETE FROM persisted_query WHERE hash IN (SELECT hash FROM ("
        " SELECT hash, row_number() OVER w AS n,"
        " sum(octet_length(document)) OVER w - octet_length(document) AS before"
        " FROM persisted_query WHERE hash <> $1"
        " WINDOW w AS (ORDER BY last_used, hash ROWS UNBOUNDED PRECEDING)) oldest"
        " WHERE n <= $2 OR before < $3) RETURNING hash",
        [document_hash, excess, excess_bytes],
    )
    return Stored(inserted, len(deleted))
