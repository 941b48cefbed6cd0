"""The identity provider's signing keys: fetched over HTTP, cached by kid, refreshed sparingly."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Protocol

import httpx
import jwt

from popmap_gql import observe, tracing
from popmap_gql.errors import InvalidToken, KeysUnavailable

__all__ = ["JWKSCache", "KeySource", "StaticKeys", "fetch_json", "parse_jwks"]

logger = logging.getLogger(__name__)

MAX_JWKS_BYTES = 64 * 1024
# The whole of a fetch, answer read to its end: the HTTP client's timeouts bound each
# read, not their sum, so an upstream sending a byte a second would hold a request (or
# every request waiting on the keys) for hours.
FETCH_SECONDS = 3.0
# After a failed fetch, try again sooner than the normal cooldown: an outage should not
# keep us on 503 for a whole window once the keys are reachable again.
FAILURE_RETRY_SECONDS = 5.0


class KeySource(Protocol):
    async def get_key(self, kid: str) -> jwt.PyJWK: ...


def parse_jwks(document: Any) -> dict[str, jwt.PyJWK]:
    """RSA signing keys of a JWKS document, by kid; keys of any other kind are skipped."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in document["keys"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("kty") != "RSA" or entry.get("use", "sig") != "sig":
            continue
        if entry.get("alg", "RS256") != "RS256":
            continue
        try:
            keys[entry["kid"]] = jwt.PyJWK(entry, algorithm="RS256")
        except jwt.PyJWTError:
            logger.warning("skipping malformed JWKS key %r", entry.get("kid"))
    return keys


class StaticKeys:
    """A fixed set of keys (the local development identity provider's)."""

    def __init__(self, keys: dict[str, jwt.PyJWK]) -> None:
        self._keys = keys

    async def get_key(self, kid: str) -> jwt.PyJWK:
        try:
            return self._keys[kid]
        except KeyError:
            raise InvalidToken("unknown signing key") from None


class JWKSCache:
    """Keys from a JWKS URL, cached for the life of the process.

    An unknown kid triggers a refetch at most once per `cooldown` seconds, and
    concurrent refetches share one request, so a flood of forged kids costs one fetch.
    """

    def __init__(
        self,
        url: str,
        client: httpx.AsyncClient,
        *,
        cooldown: float = 60.0,
    ) -> None:
        self.url = url
        self._client = client
        self._cooldown = cooldown
        self._keys: dict[str, jwt.PyJWK] = {}
        self._next_fetch_at = float("-inf")
        self._inflight: asyncio.Task[None] | None = None

    async def get_key(self, kid: str) -> jwt.PyJWK:
        key = self._keys.get(kid)
        if key is not None:
            return key
        if time.monotonic() >= self._next_fetch_at or self._inflight is not None:
            await self._refresh()
        key = self._keys.get(kid)
        if key is not None:
            return key
        if not self._keys:
            raise KeysUnavailable("the identity provider's signing keys are unavailable")
        raise InvalidToken("unknown signing key")

    async def _refresh(self) -> None:
        if self._inflight is None:
            self._inflight = asyncio.create_task(self._fetch())
        task = self._inflight
        try:
            # shield: one caller giving up (client disconnect) must not cancel the others
            await asyncio.shield(task)
        finally:
            if task.done() and self._inflight is task:
                self._inflight = None

    async def _fetch(self) -> None:
        try:
            with tracing.span("cognito.jwks", {"url.full": self.url}):
                keys = parse_jwks(await fetch_json(self._client, self.url, MAX_JWKS_BYTES))
        except (httpx.HTTPError, ValueError) as exc:
            self._next_fetch_at = time.monotonic() + min(self._cooldown, FAILURE_RETRY_SECONDS)
            logger.warning("could not fetch signing keys from %s: %s", self.url, exc)
            _count_fetch("failed")
            return
        _count_fetch("ok")
        self._next_fetch_at = time.monotonic() + self._cooldown
        if keys:  # an empty answer is an incident, not a revocation of every key
            self._keys = keys
        logger.info("fetched %d signing key(s) from %s", len(keys), self.url)


async def fetch_json(
    client: httpx.AsyncClient, url: str, max_bytes: int, *, headers: dict[str, str] | None = None
) -> Any:
    """The JSON of a 200 answer to a GET of `url` (no redirect followed), read up to
    `max_bytes` within FETCH_SECONDS; ValueError or httpx's errors else.

    The answer must come uncompressed: httpx inflates each compressed chunk whole, so
    64 KB of gzip could become 64 MB in memory before `max_bytes` is looked at."""
    body = bytearray()
    try:
        async with (
            asyncio.timeout(FETCH_SECONDS),
            client.stream(
                "GET",
                url,
                headers={"Accept-Encoding": "identity", **(headers or {})},
                follow_redirects=False,
            ) as response,
        ):
            if response.status_code != 200:
                raise ValueError(f"HTTP {response.status_code}")
            if (encoding := response.headers.get("content-encoding", "identity")) != "identity":
                raise ValueError(f"answer compressed ({encoding[:20]}) though asked not to be")
            async for chunk in response.aiter_raw():
                body.extend(chunk)
                if len(body) > max_bytes:
                    raise ValueError(f"answer larger than {max_bytes} bytes")
    except TimeoutError:
        raise ValueError(f"no whole answer within {FETCH_SECONDS:g} s") from None
    try:
        return json.loads(body)
    except RecursionError:  # arrays or objects nested deeper than the parser goes
        raise ValueError("answer nested too deeply") from None


def _count_fetch(outcome: str) -> None:
    if (metrics := observe.metrics) is not None:
        metrics.jwks_fetches.labels(outcome).inc()
