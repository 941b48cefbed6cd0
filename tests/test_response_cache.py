"""The response cache never serves data older than the last committed write."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest
from asyncpg.transaction import Transaction
from starlette.applications import Starlette
from starlette.routing import Route

from popmap_gql.api.documents import LONG_DOCUMENT
from popmap_gql.api.schema import schema
from popmap_gql.auth.local_idp import LocalIdentityProvider
from popmap_gql.auth.viewer import ANONYMOUS_VIEWER, Viewer
from popmap_gql.config import Settings
from popmap_gql.db.lists import PrivateView
from popmap_gql.db.models import Business
from popmap_gql.db.orm import connection_credentials
from popmap_gql.http import cache as cache_module
from popmap_gql.http.cache import (
    ENTRY_OVERHEAD,
    CachedResponses,
    DataVersion,
    PrivateViews,
    ResponseCache,
    request_key,
)
from popmap_gql.http.known_bodies import MAX_BODY_BYTES, MAX_ENTRIES
from popmap_gql.http.view import GraphQLView
from tests.conftest import QueryCounter
from tests.fake_cognito import FakeCognito
from tests.helpers import global_id, make_business, make_category
from tests.people import ANONYMOUS, Person, person
from tests.processes import clean_env, running_server

NAMES = "{ businesses { edges { node { name } } } }"
NAMES_KEY = request_key(NAMES, None)
MB = 1024 * 1024


async def names(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None
) -> tuple[list[str], str | None]:
    response = await client.post("/graphql", json={"query": NAMES}, headers=headers)
    assert response.status_code == 200, response.text
    edges = response.json()["data"]["businesses"]["edges"]
    return [edge["node"]["name"] for edge in edges], response.headers.get("x-popmap-cache")


def _store(*, max_entry_bytes: int = MB) -> CachedResponses:
    """A response cache of its own beside the app's, for stepping through its protocol."""
    return CachedResponses(
        schema.documents.prepare,
        private=schema.private_fields,
        ttl=60.0,
        max_bytes=MB,
        max_entry_bytes=max_entry_bytes,
    )


async def test_repeated_anonymous_query_is_served_from_the_cache(
    client: httpx.AsyncClient,
) -> None:
    await make_business("Crumbs")

    first = await names(client)
    second = await names(client)

    assert first == (["Crumbs"], "miss")
    assert second == (["Crumbs"], "hit")


@pytest.mark.parametrize("accept", ["application/json", "application/graphql-response+json"])
async def test_a_hit_has_the_content_type_of_the_miss_it_repeats(
    client: httpx.AsyncClient, accept: str
) -> None:
    await make_business("Typed")
    answers = [
        await client.post("/graphql", json={"query": NAMES}, headers={"accept": accept})
        for _ in range(2)
    ]
    refused = await client.post("/graphql", content=b"{", headers={"accept": accept})

    assert [a.headers["x-popmap-cache"] for a in answers] == ["miss", "hit"]
    assert answers[0].content == answers[1].content
    types = {a.headers["content-type"] for a in [*answers, refused]}
    assert types == {f"{accept}; charset=utf-8"}


async def test_a_mutation_is_seen_by_the_very_next_read(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    staff = await person(cognito, "moderator", groups=("staff",))
    draft = await make_business("Draft", verified=False)
    assert await names(client) == ([], "miss")
    assert await names(client) == ([], "hit")

    verified = await client.post(
        "/graphql",
        json={
            "query": "mutation ($id: ID!) { verifyBusiness(id: $id) { business { id } } }",
            "variables": {"id": global_id("Business", draft.id)},
        },
        headers=staff.headers,
    )

    assert verified.status_code == 200
    assert await names(client) == (["Draft"], "miss")


async def test_a_write_from_outside_the_api_is_seen_too(client: httpx.AsyncClient) -> None:
    business = await make_business("Old name")
    assert await names(client) == (["Old name"], "miss")
    assert await names(client) == (["Old name"], "hit")

    await Business.filter(id=business.id).update(name="New name")  # e.g. an admin in psql

    assert await names(client) == (["New name"], "miss")


async def test_signed_in_people_share_the_public_answer_unless_they_see_more(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    plain = await person(cognito, "plain")
    owner = await person(cognito, "owner")
    await make_business("Public")
    await make_business("Mine, unverified", verified=False, owner=owner.user)
    await names(client)  # warm the public entry

    assert await names(client, plain.headers) == (["Public"], "hit")
    assert await names(client, owner.headers) == (["Mine, unverified", "Public"], None)
    assert await names(client) == (["Public"], "hit")


async def test_viewer_dependent_fields_and_mutations_are_never_cached(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    owner = await person(cognito, "owner")
    business = await make_business("Crumbs", owner=owner.user)
    query = "query ($id: ID!) { business(id: $id) { name viewerIsOwner } }"
    variables = {"id": global_id("Business", business.id)}

    answers = [
        await client.post("/graphql", json={"query": query, "variables": variables}, headers=h)
        for h in (owner.headers, owner.headers, {})
    ]

    assert [a.json()["data"]["business"]["viewerIsOwner"] for a in answers] == [True, True, False]
    assert all("x-popmap-cache" not in a.headers for a in answers)


def test_aged_entries_are_recomputed_by_one_request_while_others_get_them() -> None:
    cache = ResponseCache(max_bytes=MB, max_entry_bytes=MB, ttl=0.0)
    key = cache.key("public", request_key("{ categories { id } }", None))
    body = b'{"data":{"categories":[]}}'
    cache.put(key, 7, body)

    assert cache.get(key, 7) is None  # the first caller recomputes it
    assert cache.get(key, 7) == body  # the others meanwhile get the answer of version 7
    assert cache.get(key, 8) is None  # a write since: never served


def test_an_entry_of_an_older_data_version_is_never_served() -> None:
    cache = ResponseCache(max_bytes=MB, max_entry_bytes=MB, ttl=60.0)
    key = cache.key("public", request_key("{ categories { id } }", None))
    cache.put(key, 7, b'{"data":{"categories":[]}}')

    assert cache.get(key, 8) is None
    assert cache.get(key, 8) is None


async def test_a_mutation_on_one_worker_is_seen_by_every_worker(
    settings: Settings, tmp_path: Path, clean_db: None
) -> None:
    draft = await make_business("Cross-worker draft", verified=False)
    assert settings.database_url is not None
    env = clean_env(DATABASE_URL=settings.database_url, POPMAP_DATA_DIR=str(tmp_path))
    # No pool configured there: the local provider signs the staff token for that server.
    staff = LocalIdentityProvider(tmp_path).mint("staff@example.com", ["staff"])["access_token"]

    before, after = await asyncio.to_thread(
        _read_verify_read, env, staff, global_id("Business", draft.id)
    )

    assert [names_ for names_, _ in before] == [[]] * 20
    assert [names_ for names_, _ in after] == [["Cross-worker draft"]] * 20
    assert [cached for _, cached in before].count("hit") >= 10  # the caches were warm


def _read_verify_read(
    env: dict[str, str], staff_token: str, business_id: str
) -> tuple[list[tuple[list[str], str]], list[tuple[list[str], str]]]:
    fresh = httpx.Limits(max_keepalive_connections=0)  # a new connection: any worker
    with running_server(env, "--workers", "2") as base, httpx.Client(limits=fresh) as http:

        def read() -> tuple[list[str], str]:
            response = http.post(f"{base}/graphql", json={"query": NAMES})
            edges = response.json()["data"]["businesses"]["edges"]
            return [e["node"]["name"] for e in edges], response.headers["x-popmap-cache"]

        before = [read() for _ in range(20)]  # warms both workers' caches
        verified = http.post(
            f"{base}/graphql",
            json={
                "query": "mutation ($id: ID!) { verifyBusiness(id: $id) { business { id } } }",
                "variables": {"id": business_id},
            },
            headers={"Authorization": f"Bearer {staff_token}"},
        )
        assert verified.status_code == 200, verified.text
        assert "errors" not in verified.json(), verified.text
        after = [read() for _ in range(20)]
    return before, after


async def test_version_reads_are_shared_only_by_requests_that_arrived_before_the_read() -> None:
    started = 0
    release = asyncio.Event()

    async def read() -> int:
        nonlocal started
        started += 1
        number = started
        await release.wait()
        return number

    version = DataVersion(read)
    together = [asyncio.ensure_future(version.current()) for _ in range(5)]
    await asyncio.sleep(0)  # the shared read starts on this turn of the loop
    await asyncio.sleep(0)
    latecomer = asyncio.ensure_future(version.current())  # arrives after the read started
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    release.set()

    assert await asyncio.gather(*together) == [1] * 5
    assert await latecomer == 2
    assert version.reads == 2


async def test_very_long_documents_are_answered_but_never_cached(
    client: httpx.AsyncClient,
) -> None:
    await make_business("Crumbs")
    padding = "#" + "x" * LONG_DOCUMENT + "\n"  # a comment: no extra tokens
    query = padding + NAMES

    answers = [await client.post("/graphql", json={"query": query}) for _ in range(2)]

    assert [a.json()["data"]["businesses"]["edges"] for a in answers] == [
        [{"node": {"name": "Crumbs"}}]
    ] * 2
    assert all("x-popmap-cache" not in a.headers for a in answers)


BAKERY_NAMES = '{ businesses(filter: {categorySlugs: ["bakery"]}) { edges { node { name } } } }'


async def bakery_names(client: httpx.AsyncClient, who: Person) -> tuple[list[str], str | None]:
    response = await client.post("/graphql", json={"query": BAKERY_NAMES}, headers=who.headers)
    assert response.status_code == 200, response.text
    edges = response.json()["data"]["businesses"]["edges"]
    return [edge["node"]["name"] for edge in edges], response.headers.get("x-popmap-cache")


async def _until_a_statement_waits_for(watcher: asyncpg.Connection, table: str) -> None:
    """Return once some session of this database waits for a lock on `table`."""
    for _ in range(1000):
        waiting = await watcher.fetchval(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
            " WHERE NOT l.granted AND c.relname = $1"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            table,
        )
        if waiting:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"no statement came to wait for a lock on {table}")


async def test_an_answer_computed_after_the_viewers_own_write_is_never_shared(
    client: httpx.AsyncClient, cognito: FakeCognito, settings: Settings
) -> None:
    """The attackers' race, forced step by step with table locks held by the test.

    The viewer's request reads the data version and finds their view public, then pauses
    on its query (category is locked); meanwhile the viewer's unverified business is
    committed, and the query goes on to see it. Another signed-in person's request, which
    read the data version before that commit, pauses on the check of their own view (event
    is locked) until the viewer's answer is complete, then looks it up. No sleeps: the
    test waits for each request to be blocked on its lock before the next step.
    """
    viewer = await person(cognito, "viewer")
    other = await person(cognito, "other")
    bakery = await make_category("Bakery")
    await make_business("Public bakery", categories=[bakery])
    assert settings.database_url is not None
    credentials = connection_credentials(settings.database_url)
    watcher, writer, scope_lock = [await asyncpg.connect(**credentials) for _ in range(3)]
    try:
        writing = writer.transaction()
        await writing.start()
        await writer.execute("LOCK TABLE category IN ACCESS EXCLUSIVE MODE")
        viewers_read = asyncio.create_task(bakery_names(client, viewer))
        await _until_a_statement_waits_for(watcher, "category")

        holding = scope_lock.transaction()
        await holding.start()
        await scope_lock.execute("LOCK TABLE event IN ACCESS EXCLUSIVE MODE")
        others_read = asyncio.create_task(bakery_names(client, other))
        await _until_a_statement_waits_for(watcher, "event")

        assert viewer.user is not None
        submitted = await writer.fetchval(
            "INSERT INTO business (name, description, contact_email, contact_phone, website,"
            " instagram_url, tiktok_url, available_for_hire, logo_url, is_verified, owner_id,"
            " created_at, updated_at)"
            " VALUES ('Viewer''s secret bakery', '', '', '', '', '', '', false, '', false, $1,"
            " now(), now()) RETURNING id",
            viewer.user.id,
        )
        await writer.execute(
            "INSERT INTO business_category (business_id, category_id) VALUES ($1, $2)",
            submitted,
            bakery.id,
        )
        await writing.commit()  # the viewer's write, and the paused query goes on
        viewers_answer = await viewers_read
        await holding.commit()
        others_answer = await others_read
    finally:
        for connection in (watcher, writer, scope_lock):
            await connection.close()

    assert viewers_answer[0] == ["Public bakery", "Viewer's secret bakery"]
    assert others_answer == (["Public bakery"], "miss")
    assert (await bakery_names(client, ANONYMOUS))[0] == ["Public bakery"]
    assert (await bakery_names(client, other))[0] == ["Public bakery"]
    assert (await bakery_names(client, viewer))[0] == ["Public bakery", "Viewer's secret bakery"]


async def test_an_answer_is_not_stored_under_a_version_that_a_write_passed_while_it_ran(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    """The store-side check, step by step: a request still holding the old version (its
    version read returned before the write committed, its lookup runs after the answer
    was stored: a window of event-loop scheduling that table locks cannot hold open)
    must find nothing."""
    viewer = await person(cognito, "viewer")
    assert viewer.user is not None
    await make_business("Public")
    cached = _store()
    as_viewer = Viewer(user_id=viewer.user.id)
    before_the_write = await cached.slot(as_viewer, NAMES_KEY)
    assert before_the_write is not None  # the viewer's view is the public one

    await make_business("Viewer's draft", verified=False, owner=viewer.user)
    answer = (await client.post("/graphql", json={"query": NAMES}, headers=viewer.headers)).json()
    stored = await cached.put(before_the_write, answer["data"])

    edges = answer["data"]["businesses"]["edges"]
    assert [edge["node"]["name"] for edge in edges] == ["Public", "Viewer's draft"]
    assert stored is False
    assert cached.get(before_the_write) is None
    anonymous = await cached.slot(ANONYMOUS_VIEWER, NAMES_KEY)
    assert anonymous is not None
    assert anonymous.version > before_the_write.version
    public = (await client.post("/graphql", json={"query": NAMES})).json()
    assert await cached.put(anonymous, public["data"]) is True  # no write since: stored
    assert cached.get(anonymous) == orjson.dumps(public)


def test_remembered_private_views_are_of_the_newest_version_and_bounded() -> None:
    views = PrivateViews(max_users=3)
    for user_id in range(1, 6):
        views.remember(user_id, PrivateView(version=7, private=user_id % 2 == 0))
    views.remember(9, PrivateView(version=6, private=False))  # read before a newer one

    assert len(views) == 3
    assert [views.get(user_id, 7) for user_id in range(1, 6)] == [None, None, False, True, False]
    assert views.get(9, 6) is None
    assert views.get(3, 8) is None  # a write since: nobody's view is known
    views.remember(1, PrivateView(version=8, private=True))
    assert len(views) == 1
    assert views.get(1, 8) is True


def test_the_cache_never_holds_more_bytes_than_its_budget() -> None:
    budget, cap = 50_000, 10_000
    cache = ResponseCache(max_bytes=budget, max_entry_bytes=cap, ttl=60.0)
    keys = [
        cache.key("public", request_key(f"{{ q{i} }}", None, b'{"i":%d}' % i)) for i in range(400)
    ]
    sizes = [(i * 7919) % 12_000 for i in range(400)]  # some over the per-entry cap

    for key, size in zip(keys, sizes, strict=True):
        cache.put(key, 1, b"x" * size)
        assert cache.bytes_held <= budget

    costs = [len(key) + size + ENTRY_OVERHEAD for key, size in zip(keys, sizes, strict=True)]
    held = [i for i, key in enumerate(keys) if cache.get(key, 1) is not None]
    assert cache.bytes_held == sum(costs[i] for i in held)
    assert all(costs[i] <= cap for i in held)
    assert cache.bytes_held > budget - cap  # full, but for less than one entry's room
    newest_that_fits = max(i for i, cost in enumerate(costs) if cost <= cap)
    assert held[-1] == newest_that_fits  # least recently used go first


async def test_a_document_over_the_token_limit_is_refused_without_a_cache_lookup(
    client: httpx.AsyncClient,
) -> None:
    # 9,002 tokens within the cacheable length: the cache's check must parse no further
    # than the server's own limit (2,000) before the executor refuses it.
    query = "{" + " a" * 9000 + "}"
    assert len(query) < LONG_DOCUMENT

    response = await client.post("/graphql", json={"query": query})

    assert response.status_code == 200, response.text
    assert [e["extensions"]["code"] for e in response.json()["errors"]] == ["QUERY_TOO_LARGE"]
    assert "x-popmap-cache" not in response.headers


BUDGET, ENTRY_CAP = 20_000, 5_000
DESCRIPTION = "d" * 2_000


def described(alias: str, copies: int = 1) -> str:
    fields = " ".join(f"d{n}: description" for n in range(copies))
    return f"{{ {alias}: businesses {{ edges {{ node {{ {fields} }} }} }} }}"


async def test_the_cache_holds_only_what_its_byte_budget_allows_and_no_large_answer(
    settings: Settings, tmp_path: Path, clean_db: None
) -> None:
    await make_business("Crumbs", description=DESCRIPTION)
    assert settings.database_url is not None
    env = clean_env(
        DATABASE_URL=settings.database_url,
        POPMAP_DATA_DIR=str(tmp_path),
        POPMAP_RESPONSE_CACHE_TTL_SECONDS="3600",  # no entry ages during the test
        POPMAP_RESPONSE_CACHE_MAX_BYTES=str(BUDGET),
        POPMAP_RESPONSE_CACHE_MAX_ENTRY_BYTES=str(ENTRY_CAP),
    )
    queries = [described(f"b{i:02d}") for i in range(12)]

    first, newest_first, large = await asyncio.to_thread(_fill_and_probe, env, queries)

    cost = (
        len(ResponseCache.key("public", request_key(queries[0], None)))
        + first[0][1]
        + ENTRY_OVERHEAD
    )
    assert {size for _, size in first} == {first[0][1]}  # every answer costs the same
    assert [cached for cached, _ in first] == ["miss"] * 12
    resident = BUDGET // cost
    assert resident < 12
    # newest to oldest: the `resident` most recent are hits, the one before is gone
    assert newest_first[: resident + 1] == ["hit"] * resident + ["miss"]
    assert [cached for cached, size in large] == ["miss"] * 3
    assert all(size > ENTRY_CAP for _, size in large)


async def test_with_the_cache_and_the_budgets_off_every_request_is_executed(
    settings: Settings, tmp_path: Path, clean_db: None
) -> None:
    assert settings.database_url is not None
    env = clean_env(
        DATABASE_URL=settings.database_url,
        POPMAP_DATA_DIR=str(tmp_path),
        POPMAP_RESPONSE_CACHE="false",
        POPMAP_BUDGETS="false",
    )
    query = {"query": "{ categories { name } }"}
    with running_server(env) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            before = await http.post("/graphql", json=query)
            await make_category("Bakery")
            after = await http.post("/graphql", json=query)
            refused = await http.post("/graphql", json={"query": "{ categories { nope } }"})

    assert before.json() == {"data": {"categories": []}}
    assert after.json() == {"data": {"categories": [{"name": "Bakery"}]}}
    assert refused.json()["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    for answer in (before, after, refused):
        assert "x-popmap-cache" not in answer.headers
        assert "ratelimit" not in answer.headers


def _fill_and_probe(
    env: dict[str, str], queries: list[str]
) -> tuple[list[tuple[str, int]], list[str], list[tuple[str, int]]]:
    with running_server(env, "--workers", "1") as base, httpx.Client() as http:

        def ask(query: str) -> tuple[str, int]:
            response = http.post(f"{base}/graphql", json={"query": query})
            assert response.status_code == 200, response.text
            assert "errors" not in response.json(), response.text
            return response.headers["x-popmap-cache"], len(response.content)

        first = [ask(query) for query in queries]
        newest_first = [ask(query)[0] for query in reversed(queries)]
        large = [ask(described("big", copies=3)) for _ in range(3)]
    return first, newest_first, large


# --- single flight ------------------------------------------------------------------------

TOGETHER = 5  # identical requests sent while the first one's statement is held


def endpoint_of(app: Starlette) -> GraphQLView:
    view = next(
        route.endpoint
        for route in app.routes
        if isinstance(route, Route) and route.path == "/graphql"
    )
    assert isinstance(view, GraphQLView)
    return view


def response_cache_of(app: Starlette) -> CachedResponses:
    cached = endpoint_of(app).cached
    assert cached is not None
    return cached


def executions(counter: QueryCounter) -> int:
    """Statements that answer the query (not the cache's data-version reads)."""
    return sum("data_version" not in statement for statement in counter.statements)


async def _until(condition: Callable[[], Awaitable[bool]], what: str) -> None:
    for _ in range(1000):
        if await condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never: {what}")


async def _waiting_on_business(watcher: asyncpg.Connection) -> int:
    count: int = await watcher.fetchval(
        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
        " WHERE NOT l.granted AND c.relname = 'business'"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    return count


async def _hold_business(
    settings: Settings,
) -> tuple[asyncpg.Connection, asyncpg.Connection, Transaction]:
    """A watcher, and a connection whose open transaction locks `business`."""
    assert settings.database_url is not None
    credentials = connection_credentials(settings.database_url)
    watcher, holder = [await asyncpg.connect(**credentials) for _ in range(2)]
    holding = holder.transaction()
    await holding.start()
    await holder.execute("LOCK TABLE business IN ACCESS EXCLUSIVE MODE")
    return watcher, holder, holding


async def _send_together(
    client: httpx.AsyncClient, watcher: asyncpg.Connection, cached: CachedResponses
) -> list[asyncio.Task[httpx.Response]]:
    """The first request blocked on the lock, then the others until every one of them is
    either blocked on it too or waiting for the first one's answer."""
    requests = [asyncio.create_task(client.post("/graphql", json={"query": NAMES}))]

    async def first_blocked() -> bool:
        return await _waiting_on_business(watcher) == 1

    await _until(first_blocked, "the first request waits for the lock")
    requests += [
        asyncio.create_task(client.post("/graphql", json={"query": NAMES}))
        for _ in range(TOGETHER - 1)
    ]

    async def all_held() -> bool:
        return await _waiting_on_business(watcher) + cached.waiting == TOGETHER

    await _until(all_held, "every request is held")
    return requests


async def test_identical_requests_during_a_computation_share_its_one_execution(
    client: httpx.AsyncClient, api_app: Starlette, settings: Settings, sql_counter: QueryCounter
) -> None:
    await make_business("Crumbs")
    cached = response_cache_of(api_app)
    watcher, holder, holding = await _hold_business(settings)
    try:
        sql_counter.statements.clear()
        requests = await _send_together(client, watcher, cached)
        await holding.commit()
        answers = await asyncio.gather(*requests)
    finally:
        await watcher.close()
        await holder.close()

    assert executions(sql_counter) == 1
    assert [a.status_code for a in answers] == [200] * TOGETHER
    assert {a.content for a in answers} == {answers[0].content}
    assert answers[0].json()["data"]["businesses"]["edges"] == [{"node": {"name": "Crumbs"}}]
    assert [a.headers["x-popmap-cache"] for a in answers] == ["miss"] + ["hit"] * (TOGETHER - 1)
    assert cached.waiting == 0


async def test_an_answer_a_write_overtook_is_not_shared_and_waiters_recompute_once(
    client: httpx.AsyncClient, api_app: Starlette, settings: Settings, sql_counter: QueryCounter
) -> None:
    """The first request's query runs after a write committed at its version (the lock
    holder's own insert), so its answer is of no single version: the waiters read the
    version again and one of them computes the new version's answer for the others."""
    await make_business("Crumbs")
    cached = response_cache_of(api_app)
    watcher, holder, holding = await _hold_business(settings)
    try:
        sql_counter.statements.clear()
        requests = await _send_together(client, watcher, cached)
        await holder.execute(
            "INSERT INTO business (name, description, contact_email, contact_phone, website,"
            " instagram_url, tiktok_url, available_for_hire, logo_url, is_verified,"
            " created_at, updated_at)"
            " VALUES ('Late', '', '', '', '', '', '', false, '', true, now(), now())"
        )
        await holding.commit()
        answers = await asyncio.gather(*requests)
    finally:
        await watcher.close()
        await holder.close()

    assert executions(sql_counter) == 2  # the first request, then one for the new version
    names_ = [[e["node"]["name"] for e in a.json()["data"]["businesses"]["edges"]] for a in answers]
    assert names_ == [["Crumbs", "Late"]] * TOGETHER
    assert [a.headers["x-popmap-cache"] for a in answers].count("miss") == 2
    assert await names(client) == (["Crumbs", "Late"], "hit")  # the new version's entry


async def test_when_the_computing_request_fails_its_waiters_execute_the_query_themselves(
    client: httpx.AsyncClient, api_app: Starlette, settings: Settings
) -> None:
    await make_business("Crumbs")
    cached = response_cache_of(api_app)
    watcher, holder, holding = await _hold_business(settings)
    try:
        requests = await _send_together(client, watcher, cached)
        cancelled = await watcher.fetchval(
            "SELECT pg_cancel_backend(l.pid) FROM pg_locks l JOIN pg_class c"
            " ON c.oid = l.relation WHERE NOT l.granted AND c.relname = 'business'"
        )
        assert cancelled is True
        first = await requests[0]
        for _ in range(100):  # turns of the loop, not time: none waits for its timeout
            if cached.waiting == 0:
                break
            await asyncio.sleep(0)
        assert cached.waiting == 0

        async def waiters_execute() -> bool:
            return await _waiting_on_business(watcher) == TOGETHER - 1

        await _until(waiters_execute, "the waiters execute the query themselves")
        await holding.commit()
        others = await asyncio.gather(*requests[1:])
    finally:
        await watcher.close()
        await holder.close()

    assert "data" not in first.json() or first.json()["data"] is None
    assert [e["extensions"]["code"] for e in first.json()["errors"]] != []
    assert [o.json()["data"]["businesses"]["edges"] for o in others] == [
        [{"node": {"name": "Crumbs"}}]
    ] * (TOGETHER - 1)
    assert cached.waiting == 0


async def test_a_waiter_that_gives_up_does_not_end_the_computation_for_the_others(
    client: httpx.AsyncClient,
) -> None:
    await make_business("Crumbs")
    cached = _store()
    leader = await cached.lookup(ANONYMOUS_VIEWER, NAMES_KEY)
    assert leader.flight is not None
    assert leader.slot is not None
    quitter = asyncio.create_task(cached.lookup(ANONYMOUS_VIEWER, NAMES_KEY))
    patient = asyncio.create_task(cached.lookup(ANONYMOUS_VIEWER, NAMES_KEY))

    async def both_wait() -> bool:
        return cached.waiting == 2

    await _until(both_wait, "both requests wait for the first one's answer")
    quitter.cancel()
    answer = (await client.post("/graphql", json={"query": NAMES})).json()
    assert await cached.put(leader.slot, answer["data"]) is True
    cached.land(leader)

    assert (await patient).body == orjson.dumps(answer)
    assert quitter.cancelled()
    assert cached.waiting == 0


async def test_a_waiter_executes_the_query_itself_once_the_computation_outlasts_the_timeout(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache_module, "REFRESH_TIMEOUT", 0.2)
    cached = _store()
    leader = await cached.lookup(ANONYMOUS_VIEWER, NAMES_KEY)
    assert leader.flight is not None
    started = time.monotonic()
    waiter = await cached.lookup(ANONYMOUS_VIEWER, NAMES_KEY)  # the leader never lands
    assert 0.15 <= time.monotonic() - started < 5
    assert waiter.slot == leader.slot
    assert waiter.body is None
    assert waiter.flight is None  # it computes the answer without making anyone wait
    assert cached.waiting == 0
    cached.land(leader)


async def test_a_finished_computation_does_not_end_a_newer_one_for_the_same_entry(
    client: httpx.AsyncClient,
) -> None:
    """Answers too large to store are never shared: the first computation ends by its
    put, a second request starts computing the same entry, and the first request's own
    end must leave the second one's waiter waiting."""
    await make_business("Crumbs")
    cached = _store(max_entry_bytes=ENTRY_OVERHEAD)  # no answer fits
    first = await cached.lookup(ANONYMOUS_VIEWER, NAMES_KEY)
    assert first.slot is not None
    answer = (await client.post("/graphql", json={"query": NAMES})).json()
    assert await cached.put(first.slot, answer["data"]) is False  # too large: ends the flight
    second = await cached.lookup(ANONYMOUS_VIEWER, NAMES_KEY)
    assert second.flight is not None
    waiter = asyncio.create_task(cached.lookup(ANONYMOUS_VIEWER, NAMES_KEY))

    async def one_waits() -> bool:
        return cached.waiting == 1

    await _until(one_waits, "a request waits for the second computation")
    cached.land(first)
    for _ in range(100):  # turns of the loop in which a wrongly ended flight would wake it
        await asyncio.sleep(0)
    still_waiting = cached.waiting
    cached.land(second)
    released = await waiter

    assert still_waiting == 1
    assert released.body is None  # nothing to share: it executes the query itself
    assert released.flight is None


# --- known bodies ---------------------------------------------------------------------------


async def post_body(
    client: httpx.AsyncClient, body: bytes, who: Person = ANONYMOUS, content_type: str = ""
) -> httpx.Response:
    headers = {**who.headers, "content-type": content_type or "application/json"}
    return await client.post("/graphql", content=body, headers=headers)


def business_names(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    edges = response.json()["data"]["businesses"]["edges"]
    return [edge["node"]["name"] for edge in edges]


async def test_a_known_body_is_answered_to_each_viewer_from_their_own_view(
    client: httpx.AsyncClient, cognito: FakeCognito, api_app: Starlette
) -> None:
    owner = await person(cognito, "owner")
    staff = await person(cognito, "moderator", groups=("staff",))
    await make_business("Public")
    await make_business("Mine, unverified", verified=False, owner=owner.user)
    body = orjson.dumps({"query": NAMES})

    answers = [
        await post_body(client, body, who)
        for who in (ANONYMOUS, ANONYMOUS, owner, staff, staff, owner, ANONYMOUS)
    ]

    assert endpoint_of(api_app).known.get(body) is not None  # remembered since the first
    both, public = ["Mine, unverified", "Public"], ["Public"]
    assert [business_names(a) for a in answers] == [public, public, both, both, both, both, public]
    assert [a.headers.get("x-popmap-cache") for a in answers] == [
        "miss",
        "hit",
        None,  # the owner sees their draft: never shared
        "miss",  # staff share an entry of their own
        "hit",
        None,
        "hit",
    ]


async def test_a_known_body_is_still_refused_under_a_content_type_we_do_not_execute(
    client: httpx.AsyncClient, api_app: Starlette
) -> None:
    await make_business("Crumbs")
    body = orjson.dumps({"query": NAMES})
    assert business_names(await post_body(client, body)) == ["Crumbs"]
    assert endpoint_of(api_app).known.get(body) is not None

    for content_type in ("text/plain", "application/json; charset=latin-1"):
        refused = await post_body(client, body, content_type=content_type)
        assert refused.status_code == 415, refused.text
        assert refused.json()["errors"][0]["extensions"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert business_names(await post_body(client, body)) == ["Crumbs"]


PAGED = "query ($first: Int) { events(first: $first) { edges { node { businesses { events { id } } } } } }"  # noqa: E501


async def test_a_refused_body_is_refused_every_time_and_never_remembered(
    client: httpx.AsyncClient, api_app: Starlette
) -> None:
    known = endpoint_of(api_app).known
    within = orjson.dumps({"query": PAGED, "variables": {"first": 10}})
    too_costly = orjson.dumps({"query": PAGED, "variables": {"first": 100}})
    invalid = orjson.dumps({"query": "{ businesses { edges { node { nope } } } }"})

    assert (await post_body(client, within)).json() == {"data": {"events": {"edges": []}}}
    assert known.get(within) is not None
    for body, code in ((too_costly, "QUERY_TOO_COSTLY"), (invalid, "GRAPHQL_VALIDATION_FAILED")):
        for _ in range(3):
            refused = await post_body(client, body)
            assert [e["extensions"]["code"] for e in refused.json()["errors"]] == [code]
            assert "x-popmap-cache" not in refused.headers
        assert known.get(body) is None


async def test_a_known_body_with_variables_is_executed_with_them_after_a_write(
    client: httpx.AsyncClient, api_app: Starlette
) -> None:
    crumbs, other = await make_business("Crumbs"), await make_business("Other")
    query = "query ($id: ID!) { business(id: $id) { name } }"

    def lookup(business: Business) -> bytes:
        return orjson.dumps(
            {"query": query, "variables": {"id": global_id("Business", business.id)}}
        )

    def answer(response: httpx.Response) -> tuple[str, str | None]:
        assert response.status_code == 200, response.text
        return response.json()["data"]["business"]["name"], response.headers.get("x-popmap-cache")

    first, again = [answer(await post_body(client, lookup(crumbs))) for _ in range(2)]
    await Business.filter(id=crumbs.id).update(name="Crumbs & Co")  # the version moves
    after_the_write = answer(await post_body(client, lookup(crumbs)))
    others = [answer(await post_body(client, lookup(other))) for _ in range(2)]
    last = answer(await post_body(client, lookup(crumbs)))

    assert endpoint_of(api_app).known.get(lookup(crumbs)) is not None
    assert [first, again, after_the_write, last] == [
        ("Crumbs", "miss"),
        ("Crumbs", "hit"),
        ("Crumbs & Co", "miss"),  # executed again, from the remembered body's own variables
        ("Crumbs & Co", "hit"),
    ]
    assert others == [("Other", "miss"), ("Other", "hit")]


async def test_bodies_over_the_size_kept_are_answered_from_the_cache_but_not_remembered(
    client: httpx.AsyncClient, api_app: Starlette
) -> None:
    await make_business("Crumbs")
    padding = "#" + "x" * MAX_BODY_BYTES + "\n"  # a comment: no extra tokens
    body = orjson.dumps({"query": padding + NAMES})

    answers = [await post_body(client, body) for _ in range(2)]

    assert [business_names(a) for a in answers] == [["Crumbs"]] * 2
    assert [a.headers.get("x-popmap-cache") for a in answers] == ["miss", "hit"]
    assert endpoint_of(api_app).known.get(body) is None


async def test_the_endpoint_remembers_at_most_its_bound_of_bodies(
    client: httpx.AsyncClient, api_app: Starlette
) -> None:
    known = endpoint_of(api_app).known
    query = "query ($s: String) { businesses(filter: {search: $s}) { edges { node { id } } } }"
    bodies = [
        orjson.dumps({"query": query, "variables": {"s": f"n{n}"}}) for n in range(MAX_ENTRIES + 8)
    ]

    for body in bodies:
        response = await post_body(client, body)
        assert response.status_code == 200, response.text

    assert len(known) == MAX_ENTRIES
    assert known.get(bodies[0]) is None  # the least recently used went first
    assert known.get(bodies[-1]) is not None
