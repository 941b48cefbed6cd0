"""Settings: the only place the environment and `.env` are read."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

__all__ = ["ConfigError", "Settings", "load_settings", "read_env_file"]

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


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


def _parse_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be a boolean (true/false, 1/0), got {raw!r}")


def _parse_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


def _database_url(name: str, raw: str) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    if not raw.startswith(("postgres://", "postgresql://")):
        raise ConfigError(f"{name} must be a postgres:// or postgresql:// URL, got {raw[:30]!r}")
    return raw


def _log_level(name: str, raw: str) -> str:
    level = raw.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError(f"{name} must be one of debug, info, warning, error, critical")
    return level


LOG_FORMATS = ("text", "json")


def _log_format(name: str, raw: str) -> str:
    value = raw.strip().lower()
    if value not in LOG_FORMATS:
        raise ConfigError(f"{name} must be one of {', '.join(LOG_FORMATS)}, got {raw!r}")
    return value


def _port(name: str, raw: str) -> int | None:
    if not raw.strip():
        return None
    value = _positive_int(name, raw.strip())
    if value > 65_535:
        raise ConfigError(f"{name} must be a TCP port (1-65535), got {value}")
    return value


def _hosts(name: str, raw: str) -> tuple[str, ...]:
    hosts = _parse_list(raw)
    if not hosts:
        raise ConfigError(f"{name} must list at least one host name (or * for any)")
    return hosts


def _origins(name: str, raw: str) -> tuple[str, ...]:
    origins = _parse_list(raw)
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ConfigError(f"{name}: {origin!r} is not an http(s) origin")
        if origin.endswith("/"):
            raise ConfigError(f"{name}: {origin!r} must not end with '/' (browsers send none)")
    return origins


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server reads from its environment, parsed and checked once."""

    database_url: str | None = None
    data_dir: Path = Path(".popmap")
    debug: bool = False
    log_level: str = "INFO"
    # "text" (one readable line per record) or "json" (one JSON object per line)
    log_format: str = "text"
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
    cors_allowed_origins: tuple[str, ...] = ("http://localhost:5173", "http://127.0.0.1:5173")
    graphiql: bool | None = None  # None: see graphiql_enabled
    max_query_depth: int = 10
    max_aliases: int = 30
    max_tokens: int = 2000
    max_body_bytes: int = 100_000
    db_pool_size: int = 10
    response_cache: bool = True
    # Reads on read-model fields answered by SQL building the JSON (api/fast.py); off,
    # every read runs the resolvers (the same answers, slower).
    compiled_reads: bool = True
    response_cache_ttl_seconds: float = 5.0
    # Cognito (see README "Connect your Cognito user pool")
    cognito_user_pool_id: str | None = None
    cognito_app_client_ids: tuple[str, ...] = ()
    cognito_region: str | None = None
    cognito_domain: str | None = None
    cognito_oauth_scopes: tuple[str, ...] = ("openid", "email", "profile")
    cognito_redirect_sign_in: tuple[str, ...] = ("http://localhost:5173/callback",)
    cognito_redirect_sign_out: tuple[str, ...] = ("http://localhost:5173",)
    cognito_identity_providers: tuple[str, ...] = ("COGNITO",)
    cognito_issuer_override: str | None = None
    cognito_jwks_url_override: str | None = None
    cognito_userinfo_url_override: str | None = None
    staff_group: str = "staff"
    jwks_cooldown_seconds: float = 60.0
    token_leeway_seconds: float = 30.0
    userinfo_retry_seconds: float = 300.0
    # Response cache memory (README "Speed and the response cache")
    response_cache_max_bytes: int = 64 * 1024 * 1024
    response_cache_max_entry_bytes: int = 1024 * 1024
    # Query limits beyond depth, aliases and tokens (README "Limits")
    max_query_cost: int = 200_000
    introspection: bool = True
    # Faults and hostile connections (README "When PostgreSQL fails", "Serving")
    db_statement_timeout_ms: int = 10_000
    db_pool_timeout_seconds: float = 10.0
    # What DATABASE_URL leads to when it is not PostgreSQL itself: "pgbouncer" (transaction
    # pooling) turns asyncpg's prepared-statement cache off. None: PostgreSQL directly.
    db_pooler: str | None = None
    shutdown_timeout_seconds: int = 20
    # On SIGTERM, /readyz answers 503 for this long while requests are still served, so a
    # load balancer stops routing here before the server stops accepting (0: no drain).
    shutdown_drain_seconds: float = 0.0
    keep_alive_seconds: int = 5
    max_connections: int = 1000
    # Media: logos and event images (see README "Logos and event images")
    media_bucket: str | None = None
    media_region: str = "us-east-1"
    s3_endpoint_url: str | None = None
    media_base_url: str | None = None
    media_max_bytes: int = 5 * 1024 * 1024
    # Other servers (README "Calling the API from another server")
    cognito_service_client_ids: tuple[str, ...] = ()
    cognito_resource_server: str = "popmap"
    # Persisted queries (README "Persisted queries and trusted documents"): the shared
    # store's size, and the only documents that run when a manifest is given.
    apq_max_documents: int = 10_000
    trusted_documents: Mapping[str, str] | None = None
    # Per-client budgets (README "Budgets"): cost points per minute, refilled continuously,
    # per client address, person and service (overridable per service client id); kept in
    # this process, or in Redis when a URL is given (shared by every worker and replica).
    budgets: bool = True
    budget_anonymous_per_minute: int = 2_000_000
    budget_user_per_minute: int = 2_000_000
    budget_service_per_minute: int = 20_000_000
    budget_service_clients: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    budget_redis_url: str | None = None
    # Cache-Control max-age of GET answers anyone may share (0: no shared caching).
    http_cache_max_age_seconds: int = 0
    # Traces (README "Traces"): OpenTelemetry over OTLP/HTTP, with the `otel` extra
    otel: bool = False
    otel_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    otel_service_name: str = "popmap-gql"
    # Prometheus metrics (README "Logs and metrics"): off unless asked for; served at
    # /metrics on the API's port, or on a port of their own when one is given.
    metrics: bool = False
    metrics_port: int | None = None
    # Set by `serve` for its workers (never by hand): the folder where every worker
    # writes its metrics, which prometheus_client reads under this same variable.
    metrics_multiprocess_dir: Path | None = None

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


_POOL_ID = re.compile(r"^(?P<region>[a-z]{2}(-[a-z]+)+-\d)_[0-9A-Za-z]+$")
# cognito-local names its pools local_<alphanumerics>; such a pool has no AWS region.
_EMULATOR_POOL_ID = re.compile(r"^local_[0-9A-Za-z]+$")
_DOMAIN = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


def _pool_id(name: str, raw: str) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    if not (_POOL_ID.match(raw) or _EMULATOR_POOL_ID.match(raw)):
        raise ConfigError(
            f"{name} must look like us-east-1_AbCdEf123 (or local_AbCd1234 for an emulator),"
            f" got {raw!r}"
        )
    return raw


def _pool_region(pool: str) -> str | None:
    """The region an AWS pool id starts with; None for an emulator's pool."""
    match = _POOL_ID.match(pool)
    return match["region"] if match else None


def _region(name: str, raw: str) -> str | None:
    raw = raw.strip()
    if raw and not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", raw):
        raise ConfigError(f"{name} must be an AWS region such as us-east-1, got {raw!r}")
    return raw or None


def _domain(name: str, raw: str) -> str | None:
    raw = raw.strip().lower().removeprefix("https://").rstrip("/")
    if raw and not _DOMAIN.match(raw):
        raise ConfigError(f"{name} must be a hosted-UI prefix or a host name, got {raw!r}")
    return raw or None


def _url(name: str, raw: str) -> str | None:
    raw = raw.strip()
    if raw and not raw.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be an http(s) URL, got {raw!r}")
    return raw.rstrip("/") or None


def _urls(name: str, raw: str) -> tuple[str, ...]:
    urls = _parse_list(raw)
    for url in urls:
        if not url.startswith(("http://", "https://")) and ":/" not in url:
            raise ConfigError(f"{name}: {url!r} is not a URL")
    return urls


def _seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0 <= value <= 86_400:
        raise ConfigError(f"{name} must be between 0 and 86400 seconds, got {value}")
    return value


def _positive_seconds(name: str, raw: str) -> float:
    value = _seconds(name, raw)
    if value <= 0:
        raise ConfigError(f"{name} must be more than 0 seconds, got {value}")
    return value


def _non_negative_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise ConfigError(f"{name} must be 0 or more, got {value}")
    return value


POOLERS = ("pgbouncer",)


def _pooler(name: str, raw: str) -> str | None:
    value = raw.strip().lower()
    if value in {"", "none"}:
        return None
    if value not in POOLERS:
        raise ConfigError(f"{name} must be one of none, {', '.join(POOLERS)}; got {raw!r}")
    return value


def _endpoint(name: str, raw: str) -> str:
    url = _url(name, raw)
    if url is None:
        raise ConfigError(f"{name} must be an http(s) URL")
    return url


def _service_name(name: str, raw: str) -> str:
    if not raw.strip() or len(raw.strip()) > 100:
        raise ConfigError(f"{name} must be a service name of 1 to 100 characters")
    return raw.strip()


def _group(name: str, raw: str) -> str:
    if not raw.strip():
        raise ConfigError(f"{name} must name a Cognito group")
    return raw.strip()


_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
# Uploads are read into memory to be checked (Pillow); this bounds that per request.
MEDIA_MAX_BYTES_LIMIT = 50 * 1024 * 1024


def _bucket(name: str, raw: str) -> str | None:
    raw = raw.strip()
    if raw and not _BUCKET.match(raw):
        raise ConfigError(f"{name} must be an S3 bucket name such as popmap-media, got {raw!r}")
    return raw or None


def _media_region(name: str, raw: str) -> str:
    region = _region(name, raw)
    if region is None:
        raise ConfigError(f"{name} must be an AWS region such as us-east-1")
    return region


def _media_max_bytes(name: str, raw: str) -> int:
    value = _positive_int(name, raw)
    if value > MEDIA_MAX_BYTES_LIMIT:
        raise ConfigError(f"{name} must be at most {MEDIA_MAX_BYTES_LIMIT}, got {value}")
    return value


def _resource_server(name: str, raw: str) -> str:
    """A Cognito resource server identifier: scopes are `<identifier>/<name>`, so it may
    not be empty or contain spaces (a scope claim is space-separated)."""
    value = raw.strip()
    if not value or any(c.isspace() for c in value) or len(value) > 256:
        raise ConfigError(f"{name} must be a resource server identifier such as popmap")
    return value


_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


def _trusted_documents(name: str, raw: str) -> Mapping[str, str] | None:
    """The manifest graphql-codegen's client preset writes (persisted-documents.json:
    `{"<sha256 hex of the text>": "<document text>"}`), read once; every entry's hash is
    checked against its text, and the first bad entry stops start-up."""
    raw = raw.strip()
    if not raw:
        return None
    path = Path(raw)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{name}: {path} is not JSON: {exc}") from None
    if not isinstance(manifest, dict) or not manifest:
        raise ConfigError(f"{name}: {path} must be a JSON object of hash: document entries")
    for key, text in manifest.items():
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"{name}: entry {key!r} of {path} must be a document's text")
        if not _SHA256_HEX.fullmatch(key):
            raise ConfigError(
                f"{name}: entry {key!r} of {path} is not a SHA-256 hash (64 lowercase hex"
                " digits); generate the manifest with hashAlgorithm: 'sha256'"
            )
        if hashlib.sha256(text.encode()).hexdigest() != key:
            raise ConfigError(f"{name}: entry {key!r} of {path} is not the SHA-256 of its text")
    return MappingProxyType(dict(manifest))


def _redis_url(name: str, raw: str) -> str | None:
    raw = raw.strip()
    if not raw:
        return None
    if not raw.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"{name} must be a redis://, rediss:// or unix:// URL, got {raw[:30]!r}")
    return raw


def _client_budgets(name: str, raw: str) -> Mapping[str, int]:
    """`client-id=points,other-id=points`: a service client's own points per minute."""
    budgets: dict[str, int] = {}
    for item in _parse_list(raw):
        client, sep, points = item.partition("=")
        if not sep or not client.strip():
            raise ConfigError(f"{name} must list client-id=points pairs, got {item!r}")
        budgets[client.strip()] = _positive_int(name, points.strip())
    return MappingProxyType(budgets)


# name -> (attribute, parser). Parsers get the variable's name for their messages.
_FIELDS: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "DATABASE_URL": ("database_url", _database_url),
    "POPMAP_DATA_DIR": ("data_dir", lambda _n, raw: Path(raw)),
    "DEBUG": ("debug", _parse_bool),
    "LOG_LEVEL": ("log_level", _log_level),
    "POPMAP_LOG_FORMAT": ("log_format", _log_format),
    "POPMAP_METRICS": ("metrics", _parse_bool),
    "POPMAP_METRICS_PORT": ("metrics_port", _port),
    "PROMETHEUS_MULTIPROC_DIR": (
        "metrics_multiprocess_dir",
        lambda _n, raw: Path(raw) if raw.strip() else None,
    ),
    "ALLOWED_HOSTS": ("allowed_hosts", _hosts),
    "CORS_ALLOWED_ORIGINS": ("cors_allowed_origins", _origins),
    "POPMAP_GRAPHIQL": ("graphiql", _parse_bool),
    "POPMAP_MAX_QUERY_DEPTH": ("max_query_depth", _positive_int),
    "POPMAP_MAX_ALIASES": ("max_aliases", _positive_int),
    "POPMAP_MAX_TOKENS": ("max_tokens", _positive_int),
    "POPMAP_MAX_BODY_BYTES": ("max_body_bytes", _positive_int),
    "POPMAP_DB_POOL_SIZE": ("db_pool_size", _positive_int),
    "POPMAP_RESPONSE_CACHE": ("response_cache", _parse_bool),
    "POPMAP_COMPILED_READS": ("compiled_reads", _parse_bool),
    "POPMAP_OTEL": ("otel", _parse_bool),
    "POPMAP_OTEL_ENDPOINT": ("otel_endpoint", _endpoint),
    "POPMAP_OTEL_SERVICE_NAME": ("otel_service_name", _service_name),
    "POPMAP_RESPONSE_CACHE_TTL_SECONDS": ("response_cache_ttl_seconds", _seconds),
    "AWS_COGNITO_USER_POOL_ID": ("cognito_user_pool_id", _pool_id),
    "AWS_COGNITO_APP_CLIENT_ID": ("cognito_app_client_ids", lambda _n, raw: _parse_list(raw)),
    "AWS_COGNITO_REGION": ("cognito_region", _region),
    "AWS_COGNITO_DOMAIN": ("cognito_domain", _domain),
    "AWS_COGNITO_OAUTH_SCOPES": ("cognito_oauth_scopes", lambda _n, raw: _parse_list(raw)),
    "AWS_COGNITO_REDIRECT_SIGN_IN": ("cognito_redirect_sign_in", _urls),
    "AWS_COGNITO_REDIRECT_SIGN_OUT": ("cognito_redirect_sign_out", _urls),
    "AWS_COGNITO_IDENTITY_PROVIDERS": (
        "cognito_identity_providers",
        lambda _n, raw: _parse_list(raw),
    ),
    "AWS_COGNITO_ISSUER": ("cognito_issuer_override", _url),
    "AWS_COGNITO_JWKS_URL": ("cognito_jwks_url_override", _url),
    "AWS_COGNITO_USERINFO_URL": ("cognito_userinfo_url_override", _url),
    "POPMAP_STAFF_GROUP": ("staff_group", _group),
    "POPMAP_JWKS_COOLDOWN_SECONDS": ("jwks_cooldown_seconds", _seconds),
    "POPMAP_TOKEN_LEEWAY_SECONDS": ("token_leeway_seconds", _seconds),
    "POPMAP_USERINFO_RETRY_SECONDS": ("userinfo_retry_seconds", _seconds),
    "POPMAP_RESPONSE_CACHE_MAX_BYTES": ("response_cache_max_bytes", _positive_int),
    "POPMAP_RESPONSE_CACHE_MAX_ENTRY_BYTES": ("response_cache_max_entry_bytes", _positive_int),
    "POPMAP_MAX_QUERY_COST": ("max_query_cost", _positive_int),
    "POPMAP_INTROSPECTION": ("introspection", _parse_bool),
    "POPMAP_DB_STATEMENT_TIMEOUT_MS": ("db_statement_timeout_ms", _non_negative_int),
    "POPMAP_DB_POOL_TIMEOUT_SECONDS": ("db_pool_timeout_seconds", _positive_seconds),
    "POPMAP_DB_POOLER": ("db_pooler", _pooler),
    "POPMAP_SHUTDOWN_TIMEOUT_SECONDS": ("shutdown_timeout_seconds", _positive_int),
    "POPMAP_SHUTDOWN_DRAIN_SECONDS": ("shutdown_drain_seconds", _seconds),
    "POPMAP_KEEP_ALIVE_SECONDS": ("keep_alive_seconds", _positive_int),
    "POPMAP_MAX_CONNECTIONS": ("max_connections", _positive_int),
    "POPMAP_MEDIA_BUCKET": ("media_bucket", _bucket),
    "POPMAP_MEDIA_REGION": ("media_region", _media_region),
    "AWS_S3_ENDPOINT_URL": ("s3_endpoint_url", _url),
    "POPMAP_MEDIA_BASE_URL": ("media_base_url", _url),
    "POPMAP_MEDIA_MAX_BYTES": ("media_max_bytes", _media_max_bytes),
    "AWS_COGNITO_SERVICE_CLIENT_IDS": (
        "cognito_service_client_ids",
        lambda _n, raw: _parse_list(raw),
    ),
    "AWS_COGNITO_RESOURCE_SERVER": ("cognito_resource_server", _resource_server),
    "POPMAP_APQ_MAX_DOCUMENTS": ("apq_max_documents", _positive_int),
    "POPMAP_TRUSTED_DOCUMENTS": ("trusted_documents", _trusted_documents),
    "POPMAP_HTTP_CACHE_MAX_AGE_SECONDS": ("http_cache_max_age_seconds", _non_negative_int),
    "POPMAP_BUDGETS": ("budgets", _parse_bool),
    "POPMAP_BUDGET_ANONYMOUS_PER_MINUTE": ("budget_anonymous_per_minute", _positive_int),
    "POPMAP_BUDGET_USER_PER_MINUTE": ("budget_user_per_minute", _positive_int),
    "POPMAP_BUDGET_SERVICE_PER_MINUTE": ("budget_service_per_minute", _positive_int),
    "POPMAP_BUDGET_SERVICE_CLIENTS": ("budget_service_clients", _client_budgets),
    "POPMAP_BUDGET_REDIS_URL": ("budget_redis_url", _redis_url),
}


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
    for name, (attribute, parse) in _FIELDS.items():
        if name in source:
            kwargs[attribute] = parse(name, source[name])
    pool = kwargs.get("cognito_user_pool_id")
    if isinstance(pool, str) and kwargs.get("cognito_region") is None:
        kwargs["cognito_region"] = _pool_region(pool)
    settings = Settings(**kwargs)  # type: ignore[arg-type]  # values checked by their parsers
    _check_cognito(settings)
    _check_service_clients(settings)
    _check_budgets(settings)
    if settings.trusted_documents is not None and settings.graphiql:
        raise ConfigError(
            "POPMAP_GRAPHIQL=true with POPMAP_TRUSTED_DOCUMENTS: GraphiQL could run nothing"
            " but the manifest's documents; leave POPMAP_GRAPHIQL unset"
        )
    return settings


# A mutation is charged at least this many points of its client's budget (README
# "Budgets"); kept here so that every budget is checked to hold one.
MUTATION_MINIMUM_COST = 100


def _check_budgets(settings: Settings) -> None:
    """Every budget holds the costliest request the limits admit, or that request could
    never be served; a per-client budget names a service client."""
    floor = max(settings.max_query_cost, MUTATION_MINIMUM_COST)
    for name, points in (
        ("POPMAP_BUDGET_ANONYMOUS_PER_MINUTE", settings.budget_anonymous_per_minute),
        ("POPMAP_BUDGET_USER_PER_MINUTE", settings.budget_user_per_minute),
        ("POPMAP_BUDGET_SERVICE_PER_MINUTE", settings.budget_service_per_minute),
        *(
            (f"POPMAP_BUDGET_SERVICE_CLIENTS ({client})", points)
            for client, points in settings.budget_service_clients.items()
        ),
    ):
        if points < floor:
            raise ConfigError(
                f"{name} is {points}: a budget must hold at least one request of the largest"
                f" cost admitted (POPMAP_MAX_QUERY_COST, a mutation's {MUTATION_MINIMUM_COST}),"
                f" {floor}"
            )
    unknown = set(settings.budget_service_clients) - set(settings.cognito_service_client_ids)
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
