"""Memory is bounded by bytes, not only by entries: a stream of distinct large documents
leaves a worker's resident memory bounded, and each cache that keeps client-supplied
text holds at most its share of POPMAP_DOCUMENT_MEMORY_BYTES."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import httpx
import psutil
from starlette.applications import Starlette

from bench.document_memory import measure, shapes
from popmap_gql.api.documents import COSTS_KEPT, COSTS_MAX_BYTES, LONG_DOCUMENT
from popmap_gql.config import Settings
from popmap_gql.memory import LRU, DocumentMemory
from tests.processes import clean_env, server_process
from tests.test_response_cache import endpoint_of

SMALL = "{ categories { name } }"
DOCUMENTS = 2_000
DOCUMENT_BYTES = 95_000
RSS_LIMIT = 150 * 1024 * 1024


def padded(n: int, size: int) -> str:
    """A valid document of `size` characters, distinct for each n: a long comment, then
    a small query (the comment adds no token to count against the limit)."""
    head = f"# {n} "
    return head + "x" * (size - len(head) - len(SMALL) - 1) + "\n" + SMALL


def budget(lru: LRU[Any, Any]) -> int:
    assert lru.max_bytes is not None
    return lru.max_bytes


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def _send_all(base: str, count: int) -> list[int]:
    statuses: list[int] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def sender(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            text = padded(queue.get_nowait(), DOCUMENT_BYTES)
            response = await client.post("/graphql", json={"query": text})
            statuses.append(response.status_code)
            assert "errors" not in response.json(), response.text

    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        await asyncio.gather(*(sender(client) for _ in range(8)))
    return statuses


def test_distinct_large_documents_leave_a_worker_under_150_mb(
    settings: Settings, tmp_path: Path
) -> None:
    """The finding: 2,000 distinct 95 KB documents, anonymous, 8 at a time, with the
    default settings (main at f3202c9 ended at 313 MB)."""
    assert settings.database_url is not None
    env = clean_env(DATABASE_URL=settings.database_url, POPMAP_DATA_DIR=str(tmp_path))
    with server_process(env, log=tmp_path / "server.log") as (process, base):
        worker = psutil.Process(process.pid)  # one worker: uvicorn serves in this process
        statuses = asyncio.run(_send_all(base, DOCUMENTS))
        rss = worker.memory_info().rss
    assert statuses == [200] * DOCUMENTS
    assert rss < RSS_LIMIT, f"{rss / 2**20:.1f} MB after {DOCUMENTS} documents"


# --- the primitive ---------------------------------------------------------------------


def test_an_lru_keeps_both_bounds_least_recently_used_out_first() -> None:
    lru: LRU[str, str] = LRU(max_entries=3, max_bytes=100, size=lambda key, value: len(value))
    for key in "abc":
        assert lru.put(key, "x" * 10)
    assert lru.get("a") == "x" * 10  # now the most recently used
    assert lru.peek("b") == "x" * 10  # read without being used

    lru.put("d", "x" * 10)  # one entry too many: b goes
    assert list(lru) == ["c", "a", "d"]
    assert lru.bytes == 30

    lru.put("e", "x" * 75)  # 105 bytes: c goes
    assert list(lru) == ["a", "d", "e"]
    assert lru.bytes == 95

    assert lru.put("a", "x" * 101) is False  # larger than the whole budget: not kept
    assert list(lru) == ["a", "d", "e"]  # and nothing made room for it
    assert lru.pop("d") == "x" * 10
    assert (lru.bytes, len(lru)) == (85, 2)
    lru.clear()
    assert (lru.bytes, len(lru)) == (0, 0)


def test_an_lru_may_cap_each_entry_below_its_budget() -> None:
    lru: LRU[str, bytes] = LRU(max_bytes=100, max_entry_bytes=40, size=lambda k, v: len(v))
    assert lru.put("small", b"x" * 40)
    assert lru.put("large", b"x" * 41) is False
    assert list(lru) == ["small"]


def test_the_budget_is_shared_in_full() -> None:
    memory = DocumentMemory(32 * 1024 * 1024)
    shares = (memory.documents, memory.plans, memory.persisted, memory.known_bodies)
    assert sum(shares) == memory.total


def test_what_a_document_is_counted_bounds_what_it_holds() -> None:
    """The estimate stays above what tracemalloc sees each kind of document hold."""
    for name, text in shapes():
        held, prepared = measure(text)
        assert held <= prepared.size, name


# --- each cache, through real requests --------------------------------------------------


async def test_documents_and_plans_hold_at_most_their_bytes(
    client: httpx.AsyncClient, api_app: Starlette
) -> None:
    schema = endpoint_of(api_app).schema
    documents, plans = schema.documents.kept, schema.compiled.plans
    texts = [padded(n, LONG_DOCUMENT) for n in range(450)]  # the longest kept with others

    for text in texts:
        response = await client.post("/graphql", json={"query": text})
        assert response.json() == {"data": {"categories": []}}

    last = documents.peek(texts[-1])
    assert last is not None
    assert last.size * len(texts) > budget(documents)  # the bytes bound them, not the count
    assert documents.bytes <= budget(documents)
    assert texts[0] not in documents
    assert texts[-1] in documents
    assert len(documents) < len(texts)

    kept = [key for key in plans if key[0] in set(texts)]
    assert len(texts) * LONG_DOCUMENT > budget(plans)
    assert plans.bytes <= budget(plans)
    assert 0 < len(kept) < len(texts)
    assert kept[-1][0] == texts[-1]


async def test_long_documents_are_kept_apart_and_push_out_no_document_in_common_use(
    client: httpx.AsyncClient, api_app: Starlette
) -> None:
    schema = endpoint_of(api_app).schema
    documents = schema.documents
    common = "query InCommonUse { categories { name } }"
    assert (await client.post("/graphql", json={"query": common})).status_code == 200
    prepared = documents.kept.peek(common)
    long_ones = [padded(n, DOCUMENT_BYTES) for n in range(30)]

    for text in long_ones:
        response = await client.post("/graphql", json={"query": text})
        assert response.json() == {"data": {"categories": []}}

    assert documents.kept.peek(common) is prepared  # the same parse, still kept
    assert not any(text in documents.kept for text in long_ones)
    assert documents.long.bytes <= budget(documents.long)
    assert long_ones[0] not in documents.long
    assert long_ones[-1] in documents.long
    assert not any(len(key[0]) > LONG_DOCUMENT for key in schema.compiled.plans)


async def test_the_cost_memo_of_a_document_holds_at_most_its_bytes(
    client: httpx.AsyncClient, api_app: Starlette
) -> None:
    query = "query ($s: String) { businesses(filter: {search: $s}) { edges { node { id } } } }"
    documents = endpoint_of(api_app).schema.documents

    async def search(s: str) -> None:
        response = await client.post("/graphql", json={"query": query, "variables": {"s": s}})
        assert response.json() == {"data": {"businesses": {"edges": []}}}

    for n in range(COSTS_KEPT + 8):  # about 370 bytes each: 22 fit in the memo's 8 KiB
        await search(f"{n:03}" + "z" * 196)
    costs = documents.prepare(query).costs
    assert costs.bytes <= COSTS_MAX_BYTES
    assert 0 < len(costs) < COSTS_KEPT

    for n in range(COSTS_KEPT + 8):
        await search(f"word{n}")
    assert len(costs) == COSTS_KEPT


async def test_persisted_queries_in_memory_hold_at_most_their_bytes(
    client: httpx.AsyncClient, api_app: Starlette
) -> None:
    local = endpoint_of(api_app).persisted.local
    texts = [padded(n, 19_000) + f" # {sha256(str(n))}" for n in range(240)]

    for text in texts:
        extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha256(text)}}
        response = await client.post("/graphql", json={"query": text, "extensions": extensions})
        assert response.json() == {"data": {"categories": []}}, response.text

    assert len(texts) * 19_000 > budget(local)
    assert local.bytes <= budget(local)
    assert sha256(texts[0]) not in local
    assert sha256(texts[-1]) in local
