"""Where uploads live: the interface both stores keep, and the embedded one (a folder).

Keys are checked against `rules` before any store sees them; the local store checks again
before it builds a path, so no key can name a file outside its folder.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from popmap_gql.config import Settings
from popmap_gql.files import write_whole
from popmap_gql.media.policy import (
    ALGORITHM,
    Policy,
    sign_policy,
    verify_policy,
)
from popmap_gql.media.rules import PUBLISHED_KEY, UPLOAD_KEY, content_type_of_key

__all__ = [
    "UPLOAD_PATH",
    "ListedObject",
    "LocalStore",
    "MediaStore",
    "ObjectExists",
    "SignedPost",
    "StoredObject",
    "public_base",
]

# The embedded store's upload endpoint, below the API's own origin.
UPLOAD_PATH = "/media/uploads"


@dataclass(frozen=True, slots=True)
class SignedPost:
    """A form the browser POSTs as multipart/form-data: these fields, then the file."""

    url: str
    fields: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class StoredObject:
    size: int
    content_type: str
    data: bytes  # empty unless `size` was the size the reader expected


@dataclass(frozen=True, slots=True)
class ListedObject:
    key: str
    modified_at: datetime


class ObjectExists(Exception):
    """An upload was already stored under this key; stored objects are never replaced."""


class MediaStore(Protocol):
    def sign_post(self, policy: Policy, api_base: str) -> SignedPost: ...

    async def read(self, key: str, expected_size: int) -> StoredObject | None:
        """The object under `key`, or None; its bytes only when of the expected size."""

    async def publish(self, key: str, data: bytes, content_type: str) -> None: ...

    async def delete(self, keys: Sequence[str]) -> None: ...

    def list_pages(self) -> AsyncIterator[list[ListedObject]]:
        """Every upload and published object, a page at a time."""


def public_base(settings: Settings) -> str | None:
    """Origin (and path) that published keys are appended to; None: the API's own origin,
    as the request reached it."""
    if settings.media_base_url:
        return settings.media_base_url
    if settings.media_bucket:
        if settings.s3_endpoint_url:  # an emulator: path-style addressing
            return f"{settings.s3_endpoint_url}/{settings.media_bucket}"
        return f"https://{settings.media_bucket}.s3.{settings.media_region}.amazonaws.com"
    return None


class LocalStore:
    """Files under `root`; the API itself accepts the POST (see `routes`) and serves them."""

    def __init__(self, root: Path, secret: bytes) -> None:
        self.root = root
        self.secret = secret

    def sign_post(self, policy: Policy, api_base: str) -> SignedPost:
        encoded, signature = sign_policy(self.secret, policy)
        return SignedPost(
            url=f"{api_base}{UPLOAD_PATH}",
            fields=[
                ("key", policy.key),
                ("Content-Type", policy.content_type),
                ("policy", encoded),
                ("x-popmap-algorithm", ALGORITHM),
                ("x-popmap-signature", signature),
            ],
        )

    def verify(self, encoded: str, signature: str) -> Policy:
        return verify_policy(self.secret, encoded, signature, datetime.now(UTC))

    def path(self, key: str) -> Path:
        if not (UPLOAD_KEY.fullmatch(key) or PUBLISHED_KEY.fullmatch(key)):
            raise ValueError(f"not a media key: {key[:120]!r}")
        return self.root / key

    async def store_upload(self, key: str, data: bytes) -> None:
        """Store a new upload; ObjectExists if anything is already stored under `key`."""
        await asyncio.to_thread(_write, self.path(key), data, replace=False)

    async def read(self, key: str, expected_size: int) -> StoredObject | None:
        return await asyncio.to_thread(self._read, key, expected_size)

    def _read(self, key: str, expected_size: int) -> StoredObject | None:
        path = self.path(key)
        try:
            with path.open("rb") as file:
                size = os.fstat(file.fileno()).st_size
                data = file.read(size) if size == expected_size else b""
        except FileNotFoundError:
            return None
        return StoredObject(size=size, content_type=content_type_of_key(key), data=data)

    async def publish(self, key: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(_write, self.path(key), data, replace=True)

    async def delete(self, keys: Sequence[str]) -> None:
        await asyncio.to_thread(_unlink, [self.path(key) for key in keys])

    async def list_pages(self) -> AsyncIterator[list[ListedObject]]:
        for top in ("uploads", "media"):
            page = await asyncio.to_thread(self._listing, self.root / top)
            if page:
                yield page

    def _listing(self, folder: Path) -> list[ListedObject]:
        found = []
        for path in folder.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and (UPLOAD_KEY.fullmatch(key) or PUBLISHED_KEY.fullmatch(key)):
                modified = datetime.fromtimestamp(path.stat().st_mtime, UTC)
                found.append(ListedObject(key=key, modified_at=modified))
        return found


def _unlink(paths: list[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _write(path: Path, data: bytes, *, replace: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_whole(path, data, replace=replace)
    except FileExistsError:
        raise ObjectExists(path.name) from None
