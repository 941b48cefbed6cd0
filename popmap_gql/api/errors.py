"""How errors reach the client: a code on every error, unexpected ones masked and logged."""

from __future__ import annotations

import logging
from typing import Any

from graphql import GraphQLError

from popmap_gql.errors import PopmapError

__all__ = ["MASKED_MESSAGE", "format_error", "is_unexpected", "log_unexpected"]

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
