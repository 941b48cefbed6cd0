"""Uploads as the API offers them: sign one, check and publish one, collect the leftovers."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from popmap_gql.config import Settings
from popmap_gql.db import uploads
from popmap_gql.db.models import MediaUpload, UploadKind
from popmap_gql.errors import BadUserInput
from popmap_gql.media.images import check_image
from popmap_gql.media.policy import Policy, load_or_create_secret
from popmap_gql.media.rules import (
    CLAIM_SECONDS,
    CONTENT_TYPES,
    MAX_PENDING_UPLOADS,
    POLICY_SECONDS,
    PUBLISHED_KEY,
    UPLOAD_KEY,
    new_upload_key,
    published_key,
)
from popmap_gql.media.s3 import S3Store
from popmap_gql.media.stores import LocalStore, MediaStore, SignedPost

__all__ = [
    "GarbageReport",
    "IssuedUpload",
    "build_store",
    "claim_upload",
    "collect_garbage",
    "create_upload",
]

logger = logging.getLogger(__name__)


def build_store(settings: Settings) -> MediaStore:
    """S3 when a bucket is configured (boto3 imported only then), else the data folder."""
    if settings.media_bucket:
        return S3Store(settings)
    return LocalStore(settings.media_dir, load_or_create_secret(settings.data_dir / "media.key"))


@dataclass(frozen=True, slots=True)
class IssuedUpload:
    post: SignedPost
    key: str
    expires_at: datetime
    max_bytes: int


async def create_upload(
    store: MediaStore,
    settings: Settings,
    api_base: str,
    owner: uploads.UploadOwner,
    kind: UploadKind,
    content_type: str,
    byte_size: int,
) -> IssuedUpload:
    """A signed POST for one file of this type and exactly this size, for this owner."""
    if content_type not in CONTENT_TYPES:
        raise BadUserInput(
            f"contentType must be one of {', '.join(CONTENT_TYPES)}", field="contentType"
        )
    if not 1 <= byte_size <= settings.media_max_bytes:
        raise BadUserInput(
            f"byteSize must be between 1 and {settings.media_max_bytes}", field="byteSize"
        )
    now = datetime.now(UTC)
    pending = await MediaUpload.filter(
        **owner.column, used_at__isnull=True, expires_at__gt=now
    ).count()
    if pending >= MAX_PENDING_UPLOADS:
        raise BadUserInput(
            f"at most {MAX_PENDING_UPLOADS} uploads may wait to be saved; save or wait",
            field="kind",
        )
    key = new_upload_key(owner, content_type)
    await MediaUpload.create(
        key=key,
        user_id=owner.user_id,
        client_id=owner.client_id,
        kind=kind,
        content_type=content_type,
        byte_size=byte_size,
        expires_at=now + timedelta(seconds=CLAIM_SECONDS),
    )
    policy = Policy(
        key=key,
        content_type=content_type,
        min_bytes=byte_size,
        max_bytes=byte_size,
        expires_at=now + timedelta(seconds=POLICY_SECONDS),
    )
    return IssuedUpload(
        post=store.sign_post(policy, api_base),
        key=key,
        expires_at=policy.expires_at,
        max_bytes=settings.media_max_bytes,
    )


async def claim_upload(
    store: MediaStore, owner: uploads.UploadOwner, key: str, kind: UploadKind, field: str
) -> uploads.ClaimedUpload:
    """Check the upload `key` and publish its bytes; the caller saves it with `mark_used`.

    Refused (BadUserInput on `field`) unless the key was issued to this owner for this
    kind, is unexpired and unused, and the stored object has the declared type and size
    and is a real image of that type. A refused object is deleted.
    """
    if not UPLOAD_KEY.fullmatch(key):
        raise BadUserInput("not an upload key from createUpload", field=field)
    upload = await MediaUpload.get_or_none(key=key)
    if upload is None or not owner.owns(upload.user_id, upload.client_id):
        # the same answer for another owner's key: keys are not confirmed to strangers
        raise BadUserInput("no upload of yours has this key", field=field)
    if upload.kind is not kind:
        raise BadUserInput(f"this upload was made for {upload.kind.value}", field=field)
    if upload.used_at is not None:
        raise BadUserInput("this upload was already used", field=field)
    if upload.expires_at <= datetime.now(UTC):
        raise BadUserInput("this upload has expired; upload the file again", field=field)
    stored = await store.read(key, upload.byte_size)
    if stored is None:
        raise BadUserInput("nothing was uploaded with this key", field=field)
    try:
        if stored.size != upload.byte_size:
            raise BadUserInput(
                f"the uploaded file has {stored.size} bytes, not the {upload.byte_size} declared",
                field=field,
            )
        if stored.content_type != upload.content_type:
            raise BadUserInput(
                f"the uploaded file was sent as {stored.content_type[:40]!r},"
                f" not {upload.content_type}",
                field=field,
            )
        await asyncio.to_thread(check_image, stored.data, upload.content_type, field)
    except BadUserInput:
        await store.delete([key])
        raise
    target = published_key(key, kind)
    # The upload itself stays (a failed save may be retried) until `media gc`.
    await store.publish(target, stored.data, upload.content_type)
    return uploads.ClaimedUpload(upload_key=key, published_key=target, owner=owner, field=field)


@dataclass(frozen=True, slots=True)
class GarbageReport:
    objects_deleted: int
    uploads_forgotten: int


async def collect_garbage(store: MediaStore, now: datetime, min_age: timedelta) -> GarbageReport:
    """Delete objects older than `min_age` that no business or event shows (a replaced
    logo, an upload never saved), then the upload rows of that age."""
    cutoff = now - min_age
    deleted = 0
    async for page in store.list_pages():
        old = [item.key for item in page if item.modified_at < cutoff]
        published = [key for key in old if PUBLISHED_KEY.fullmatch(key)]
        keep = await uploads.referenced_keys(published) if published else set()
        doomed = [key for key in old if key not in keep]
        if doomed:
            await store.delete(doomed)
            deleted += len(doomed)
    forgotten = await uploads.delete_uploads_before(cutoff)
    logger.info("media gc: %d objects deleted, %d uploads forgotten", deleted, forgotten)
    return GarbageReport(objects_deleted=deleted, uploads_forgotten=forgotten)
