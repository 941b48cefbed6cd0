"""Opaque global IDs ("Business:42") and pagination cursors, both base64url text."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from popmap_gql.errors import BadUserInput

__all__ = ["decode_cursor", "decode_id", "encode_cursor", "encode_id"]

_MAX_ID = 2**63 - 1  # bigint


def _b64encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _b64decode(token: str) -> str:
    padded = token + "=" * (-len(token) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")


def encode_id(type_name: str, pk: int) -> str:
    return _b64encode(f"{type_name}:{pk}")


def decode_id(type_name: str, value: str, *, field: str = "id") -> int:
    """The primary key inside a global ID of `type_name`, or BAD_USER_INPUT."""
    try:
        if len(value) > 64:
            raise ValueError("too long")
        prefix, _, raw_pk = _b64decode(value).partition(":")
        pk = int(raw_pk)
    except (ValueError, UnicodeError, binascii.Error):
        raise BadUserInput(f"{field} is not a valid {type_name} ID", field=field) from None
    if prefix != type_name or not 0 < pk <= _MAX_ID:
        raise BadUserInput(f"{field} is not a valid {type_name} ID", field=field)
    return pk


def encode_cursor(order: str, value: Any, pk: int) -> str:
    if isinstance(value, datetime):
        value = value.isoformat()
    return _b64encode(json.dumps([order, value, pk], separators=(",", ":")))


def decode_cursor(order: str, cursor: str, kind: type) -> tuple[Any, int]:
    """(sort value, id) of a cursor made for `order`; anything else is BAD_USER_INPUT."""
    try:
        if len(cursor) > 1024:
            raise ValueError("too long")
        made_for, value, pk = json.loads(_b64decode(cursor))
        if made_for != order or not isinstance(pk, int) or not 0 < pk <= _MAX_ID:
            raise ValueError("cursor of another list")
        if kind is datetime:
            value = datetime.fromisoformat(value)
            if value.tzinfo is None:
                raise ValueError("naive timestamp")
        elif not isinstance(value, kind):
            raise ValueError("wrong value type")
    except (ValueError, TypeError, UnicodeError, binascii.Error):
        raise BadUserInput("after is not a valid cursor for this list", field="after") from None
    return value, pk
