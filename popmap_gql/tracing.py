"""OpenTelemetry traces, when the optional `otel` extra is installed and switched on.

`POPMAP_OTEL=true` makes every worker export its spans over OTLP/HTTP
(`POPMAP_OTEL_ENDPOINT`) through a batch processor: one span per HTTP request (a W3C
`traceparent` header continues the caller's trace), named by the GraphQL operation it
ran, with child spans for parsing and validating a new document, executing it, each SQL
statement, and each JWKS or userInfo call to Cognito. Span attributes never hold a
token, an email, a variable value or a statement's parameters: SQL is sent as its text,
whose values are all bound parameters.

With tracing off (the default) or the extra missing, `span()` returns one shared no-op
context manager and the request middleware passes requests straight through: nothing is
imported, allocated or measured per request.

The tracer is this module's own (a `TracerProvider` of ours, not OpenTelemetry's global
one), so tests can put the SDK's in-memory exporter in its place (`use_provider`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from popmap_gql.config import ConfigError, Settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

__all__ = [
    "enabled",
    "name_request",
    "request_span",
    "span",
    "sql_span",
    "start",
    "stop",
    "use_provider",
]

_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_NOTHING: AbstractContextManager[None] = contextlib.nullcontext()


def enabled() -> bool:
    return _tracer is not None


def start(settings: Settings) -> None:
    """Export spans as `settings` say (nothing unless `otel` is on)."""
    if not settings.otel:
        return
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError as exc:
        msg = (
            "POPMAP_OTEL=true needs the optional OpenTelemetry packages:"
            " pip install 'popmap-gql[otel]'"
        )
        raise ConfigError(msg) from exc
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.otel_service_name})
    )
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.otel_endpoint))
    )
    use_provider(provider)


def use_provider(provider: TracerProvider | None) -> None:
    """Trace with `provider` from now on (None: stop tracing)."""
    global _tracer, _provider
    _provider = provider
    _tracer = None if provider is None else provider.get_tracer("popmap_gql")


def stop() -> None:
    """Flush and shut down the exporter (the lifespan's end)."""
    provider = _provider
    use_provider(None)
    if provider is not None:
        provider.shutdown()


def span(name: str, attributes: Mapping[str, Any] | None = None) -> AbstractContextManager[Any]:
    """A child span of the current one, or a shared no-op when tracing is off."""
    tracer = _tracer
    if tracer is None:
        return _NOTHING
    return tracer.start_as_current_span(name, attributes=dict(attributes or {}))


def sql_span(args: tuple[Any, ...]) -> AbstractContextManager[Any]:
    """The span of one statement sent through the database client (its first argument is
    the SQL text: every value travels as a parameter, which is never recorded)."""
    if _tracer is None:
        return _NOTHING
    text = args[0] if args and isinstance(args[0], str) else ""
    return span("db.query", {"db.system.name": "postgresql", "db.query.text": text[:_MAX_SQL_TEXT]})


# Compiled reads can be long statements; a span keeps their beginning.
_MAX_SQL_TEXT = 4096
# Operation names are GraphQL names a client chose; spans keep at most this much.
_MAX_NAME = 100
# As much of a request's path as its span keeps.
_MAX_PATH = 512


@contextlib.contextmanager
def request_span(method: str, path: str, headers: Mapping[str, str]) -> Iterator[Span]:
    """The server span of one HTTP request, continuing the caller's trace when its
    `traceparent` is valid; only while tracing is on (RequestTracing asks `enabled`)."""
    tracer = _tracer
    assert tracer is not None
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    parent = propagate.extract(dict(headers))
    attributes = {"http.request.method": method, "url.path": path[:_MAX_PATH]}
    # Named by the method alone (OpenTelemetry's name without a route) until the GraphQL
    # operation names it: a path is the client's text, any length, a new one each time.
    with tracer.start_as_current_span(
        method, context=parent, kind=SpanKind.SERVER, attributes=attributes
    ) as current:
        yield current


def name_request(operation_type: str, operation_name: str | None) -> None:
    """Name the current request's span after its GraphQL operation."""
    if _tracer is None:
        return
    from opentelemetry import trace

    current = trace.get_current_span()
    operation_name = operation_name[:_MAX_NAME] if operation_name else None
    name = f"{operation_type} {operation_name}" if operation_name else operation_type
    current.update_name(name)
    current.set_attribute("graphql.operation.type", operation_type)
    if operation_name:
        current.set_attribute("graphql.operation.name", operation_name)
