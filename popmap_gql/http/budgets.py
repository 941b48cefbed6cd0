"""Per-client budgets: cost points per minute, refilled continuously.

Each client has a budget of cost points (api/cost.py) per minute: an address for
anonymous requests (an IPv6 address by its /64, the block one subscriber gets), a person
for signed-in requests, an app client for services (POPMAP_BUDGET_SERVICE_CLIENTS gives
one client its own). The address is the ASGI scope's `client` as uvicorn leaves it:
uvicorn replaces the peer by the `X-Forwarded-For` address only when the peer is one of
the proxies it trusts (FORWARDED_ALLOW_IPS), so a client cannot choose its own.

Every request is charged before it is looked up or executed: its admitted cost, at least
`MUTATION_MINIMUM_COST` for a mutation and at least `REFUSED_COST` for anything (a
request refused before execution, a cache hit of a cheap query), at most the whole
budget. A request the budget cannot pay for is answered 429 `RATE_LIMITED` with
`Retry-After` and does nothing else.

The arithmetic is GCRA (the generic cell rate algorithm, a leaky bucket kept as one
instant): a bucket is the moment `tat` at which it will be full again. A charge of c
points moves `tat` c x 60/quota seconds later, from now if it was in the past, and is
refused when `tat` would then be more than a window (60 s) ahead: a client may spend its
whole minute at once and then as fast as it refills. A bucket's level, `tat` - now,
gives what the `RateLimit` fields say (draft-ietf-httpapi-ratelimit-headers): the points
left, `r`, and the seconds until the bucket is full, `t`; `RateLimit-Policy` names the
budget (`"anonymous"`, `"user"`, `"service"`), its quota `q` and window `w`.

The buckets live in this process (`MemoryBuckets`), or with POPMAP_BUDGET_REDIS_URL in
Redis (`RedisBuckets`), one key per client, charged by a script that reads Redis's clock,
so that every worker and replica shares them. The charges of requests arriving while a
round trip is under way wait and go together in the next one, one pipeline: under load a
charge costs a share of a round trip, not one each. When Redis fails
the process falls back to its own buckets for a few seconds at a time, with a warning
and a metric: a broken Redis must not take the API down with it, and the per-process
buckets still hold each client to a budget per process meanwhile.

A client refused is remembered by the process until it could pay the cheapest request
again, so that a client flooding over its budget costs neither a round trip to Redis nor
parsing nor SQL: its requests are refused right after authentication.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import ipaddress
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from graphql import OperationType

from popmap_gql import observe
from popmap_gql.api.admission import Admission
from popmap_gql.auth.viewer import Viewer
from popmap_gql.config import MUTATION_MINIMUM_COST, Settings
from popmap_gql.memory import LRU

if TYPE_CHECKING:
    from starlette.types import Scope

__all__ = [
    "MUTATION_MINIMUM_COST",
    "REFUSED_COST",
    "WINDOW_SECONDS",
    "Account",
    "Budgets",
    "MemoryBuckets",
    "Outcome",
    "Policy",
    "RedisBuckets",
    "Subject",
    "build_budgets",
    "charged_cost",
]

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60
_SLACK_SECONDS = 1e-6
# What a request costs at least: one refused before execution, or admitted at cost 0.
REFUSED_COST = 1
# At most this many buckets (and refused clients) in one process: beyond, the least
# recently charged go first (a bucket dropped is a full one, as after a minute's rest).
MAX_BUCKETS = 50_000
# After Redis fails, this process charges its own buckets for this long before trying
# Redis again, so that a dead Redis costs one timeout per interval, not one per request.
REDIS_RETRY_SECONDS = 5.0
# How long a charge may wait for Redis before the process falls back to its own buckets.
REDIS_TIMEOUT_SECONDS = 0.25
REDIS_KEY_PREFIX = "popmap:budget:"
# Charges waiting while a round trip to Redis is under way go together in the next one,
# at most this many in one pipeline.
MAX_PIPELINED = 256


@dataclass(frozen=True, slots=True)
class Policy:
    """A budget: its name in the RateLimit fields and its points per minute; `interval`
    (seconds for one point to refill) and its `RateLimit-Policy` field follow from them."""

    name: str
    quota: int
    interval: float = field(init=False)
    header: bytes = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "interval", WINDOW_SECONDS / self.quota)
        policy = f'"{self.name}";q={self.quota};w={WINDOW_SECONDS}'
        object.__setattr__(self, "header", policy.encode("ascii"))


@dataclass(frozen=True, slots=True)
class Subject:
    """Whose budget a request is charged to."""

    policy: Policy
    key: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """A charge: allowed or not, and the bucket's level (seconds of the window in use)
    after it, or before it when refused."""

    allowed: bool
    level: float
    cost: int

    def headers(self, policy: Policy) -> list[tuple[bytes, bytes]]:
        """The answer's header fields, as ASGI raw headers (names in lower case)."""
        remaining = max(0, math.floor((WINDOW_SECONDS - self.level) / policy.interval))
        # the draft: Retry-After no earlier than the end of the effective window `t`
        window = math.ceil(self.level) if self.allowed else self.retry_after(policy)
        value = f'"{policy.name}";r={remaining};t={window}'
        headers = [(b"ratelimit-policy", policy.header), (b"ratelimit", value.encode("ascii"))]
        if not self.allowed:
            headers.append((b"retry-after", str(window).encode("ascii")))
        return headers

    def retry_after(self, policy: Policy) -> int:
        """Whole seconds until the bucket can pay this charge."""
        return max(1, math.ceil(self.level + self.cost * policy.interval - WINDOW_SECONDS))


@dataclass(slots=True)
class Account:
    """One request's dealings with its budget: whose it is once known, and the header
    fields its answer carries once it has been charged (or refused)."""

    subject: Subject | None = None
    headers: list[tuple[bytes, bytes]] | None = None


def charged_cost(admission: Admission | None) -> int:
    """What a request is charged: its admitted cost, a mutation at least
    MUTATION_MINIMUM_COST, anything at least REFUSED_COST (None: refused before
    admission, by validation or the limits)."""
    if admission is None or admission.operation is None:
        return REFUSED_COST
    if admission.operation.operation is OperationType.MUTATION:
        return max(admission.cost, MUTATION_MINIMUM_COST)
    return max(admission.cost, REFUSED_COST)


class Buckets(Protocol):
    async def charge(self, key: str, cost: int, policy: Policy) -> Outcome: ...

    async def close(self) -> None: ...


class MemoryBuckets:
    """This process's buckets: `tat` by key, on the monotonic clock."""

    def __init__(
        self, limit: int = MAX_BUCKETS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        # the least recently charged bucket, the fullest again, is the one forgotten
        self.tats: LRU[str, float] = LRU(max_entries=limit)
        self.clock = clock

    async def charge(self, key: str, cost: int, policy: Policy) -> Outcome:
        return self.charge_now(key, cost, policy)

    def charge_now(self, key: str, cost: int, policy: Policy) -> Outcome:
        now = self.clock()
        tat = max(self.tats.get(key, now), now)
        after = tat + cost * policy.interval
        # `after - now` rounds: a charge of the whole budget to a full bucket can come out
        # a few ulps over the window; a microsecond (Redis's resolution) of slack holds it.
        if after - now > WINDOW_SECONDS + _SLACK_SECONDS:
            return Outcome(False, tat - now, cost)
        self.tats.put(key, after)
        return Outcome(True, after - now, cost)

    async def close(self) -> None:
        return None


# One charge, atomically, on Redis's clock (microseconds): KEYS[1] the bucket, ARGV the
# cost, the microseconds a point takes to refill and the window. Answers {1 if allowed,
# the level in microseconds}. The key expires when the bucket is full again.
_CHARGE_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local cost = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local after = tat + cost * interval
if after - now > window then
  return {0, math.floor(tat - now)}
end
redis.call('SET', KEYS[1], string.format('%.0f', after), 'PX', math.ceil((after - now) / 1000) + 1)
return {1, math.floor(after - now)}
"""


@dataclass(frozen=True, slots=True)
class _Charge:
    key: str
    cost: int
    policy: Policy
    answer: asyncio.Future[Outcome | None]


class RedisBuckets:
    """Buckets in Redis, shared by every process using the same Redis; this process's
    own buckets while Redis fails (see the module docstring)."""

    def __init__(self, url: str) -> None:
        import redis.asyncio  # only with a Redis URL: the package is the `redis` extra
        import redis.exceptions

        self._errors: tuple[type[BaseException], ...] = (
            redis.asyncio.RedisError,
            OSError,
            TimeoutError,
        )
        self.client = redis.asyncio.Redis.from_url(
            url,
            socket_timeout=REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        )
        self._no_script: type[BaseException] = redis.exceptions.NoScriptError
        # Redis names a script by the SHA-1 of its text (EVALSHA)
        self.sha = hashlib.sha1(_CHARGE_SCRIPT.encode(), usedforsecurity=False).hexdigest()
        self.fallback = MemoryBuckets()
        self.down_until = 0.0
        # charges waiting for the next round trip, and the task making them
        self._waiting: list[_Charge] = []
        self._sender: asyncio.Task[None] | None = None

    async def charge(self, key: str, cost: int, policy: Policy) -> Outcome:
        if self.down_until and time.monotonic() < self.down_until:
            return self.fallback.charge_now(key, cost, policy)
        charge = _Charge(key, cost, policy, asyncio.get_running_loop().create_future())
        self._waiting.append(charge)
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_waiting())
        outcome = await charge.answer
        return outcome if outcome is not None else self.fallback.charge_now(key, cost, policy)

    async def _send_waiting(self) -> None:
        """Send the waiting charges, at most MAX_PIPELINED a round trip, until none wait;
        each gets its outcome, or None when Redis failed (the fallback's to charge)."""
        while self._waiting:
            batch = self._waiting[:MAX_PIPELINED]
            del self._waiting[:MAX_PIPELINED]
            try:
                outcomes: list[Outcome | None] = list(await self._pipelined(batch))
            except self._errors as exc:
                self._failed(exc)
                outcomes = [None] * len(batch)
            else:
                if self.down_until:
                    self.down_until = 0.0
                    logger.warning("budgets: Redis answers again; charging its buckets")
            for charge, outcome in zip(batch, outcomes, strict=True):
                if not charge.answer.done():  # its request may have gone meanwhile
                    charge.answer.set_result(outcome)

    async def _pipelined(self, batch: list[_Charge]) -> list[Outcome]:
        """The charges of `batch` in one pipeline (one round trip; the script is loaded
        once first if Redis does not know it, after a restart say)."""
        for _attempt in range(2):
            pipe = self.client.pipeline(transaction=False)
            for charge in batch:
                pipe.evalsha(
                    self.sha,
                    1,
                    REDIS_KEY_PREFIX + charge.key,
                    charge.cost,
                    charge.policy.interval * 1_000_000,
                    WINDOW_SECONDS * 1_000_000,
                )
            answers: list[Any] = await pipe.execute(raise_on_error=False)
            if any(isinstance(answer, self._no_script) for answer in answers):
                await self.client.script_load(_CHARGE_SCRIPT)
                continue
            for answer in answers:
                if isinstance(answer, BaseException):
                    raise answer
            return [
                Outcome(bool(allowed), int(level) / 1_000_000, charge.cost)
                for charge, (allowed, level) in zip(batch, answers, strict=True)
            ]
        raise self._no_script("the charge script could not be loaded")

    def _failed(self, exc: BaseException) -> None:
        first = not self.down_until
        self.down_until = time.monotonic() + REDIS_RETRY_SECONDS
        if observe.metrics is not None:
            observe.metrics.budget_store_faults.inc()
        if first:
            logger.warning(
                "budgets: Redis failed (%s: %s); charging this process's own buckets,"
                " retrying Redis every %g s",
                type(exc).__name__,
                exc,
                REDIS_RETRY_SECONDS,
            )

    async def close(self) -> None:
        await self.client.aclose()


@functools.lru_cache(maxsize=4096)
def _address_key(host: str) -> str:
    """An address as its budget's key: IPv4 as it is, IPv6 by its /64."""
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host)
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


class Budgets:
    """The budgets of every client of this process: whose a request is, and its charge."""

    def __init__(self, settings: Settings, buckets: Buckets) -> None:
        self.buckets = buckets
        self.anonymous = Policy("anonymous", settings.budget_anonymous_per_minute)
        self.user = Policy("user", settings.budget_user_per_minute)
        self.service = Policy("service", settings.budget_service_per_minute)
        self.services = {
            client: Policy("service", points) for client, points in settings.budget_service_clients
        }
        # refused clients: the monotonic instant until which each is refused outright
        self.refused: LRU[str, float] = LRU(max_entries=MAX_BUCKETS)

    def subject(self, viewer: Viewer | None, scope: Scope) -> Subject:
        """Whose budget pays for a request (None: not authenticated, as an address)."""
        if viewer is not None:
            if viewer.client_id is not None:
                policy = self.services.get(viewer.client_id, self.service)
                return Subject(policy, f"service:{viewer.client_id}")
            if viewer.user_id is not None:
                return Subject(self.user, f"user:{viewer.user_id}")
        client = scope.get("client")
        host = client[0] if client else "unknown"
        return Subject(self.anonymous, f"address:{_address_key(host)}")

    def still_refused(self, subject: Subject) -> Outcome | None:
        """A refusal without a charge, while this process knows the client cannot pay."""
        until = self.refused.peek(subject.key)
        if until is None:
            return None
        now = time.monotonic()
        if now >= until:
            self.refused.pop(subject.key)
            return None
        # the level at which one point is missing for `until - now` seconds
        return Outcome(False, WINDOW_SECONDS + (until - now) - subject.policy.interval, 1)

    async def charge(self, subject: Subject, cost: int) -> Outcome:
        """Charge `cost`, at most the whole budget: a request costing more (the cost limit
        may be set above a budget) can still be paid, by a client that has spent nothing
        for a minute."""
        cost = min(cost, subject.policy.quota)
        outcome = await self.buckets.charge(subject.key, cost, subject.policy)
        if not outcome.allowed:
            if observe.metrics is not None:
                observe.metrics.budget_refusals.labels(subject.policy.name).inc()
            now = time.monotonic()
            # until the cheapest request could be paid again
            wait = outcome.level + subject.policy.interval - WINDOW_SECONDS
            if wait > 0:
                self.refused.put(subject.key, now + wait)
        return outcome

    @staticmethod
    def refusal_message(subject: Subject, outcome: Outcome) -> str:
        return (
            f"Over budget: this client may spend {subject.policy.quota} cost points per"
            f" {WINDOW_SECONDS} s; retry in {outcome.retry_after(subject.policy)} s"
        )

    async def close(self) -> None:
        await self.buckets.close()


def build_budgets(settings: Settings) -> Budgets | None:
    """The process's budgets, or None when they are off (POPMAP_BUDGETS=false)."""
    if not settings.budgets:
        return None
    url = settings.budget_redis_url
    buckets: Buckets = RedisBuckets(url) if url else MemoryBuckets()
    return Budgets(settings, buckets)
