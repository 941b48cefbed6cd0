"""The HTTP surface: health, CORS, hosts, GET, GraphiQL, media types, limits and masking."""

from __future__ import annotations

import json
import logging
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tortoise.connection import connections

from popmap_gql.config import Settings
from tests.conftest import run_cli
from tests.helpers import error_codes, global_id, gql, make_business, make_category
from tests.processes import clean_env, running_server

DEV_ORIGIN = "http://localhost:5173"


async def test_healthz_and_readyz_answer_when_the_database_is_up(
    client: httpx.AsyncClient,
) -> None:
    health = await client.get("/healthz")
    ready = await client.get("/readyz")

    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


def test_readyz_is_503_once_the_database_is_gone(tmp_path: Path) -> None:
    env = clean_env(POPMAP_DATA_DIR=str(tmp_path))
    run_cli("migrate", env=env)  # serve refuses a database without its tables
    with running_server(env) as base:
        assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200

        pid = int((tmp_path / "pgdata" / "postmaster.pid").read_text().split()[0])
        os.kill(pid, signal.SIGINT)  # PostgreSQL's fast shutdown
        deadline = time.monotonic() + 15
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)

        ready = httpx.get(f"{base}/readyz", timeout=10)
        health = httpx.get(f"{base}/healthz", timeout=10)
        assert (ready.status_code, ready.json()) == (503, {"status": "unavailable"})
        assert health.status_code == 200


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# --- CORS and hosts ---------------------------------------------------------------------


async def test_cors_preflight_from_the_react_dev_server_is_allowed(
    client: httpx.AsyncClient,
) -> None:
    response = await client.options(
        "/graphql",
        headers={
            "Origin": DEV_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == DEV_ORIGIN
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed
    assert "content-type" in allowed
    assert "POST" in response.headers["access-control-allow-methods"]


async def test_cors_response_exposes_www_authenticate(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", json={"query": "{ categories { id } }"}, headers={"Origin": DEV_ORIGIN}
    )

    assert response.headers["access-control-allow-origin"] == DEV_ORIGIN
    assert "www-authenticate" in response.headers["access-control-expose-headers"].lower()


async def test_cors_preflight_from_an_unknown_origin_is_refused(
    client: httpx.AsyncClient,
) -> None:
    response = await client.options(
        "/graphql",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )

    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


async def test_unknown_host_header_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", json={"query": "{ categories { id } }"}, headers={"Host": "evil.example"}
    )

    assert response.status_code == 400


# --- GET, GraphiQL, media types, persisted queries -----------------------------------------


async def test_get_runs_queries_with_urql_style_encoding(client: httpx.AsyncClient) -> None:
    await make_category("Bakery")

    # urql encodes spaces as "+", Apollo as "%20"; variables travel as a JSON string
    response = await client.get(
        "/graphql?query=query+%28%24n%3A+Int%29+%7B+businesses%28first%3A+%24n%29+%7B+totalCount"
        "+%7D+categories+%7B+name+%7D+%7D&variables=%7B%22n%22%3A1%7D",
        headers={"content-type": "application/json"},
    )

    assert response.status_code == 200
    assert response.json() == {
        "data": {"businesses": {"totalCount": 0}, "categories": [{"name": "Bakery"}]}
    }


async def test_get_never_runs_mutations(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", params={"query": "mutation { __typename }"})

    assert response.status_code == 405
    assert error_codes(response.json()) == ["METHOD_NOT_ALLOWED"]


@pytest.mark.parametrize("method", ["HEAD", "PUT", "DELETE", "PATCH"])
async def test_other_methods_are_not_allowed(client: httpx.AsyncClient, method: str) -> None:
    response = await client.request(method, "/graphql", params={"query": "{ categories { id } }"})

    assert response.status_code == 405


async def test_browsers_get_graphiql(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", headers={"Accept": "text/html"})

    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


def test_graphiql_can_be_turned_off(tmp_path: Path, settings: Settings) -> None:
    assert settings.database_url is not None
    env = clean_env(
        POPMAP_GRAPHIQL="false", DATABASE_URL=settings.database_url, POPMAP_DATA_DIR=str(tmp_path)
    )
    with running_server(env) as base:
        page = httpx.get(f"{base}/graphql", headers={"Accept": "text/html"})
        query = httpx.get(f"{base}/graphql", params={"query": "{ categories { id } }"})

    assert page.status_code == 404
    assert "graphiql" not in page.text.lower()
    assert query.status_code == 200


async def test_answers_in_graphql_response_json_when_asked(client: httpx.AsyncClient) -> None:
    apollo_accept = "application/graphql-response+json, application/json;q=0.9"
    ok = await client.post(
        "/graphql", json={"query": "{ categories { id } }"}, headers={"Accept": apollo_accept}
    )
    bad = await client.post("/graphql", content=b"{not json", headers={"Accept": apollo_accept})
    plain = await client.post("/graphql", json={"query": "{ categories { id } }"})

    assert ok.headers["content-type"].startswith("application/graphql-response+json")
    assert bad.status_code == 400
    assert bad.headers["content-type"].startswith("application/graphql-response+json")
    assert error_codes(bad.json()) == ["BAD_REQUEST"]
    assert plain.headers["content-type"].startswith("application/json")


async def test_unknown_request_extensions_are_ignored(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        json={
            "query": "{ categories { id } }",
            "extensions": {"clientLibrary": {"name": "@apollo/client", "version": "4.0.0"}},
        },
    )

    assert response.json() == {"data": {"categories": []}}


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_hash_only_persisted_query_is_answered_not_supported(
    client: httpx.AsyncClient, method: str
) -> None:
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": "ab" * 32}}
    if method == "GET":
        response = await client.get(
            "/graphql",
            params={"extensions": json.dumps(extensions)},
            headers={"Accept": "text/html, application/json"},
        )
    else:
        response = await client.post("/graphql", json={"extensions": extensions})

    assert response.status_code == 200
    body = response.json()
    assert body["errors"][0]["message"] == "PersistedQueryNotSupported"
    assert error_codes(body) == ["PERSISTED_QUERY_NOT_SUPPORTED"]


async def test_request_without_query_is_a_coded_bad_request(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"variables": {}})

    assert response.status_code == 400
    assert error_codes(response.json()) == ["BAD_REQUEST"]


@pytest.mark.parametrize(
    ("content", "content_type", "message"),
    [
        (b'"{ categories { id } }"', "application/json", "must be a JSON object"),
        (b"42", "application/json", "must be a JSON object"),
        (b'[{"query": "{ categories { id } }"}]', "application/json", "Batching is not enabled"),
        (b"{ categories { id } }", "application/graphql", "Unsupported content type"),
        (b'{"query": 7}', "application/json", "`query` must be a string"),
        (
            b'{"query": "{ categories { id } }", "variables": [1]}',
            "application/json",
            "`variables`",
        ),
        (
            b'{"query": "{ categories { id } }", "operationName": 1}',
            "application/json",
            "`operationName`",
        ),
        (
            b'{"query": "{ categories { id } }", "extensions": "x"}',
            "application/json",
            "`extensions`",
        ),
        (
            b'{"query": "query A { categories { id } }", "operationName": "B"}',
            "application/json",
            'Unknown operation named "B"',
        ),
    ],
)
async def test_malformed_requests_are_coded_bad_requests(
    client: httpx.AsyncClient, content: bytes, content_type: str, message: str
) -> None:
    response = await client.post(
        "/graphql", content=content, headers={"content-type": content_type}
    )

    assert response.status_code == 400
    body = response.json()
    assert error_codes(body) == ["BAD_REQUEST"]
    assert message in body["errors"][0]["message"]


async def test_get_with_malformed_variables_is_a_coded_bad_request(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        "/graphql", params={"query": "{ categories { id } }", "variables": "{nope"}
    )

    assert response.status_code == 400
    assert error_codes(response.json()) == ["BAD_REQUEST"]


async def test_syntax_and_validation_errors_carry_codes(client: httpx.AsyncClient) -> None:
    syntax = await gql(client, "{ categories { id }")
    unknown = await gql(client, "{ nonsense }")

    assert error_codes(syntax) == ["GRAPHQL_PARSE_FAILED"]
    assert error_codes(unknown) == ["GRAPHQL_VALIDATION_FAILED"]


# --- limits -----------------------------------------------------------------------------


def _nested(depth: int) -> str:
    """A query whose deepest field sits at `depth` (the root field is depth 0)."""
    fields = ["business(id: $id)"] + ["events" if n % 2 else "businesses" for n in range(1, depth)]
    opening = " { ".join(fields)
    return f"query ($id: ID!) {{ {opening} {{ id{' }' * len(fields)} }}"


async def test_query_depth_is_limited(client: httpx.AsyncClient, settings: Settings) -> None:
    business = await make_business("Shop")
    variables = {"id": global_id("Business", business.id)}

    at_limit = await gql(client, _nested(settings.max_query_depth), variables)
    past_limit = await gql(client, _nested(settings.max_query_depth + 1), variables)

    assert "errors" not in at_limit, at_limit
    assert error_codes(past_limit) == ["QUERY_TOO_DEEP"]
    assert past_limit.get("data") is None


async def test_aliases_are_limited(client: httpx.AsyncClient, settings: Settings) -> None:
    def aliased(count: int) -> str:
        return "{ " + " ".join(f"a{n}: categories {{ id }}" for n in range(count)) + " }"

    at_limit = await gql(client, aliased(settings.max_aliases))
    past_limit = await gql(client, aliased(settings.max_aliases + 1))

    assert "errors" not in at_limit
    assert error_codes(past_limit) == ["TOO_MANY_ALIASES"]


async def test_tokens_are_limited(client: httpx.AsyncClient, settings: Settings) -> None:
    def with_tokens(count: int) -> str:
        # "query Qn { categories { id } }" is 8 tokens; extra "id"s top up the first one.
        # (Thousands of repeated fields in one selection would trip graphql-core's
        # overlapping-fields check instead, so the filler is separate operations.)
        operations = [f"query Q{n} {{ categories {{ id }} }}" for n in range(count // 8)]
        operations[0] = operations[0].replace("{ id }", "{ id" + " id" * (count % 8) + " }")
        return "\n".join(operations)

    async def post(query: str) -> dict[str, Any]:
        response = await client.post("/graphql", json={"query": query, "operationName": "Q0"})
        body: dict[str, Any] = response.json()
        return body

    at_limit = await post(with_tokens(settings.max_tokens))
    past_limit = await post(with_tokens(settings.max_tokens + 1))

    assert at_limit == {"data": {"categories": []}}
    assert error_codes(past_limit) == ["QUERY_TOO_LARGE"]


def _body_of_size(size: int) -> bytes:
    head = b'{"query":"{ categories { id } }","variables":{"pad":"'
    tail = b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


async def test_request_body_is_limited(client: httpx.AsyncClient, settings: Settings) -> None:
    limit = settings.max_body_bytes
    headers = {"content-type": "application/json"}

    at_limit = await client.post("/graphql", content=_body_of_size(limit), headers=headers)
    past_limit = await client.post("/graphql", content=_body_of_size(limit + 1), headers=headers)

    assert at_limit.status_code == 200
    assert at_limit.json() == {"data": {"categories": []}}
    assert past_limit.status_code == 413
    assert error_codes(past_limit.json()) == ["PAYLOAD_TOO_LARGE"]


async def test_streamed_body_without_length_is_limited(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    body = _body_of_size(settings.max_body_bytes + 1)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    response = await client.post(
        "/graphql", content=chunks(), headers={"content-type": "application/json"}
    )

    assert response.status_code == 413
    assert error_codes(response.json()) == ["PAYLOAD_TOO_LARGE"]


# --- masking ----------------------------------------------------------------------------


async def test_unexpected_errors_are_masked_for_the_client_and_logged_in_full(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    db = connections.get("default")
    # A real failure below our code: the table vanished under a running server.
    await db.execute_script("ALTER TABLE category RENAME TO category_moved_away")
    try:
        with caplog.at_level(logging.ERROR, logger="popmap_gql.errors"):
            response = await client.post("/graphql", json={"query": "{ categories { id } }"})
    finally:
        await db.execute_script("ALTER TABLE category_moved_away RENAME TO category")

    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None
    assert body["errors"] == [
        {
            "message": "Internal server error",
            "locations": [{"line": 1, "column": 3}],
            "path": ["categories"],
            "extensions": {"code": "INTERNAL_SERVER_ERROR"},
        }
    ]
    assert "category" not in json.dumps(body["errors"][0]["message"])
    [record] = [r for r in caplog.records if r.name == "popmap_gql.errors"]
    assert record.exc_info is not None
    assert "category" in str(record.exc_info[1])
    assert "Traceback" in caplog.text


async def test_expected_errors_are_not_logged_as_incidents(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        body = await gql(
            client,
            "query ($id: ID!) { business(id: $id) { id } }",
            {"id": global_id("Business", 12345)},
        )

    assert error_codes(body) == ["NOT_FOUND"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
