"""The request error of the GraphQL endpoint: refused before anything is executed."""

from __future__ import annotations

__all__ = ["BadRequest"]


class BadRequest(Exception):
    """A request the endpoint refuses before executing anything."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        code: str = "BAD_REQUEST",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.headers = headers
