"""Domain exceptions: expected failures, each with the GraphQL error code it maps to.

    PopmapError                  code
    ├── NotFound                 NOT_FOUND
    ├── BadUserInput             BAD_USER_INPUT (names the offending field)
    ├── Forbidden                FORBIDDEN
    ├── Unauthenticated          UNAUTHENTICATED (sign-in required; HTTP 200)
    │   └── InvalidToken         UNAUTHENTICATED (a bad bearer token; HTTP 401)
    └── ServiceUnavailable       SERVICE_UNAVAILABLE (HTTP 503 with Retry-After)
        ├── KeysUnavailable      SERVICE_UNAVAILABLE (no signing keys and none cached)
        └── DatabaseUnavailable  SERVICE_UNAVAILABLE (PostgreSQL unreachable, restarting,
                                 too slow, or no pooled connection free in time)

Anything else raised while serving a request is unexpected: the API masks it as
INTERNAL_SERVER_ERROR and logs it in full.
"""

from __future__ import annotations

__all__ = [
    "BadUserInput",
    "DatabaseUnavailable",
    "Forbidden",
    "InvalidToken",
    "KeysUnavailable",
    "NotFound",
    "PopmapError",
    "ServiceUnavailable",
    "Unauthenticated",
]


class PopmapError(Exception):
    """An expected failure whose message is safe to show to the client."""

    code = "INTERNAL_SERVER_ERROR"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    @property
    def extensions(self) -> dict[str, object]:
        return {"code": self.code}


class NotFound(PopmapError):
    code = "NOT_FOUND"


class BadUserInput(PopmapError):
    code = "BAD_USER_INPUT"

    def __init__(self, message: str, *, field: str) -> None:
        super().__init__(message)
        self.field = field

    @property
    def extensions(self) -> dict[str, object]:
        return {"code": self.code, "field": self.field}


class Forbidden(PopmapError):
    """Not allowed for this viewer; for a service lacking a scope, `required_scope` names it."""

    code = "FORBIDDEN"

    def __init__(self, message: str, *, required_scope: str | None = None) -> None:
        super().__init__(message)
        self.required_scope = required_scope

    @property
    def extensions(self) -> dict[str, object]:
        if self.required_scope is None:
            return {"code": self.code}
        return {"code": self.code, "requiredScope": self.required_scope}


class Unauthenticated(PopmapError):
    code = "UNAUTHENTICATED"


class InvalidToken(Unauthenticated):
    """The bearer token is not one we trust; `description` goes to WWW-Authenticate."""


class ServiceUnavailable(PopmapError):
    code = "SERVICE_UNAVAILABLE"


class KeysUnavailable(ServiceUnavailable):
    """The identity provider's signing keys cannot be fetched and none are cached."""


class DatabaseUnavailable(ServiceUnavailable):
    """A fault of PostgreSQL or of the way to it, converted where the driver's errors enter.

    `kind` names the fault for the log ("unreachable", "statement timeout", ...); the
    client sees only the message, never the driver's words.
    """

    def __init__(self, kind: str) -> None:
        super().__init__("The database is unavailable; retry shortly")
        self.kind = kind
