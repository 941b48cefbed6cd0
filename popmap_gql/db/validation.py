"""Field rules for what people submit; each failure is BAD_USER_INPUT naming the field."""

from __future__ import annotations

import math
import re
from datetime import datetime
from urllib.parse import urlsplit

from popmap_gql.errors import BadUserInput

__all__ = [
    "check_coordinates",
    "check_email",
    "check_period",
    "check_phone",
    "check_text",
    "check_url",
]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+[0-9]{9,15}$")


def check_text(value: str, field: str, *, max_length: int, required: bool = False) -> str:
    """Trimmed text; blank is refused when required, NUL always (PostgreSQL cannot store it)."""
    value = value.strip()
    if "\x00" in value:
        raise BadUserInput(f"{field} must not contain NUL characters", field=field)
    if required and not value:
        raise BadUserInput(f"{field} must not be blank", field=field)
    if len(value) > max_length:
        raise BadUserInput(f"{field} is limited to {max_length} characters", field=field)
    return value


def check_email(value: str, field: str) -> str:
    value = check_text(value, field, max_length=254)
    if value and not _EMAIL.match(value):
        raise BadUserInput(f"{field} is not an email address", field=field)
    return value


def check_phone(value: str, field: str) -> str:
    value = check_text(value, field, max_length=16).replace(" ", "")
    if value and not _PHONE.match(value):
        raise BadUserInput(f"{field} must be + and 9 to 15 digits, e.g. +15125550100", field=field)
    return value


def check_url(value: str, field: str) -> str:
    """http(s) URLs with a host only: no javascript:, data:, or scheme-relative tricks."""
    value = check_text(value, field, max_length=500)
    if not value:
        return value
    try:
        parts = urlsplit(value)
    except ValueError:
        raise BadUserInput(f"{field} is not a valid URL", field=field) from None
    if parts.scheme.lower() not in {"http", "https"} or not parts.hostname:
        raise BadUserInput(f"{field} must be an http or https URL", field=field)
    if any(ch.isspace() or ord(ch) < 32 for ch in value):
        raise BadUserInput(f"{field} must not contain spaces or control characters", field=field)
    return value


def check_coordinates(latitude: float, longitude: float, prefix: str) -> None:
    if not (math.isfinite(latitude) and -90 <= latitude <= 90):
        raise BadUserInput("latitude must be between -90 and 90", field=f"{prefix}latitude")
    if not (math.isfinite(longitude) and -180 <= longitude <= 180):
        raise BadUserInput("longitude must be between -180 and 180", field=f"{prefix}longitude")


def check_period(starts_at: datetime, ends_at: datetime, prefix: str) -> None:
    for name, value in (("startsAt", starts_at), ("endsAt", ends_at)):
        if value.tzinfo is None:
            raise BadUserInput(f"{name} needs a time zone offset", field=f"{prefix}{name}")
    if ends_at <= starts_at:
        raise BadUserInput("endsAt must be after startsAt", field=f"{prefix}endsAt")
