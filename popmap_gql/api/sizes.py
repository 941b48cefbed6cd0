"""How many items each list field returns at most, declared once on the field.

The declaration is field metadata (`metadata=sized(...)`). The query cost limit reads it
from the schema (`cost.CostModel`), the loaders read it to stop loading there
(`cap_of`), and building the schema fails if a list of objects declares nothing. A field
that describes its size takes both from `listed(description, size)`: the description's
`{n}` is the declared cap, so the number is written once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from strawberry.types import get_object_definition

__all__ = [
    "COUNTS",
    "PAGE_ITEMS",
    "RANKING_ORDERS",
    "ROWS_READ_PER_COUNTED",
    "Capped",
    "Counts",
    "Listed",
    "PageItems",
    "Paged",
    "Size",
    "cap_of",
    "declared",
    "listed",
    "sized",
]

_KEY = "popmap.size"


@dataclass(frozen=True, slots=True)
class Capped:
    """A plain list of at most `cap` items: the loader returns no more (the field's
    description says which ones are kept)."""

    cap: int


@dataclass(frozen=True, slots=True)
class Paged:
    """A field returning a connection: a page of `first` items (`default` when omitted,
    at most `cap`: `arguments.page_size` checks it); the page's `edges` hold that many."""

    default: int
    cap: int


@dataclass(frozen=True, slots=True)
class PageItems:
    """A connection's `edges`: as many as the field that returned the connection asked for."""


PAGE_ITEMS = PageItems()


@dataclass(frozen=True, slots=True)
class Counts:
    """A connection's count of the rows its filter admits (`totalCount`,
    `totalCountIsExact`): an answer of one number for which PostgreSQL reads up to the
    count limit + 1 rows (`POPMAP_MAX_EXACT_COUNT`), so it costs that many points (the
    cost model's `count_cost`), once per connection however many of them are selected,
    since they share one count."""


COUNTS = Counts()

# What a count reads per row it counts, at most, in the database cost (cost.py): a count
# stops at the count limit + 1 matches, but finding them passes over rows that do not
# match (a search's, a category's) or looks each one up (an event's categories). At 100x
# the costliest counts took about ten times what loading as many objects takes
# (bench/dbtime.py: 18 ms for the 1,001 events of a category, 10 ms for a search's, and
# 1.7 microseconds an object loaded).
ROWS_READ_PER_COUNTED = 10

# Orders (a connection's `orderBy`) that read up to the count limit's matches to order
# them: a connection ordered so costs a count more (cost.py), selected or not.
RANKING_ORDERS = frozenset({"RELEVANCE"})

Size = Capped | Paged | PageItems | Counts


def sized(size: Size) -> dict[str, Size]:
    """Field metadata declaring the field's size."""
    return {_KEY: size}


class Listed(TypedDict):
    """A list field's `description` and `metadata`, for `strawberry.field(**...)`."""

    description: str
    metadata: dict[str, Any]


def listed(description: str, size: Capped | Paged, marks: Mapping[str, Any] = {}) -> Listed:
    """A list field's description, with `{n}` replaced by the size's cap (and `{default}`
    by a page's default), and its metadata: the size and any other `marks` (such as
    `private()`). A capped list must say its cap: a description without `{n}` is refused."""
    if isinstance(size, Capped) and "{n}" not in description:
        msg = f"the description of a list of at most {size.cap} must say so with {{n}}"
        raise TypeError(msg)
    default = size.default if isinstance(size, Paged) else size.cap
    return Listed(
        description=description.format(n=size.cap, default=default),
        metadata={**marks, **sized(size)},
    )


def declared(metadata: Any) -> Size | None:
    """The size declared in a Strawberry field's metadata, if any."""
    if not metadata:
        return None
    size = metadata.get(_KEY)
    return size if isinstance(size, Capped | Paged | PageItems | Counts) else None


def cap_of(cls: type, field_name: str) -> int:
    """The declared cap of the plain list `cls.field_name` (Python name), for its loader."""
    definition = get_object_definition(cls, strict=True)
    for field in definition.fields:
        if field.python_name == field_name:
            size = declared(field.metadata)
            if isinstance(size, Capped):
                return size.cap
    msg = f"{definition.name}.{field_name} declares no Capped size"
    raise TypeError(msg)
