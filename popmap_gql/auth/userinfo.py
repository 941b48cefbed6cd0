"""The hosted UI's userInfo endpoint: the profile that access tokens do not carry."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import httpx

from popmap_gql import tracing
from popmap_gql.auth.jwks import fetch_json

__all__ = ["Profile", "UserInfoClient"]

logger = logging.getLogger(__name__)

MAX_USERINFO_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class Profile:
    email: str | None
    given_name: str | None
    family_name: str | None


def _text(document: dict[str, object], name: str) -> str | None:
    value = document.get(name)
    return value if isinstance(value, str) and value else None


class UserInfoClient:
    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self.url = url
        self._client = client

    async def fetch(self, access_token: str) -> Profile | None:
        """The profile, or None on any failure: a missing profile never fails a request."""
        with tracing.span("cognito.userinfo", {"url.full": self.url}):
            try:
                document = await fetch_json(
                    self._client,
                    self.url,
                    MAX_USERINFO_BYTES,
                    headers={"Authorization": f"Bearer {access_token}"},
                )
                if not isinstance(document, dict):
                    raise ValueError("not a JSON object")
            except (httpx.HTTPError, ValueError) as exc:
                logger.warning("userInfo request failed, profile left to fill later: %s", exc)
                return None
            return Profile(
                email=_text(document, "email"),
                given_name=_text(document, "given_name"),
                family_name=_text(document, "family_name"),
            )
