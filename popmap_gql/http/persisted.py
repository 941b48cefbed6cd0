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
parse within the token limit and validate are stored, and only texts within the body
limit (a GET's text is not bounded by it otherwise). Lookups go through an in-process
copy (at most LOCAL_MAX_BYTES, and never more documents than the store holds), so a hash
in common use costs no SQL; its use is recorded in the store at most once per
TOUCH_INTERVAL_SECONDS, which is what eviction orders by.

With a manifest (`POPMAP_TRUSTED_DOCUMENTS`, checked at start-up in config.py): only its
documents run, named by hash or sent as text; anything else is PERSISTED_QUERY_NOT_TRUSTED
and nothing is registered.

A hash is a content address: the text it names never changes, which is why answers and
admitted request bodies may be shared between a hash-only request and a full one.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from popmap_gql.api.documents import Prepared
from popmap_gql.db import persisted
from popmap_gql.http.request_errors import BadRequest

__all__ = [
    "LOCAL_MAX_BYTES",
    "Document",
    "PersistedDocuments",
    "not_found",
    "requested_hash",
    "sha256_hex",
]

_HASH = re.compile(r"[0-9a-f]{64}")
_DOCUMENT_ID_PREFIX = "sha256:"
# Never stored by a cache on the way: the next request may find the hash registered.
_NOT_STORED = {"Cache-Control": "no-store"}

# Memory the in-process copy of the store may hold: texts plus ENTRY_OVERHEAD each.
LOCAL_MAX_BYTES = 8 * 1024 * 1024
ENTRY_OVERHEAD = 256


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def not_found() -> BadRequest:
    """Apollo's link sends the text on exactly this message or code, read from a 4xx body
    as well as from a 200 one; a request error may not be a 200 (GraphQL over HTTP)."""
    return BadRequest(
        "PersistedQueryNotFound",
        status=404,
        code="PERSISTED_QUERY_NOT_FOUND",
        headers=_NOT_STORED,
    )


def _not_trusted() -> BadRequest:
    return BadRequest(
        "Only the documents of this server's manifest run here",
        status=403,
        code="PERSISTED_QUERY_NOT_TRUSTED",
    )


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


class PersistedDocuments:
    """The endpoint's persisted documents: the shared store, or a trusted manifest.

    `prepare` is the schema's parse-and-validate cache: a registered document must be one
    it accepts. `max_text_bytes` is the body limit, `max_documents` the store's bound.
    """

    def __init__(
        self,
        *,
        prepare: Callable[[str], Prepared],
        trusted: Mapping[str, str] | None,
        max_documents: int,
        max_text_bytes: int,
        local_max_bytes: int = LOCAL_MAX_BYTES,
    ) -> None:
        self.prepare = prepare
        self.trusted = trusted
        self.max_documents = max_documents
        self.max_text_bytes = max_text_bytes
        self.local_max_bytes = local_max_bytes
        self._local: OrderedDict[str, _Local] = OrderedDict()
        self.local_bytes = 0

    async def document(self, params: Mapping[str, Any], query: str | None) -> Document | None:
        """The document a request runs (None when it names none), or a coded refusal."""
        named = requested_hash(params)
        if named is None:
            if query is None:
                return None
            if self.trusted is not None and sha256_hex(query) not in self.trusted:
                raise _not_trusted()
            return Document(query)
        if query is not None:
            if sha256_hex(query) != named:
                raise BadRequest(
                    "The persisted query's hash is not the SHA-256 of its text",
                    code="PERSISTED_QUERY_HASH_MISMATCH",
                )
            if self.trusted is not None:
                if named not in self.trusted:
                    raise _not_trusted()
                return Document(query)
            await self._register(named, query)
            return Document(query, registers=True)
        if self.trusted is not None:
            text = self.trusted.get(named)
            if text is None:
                raise _not_trusted()
            return Document(text)
        text = await self._lookup(named)
        if text is None:
            raise not_found()
        return Document(text, stored_hash=named)

    async def still_stored(self, document_hash: str) -> bool:
        """Whether a hash resolved before still resolves (recording the use as a lookup
        does); the text is the same whenever it does."""
        return await self._lookup(document_hash) is not None

    async def _lookup(self, document_hash: str) -> str | None:
        local = self._local.get(document_hash)
        if local is None:
            text = await persisted.find(document_hash)
            if text is not None:
                self._keep(document_hash, text)
            return text
        self._local.move_to_end(document_hash)
        now = time.monotonic()
        if now - local.used_at >= persisted.TOUCH_INTERVAL_SECONDS:
            local.used_at = now
            await persisted.touch(document_hash)
        return local.text

    async def _register(self, document_hash: str, text: str) -> None:
        """Store a checked text, unless it is refused anyway or this process recorded
        its use within the interval (the store has it, recently used)."""
        local = self._local.get(document_hash)
        now = time.monotonic()
        if local is not None and now - local.used_at < persisted.TOUCH_INTERVAL_SECONDS:
            return
        if len(text.encode()) > self.max_text_bytes:
            return
        prepared = self.prepare(text)
        if prepared.document is None or prepared.errors:
            return  # it is executed, and refused, but never stored
        await persisted.store(document_hash, text, self.max_documents)
        self._keep(document_hash, text)

    def _keep(self, document_hash: str, text: str) -> None:
        """Remember a text the store has just recorded a use of."""
        self._forget(document_hash)
        self._local[document_hash] = _Local(text, time.monotonic())
        self.local_bytes += len(text) + ENTRY_OVERHEAD
        while self.local_bytes > self.local_max_bytes or len(self._local) > self.max_documents:
            self._forget(next(iter(self._local)))

    def _forget(self, document_hash: str) -> None:
        local = self._local.pop(document_hash, None)
        if local is not None:
            self.local_bytes -= len(local.text) + ENTRY_OVERHEAD

    def __len__(self) -> int:
        return len(self._local)
