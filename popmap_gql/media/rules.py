"""What an upload may be: its types, sizes, keys, and how long its signature lasts."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass

from popmap_gql.db.models import UploadKind
from popmap_gql.db.uploads import UploadOwner

__all__ = [
    "CLAIM_SECONDS",
    "CONTENT_TYPES",
    "IMMUTABLE_CACHE_CONTROL",
    "MAX_IMAGE_PIXELS",
    "MAX_IMAGE_SIDE",
    "MAX_PENDING_UPLOADS",
    "POLICY_SECONDS",
    "PUBLISHED_KEY",
    "UPLOAD_KEY",
    "ImageType",
    "content_type_of_key",
    "new_upload_key",
    "owner_prefix",
    "published_key",
]


@dataclass(frozen=True, slots=True)
class ImageType:
    pillow_format: str
    extension: str


# The only types accepted; each key carries its type's extension, so a stored object's
# type is known from its key alone.
CONTENT_TYPES: dict[str, ImageType] = {
    "image/jpeg": ImageType("JPEG", "jpg"),
    "image/png": ImageType("PNG", "png"),
    "image/webp": ImageType("WEBP", "webp"),
}
_BY_EXTENSION = {image.extension: content_type for content_type, image in CONTENT_TYPES.items()}
_EXTENSIONS = "|".join(_BY_EXTENSION)

# A signed POST is good for a few minutes; the key may be saved on a business or event
# for an hour after it was issued. Uploads never saved are removed by `media gc`.
POLICY_SECONDS = 300
CLAIM_SECONDS = 3600
# Unsaved, unexpired uploads one owner (a person, a service) may hold at once: bounds
# rows and stored objects.
MAX_PENDING_UPLOADS = 20

# A logo or an event picture needs no more; larger images cost memory to decode (a
# 24-megapixel RGBA image is about 100 MB), so they are refused from their header.
MAX_IMAGE_SIDE = 8000
MAX_IMAGE_PIXELS = 24_000_000

IMMUTABLE_CACHE_CONTROL = "public, max-age=31536000, immutable"

_RANDOM_PART = r"[A-Za-z0-9_-]{22}"
# Where the browser uploads: under the owner's own prefix. A person's is their user id; a
# service's is `c` and a digest of its client id (free text, so never part of a path).
# The two cannot collide: a user id starts with a digit.
_CLIENT_DIGEST_CHARS = 32  # 128 bits of SHA-256
UPLOAD_KEY = re.compile(
    rf"uploads/(?P<owner>[1-9][0-9]{{0,18}}|c[0-9a-f]{{{_CLIENT_DIGEST_CHARS}}})"
    rf"/(?P<token>{_RANDOM_PART})\.(?P<ext>{_EXTENSIONS})"
)
# Where a checked upload is published (and what public URLs name): nobody can write there
# with a signed POST, so a saved picture cannot be replaced behind the API's back.
_KIND_SLUGS = {UploadKind.BUSINESS_LOGO: "business-logo", UploadKind.EVENT_IMAGE: "event-image"}
PUBLISHED_KEY = re.compile(
    rf"media/(?:{'|'.join(_KIND_SLUGS.values())})/{_RANDOM_PART}\.(?P<ext>{_EXTENSIONS})"
)


def owner_prefix(owner: UploadOwner) -> str:
    """The folder under `uploads/` that holds this owner's uploads."""
    if owner.client_id is not None:
        digest = hashlib.sha256(owner.client_id.encode("utf-8", "replace")).hexdigest()
        return f"c{digest[:_CLIENT_DIGEST_CHARS]}"
    return str(owner.user_id)


def new_upload_key(owner: UploadOwner, content_type: str) -> str:
    token = secrets.token_urlsafe(16)  # 22 characters, 128 random bits
    return f"uploads/{owner_prefix(owner)}/{token}.{CONTENT_TYPES[content_type].extension}"


def published_key(upload_key: str, kind: UploadKind) -> str:
    """Where the upload `upload_key` (one UPLOAD_KEY matches, as claim_upload checked) is
    published: its file name, <token>.<ext>, under the kind's folder."""
    return f"media/{_KIND_SLUGS[kind]}/{upload_key.rsplit('/', 1)[1]}"


def content_type_of_key(key: str) -> str:
    """The content type a (valid) upload or published key stands for."""
    return _BY_EXTENSION[key.rsplit(".", 1)[1]]
