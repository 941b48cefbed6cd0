"""`run.py --scale N`: every read scenario, uncached, on the data set x1 and xN in the
same rounds, and each one's xN throughput over its x1 throughput.

Two uncached servers (`POPMAP_RESPONSE_CACHE=false`), one on `popmap_bench` and one on
`popmap_bench_x{N}`, are loaded in turn with the same wrk settings as the rest of the
benchmark, round after round, so that the machine's drift falls on both alike. Q1, Q2
and Q3 use each data set's own picks (Q3 signs in as that data set's owner); `map`,
`search`, `category` and `near` send the same bodies to both. M1 writes and is left out.
"""

from __future__ import annotations

import asyncio
import statistics
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench import dataset
from bench.run import (
    RUN_DIR,
    Server,
    WrkRun,
    budget_environment,
    log,
    make_servers,
    mint_token,
    post,
    run_wrk,
    wait_ready,
)
from bench.scenarios import Scenario, build, build_map

READS = ("Q1", "Q2", "Q3", "map", "search", "category", "near")


@dataclass
class ScaleFigures:
    runs: dict[int, list[WrkRun]] = field(default_factory=dict)

    def rps(self, scale: int) -> float:
        return statistics.median(run.requests_per_second for run in self.runs[scale])

    def p50(self, scale: int) -> float:
        return statistics.median(run.p50_ms for run in self.runs[scale])


def _reads(picks: dataset.Picks) -> dict[str, Scenario]:
    every = {s.key: s for s in [*build(picks), *build_map()]}
    return {key: every[key] for key in READS}


async def _prepare(scale: int) -> tuple[str, dataset.Picks]:
    admin = await asyncio.to_thread(dataset.server_admin_url)
    if scale == 1:
        ds = dataset.generate()
        assert ds.picks is not None
        return await dataset.prepare_database(admin, ds, log=log), ds.picks
    return await dataset.prepare_scaled(admin, scale, log=log)


async def measure(scale: int, rounds: int, seconds: int) -> tuple[str, str]:
    """(a table, the `scale_xN` line)."""
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    scales = (1, scale)
    setups = {n: await _prepare(n) for n in scales}
    servers: dict[int, Server] = {}
    for n, (url, _) in setups.items():
        # one client sends the whole load: budgets as run.py's default, never unmet
        server = make_servers(url, budget_environment("memory", None))["uncached"]
        server.key = f"uncached_x{n}"
        server.log_path = RUN_DIR / f"{server.key}.log"
        servers[n] = server
    tokens = {
        n: await asyncio.to_thread(mint_token, picks.owner_email)
        for n, (_, picks) in setups.items()
    }
    reads = {n: _reads(picks) for n, (_, picks) in setups.items()}
    figures = {key: ScaleFigures() for key in READS}
    try:
        for server in servers.values():
            server.start()
        async with httpx.AsyncClient(timeout=60) as http:
            await asyncio.gather(*(wait_ready(http, s) for s in servers.values()))
            for n in scales:
                for key in READS:
                    _check(key, n, await _answer(http, servers[n], reads[n][key], tokens[n]))
        for key in READS:
            for n in scales:
                run_wrk(servers[n], reads[n][key], 1, tokens[n])  # warm-up
            for round_number in range(1, rounds + 1):
                for n in scales:
                    run = run_wrk(servers[n], reads[n][key], seconds, tokens[n])
                    figures[key].runs.setdefault(n, []).append(run)
                    log(
                        f"scale: {key:<8} round {round_number}/{rounds} x{n:<4}"
                        f" {run.requests_per_second:8.1f} req/s  p50 {run.p50_ms:6.2f} ms"
                        f"  errors {run.errors}"
                    )
    finally:
        for server in servers.values():
            server.stop()
    header = (
        f"{'scenario':<10} {'x1 req/s':>9} {'x1 p50':>8}"
        f" {f'x{scale} req/s':>11} {f'x{scale} p50':>9} {'ratio':>6}"
    )
    lines = [header, "-" * len(header)]
    ratios = []
    for key in READS:
        f = figures[key]
        ratio = f.rps(scale) / f.rps(1)
        ratios.append(f"{key}={ratio:.2f}")
        lines.append(
            f"{key:<10} {f.rps(1):>9.1f} {f.p50(1):>8.2f}"
            f" {f.rps(scale):>11.1f} {f.p50(scale):>9.2f} {ratio:>6.2f}"
        )
    errors = sum(run.errors for f in figures.values() for runs in f.runs.values() for run in runs)
    lines.append(f"errors: {errors}")
    return "\n".join(lines), f"scale_x{scale} {' '.join(ratios)}"


async def _answer(http: httpx.AsyncClient, server: Server, scenario: Scenario, token: str) -> Any:
    return await post(
        http, server.url, scenario.bodies[0], token if scenario.authenticated else None
    )


def _check(key: str, scale: int, answer: Any) -> None:
    """Each read answers without errors and with something in it, on both data sets."""
    if "errors" in answer or not answer.get("data"):
        raise RuntimeError(f"scale: {key} on x{scale} failed: {str(answer)[:300]}")
    data = next(iter(answer["data"].values()))
    if not data:
        raise RuntimeError(f"scale: {key} on x{scale} answered nothing: {str(answer)[:300]}")
    edges = data.get("edges") if isinstance(data, dict) else None
    if edges is not None and not edges:
        raise RuntimeError(f"scale: {key} on x{scale} answered no rows: {str(answer)[:300]}")
    log(
        f"scale: {key} answers on x{scale}"
        + (f" (totalCount {data['totalCount']})" if "totalCount" in data else "")
    )
