"""The database time of each request, measured by PostgreSQL (`EXPLAIN ANALYZE`).

    .venv/bin/python bench/dbtime.py [--scale 100] [--limit-ms 50]

Runs the real app in this process against the data set xN (built by `bench/dataset.py
--scale N` if it is missing) with its response cache off, and sends it, one at a time,
the benchmark's reads and the costliest reads the documented limits allow: the largest
pages, the widest box, counts, searches that match much, little and nothing, the
busiest category, "near me" at the largest radius, and the costliest request the query
cost limit admits (as many counted lists as fit).

Every statement a request sends is recorded from Tortoise's `tortoise.db_client` debug
log, which carries each statement's text and parameters. After the request, each one
is run again under `EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON)` on a connection of its own,
and the request's database time is the sum of their planning and execution times
(median of `--repeat` runs, on warm caches). Only reads are sent, so running a statement
again changes nothing.

Prints a line per request (its database cost as the API computes it, statements, database
time)
and last `dbtime_xN max=.. ms over=..`; exits 1 if a request the API served took more
than `--limit-ms`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: make `bench` importable
    sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import httpx  # noqa: E402
from graphql import get_operation_ast  # noqa: E402

from bench import dataset  # noqa: E402
from bench.run import mint_token  # noqa: E402
from bench.scenarios import (  # noqa: E402
    CATEGORY,
    MAP,
    NEAR,
    NEAR_ME,
    Q1,
    Q1_PAGE_SIZE,
    Q2,
    Q3,
    SEARCH,
    VIEWPORT,
    global_id,
)
from popmap_gql.api.schema import PopmapSchema, build_schema  # noqa: E402
from popmap_gql.app import create_app  # noqa: E402
from popmap_gql.config import Settings  # noqa: E402
from popmap_gql.db.orm import connection_credentials  # noqa: E402

# The whole metro area of today's city, and the whole world.
METRO = {"south": 29.9, "north": 30.7, "west": -98.2, "east": -97.3}
WORLD = {"south": -90, "north": 90, "west": -180, "east": 180}
BAKERY = {"slugs": ["bakery"]}
RARE = "dbtime-rare"  # a category dbtime adds for the run (add_rare_category)
AUSTIN_NEWEST = {"search": "austin", "order": "NEWEST_FIRST"}
ZILKER_NEWEST = {"search": "zilker", "order": "NEWEST_FIRST"}
ZILKER_LAST = {"search": "zilker", "order": "NAME_DESC"}
LATEST = {"filter": {}, "order": "STARTS_AT_DESC"}
ALL_TIME = {"filter": {"upcoming": False}, "order": "NEWEST_FIRST"}
BAKERY_METRO = {"filter": {"categorySlugs": ["bakery"], "bbox": METRO}}
# nothing starts this late: the category's events in an empty window
FAR_AHEAD = {"filter": {"categorySlugs": ["bakery"], "startsAfter": "2999-01-01T00:00:00Z"}}

BIG_PAGE = """query Big($bbox: BoundingBox!, $first: Int!) {
  events(first: $first, filter: {bbox: $bbox, upcoming: true}) {
    totalCount totalCountIsExact
    edges { node { id title startsAt endsAt latitude longitude
      businesses { id name categories { id name } } categories { id name } } }
  }
}"""

BIG_CATEGORY_PAGE = """query BigOf($slugs: [String!]!, $first: Int!) {
  events(first: $first, filter: {categorySlugs: $slugs}) {
    totalCount
    edges { node { id title startsAt endsAt latitude longitude
      businesses { id name categories { id name } } categories { id name } } }
  }
}"""

CATEGORY_COUNTS = """query Counts($slugs: [String!]!) {
  a: events(first: 1, filter: {categorySlugs: $slugs}) { totalCount }
  b: events(first: 1, filter: {categorySlugs: $slugs, upcoming: true}) { totalCount }
}"""

EVENTS_OF_CATEGORY = """query EventsOf($slugs: [String!]!) {
  events(first: 100, filter: {categorySlugs: $slugs}) {
    totalCount edges { node { id title businesses { id name } } }
  }
}"""

RELEVANT = """query Relevant($search: String!) {
  businesses(first: 100, filter: {search: $search}) {
    totalCount edges { node { id name categories { id name } } }
  }
}"""

RANKED = """query Ranked($search: String!) {
  businesses(first: 100, filter: {search: $search}, orderBy: RELEVANCE) {
    totalCount edges { node { id name categories { id name } } }
  }
}"""

ORDERED_BUSINESSES = """query Ordered($search: String, $order: BusinessOrder!) {
  businesses(first: 20, filter: {search: $search}, orderBy: $order) {
    totalCount edges { node { id name } }
  }
}"""

NEWEST_EVENTS = """query Newest {
  events(first: 20, orderBy: NEWEST_FIRST) { totalCount edges { node { id title } } }
}"""

FILTERED_EVENTS = """query Filtered($filter: EventFilter!, $order: EventOrder! = STARTS_AT_ASC) {
  events(first: 20, filter: $filter, orderBy: $order) {
    totalCount edges { node { id title } }
  }
}"""

RARE_BUSINESSES = """query Rare($slugs: [String!]!) {
  businesses(first: 20, filter: {categorySlugs: $slugs}) { totalCount edges { node { id } } }
}"""

CATEGORIES = """query Categories {
  categories { id name businesses { id name } }
}"""

AVAILABLE = """query Available($id: ID!) {
  business(id: $id) { id availableEvents { id title } events { id } hostedEvents { id } }
}"""

STAFF_LIST = """query Staff {
  events(first: 100, filter: {status: PENDING}) { totalCount edges { node { id title } } }
}"""


@dataclass(frozen=True)
class Request:
    name: str
    query: str
    variables: dict[str, Any]
    viewer: str = "anonymous"  # or "owner", "staff"


async def add_rare_category(conn: asyncpg.Connection) -> None:
    """A category of three businesses, the last in name order (the data set's categories
    are all about as large): its lists find their few rows far from where a walk of the
    name order starts. Removed at the end (`remove_rare_category`), as before it if a
    run was interrupted."""
    await remove_rare_category(conn)
    category = await conn.fetchval(
        "INSERT INTO category (name, slug) VALUES ('Rare', $1) RETURNING id", RARE
    )
    await conn.execute(
        "INSERT INTO business_category (business_id, category_id) SELECT b.id, $1"
        " FROM business b WHERE b.is_verified ORDER BY b.name DESC, b.id DESC LIMIT 3",
        category,
    )


async def remove_rare_category(conn: asyncpg.Connection) -> None:
    await conn.execute(
        "DELETE FROM business_category WHERE category_id IN"
        " (SELECT id FROM category WHERE slug = $1)",
        RARE,
    )
    await conn.execute("DELETE FROM category WHERE slug = $1", RARE)


def many_counts(n: int) -> str:
    """`n` aliased counted searches in one document."""
    fields = " ".join(
        f'c{i}: businesses(first: 1, filter: {{search: "goat {i}"}}) {{ totalCount }}'
        for i in range(n)
    )
    return f"query Many {{ {fields} }}"


def database_cost(schema: PopmapSchema, query: str, variables: dict[str, Any]) -> int:
    """The request's database cost, as the server computes it."""
    prepared = schema.documents.prepare(query)
    assert prepared.document is not None
    operation = get_operation_ast(prepared.document)
    assert operation is not None
    return schema.cost_model.cost(prepared.fragments, operation, "Query", variables).database


def requests(picks: dataset.Picks, schema: PopmapSchema) -> list[Request]:
    """The benchmark's reads, the costliest reads, and the costliest the database cost
    limit admits (the most counts, the largest page of events with their businesses'
    categories), each beside the next one, which it refuses."""
    lookup = global_id("Business", picks.lookup_business_id)
    owned = global_id("Business", picks.join_business_id)  # the owner's
    limit = schema.cost_limit.database
    fits = 1
    while database_cost(schema, many_counts(fits + 1), {}) <= limit:
        fits += 1

    def largest(query: str, variables: dict[str, Any]) -> int:
        first = 1
        while database_cost(schema, query, {**variables, "first": first + 1}) <= limit:
            first += 1
        return first

    most, most_of = largest(BIG_PAGE, {"bbox": METRO}), largest(BIG_CATEGORY_PAGE, BAKERY)
    return [
        Request("Q1", Q1, {"first": Q1_PAGE_SIZE, "filter": {"upcoming": True}}),
        Request("Q2", Q2, {"id": lookup}),
        Request("Q3", Q3, {}, viewer="owner"),
        Request("map", MAP, {"bbox": VIEWPORT}),
        Request("map metro", MAP, {"bbox": METRO}),
        Request("map world", MAP, {"bbox": WORLD}),
        Request(f"first {most}, metro", BIG_PAGE, {"bbox": METRO, "first": most}),
        Request(f"first {most + 1} (over)", BIG_PAGE, {"bbox": METRO, "first": most + 1}),
        Request("first 100, metro (over)", BIG_PAGE, {"bbox": METRO, "first": 100}),
        Request("search goat", SEARCH, {"search": "goat"}),
        Request("search goat, owner", SEARCH, {"search": "goat"}, viewer="owner"),
        Request("search goat, staff", SEARCH, {"search": "goat"}, viewer="staff"),
        # 20,626 matches, every one in a name starting "Zilker": the last in name order
        Request("search zilker", SEARCH, {"search": "zilker"}),
        Request("search zilker, owner", SEARCH, {"search": "zilker"}, viewer="owner"),
        Request("search zilker, staff", SEARCH, {"search": "zilker"}, viewer="staff"),
        Request("by relevance, zilker", RANKED, {"search": "zilker"}),
        Request("by relevance, zilker, staff", RANKED, {"search": "zilker"}, viewer="staff"),
        # every description has "austin": the densest term
        Request("search austin", SEARCH, {"search": "austin"}),
        Request("newest", ORDERED_BUSINESSES, {"order": "NEWEST_FIRST"}),
        Request("newest, staff", ORDERED_BUSINESSES, {"order": "NEWEST_FIRST"}, viewer="staff"),
        Request("search austin, newest", ORDERED_BUSINESSES, AUSTIN_NEWEST),
        Request("search zilker, newest", ORDERED_BUSINESSES, ZILKER_NEWEST),
        Request("search zilker, last", ORDERED_BUSINESSES, ZILKER_LAST, viewer="owner"),
        Request("events newest", NEWEST_EVENTS, {}),
        Request("events newest, owner", NEWEST_EVENTS, {}, viewer="owner"),
        Request("events newest, staff", NEWEST_EVENTS, {}, viewer="staff"),
        Request("events latest first", FILTERED_EVENTS, LATEST),
        Request("events of all time", FILTERED_EVENTS, {"filter": {"upcoming": False}}),
        Request("events of all time, staff", FILTERED_EVENTS, ALL_TIME, viewer="staff"),
        Request("events of category, metro", FILTERED_EVENTS, BAKERY_METRO),
        Request("events of a business", FILTERED_EVENTS, {"filter": {"businessId": lookup}}),
        Request("events far ahead, category", FILTERED_EVENTS, FAR_AHEAD),
        Request("categories' businesses", CATEGORIES, {}),
        Request("categories' businesses, owner", CATEGORIES, {}, viewer="owner"),
        Request("categories' businesses, staff", CATEGORIES, {}, viewer="staff"),
        Request("events to join", AVAILABLE, {"id": owned}, viewer="owner"),
        Request("search bakery", SEARCH, {"search": "bakery"}),
        Request("search nothing", SEARCH, {"search": "qqxzv"}),
        Request("search, largest page", RELEVANT, {"search": "goat"}),
        Request("by relevance", RANKED, {"search": "goat"}),
        Request("by relevance, owner", RANKED, {"search": "goat"}, viewer="owner"),
        Request("by relevance, staff", RANKED, {"search": "goat"}, viewer="staff"),
        Request("category", CATEGORY, {"slugs": ["bakery"]}),
        Request("category x3", CATEGORY, {"slugs": ["bakery", "coffee", "food-truck"]}),
        Request("rare category", RARE_BUSINESSES, {"slugs": [RARE]}),
        Request("rare category, staff", RARE_BUSINESSES, {"slugs": [RARE]}, viewer="staff"),
        Request("events of rare category", EVENTS_OF_CATEGORY, {"slugs": [RARE]}),
        Request("events of rare, owner", EVENTS_OF_CATEGORY, {"slugs": [RARE]}, viewer="owner"),
        Request("events of category", EVENTS_OF_CATEGORY, BAKERY),
        Request("events of category, owner", EVENTS_OF_CATEGORY, BAKERY, viewer="owner"),
        Request("events of category, staff", EVENTS_OF_CATEGORY, BAKERY, viewer="staff"),
        Request(f"first {most_of} of category", BIG_CATEGORY_PAGE, {**BAKERY, "first": most_of}),
        Request("2 counts of category", CATEGORY_COUNTS, BAKERY),
        Request("near 5 km", NEAR, {"near": NEAR_ME}),
        Request("near 100 km", NEAR, {"near": {**NEAR_ME, "radiusKm": 100.0}}),
        Request("staff pending", STAFF_LIST, {}, viewer="staff"),
        Request(f"{fits} counts (the limit)", many_counts(fits), {}),
        Request(f"{fits + 1} counts (over it)", many_counts(fits + 1), {}),
    ]


class Recorder(logging.Handler):
    """The statements Tortoise sends, with their parameters (its debug log's arguments)."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.statements: list[tuple[str, list[Any]]] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and isinstance(args[0], str):
            values = args[1]
            self.statements.append((args[0], list(values) if values else []))


@contextmanager
def recording() -> Iterator[Recorder]:
    recorder = Recorder()
    logger = logging.getLogger("tortoise.db_client")
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(recorder)
    try:
        yield recorder
    finally:
        logger.removeHandler(recorder)
        logger.setLevel(level)
        logger.propagate = propagate


async def explained_ms(conn: asyncpg.Connection, sql: str, values: list[Any]) -> float:
    if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
        return 0.0
    # without per-node timing, which adds the clock's cost to every row (the statement's
    # own time is measured either way)
    explain = f"EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON) {sql}"
    plan = json.loads(await conn.fetchval(explain, *values))
    return float(plan[0]["Planning Time"]) + float(plan[0]["Execution Time"])


async def measure(scale: int, limit_ms: float, repeat: int, plans: str | None = None) -> int:
    admin = await asyncio.to_thread(dataset.server_admin_url)
    if scale == 1:
        ds = dataset.generate()
        assert ds.picks is not None
        url, picks = await dataset.prepare_database(admin, ds, log=print), ds.picks
    else:
        url, picks = await dataset.prepare_scaled(admin, scale, log=print)
    settings = Settings(
        database_url=url,
        data_dir=dataset.APP_DATA_DIR,
        response_cache=False,
        budgets=False,
        graphiql=False,
    )
    schema = build_schema(settings)  # to price each request as the server does
    tokens = {
        "anonymous": None,
        "owner": await asyncio.to_thread(mint_token, picks.owner_email),
        "staff": await asyncio.to_thread(mint_token, "staff@bench.example", ("staff",)),
    }
    app = create_app(settings)
    explain = await asyncpg.connect(**connection_credentials(url))
    worst, over = 0.0, 0
    transport = httpx.ASGITransport(app=app)
    await add_rare_category(explain)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http,
        ):
            for request in requests(picks, schema):
                token = tokens[request.viewer]
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                payload = {"query": request.query, "variables": request.variables}
                await http.post("/graphql", json=payload, headers=headers)  # warm
                with recording() as recorder:
                    response = await http.post("/graphql", json=payload, headers=headers)
                if response.status_code != 200 and not response.content.startswith(b"{"):
                    raise RuntimeError(
                        f"{request.name}: {response.status_code} {response.text[:300]}"
                    )
                body = response.json()
                errors = [e.get("extensions", {}).get("code") for e in body.get("errors", [])]
                times = []
                for _ in range(repeat):
                    total = 0.0
                    for sql, values in recorder.statements:
                        total += await explained_ms(explain, sql, values)
                    times.append(total)
                ms = statistics.median(times)
                if plans and plans in request.name:
                    for sql, values in recorder.statements:
                        print(f"-- {request.name}: {values!r}\n{sql}")
                        for row in await explain.fetch(
                            f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *values
                        ):
                            print(row[0])
                served = not errors
                if served:
                    worst = max(worst, ms)
                    over += ms > limit_ms
                cost = database_cost(schema, request.query, request.variables)
                print(
                    f"dbtime: {request.name:<28} {response.status_code}"
                    f" {','.join(c or '?' for c in errors) or 'ok':<18} cost {cost:>7}"
                    f" statements {len(recorder.statements):>3}  db {ms:8.2f} ms"
                )
    finally:
        await remove_rare_category(explain)
        await explain.close()
    print(f"dbtime_x{scale} max={worst:.2f}ms over_{limit_ms:g}ms={over}")
    return 1 if over else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=int, default=100)
    parser.add_argument("--limit-ms", type=float, default=50.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--plans", metavar="NAME", help="print the plans of the requests whose name has NAME"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sys.exit(asyncio.run(measure(args.scale, args.limit_ms, args.repeat, args.plans)))


if __name__ == "__main__":
    main()
