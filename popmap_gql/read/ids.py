"""Opaque global IDs ("Business:42") and pagination cursors, both base64url text.

Each has exactly one accepted form, the one the encoder writes: the decoders are lenient
by nature (base64 skips characters outside its alphabet and ignores padding; int() reads
spaces, underscores and any Unicode digit; JSON allows any spacing), so they decode,
re-encode and compare. Otherwise "Business: 1", "Business:01" or "Business:" with an
Arabic-Indic digit one would all name row 1.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from datetime import datetime
from typing import Any

from popmap_gql.db.validation import check_instant, check_storable
from popmap_gql.errors import BadUserInput

__all__ = ["decode_cursor", "decode_id", "encode_cursor", "encode_id", "lookup_pk"]

_MAX_ID = 2**63 - 1  # bigint
_MAX_ID_LENGTH = 64
_MAX_CURSOR_LENGTH = 1024
# What decoding can raise on hostile text (a cursor is too short to nest JSON deep
# enough for a RecursionError).
_UNDECODABLE = (ValueError, TypeError, UnicodeError, binascii.Error)


def _b64encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _b64decode(token: str) -> str:
    padded = token + "=" * (-len(token) % 4)
    return base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")


def encode_id(type_name: str, pk: int) -> str:
    return _b64encode(f"{type_name}:{pk}")


def decode_id(type_name: str, value: str, *, field: str = "id") -> int:
    """The primary key inside a global ID of `type_name`, or BAD_USER_INPUT."""
    invalid = BadUserInput(f"{field} is not a valid {type_name} ID", field=field)
    if len(value) > _MAX_ID_LENGTH:
        raise invalid
    try:
        prefix, _, digits = _b64decode(value).partition(":")
        pk = int(digits)
    except _UNDECODABLE:
        raise invalid from None
    if prefix != type_name or not 0 < pk <= _MAX_ID or encode_id(type_name, pk) != value:
        raise invalid
    return pk


def lookup_pk(type_name: str, value: str) -> int | None:
    """The primary key a lookup by `value` names, or None when it names nothing: an ID
    in any other form than the one the API writes is simply no ID of that type."""
    try:
        return decode_id(type_name, value)
    except BadUserInput:
        return None


def encode_cursor(order: str, value: Any, pk: int) -> str:
    if isinstance(value, datetime):
        value = value.isoformat()
    return _b64encode(json.dumps([order, value, pk], separators=(",", ":")))


def decode_cursor(order: str, cursor: str, kind: type) -> tuple[Any, int]:
    """(sort value, id) of a cursor made for `order`; anything else is BAD_USER_INPUT.

    The sort value goes to PostgreSQL as a parameter, so it passes the same checks as
    any text or instant a client sends.
    """
    invalid = BadUserInput("after is not a valid cursor for this list", field="after")
    if len(cursor) > _MAX_CURSOR_LENGTH:
        raise invalid
    value: Any
    try:
        made_for, raw, pk = json.loads(_b64decode(cursor))
        if kind is datetime:
            value = check_instant(datetime.fromisoformat(raw), "after")
        elif kind is str and type(raw) is str:
            value = check_storable(raw, "after", max_length=_MAX_CURSOR_LENGTH)
        elif kind is float and type(raw) is float and math.isfinite(raw) and raw >= 0:
            value = raw  # a distance (JSON also reads NaN and Infinity: refused)
        else:
            raise invalid
    except (*_UNDECODABLE, BadUserInput):
        raise invalid from None
    if made_for != order or type(pk) is not int or not 0 < pk <= _MAX_ID:
        raise invalid
    if encode_cursor(order, raw, pk) != cursor:
        raise invalid
    return value, pk
