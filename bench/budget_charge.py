"""What one budget charge costs in this process: memory buckets and Redis buckets.

    .venv/bin/python bench/budget_charge.py    # needs redis-server (apt-get)

Charges distinct clients far below their budget, one at a time and then from 16 and 64
concurrent tasks (as requests of one worker under load), against a redis-server of the
driver's own on a free loopback port; prints wall-clock and CPU microseconds per charge.
Concurrent charges to Redis share round trips (budgets.py), so their CPU per charge falls.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from popmap_gql.http.budgets import Buckets, MemoryBuckets, Policy, RedisBuckets
from tests.processes import redis_server

CHARGES = 4000


async def _measure(name: str, buckets: Buckets) -> None:
    policy = Policy("anonymous", 10**12)
    await buckets.charge("warm", 1, policy)
    for concurrency in (1, 16, 64):

        async def client(n: int, each: int = CHARGES // concurrency) -> None:
            for i in range(each):
                await buckets.charge(f"address:10.{n}.{i % 50}.1", 10, policy)

        wall, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client(n) for n in range(concurrency)))
        wall = (time.perf_counter() - wall) / CHARGES * 1e6
        cpu = (time.process_time() - cpu) / CHARGES * 1e6
        print(f"{name} concurrency={concurrency} wall_us={wall:.1f} cpu_us={cpu:.1f}")
    await buckets.close()


def main() -> None:
    asyncio.run(_measure("memory", MemoryBuckets()))
    with tempfile.TemporaryDirectory() as folder, redis_server(Path(folder)) as url:
        asyncio.run(_measure("redis", RedisBuckets(url)))


if __name__ == "__main__":
    main()
