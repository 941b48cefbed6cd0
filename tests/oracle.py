"""The differential test's oracle: the read API answered from the ORM's form of each rule.

It shares no SQL with the compiled read path, nor with the resolver path's loaders
(`read/sql.py`) and lists (`db/lists.py`). Each request reads the tables through
Tortoise, who sees which rows through `Visibility.q` (the ORM's form of the rule), and
computes every list in Python: "ended" by `ENDED.holds`, "active" by `ACTIVE_EVENTS.holds`,
"owner or staff" by `ACTS_FOR_BUSINESS.holds` (in the resolver), orders, sizes and the
"latest ending" pick as the field descriptions state them. The object types and their
resolvers are the API's own (computed fields use their Python forms); only the root
fields and the loaders are the oracle's. Arguments are checked by the API's functions
(`event_list_query`, `business_list_query`), whose refusals are part of the answer.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import strawberry
from strawberry.dataloader import DataLoader
from strawberry.schema.config import StrawberryConfig

from popmap_gql.api.arguments import lookup
from popmap_gql.api.context import Context, Info
from popmap_gql.api.query import (
    CATEGORIES_CAP,
    BusinessFilter,
    BusinessOrder,
    EventFilter,
    EventOrder,
    auth_config,
    business_list_query,
    event_list_query,
    viewer_object,
)
from popmap_gql.api.services import ServiceClient, service_client
from popmap_gql.api.types import (
    BUILDERS,
    LOADER_SETUP,
    READ_MODEL,
    AuthConfig,
    Business,
    Category,
    Connection,
    Edge,
    Event,
    PageInfo,
    Viewer,
)
from popmap_gql.db import models
from popmap_gql.db.lists import Count, ListQuery, Near
from popmap_gql.db.powers import Audience
from popmap_gql.db.rules import ACTIVE_EVENTS, BUSINESS_VISIBILITY, ENDED, EVENT_VISIBILITY
from popmap_gql.errors import NotFound
from popmap_gql.read.ids import decode_id, encode_cursor
from popmap_gql.read.loaders import Loaders, LoaderSetup

__all__ = ["oracle_schema", "oracle_setup"]

Row = dict[str, Any]


@dataclass
class Tables:
    """What one audience may read, fetched through the ORM."""

    businesses: dict[int, Row]  # visible ones
    every_business: dict[int, Row]
    business_rank: dict[int, int]  # by (name, id) as the database orders names
    events: dict[int, Row]  # visible ones
    every_event: dict[int, Row]
    categories: dict[int, Row]
    categories_of: dict[int, list[int]]  # business -> category ids
    taking_part: dict[int, list[tuple[Any, int, int]]]  # event -> (joined_at, id, business)
    now: datetime


def _row(model: Any) -> Row:
    return dict(model.__dict__)


async def _tables(audience: Audience) -> Tables:
    every_business = [_row(b) for b in await models.Business.all().order_by("name", "id")]
    visible_business = {b.id for b in await models.Business.filter(BUSINESS_VISIBILITY.q(audience))}
    visible_event = {e.id for e in await models.Event.filter(EVENT_VISIBILITY.q(audience))}
    every_event = {e.id: _row(e) for e in await models.Event.all()}
    links = await models.Business.all().values_list("id", "categories__id")
    categories_of: dict[int, list[int]] = {}
    for business_id, category_id in links:
        if category_id is not None:
            categories_of.setdefault(business_id, []).append(category_id)
    taking_part: dict[int, list[tuple[Any, int, int]]] = {}
    for p in await models.Participation.all():
        taking_part.setdefault(p.event_id, []).append((p.joined_at, p.id, p.business_id))
    return Tables(
        businesses={b["id"]: b for b in every_business if b["id"] in visible_business},
        every_business={b["id"]: b for b in every_business},
        business_rank={b["id"]: rank for rank, b in enumerate(every_business)},
        events={key: row for key, row in every_event.items() if key in visible_event},
        every_event=every_event,
        categories={c.id: _row(c) for c in await models.Category.all()},
        categories_of=categories_of,
        taking_part=taking_part,
        now=datetime.now(UTC),
    )


def _by_name(rows: list[Row]) -> list[Row]:
    """Categories by name in code-point order (as the field descriptions say), then id."""
    return sorted(rows, key=lambda row: (row["name"], row["id"]))


def _soonest(rows: list[Row], size: int) -> list[Row]:
    """The `size` events that end last, shown soonest first."""
    kept = sorted(rows, key=lambda row: (row["ends_at"], row["id"]), reverse=True)[:size]
    return sorted(kept, key=lambda row: (row["starts_at"], row["id"]))


class OracleLoaders(Loaders):
    """The loaders the API's resolvers call, answered from `Tables`."""

    def __init__(self, audience: Audience) -> None:
        super().__init__(audience, LOADER_SETUP)
        self._tables: asyncio.Task[Tables] | None = None
        self._kept: dict[Hashable, DataLoader[Any, Any]] = {}

    async def tables(self) -> Tables:
        if self._tables is None:
            self._tables = asyncio.ensure_future(_tables(self.audience))
        return await self._tables

    def related(
        self, entity_name: str, field: str, arguments: Mapping[str, Any] | None = None
    ) -> DataLoader[Any, Any]:
        given = tuple(sorted((arguments or {}).items()))
        find = getattr(self, f"_{entity_name.lower()}_{field}")
        cap = self.setup.caps[(entity_name, field)]
        build = BUILDERS[READ_MODEL[entity_name].relation(field).target]  # type: ignore[union-attr]
        many = READ_MODEL[entity_name].relation(field).many  # type: ignore[union-attr]

        def shown(found: Any) -> Any:
            if not many:
                return None if found is None else build(found)
            return [build(row) for row in found[:cap]]

        return self._loader((entity_name, field, given), find, dict(given), shown)

    def by_id(self, entity_name: str) -> DataLoader[int, Any]:
        build = BUILDERS[entity_name]

        def find(tables: Tables, key: int) -> Any:
            rows = tables.businesses if entity_name == "Business" else tables.events
            return rows.get(key)

        return self._loader(
            (entity_name, "id"), lambda t, k, _: find(t, k), {}, lambda r: r and build(r)
        )

    def _loader(
        self,
        name: Hashable,
        find: Callable[..., Any],
        arguments: dict[str, Any],
        shown: Callable[[Any], Any],
    ) -> DataLoader[Any, Any]:
        loader = self._kept.get(name)
        if loader is None:

            async def load(keys: list[Any]) -> list[Any]:
                tables = await self.tables()
                return [shown(find(tables, key, arguments)) for key in keys]

            loader = self._kept[name] = DataLoader(load_fn=load)
        return loader

    # --- each relation, as its field's description states it ---------------------------

    def _category_businesses(self, t: Tables, key: int, _: Any) -> list[Row]:
        found = [b for b in t.businesses.values() if key in t.categories_of.get(b["id"], [])]
        return sorted(found, key=lambda b: t.business_rank[b["id"]])

    def _business_categories(self, t: Tables, key: int, _: Any) -> list[Row]:
        return _by_name([t.categories[c] for c in t.categories_of.get(key, [])])

    def _business_events(self, t: Tables, key: int, arguments: Mapping[str, Any]) -> list[Row]:
        found = [
            t.events[event]
            for event, parts in t.taking_part.items()
            if event in t.events and any(business == key for _, _, business in parts)
        ]
        if arguments.get("upcoming"):
            found = [e for e in found if not ENDED.holds(e["ends_at"], t.now)]
        return _soonest(found, self.setup.caps[("Business", "events")])

    def _business_hosted_events(self, t: Tables, key: int, _: Any) -> list[Row]:
        found = [e for e in t.events.values() if e["host_business_id"] == key]
        return _soonest(found, self.setup.caps[("Business", "hosted_events")])

    def _business_available_events(self, t: Tables, key: int, _: Any) -> list[Row]:
        found = [
            e
            for e in t.every_event.values()
            if ACTIVE_EVENTS.holds(models.EventStatus(e["status"]), e["ends_at"], t.now)
            and all(business != key for _, _, business in t.taking_part.get(e["id"], []))
        ]
        return sorted(found, key=lambda e: (e["starts_at"], e["id"]))

    def _event_host_business(self, t: Tables, key: int, _: Any) -> Row | None:
        return t.businesses.get(key)

    def _event_businesses(self, t: Tables, key: int, _: Any) -> list[Row]:
        parts = sorted(t.taking_part.get(key, []))
        return [t.businesses[b] for _, _, b in parts if b in t.businesses]

    def _event_categories(self, t: Tables, key: int, _: Any) -> list[Row]:
        """The distinct categories in the lists its businesses show."""
        shown_businesses = self._event_businesses(t, key, {})[
            : self.setup.caps[("Event", "businesses")]
        ]
        size = self.setup.caps[("Business", "categories")]
        found = {
            c["id"]: c
            for b in shown_businesses
            for c in self._business_categories(t, b["id"], {})[:size]
        }
        return _by_name(list(found.values()))

    def _viewer_businesses(self, t: Tables, key: int, _: Any) -> list[Row]:
        found = [b for b in t.every_business.values() if b["owner_id"] == key]
        return sorted(found, key=lambda b: t.business_rank[b["id"]])

    def _viewer_submitted_events(self, t: Tables, key: int, _: Any) -> list[Row]:
        found = [e for e in t.every_event.values() if e["created_by_id"] == key]
        return sorted(found, key=lambda e: (e["created_at"], e["id"]), reverse=True)


class OracleSetup(LoaderSetup):
    def loaders(self, audience: Audience) -> Loaders:
        return OracleLoaders(audience)


def oracle_setup() -> LoaderSetup:
    return OracleSetup(LOADER_SETUP.model, LOADER_SETUP.caps, LOADER_SETUP.builders)


# --- the roots --------------------------------------------------------------------------


def _trigrams(text: str) -> set[str]:
    """pg_trgm's trigrams of `text`: of each word (a run of letters and digits), lower-
    cased, with two spaces before it and one after."""
    words = "".join(c if c.isalnum() else " " for c in text.lower()).split()
    return {f"  {w} "[i : i + 3] for w in words for i in range(len(w) + 1)}


def similarity(a: str, b: str) -> float:
    """pg_trgm's `similarity`: the trigrams the two share over those of either, a real."""
    x, y = _trigrams(a), _trigrams(b)
    shared = len(x & y)
    value = shared / (len(x) + len(y) - shared) if x or y else 0.0
    return float(struct.unpack("f", struct.pack("f", value))[0])


def _page(
    rows: list[Row], query: ListQuery, build: Callable[[Row], Any], rank: Callable[[Row], Any]
) -> Connection[Any]:
    """A page of `rows` (all that the filter admits) in the list's order and position."""
    column, descending = query.order.value
    ordered = sorted(rows, key=rank, reverse=descending)
    if query.after is not None:  # the cursor names the previous page's last row
        _, last = query.after
        ordered = ordered[[row["id"] for row in ordered].index(last) + 1 :]
    items = ordered[: query.first]
    edges = [
        Edge(cursor=encode_cursor(query.cursor_order, row[column], row["id"]), node=build(row))
        for row in items
    ]

    async def count() -> Count:
        return Count(n=min(len(rows), query.count_cap), exact=len(rows) <= query.count_cap)

    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=len(ordered) > query.first,
            has_previous_page=False,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        count=count,
    )


def _event_admitted(t: Tables, flt: EventFilter, audience_business: dict[int, Row]) -> Any:
    def admitted(e: Row) -> bool:
        if flt.upcoming and ENDED.holds(e["ends_at"], t.now):
            return False
        if flt.ends_after is not None and e["ends_at"] < flt.ends_after:
            return False
        if flt.starts_after is not None and e["starts_at"] < flt.starts_after:
            return False
        if flt.starts_before is not None and e["starts_at"] >= flt.starts_before:
            return False
        if flt.bbox is not None:
            box = flt.bbox
            if not box.south <= e["latitude"] <= box.north:
                return False
            lon = e["longitude"]
            inside = (
                box.west <= lon <= box.east
                if box.west <= box.east
                else lon >= box.west or lon <= box.east
            )
            if not inside:
                return False
        if flt.near is not None:
            near = _near(flt)
            assert near is not None
            if not near.holds(e["latitude"], e["longitude"]):
                return False
        taking_part = {b for _, _, b in t.taking_part.get(e["id"], []) if b in audience_business}
        if flt.category_slugs is not None:
            slugs = set(flt.category_slugs)
            if not any(
                t.categories[c]["slug"] in slugs
                for b in taking_part
                for c in t.categories_of.get(b, [])
            ):
                return False
        if flt.business_id is not None:
            named = decode_id("Business", flt.business_id, field="filter.businessId")
            if named not in audience_business:
                return False
            if named not in taking_part and e["host_business_id"] != named:
                return False
        return flt.status is None or e["status"] == flt.status.value

    return admitted


def _near(flt: EventFilter) -> Near | None:
    """The filter's circle (checked by the API's function before this runs)."""
    n = flt.near
    return None if n is None else Near(n.latitude, n.longitude, n.radius_km)


@strawberry.type(name="Query")
class OracleQuery:
    @strawberry.field
    def me(self, info: Info) -> Viewer | None:
        return viewer_object(info.context.viewer)

    @strawberry.field
    def service_client(self, info: Info) -> ServiceClient | None:
        return service_client(info.context.viewer, info.context.settings)

    @strawberry.field
    def auth_config(self, info: Info) -> AuthConfig:
        return auth_config(info.context.settings, info.context)

    @strawberry.field
    async def categories(self, info: Info) -> list[Category]:
        tables = await _loaders(info).tables()
        shown = _by_name(list(tables.categories.values()))[:CATEGORIES_CAP]
        return [Category.from_values(row) for row in shown]

    @strawberry.field
    async def businesses(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: BusinessFilter | None = None,
        order_by: BusinessOrder = BusinessOrder.NAME_ASC,
    ) -> Connection[Business]:
        query = business_list_query(info.context, first, after, filter, order_by)
        tables = await _loaders(info).tables()
        flt = filter or BusinessFilter()
        search = (flt.search or "").strip().lower()
        rows = [
            b
            for b in tables.businesses.values()
            if (not search or search in b["name"].lower() or search in b["description"].lower())
            and (
                flt.category_slugs is None
                or any(
                    tables.categories[c]["slug"] in flt.category_slugs
                    for c in tables.categories_of.get(b["id"], [])
                )
            )
            and (
                flt.available_for_hire is None or b["available_for_hire"] is flt.available_for_hire
            )
        ]
        if order_by is BusinessOrder.NEWEST_FIRST:
            rank: Callable[[Row], Any] = lambda b: (b["created_at"], b["id"])  # noqa: E731
        elif order_by is BusinessOrder.RELEVANCE:
            # the first count_cap matches by name, by similarity to the term
            by_name = sorted(rows, key=lambda b: tables.business_rank[b["id"]])
            ranked = [
                {**b, "relevance": similarity(b["name"], flt.search or "")}
                for b in by_name[: query.count_cap]
            ]
            return _page(ranked, query, Business.from_values, lambda b: (b["relevance"], b["id"]))
        else:
            rank = lambda b: tables.business_rank.get(b["id"], 0)  # noqa: E731
        return _page(rows, query, Business.from_values, rank)

    @strawberry.field
    async def business(self, info: Info, id: strawberry.ID) -> Business | None:
        pk = lookup("Business", id)
        tables = await _loaders(info).tables()
        if pk is None or pk not in tables.businesses:
            raise NotFound("no such business")
        return Business.from_values(tables.businesses[pk])

    @strawberry.field
    async def events(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: EventFilter | None = None,
        order_by: EventOrder = EventOrder.STARTS_AT_ASC,
    ) -> Connection[Event]:
        query = event_list_query(info.context, first, after, filter, order_by)
        tables = await _loaders(info).tables()
        admitted = _event_admitted(tables, filter or EventFilter(), tables.businesses)
        rows = [e for e in tables.events.values() if admitted(e)]
        near = _near(filter or EventFilter())
        if near is not None:  # the distance from the centre, computed here in Python
            rows = [
                {**e, "distance": near.distance_km(e["latitude"], e["longitude"])} for e in rows
            ]
        column = query.order.value[0]
        return _page(rows, query, Event.from_values, lambda e: (e[column], e["id"]))

    @strawberry.field
    async def event(self, info: Info, id: strawberry.ID) -> Event | None:
        pk = lookup("Event", id)
        tables = await _loaders(info).tables()
        if pk is None or pk not in tables.events:
            raise NotFound("no such event")
        return Event.from_values(tables.events[pk])


def _loaders(info: Info) -> OracleLoaders:
    loaders = info.context.loaders
    assert isinstance(loaders, OracleLoaders)
    return loaders


def oracle_schema() -> strawberry.Schema:
    return strawberry.Schema(query=OracleQuery, config=StrawberryConfig(auto_camel_case=True))


def oracle_context(context: Context) -> Context:
    return Context(
        request=context.request,
        settings=context.settings,
        loader_setup=oracle_setup(),
        viewer=context.viewer,
    )
