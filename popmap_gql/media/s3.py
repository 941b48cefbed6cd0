"""The S3 media store: boto3 for presigned POSTs and object reads, the one module using it.

boto3 is synchronous: each call runs in a worker thread. Its errors enter our code here
only, as ServiceUnavailable (or "no such object" where that is an answer).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from popmap_gql.config import Settings
from popmap_gql.errors import ServiceUnavailable
from popmap_gql.media.policy import Policy
from popmap_gql.media.rules import IMMUTABLE_CACHE_CONTROL
from popmap_gql.media.stores import ListedObject, SignedPost, StoredObject

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import ObjectIdentifierTypeDef

__all__ = ["S3Store"]

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

_PREFIXES = ("uploads/", "media/")
_DELETE_BATCH = 1000  # DeleteObjects takes at most this many keys


def _client(settings: Settings) -> S3Client:
    try:
        import boto3
        from botocore.config import Config
    except ImportError as exc:  # the optional extra is not installed
        raise RuntimeError(
            "POPMAP_MEDIA_BUCKET is set but boto3 is not installed: pip install 'popmap-gql[s3]'"
        ) from exc
    config = Config(
        signature_version="s3v4",
        connect_timeout=3,
        read_timeout=10,
        retries={"max_attempts": 2, "mode": "standard"},
    )
    client: S3Client = boto3.client(
        "s3",
        region_name=settings.media_region,
        endpoint_url=settings.s3_endpoint_url,
        config=config,
    )
    return client


class S3Store:
    def __init__(self, settings: Settings) -> None:
        self.bucket = settings.media_bucket or ""
        self.client = _client(settings)

    def sign_post(self, policy: Policy, api_base: str) -> SignedPost:
        # Signing is local (no request); S3 enforces every condition of the policy.
        seconds = int((policy.expires_at - datetime.now(UTC)).total_seconds())
        post = self.client.generate_presigned_post(
            Bucket=self.bucket,
            Key=policy.key,
            Fields={"Content-Type": policy.content_type},
            Conditions=[
                {"Content-Type": policy.content_type},
                ["content-length-range", policy.min_bytes, policy.max_bytes],
            ],
            ExpiresIn=max(seconds, 1),
        )
        return SignedPost(url=post["url"], fields=[(k, str(v)) for k, v in post["fields"].items()])

    async def read(self, key: str, expected_size: int) -> StoredObject | None:
        return await _call(self._read, key, expected_size)

    def _read(self, key: str, expected_size: int) -> StoredObject | None:
        try:
            found = self.client.get_object(Bucket=self.bucket, Key=key)
        except self.client.exceptions.NoSuchKey:
            return None
        body = found["Body"]
        try:
            size = found["ContentLength"]
            data = body.read(expected_size + 1) if size == expected_size else b""
        finally:
            body.close()
        return StoredObject(size=size, content_type=found.get("ContentType", ""), data=data)

    async def publish(self, key: str, data: bytes, content_type: str) -> None:
        await _call(
            self.client.put_object,
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType=content_type,
            CacheControl=IMMUTABLE_CACHE_CONTROL,
        )

    async def delete(self, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), _DELETE_BATCH):
            await _call(self._delete, keys[start : start + _DELETE_BATCH])

    def _delete(self, keys: Sequence[str]) -> None:
        objects: list[ObjectIdentifierTypeDef] = [{"Key": key} for key in keys]
        self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})

    async def list_pages(self) -> AsyncIterator[list[ListedObject]]:
        paginator = self.client.get_paginator("list_objects_v2")
        for prefix in _PREFIXES:
            pages = iter(paginator.paginate(Bucket=self.bucket, Prefix=prefix))
            while (page := await _call(next, pages, None)) is not None:
                yield [
                    ListedObject(key=item["Key"], modified_at=item["LastModified"])
                    for item in page.get("Contents", [])
                ]


async def _call(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return await asyncio.to_thread(function, *args, **kwargs)
    except (BotoCoreError, ClientError) as exc:
        logger.warning("S3 request failed: %r", exc)
        raise ServiceUnavailable("the media store is unavailable; try again") from exc
