"""Field rules for what people submit; each failure is BAD_USER_INPUT naming the field."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from popmap_gql.errors import BadUserInput

__all__ = [
    "check_coordinates",
    "check_email",
    "check_instant",
    "check_period",
    "check_phone",
    "check_storable",
    "check_text",
    "check_url",
]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+[0-9]{9,15}$")


def check_storable(value: str, field: str, *, max_length: int) -> str:
    """Text PostgreSQL can take as a parameter, as it is: asyncpg refuses NUL in text and
    cannot encode a lone surrogate (which JSON escapes such as \\ud800 can carry)."""
    if len(value) > max_length:
        raise BadUserInput(f"{field} is limited to {max_length} characters", field=field)
    if "\x00" in value:
        raise BadUserInput(f"{field} must not contain NUL characters", field=field)
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise BadUserInput(f"{field} is not valid Unicode text", field=field) from None
    return value


def check_text(value: str, field: str, *, max_length: int, required: bool = False) -> str:
    """Trimmed storable text; blank is refused when required."""
    value = check_storable(value.strip(), field, max_length=max_length)
    if required and not value:
        raise BadUserInput(f"{field} must not be blank", field=field)
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


# asyncpg writes these two UTC times as PostgreSQL's -infinity and infinity, and reads
# those back without a time zone, which then fails every comparison with an aware time.
_DRIVER_INFINITIES = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))


def check_instant(value: datetime, field: str) -> datetime:
    """The same instant in UTC; it needs an offset, and its UTC time must be a datetime
    (9999-12-31T23:59:59-14:00 is not), or every comparison and the driver would fail."""
    if value.utcoffset() is None:
        raise BadUserInput(f"{field} needs a time zone offset (e.g. Z)", field=field)
    try:
        utc = value.astimezone(UTC)
    except OverflowError:
        raise BadUserInput(f"{field} is out of range", field=field) from None
    if utc in _DRIVER_INFINITIES:
        raise BadUserInput(f"{field} is out of range", field=field)
    return utc


# The longest an event may last. Lists of events not ended read from "now minus the
# longest event held" (db/rules.py `Ended`): without a bound, one pending event of
# centuries, seen by nobody else, made every such list read every past event.
MAX_EVENT_DAYS = 366


def check_period(starts_at: datetime, ends_at: datetime, prefix: str) -> tuple[datetime, datetime]:
    """(start, end) in UTC; the end must come after the start, by at most MAX_EVENT_DAYS."""
    starts_at = check_instant(starts_at, f"{prefix}startsAt")
    ends_at = check_instant(ends_at, f"{prefix}endsAt")
    if ends_at <= starts_at:
        raise BadUserInput("endsAt must be after startsAt", field=f"{prefix}endsAt")
    if ends_at - starts_at > timedelta(days=MAX_EVENT_DAYS):
        raise BadUserInput(f"an event lasts at most {MAX_EVENT_DAYS} days", field=f"{prefix}endsAt")
    return starts_at, ends_at
