"""Memory is bounded by bytes, not by entries: a stream of distinct large documents leaves
a worker's resident memory bounded, and each cache that keeps client-supplied text holds
at most its share of POPMAP_DOCUMENT_MEMORY_BYTES."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import psutil

from popmap_gql.config import Settings
from tests.processes import clean_env, server_process

DOCUMENTS = 2_000
DOCUMENT_BYTES = 95_000
RSS_LIMIT = 150 * 1024 * 1024


def large_document(n: int, size: int = DOCUMENT_BYTES) -> str:
    """A valid document of about `size` bytes, distinct for each n: a long comment, then
    a small query."""
    query = "{ categories { name } }"
    head = f"# {n} "
    return head + "x" * (size - len(head) - len(query) - 1) + "\n" + query


async def _send_all(base: str, count: int) -> list[int]:
    statuses: list[int] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(count):
        queue.put_nowait(n)

    async def sender(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            response = await client.post("/graphql", json={"query": large_document(n)})
            statuses.append(response.status_code)
            assert "errors" not in response.json(), response.text

    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        await asyncio.gather(*(sender(client) for _ in range(8)))
    return statuses


def test_distinct_large_documents_leave_a_worker_under_150_mb(
    settings: Settings, tmp_path: Path
) -> None:
    assert settings.database_url is not None
    env = clean_env(
        DATABASE_URL=settings.database_url,
        POPMAP_DATA_DIR=str(tmp_path),
    )
    with server_process(env, log=tmp_path / "server.log") as (process, base):
        worker = psutil.Process(process.pid)
        before = worker.memory_info().rss
        statuses = asyncio.run(_send_all(base, DOCUMENTS))
        after = worker.memory_info().rss
    print(f"rss before {before / 2**20:.1f} MB, after {after / 2**20:.1f} MB")
    assert statuses == [200] * DOCUMENTS
    assert after < RSS_LIMIT, f"{after / 2**20:.1f} MB after {DOCUMENTS} documents"
