"""The configuration bench/cluster.py runs with: PgBouncer's and HAProxy's files and the
replicas' timing. docs/deployment.md shows these files as `examples()` writes them (a
test compares them), so the guide's examples are the configuration measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["examples", "haproxy_cfg", "pgbouncer_ini", "userlist"]

WORKERS = 2  # per replica
# Health checks: every CHECK_INTER_MS; DOWN after CHECK_FALL failures, UP after CHECK_RISE
# successes. The drain outlasts the time HAProxy needs to see a 503: fall x inter, plus
# up to one interval before the first failing check.
CHECK_INTER_MS = 1000
CHECK_FALL = 2
CHECK_RISE = 2
DRAIN_SECONDS = 5
SHUTDOWN_TIMEOUT_SECONDS = 20
# Longer than any idle time HAProxy keeps a server connection for reuse, so that it never
# sends a request on a connection the replica is closing.
KEEP_ALIVE_SECONDS = 75
PGBOUNCER_POOL_SIZE = 20
STATEMENT_TIMEOUT_MS = 10_000
POOLED_DATABASE = "popmap"  # the name clients give PgBouncer


def pgbouncer_ini(port: int, target: dict[str, Any], auth_file: Path) -> str:
    """PgBouncer in transaction pooling mode in front of `target` (asyncpg credentials:
    host, port, database)."""
    timeout = f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}"
    return f"""\
;; PgBouncer for Popmap: transaction pooling in front of one database.
[databases]
;; Clients connect to "{POOLED_DATABASE}"; PgBouncer opens at most pool_size server
;; connections to PostgreSQL. connect_query runs once on each new server connection:
;; PgBouncer refuses the statement_timeout start-up parameter the API sends (see
;; ignore_startup_parameters), so the server connections get it here instead.
{POOLED_DATABASE} = host={target["host"]} port={target["port"]} dbname={target["database"]} \
pool_size={PGBOUNCER_POOL_SIZE} connect_query='{timeout}'

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
;; trust: loopback only, for this benchmark. In production: scram-sha-256 and TLS.
auth_type = trust
auth_file = {auth_file}
;; A server connection serves one transaction (or one statement outside a transaction),
;; then goes back to the pool: the API keeps no session state between transactions.
pool_mode = transaction
max_client_conn = 500
default_pool_size = {PGBOUNCER_POOL_SIZE}
ignore_startup_parameters = statement_timeout
"""


def userlist(user: str, password: str) -> str:
    return f'"{user}" "{password}"\n'


def haproxy_cfg(port: int, stats_port: int, replicas: dict[str, int]) -> str:
    """HAProxy on `port` in front of the replicas (name -> port on loopback)."""
    servers = "\n".join(f"    server {name} 127.0.0.1:{p}" for name, p in replicas.items())
    return f"""\
# HAProxy for Popmap: round robin over the replicas, each checked on /readyz.
global
    maxconn 4000

defaults
    mode http
    option forwardfor          # X-Forwarded-For, read by uvicorn from trusted proxies
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s   # a client must send its headers within 10 s
    timeout http-keep-alive 10s
    # A WebSocket (subscriptions) may stay idle up to this long between messages; the
    # server pings every POPMAP_WS_KEEPALIVE_SECONDS (20 s), well within it.
    timeout tunnel 1h
    timeout check 2s
    # A connection refused by a replica is retried on another; nothing else is retried.
    retries 2
    option redispatch

frontend api
    bind 127.0.0.1:{port}
    default_backend popmap

backend popmap
    balance roundrobin
    option httpchk
    http-check send meth GET uri /readyz ver HTTP/1.1 hdr Host localhost
    http-check expect status 200
    # DOWN after {CHECK_FALL} failed checks {CHECK_INTER_MS} ms apart; UP again after \
{CHECK_RISE} good ones.
    default-server check inter {CHECK_INTER_MS}ms fall {CHECK_FALL} rise {CHECK_RISE}
    # which replica answered (for this benchmark's checks)
    http-response set-header X-Popmap-Server %[srv_name]
{servers}

frontend stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
"""


def examples() -> dict[str, str]:
    """The two files as the benchmark writes them, with fixed example ports (PgBouncer on
    6432, HAProxy on 8080, the replicas on 8001 and 8002) and a database `popmap`."""
    return {
        "pgbouncer.ini": pgbouncer_ini(
            6432,
            {"host": "127.0.0.1", "port": 5432, "database": "popmap"},
            Path("/etc/pgbouncer/userlist.txt"),
        ),
        "haproxy.cfg": haproxy_cfg(8080, 8404, {"a": 8001, "b": 8002}),
    }
