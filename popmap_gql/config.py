"""Settings: the only place the environment and `.env` are read."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
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
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
    cors_allowed_origins: tuple[str, ...] = ("http://localhost:5173", "http://127.0.0.1:5173")
    graphiql: bool = True
    max_query_depth: int = 10
    max_aliases: int = 30
    max_tokens: int = 2000
    max_body_bytes: int = 100_000
    db_pool_size: int = 10

    @property
    def embedded_pgdata(self) -> Path:
        return self.data_dir / "pgdata"


# name -> (attribute, parser). Parsers get the variable's name for their messages.
_FIELDS: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "DATABASE_URL": ("database_url", _database_url),
    "POPMAP_DATA_DIR": ("data_dir", lambda _n, raw: Path(raw)),
    "DEBUG": ("debug", _parse_bool),
    "LOG_LEVEL": ("log_level", _log_level),
    "ALLOWED_HOSTS": ("allowed_hosts", _hosts),
    "CORS_ALLOWED_ORIGINS": ("cors_allowed_origins", _origins),
    "POPMAP_GRAPHIQL": ("graphiql", _parse_bool),
    "POPMAP_MAX_QUERY_DEPTH": ("max_query_depth", _positive_int),
    "POPMAP_MAX_ALIASES": ("max_aliases", _positive_int),
    "POPMAP_MAX_TOKENS": ("max_tokens", _positive_int),
    "POPMAP_MAX_BODY_BYTES": ("max_body_bytes", _positive_int),
    "POPMAP_DB_POOL_SIZE": ("db_pool_size", _positive_int),
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
    return Settings(**kwargs)  # type: ignore[arg-type]  # values checked by their parsers
