"""Read queries: filters and keyset pagination, as plain async functions; who sees which
rows is the tables' `Visibility` (`db/rules.py`)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from enum import Enum
from typing import Any, Generic, TypeVar

from popmap_gql.db.client import fetch
from popmap_gql.db.models import EventStatus
from popmap_gql.db.powers import ANONYMOUS, Audience
from popmap_gql.db.rules import BUSINESS_VISIBILITY, ENDED, EVENT_VISIBILITY, Visibility

__all__ = [
    "CATEGORY_ORDER",
    "FEW_ROWS",
    "WALKED_INDEXES",
    "WALK_LIMIT",
    "BoundingBox",
    "BusinessFilter",
    "BusinessOrder",
    "Count",
    "EventFilter",
    "EventOrder",
    "ListQuery",
    "Near",
    "Nearest",
    "Page",
    "PrivateView",
    "Ranked",
    "Row",
    "business_list",
    "category_members",
    "count_of",
    "cursor_order",
    "data_version",
    "event_list",
    "list_categories",
    "page_of",
    "private_view",
    "visible_by_ids",
]

T = TypeVar("T")


Row = Mapping[str, Any]


# --- ordering and keyset pagination ---------------------------------------------------


class BusinessOrder(Enum):
    NAME_ASC = ("name", False)
    NAME_DESC = ("name", True)
    NEWEST_FIRST = ("created_at", True)
    # Most similar to the search term first (filter.search): the column is the computed
    # similarity (`Ranked`), which the page's statement selects beside the row.
    RELEVANCE = ("relevance", True)


class EventOrder(Enum):
    STARTS_AT_ASC = ("starts_at", False)
    STARTS_AT_DESC = ("starts_at", True)
    NEWEST_FIRST = ("created_at", True)
    # Nearest first from the filter's `near` centre: the column is the computed distance
    # (`Nearest`), which the page's statement selects beside the row.
    DISTANCE = ("distance", False)


# (sort value, id) of the last row of the previous page
Position = tuple[Any, int]

# The most index entries a search walks in the list's order before it gathers every
# match instead (`ListQuery._searched`): this many, or `WALK_PER_ROW` per row it looks
# for if more. At 100x, 10,000 entries take about 3 ms (bench/dbtime.py); a search whose
# matches are rarer there than that is served by gathering them.
WALK_LIMIT = 10_000
WALK_PER_ROW = 40


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    has_next_page: bool


@dataclass(frozen=True, slots=True)
class ListQuery:
    """A page of a list as SQL: `select(columns)` is the statement for a page of rows of
    table alias `alias` (`first` + 1 rows, to tell whether there is a next page), in the
    list's order; `count_of` counts the rows the filter admits, up to `count_cap`. Built
    once per request from the filter, the order and the position, with its parameters."""

    table: str
    alias: str
    conditions: tuple[str, ...]
    order: BusinessOrder | EventOrder
    first: int
    after: Position | None
    params: tuple[Any, ...]
    count_cap: int  # `count_of` counts at most this many rows (POPMAP_MAX_EXACT_COUNT)
    nearest: Nearest | None = None  # ordered by distance (EventOrder.DISTANCE) from here
    counted_through: Through | None = None  # what the count reads instead of `table`
    ranked: Ranked | None = None  # ordered by similarity to the term (RELEVANCE)
    # conditions[0] (who sees which rows) as disjoint branches, or () (Visibility)
    visible_branches: tuple[str, ...] = ()
    # a filter that may admit few rows, or rows far apart in the order: the columns the
    # page's walk of the order's index reads (the index's own, so that it reads the index
    # alone; "*" for whole rows), or () (`_searched`)
    walked: tuple[str, ...] = ()
    # which of the conditions (all of them, or those a walk passes many entries to find)
    # the walk tests after its bound; the others bound what it walks
    sparse: tuple[str, ...] = ()

    @property
    def cursor_order(self) -> str:
        """What the list's cursors are made for (`cursor_order`)."""
        near = None if self.nearest is None else self.nearest.near
        return cursor_order(self.order, near, None if self.ranked is None else self.ranked.term)

    @property
    def where(self) -> str:
        """The WHERE clause; the conditions' parameters are `params`, the first of a
        statement's."""
        return " AND ".join(self.conditions) or "TRUE"

    def keyset(self, params: list[Any], computed: str | None = None) -> str:
        """The condition "after the position" (ordered by (field, id)), or TRUE; the field
        is `computed` (SQL of the table's alias) when the page computes its sort value."""
        if self.after is None:
            return "TRUE"
        column, descending = self.order.value
        value, last_id = self.after
        params.append(value)
        at_value = f"${len(params)}"
        params.append(last_id)
        at_id = f"${len(params)}"
        op = "<" if descending else ">"
        a = self.alias
        sort = computed or f"{a}.{column}"
        return f"({sort} {op} {at_value} OR ({sort} = {at_value} AND {a}.id {op} {at_id}))"

    def order_by(self, alias: str | None = None, computed: str | None = None) -> str:
        """ORDER BY the list's order; the sort value is `computed` when given (a distance
        or a similarity computed on the table), else the column of that name of `alias`
        (a table's, or the page's rows, which carry a computed value as a column)."""
        column, descending = self.order.value
        a = alias or self.alias
        direction = " DESC" if descending else ""
        sort = computed or f"{a}.{column}"
        return f"{sort}{direction}, {a}.id{direction}"

    def page_sql(self, params: list[Any]) -> str:
        """The page's rows (all columns), `first` + 1 of them, in order."""
        if self.ranked is not None:
            return self.ranked.page_sql(self, params)
        where = self.where
        distance = None if self.nearest is None else self.nearest.distance
        keyset = self.keyset(params, distance)
        params.append(self.first + 1)
        if self.nearest is not None:
            return self.nearest.page_sql(self, f"{where} AND {keyset}", f"${len(params)}")
        # The page's ids first, then its rows: the ids can come from an index alone
        # (migration 0012 covers what a list of businesses reads to find them), so rows
        # passed over by the filter are read from the index, not the table. As an array
        # computed once, so that the planner reads the rows by id whatever it estimates
        # the ids' statement to cost (it may otherwise scan the table to join them).
        a, table, limit = self.alias, self.table, f"${len(params)}"
        return (
            f"SELECT {a}_row.* FROM {table} {a}_row WHERE {a}_row.id = ANY(ARRAY(SELECT {a}.id"
            f" FROM ({self.first_ids(keyset, limit, self.first + 1)}) {a}))"
            f" ORDER BY {self.order_by(f'{a}_row')}"
        )

    def first_ids(self, keyset: str, limit: str, rows: int) -> str:
        """SQL of (id, sort column) of the first `limit` (= `rows`) rows the filter admits
        after `keyset`, in the list's order. With `visible_branches`, each branch is read
        in the index's order and the branches merged: the same rows as the OR. A search
        is read by `_searched` (its matches can lie anywhere in the order)."""
        a, column = self.alias, self.order.value[0]
        branches = self.visible_branches or self.conditions[:1]
        rest = " AND ".join((*self.conditions[1:], keyset))
        if self.walked:
            merged = self._searched(branches, rest, keyset, limit, rows)
        else:
            merged = " UNION ALL ".join(
                f"(SELECT {a}.id, {a}.{column} FROM {self.table} {a} WHERE {branch}"
                f" AND {rest} ORDER BY {self.order_by()} LIMIT {limit})"
                for branch in branches
            )
        return (
            f"SELECT {a}.id, {a}.{column} FROM ({merged}) {a}"
            f" ORDER BY {self.order_by()} LIMIT {limit}"
        )

    def _searched(
        self, branches: tuple[str, ...], rest: str, keyset: str, limit: str, rows: int
    ) -> str:
        """The first `limit` (= `rows`) rows of a search, with a cost that follows what it
        finds rather than where in the order the matches lie. The planner, which assumes
        matches spread evenly, would walk the order's index until it had them; when they
        all come late (the 20,000 names starting "Zilker" at 100x) that reads most of the
        index. So, in turn, each only if the one before did not answer:

        1. any `few` matches (at most a page and one), found by the trigram index: fewer
           means these are all;
        2. each branch's entries of the index in the list's order, at most `walk_limit`
           of them (index-only: `walked` are the index's columns), keeping the matches:
           a branch has answered when it has `limit` of them or has no more entries;
        3. every match, from the trigram index, sorted (the matches are many, and far
           from the position).

        The statement reads (1) and only then (2) and (3), as PostgreSQL computes an
        InitPlan when a condition first needs it."""
        a, table, order = self.alias, self.table, self.order_by()
        few, walk_limit = min(rows, self.first + 1), max(WALK_LIMIT, WALK_PER_ROW * rows)
        row = f"{a}.id, {a}.{self.order.value[0]}"
        columns = ", ".join(f"{a}.{c}" for c in self.walked)
        dense = [c for c in self.conditions[1:] if c not in self.sparse]
        sparse = " AND ".join(self.sparse) or "TRUE"
        visible = branches[0] if len(branches) == 1 else f"({' OR '.join(branches)})"
        found = f"SELECT {row} FROM {table} {a} WHERE {visible} AND {rest} LIMIT {few}"
        if (through := self.counted_through) is not None:
            # from the narrower table's rows, as a count reads them (`Through`)
            narrow = f"{visible} AND {rest.replace(through.replaces, through.condition)}"
            if through.source is not None:
                found = f"SELECT {row} FROM {through.source} WHERE {narrow} LIMIT {few}"
            if through.few is not None:  # every one, each once
                found = (
                    f"(SELECT DISTINCT {row} FROM {through.rows} WHERE {narrow}"
                    f" AND {through.few}) UNION ALL (SELECT * FROM ({found}) t"
                    f" WHERE NOT {through.few})"
                )
        ctes = [f"found AS MATERIALIZED ({found})"]
        answered = []
        column, descending = self.order.value
        for n, branch in enumerate(branches):
            # the entries walked: what the other conditions admit in the index's order
            entries = " AND ".join((branch, *dense, keyset))
            entries = f"{table} {a} WHERE {entries}"
            ctes.append(
                f"walked{n} AS MATERIALIZED (SELECT {row} FROM (SELECT {columns} FROM"
                f" {entries} ORDER BY {order} LIMIT {walk_limit}) {a} WHERE {sparse}"
                f" ORDER BY {order} LIMIT {limit})"
            )
            # the walk's last entry, none if the branch has fewer
            ctes.append(
                f"edge{n} AS MATERIALIZED (SELECT {a}.{column} AS sort, {a}.id FROM {entries}"
                f" ORDER BY {order} OFFSET {walk_limit - 1} LIMIT 1)"
            )
            ran_out = f"NOT EXISTS (SELECT 1 FROM edge{n})"
            walk = f"(SELECT count(*) FROM walked{n}) = {limit}"
            if few < rows:
                # Looking for more rows than it found (RELEVANCE's candidates), it walks
                # only if some of those `few` lie within the walk's reach: else its
                # matches lie beyond, and walking would only delay gathering them.
                op = ">=" if descending else "<="
                walk = (
                    f"EXISTS (SELECT 1 FROM found, edge{n} WHERE (found.{column}, found.id)"
                    f" {op} (edge{n}.sort, edge{n}.id)) AND {walk}"
                )
            answered.append(f"(({walk}) OR {ran_out})")  # the walk first: it may answer
        found = "(SELECT count(*) FROM found)"
        walked = " AND ".join(answered)
        complete = f"{found} < {few}"
        if through is not None and through.few is not None:
            complete = f"({through.few} OR {complete})"  # then found holds every match
        parts = [f"SELECT * FROM found WHERE {complete}"]
        parts += [
            f"SELECT * FROM walked{n} WHERE NOT {complete} AND {walked}"
            for n in range(len(branches))
        ]
        # OFFSET 0 keeps the ORDER BY and LIMIT out of the subquery: its plan gathers the
        # matches from the trigram index instead of walking the order's
        parts.append(
            f"(SELECT {row} FROM (SELECT {row} FROM {table} {a} WHERE {visible} AND {rest}"
            f" OFFSET 0) {a} WHERE NOT {complete} AND NOT ({walked})"
            f" ORDER BY {order} LIMIT {limit})"
        )
        return f"WITH {', '.join(ctes)} {' UNION ALL '.join(parts)}"

    def count_sql(self, params: list[Any]) -> str:
        """The count of the rows the filter admits, stopping after `count_cap` + 1."""
        where = self.where
        source = f"{self.table} {self.alias}"
        through = self.counted_through
        narrow = where
        if through is not None:
            narrow = where.replace(through.replaces, through.condition)
            if through.source is not None:
                source, where = through.source, narrow
        params.append(self.count_cap + 1)
        counted = (
            f"SELECT count(*) AS n FROM (SELECT 1 FROM {source}"
            f" WHERE {where} LIMIT ${len(params)}) capped"
        )
        if through is None or through.few is None:
            return counted
        return (
            f"SELECT CASE WHEN {through.few} THEN (SELECT count(DISTINCT {self.alias}.id)"
            f" FROM {through.rows} WHERE {narrow}) ELSE ({counted}) END AS n"
        )

    def sort_value(self, row: Row) -> Any:
        return row[self.order.value[0]]


@dataclass(frozen=True, slots=True)
class Through:
    """A count that reads the rows of a narrower table first: `source` joins it to the
    list's table (one row of the list per row of the join; None: the list's table
    alone), and `condition` on it stands for the list's condition `replaces` (the same
    rows, the same parameters). A count stops after `count_cap` + 1 rows, so it reads
    them in an order that finds them soonest.

    With `few`, SQL true when the narrower table's rows are few (fewer than `FEW_ROWS`,
    a category of a handful of businesses), a count and a page's first look read those
    rows one by one instead (`rows`, each with its row of the list by id), each row of
    the list once: a join in the list's order would pass over every row before the
    last of them."""

    source: str | None
    replaces: str
    condition: str
    few: str | None = None
    rows: str | None = None


# Rows of a narrower table (a category's) few enough to read them all (`Through.few`).
FEW_ROWS = 1_000


def _few_rows(rows: str, condition: str) -> str:
    """SQL true when `rows` (a table and its alias) has fewer than FEW_ROWS rows that pass
    `condition`, reading at most that many."""
    limited = f"SELECT 1 FROM {rows} WHERE {condition} LIMIT {FEW_ROWS}"
    return f"(SELECT count(*) FROM ({limited}) f) < {FEW_ROWS}"


async def page_of(query: ListQuery) -> Page[Row]:
    params = list(query.params)
    rows: list[Row] = list(await fetch(query.page_sql(params), params))
    return Page(items=rows[: query.first], has_next_page=len(rows) > query.first)


@dataclass(frozen=True, slots=True)
class Count:
    """How many rows a list's filter admits: exactly `n` when `exact`, else at least `n`
    (the cap: PostgreSQL stopped counting there)."""

    n: int
    exact: bool


async def count_of(query: ListQuery) -> Count:
    """The rows the filter admits, reading at most `count_cap` + 1 of them."""
    params = list(query.params)
    rows = await fetch(query.count_sql(params), params)
    n: int = rows[0]["n"]
    return Count(n=min(n, query.count_cap), exact=n <= query.count_cap)


# --- categories -----------------------------------------------------------------------


# Code-point order, the same on any server collation, and the same order Python's sort
# gives the distinct categories of an event.
CATEGORY_ORDER = ('{a}.name COLLATE "C"', "{a}.id")


async def list_categories(limit: int) -> Sequence[Row]:
    order = ", ".join(term.format(a="c") for term in CATEGORY_ORDER)
    return await fetch(f"SELECT c.* FROM category c ORDER BY {order} LIMIT $1", [limit])


async def visible_by_ids(
    audience: Audience, table: str, visibility: Visibility | None, ids: Sequence[int]
) -> dict[int, Row]:
    """The rows of `table` (a constant of the read model) with these ids that the
    audience may see, by id."""
    params: list[Any] = [list(ids)]
    visible = "TRUE" if visibility is None else visibility.sql(audience, "t", params)
    rows = await fetch(f"SELECT * FROM {table} t WHERE t.id = ANY($1) AND {visible}", params)
    return {row["id"]: row for row in rows}


# --- businesses -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BusinessFilter:
    search: str | None = None
    category_slugs: tuple[str, ...] | None = None
    available_for_hire: bool | None = None


def _like(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, its own wildcards taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


# The index a search's page walks in each order (by the order's column) and its columns
# (migrations 0013 and 0017): what the walk reads, from the index alone (ListQuery.walked).
WALKED_INDEXES = {
    column: (index, ("is_verified", column, "id", "search_text", "available_for_hire", "owner_id"))
    for column, index in (("name", "business_listing_idx"), ("created_at", "business_newest_idx"))
}


def business_list(
    audience: Audience,
    flt: BusinessFilter,
    order: BusinessOrder,
    first: int,
    after: Position | None,
    *,
    count_cap: int,
) -> ListQuery:
    """RELEVANCE only with a search: its caller checks (api/arguments.py business_order)."""
    params: list[Any] = []
    visible, branches = BUSINESS_VISIBILITY.sql_branches(audience, "b", params)
    conditions = [visible]
    ranked = None
    if flt.search:
        # The name or description holds the term, case aside: `search_text` is both,
        # lower-cased, on two lines (migration 0013); a term holds no newline.
        params.append(_like(flt.search))
        conditions.append(f"b.search_text LIKE lower(${len(params)})")
        if order is BusinessOrder.RELEVANCE:
            ranked = Ranked(flt.search)
    through = None
    if flt.category_slugs is not None:
        in_categories, through = _in_categories(flt.category_slugs, params)
        conditions.append(in_categories)
    if flt.available_for_hire is not None:
        params.append(flt.available_for_hire)
        conditions.append(f"b.available_for_hire = ${len(params)}")
    return ListQuery(
        "business",
        "b",
        tuple(conditions),
        order,
        first,
        after,
        tuple(params),
        count_cap,
        counted_through=through,
        ranked=ranked,
        visible_branches=branches,
        # any filter can be rare, or common but far from the position, in the order
        walked=WALKED_INDEXES[order.value[0]][1]
        if len(conditions) > 1 and order.value[0] in WALKED_INDEXES
        else (),
        sparse=tuple(conditions[1:]),
    )


# Each row of a category, then its business by id: however many rows the category has
# (three or 48,000), the planner cannot merge them against every business instead.
_CATEGORY_ROWS = (
    "business_category bc CROSS JOIN LATERAL"
    " (SELECT * FROM business b WHERE b.id = bc.business_id OFFSET 0) b"
)


def category_members(audience: Audience, category_id: str, rows: int, params: list[Any]) -> str:
    """SQL of (id, name) of the first `rows` businesses by name that the audience sees of
    the category whose id is the SQL expression `category_id` (a category's
    `businesses`). Read as a search's page is (`ListQuery._searched`): a popular
    category's first names come from the name order's index, checking each business's
    membership, instead of sorting all its members (48,000 at 100x); a small one's from
    its own rows."""
    visible, branches = BUSINESS_VISIBILITY.sql_branches(audience, "b", params)
    member = (
        "EXISTS (SELECT 1 FROM business_category bc WHERE bc.business_id = b.id"
        f" AND bc.category_id = {category_id})"
    )
    query = ListQuery(
        "business",
        "b",
        (visible, member),
        BusinessOrder.NAME_ASC,
        rows,
        None,
        (),
        rows,
        counted_through=Through(_CATEGORY_ROWS, member, f"bc.category_id = {category_id}"),
        visible_branches=branches,
        walked=WALKED_INDEXES["name"][1],
        sparse=(member,),
    )
    return query.first_ids("TRUE", str(rows), rows)


def _of_categories(alias: str, slugs: tuple[str, ...], params: list[Any]) -> tuple[str, str]:
    """The condition "the row `alias` (with a `category_id`) is of one of these categories",
    and its test of an id. The ids are read once, before the statement's plan runs: of one
    category an equality, which an index on (category_id, business_id) answers in business
    order."""
    if len(slugs) == 1:
        params.append(slugs[0])
        ids = f"= (SELECT c.id FROM category c WHERE c.slug = ${len(params)})"
    else:
        params.append(list(slugs))
        ids = f"= ANY(ARRAY(SELECT c.id FROM category c WHERE c.slug = ANY(${len(params)})))"
    return f"{alias}.category_id {ids}", ids


@dataclass(frozen=True, slots=True)
class Ranked:
    """The page of a search ordered by relevance (BusinessOrder.RELEVANCE): the names most
    similar to the term first (pg_trgm's `similarity`, the share of trigrams the two
    have in common), ties by id; keyset (similarity, id).

    Ranking reads every match it ranks, so it ranks at most `count_cap` of them (as many
    as a count counts): the first in the name order a search lists by default, found as
    a page in that order finds them (`ListQuery.first_ids`), and ranked by the names read
    there; only the page's rows are read whole. So when `totalCountIsExact` is true every
    match is ranked; a search matching more ranks its first `count_cap` by name, and a
    narrower term ranks them all. Its cost is a count's (sizes.py).
    """

    term: str  # the search term, as given (cursors are made for it)

    def page_sql(self, query: ListQuery, params: list[Any]) -> str:
        a, table = query.alias, query.table
        by_name = replace(
            query,
            order=BusinessOrder.NAME_ASC,
            after=None,
            ranked=None,
            walked=WALKED_INDEXES["name"][1],
        )
        ranked = by_name.first_ids("TRUE", str(query.count_cap), query.count_cap)
        params.append(self.term)  # a parameter of the page only (a count never ranks)
        relevance = f"similarity({a}.name, ${len(params)}::text)"
        keyset = query.keyset(params, relevance)
        params.append(query.first + 1)
        # ranked from the names the walk read; only the page's rows are read whole
        return (
            f"SELECT {a}_row.*, {a}.relevance FROM (SELECT {a}.id, {relevance} AS relevance"
            f" FROM ({ranked}) {a} WHERE {keyset}"
            f" ORDER BY {query.order_by(computed=relevance)} LIMIT ${len(params)}) {a}"
            f" JOIN {table} {a}_row ON {a}_row.id = {a}.id ORDER BY {query.order_by()}"
        )


def _in_categories(slugs: tuple[str, ...], params: list[Any]) -> tuple[str, Through]:
    """The condition "in one of these categories" on businesses `b`, and the count that
    reads the categories' rows instead: a page in name order checks each business it
    passes, but a count would otherwise gather every business of the categories (tens of
    thousands for a popular one at 100x) before counting a thousand.

    The count reads (category, business) in business order from the index of migration
    0009 and the businesses in id order beside it (merged; for `availableForHire`, from
    the index of migration 0014), and stops at the cap. Of one category a business has
    one row; of several, a business is counted at its first: no row of an earlier of
    them (by id)."""
    condition, ids = _of_categories("bc", slugs, params)
    counted = condition
    if len(slugs) > 1:
        counted = (
            f"{condition} AND NOT EXISTS (SELECT 1 FROM business_category earlier"
            " WHERE earlier.business_id = bc.business_id"
            f" AND earlier.category_id < bc.category_id AND earlier.category_id {ids})"
        )
    in_categories = f"b.id IN (SELECT bc.business_id FROM business_category bc WHERE {condition})"
    through = Through(
        "business_category bc JOIN business b ON b.id = bc.business_id",
        in_categories,
        counted,
        few=_few_rows("business_category bc", condition),
        rows=_CATEGORY_ROWS,
    )
    return in_categories, through


# --- events ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BoundingBox:
    north: float
    south: float
    east: float
    west: float


EARTH_RADIUS_KM = 6371.0088  # the mean radius
_DIAMETER_KM = 2 * EARTH_RADIUS_KM
_RADIANS = math.pi / 180  # per degree; in SQL `(pi() / 180)`, the same double


@dataclass(frozen=True, slots=True)
class Near:
    """A circle on the earth: the events within `radius_km` of the centre, by great-circle
    distance on a sphere of the earth's mean radius (the haversine formula).

    The distance has two forms, Python (`distance_km`, for an event in hand: the live
    updates' routing, the differential test's oracle) and SQL (`distance_sql`), written as
    the same operations in the same order on doubles, so that both give the same double
    for the same event; a cursor carries that double (keyset (distance, id)).
    """

    latitude: float
    longitude: float
    radius_km: float

    def distance_km(self, latitude: float, longitude: float) -> float:
        half_lat = math.sin((latitude - self.latitude) * _RADIANS / 2)
        half_lon = math.sin((longitude - self.longitude) * _RADIANS / 2)
        h = (
            half_lat * half_lat
            + math.cos(latitude * _RADIANS)
            * math.cos(self.latitude * _RADIANS)
            * half_lon
            * half_lon
        )
        return _DIAMETER_KM * math.asin(min(1.0, math.sqrt(h)))

    def holds(self, latitude: float, longitude: float) -> bool:
        return self.distance_km(latitude, longitude) <= self.radius_km


def distance_sql(alias: str, latitude: str, longitude: str) -> str:
    """`Near.distance_km` of the row `alias` from the centre (`latitude`, `longitude`:
    float8 SQL values), in SQL."""
    r = "(pi() / 180)"
    half_lat = f"sin(({alias}.latitude - {latitude}) * {r} / 2)"
    half_lon = f"sin(({alias}.longitude - {longitude}) * {r} / 2)"
    h = (
        f"{half_lat} * {half_lat} + cos({alias}.latitude * {r}) * cos({latitude} * {r})"
        f" * {half_lon} * {half_lon}"
    )
    return f"({_DIAMETER_KM!r}::float8 * asin(least(1::float8, sqrt({h}))))"


def cap_box_sql(latitude: str, longitude: str, km: str) -> str:
    """SQL: a box of (longitude, latitude) holding every point within `km` of the centre,
    what the point index of migration 0009 can look up. Latitudes span the radius's angle
    either side; longitudes the circle's widest (asin(sin(angle) / cos(latitude)), the
    meridians tangent to it). A circle around a pole or across the antimeridian takes
    every longitude of its latitudes (one box, which an ordered index scan can use; the
    exact distance decides). The geometric operators' tolerance (1e-6 degrees) covers the
    rounding at the box's edges."""
    r = "(pi() / 180)"
    angle = f"({km} / {EARTH_RADIUS_KM!r}::float8)"
    d_lat = f"({angle} / {r})"
    d_lon = f"(asin(least(1::float8, sin({angle}) / cos({latitude} * {r}))) / {r})"
    every = f"(abs({latitude}) + {d_lat} >= 90 OR abs({longitude}) + {d_lon} > 180)"
    west = f"(CASE WHEN {every} THEN -180 ELSE {longitude} - {d_lon} END)"
    east = f"(CASE WHEN {every} THEN 180 ELSE {longitude} + {d_lon} END)"
    return f"box(point({west}, {latitude} - {d_lat}), point({east}, {latitude} + {d_lat}))"


@dataclass(frozen=True, slots=True)
class Nearest:
    """The page of a list ordered by distance from `near`'s centre (EventOrder.DISTANCE),
    nearest first, ties by id; keyset (distance, id).

    One statement, two steps, both through the point index (the circle's box is an index
    condition of each). First the reach: the page's `first` + 1 rows nearest by
    `point <-> centre` (KNN) that pass every condition, the keyset included, and the
    largest exact distance among them. `<->` is Euclidean in degrees, so its order is not
    the order of distance (a degree of longitude is cos(latitude) of one of latitude),
    but those rows are `first` + 1 rows within the reach, so the page's truly nearest
    rows all are: the second step reads only the rows in the reach's box, keeps those
    within the reach and orders them by the exact distance (about 1/cos(latitude) times
    the page, plus the box's corners). We chose this over ordering by `<->` (the wrong
    order away from the equator) and over scaling longitudes (the index holds unscaled
    points). How the first step runs is the planner's choice: an ordered KNN index scan,
    or a bitmap scan of the circle's box and a top-N sort by `<->`; PostgreSQL estimates a
    box as a fixed share of the table, so at the benchmark's sizes it takes the bitmap
    scan, whose cost follows the events in the circle's box (bounded by the radius cap;
    bench/README.md has the plans). A later page's first step passes over the earlier
    pages' rows again, as any KNN page does.
    """

    near: Near
    latitude: str  # the centre, as SQL placeholders
    longitude: str
    distance: str  # distance_sql of the table's alias

    def page_sql(self, query: ListQuery, condition: str, limit: str) -> str:
        a, table = query.alias, query.table
        point = f"point({a}.longitude, {a}.latitude)"
        centre = f"point({self.longitude}, {self.latitude})"
        reach = "(SELECT km FROM reach)"
        return (
            f"WITH reach AS MATERIALIZED (SELECT max(s.d) AS km FROM (SELECT {self.distance}"
            f" AS d FROM {table} {a} WHERE {condition} ORDER BY {point} <-> {centre}"
            f" LIMIT {limit}) s)"
            f" SELECT {a}.*, {self.distance} AS distance FROM {table} {a} WHERE {condition}"
            f" AND {point} <@ {cap_box_sql(self.latitude, self.longitude, reach)}"
            f" AND {self.distance} <= {reach}"
            f" ORDER BY {query.order_by(computed=self.distance)} LIMIT {limit}"
        )


def cursor_order(
    order: BusinessOrder | EventOrder, near: Near | None = None, search: str | None = None
) -> str:
    """What a list's cursors are made for: the order, and for DISTANCE the centre too (a
    distance continues a list only from the centre it was measured from), for RELEVANCE
    the term (a digest of it: a term may be long)."""
    if order is EventOrder.DISTANCE and near is not None:
        # + 0.0: -0.0 is the same centre as 0.0
        return f"DISTANCE@{near.latitude + 0.0!r},{near.longitude + 0.0!r}"
    if order is BusinessOrder.RELEVANCE and search is not None:
        return f"RELEVANCE@{hashlib.sha256(search.encode()).hexdigest()[:16]}"
    return order.name


@dataclass(frozen=True, slots=True)
class EventFilter:
    upcoming: bool = False  # not ended yet: still running or yet to start
    ends_after: datetime | None = None  # still running at or after this instant
    starts_after: datetime | None = None
    starts_before: datetime | None = None
    bbox: BoundingBox | None = None
    category_slugs: tuple[str, ...] | None = None
    business_id: int | None = None
    status: EventStatus | None = None
    ids: tuple[int, ...] | None = None
    near: Near | None = None


# A box spanning more degrees than this (of latitude or of longitude) is not looked up in
# the point index: PostgreSQL estimates every box as 0.1 % of the events, so it would read
# every event of a country's or the world's box from the index (100,000 at 100x) and sort
# them, where the exact bounds, which it estimates from the columns' statistics, lead it
# to the (status, starts_at) or (latitude, longitude) index instead. bench/README.md
# ("Wide boxes") has the plans either side of it.
WIDE_BOX_DEGREES = 1.0


def _in_box(box: BoundingBox, param: Callable[[Any], str]) -> list[str]:
    """Conditions for events inside `box`: the containment of `point(longitude, latitude)`
    in one box, or two across the antimeridian, is what the GiST index of migration 0009
    answers; geometric operators compare with a tolerance of 1e-6, so the exact bounds
    are checked on the rows it finds (and alone decide for a wide box)."""
    south, north = param(box.south), param(box.north)
    west, east = param(box.west), param(box.east)
    point = "point(e.longitude, e.latitude)"
    exact = [f"e.latitude BETWEEN {south} AND {north}"]
    if box.west <= box.east:
        spatial = f"{point} <@ box(point({west}, {south}), point({east}, {north}))"
        exact.append(f"e.longitude BETWEEN {west} AND {east}")
    else:  # the box crosses the antimeridian: west to 180 and -180 to east
        spatial = (
            f"({point} <@ box(point({west}, {south}), point(180, {north}))"
            f" OR {point} <@ box(point(-180, {south}), point({east}, {north})))"
        )
        exact.append(f"(e.longitude >= {west} OR e.longitude <= {east})")
    longitudes = box.east - box.west if box.west <= box.east else 360 - (box.west - box.east)
    if max(box.north - box.south, longitudes) > WIDE_BOX_DEGREES:
        return exact
    return [spatial, *exact]


def event_list(
    audience: Audience,
    flt: EventFilter,
    order: EventOrder,
    first: int,
    after: Position | None,
    *,
    count_cap: int,
) -> ListQuery:
    """DISTANCE only with a centre (`flt.near`): its caller checks (api/arguments.py
    event_order)."""
    params: list[Any] = []
    visible, branches = EVENT_VISIBILITY.sql_branches(audience, "e", params)
    conditions = [visible]

    def param(value: Any) -> str:
        params.append(value)
        return f"${len(params)}"

    if flt.upcoming:
        conditions.append(ENDED.not_ended_rows_sql("e"))
    if flt.ends_after is not None:
        conditions.append(ENDED.not_ended_rows_sql("e", f"{param(flt.ends_after)}::timestamptz"))
    if flt.starts_after is not None:
        conditions.append(f"e.starts_at >= {param(flt.starts_after)}")
    if flt.starts_before is not None:
        conditions.append(f"e.starts_at < {param(flt.starts_before)}")
    if flt.bbox is not None:
        conditions.extend(_in_box(flt.bbox, param))
    in_categories, through = "", None
    if flt.category_slugs is not None:
        # Only businesses the audience can see count, so a hidden business reveals nothing.
        # The event's businesses of the categories (event_category, migration 0016: one
        # look-up per event), of which one must be visible to the audience.
        visible = BUSINESS_VISIBILITY.sql(audience, "b", params)
        of_categories, _ = _of_categories("ec", flt.category_slugs, params)
        in_categories = (
            "e.id IN (SELECT ec.event_id FROM event_category ec"
            f" JOIN business b ON b.id = ec.business_id WHERE {of_categories} AND {visible})"
        )
        conditions.append(in_categories)
        # a category of few rows: its events from its rows, rather than every event
        # passed over in the list's order to find them
        through = Through(
            None,
            in_categories,
            f"{of_categories} AND {visible}",
            few=_few_rows("event_category ec", of_categories),
            rows="event_category ec CROSS JOIN LATERAL"
            " (SELECT * FROM business b WHERE b.id = ec.business_id OFFSET 0) b"
            " CROSS JOIN LATERAL (SELECT * FROM event e WHERE e.id = ec.event_id OFFSET 0) e",
        )
    if flt.business_id is not None:
        # The business counts only if the audience can see it: a hidden one has no events.
        visible = BUSINESS_VISIBILITY.sql(audience, "b", params)
        named = f"(SELECT b.id FROM business b WHERE b.id = {param(flt.business_id)} AND {visible})"
        # Its events' ids first (its participations and what it hosts, each from an index),
        # then those events: a page or a count reads the business's events, not every
        # event the other conditions admit (19,000 not ended at 100x).
        conditions.append(
            "e.id = ANY(ARRAY(SELECT p.event_id FROM participation p"
            f" WHERE p.business_id IN {named}"
            f" UNION SELECT h.id FROM event h WHERE h.host_business_id IN {named}))"
        )
    if flt.status is not None:
        conditions.append(f"e.status = {param(flt.status.value)}")
    if flt.ids is not None:
        conditions.append(f"e.id = ANY({param(list(flt.ids))})")
    nearest = None
    if flt.near is not None:
        nearest = _within(flt.near, param, conditions)
    return ListQuery(
        "event",
        "e",
        tuple(conditions),
        order,
        first,
        after,
        tuple(params),
        count_cap,
        nearest if order is EventOrder.DISTANCE else None,
        counted_through=through,
        visible_branches=branches,
        # a category's events can be few among the thousands not ended: read them as a
        # search is, the walk reading whole rows (what the other conditions test)
        walked=("*",) if in_categories and order is not EventOrder.DISTANCE else (),
        sparse=(in_categories,) if in_categories else (),
    )


def _within(near: Near, param: Callable[[Any], str], conditions: list[str]) -> Nearest:
    """Conditions for events within the circle (the index's box, then the exact
    distance), and the order by distance from its centre."""
    latitude = f"{param(near.latitude)}::float8"
    longitude = f"{param(near.longitude)}::float8"
    distance = distance_sql("e", latitude, longitude)
    radius = f"{param(near.radius_km)}::float8"
    box = cap_box_sql(latitude, longitude, radius)
    conditions.append(f"point(e.longitude, e.latitude) <@ {box}")
    conditions.append(f"{distance} <= {radius}")
    return Nearest(near, latitude, longitude, distance)


async def data_version() -> int:
    """The committed-write counter (migration 0003); it grows with every visible change."""
    rows = await fetch("SELECT version FROM data_version WHERE id = 1")
    version: int = rows[0]["version"]
    return version


@dataclass(frozen=True, slots=True)
class PrivateView:
    """Whether a user's view differs from the public one, and the data version it holds for."""

    version: int
    private: bool


async def private_view(user_id: int) -> PrivateView:
    """Whether this user's view differs from an anonymous one (own unverified businesses or
    own events that are not approved), read in one statement with the data version: one
    snapshot, so the answer is exactly that version's."""
    params: list[Any] = []
    public_business = BUSINESS_VISIBILITY.sql(ANONYMOUS, "b", params)
    public_event = EVENT_VISIBILITY.sql(ANONYMOUS, "e", params)
    rows = await fetch(
        "SELECT version,"
        " EXISTS (SELECT 1 FROM business b"
        f" WHERE b.{BUSINESS_VISIBILITY.owner_column} = $1 AND NOT ({public_business}))"
        " OR EXISTS (SELECT 1 FROM event e"
        f" WHERE e.{EVENT_VISIBILITY.owner_column} = $1 AND NOT ({public_event}))"
        " AS private"
        " FROM data_version WHERE id = 1",
        [user_id],
    )
    return PrivateView(version=rows[0]["version"], private=bool(rows[0]["private"]))
