"""Hostile documents get a coded answer cheaply: linear validation, a cost limit checked
before any SQL, list sizes enforced when loading, and the introspection switch."""

from __future__ import annotations

import asyncio
import runpy
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import strawberry
from graphql import GraphQLObjectType, get_introspection_query, get_operation_ast

from popmap_gql.api.cost import Cost, CostModel
from popmap_gql.api.engine import graphql_schema, strawberry_field
from popmap_gql.api.query import BusinessOrder, Query
from popmap_gql.api.schema import build_schema
from popmap_gql.api.sizes import (
    ROWS_READ_PER_COUNTED,
    Capped,
    Paged,
    cap_of,
    declared,
    listed,
    sized,
)
from popmap_gql.config import Settings, load_settings
from popmap_gql.db.models import Category
from tests.conftest import QueryCounter
from tests.helpers import (
    error_codes,
    global_id,
    gql,
    make_business,
    make_category,
    make_event,
)
from tests.processes import clean_env, running_server

DEFAULTS = Settings()
ROOT = Path(__file__).resolve().parent.parent
# The benchmark's documents as the benchmark sends them (run, not imported: bench/ is
# outside what mypy checks).
SCENARIOS = runpy.run_path(str(ROOT / "bench" / "scenarios.py"))


def _doubling(levels: int) -> str:
    """Each fragment spreads the next one twice: the expansion doubles per level."""
    fragments = [f"fragment F{n} on Query {{ ...F{n + 1} ...F{n + 1} }}" for n in range(levels)]
    fragments.append(f"fragment F{levels} on Query {{ categories {{ name }} }}")
    return "query { ...F0 } " + " ".join(fragments)


NESTED_LISTS = (
    "{ events(first: 1) { edges { node { id businesses { id events { id businesses { id"
    " events { id businesses { id events { id } } } } } } } } } }"
)


# --- validation in linear time --------------------------------------------------------


async def test_fragments_doubling_over_21_levels_get_a_coded_answer_at_once(
    client: httpx.AsyncClient,
) -> None:
    started = time.monotonic()
    body = await gql(client, _doubling(20))
    elapsed = time.monotonic() - started

    # It took 8 s to validate; each fragment is now looked at once. Its fields would
    # merge into one `categories`, but the cost counts every spread as written.
    assert error_codes(body) == ["QUERY_TOO_COSTLY"]
    assert elapsed < 1.0


async def test_fragments_doubling_over_185_levels_are_refused_before_graphql_core_rules(
    client: httpx.AsyncClient,
) -> None:
    started = time.monotonic()
    body = await gql(client, _doubling(185))
    elapsed = time.monotonic() - started

    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]
    assert elapsed < 1.0


async def test_four_hundred_repeated_fields_are_refused_as_too_complex(
    client: httpx.AsyncClient,
) -> None:
    body = await gql(client, "{" + " categories { name }" * 400 + "}")

    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]
    assert "data" not in body  # a request error: nothing was executed


async def test_a_few_repeated_fields_are_still_merged_as_graphql_says(
    client: httpx.AsyncClient,
) -> None:
    await make_category("Bakery")

    body = await gql(client, "{" + " categories { name }" * 3 + " categories { slug } }")

    assert body == {"data": {"categories": [{"name": "Bakery", "slug": "bakery"}]}}


async def test_repeated_nested_fields_are_refused_before_they_multiply(
    client: httpx.AsyncClient,
) -> None:
    def nest(depth: int) -> str:
        if depth == 0:
            return "id"
        name = "events" if depth % 2 else "businesses"
        return f"{name} {{ {nest(depth - 1)} }} {name} {{ {nest(depth - 1)} }}"

    body = await gql(client, f'{{ business(id: "x") {{ {nest(6)} }} }}')

    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]


async def test_an_unknown_fragment_is_a_coded_validation_error(client: httpx.AsyncClient) -> None:
    body = await gql(client, "{ ...Nope }")

    assert error_codes(body) == ["GRAPHQL_VALIDATION_FAILED"]
    assert body["errors"][0]["message"] == "Unknown fragment 'Nope'."


async def test_fragment_cycles_are_coded_validation_errors(client: httpx.AsyncClient) -> None:
    cycle = (
        "query { ...A } fragment A on Query { categories { id } ...B } fragment B on Query { ...A }"
    )
    unused_self_cycle = "query { categories { id } } fragment C on Query { ...C }"

    for document in (cycle, unused_self_cycle):
        body = await gql(client, document)
        assert error_codes(body) == ["GRAPHQL_VALIDATION_FAILED"], body
        assert "within itself" in body["errors"][0]["message"]


async def test_graphql_core_rules_do_not_run_once_a_limit_refuses_the_document(
    client: httpx.AsyncClient,
) -> None:
    # `nonsense` is graphql-core's error to find, the repetition ours: only ours is told.
    body = await gql(client, "{ nonsense" + " categories { name }" * 400 + "}")

    assert error_codes(body) == ["QUERY_TOO_COMPLEX"]


# --- the cost limit -------------------------------------------------------------------


async def test_nested_lists_are_refused_as_too_costly_before_any_sql(
    client: httpx.AsyncClient, sql_counter: QueryCounter
) -> None:
    body = await gql(client, NESTED_LISTS)

    assert error_codes(body) == ["QUERY_TOO_COSTLY"]
    extensions = body["errors"][0]["extensions"]
    # 1 page of 1 event: edge, node, then 50 businesses, 50 events each, three times over
    assert extensions["cost"] == 1 + 1 * (2 + 50 * (1 + 50 * (1 + 50 * (1 + 50 * (1 + 50 * 51)))))
    assert extensions["maxCost"] == DEFAULTS.max_query_cost
    assert "data" not in body  # a request error: nothing was executed
    assert sql_counter.statements == []


PAGED = """query ($first: Int) {
  events(first: $first) { edges { node { businesses { events { id } } } } }
}"""


def _paged_cost(first: int) -> int:
    """The connection, then per event its edge and node and 50 businesses of 50 events."""
    return 1 + first * (2 + 50 * (1 + 50))


async def test_page_size_variables_count_in_the_cost(client: httpx.AsyncClient) -> None:
    small = await gql(client, PAGED, {"first": 10})
    large = await gql(client, PAGED, {"first": 100})
    defaulted = await gql(client, PAGED.replace("$first: Int", "$first: Int = 100"))
    omitted = await gql(client, PAGED, {})

    assert _paged_cost(10) <= DEFAULTS.max_query_cost < _paged_cost(100)
    assert "errors" not in small, small
    assert error_codes(large) == ["QUERY_TOO_COSTLY"]
    assert large["errors"][0]["extensions"]["cost"] == _paged_cost(100)
    assert defaulted["errors"][0]["extensions"]["cost"] == _paged_cost(100)
    assert "errors" not in omitted  # the default page of 20


def _cost(document: str, variables: dict[str, Any] | None = None) -> int:
    return _costs(document, variables).objects


def _costs(document: str, variables: dict[str, Any] | None = None) -> Cost:
    schema = build_schema(DEFAULTS)
    prepared = schema.documents.prepare(document)
    assert prepared.document is not None
    assert not prepared.errors, prepared.errors
    operation = get_operation_ast(prepared.document)
    assert operation is not None
    root = graphql_schema(schema).get_root_type(operation.operation)
    assert root is not None
    return schema.cost_model.cost(prepared.fragments, operation, root.name, variables)


README_QUERIES = [
    "{ events(first: 5) { edges { node { title startsAt businesses { name categories"
    " { name } } } } } }",
    """query Map($after: String) {
      events(first: 20, after: $after,
             filter: { bbox: { north: 30.40, south: 30.20, east: -97.60, west: -97.85 } }) {
        totalCount
        pageInfo { hasNextPage endCursor }
        edges { node { id title startsAt endsAt latitude longitude
                       categories { name } businesses { id name } } }
      }
    }""",
    """{
      businesses(first: 10, filter: { search: "bake", categorySlugs: ["bakery", "coffee"],
                                      availableForHire: true }, orderBy: NAME_ASC) {
        edges { node { id name website categories { slug } events { title startsAt } } }
      }
    }""",
    "query ($id: ID!) { event(id: $id) { title hostBusiness { name } businesses { name }"
    " isActive } }",
]


def test_benchmark_readme_and_graphiql_queries_cost_well_under_the_default_limit() -> None:
    documents = [
        (SCENARIOS["Q1"], {"first": SCENARIOS["Q1_PAGE_SIZE"]}),
        (SCENARIOS["Q1"], {"first": 100}),  # the largest page a client may ask for
        (SCENARIOS["Q2"], None),
        (SCENARIOS["Q3"], None),
        (SCENARIOS["M1_JOIN"], None),
        (SCENARIOS["M1_LEAVE"], None),
        (get_introspection_query(), None),
        *((query, None) for query in README_QUERIES),
    ]

    costs = [_cost(document, variables) for document, variables in documents]

    assert max(costs) * 3 <= DEFAULTS.max_query_cost, costs


async def test_graphiql_schema_query_is_answered(client: httpx.AsyncClient) -> None:
    body = await gql(client, get_introspection_query())

    assert "errors" not in body
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"


@strawberry.type
class Thing:
    name: str


@strawberry.type
class UndeclaredQuery:
    @strawberry.field
    def things(self) -> list[Thing]:
        return []


def test_a_list_field_without_a_declared_size_fails_at_schema_build() -> None:
    with pytest.raises(TypeError, match=r"UndeclaredQuery\.things is a list of objects"):
        CostModel(
            graphql_schema(strawberry.Schema(query=UndeclaredQuery)),
            count_cost=1,
            count_database_cost=1,
        )


@strawberry.type
class MisfitQuery:
    thing: Thing = strawberry.field(metadata=sized(Capped(3)))


@strawberry.type
class UnpagedQuery:
    things: Thing = strawberry.field(metadata=sized(Paged(default=10, cap=50)))


@pytest.mark.parametrize(
    ("query", "refusal"),
    [
        (MisfitQuery, r"^MisfitQuery\.thing: Capped\(cap=3\) does not fit a field of type Thing!"),
        (UnpagedQuery, r"^UnpagedQuery\.things: connections and paged fields must go together"),
    ],
)
def test_a_size_that_does_not_fit_its_field_fails_at_schema_build(
    query: type, refusal: str
) -> None:
    with pytest.raises(TypeError, match=refusal):
        CostModel(
            graphql_schema(strawberry.Schema(query=query)), count_cost=1, count_database_cost=1
        )


def test_a_loader_of_a_list_without_a_capped_size_fails_when_it_is_set_up() -> None:
    assert cap_of(Query, "categories") == 200
    with pytest.raises(TypeError, match=r"^Thing\.name declares no Capped size"):
        cap_of(Thing, "name")


def test_the_cost_settings_are_read_from_the_environment() -> None:
    settings = load_settings(
        {"POPMAP_MAX_QUERY_COST": "5000", "POPMAP_INTROSPECTION": "false"}, env_file=None
    )

    assert settings.max_query_cost == 5000
    assert settings.introspection is False
    assert DEFAULTS.introspection is True


# --- list sizes enforced when loading -------------------------------------------------


def test_every_capped_list_states_its_declared_cap() -> None:
    schema = graphql_schema(build_schema(DEFAULTS))
    stated = {}
    for graphql_type in schema.type_map.values():
        if isinstance(graphql_type, GraphQLObjectType) and not graphql_type.name.startswith("__"):
            for name, field in graphql_type.fields.items():
                definition = strawberry_field(field)
                size = declared(definition.metadata if definition is not None else None)
                if isinstance(size, Capped) and field.description:
                    stated[f"{graphql_type.name}.{name}"] = (size.cap, field.description)

    assert stated["Category.businesses"] == (
        50,
        "Businesses in this category that the viewer can see, by name; the first 50.",
    )
    assert stated["Query.categories"] == (200, "All categories, by name; the first 200.")
    for coordinate, (cap, description) in stated.items():
        assert f" {cap}" in description, coordinate
    with pytest.raises(TypeError, match="must say so"):
        listed("Some items, by name.", Capped(5))


async def test_event_businesses_stop_at_their_cap_in_join_order(
    client: httpx.AsyncClient,
) -> None:
    businesses = [await make_business(f"Shop {n:02}") for n in range(51)]
    event = await make_event("Market", businesses=businesses)
    query = "query ($id: ID!) { event(id: $id) { businesses { name } } }"
    listed = "{ events { edges { node { businesses { name } } } } }"

    one = await gql(client, query, {"id": global_id("Event", event.id)})
    page = await gql(client, listed)

    expected = [{"name": f"Shop {n:02}"} for n in range(50)]
    assert one["data"]["event"]["businesses"] == expected
    assert page["data"]["events"]["edges"][0]["node"]["businesses"] == expected


async def test_business_events_keep_those_ending_last_soonest_first(
    client: httpx.AsyncClient,
) -> None:
    shop = await make_business("Shop")
    # 45 past events and 10 upcoming ones: 55, over the cap of 50
    for n in range(55):
        await make_event(f"E{n:02}", starts_in=timedelta(days=n - 45), businesses=[shop])
    query = """query ($id: ID!) { business(id: $id) {
      events { title } soon: events(upcoming: true) { title } } }"""
    listed = "{ businesses { edges { node { events { title } } } } }"

    lookup = await gql(client, query, {"id": global_id("Business", shop.id)})
    page = await gql(client, listed)

    kept = [{"title": f"E{n:02}"} for n in range(5, 55)]
    assert lookup["data"]["business"]["events"] == kept
    assert lookup["data"]["business"]["soon"] == kept[-10:]
    assert page["data"]["businesses"]["edges"][0]["node"]["events"] == kept


async def test_categories_stop_at_their_caps_by_name(client: httpx.AsyncClient) -> None:
    await Category.bulk_create([Category(name=f"C{n:03}", slug=f"c{n:03}") for n in range(201)])
    categories = await Category.all().order_by("name")
    owners = [
        await make_business(f"Shop {n}", categories=categories[n * 11 : n * 11 + 11])
        for n in range(3)
    ]
    event = await make_event("Market", businesses=owners)
    query = """query ($id: ID!) { categories { name }
      event(id: $id) { categories { name } businesses { categories { name } } } }"""

    body = await gql(client, query, {"id": global_id("Event", event.id)})

    data = body["data"]
    assert [c["name"] for c in data["categories"]] == [f"C{n:03}" for n in range(200)]
    per_business = [[c["name"] for c in b["categories"]] for b in data["event"]["businesses"]]
    assert per_business == [[f"C{n:03}" for n in range(k * 11, k * 11 + 10)] for k in range(3)]
    # the distinct categories of the (capped) businesses' lists, by name, the first 20
    assert [c["name"] for c in data["event"]["categories"]] == [
        *(f"C{n:03}" for n in range(10)),
        *(f"C{n:03}" for n in range(11, 21)),
    ]


# --- introspection switch -------------------------------------------------------------


@pytest.fixture(scope="module")
def closed_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = clean_env(
        DATABASE_URL=database_url,
        POPMAP_DATA_DIR=str(tmp_path_factory.mktemp("closed")),
        POPMAP_INTROSPECTION="false",
    )
    with running_server(env) as base:
        yield base


def _post(base: str, query: str) -> dict[str, Any]:
    response = httpx.post(f"{base}/graphql", json={"query": query}, timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_without_introspection_schema_and_type_queries_are_refused(closed_server: str) -> None:
    schema_query = _post(closed_server, "{ __schema { types { name } } }")
    type_query = _post(closed_server, '{ __type(name: "Event") { fields { name } } }')
    graphiql = _post(closed_server, get_introspection_query())
    typename = _post(closed_server, "{ __typename authConfig { __typename localDevelopment } }")

    for refused in (schema_query, type_query, graphiql):
        assert error_codes(refused) == ["GRAPHQL_VALIDATION_FAILED"], refused
        assert "introspection is not allowed" in refused["errors"][0]["message"]
        assert "data" not in refused  # a request error: nothing was executed
    assert typename == {
        "data": {
            "__typename": "Query",
            "authConfig": {"__typename": "AuthConfig", "localDevelopment": True},
        }
    }


def test_without_introspection_errors_suggest_no_names(closed_server: str) -> None:
    field = _post(closed_server, "{ categoriez { name } }")
    argument = _post(closed_server, "{ events(frist: 1) { totalCount } }")
    enum = _post(closed_server, "{ events(orderBy: STARTS_AT) { totalCount } }")

    for body in (field, argument, enum):
        assert error_codes(body) == ["GRAPHQL_VALIDATION_FAILED"], body
        assert "Did you mean" not in body["errors"][0]["message"], body


async def test_with_introspection_errors_suggest_names(client: httpx.AsyncClient) -> None:
    body = await gql(client, "{ categoriez { name } }")

    assert "Did you mean 'categories'?" in body["errors"][0]["message"]


COUNTED = """{
  events(first: 1) { totalCount totalCountIsExact edges { node { id } } }
  also: events(first: 1) { totalCount }
  businesses(first: 1) { edges { node { id } } }
}"""


def test_a_count_costs_the_rows_it_may_read_once_per_connection() -> None:
    """A count reads up to POPMAP_MAX_EXACT_COUNT + 1 rows: each counted connection costs
    that many points beside its objects, once however many count fields it selects."""
    count = DEFAULTS.max_exact_count + 1
    objects = (1 + 2) + 1 + (1 + 2)  # two connections of one edge and node, one bare

    assert _cost(COUNTED) == objects + 2 * count


def test_counted_aliases_past_the_cost_limit_are_refused(
    database_url: str, tmp_path: Path, clean_db: None
) -> None:
    """The cost limit bounds how many counts one request may make."""
    fits = 4
    each = DEFAULTS.max_exact_count + 1 + 1  # the count's rows, the connection
    aliases = [f"c{i}: events(first: 1) {{ totalCount }}" for i in range(fits + 1)]
    env = clean_env(
        DATABASE_URL=database_url,
        POPMAP_DATA_DIR=str(tmp_path),
        POPMAP_MAX_QUERY_COST=str(fits * each),
        POPMAP_MAX_DATABASE_COST=str(10**9),  # the other limit, below
    )
    with running_server(env) as base:
        refused = _post(base, "{ " + " ".join(aliases) + " }")
        served = _post(base, "{ " + " ".join(aliases[:fits]) + " }")

    assert error_codes(refused) == ["QUERY_TOO_COSTLY"]
    assert refused["errors"][0]["extensions"]["cost"] == (fits + 1) * each
    assert "data" not in refused
    assert "errors" not in served, served
    assert served["data"]["c0"] == {"totalCount": 0}


async def test_an_object_wider_than_one_statement_is_answered_by_the_resolvers(
    database_url: str, tmp_path: Path, clean_db: None
) -> None:
    """By default an object takes at most 49 keys (its type's fields, __typename and
    POPMAP_MAX_ALIASES aliases); with more aliases allowed it can take more than the 50
    fields one SQL object holds: the resolvers answer it, and the access line says why."""
    shop = await make_business("Crumbs")
    keys = " ".join(f"n{n}: name" for n in range(51))
    query = f"query ($id: ID!) {{ business(id: $id) {{ {keys} }} }}"
    log = tmp_path / "server.log"
    env = clean_env(
        DATABASE_URL=database_url,
        POPMAP_DATA_DIR=str(tmp_path),
        POPMAP_MAX_ALIASES="60",
        POPMAP_LOG_FORMAT="json",
    )
    with running_server(env, log=log) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            response = await http.post(
                "/graphql",
                json={"query": query, "variables": {"id": global_id("Business", shop.id)}},
                headers={"X-Request-ID": "wide-object"},
            )
            deadline = time.monotonic() + 15
            while '"wide-object"' not in log.read_text() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)

    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"business": {f"n{n}": "Crumbs" for n in range(51)}}}
    [line] = [
        record
        for record in (orjson.loads(t) for t in log.read_text().splitlines() if t[:1] == "{")
        if record.get("request_id") == "wide-object"
    ]
    assert (line["answered_by"], line["declined"]) == ("resolvers", "size")


def test_the_database_cost_counts_rows_read_and_not_introspection() -> None:
    """Each object loaded is a row read; a count, what it may read for its matches (ten
    rows per row counted); introspection reads nothing."""
    count = DEFAULTS.max_exact_count + 1
    objects = (1 + 2) + 1 + (1 + 2)

    assert _costs(COUNTED) == Cost(objects + 2 * count, objects + 2 * count * ROWS_READ_PER_COUNTED)
    introspection = _costs(get_introspection_query(descriptions=True))
    assert introspection.objects > DEFAULTS.max_database_cost  # still admitted:
    assert introspection.database == 0
    assert _costs(MAP_PAGE).database == _costs(MAP_PAGE).objects  # rows, no count


MAP_PAGE = """{ events(first: 100) { edges { node { id title
  businesses { id name categories { id name } } categories { id name } } } } }"""


def test_the_database_cost_limit_bounds_counts_and_pages_by_default(
    database_url: str, tmp_path: Path, clean_db: None
) -> None:
    """By default (POPMAP_MAX_DATABASE_COST) a request makes two counts at most, and a
    hundred events with their businesses' categories are more than one request reads."""
    aliases = [f"c{i}: events(first: 1) {{ totalCount }}" for i in range(3)]
    each = (DEFAULTS.max_exact_count + 1) * ROWS_READ_PER_COUNTED + 1
    env = clean_env(DATABASE_URL=database_url, POPMAP_DATA_DIR=str(tmp_path))
    with running_server(env) as base:
        two = _post(base, "{ " + " ".join(aliases[:2]) + " }")
        three = _post(base, "{ " + " ".join(aliases) + " }")
        big = _post(base, MAP_PAGE)
        smaller = _post(base, MAP_PAGE.replace("first: 100", "first: 20"))
        schema = _post(base, get_introspection_query(descriptions=True))

    assert "errors" not in two, two
    assert error_codes(three) == ["QUERY_TOO_COSTLY"]
    assert three["errors"][0]["extensions"] == {
        "code": "QUERY_TOO_COSTLY",
        "databaseCost": 3 * each,
        "maxDatabaseCost": DEFAULTS.max_database_cost,
    }
    assert "data" not in three
    assert error_codes(big) == ["QUERY_TOO_COSTLY"]
    assert big["errors"][0]["extensions"]["databaseCost"] == _costs(MAP_PAGE).database
    assert "errors" not in smaller, smaller
    assert "errors" not in schema
    assert schema["data"]["__schema"]["types"]


def test_a_list_ranked_by_relevance_costs_a_count_more() -> None:
    """Ranking reads up to the count limit's matches (RANKING_ORDERS), selected count or
    not, with the order written as a literal or sent in a variable."""
    plain = '{ businesses(first: 5, filter: {search: "goat"}) { edges { node { id } } } }'
    ranked = plain.replace("first: 5,", "first: 5, orderBy: RELEVANCE,")
    by_variable = (
        'query ($o: BusinessOrder!) { businesses(first: 5, filter: {search: "goat"},'
        " orderBy: $o) { edges { node { id } } } }"
    )
    count = Cost(
        DEFAULTS.max_exact_count + 1, (DEFAULTS.max_exact_count + 1) * ROWS_READ_PER_COUNTED
    )

    assert _costs(ranked) == _costs(plain) + count
    # variables reach the cost model coerced: the enum's member
    assert _costs(by_variable, {"o": BusinessOrder.RELEVANCE}) == _costs(plain) + count
    assert _costs(by_variable, {"o": BusinessOrder.NAME_ASC}) == _costs(plain)
