"""Persisted queries: Apollo's automatic persisted queries, and trusted documents.

A request may name its document by the SHA-256 (lowercase hex) of its text instead of, or
besides, sending the text: `extensions.persistedQuery` `{"version": 1, "sha256Hash": ...}`
(Apollo's and urql's links, over POST and GET) or `documentId` (`<hash>` or
`sha256:<hash>`, as GraphQL over HTTP's persisted documents and graphql-codegen's
examples send it).

Without a manifest (automatic persisted queries): a hash the server does not know, sent
alone, is answered PERSISTED_QUERY_NOT_FOUND (what Apollo's link waits for to send the
text); a hash sent with its text registers the text in the shared store (`db/persisted.py`)
once the hash is checked, so any replica then runs the hash alone. Only documents that
parse within the token limit and validate are stored; a text longer than LONG_DOCUMENT
characters (documents.py) is refused, PERSISTED_QUERY_TOO_LARGE, and neither run nor
stored (sent without its hash, it runs). The store is bounded in documents and in bytes
of text (POPMAP_APQ_MAX_DOCUMENTS, POPMAP_APQ_MAX_BYTES). Lookups go through an
in-process copy (an LRU within its share of POPMAP_DOCUMENT_MEMORY_BYTES, and never more
documents than the store holds), so a hash in common use costs no SQL; its use is
recorded in the store at most once per TOUCH_INTERVAL_SECONDS, which is what eviction
orders by.

With a manifest (`POPMAP_TRUSTED_DOCUMENTS`, checked at start-up in config.py): only its
documents run, named by hash or sent as text; anything else is PERSISTED_QUERY_NOT_TRUSTED
and nothing is registered.

A hash is a content address: the text it names never changes, which is why answers and
admitted request bodies may be shared between a hash-only request and a full one.
"""

from __future__ import annotations

import hashlib
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from popmap_gql.api.documents import LONG_DOCUMENT, Prepared
from popmap_gql.db import persisted
from popmap_gql.http.request_errors import BadRequest
from popmap_gql.memory import LRU

__all__ = [
    "Document",
    "PersistedDocuments",
    "requested_hash",
    "sha256_hex",
]

_HASH = re.compile(r"[0-9a-f]{64}")
_DOCUMENT_ID_PREFIX = "sha256:"

# What an entry of the in-process copy costs besides its text (sys.getsizeof).
ENTRY_OVERHEAD = 256


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _hash_value(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _HASH.fullmatch(value.lower()):
        raise BadRequest(f"{where} must be a SHA-256 hash: 64 hexadecimal digits.")
    return value.lower()


def requested_hash(params: Mapping[str, Any]) -> str | None:
    """The hash a request names its document by, if any (its parameters' other types were
    checked before: `extensions` is an object or None)."""
    named: str | None = None
    extensions = params.get("extensions")
    if extensions is not None and "persistedQuery" in extensions:
        persisted_query = extensions["persistedQuery"]
        if not isinstance(persisted_query, dict):
            raise BadRequest("`extensions.persistedQuery` must be an object.")
        if persisted_query.get("version") != 1:
            raise BadRequest("Unsupported persisted query version: only version 1 is.")
        named = _hash_value(
            persisted_query.get("sha256Hash"), "`extensions.persistedQuery.sha256Hash`"
        )
    document_id = params.get("documentId")
    if document_id is not None:
        if isinstance(document_id, str):
            document_id = document_id.removeprefix(_DOCUMENT_ID_PREFIX)
        by_id = _hash_value(document_id, "`documentId` (optionally prefixed `sha256:`)")
        if named is not None and by_id != named:
            raise BadRequest("`documentId` and `extensions.persistedQuery` name different hashes.")
        named = by_id
    return named


@dataclass(frozen=True, slots=True)
class Document:
    """The text a request runs, and how it was named.

    `stored_hash`: the request sent only a hash, resolved through the shared store; a
    body remembered for it must still find it there (`PersistedDocuments.still_stored`).
    `registers`: the request sent the text to be stored; each such request reaches the
    store, so its body is never remembered.
    """

    text: str
    stored_hash: str | None = None
    registers: bool = False


@dataclass(slots=True)
class _Local:
    text: str
    used_at: float  # when the store last recorded a use (time.monotonic())


def _local_size(document_hash: str, local: _Local) -> int:
    return sys.getsizeof(local.text) + ENTRY_OVERHEAD


class PersistedDocuments:
    """The endpoint's persisted documents: the shared store, or a trusted manifest.

    `prepare` is the schema's parse-and-validate cache: a registered document must be one
    it accepts. `max_documents` and `max_bytes` bound the store, `local_max_bytes` the
    in-process copy.
    """

    def __init__(
        self,
        *,
        prepare: Callable[[str], Prepared],
        trusted: Mapping[str, str] | None,
        max_documents: int,
        max_bytes: int,
        local_max_bytes: int,
    ) -> None:
        self.prepare = prepare
        self.trusted = trusted
        self.max_documents = max_documents
        self.max_bytes = max_bytes
        self.local: LRU[str, _Local] = LRU(
            max_entries=max_documents, max_bytes=local_max_bytes, size=_local_size
        )

    async def document(self, params: Mapping[str, Any], query: str | None) -> Document | None:
        """The document a request runs (None when it names none), or a coded refusal."""
        named = requested_hash(params)
        if named is None:
            if query is None:
                return None
            if self.trusted is None:
                return Document(query)
            named = sha256_hex(query)
        elif query is not None and sha256_hex(query) != named:
            raise BadRequest(
                "The persisted query's hash is not the SHA-256 of its text",
                code="PERSISTED_QUERY_HASH_MISMATCH",
            )
        if self.trusted is not None:  # its hashes were checked against its texts
            text = self.trusted.get(named)
            if text is None:
                raise BadRequest(
                    "Only the documents of this server's manifest run here",
                    status=403,
                    code="PERSISTED_QUERY_NOT_TRUSTED",
                )
            return Document(text)
        if query is not None:
            await self._register(named, query)
            return Document(query, registers=True)
        text = await self._lookup(named)
        if text is None:
            # Apollo's link sends the text on exactly this message or code, read from a 4xx
            # body as well as from a 200 one; a request error may not be a 200 (GraphQL over
            # HTTP). No cache on the way keeps it: the next request may find the hash stored.
            raise BadRequest(
                "PersistedQueryNotFound",
                status=404,
                code="PERSISTED_QUERY_NOT_FOUND",
                headers={"Cache-Control": "no-store"},
            )
        return Document(text, stored_hash=named)

    async def still_stored(self, document_hash: str) -> bool:
        """Whether a hash resolved before still resolves (recording the use as a lookup
        does); the text is the same whenever it does."""
        return await self._lookup(document_hash) is not None

    async def _lookup(self, document_hash: str) -> str | None:
        local = self.local.get(document_hash)
        if local is None:
            text = await persisted.find(document_hash)
            if text is not None:
                self.local.put(document_hash, _Local(text, time.monotonic()))
            return text
        now = time.monotonic()
        if now - local.used_at >= persisted.TOUCH_INTERVAL_SECONDS:
            local.used_at = now
            await persisted.touch(document_hash)
        return local.text

    async def _register(self, document_hash: str, text: str) -> None:
        """Store a checked text, unless it is refused anyway or this process recorded
        its use within the interval (the store has it, recently used)."""
        local = self.local.get(document_hash)
        now = time.monotonic()
        if local is not None and now - local.used_at < persisted.TOUCH_INTERVAL_SECONDS:
            return
        if len(text) > LONG_DOCUMENT:
            raise BadRequest(
                f"A persisted query's text may be at most {LONG_DOCUMENT} characters long;"
                " send a longer document without its hash",
                code="PERSISTED_QUERY_TOO_LARGE",
            )
        prepared = self.prepare(text)
        if prepared.document is None or prepared.errors:
            return  # it is executed, and refused, but never stored
        await persisted.store(document_hash, text, self.max_documents, self.max_bytes)
        self.local.put(document_hash, _Local(text, time.monotonic()))
