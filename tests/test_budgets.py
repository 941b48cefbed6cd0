"""Per-client budgets (http/budgets.py): cost points per minute per address, person and
service; 429 RATE_LIMITED beyond them, RateLimit fields on every answer, shared by the
workers of `serve --workers 2` through a real redis-server that these tests start.

The budgets here are small (150 points a minute, 2.5 a second), so that a few requests
use one up and a refusal stays a refusal for many seconds: the requests each test sends
take a small part of that, and the only waits are the Retry-After the server states.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from popmap_gql.api.schema import build_schema
from popmap_gql.config import MUTATION_MINIMUM_COST, ConfigError, Settings, load_settings
from popmap_gql.http.budgets import MemoryBuckets, Policy, RedisBuckets
from popmap_gql.http.observe import ACCESS_LOGGER
from tests.fake_cognito import (
    OTHER_SERVICE_CLIENT,
    SERVICE_CLIENT,
    FakeCognito,
)
from tests.people import person, service
from tests.processes import free_port, server_process
from tests.processes import redis_server as start_redis

BUDGET = 150  # points a minute, for every kind of client of the test servers
SERVICE_OWN_BUDGET = 100_000  # OTHER_SERVICE_CLIENT's own (POPMAP_BUDGET_SERVICE_CLIENTS)

FIVE = "query Five { businesses(first: 5) { edges { node { name } } } }"
TWO = "query Two { businesses(first: 2) { edges { node { name } } } }"
LEAVE = (
    'mutation Leave { leaveEvent(eventId: "RXZlbnQ6MQ", businessId: "QnVzaW5lc3M6MQ")'
    " { event { id } } }"
)
POLICY = re.compile(r'^"(anonymous|user|service)";q=(\d+);w=60$')
LIMIT = re.compile(r'^"(anonymous|user|service)";r=(\d+);t=(\d+)$')


def cost(query: str) -> int:
    """The cost the server admits `query` at (api/cost.py), from the same schema."""
    return cost_with(query, None)


def cost_with(query: str, variables: dict[str, Any] | None) -> int:
    admission = build_schema(Settings()).admits(query, None, variables)
    assert admission is not None
    return admission.cost


def remaining(response: httpx.Response) -> int:
    match = LIMIT.match(response.headers["ratelimit"])
    assert match, response.headers["ratelimit"]
    return int(match[2])


def code(response: httpx.Response) -> str:
    codes: str = response.json()["errors"][0]["extensions"]["code"]
    return codes


# --- a real redis-server ------------------------------------------------------------------


@dataclass(frozen=True)
class Redis:
    url: str
    port: int


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Redis]:
    """redis-server on a free loopback port, nothing persisted; .ci/run installs it."""
    with start_redis(tmp_path_factory.mktemp("redis")) as url:
        yield Redis(url, int(url.rsplit(":", 1)[1].split("/")[0]))


# --- the servers --------------------------------------------------------------------------


def _env(settings: Settings, cognito: FakeCognito, data_dir: Path, **more: str) -> dict[str, str]:
    assert settings.database_url is not None
    return cognito.server_env(
        settings.database_url,
        data_dir,
        AWS_COGNITO_SERVICE_CLIENT_IDS=f"{SERVICE_CLIENT},{OTHER_SERVICE_CLIENT}",
        POPMAP_MAX_QUERY_COST=str(2 * BUDGET),  # a request may cost more than a budget
        POPMAP_BUDGET_ANONYMOUS_PER_MINUTE=str(BUDGET),
        POPMAP_BUDGET_USER_PER_MINUTE=str(BUDGET),
        POPMAP_BUDGET_SERVICE_PER_MINUTE=str(BUDGET),
        POPMAP_BUDGET_SERVICE_CLIENTS=f"{OTHER_SERVICE_CLIENT}={SERVICE_OWN_BUDGET}",
        POPMAP_LOG_FORMAT="json",
        **more,
    )


@dataclass(frozen=True)
class Server:
    base: str
    log: Path


@pytest.fixture(scope="module")
def one_process(
    settings: Settings, cognito: FakeCognito, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """One process, buckets in memory; uvicorn believes X-Forwarded-For from loopback
    (its default, FORWARDED_ALLOW_IPS=127.0.0.1), so a test can speak for any address."""
    data_dir = tmp_path_factory.mktemp("budgets")
    log = data_dir / "server.log"
    env = _env(settings, cognito, data_dir, FORWARDED_ALLOW_IPS="127.0.0.1")
    with server_process(env, log=log) as (_, base):
        yield Server(base, log)


@pytest.fixture(scope="module")
def two_workers(
    settings: Settings,
    cognito: FakeCognito,
    redis_server: Redis,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """`serve --workers 2` sharing Redis; X-Forwarded-For is believed only from an address
    that is not the tests' (192.0.2.1), so it must be ignored."""
    data_dir = tmp_path_factory.mktemp("budgets-workers")
    log = data_dir / "server.log"
    env = _env(
        settings,
        cognito,
        data_dir,
        FORWARDED_ALLOW_IPS="192.0.2.1",
        POPMAP_BUDGET_REDIS_URL=redis_server.url,
    )
    with server_process(env, "--workers", "2", log=log) as (_, base):
        deadline = time.monotonic() + 60
        while log.read_text().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield Server(base, log)


@pytest.fixture
async def http(one_process: Server, clean_db: None) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=one_process.base, timeout=30) as client:
        yield client


async def ask(
    http: httpx.AsyncClient,
    query: str,
    address: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    sent = dict(headers or {})
    if address is not None:
        sent["X-Forwarded-For"] = address
    return await http.post("/graphql", json={"query": query}, headers=sent)


async def spend_all(
    http: httpx.AsyncClient, query: str, address: str | None = None, **kw: Any
) -> tuple[list[httpx.Response], httpx.Response]:
    """`query` until the budget refuses it: the answers served and the refusal."""
    served: list[httpx.Response] = []
    for _ in range(BUDGET * 2):  # every request costs >= 1 and few points refill meanwhile
        response = await ask(http, query, address, **kw)
        if response.status_code == 429:
            return served, response
        assert response.status_code == 200, response.text
        served.append(response)
    raise AssertionError(f"no refusal after {len(served)} requests")


# --- one client refused, the others served -------------------------------------------------


async def test_an_address_over_budget_is_refused_while_other_clients_are_served(
    http: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    served, refused = await spend_all(http, FIVE, "198.51.100.1")

    assert len(served) <= BUDGET // cost(FIVE) + 1  # a point refills every 0.4 s
    assert refused.status_code == 429
    assert code(refused) == "RATE_LIMITED"
    assert "data" not in refused.json()
    assert int(refused.headers["retry-after"]) >= 1
    # another address, and a person from the same address, have budgets of their own
    other = await ask(http, FIVE, "198.51.100.2")
    someone = await person(cognito, "ada")
    signed_in = await ask(http, FIVE, "198.51.100.1", headers=someone.headers)
    assert (other.status_code, signed_in.status_code) == (200, 200)
    assert other.headers["ratelimit"].startswith('"anonymous";')
    assert signed_in.headers["ratelimit"].startswith('"user";')
    # and the refused address stays refused
    assert (await ask(http, FIVE, "198.51.100.1")).status_code == 429


async def test_a_person_over_budget_is_refused_while_another_person_is_served(
    http: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    grace, alan = await person(cognito, "grace"), await person(cognito, "alan")

    _, refused = await spend_all(http, FIVE, headers=grace.headers)
    served = await ask(http, FIVE, headers=alan.headers)

    assert code(refused) == "RATE_LIMITED"
    assert served.status_code == 200


async def test_a_service_client_can_have_a_budget_of_its_own(
    http: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    limited = service(cognito, "limited", client=SERVICE_CLIENT)
    generous = service(cognito, "generous", client=OTHER_SERVICE_CLIENT)

    _, refused = await spend_all(http, FIVE, headers=limited.headers)
    served = await ask(http, FIVE, headers=generous.headers)

    assert code(refused) == "RATE_LIMITED"
    assert refused.headers["ratelimit-policy"] == f'"service";q={BUDGET};w=60'
    assert served.status_code == 200
    assert served.headers["ratelimit-policy"] == f'"service";q={SERVICE_OWN_BUDGET};w=60'


# --- what is charged ----------------------------------------------------------------------


async def test_cache_hits_are_charged(http: httpx.AsyncClient) -> None:
    served, refused = await spend_all(http, FIVE, "198.51.100.3")

    hits = [r for r in served if r.headers.get("x-popmap-cache") == "hit"]
    assert hits  # every answer after the first came from the response cache ...
    assert len(served) <= BUDGET // cost(FIVE) + 1  # ... and each paid its cost
    assert code(refused) == "RATE_LIMITED"


async def test_a_mutation_costs_at_least_the_minimum(http: httpx.AsyncClient) -> None:
    assert cost(LEAVE) < BUDGET - MUTATION_MINIMUM_COST  # without the minimum, two would pass
    address = "198.51.100.4"

    first = await ask(http, LEAVE, address)
    second = await ask(http, LEAVE, address)
    cheap = await ask(http, TWO, address)

    assert first.status_code == 200  # executed (and refused for want of a sign-in)
    assert remaining(first) < BUDGET - MUTATION_MINIMUM_COST + 10
    assert second.status_code == 429
    assert code(second) == "RATE_LIMITED"
    assert cheap.status_code == 200  # what is left pays for a cheap query


async def test_a_refused_request_does_no_work(http: httpx.AsyncClient, one_process: Server) -> None:
    address = "198.51.100.5"
    await spend_all(http, "{ __typename }", address)  # a point each: nothing left at all

    # refused before the cache is consulted or anything executes: no SQL at all
    refused = await http.post(
        "/graphql",
        json={"query": "query Unseen { categories { name } }"},
        headers={"X-Forwarded-For": address, "X-Request-ID": "refused-unseen"},
    )

    assert refused.status_code == 429
    record = await access_record(one_process.log, "refused-unseen")
    assert record["statements"] == 0
    assert record["status"] == 429


# --- the fields on every answer -----------------------------------------------------------


async def test_every_answer_carries_the_ratelimit_fields(
    http: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    address = "198.51.100.6"
    answers = {
        "executed": await ask(http, FIVE, address),
        "cache hit": await ask(http, FIVE, address),
        "invalid document": await ask(http, "{ nosuchfield }", address),
        "malformed JSON": await http.post(
            "/graphql",
            content=b"{",
            headers={"Content-Type": "application/json", "X-Forwarded-For": address},
        ),
        "bad token": await ask(http, FIVE, address, headers={"Authorization": "Bearer x.y.z"}),
        "GET": await http.get(
            "/graphql", params={"query": TWO}, headers={"X-Forwarded-For": address}
        ),
    }
    _, answers["refused"] = await spend_all(http, FIVE, address)

    assert answers["cache hit"].headers["x-popmap-cache"] == "hit"
    assert answers["bad token"].status_code == 401
    for what, response in answers.items():
        policy = POLICY.match(response.headers.get("ratelimit-policy", ""))
        limit = LIMIT.match(response.headers.get("ratelimit", ""))
        assert policy, (what, response.headers)
        assert limit, (what, response.headers)
        assert policy[1] == limit[1] == "anonymous", what
        assert int(policy[2]) == BUDGET, what
        assert int(limit[2]) <= BUDGET, what
        assert int(limit[3]) <= 60, what


async def test_the_budgets_of_the_settings_are_announced(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    response = await client.post("/graphql", json={"query": TWO})

    assert response.status_code == 200
    quota = settings.budget_anonymous_per_minute
    assert response.headers["ratelimit-policy"] == f'"anonymous";q={quota};w=60'
    assert LIMIT.match(response.headers["ratelimit"])


def test_the_default_budgets_pay_for_the_costliest_map_pages_many_times_a_minute() -> None:
    defaults = Settings()
    # the README's costliest example: 20 events, each with 50 businesses and their categories
    map_page = cost(
        "{ events(first: 20) { edges { node { title businesses { name categories { name } } } } } }"
    )

    assert defaults.budgets
    assert defaults.budget_anonymous_per_minute >= 100 * map_page
    assert defaults.budget_user_per_minute >= 100 * map_page
    assert defaults.budget_service_per_minute >= 1_000 * map_page


async def test_a_browser_may_read_the_fields(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql", json={"query": TWO}, headers={"Origin": "http://localhost:5173"}
    )

    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert {"ratelimit", "ratelimit-policy", "retry-after"} <= exposed


# --- refill -------------------------------------------------------------------------------


async def test_after_the_stated_retry_after_the_client_is_served_again(
    http: httpx.AsyncClient,
) -> None:
    address = "198.51.100.9"
    _, refused = await spend_all(http, TWO, address)
    retry = int(refused.headers["retry-after"])

    # what the fields say agrees with Retry-After: nothing to spend until then
    assert refused.headers["ratelimit"] == f'"anonymous";r={remaining(refused)};t={retry}'
    assert remaining(refused) < cost(TWO)
    # two points and a half refill each second: TWO waits at most its cost's share
    assert 1 <= retry <= -(-cost(TWO) * 60 // BUDGET)
    await asyncio.sleep(retry)
    again = await ask(http, TWO, address)

    assert again.status_code == 200, again.text


# --- addresses ----------------------------------------------------------------------------


async def test_x_forwarded_for_from_a_peer_not_trusted_is_ignored(
    two_workers: Server, clean_db: None
) -> None:
    async with httpx.AsyncClient(base_url=two_workers.base, timeout=30) as http:
        _, refused = await spend_all(http, FIVE, "203.0.113.1")
        # another X-Forwarded-For, the same peer: the same (spent) budget
        also = await ask(http, FIVE, "203.0.113.2")

    assert code(refused) == "RATE_LIMITED"
    assert also.status_code == 429


async def test_an_ipv6_address_shares_its_budget_with_its_64_and_a_mapped_ipv4_its_own(
    http: httpx.AsyncClient,
) -> None:
    _, refused = await spend_all(http, FIVE, "2001:db8:1:2::1")
    same_64 = await ask(http, FIVE, "2001:db8:1:2:ffff:ffff:ffff:9")
    next_64 = await ask(http, FIVE, "2001:db8:1:3::1")
    _, _ = await spend_all(http, FIVE, "198.51.100.77")
    mapped = await ask(http, FIVE, "::ffff:198.51.100.77")

    assert code(refused) == "RATE_LIMITED"
    assert same_64.status_code == 429  # one host may hold a whole /64
    assert next_64.status_code == 200
    assert mapped.status_code == 429  # the same IPv4 client, spelled as IPv6


async def test_a_forwarded_value_that_is_no_address_has_a_budget_of_its_own(
    http: httpx.AsyncClient,
) -> None:
    _, refused = await spend_all(http, FIVE, "not:an:address")
    other = await ask(http, FIVE, "not:an:other")

    assert code(refused) == "RATE_LIMITED"
    assert other.status_code == 200


async def test_requests_refused_before_they_are_charged_spend_the_budget_too(
    http: httpx.AsyncClient,
) -> None:
    # A bad token is answered 401 before any charge, then charged REFUSED_COST (a point)
    # to its address: once its budget is spent, such requests are refused with 429 too.
    address = "198.51.100.78"
    bad_token = {"Authorization": "Bearer not.a.jwt"}
    answers = [await ask(http, FIVE, address, headers=bad_token)]
    while answers[-1].status_code == 401 and len(answers) < BUDGET * 4:
        answers.append(await ask(http, FIVE, address, headers=bad_token))
    elsewhere = await ask(http, FIVE, "198.51.100.79", headers=bad_token)

    assert {a.status_code for a in answers[:-1]} == {401}
    assert answers[-1].status_code == 429
    assert code(answers[-1]) == "RATE_LIMITED"
    assert answers[-1].headers["ratelimit"].startswith('"anonymous";r=0;')
    assert elsewhere.status_code == 401


# --- shared by the workers ----------------------------------------------------------------


async def access_record(log: Path, request_id: str) -> dict[str, Any]:
    """The access line of one request, once the server has written it."""
    deadline = time.monotonic() + 15
    while True:
        text = await asyncio.to_thread(log.read_text)
        for line in text.splitlines():
            if line.startswith("{") and f'"request_id":"{request_id}"' in line:
                record: dict[str, Any] = orjson.loads(line)
                if record["logger"] == ACCESS_LOGGER:
                    return record
        assert time.monotonic() < deadline, text[-3000:]
        await asyncio.sleep(0.1)


async def test_the_workers_share_one_budget_through_redis(
    two_workers: Server, cognito: FakeCognito, clean_db: None
) -> None:
    someone = await person(cognito, "linus")
    fresh = httpx.Limits(max_keepalive_connections=0)  # a new connection: either worker
    statuses: list[tuple[str, int]] = []
    async with httpx.AsyncClient(base_url=two_workers.base, timeout=30, limits=fresh) as http:
        for n in range(BUDGET // cost(FIVE) * 2 + 4):
            response = await ask(
                http, FIVE, headers={**someone.headers, "X-Request-ID": f"shared-{n}"}
            )
            statuses.append((f"shared-{n}", response.status_code))
            if response.status_code == 429:
                break
    pids = {rid: (await access_record(two_workers.log, rid))["pid"] for rid, _ in statuses}

    assert statuses[-1][1] == 429
    served = [rid for rid, status in statuses if status == 200]
    first_refuser = pids[statuses[-1][0]]
    # both workers served the person; the one that refused had served less than a
    # budget's worth itself: it counted what the other worker had charged
    assert len({pids[rid] for rid in served}) == 2, pids
    own = sum(1 for rid in served if pids[rid] == first_refuser)
    assert own < BUDGET // cost(FIVE)


# --- the stores themselves ----------------------------------------------------------------


async def test_redis_buckets_charge_atomically_on_the_servers_clock(redis_server: Redis) -> None:
    buckets = RedisBuckets(redis_server.url)
    policy = Policy("user", 600)  # ten points a second
    try:
        outcomes = await asyncio.gather(
            *(buckets.charge("test:atomic", 60, policy) for _ in range(12))
        )
    finally:
        await buckets.close()

    # 600 points pay for ten charges of 60, however the twelve interleave
    assert sum(o.allowed for o in outcomes) == 10
    refused = next(o for o in outcomes if not o.allowed)
    assert dict(refused.headers(policy))[b"retry-after"] in {b"5", b"6"}  # 54 to 60 points missing


async def test_redis_charges_waiting_together_each_get_their_own_outcome(
    redis_server: Redis,
) -> None:
    # 300 charges at once go to Redis in pipelines (at most MAX_PIPELINED each); every
    # client's outcome is its own: five clients of 100 points, each charged 60 times 2
    buckets = RedisBuckets(redis_server.url)
    policy = Policy("user", 100)
    keys = [f"test:batch:{n}" for n in range(5)]
    try:
        outcomes = await asyncio.gather(
            *(buckets.charge(key, 2, policy) for _ in range(60) for key in keys)
        )
    finally:
        await buckets.close()

    for n, key in enumerate(keys):
        own = outcomes[n :: len(keys)]
        assert sum(o.allowed for o in own) == 50, key  # 100 points pay for 50 charges of 2
        assert all(o.allowed for o in own[:50])
        assert not any(o.allowed for o in own[50:])


async def test_redis_buckets_load_their_script_again_after_redis_forgets_it(
    redis_server: Redis,
) -> None:
    import redis.asyncio

    buckets = RedisBuckets(redis_server.url)
    admin = redis.asyncio.Redis.from_url(redis_server.url)
    policy = Policy("user", 600)
    try:
        first = await buckets.charge("test:flush", 500, policy)
        await admin.script_flush()  # as after a restart of Redis
        second = await buckets.charge("test:flush", 500, policy)
    finally:
        await buckets.close()
        await admin.aclose()

    assert first.allowed
    assert not second.allowed  # Redis's bucket, not a fallback of this process's own
    assert not buckets.down_until


async def test_a_charge_given_up_by_its_request_leaves_the_others_served(
    redis_server: Redis,
) -> None:
    buckets = RedisBuckets(redis_server.url)
    policy = Policy("user", 600)
    try:
        gone = asyncio.create_task(buckets.charge("test:gone", 1, policy))
        others = [asyncio.create_task(buckets.charge("test:stays", 1, policy)) for _ in range(3)]
        await asyncio.sleep(0)  # all four wait for the same round trip
        gone.cancel()
        outcomes = await asyncio.gather(*others)
        later = await buckets.charge("test:stays", 1, policy)
    finally:
        await buckets.close()

    assert all(o.allowed for o in outcomes)
    assert later.allowed


async def test_without_redis_the_process_charges_its_own_buckets(
    caplog: pytest.LogCaptureFixture,
) -> None:
    buckets = RedisBuckets(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    policy = Policy("anonymous", 600)
    try:
        with caplog.at_level("WARNING", logger="popmap_gql.http.budgets"):
            first = await buckets.charge("test:down", 400, policy)
            second = await buckets.charge("test:down", 400, policy)
    finally:
        await buckets.close()

    assert first.allowed  # served: a broken Redis does not take the API down
    assert not second.allowed  # and the process still holds the client to its budget
    warnings = [r for r in caplog.records if "Redis failed" in r.getMessage()]
    assert len(warnings) == 1  # once, not once per request


async def test_redis_answering_an_error_is_a_fault_and_its_buckets_are_charged_once_it_recovers(
    redis_server: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    import redis.asyncio

    buckets = RedisBuckets(redis_server.url)
    admin = redis.asyncio.Redis.from_url(redis_server.url)
    policy = Policy("anonymous", 600)
    key = "test:wrong-type"
    try:
        # a key of another type under the bucket's name: the script fails with WRONGTYPE
        await admin.lpush("popmap:budget:" + key, "x")
        with caplog.at_level("WARNING", logger="popmap_gql.http.budgets"):
            during = await buckets.charge(key, 400, policy)
            await admin.delete("popmap:budget:" + key)
            deadline = time.monotonic() + 30  # Redis is retried REDIS_RETRY_SECONDS later
            while "Redis answers again" not in caplog.text:
                assert time.monotonic() < deadline, caplog.text
                await asyncio.sleep(0.2)
                after = await buckets.charge(key, 400, policy)
        stored = await admin.get("popmap:budget:" + key)
    finally:
        await buckets.close()
        await admin.aclose()

    assert during.allowed  # served by this process's own buckets meanwhile
    assert "Redis failed (ResponseError: WRONGTYPE" in caplog.text
    assert after.allowed
    assert stored is not None  # charged in Redis again


async def test_redis_faults_are_counted_in_the_metrics(
    settings: Settings, cognito: FakeCognito, tmp_path: Path, clean_db: None
) -> None:
    env = _env(
        settings,
        cognito,
        tmp_path,
        POPMAP_METRICS="true",
        POPMAP_BUDGET_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
    )
    with server_process(env, log=tmp_path / "server.log") as (_, base):
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            served = await ask(client, FIVE)
            scraped = (await client.get("/metrics")).text

    assert served.status_code == 200  # a broken Redis does not take the API down
    [faults] = [
        line for line in scraped.splitlines() if line.startswith("popmap_budget_store_faults_total")
    ]
    assert float(faults.split()[-1]) >= 1


async def test_a_request_costing_more_than_the_budget_is_charged_the_whole_budget(
    http: httpx.AsyncClient,
) -> None:
    # admitted (the test servers' cost limit is twice the budget), and paid by a fresh
    # address, which then has nothing left
    costly = "query Costly($n: Int) { businesses(first: $n) { edges { node { name } } } }"
    biggest = 100  # the connection's largest page (docs/api.md)
    assert BUDGET < cost_with(costly, {"n": biggest}) <= 2 * BUDGET
    address = "198.51.100.10"
    response = await http.post(
        "/graphql",
        json={"query": costly, "variables": {"n": biggest}},
        headers={"X-Forwarded-For": address},
    )

    assert response.status_code == 200, response.text
    assert remaining(response) < cost(TWO)


async def test_memory_buckets_forget_the_least_recently_charged_first() -> None:
    buckets = MemoryBuckets(limit=4)
    policy = Policy("anonymous", 600)
    for n in range(5):
        await buckets.charge(f"client:{n}", 600, policy)

    assert not (await buckets.charge("client:4", 1, policy)).allowed
    assert (await buckets.charge("client:0", 1, policy)).allowed  # forgotten: full again


# --- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"POPMAP_BUDGET_USER_PER_MINUTE": "99"}, "POPMAP_BUDGET_USER_PER_MINUTE is 99"),
        ({"POPMAP_BUDGET_ANONYMOUS_PER_MINUTE": "0"}, "POPMAP_BUDGET_ANONYMOUS_PER_MINUTE"),
        ({"POPMAP_BUDGET_SERVICE_CLIENTS": "nobody=5000000"}, "not in AWS_COGNITO_SERVICE"),
        ({"POPMAP_BUDGET_SERVICE_CLIENTS": "nobody"}, "client-id=points"),
        ({"POPMAP_BUDGET_REDIS_URL": "http://localhost:6379"}, "redis://"),
    ],
)
def test_budget_settings_are_checked_at_start_up(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(environ, env_file=None)


def test_budget_settings_are_read() -> None:
    settings = load_settings(
        {
            "AWS_COGNITO_SERVICE_CLIENT_IDS": "a,b",
            "POPMAP_BUDGET_SERVICE_CLIENTS": "a=300000, b=400000",
            "POPMAP_BUDGET_REDIS_URL": "redis://127.0.0.1:6379/0",
            "POPMAP_BUDGETS": "false",
        },
        env_file=None,
    )

    assert settings.budget_service_clients == (("a", 300_000), ("b", 400_000))
    assert settings.budget_redis_url == "redis://127.0.0.1:6379/0"
    assert settings.budgets is False


async def test_a_charge_of_the_whole_budget_fits_a_full_bucket_at_any_clock_value() -> None:
    """(now + 60) - now rounds above 60 at some clock values: a full bucket still takes
    a charge of its whole budget there."""
    rounding = [n * 0.37 for n in range(100_000) if (n * 0.37 + 60.0) - n * 0.37 > 60.0]
    assert rounding  # such clock values exist
    clock = iter(rounding)
    buckets = MemoryBuckets(clock=lambda: next(clock))
    policy = Policy("anonymous", 600)

    outcomes = [buckets.charge_now(f"client:{n}", 600, policy) for n in range(len(rounding))]

    assert all(outcome.allowed for outcome in outcomes)
