"""The Query root's arguments checked where they enter, one function per kind of argument.

The resolvers (`api/query.py`) and the compiled read path (`api/compiled.py`, through the
same `business_list_query` / `event_list_query` and `lookup`) call these functions, so
both refuse the same values with the same error: BAD_USER_INPUT naming the argument
(`first`, `after`, `filter.search`, `bbox.north`, ...), or FORBIDDEN for a filter the
viewer may not use. Each limit is stated here once; the input types' descriptions quote
the constants. What a value must be to be stored (no NUL, an instant PostgreSQL can
hold) is `db/validation.py`'s; what an ID or a cursor must look like is `read/ids.py`'s.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from popmap_gql.api.context import Context
from popmap_gql.api.permissions import require_power_in
from popmap_gql.api.sizes import Paged
from popmap_gql.db import lists
from popmap_gql.db.models import EventStatus
from popmap_gql.db.powers import STATUS_FILTER
from popmap_gql.db.validation import check_instant, check_storable
from popmap_gql.errors import BadUserInput, Forbidden
from popmap_gql.read.ids import decode_cursor, decode_id, lookup_pk

__all__ = [
    "MAX_IDS",
    "MAX_NEAR_RADIUS_KM",
    "MAX_SEARCH_LENGTH",
    "MAX_SLUGS",
    "MIN_SEARCH_WORD",
    "after",
    "bounding_box",
    "business_order",
    "category_slugs",
    "event_ids",
    "event_order",
    "instant",
    "lookup",
    "near",
    "optional_id",
    "page_size",
    "search_term",
    "status_filter",
]

MAX_SLUGS = 50
MAX_IDS = 100
MAX_SEARCH_LENGTH = 200
# The trigram index (migration 0013) finds a term by its runs of three letters or digits:
# a term without one would read the whole index.
MIN_SEARCH_WORD = 3
# "Near me" reaches this far at most: a circle's rows are found through the point index.
MAX_NEAR_RADIUS_KM = 100.0
_SEARCH_WORD = re.compile(rf"[^\W_]{{{MIN_SEARCH_WORD},}}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode's Cc


class Box(Protocol):
    """A bounding box as the client gave it (the `BoundingBox` input)."""

    north: float
    south: float
    east: float
    west: float


class Circle(Protocol):
    """A circle as the client gave it (the `NearInput` input)."""

    latitude: float
    longitude: float
    radius_km: float


def page_size(size: Paged, first: int | None) -> int:
    """The page a connection loads: `first`, or the size's default; out of range is the
    client's error."""
    if first is None:
        return size.default
    if not 1 <= first <= size.cap:
        raise BadUserInput(f"first must be between 1 and {size.cap}", field="first")
    return first


def after(
    order: lists.BusinessOrder | lists.EventOrder,
    cursor: str | None,
    near: lists.Near | None = None,
    *,
    search: str | None = None,
) -> lists.Position | None:
    """Where a page starts: the position in a cursor made for this list's `order` (and,
    ordered by distance, for this centre; by relevance, for this term)."""
    if cursor is None:
        return None
    column = order.value[0]
    computed = column in ("distance", "relevance")
    kind = datetime if column.endswith("_at") else float if computed else str
    return decode_cursor(lists.cursor_order(order, near, search), cursor, kind)


def lookup(type_name: str, value: str) -> int | None:
    """The row a lookup by id names, or None (NOT_FOUND): an ID in any other form than
    the one the API writes names nothing."""
    return lookup_pk(type_name, value)


def optional_id(type_name: str, value: str | None, field: str) -> int | None:
    """An ID filter: None when omitted, else the row it names (a malformed one is the
    client's error, naming `field`)."""
    return None if value is None else decode_id(type_name, value, field=field)


def search_term(text: str | None) -> str | None:
    """`filter.search`, trimmed (blank is no search); it must hold a word the trigram
    index can find."""
    if not text:
        return None
    term = check_storable(text, "filter.search", max_length=MAX_SEARCH_LENGTH).strip()
    if not term:
        return None
    if _CONTROL.search(term):  # typed search holds none; the searched text's lines part at one
        raise BadUserInput(
            "filter.search must not contain control characters", field="filter.search"
        )
    if _SEARCH_WORD.search(term) is None:
        raise BadUserInput(
            f"filter.search needs a word of at least {MIN_SEARCH_WORD} letters or digits",
            field="filter.search",
        )
    return term


def category_slugs(slugs: Sequence[str] | None, field: str) -> tuple[str, ...] | None:
    if slugs is None:
        return None
    if len(slugs) > MAX_SLUGS:
        raise BadUserInput(f"at most {MAX_SLUGS} category slugs", field=field)
    return tuple(check_storable(slug, field, max_length=100) for slug in slugs)


def event_ids(ids: Sequence[str] | None) -> tuple[int, ...] | None:
    if ids is None:
        return None
    if len(ids) > MAX_IDS:
        raise BadUserInput(f"at most {MAX_IDS} ids", field="filter.ids")
    return tuple(decode_id("Event", i, field="filter.ids") for i in ids)


def instant(value: datetime | None, field: str) -> datetime | None:
    return None if value is None else check_instant(value, field)


def bounding_box(box: Box | None) -> lists.BoundingBox | None:
    """`bbox`: each side a finite latitude or longitude, south not north of north (west
    east of east crosses the antimeridian)."""
    if box is None:
        return None
    for name, value, limit in (
        ("north", box.north, 90),
        ("south", box.south, 90),
        ("east", box.east, 180),
        ("west", box.west, 180),
    ):
        if not (math.isfinite(value) and -limit <= value <= limit):
            raise BadUserInput(
                f"bbox.{name} must be between -{limit} and {limit}", field=f"bbox.{name}"
            )
    if box.south > box.north:
        raise BadUserInput("bbox.south must not be north of bbox.north", field="bbox.south")
    return lists.BoundingBox(north=box.north, south=box.south, east=box.east, west=box.west)


def near(circle: Circle | None) -> lists.Near | None:
    """`filter.near`: a finite centre and a radius more than 0 and at most
    MAX_NEAR_RADIUS_KM."""
    if circle is None:
        return None
    for name, value, limit in (
        ("latitude", circle.latitude, 90),
        ("longitude", circle.longitude, 180),
    ):
        if not (math.isfinite(value) and -limit <= value <= limit):
            raise BadUserInput(
                f"filter.near.{name} must be between -{limit} and {limit}",
                field=f"filter.near.{name}",
            )
    if not (math.isfinite(circle.radius_km) and 0 < circle.radius_km <= MAX_NEAR_RADIUS_KM):
        raise BadUserInput(
            f"filter.near.radiusKm must be more than 0 and at most {MAX_NEAR_RADIUS_KM:g}",
            field="filter.near.radiusKm",
        )
    return lists.Near(circle.latitude, circle.longitude, circle.radius_km)


def business_order(order: lists.BusinessOrder, search: str | None) -> None:
    """`orderBy`: RELEVANCE only with a term to be relevant to."""
    if order is lists.BusinessOrder.RELEVANCE and search is None:
        raise BadUserInput("orderBy: RELEVANCE needs filter.search", field="orderBy")


def event_order(order: lists.EventOrder, near: lists.Near | None) -> None:
    """`orderBy`: DISTANCE only with a centre to measure from."""
    if order is lists.EventOrder.DISTANCE and near is None:
        raise BadUserInput("orderBy: DISTANCE needs filter.near", field="orderBy")


def status_filter(context: Context, status: EventStatus | None) -> EventStatus | None:
    """`filter.status`: staff, or a service with the power STATUS_FILTER names."""
    if status is None:
        return None
    if context.viewer.is_service:
        require_power_in(context, STATUS_FILTER)
    elif not context.viewer.is_staff:
        raise Forbidden("only staff may filter events by status")
    return status
