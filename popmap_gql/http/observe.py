"""Every HTTP request's access line and metrics, from one `RequestFacts` (observe.py).

`RequestObserver` is the outermost middleware of our own: it starts the request's facts
(with its request id: the client's `X-Request-ID` when it is a short plain token, else a
new one, echoed on the response either way), lets the layers below fill them in through
the `note_*` functions, and once the response has gone writes one line to the
`popmap_gql.access` logger and, with metrics on, counts the request.

The access line never holds a token, an email, a query's text or variable values: only
the fields below, and the viewer as its kind and a keyed hash of its user or client id
(HMAC-SHA256 with a key kept in the data folder, cut to 16 hex digits), the same across
requests and workers of one installation and meaningless without its key.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphql import get_operation_ast
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from popmap_gql.api.documents import Prepared
from popmap_gql.auth.viewer import Viewer
from popmap_gql.logs import FIELDS, clip, quoted
from popmap_gql.media.policy import load_or_create_secret
from popmap_gql.observe import RequestFacts, current

if TYPE_CHECKING:  # prometheus_client is imported only with metrics on
    from popmap_gql.metrics import Metrics

__all__ = [
    "ACCESS_LOGGER",
    "VIEWER_ID_KEY_FILE",
    "RequestObserver",
    "describe_operation",
    "echoed_request_id",
    "note_cache",
    "note_error_codes",
    "note_operation",
    "note_viewer",
    "viewer_kind",
]

ACCESS_LOGGER = "popmap_gql.access"
access_log = logging.getLogger(ACCESS_LOGGER)

VIEWER_ID_KEY_FILE = "log-viewer-id.key"
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
_REQUEST_ID_HEADER = b"x-request-id"
GRAPHQL_PATH = "/graphql"


# --- what the layers below note ------------------------------------------------------------


def viewer_kind(viewer: Viewer) -> str:
    """The viewer as access lines name it: service, staff, person or anonymous."""
    if viewer.client_id is not None:
        return "service"
    if viewer.user_id is not None:
        return "staff" if viewer.is_staff else "person"
    return "anonymous"


def note_viewer(viewer: Viewer) -> None:
    facts = current.get()
    assert facts is not None  # the GraphQL view runs under RequestObserver (app.py)
    facts.viewer_kind = viewer_kind(viewer)
    if viewer.client_id is not None:
        facts.viewer_subject = f"client:{viewer.client_id}"
    elif viewer.user_id is not None:
        facts.viewer_subject = f"user:{viewer.user_id}"


def describe_operation(
    prepared: Prepared, operation_name: str | None
) -> tuple[str | None, str | None]:
    """(name, type) of the operation a request selects in its prepared document: the
    name as the document spells it (None for an anonymous one) and query, mutation or
    subscription; the requested name and None when the document has no such operation."""
    if prepared.document is None:
        return operation_name, None
    operation = get_operation_ast(prepared.document, operation_name)
    if operation is None:
        return operation_name, None
    name = operation.name.value if operation.name is not None else None
    return name, operation.operation.value


def note_operation(operation: tuple[str | None, str | None]) -> None:
    """(name, type) of the operation a GraphQL request runs (see `describe_operation`)."""
    facts = current.get()
    assert facts is not None  # as note_viewer
    facts.operation_name, facts.operation_type = operation


def note_cache(outcome: str) -> None:
    """hit (answered from the response cache) or miss (computed, to be stored)."""
    facts = current.get()
    assert facts is not None  # as note_viewer
    facts.cache = outcome


def note_error_codes(codes: Iterable[str]) -> None:
    facts = current.get()
    if facts is not None:
        facts.error_codes = (*facts.error_codes, *codes)


# --- the middleware ------------------------------------------------------------------------


def _request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == _REQUEST_ID_HEADER:
            if _REQUEST_ID.fullmatch(value):
                accepted: bytes = value
                return accepted.decode("ascii")
            break
    return os.urandom(8).hex()


_REQUEST_ID_STATE = "popmap_request_id"


def echoed_request_id(scope: Scope) -> dict[str, str]:
    """The X-Request-ID header of a response sent around RequestObserver (none when the
    request never reached it)."""
    request_id = scope.get("state", {}).get(_REQUEST_ID_STATE)
    return {} if request_id is None else {"X-Request-ID": request_id}


def _route(scope: Scope) -> str:
    """The path template of the route that answered (a few fixed values), or "unmatched"."""
    route = scope.get("route")
    if isinstance(route, BaseRoute):
        path: Any = getattr(route, "path", None)
        if isinstance(path, str):
            return path
    return "unmatched"


def _count(metrics: Metrics, facts: RequestFacts, route: str, seconds: float) -> None:
    # A name enters the labels only once an operation of that name ran (or its cached
    # answer was served): a refused request's name is the client's text and would use up
    # the label slots, so it is labelled "" like an anonymous operation.
    ran = facts.executed or facts.cache == "hit"
    operation = metrics.operations.label(facts.operation_name if ran else None)
    metrics.requests.labels(route, operation, str(facts.status)).inc()
    metrics.latency.labels(route, operation).observe(seconds)
    if facts.cache == "hit":
        metrics.cache_hits.inc()
    elif facts.cache == "miss":
        metrics.cache_misses.inc()


class RequestObserver:
    """Facts, request id, access line and metrics for every HTTP request."""

    def __init__(self, app: ASGIApp, *, data_dir: Path, metrics: Metrics | None) -> None:
        self.app = app
        self.metrics = metrics
        key = load_or_create_secret(data_dir / VIEWER_ID_KEY_FILE)

        @functools.lru_cache(maxsize=4096)
        def viewer_id(subject: str) -> str:
            """A stable, keyed hash of a viewer subject ("user:<id>", "client:<id>")."""
            return hmac.new(key, subject.encode(), hashlib.sha256).hexdigest()[:16]

        self.viewer_id = viewer_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        facts = RequestFacts(_request_id(scope), time.perf_counter())
        echoed = (_REQUEST_ID_HEADER, facts.request_id.encode("ascii"))
        # for the answer Starlette's outermost handler gives an exception (app.py), which
        # is sent around this middleware
        scope.setdefault("state", {})[_REQUEST_ID_STATE] = facts.request_id

        async def observed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                facts.status = message["status"]
                message["headers"] = [*message.get("headers", ()), echoed]
            await send(message)

        token = current.set(facts)
        try:
            await self.app(scope, receive, observed_send)
        except BaseException as exc:
            if not facts.status:  # Starlette's outermost handler answers 500 (or none went)
                facts.status = 500 if isinstance(exc, Exception) else 499
            raise
        finally:
            current.reset(token)
            self._report(scope, facts)

    def _report(self, scope: Scope, facts: RequestFacts) -> None:
        seconds = time.perf_counter() - facts.started
        route = _route(scope)
        if self.metrics is not None:
            _count(self.metrics, facts, route, seconds)
        if access_log.isEnabledFor(logging.INFO):
            fields = self._fields(scope, facts, route, seconds)
            access_log.info(
                "%s %s %d",
                quoted(clip(scope["method"])),
                quoted(clip(scope["path"])),
                facts.status,
                extra={FIELDS: fields},
            )

    def _fields(
        self, scope: Scope, facts: RequestFacts, route: str, seconds: float
    ) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "request_id": facts.request_id,
            "method": scope["method"],
            "path": scope["path"],
            "route": route,
            "status": facts.status,
            "duration_ms": round(seconds * 1000, 3),
            "statements": facts.statements,
        }
        if facts.error_codes:
            fields["error_codes"] = list(facts.error_codes)
        if route == GRAPHQL_PATH:
            subject = facts.viewer_subject
            fields.update(
                operation_name=facts.operation_name,
                operation_type=facts.operation_type,
                cache=facts.cache or "none",
                answered_by=facts.answered_by,
                declined=facts.declined,
                viewer_kind=facts.viewer_kind,
                viewer_id=None if subject is None else self.viewer_id(subject),
                error_codes=list(facts.error_codes),
            )
        return fields
