"""The HTTP surface: health, CORS, hosts, GET, GraphiQL, media types, limits and masking."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tortoise.connection import connections

from popmap_gql.config import Settings
from popmap_gql.db.models import Business
from popmap_gql.http.view import GRAPHQL_RESPONSE_JSON
from tests.conftest import run_cli
from tests.fake_cognito import FakeCognito
from tests.helpers import error_codes, global_id, gql, make_business, make_category
from tests.people import person
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


def test_graphiql_is_off_by_default_once_a_user_pool_is_configured(
    tmp_path: Path, settings: Settings
) -> None:
    assert settings.database_url is not None
    env = clean_env(
        DATABASE_URL=settings.database_url,
        POPMAP_DATA_DIR=str(tmp_path),
        AWS_COGNITO_USER_POOL_ID="us-east-1_RealPool1",
        AWS_COGNITO_APP_CLIENT_ID="web",
    )
    with running_server(env) as base:
        page = httpx.get(f"{base}/graphql", headers={"Accept": "text/html"})

    assert page.status_code == 404
    assert "graphiql" not in page.text.lower()


async def test_answers_in_graphql_response_json_when_asked(client: httpx.AsyncClient) -> None:
    apollo_accept = "application/graphql-response+json, application/json;q=0.9"
    ok = await client.post(
        "/graphql", json={"query": "{ categories { id } }"}, headers={"Accept": apollo_accept}
    )
    bad = await client.post(
        "/graphql",
        content=b"{not json",
        headers={"Accept": apollo_accept, "content-type": "application/json"},
    )
    plain = await client.post("/graphql", json={"query": "{ categories { id } }"})

    assert ok.headers["content-type"].startswith("application/graphql-response+json")
    assert bad.status_code == 400
    assert bad.headers["content-type"].startswith("application/graphql-response+json")
    assert error_codes(bad.json()) == ["BAD_REQUEST"]
    assert plain.headers["content-type"].startswith("application/json")


@pytest.mark.parametrize(
    ("accept", "answered_in"),
    [
        # a q that is not a number counts as 0: the other type wins
        ("application/json;q=abc, application/graphql-response+json;q=0.5", "graphql-response"),
        ("application/graphql-response+json;q=x, application/json;q=0.1", "json"),
        # longer than the values remembered (256 characters): negotiated all the same
        ("text/html;q=0.9, " * 20 + "application/graphql-response+json", "graphql-response"),
        ("text/html;q=0.9, " * 20 + "application/json", "json"),
        # q=0 is "not acceptable" (RFC 9110 section 12.4.2): never the type answered in
        ("application/graphql-response+json;q=0", "json"),
        ("application/graphql-response+json;q=0, application/json;q=0", "json"),
    ],
    ids=["bad-q-json", "bad-q-graphql", "long-graphql", "long-json", "q0-alone", "q0-both"],
)
async def test_accept_is_negotiated_whatever_its_length_or_malformed_q(
    client: httpx.AsyncClient, accept: str, answered_in: str
) -> None:
    response = await client.post(
        "/graphql", json={"query": "{ categories { id } }"}, headers={"Accept": accept}
    )

    assert response.status_code == 200
    expected = {"json": "application/json", "graphql-response": GRAPHQL_RESPONSE_JSON}
    assert response.headers["content-type"].split(";")[0] == expected[answered_in]


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
async def test_unknown_hash_only_persisted_query_is_answered_not_found(
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

    # A request error: 4xx and no data entry (GraphQL over HTTP); Apollo's link reads the
    # message and code from the body of a 4xx answer too, then sends the text.
    assert response.status_code == 404
    body = response.json()
    assert body["errors"][0]["message"] == "PersistedQueryNotFound"
    assert error_codes(body) == ["PERSISTED_QUERY_NOT_FOUND"]
    assert "data" not in body
    assert response.headers["cache-control"] == "no-store"


async def test_apollo_persisted_query_retry_with_the_text_runs_it_and_registers_it(
    client: httpx.AsyncClient,
) -> None:
    await make_category("Bakery")
    query = f"# {uuid.uuid4()}\n{{ categories {{ name }} }}"
    digest = hashlib.sha256(query.encode()).hexdigest()
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    apollo_accept = "application/graphql-response+json, application/json;q=0.9"

    first = await client.post(
        "/graphql", json={"extensions": extensions}, headers={"Accept": apollo_accept}
    )
    # The link retries with the query, still sending the extension while it is enabled.
    retry = await client.post(
        "/graphql",
        json={"query": query, "extensions": extensions},
        headers={"Accept": apollo_accept},
    )
    hash_only = await client.post(
        "/graphql", json={"extensions": extensions}, headers={"Accept": apollo_accept}
    )

    assert first.headers["content-type"].startswith("application/graphql-response+json")
    assert error_codes(first.json()) == ["PERSISTED_QUERY_NOT_FOUND"]
    assert retry.status_code == 200
    assert retry.json() == {"data": {"categories": [{"name": "Bakery"}]}}
    assert hash_only.status_code == 200
    assert hash_only.json() == {"data": {"categories": [{"name": "Bakery"}]}}


async def test_request_without_query_is_a_coded_bad_request(client: httpx.AsyncClient) -> None:
    response = await client.post("/graphql", json={"variables": {}})

    assert response.status_code == 400
    assert error_codes(response.json()) == ["BAD_REQUEST"]


async def test_an_empty_query_is_a_coded_bad_request(client: httpx.AsyncClient) -> None:
    posted = await client.post("/graphql", json={"query": ""})
    got = await client.get("/graphql", params={"query": ""})

    for response in (posted, got):
        assert response.status_code == 400
        assert response.json() == {
            "errors": [
                {
                    "message": "No GraphQL query found in the request",
                    "extensions": {"code": "BAD_REQUEST"},
                }
            ]
        }


@pytest.mark.parametrize(
    ("content", "content_type", "message"),
    [
        (b'"{ categories { id } }"', "application/json", "must be a JSON object"),
        (b"42", "application/json", "must be a JSON object"),
        (b'[{"query": "{ categories { id } }"}]', "application/json", "Batching is not enabled"),
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


# --- Content-Type: the CSRF guard -------------------------------------------------------

SUBMIT = 'mutation { submitBusiness(input: { name: "Forged" }) { business { id } } }'


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;Charset=UTF-8",
        'application/json; charset="utf-8"',
        "application/json;",
        'application/json; profile="a;b"; charset=utf-8',
        "application/graphql-response+json",
        "application/vnd.popmap+json",
    ],
)
async def test_post_with_a_json_media_type_is_executed(
    client: httpx.AsyncClient, content_type: str
) -> None:
    response = await client.post(
        "/graphql",
        content=b'{"query": "{ categories { id } }"}',
        headers={"content-type": content_type},
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"categories": []}}


@pytest.mark.parametrize(
    "content_type",
    [
        # what a cross-site form or fetch may send without a CORS preflight
        "text/plain;application/json",
        "text/plain; charset=application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=application/json",
        # not JSON, or not one media type
        "application/graphql",
        "application/jsonp",
        "application/+json",
        "text/json",
        "application/json, text/plain",
        "application/json text/plain",
        "application/json; charset",
        "json",
        "application/",
        "/json",
        # JSON, but not in UTF-8
        "application/json; charset=iso-8859-1",
        # longer than any real one: refused before any parsing
        "application/json; padding=" + "a" * 300,
    ],
)
async def test_post_in_another_media_type_is_415_and_runs_nothing(
    client: httpx.AsyncClient, cognito: FakeCognito, content_type: str
) -> None:
    owner = await person(cognito, "owner")

    response = await client.post(
        "/graphql",
        content=json.dumps({"query": SUBMIT}).encode(),
        headers={"content-type": content_type, **owner.headers},
    )

    assert response.status_code == 415, response.text
    body = response.json()
    assert error_codes(body) == ["UNSUPPORTED_MEDIA_TYPE"]
    assert "data" not in body
    assert await Business.all().count() == 0


async def test_post_without_content_type_is_415(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    owner = await person(cognito, "owner")

    response = await client.post(
        "/graphql", content=json.dumps({"query": SUBMIT}).encode(), headers=owner.headers
    )

    assert "content-type" not in response.request.headers
    assert response.status_code == 415
    assert error_codes(response.json()) == ["UNSUPPORTED_MEDIA_TYPE"]
    assert await Business.all().count() == 0


async def test_get_ignores_content_type(client: httpx.AsyncClient) -> None:
    # urql and Apollo send content-type: application/json on GET; a GET has no body to judge
    response = await client.get(
        "/graphql",
        params={"query": "{ categories { id } }"},
        headers={"content-type": "text/plain"},
    )

    assert response.json() == {"data": {"categories": []}}


# --- 405 and request errors -----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("PUT", "/graphql", {"GET", "POST"}),
        ("DELETE", "/graphql", {"GET", "POST"}),
        ("PATCH", "/graphql", {"GET", "POST"}),
        ("OPTIONS", "/graphql", {"GET", "POST"}),  # not a CORS preflight
        ("HEAD", "/graphql", {"GET", "POST"}),
        ("POST", "/healthz", {"GET", "HEAD"}),
        ("DELETE", "/readyz", {"GET", "HEAD"}),
    ],
)
async def test_every_405_names_the_allowed_methods(
    client: httpx.AsyncClient, method: str, path: str, allowed: set[str]
) -> None:
    response = await client.request(method, path, params={"query": "{ categories { id } }"})

    assert response.status_code == 405
    assert {m.strip() for m in response.headers["allow"].split(",")} == allowed
    if method != "HEAD":  # a HEAD answer has no body
        body = response.json()
        assert error_codes(body) == ["METHOD_NOT_ALLOWED"]
        assert "data" not in body


async def test_mutation_over_get_is_405_allowing_post(client: httpx.AsyncClient) -> None:
    response = await client.get("/graphql", params={"query": "mutation { __typename }"})

    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert "data" not in response.json()


async def test_unknown_path_is_a_coded_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/nothing-here")

    assert response.status_code == 404
    assert error_codes(response.json()) == ["NOT_FOUND"]


def _request_errors(limit: int) -> dict[str, dict[str, Any]]:
    """Requests refused before execution, and the status each gets."""
    json_type = {"content-type": "application/json"}
    query = {"query": "{ categories { id } }"}
    return {
        "unparsable JSON": {"status": 400, "content": b"{nope", "headers": json_type},
        "no query": {"status": 400, "json": {"variables": {}}},
        "unknown hash-only persisted query": {
            "status": 404,
            "json": {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "ab" * 32}}},
        },
        "bad token": {"status": 401, "json": query, "headers": {"Authorization": "Bearer x.y.z"}},
        "body too large": {
            "status": 413,
            "content": b'{"query": "' + b" " * limit + b'{ categories { id } }"}',
            "headers": json_type,
        },
        "form body": {
            "status": 415,
            "content": b"query=%7B+categories+%7B+id+%7D+%7D",
            "headers": {"content-type": "application/x-www-form-urlencoded"},
        },
    }


@pytest.mark.parametrize("case", list(_request_errors(0)))
@pytest.mark.parametrize(
    "accept", ["application/json", "application/graphql-response+json, application/json;q=0.9"]
)
async def test_request_errors_carry_no_data_entry(
    client: httpx.AsyncClient, settings: Settings, case: str, accept: str
) -> None:
    request = _request_errors(settings.max_body_bytes)[case]
    status = request.pop("status")
    headers = {"Accept": accept, **request.pop("headers", {})}

    response = await client.post("/graphql", headers=headers, **request)

    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"errors"}, body
    assert body["errors"][0]["extensions"]["code"]


_DOCUMENT_REQUEST_ERRORS = {
    "syntax": ({"query": "{ categories { name }"}, "GRAPHQL_PARSE_FAILED"),
    "validation": ({"query": "{ categories { nope } }"}, "GRAPHQL_VALIDATION_FAILED"),
    "variables": (
        {"query": "query ($n: Int!) { events(first: $n) { totalCount } }", "variables": {}},
        "BAD_USER_INPUT",
    ),
}


@pytest.mark.parametrize("case", sorted(_DOCUMENT_REQUEST_ERRORS))
@pytest.mark.parametrize(
    ("accept", "status"),
    [("application/graphql-response+json", 400), ("application/json", 200)],
)
async def test_a_document_refused_before_execution_has_no_data_entry(
    client: httpx.AsyncClient, case: str, accept: str, status: int
) -> None:
    payload, code = _DOCUMENT_REQUEST_ERRORS[case]

    response = await client.post("/graphql", json=payload, headers={"Accept": accept})

    # GraphQL over HTTP: its own media type says 4xx when nothing ran; plain JSON stays 200.
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"errors"}, body
    assert error_codes(body) == [code]


async def test_a_field_error_keeps_the_data_entry(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        json={
            "query": "query ($id: ID!) { business(id: $id) { name } categories { name } }",
            "variables": {"id": global_id("Business", 999_999)},
        },
        headers={"Accept": "application/graphql-response+json"},
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["data"] == {"business": None, "categories": []}
    assert error_codes(body) == ["NOT_FOUND"]


# --- limits -----------------------------------------------------------------------------


def _nested(depth: int) -> str:
    """A query whose deepest field sits at `depth` (the root field is depth 0)."""
    fields = ["business(id: $id)"] + ["events" if n % 2 else "businesses" for n in range(1, depth)]
    opening = " { ".join(fields)
    return f"query ($id: ID!) {{ {opening} {{ id{' }' * len(fields)} }}"


async def test_query_depth_is_limited(
    client: httpx.AsyncClient, database_url: str, tmp_path: Path
) -> None:
    business = await make_business("Shop")
    variables = {"id": global_id("Business", business.id)}
    # Nine nested lists cost far more than the default cost limits allow, so the depth
    # limit is shown on a server whose cost limits are out of the way.
    env = clean_env(
        DATABASE_URL=database_url,
        POPMAP_DATA_DIR=str(tmp_path),
        POPMAP_MAX_QUERY_COST=str(2**53 - 1),
        POPMAP_MAX_DATABASE_COST=str(2**53 - 1),
    )
    depth = Settings().max_query_depth

    with running_server(env) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as roomy:
            at_limit = await gql(roomy, _nested(depth), variables)
            past_limit = await gql(roomy, _nested(depth + 1), variables)

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


async def test_an_unexpected_error_while_authenticating_is_a_masked_500_in_graphqls_shape(
    client: httpx.AsyncClient, cognito: FakeCognito, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"new-{uuid.uuid4().hex[:8]}"  # nobody the server has seen: it looks them up
    token = cognito.id_token(
        sub=str(uuid.uuid4()), email=f"{name}@example.com", **{"cognito:username": name}
    )
    db = connections.get("default")
    # A real failure below our code, outside GraphQL execution: the table vanished.
    await db.execute_script("ALTER TABLE cognito_identity RENAME TO cognito_identity_moved")
    try:
        with caplog.at_level(logging.INFO, logger="popmap_gql.access"):
            response = await client.post(
                "/graphql",
                json={"query": "{ me { id } }"},
                headers={"Authorization": f"Bearer {token}", "X-Request-ID": "masked-500"},
            )
    finally:
        await db.execute_script("ALTER TABLE cognito_identity_moved RENAME TO cognito_identity")

    assert response.status_code == 500
    assert response.json() == {
        "errors": [
            {"message": "Internal server error", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
        ]
    }
    assert response.headers["x-request-id"] == "masked-500"  # as in its access line:
    [line] = [r for r in caplog.records if r.name == "popmap_gql.access"]
    assert line.getMessage() == "POST /graphql 500"
    assert line.__dict__["fields"]["request_id"] == "masked-500"
    assert "cognito_identity" not in response.text


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
