"""How errors reach the client: a code on every error, unexpected ones masked and logged."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from graphql import GraphQLError

from popmap_gql.errors import DatabaseUnavailable, PopmapError, ServiceUnavailable

__all__ = [
    "MASKED_MESSAGE",
    "RETRY_AFTER_SECONDS",
    "FaultLog",
    "fault_log",
    "format_error",
    "is_unexpected",
    "log_unexpected",
    "service_fault",
]

logger = logging.getLogger("popmap_gql.errors")

MASKED_MESSAGE = "Internal server error"

# Errors graphql-core raises without a code of their own, recognised by their wording
# (pinned by the tests of each limit). Our own errors carry their code in `extensions`.
_MESSAGE_CODES = (
    ("Syntax Error: Document contains more than", "QUERY_TOO_LARGE"),
    ("Syntax Error", "GRAPHQL_PARSE_FAILED"),
    ("Variable '$", "BAD_USER_INPUT"),
)


def is_unexpected(error: GraphQLError) -> bool:
    """Raised while resolving a field, and not one of our expected failures.

    Errors without a path come from parsing, validation or variable coercion: they
    describe the client's request and are shown as they are.
    """
    original = error.original_error
    return (
        error.path is not None
        and original is not None
        and not isinstance(original, PopmapError | GraphQLError)
    )


def log_unexpected(errors: list[GraphQLError]) -> None:
    for error in errors:
        if is_unexpected(error):
            original = error.original_error
            assert original is not None
            logger.error(
                "unexpected error in %s",
                ".".join(map(str, error.path or [])) or "operation",
                exc_info=(type(original), original, original.__traceback__),
            )


def _code_for(error: GraphQLError) -> str:
    for fragment, code in _MESSAGE_CODES:
        if fragment in error.message:
            return code
    return "GRAPHQL_VALIDATION_FAILED"


def format_error(error: GraphQLError) -> dict[str, Any]:
    """The error as the client sees it; `extensions.code` is always set."""
    formatted: dict[str, Any] = dict(error.formatted)
    original = error.original_error
    if isinstance(original, PopmapError):
        formatted["message"] = original.message
        formatted["extensions"] = {**formatted.get("extensions", {}), **original.extensions}
    elif is_unexpected(error):
        formatted["message"] = MASKED_MESSAGE
        formatted["extensions"] = {"code": "INTERNAL_SERVER_ERROR"}
    else:
        extensions = formatted.setdefault("extensions", {})
        extensions.setdefault("code", _code_for(error))
    return formatted


# What a 503 asks clients to wait before retrying: about a restart or a failover.
RETRY_AFTER_SECONDS = 5


def service_fault(errors: Iterable[GraphQLError] | None) -> ServiceUnavailable | None:
    """The dependency fault behind any of these errors: the whole answer is then a 503.

    A field that failed because PostgreSQL is down says nothing about the query, and a
    200 with a masked error would tell the client not to retry.
    """
    for error in errors or ():
        if isinstance(error.original_error, ServiceUnavailable):
            return error.original_error
    return None


FAULT_LOG_INTERVAL_SECONDS = 10.0


class FaultLog:
    """One log line per kind of fault per interval, with how many went unlogged.

    While PostgreSQL is down every request fails the same way: a traceback each would
    bury the log (and cost more than answering).
    """

    def __init__(
        self,
        interval: float = FAULT_LOG_INTERVAL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.clock = clock
        # kind -> (when it was last logged, how many since then were not)
        self._last: dict[str, tuple[float, int]] = {}

    def report(self, fault: ServiceUnavailable) -> None:
        kind = (
            f"database {fault.kind}"
            if isinstance(fault, DatabaseUnavailable)
            else type(fault).__name__
        )
        now = self.clock()
        logged_at, unlogged = self._last.get(kind, (float("-inf"), 0))
        if now - logged_at < self.interval:
            self._last[kind] = (logged_at, unlogged + 1)
            return
        self._last[kind] = (now, 0)
        cause = fault.__cause__
        logger.warning(
            "service unavailable (%s): answering 503; cause: %s%s",
            kind,
            f"{type(cause).__name__}: {cause}".replace("\n", " ") if cause else fault.message,
            f" ({unlogged} more since the last report)" if unlogged else "",
        )


# One per process: every 503, from the endpoint or the readiness check, is reported here.
fault_log = FaultLog()
