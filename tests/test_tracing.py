"""Traces: a span per request continuing the caller's W3C trace, named by the operation,
with child spans for parsing, validating, executing, each SQL statement and each call to
Cognito; nothing secret in any attribute. The spans are collected with the OpenTelemetry
SDK's in-memory exporter, put in place of the OTLP exporter (`tracing.use_provider`)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from popmap_gql import tracing
from popmap_gql.config import ConfigError, Settings, load_settings
from tests.conftest import JWKS_COOLDOWN_SECONDS
from tests.fake_cognito import FakeCognito, SigningKey
from tests.helpers import global_id, make_business
from tests.processes import clean_env, serve_to_the_end, without_package

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        yield exporter
    finally:
        tracing.use_provider(None)
        provider.shutdown()


def _attributes(found: tuple[ReadableSpan, ...]) -> str:
    return repr([(span.name, dict(span.attributes or {})) for span in found])


async def test_a_request_is_one_trace_continuing_the_callers(
    client: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    business = await make_business("Secret Sauce Ltd")
    marker = uuid.uuid4().hex  # a unique text: parsed and validated afresh
    query = f"query Lookup($id: ID!) {{ business(id: $id) {{ name # {marker}\n }} }}"
    spans.clear()  # (the test's own inserts above are statements too)

    response = await client.post(
        "/graphql",
        json={"query": query, "variables": {"id": global_id("Business", business.id)}},
        headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"},
    )

    assert response.status_code == 200
    assert response.json() == {"data": {"business": {"name": "Secret Sauce Ltd"}}}
    found = spans.get_finished_spans()
    [server] = [span for span in found if span.kind is SpanKind.SERVER]
    assert server.name == "query Lookup"
    assert server.context is not None
    assert server.parent is not None
    assert f"{server.context.trace_id:032x}" == CALLER_TRACE
    assert f"{server.parent.span_id:016x}" == CALLER_SPAN
    attributes = dict(server.attributes or {})
    assert attributes["graphql.operation.name"] == "Lookup"
    assert attributes["graphql.operation.type"] == "query"
    assert attributes["http.response.status_code"] == 200
    names = [span.name for span in found]
    for child in ("graphql.parse", "graphql.validate", "graphql.execute", "db.query"):
        assert child in names, names
    # every span is in the caller's trace, below the request's span
    for span in found:
        assert span.context is not None
        assert f"{span.context.trace_id:032x}" == CALLER_TRACE
    statements = [span for span in found if span.name == "db.query"]
    assert any(
        "FROM business" in str((span.attributes or {})["db.query.text"]) for span in statements
    )
    # SQL text only, never its parameters or the request's variables
    assert global_id("Business", business.id) not in _attributes(found)
    assert "Secret Sauce" not in _attributes(found)


async def test_a_path_the_client_chose_neither_names_a_span_nor_fills_it(
    client: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    # Span names are what tracing back ends group by: a name made of the client's path
    # would be a new group per request, and as long as the request line allows.
    spans.clear()

    response = await client.get("/" + "x" * 20_000)

    assert response.status_code == 404
    [server] = [span for span in spans.get_finished_spans() if span.kind is SpanKind.SERVER]
    assert server.name == "GET"
    path = dict(server.attributes or {})["url.path"]
    assert isinstance(path, str)
    assert path.startswith("/xxx")
    assert len(path) <= 512


async def test_a_known_document_is_not_parsed_again(
    client: httpx.AsyncClient, spans: InMemorySpanExporter
) -> None:
    query = "query Again { categories { name } }"
    await client.post("/graphql", json={"query": query})
    spans.clear()

    await client.post("/graphql", json={"query": query}, headers={"cache-control": "no-cache"})

    names = [span.name for span in spans.get_finished_spans()]
    assert "graphql.parse" not in names
    assert "graphql.validate" not in names


async def test_calls_to_cognito_are_spans_without_the_token(
    client: httpx.AsyncClient, cognito: FakeCognito, spans: InMemorySpanExporter
) -> None:
    sub = str(uuid.uuid4())
    cognito.profiles[sub] = {"email": "traced@example.com"}
    token = cognito.access_token(sub=sub)
    await asyncio.sleep(JWKS_COOLDOWN_SECONDS)  # a JWKS fetch is allowed again

    # a key the server has not seen yet makes it fetch the JWKS
    unknown = cognito.sign(cognito.claims(), key=SigningKey(uuid.uuid4().hex))
    refused = await client.post(
        "/graphql", json={"query": "{ me { id } }"}, headers={"Authorization": f"Bearer {unknown}"}
    )
    answered = await client.post(
        "/graphql",
        json={"query": "{ me { email } }"},
        headers={"Authorization": f"Bearer {token}"},
    )

    assert refused.status_code == 401
    assert answered.json() == {"data": {"me": {"email": "traced@example.com"}}}
    found = spans.get_finished_spans()
    names = [span.name for span in found]
    assert "cognito.jwks" in names, names
    assert "cognito.userinfo" in names, names
    everything = _attributes(found)
    assert token not in everything
    assert unknown not in everything
    assert "traced@example.com" not in everything


def test_tracing_is_off_unless_switched_on() -> None:
    tracing.start(Settings())
    assert not tracing.enabled()
    # on: an OTLP exporter to the endpoint (loopback here; nothing is sent without spans)
    tracing.start(Settings(otel=True, otel_endpoint="http://127.0.0.1:9/v1/traces"))
    try:
        assert tracing.enabled()
    finally:
        tracing.stop()
    assert not tracing.enabled()


def test_serve_with_tracing_on_but_without_the_packages_names_the_extra_to_install(
    database_url: str, tmp_path: Path
) -> None:
    env = clean_env(
        DATABASE_URL=database_url,
        POPMAP_DATA_DIR=str(tmp_path),
        POPMAP_OTEL="true",
        PYTHONPATH=without_package(tmp_path, "opentelemetry"),  # no `otel` extra
    )

    result = serve_to_the_end(env)

    assert result.returncode != 0
    assert (
        "POPMAP_OTEL=true needs the optional OpenTelemetry packages:"
        " pip install 'popmap-gql[otel]'" in result.stderr
    )


def test_tracing_settings_are_checked() -> None:
    settings = load_settings(
        {"POPMAP_OTEL": "true", "POPMAP_OTEL_SERVICE_NAME": "popmap-eu"}, env_file=None
    )
    assert (settings.otel, settings.otel_service_name) == (True, "popmap-eu")
    assert settings.otel_endpoint == "http://127.0.0.1:4318/v1/traces"
    with pytest.raises(ConfigError, match="POPMAP_OTEL_ENDPOINT"):
        load_settings({"POPMAP_OTEL_ENDPOINT": "collector:4318"}, env_file=None)
