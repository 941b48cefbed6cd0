"""Settings are read once, and a malformed one stops start-up naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from popmap_gql.config import ConfigError, load_settings
from tests.processes import ROOT, clean_env


def test_defaults_need_no_environment() -> None:
    settings = load_settings({}, env_file=None)

    assert settings.database_url is None
    assert settings.graphiql is True
    assert "http://localhost:5173" in settings.cors_allowed_origins


def test_environment_overrides_env_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment\nDEBUG=true\nPOPMAP_MAX_QUERY_DEPTH=7\n"
        "ALLOWED_HOSTS='api.popmap.co, localhost'\n"
    )

    settings = load_settings({"POPMAP_MAX_QUERY_DEPTH": "12"}, env_file=env_file)

    assert settings.debug is True
    assert settings.max_query_depth == 12
    assert settings.allowed_hosts == ("api.popmap.co", "localhost")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DEBUG", "maybe"),
        ("POPMAP_MAX_QUERY_DEPTH", "ten"),
        ("POPMAP_MAX_BODY_BYTES", "0"),
        ("DATABASE_URL", "mysql://root@localhost/popmap"),
        ("CORS_ALLOWED_ORIGINS", "localhost:5173"),
        ("CORS_ALLOWED_ORIGINS", "http://localhost:5173/"),
        ("LOG_LEVEL", "loud"),
        ("ALLOWED_HOSTS", " , "),
    ],
)
def test_malformed_setting_is_refused_with_its_name(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value}, env_file=None)


def test_malformed_env_file_line_is_refused(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("DEBUG=true\nthis is not a setting\n")

    with pytest.raises(ConfigError, match=r"\.env:2"):
        load_settings({}, env_file=env_file)


def test_server_does_not_start_with_a_malformed_setting() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "popmap_gql", "serve"],
        env=clean_env(POPMAP_MAX_ALIASES="many"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 2
    assert "POPMAP_MAX_ALIASES" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POPMAP_DB_STATEMENT_TIMEOUT_MS", "-1"),
        ("POPMAP_DB_POOL_TIMEOUT_SECONDS", "0"),
        ("POPMAP_SHUTDOWN_TIMEOUT_SECONDS", "2.5"),
        ("POPMAP_KEEP_ALIVE_SECONDS", "0"),
        ("POPMAP_MAX_CONNECTIONS", "lots"),
    ],
)
def test_malformed_fault_or_connection_limit_is_refused_with_its_name(
    name: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value}, env_file=None)


def test_statement_timeout_is_turned_off_with_zero() -> None:
    settings = load_settings({"POPMAP_DB_STATEMENT_TIMEOUT_MS": "0"}, env_file=None)

    assert settings.db_statement_timeout_ms == 0
