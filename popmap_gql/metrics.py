"""Prometheus metrics (`POPMAP_METRICS=true`), with prometheus_client.

One `Metrics` per process, installed in `popmap_gql.observe.metrics` by the first app
that asks for it (`observe.install`; this module imports nothing of ours, so any layer
can reach the installed one through `observe` without importing prometheus_client).
Under `serve --workers N` (N > 1) every worker writes its values to files in the folder
`serve` names in PROMETHEUS_MULTIPROC_DIR (prometheus_client's multiprocess mode, chosen
by that variable when the library is imported), and whichever process answers a scrape
sums them: counters and histograms over every worker that ever ran since `serve`
started, gauges over the live ones.

Label values come from a fixed set (routes, statuses, kinds) except operation names,
which clients choose: `OperationNames` keeps those few and short (see there).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

__all__ = [
    "CONTENT_TYPE",
    "MAX_OPERATION_NAMES",
    "OTHER",
    "Metrics",
    "OperationNames",
    "exposition_registry",
    "prepare_multiprocess_dir",
]

CONTENT_TYPE = CONTENT_TYPE_LATEST

# An operation name becomes a label value only if it is made of these, at most 64 of
# them, and only for the first MAX_OPERATION_NAMES distinct names a process sees; any
# other is counted as OTHER. Prometheus keeps a series per label value: a client sending
# random names must not be able to make it keep millions.
_LABEL_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")
MAX_OPERATION_NAMES = 100
OTHER = "other"

# Request latency buckets, in seconds: a cached answer takes well under a millisecond,
# a compiled read a few, a mutation tens; the statement timeout is seconds.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10)


class OperationNames:
    """Operation names as label values: a name is itself if it is short and plain and
    one of the first `limit` this process has seen, else OTHER; none is ""."""

    def __init__(self, limit: int = MAX_OPERATION_NAMES) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def label(self, name: str | None) -> str:
        if name is None:
            return ""
        if name in self._seen:
            return name
        if not _LABEL_NAME.fullmatch(name):
            return OTHER
        with self._lock:
            if len(self._seen) >= self.limit:
                return OTHER
            self._seen.add(name)
        return name


class Metrics:
    """Every metric of the API. `multiprocess_dir` is PROMETHEUS_MULTIPROC_DIR if set."""

    def __init__(self, multiprocess_dir: Path | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry()
        registry = self.registry
        self.operations = OperationNames()

        def counter(name: str, meaning: str, *labels: str) -> Counter:
            return Counter(name, meaning, labels, registry=registry)

        def gauge(name: str, meaning: str) -> Gauge:
            """Summed over the live workers."""
            return Gauge(name, meaning, registry=registry, multiprocess_mode="livesum")

        def histogram(name: str, meaning: str, *labels: str) -> Histogram:
            return Histogram(name, meaning, labels, buckets=LATENCY_BUCKETS, registry=registry)

        self.requests = counter(
            "popmap_http_requests",
            "HTTP requests answered, by route, GraphQL operation name and HTTP status.",
            *("route", "operation", "status"),
        )
        self.latency = histogram(
            "popmap_http_request_duration_seconds",
            "Time from a request's arrival to its response's last byte, by route and"
            " GraphQL operation name.",
            *("route", "operation"),
        )
        self.cache_hits = counter(
            "popmap_response_cache_hits", "GraphQL requests answered from the response cache."
        )
        self.cache_misses = counter(
            "popmap_response_cache_misses", "Cacheable GraphQL requests that had to be executed."
        )
        self.cache_bytes = gauge(
            "popmap_response_cache_bytes",
            "Bytes the response cache holds (bodies, keys and per-entry overhead).",
        )
        self.jwks_fetches = counter(
            "popmap_jwks_fetches",
            "Fetches of the identity provider's signing keys, by outcome (ok, failed).",
            "outcome",
        )
        self.pool_in_use = gauge(
            "popmap_db_pool_in_use", "Database connections borrowed from the pool right now."
        )
        self.pool_waiting = gauge(
            "popmap_db_pool_waiting", "Requests waiting for a pooled database connection right now."
        )
        self.db_faults = counter(
            "popmap_db_faults",
            "Database faults answered 503, by kind: statement timeout, unreachable,"
            " no connection within the pool timeout, server out of resources, connection"
            " broken.",
            "kind",
        )

        self.budget_refusals = counter(
            "popmap_budget_refusals",
            "GraphQL requests refused 429 RATE_LIMITED, by budget (anonymous, user, service).",
            "budget",
        )
        self.budget_store_faults = counter(
            "popmap_budget_store_faults",
            "Charges Redis failed to make (POPMAP_BUDGET_REDIS_URL); this process then"
            " charges its own buckets for a few seconds.",
        )

        self.ws_connections = gauge(
            "popmap_ws_connections", "WebSockets open on /graphql right now."
        )
        self.ws_subscriptions = gauge("popmap_ws_subscriptions", "Subscriptions running right now.")
        self.ws_messages = counter(
            "popmap_ws_messages_sent",
            "Messages sent on WebSockets (next, error, pings and the protocol's others).",
        )
        self.live_cohorts = gauge(
            "popmap_live_cohorts",
            "Groups of identical subscriptions, each evaluated once per window.",
        )
        self.live_messages = counter(
            "popmap_live_changes_delivered",
            "Changes (ADDED, UPDATED, REMOVED) handed to subscribers' connections.",
        )
        self.live_statements = counter(
            "popmap_live_statements",
            "SQL statements live evaluation sent: one routing statement per window, and"
            " one per cohort with a change that may concern it.",
        )
        self.live_lag = histogram(
            "popmap_live_fanout_seconds",
            "From the end of a window of changes to the changes queued for subscribers.",
        )

    def exposition(self) -> bytes:
        """The text a scrape gets: this process's values, or every worker's."""
        return generate_latest(exposition_registry(self.multiprocess_dir, self.registry))

    def process_ended(self) -> None:
        """Under workers: this worker's gauges no longer count (its counters still do)."""
        if self.multiprocess_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), str(self.multiprocess_dir))  # type: ignore[no-untyped-call]


def exposition_registry(
    multiprocess_dir: Path | None, registry: CollectorRegistry | None = None
) -> CollectorRegistry:
    """What to expose: every worker's files in `multiprocess_dir`, else `registry`."""
    if multiprocess_dir is None:
        assert registry is not None
        return registry
    merged = CollectorRegistry()
    multiprocess.MultiProcessCollector(merged, str(multiprocess_dir))  # type: ignore[no-untyped-call]
    return merged


def prepare_multiprocess_dir(folder: Path) -> Path:
    """An empty folder for the workers' metric files: what an earlier run left is gone."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, mode=0o700)
    return folder
