"""What one request did, gathered once while it runs, and the process's metrics if on.

`http/observe.py` (a middleware) starts a `RequestFacts` for every HTTP request and
keeps it in the `current` context variable; the layers below fill in what they learn
(the database client counts statements, the GraphQL endpoint notes the operation, the
viewer, the cache's outcome and the error codes), and the middleware derives both the
request's access line and its metrics from it when the response has gone. Tasks a
request starts (DataLoader batches) copy its context, so they fill in the same object.

`metrics` is the process's `popmap_gql.metrics.Metrics` once an app with
`POPMAP_METRICS=true` has installed it (`install`), else None: code below the HTTP layer
records into it only when it is there, at the cost of one attribute read when it is not.
This module imports `popmap_gql.metrics` (and so prometheus_client) only in `install`,
and that module imports nothing of ours.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from popmap_gql.metrics import Metrics

__all__ = [
    "RequestFacts",
    "count_statement",
    "current",
    "install",
    "metrics",
    "note_answered_by",
    "note_declined",
    "note_executed",
]


@dataclass(slots=True)
class RequestFacts:
    """One request's facts; None (or empty) where a fact does not apply."""

    request_id: str
    started: float  # time.perf_counter() when the request arrived
    status: int = 0  # the response's HTTP status, once it has started
    # GraphQL requests only: the operation executed (name as in its document) and its
    # type, the viewer, the response cache's outcome and the errors' extensions.code.
    operation_name: str | None = None
    operation_type: str | None = None
    viewer_kind: str | None = None  # anonymous, person, staff, service
    viewer_subject: str | None = None  # "user:<id>" or "client:<id>": hashed when logged
    cache: str | None = None  # hit, miss, none
    # Whether the operation named above ran (it was admitted and executed, or answered
    # from the cache): only then does its client-chosen name become a metric label.
    executed: bool = False
    # Who answered a query that executed: "compiled" (api/compiled.py) or "resolvers", and
    # when the resolvers did, why the compiled path declined (api/compiled.py `DECLINED`).
    answered_by: str | None = None
    declined: str | None = None
    error_codes: tuple[str, ...] = ()
    statements: int = 0  # SQL statements sent by this request (and tasks it started)


current: ContextVar[RequestFacts | None] = ContextVar("popmap_request", default=None)

metrics: Metrics | None = None
_install_lock = threading.Lock()


def install(multiprocess_dir: Path | None) -> Metrics:
    """The process's Metrics, created on first call and kept in `metrics`."""
    global metrics
    from popmap_gql.metrics import Metrics

    with _install_lock:
        if metrics is None:
            metrics = Metrics(multiprocess_dir)
        return metrics


def count_statement() -> None:
    facts = current.get()
    if facts is not None:
        facts.statements += 1


def note_executed() -> None:
    """The request's operation was admitted and runs now."""
    facts = current.get()
    if facts is not None:
        facts.executed = True


def note_answered_by(who: str) -> None:
    """Who answered the query: "compiled" or "resolvers"."""
    facts = current.get()
    if facts is not None:
        facts.answered_by = who


def note_declined(reason: str) -> None:
    """Why the compiled path declined the query (the resolvers answer it)."""
    facts = current.get()
    if facts is not None:
        facts.declined = reason
