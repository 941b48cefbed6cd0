"""The embedded store's signed POST policy: S3's shape, signed with an HMAC of our own.

A policy is base64 JSON, `{"expiration": ..., "conditions": [{"key": ...},
{"Content-Type": ...}, ["content-length-range", n, n]]}`, and the form carries it with
its signature. The signing key lives in the data folder, created on first use.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from popmap_gql.config import ConfigError
from popmap_gql.files import write_whole

__all__ = [
    "ALGORITHM",
    "Policy",
    "PolicyRefused",
    "load_or_create_secret",
    "sign_policy",
    "verify_policy",
]

ALGORITHM = "POPMAP-HMAC-SHA256"
_SECRET_BYTES = 32


class PolicyRefused(Exception):
    """The form's policy is not one we signed, or no longer holds; the message says why."""


@dataclass(frozen=True, slots=True)
class Policy:
    key: str
    content_type: str
    min_bytes: int
    max_bytes: int
    expires_at: datetime


def load_or_create_secret(path: Path) -> bytes:
    """A secret key of 32 random bytes kept in `path` (the media signing key, the key of
    hashed viewer ids in logs); several workers starting at once end up with the same one."""
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):  # another worker wrote its key first
        write_whole(path, secrets.token_bytes(_SECRET_BYTES), replace=False, mode=0o600)
    return _read_secret(path)


def _read_secret(path: Path) -> bytes:
    secret = path.read_bytes()
    if len(secret) != _SECRET_BYTES:
        raise ConfigError(f"{path} is not a key made by popmap-gql; remove it to make a new one")
    return secret


def _signature(secret: bytes, encoded_policy: str) -> str:
    # utf-8: a form may carry any text here, and only our own (ASCII) policies verify
    return hmac.new(secret, encoded_policy.encode("utf-8", "replace"), hashlib.sha256).hexdigest()


def sign_policy(secret: bytes, policy: Policy) -> tuple[str, str]:
    """(encoded policy, signature) for the form's `policy` and `x-popmap-signature`."""
    document = {
        "expiration": policy.expires_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "conditions": [
            {"key": policy.key},
            {"Content-Type": policy.content_type},
            ["content-length-range", policy.min_bytes, policy.max_bytes],
        ],
    }
    encoded = base64.b64encode(json.dumps(document).encode()).decode("ascii")
    return encoded, _signature(secret, encoded)


def verify_policy(secret: bytes, encoded: str, signature: str, now: datetime) -> Policy:
    """The policy the form carries, if we signed it and it has not expired."""
    expected = _signature(secret, encoded).encode()
    if not hmac.compare_digest(expected, signature.lower().encode("utf-8", "replace")):
        raise PolicyRefused("the policy's signature does not match")
    try:
        document = json.loads(base64.b64decode(encoded, validate=True))
        policy = _parse(document)
    except (binascii.Error, ValueError, KeyError, TypeError, IndexError):
        # only reachable with our own key: a policy we signed is always well formed
        raise PolicyRefused("the policy is malformed") from None
    if policy.expires_at <= now:
        raise PolicyRefused("the policy has expired; ask for a new upload")
    return policy


def _parse(document: Any) -> Policy:
    key, content_type, length = document["conditions"]
    label, low, high = length
    if label != "content-length-range" or not all(isinstance(v, int) for v in (low, high)):
        raise ValueError("bad content-length-range")
    expires = datetime.strptime(document["expiration"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return Policy(
        key=str(key["key"]),
        content_type=str(content_type["Content-Type"]),
        min_bytes=low,
        max_bytes=high,
        expires_at=expires,
    )
