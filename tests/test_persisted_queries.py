"""Automatic persisted queries (Apollo's protocol), trusted documents, and how caches on
the way may keep GET answers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import orjson
import pytest
from starlette.applications import Starlette

from popmap_gql.api.documents import LONG_DOCUMENT
from popmap_gql.config import ConfigError, Settings, load_settings
from popmap_gql.db.client import execute, fetch
from popmap_gql.db.orm import connection_credentials
from tests.fake_cognito import POOL_ID, WEB_CLIENT, FakeCognito
from tests.helpers import error_codes, make_category
from tests.people import person
from tests.processes import clean_env, running_server, serve_to_the_end
from tests.test_response_cache import endpoint_of

# What Apollo Client 4's HttpLink sends (selectHttpOptionsAndBody's default headers).
APOLLO_HEADERS = {
    "accept": "application/graphql-response+json,application/json;q=0.9",
    "content-type": "application/json",
}
# The enhanced client awareness HttpLink adds to every request's extensions.
CLIENT_LIBRARY = {"name": "@apollo/client", "version": "4.0.0"}


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def printed_categories_query() -> str:
    """A document as graphql-js's print() writes it (what Apollo's link hashes), made
    unique to the test by its operation name so that no other test registered it."""
    name = "Categories" + uuid.uuid4().hex[:12]
    return f"query {name} {{\n  categories {{\n    name\n  }}\n}}"


def unique(query: str) -> str:
    """The same operation as a text no other test sends (a comment changes the hash)."""
    return f"# {uuid.uuid4()}\n{query}"


def js_json(value: Any) -> str:
    """JSON.stringify's output: no spaces, keys in insertion order."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def encode_uri_component(text: str) -> str:
    return quote(text, safe="!'()*-._~")


def apollo_body(operation_name: str, digest: str, query: str | None = None) -> bytes:
    """The body of the link's POST: operationName, variables, extensions (the client
    library, then the persisted query), then the query when it retries."""
    body: dict[str, Any] = {
        "operationName": operation_name,
        "variables": {},
        "extensions": {
            "clientLibrary": CLIENT_LIBRARY,
            "persistedQuery": {"version": 1, "sha256Hash": digest},
        },
    }
    if query is not None:
        body["query"] = query
    return js_json(body).encode()


def apollo_get_url(operation_name: str, digest: str) -> str:
    """rewriteURIForGET's URL for a hash-only query (useGETForHashedQueries)."""
    extensions = {
        "clientLibrary": CLIENT_LIBRARY,
        "persistedQuery": {"version": 1, "sha256Hash": digest},
    }
    return (
        f"/graphql?operationName={encode_uri_component(operation_name)}"
        f"&variables={encode_uri_component(js_json({}))}"
        f"&extensions={encode_uri_component(js_json(extensions))}"
    )


def hash_only(digest: str) -> dict[str, Any]:
    return {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}}}


def operation_name(printed: str) -> str:
    return printed.split()[1]


async def stored_hashes() -> set[str]:
    rows = await fetch("SELECT hash FROM persisted_query")
    return {row["hash"] for row in rows}


@pytest.fixture
async def empty_store(clean_db: None) -> None:
    """No stored documents (other tests' documents would count against a small bound)."""
    await execute("TRUNCATE persisted_query")


@asynccontextmanager
async def server(
    settings: Settings, data_dir: Path, **env: str
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of `popmap-gql serve` with settings of its own, on the tests' database
    (one app per process: the tests' own is `client`'s)."""
    assert settings.database_url is not None
    environ = clean_env(DATABASE_URL=settings.database_url, POPMAP_DATA_DIR=str(data_dir), **env)
    with running_server(environ) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            yield http


# --- Apollo's createPersistedQueryLink, request for request -----------------------------------


async def test_apollo_link_over_post_registers_on_the_retry_then_sends_hashes_only(
    client: httpx.AsyncClient,
) -> None:
    await make_category("Bakery")
    query = printed_categories_query()
    name, digest = operation_name(query), sha256(query)

    first = await client.post("/graphql", content=apollo_body(name, digest), headers=APOLLO_HEADERS)
    retry = await client.post(
        "/graphql", content=apollo_body(name, digest, query), headers=APOLLO_HEADERS
    )
    later = [
        await client.post("/graphql", content=apollo_body(name, digest), headers=APOLLO_HEADERS)
        for _ in range(2)
    ]

    # The link retries when a message or a code says so, from a 4xx body as from a 200 one.
    assert first.status_code == 404
    assert first.json() == {
        "errors": [
            {
                "message": "PersistedQueryNotFound",
                "extensions": {"code": "PERSISTED_QUERY_NOT_FOUND"},
            }
        ]
    }
    assert retry.status_code == 200, retry.text
    assert retry.json() == {"data": {"categories": [{"name": "Bakery"}]}}
    assert digest in await stored_hashes()
    assert [r.json() for r in later] == [{"data": {"categories": [{"name": "Bakery"}]}}] * 2
    assert [r.headers.get("x-popmap-cache") for r in later] == ["hit", "hit"]


async def test_apollo_link_over_get_sends_hashes_in_the_url_and_retries_by_post(
    client: httpx.AsyncClient,
) -> None:
    await make_category("Bakery")
    query = printed_categories_query()
    name, digest = operation_name(query), sha256(query)
    url = apollo_get_url(name, digest)

    first = await client.get(url, headers=APOLLO_HEADERS)
    # On PERSISTED_QUERY_NOT_FOUND the link sends the text by POST (a long text in a URL
    # could be refused on the way).
    retry = await client.post(
        "/graphql", content=apollo_body(name, digest, query), headers=APOLLO_HEADERS
    )
    again = await client.get(url, headers=APOLLO_HEADERS)

    assert first.status_code == 404
    assert error_codes(first.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
    assert first.headers["cache-control"] == "no-store"  # the next GET may find it
    assert retry.json() == {"data": {"categories": [{"name": "Bakery"}]}}
    assert again.status_code == 200, again.text
    assert again.json() == {"data": {"categories": [{"name": "Bakery"}]}}
    assert again.headers["x-popmap-cache"] == "hit"  # the POST's answer: the same text


async def test_a_persisted_mutation_still_never_runs_over_get(client: httpx.AsyncClient) -> None:
    # Anonymous: refused when executed, but a valid document, so it is stored.
    mutation = unique('mutation { cancelEvent(id: "RXZlbnQ6MQ") { changed } }')
    digest = sha256(mutation)
    registered = await client.post(
        "/graphql", json={"query": mutation, **hash_only(digest)}, headers=APOLLO_HEADERS
    )
    assert registered.status_code == 200, registered.text  # executed (and refused) by POST

    over_get = await client.get(
        "/graphql", params={"extensions": json.dumps(hash_only(digest)["extensions"])}
    )

    assert digest in await stored_hashes()
    assert over_get.status_code == 405
    assert over_get.headers["allow"] == "POST"
    assert error_codes(over_get.json()) == ["METHOD_NOT_ALLOWED"]


# --- refusals -------------------------------------------------------------------------------


async def test_a_text_that_is_not_its_hash_is_refused_and_never_stored(
    client: httpx.AsyncClient,
) -> None:
    query = unique("{ categories { name } }")
    wrong = sha256(query + " ")

    mismatch = await client.post("/graphql", json={"query": query, **hash_only(wrong)})
    by_wrong = await client.post("/graphql", json=hash_only(wrong))
    by_right = await client.post("/graphql", json=hash_only(sha256(query)))

    assert mismatch.status_code == 400
    assert error_codes(mismatch.json()) == ["PERSISTED_QUERY_HASH_MISMATCH"]
    assert "data" not in mismatch.json()
    assert error_codes(by_wrong.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
    assert error_codes(by_right.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
    assert not {wrong, sha256(query)} & await stored_hashes()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"extensions": {"persistedQuery": {"version": 2, "sha256Hash": "ab" * 32}}}, "version"),
        ({"extensions": {"persistedQuery": {"sha256Hash": "ab" * 32}}}, "version"),
        ({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "ab"}}}, "SHA-256"),
        ({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": 7}}}, "SHA-256"),
        ({"extensions": {"persistedQuery": "ab" * 32}}, "must be an object"),
        ({"documentId": "md5:" + "ab" * 16}, "documentId"),
        (
            {"documentId": "cd" * 32, **hash_only("ab" * 32)},
            "name different hashes",
        ),
    ],
)
async def test_malformed_persisted_query_fields_are_coded_bad_requests(
    client: httpx.AsyncClient, body: dict[str, Any], message: str
) -> None:
    response = await client.post("/graphql", json=body)

    assert response.status_code == 400
    assert error_codes(response.json()) == ["BAD_REQUEST"]
    assert message in response.json()["errors"][0]["message"]


async def test_an_invalid_document_is_answered_but_never_stored(client: httpx.AsyncClient) -> None:
    query = unique("{ categories { nope } }")
    digest = sha256(query)

    response = await client.post("/graphql", json={"query": query, **hash_only(digest)})

    assert error_codes(response.json()) == ["GRAPHQL_VALIDATION_FAILED"]
    assert digest not in await stored_hashes()


async def test_document_id_names_a_stored_document_as_graphql_over_http_spells_it(
    client: httpx.AsyncClient,
) -> None:
    await make_category("Bakery")
    query = unique("{ categories { name } }")
    await client.post("/graphql", json={"query": query, **hash_only(sha256(query))})

    prefixed = await client.post("/graphql", json={"documentId": f"sha256:{sha256(query)}"})
    bare = await client.get("/graphql", params={"documentId": sha256(query)})

    assert prefixed.json() == {"data": {"categories": [{"name": "Bakery"}]}}
    assert bare.json() == {"data": {"categories": [{"name": "Bakery"}]}}


# --- the store: shared, bounded ---------------------------------------------------------------


def test_a_document_registered_through_one_server_runs_by_hash_through_another(
    settings: Settings, tmp_path: Path
) -> None:
    assert settings.database_url is not None
    query = unique("{ categories { name } }")
    digest = sha256(query)
    env = clean_env(DATABASE_URL=settings.database_url)

    with (
        running_server({**env, "POPMAP_DATA_DIR": str(tmp_path / "a")}) as one,
        running_server({**env, "POPMAP_DATA_DIR": str(tmp_path / "b")}) as other,
    ):
        before = httpx.post(f"{other}/graphql", json=hash_only(digest), headers=APOLLO_HEADERS)
        registered = httpx.post(
            f"{one}/graphql", json={"query": query, **hash_only(digest)}, headers=APOLLO_HEADERS
        )
        after = httpx.post(f"{other}/graphql", json=hash_only(digest), headers=APOLLO_HEADERS)
        by_get = httpx.get(
            f"{other}/graphql",
            params={"extensions": json.dumps(hash_only(digest)["extensions"])},
            headers=APOLLO_HEADERS,
        )

    assert error_codes(before.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
    assert registered.status_code == 200, registered.text
    assert after.status_code == 200, after.text
    assert after.json() == registered.json()
    assert by_get.json() == registered.json()


async def register(http: httpx.AsyncClient, query: str) -> None:
    response = await http.post("/graphql", json={"query": query, **hash_only(sha256(query))})
    assert response.status_code == 200, response.text


async def test_the_store_keeps_its_bound_evicting_the_least_recently_used_in_batches(
    settings: Settings, tmp_path: Path, empty_store: None
) -> None:
    small = {"POPMAP_APQ_MAX_DOCUMENTS": "4"}  # evicts down to 3 (a tenth, at least one)
    queries = [unique("{ categories { name } }") for _ in range(6)]
    async with server(settings, tmp_path / "one", **small) as http:
        for query in queries[:4]:
            await register(http, query)
        assert await stored_hashes() == {sha256(q) for q in queries[:4]}
        # Last used: the second 4 hours ago, the third 3, the fourth 2, the first 1.
        for hours, query in zip((1, 4, 3, 2), queries, strict=False):
            await execute(
                "UPDATE persisted_query SET last_used = now() - make_interval(hours => $2)"
                " WHERE hash = $1",
                [sha256(query), hours],
            )
        await register(http, queries[4])
        after_fifth = await stored_hashes()
        await register(http, queries[5])
        after_sixth = await stored_hashes()
    # A server that never saw them: evicted hashes are unknown, kept ones run.
    async with server(settings, tmp_path / "other", **small) as fresh:
        evicted = await fresh.post("/graphql", json=hash_only(sha256(queries[1])))
        kept = await fresh.post("/graphql", json=hash_only(sha256(queries[0])))

    # Five is one over the bound: the two least recently used went, three were left...
    assert after_fifth == {sha256(q) for q in (queries[0], queries[3], queries[4])}
    # ...and room for one more before the next eviction.
    assert after_sixth == {sha256(q) for q in (queries[0], queries[3], queries[4], queries[5])}
    assert error_codes(evicted.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
    assert kept.json() == {"data": {"categories": []}}


async def test_a_lookup_records_a_use_so_a_document_in_use_is_not_evicted(
    client: httpx.AsyncClient, settings: Settings, tmp_path: Path
) -> None:
    query = unique("{ categories { name } }")
    await register(client, query)
    await execute(
        "UPDATE persisted_query SET last_used = now() - interval '2 hours' WHERE hash = $1",
        [sha256(query)],
    )

    async with server(settings, tmp_path) as fresh:  # its own copy is empty: it asks the store
        response = await fresh.post("/graphql", json=hash_only(sha256(query)))
    rows = await fetch(
        "SELECT last_used > now() - interval '1 minute' AS recent FROM persisted_query"
        " WHERE hash = $1",
        [sha256(query)],
    )

    assert response.json() == {"data": {"categories": []}}
    assert rows == [{"recent": True}]


async def test_registering_again_within_the_minute_writes_nothing_to_the_store(
    client: httpx.AsyncClient,
) -> None:
    # This process stored it and recorded its use (TOUCH_INTERVAL_SECONDS, a minute): the
    # second registration is answered from its own copy, and the store is left as it is.
    query = unique("{ categories { name } }")
    await register(client, query)
    await execute(
        "UPDATE persisted_query SET last_used = now() - interval '2 hours' WHERE hash = $1",
        [sha256(query)],
    )

    again = await client.post("/graphql", json={"query": query, **hash_only(sha256(query))})
    rows = await fetch(
        "SELECT last_used < now() - interval '1 hour' AS untouched FROM persisted_query"
        " WHERE hash = $1",
        [sha256(query)],
    )

    assert again.json() == {"data": {"categories": []}}
    assert rows == [{"untouched": True}]


async def stored_bytes() -> int:
    rows = await fetch(
        "SELECT COALESCE(sum(octet_length(document)), 0) AS bytes FROM persisted_query"
    )
    return int(rows[0]["bytes"])


async def test_the_store_keeps_its_bound_in_bytes_evicting_the_least_recently_used(
    settings: Settings, tmp_path: Path, empty_store: None
) -> None:
    # Six documents of 15,000 bytes fit in 100,000; a seventh makes the store evict
    # down to 90,000 (a tenth below), one document, the least recently used.
    queries = [unique("#" + "x" * (15_000 - 64) + "\n{ categories { name } }") for _ in range(9)]
    assert {len(q.encode()) for q in queries} == {15_000}
    held: list[int] = []
    async with server(settings, tmp_path, POPMAP_APQ_MAX_BYTES="100000") as http:
        for query in queries:
            await register(http, query)
            held.append(await stored_bytes())

    assert held == [15_000 * n for n in range(1, 7)] + [90_000] * 3
    assert await stored_hashes() == {sha256(q) for q in queries[3:]}


async def test_a_text_past_the_registration_limit_is_refused_coded_and_never_stored(
    client: httpx.AsyncClient, empty_store: None
) -> None:
    query = unique("#" + "x" * LONG_DOCUMENT + "\n{ categories { name } }")

    refused = await client.post("/graphql", json={"query": query, **hash_only(sha256(query))})
    alone = await client.post("/graphql", json={"query": query})  # without its hash, it runs

    assert refused.status_code == 400, refused.text
    assert error_codes(refused.json()) == ["PERSISTED_QUERY_TOO_LARGE"]
    assert "data" not in refused.json()
    assert await stored_hashes() == set()
    assert alone.json() == {"data": {"categories": []}}


# --- remembered bodies ------------------------------------------------------------------------


async def test_an_unknown_hash_only_body_is_never_remembered(
    client: httpx.AsyncClient, api_app: Starlette
) -> None:
    body = orjson.dumps(hash_only(sha256(unique("{ categories { name } }"))))

    answers = [
        await client.post("/graphql", content=body, headers=APOLLO_HEADERS) for _ in range(2)
    ]

    assert [error_codes(a.json()) for a in answers] == [["PERSISTED_QUERY_NOT_FOUND"]] * 2
    assert endpoint_of(api_app).known.get(body) is None


async def test_a_remembered_hash_only_body_is_refused_once_the_store_drops_its_hash(
    settings: Settings, tmp_path: Path, empty_store: None
) -> None:
    first, second, third = (unique("{ categories { name } }") for _ in range(3))
    body = orjson.dumps(hash_only(sha256(first)))
    async with server(settings, tmp_path, POPMAP_APQ_MAX_DOCUMENTS="2") as http:
        await register(http, first)
        answers = [
            await http.post("/graphql", content=body, headers=APOLLO_HEADERS) for _ in range(2)
        ]
        await register(http, second)
        await register(http, third)  # over the bound: the first and the second go
        dropped = await http.post("/graphql", content=body, headers=APOLLO_HEADERS)

    # The body was admitted and answered from the cache (the registration's answer); once
    # its hash is no longer stored anywhere (nor in the server's own copy, never larger
    # than the store), the remembered body is not answered from the cache: the client is
    # asked for the text again.
    assert [a.headers.get("x-popmap-cache") for a in answers] == ["hit", "hit"]
    assert sha256(first) not in await stored_hashes()
    assert dropped.status_code == 404
    assert error_codes(dropped.json()) == ["PERSISTED_QUERY_NOT_FOUND"]


async def test_a_remembered_body_whose_hash_goes_while_it_waits_lets_no_one_wait_for_it(
    client: httpx.AsyncClient, api_app: Starlette, settings: Settings
) -> None:
    # A remembered hash-only body is checked against the store, then looks its answer up
    # (leading the computation others wait for), and only then resolves its document. If
    # the hash went meanwhile (another replica's registrations evicted it), its 404 must
    # still end that computation: else the next request for the same answer waited
    # REFRESH_TIMEOUT (5 s) for it, and the entry stayed in the table of computations.
    query = unique("{ categories { name } }")
    body = orjson.dumps(hash_only(sha256(query)))
    await register(client, query)
    remembered = await client.post("/graphql", content=body, headers=APOLLO_HEADERS)
    assert remembered.headers["x-popmap-cache"] == "hit"
    await make_category("Bakery")  # a write: the next lookup computes the answer
    assert settings.database_url is not None
    credentials = connection_credentials(settings.database_url)
    watcher, holder = [await asyncpg.connect(**credentials) for _ in range(2)]
    try:
        holding = holder.transaction()
        await holding.start()
        await holder.execute("LOCK TABLE data_version IN ACCESS EXCLUSIVE MODE")
        request = asyncio.create_task(client.post("/graphql", content=body, headers=APOLLO_HEADERS))
        for _ in range(1000):  # until it reads the data version, past the store's check
            if await watcher.fetchval(WAITING_ON_DATA_VERSION):
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the request never read the data version")
        await execute("DELETE FROM persisted_query WHERE hash = $1", [sha256(query)])
        endpoint_of(api_app).persisted.local.pop(sha256(query))  # gone from memory too
        await holding.rollback()
        dropped = await request
    finally:
        await watcher.close()
        await holder.close()
    assert error_codes(dropped.json()) == ["PERSISTED_QUERY_NOT_FOUND"]

    started = time.monotonic()
    again = await client.post(
        "/graphql", json={"query": query, **hash_only(sha256(query))}, headers=APOLLO_HEADERS
    )
    assert again.status_code == 200, again.text
    assert time.monotonic() - started < 2


WAITING_ON_DATA_VERSION = (
    "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
    " WHERE NOT l.granted AND c.relname = 'data_version'"
)


async def test_a_registering_body_is_not_remembered_but_the_same_text_alone_is(
    client: httpx.AsyncClient, api_app: Starlette
) -> None:
    query = unique("{ categories { name } }")
    registering = orjson.dumps({"query": query, **hash_only(sha256(query))})
    plain = orjson.dumps({"query": query})

    for body in (registering, plain):
        response = await client.post("/graphql", content=body, headers=APOLLO_HEADERS)
        assert response.status_code == 200, response.text

    known = endpoint_of(api_app).known
    assert known.get(registering) is None  # each registration reaches the store
    remembered = known.get(plain)
    assert remembered is not None
    assert remembered.stored_hash is None


# --- caches on the way ------------------------------------------------------------------------


async def test_an_anonymous_hash_only_get_may_be_kept_by_caches_on_the_way(
    settings: Settings, cognito: FakeCognito, tmp_path: Path, clean_db: None
) -> None:
    await make_category("Bakery")
    ada = await person(cognito, "ada")
    query = unique("{ categories { name } }")
    digest = sha256(query)
    url = f"/graphql?extensions={encode_uri_component(js_json(hash_only(digest)['extensions']))}"
    pool = {
        "AWS_COGNITO_USER_POOL_ID": POOL_ID,
        "AWS_COGNITO_APP_CLIENT_ID": WEB_CLIENT,
        "AWS_COGNITO_JWKS_URL": cognito.jwks_url,
    }
    async with server(settings, tmp_path, POPMAP_HTTP_CACHE_MAX_AGE_SECONDS="30", **pool) as http:
        await register(http, query)
        await make_category("Cafe")  # a write: the registration's cached answer is not served
        miss, hit = [await http.get(url, headers=APOLLO_HEADERS) for _ in range(2)]
        signed_in = await http.get(url, headers={**APOLLO_HEADERS, **ada.headers})
        refused = await http.get(
            "/graphql", params={"query": "{ categories { nope } }"}, headers=APOLLO_HEADERS
        )
        by_post = await http.post("/graphql", json=hash_only(digest), headers=APOLLO_HEADERS)

    for response, cached in ((miss, "miss"), (hit, "hit")):
        assert response.json() == {"data": {"categories": [{"name": "Bakery"}, {"name": "Cafe"}]}}
        assert response.headers["x-popmap-cache"] == cached
        assert response.headers["cache-control"] == "public, max-age=30"
        vary = {name.strip() for name in response.headers["vary"].split(",")}
        assert {"Accept", "Authorization"} <= vary  # (CORS adds Origin)
    assert signed_in.json() == miss.json()
    assert signed_in.headers["cache-control"] == "no-store"  # a token's answers: never shared
    assert refused.headers["cache-control"] == "no-store"
    assert "cache-control" not in by_post.headers  # caches do not keep POST answers


async def test_get_answers_are_not_kept_on_the_way_unless_a_max_age_is_set(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/graphql", params={"query": "{ categories { name } }"})

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"


# --- trusted documents ------------------------------------------------------------------------

KNOWN = unique("query Known {\n  categories {\n    name\n  }\n}")
OTHER = unique("{ categories { slug } }")


def write_manifest(path: Path, entries: Mapping[str, object]) -> Path:
    """persisted-documents.json as graphql-codegen's client preset writes it."""
    path.write_text(json.dumps(dict(entries), indent=2), encoding="utf-8")
    return path


@pytest.fixture
async def trusted(
    settings: Settings, tmp_path: Path, clean_db: None
) -> AsyncIterator[httpx.AsyncClient]:
    manifest = write_manifest(tmp_path / "persisted-documents.json", {sha256(KNOWN): KNOWN})
    async with server(settings, tmp_path / "data", POPMAP_TRUSTED_DOCUMENTS=str(manifest)) as http:
        yield http


async def test_trusted_documents_run_by_hash_or_by_their_text(
    trusted: httpx.AsyncClient,
) -> None:
    await make_category("Bakery")
    expected = {"data": {"categories": [{"name": "Bakery"}]}}

    answers = [
        await trusted.post("/graphql", json=hash_only(sha256(KNOWN))),
        await trusted.post("/graphql", json={"documentId": f"sha256:{sha256(KNOWN)}"}),
        await trusted.post("/graphql", json={"query": KNOWN}),
        await trusted.post("/graphql", json={"query": KNOWN, **hash_only(sha256(KNOWN))}),
        await trusted.get(
            "/graphql", params={"extensions": json.dumps(hash_only(sha256(KNOWN))["extensions"])}
        ),
    ]

    assert [a.json() for a in answers] == [expected] * len(answers)


async def test_anything_else_is_refused_and_nothing_is_registered(
    trusted: httpx.AsyncClient,
) -> None:
    refusals = [
        await trusted.post("/graphql", json={"query": OTHER}),
        await trusted.get("/graphql", params={"query": OTHER}),
        await trusted.post("/graphql", json=hash_only(sha256(OTHER))),
        await trusted.post("/graphql", json={"query": OTHER, **hash_only(sha256(OTHER))}),
    ]

    for refused in refusals:
        assert refused.status_code == 403, refused.text
        assert error_codes(refused.json()) == ["PERSISTED_QUERY_NOT_TRUSTED"]
        assert "data" not in refused.json()
    assert sha256(OTHER) not in await stored_hashes()
    # a manifest's text under another hash: the hash is checked first, as without one
    mismatch = await trusted.post("/graphql", json={"query": KNOWN, **hash_only(sha256(OTHER))})
    assert mismatch.status_code == 400, mismatch.text
    assert error_codes(mismatch.json()) == ["PERSISTED_QUERY_HASH_MISMATCH"]


async def test_graphiql_is_off_with_trusted_documents(trusted: httpx.AsyncClient) -> None:
    page = await trusted.get("/graphql", headers={"Accept": "text/html"})

    assert page.status_code == 404
    assert "graphiql" not in page.text.lower()


def test_the_manifest_is_checked_entry_by_entry(tmp_path: Path) -> None:
    good = {sha256(KNOWN): KNOWN}
    cases: dict[str, tuple[dict[str, object], str]] = {
        "tampered": ({sha256(KNOWN): KNOWN + " "}, f"entry {sha256(KNOWN)!r}"),
        "sha1": ({hashlib.sha1(KNOWN.encode()).hexdigest(): KNOWN}, "hashAlgorithm: 'sha256'"),  # noqa: S324
        "not text": ({**good, sha256("x"): 7}, f"entry {sha256('x')!r}"),
    }
    for name, (entries, message) in cases.items():
        manifest = write_manifest(tmp_path / f"{name}.json", entries)
        with pytest.raises(ConfigError, match="POPMAP_TRUSTED_DOCUMENTS") as raised:
            load_settings({"POPMAP_TRUSTED_DOCUMENTS": str(manifest)}, env_file=None)
        assert message in str(raised.value), name

    for raw, message in (("{", "not JSON"), ("[]", "JSON object")):
        (tmp_path / "bad.json").write_text(raw, encoding="utf-8")
        with pytest.raises(ConfigError, match=message):
            load_settings({"POPMAP_TRUSTED_DOCUMENTS": str(tmp_path / "bad.json")}, env_file=None)
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings({"POPMAP_TRUSTED_DOCUMENTS": str(tmp_path / "none.json")}, env_file=None)
    manifest = write_manifest(tmp_path / "good.json", good)
    with pytest.raises(ConfigError, match="POPMAP_GRAPHIQL"):
        load_settings(
            {"POPMAP_TRUSTED_DOCUMENTS": str(manifest), "POPMAP_GRAPHIQL": "true"}, env_file=None
        )
    loaded = load_settings({"POPMAP_TRUSTED_DOCUMENTS": str(manifest)}, env_file=None)
    assert loaded.trusted_documents == good
    assert not loaded.graphiql_enabled


def test_the_server_refuses_to_start_with_a_bad_manifest_naming_the_entry(
    tmp_path: Path, settings: Settings
) -> None:
    assert settings.database_url is not None
    bad = sha256(KNOWN)
    manifest = write_manifest(tmp_path / "persisted-documents.json", {bad: KNOWN + "x"})
    env = clean_env(
        DATABASE_URL=settings.database_url,
        POPMAP_DATA_DIR=str(tmp_path),
        POPMAP_TRUSTED_DOCUMENTS=str(manifest),
    )

    result = serve_to_the_end(env)

    assert result.returncode == 2
    assert "POPMAP_TRUSTED_DOCUMENTS" in result.stderr
    assert bad in result.stderr
