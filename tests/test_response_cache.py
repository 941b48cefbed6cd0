"""The response cache never serves data older than the last committed write."""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
import httpx

from popmap_gql.api.cache import MAX_CACHED_QUERY_LENGTH, DataVersion, ResponseCache
from popmap_gql.auth.local_idp import LocalIdentityProvider
from popmap_gql.config import Settings
from popmap_gql.db.models import Business
from popmap_gql.db.orm import connection_credentials
from tests.fake_cognito import FakeCognito
from tests.helpers import global_id, make_business, make_category
from tests.people import ANONYMOUS, Person, person
from tests.processes import clean_env, running_server

NAMES = "{ businesses { edges { node { name } } } }"
MB = 1024 * 1024


async def names(
    client: httpx.AsyncClient, headers: dict[str, str] | None = None
) -> tuple[list[str], str | None]:
    response = await client.post("/graphql", json={"query": NAMES}, headers=headers)
    assert response.status_code == 200, response.text
    edges = response.json()["data"]["businesses"]["edges"]
    return [edge["node"]["name"] for edge in edges], response.headers.get("x-popmap-cache")


async def test_repeated_anonymous_query_is_served_from_the_cache(
    client: httpx.AsyncClient,
) -> None:
    await make_business("Crumbs")

    first = await names(client)
    second = await names(client)

    assert first == (["Crumbs"], "miss")
    assert second == (["Crumbs"], "hit")


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
    key = cache.key("public", "{ categories { id } }", None, None)
    body = b'{"data":{"categories":[]}}'
    cache.put(key, 7, body)

    assert cache.get(key, 7) is None  # the first caller recomputes it
    assert cache.get(key, 7) == body  # the others meanwhile get the answer of version 7
    assert cache.get(key, 8) is None  # a write since: never served


def test_an_entry_of_an_older_data_version_is_never_served() -> None:
    cache = ResponseCache(max_bytes=MB, max_entry_bytes=MB, ttl=60.0)
    key = cache.key("public", "{ categories { id } }", None, None)
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
    padding = "#" + "x" * MAX_CACHED_QUERY_LENGTH + "\n"  # a comment: no extra tokens
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
    committed. Another signed-in person's request reads the same old version and pauses
    on its scope check (event is locked) until the viewer's answer is complete.
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
