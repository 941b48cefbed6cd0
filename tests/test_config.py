"""Settings are read once, and a malformed one stops start-up naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from popmap_gql.config import ConfigError, load_settings
from popmap_gql.db.orm import tortoise_config
from tests.processes import clean_env, popmap_gql


def test_defaults_need_no_environment() -> None:
    settings = load_settings({}, env_file=None)

    assert settings.database_url is None
    assert settings.graphiql_enabled is True
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
        ("DATABASE_URL", "postgresql://localhost/popmap?port=five"),
        ("POPMAP_DB_LISTEN_URL", "postgresql:///popmap?host=/run/postgresql&port=99999"),
        ("CORS_ALLOWED_ORIGINS", "localhost:5173"),
        ("CORS_ALLOWED_ORIGINS", "http://localhost:5173/"),
        ("LOG_LEVEL", "loud"),
        ("ALLOWED_HOSTS", " , "),
        ("AWS_COGNITO_DOMAIN", "popmap auth"),
        ("AWS_COGNITO_DOMAIN", "https://auth.popmap.co/login"),
    ],
)
def test_malformed_setting_is_refused_with_its_name(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value}, env_file=None)


def test_a_setting_left_empty_takes_its_default(tmp_path: Path) -> None:
    # as a copy of .env.example with a line uncommented but not filled in
    env_file = tmp_path / ".env"
    env_file.write_text("DATABASE_URL=\nPOPMAP_METRICS_PORT=\nPOPMAP_TRUSTED_DOCUMENTS=' '\n")

    settings = load_settings({}, env_file=env_file)

    assert settings.database_url is None  # the embedded PostgreSQL
    assert settings.metrics_port is None
    assert settings.trusted_documents is None


def test_malformed_env_file_line_is_refused(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("DEBUG=true\nthis is not a setting\n")

    with pytest.raises(ConfigError, match=r"\.env:2"):
        load_settings({}, env_file=env_file)


def test_server_does_not_start_with_a_malformed_setting() -> None:
    result = popmap_gql(clean_env(POPMAP_MAX_ALIASES="many"), "serve")

    assert result.returncode == 2
    assert "POPMAP_MAX_ALIASES" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_database_url_with_a_port_parameter_that_is_no_number_stops_every_command() -> None:
    # The port can come as ?port= (beside ?host=, a Unix socket's): it was read only when
    # connecting, so `migrate` failed with a traceback.
    url = "postgresql://popmap:s3cret@localhost/popmap?port=five"
    result = popmap_gql(clean_env(DATABASE_URL=url), "migrate")

    assert result.returncode == 2
    assert "DATABASE_URL has a port that is not a number" in result.stderr
    assert "Traceback" not in result.stderr
    assert "s3cret" not in result.stderr
    unix = "postgresql://popmap@/popmap?host=/run/postgresql&port=5433"
    assert load_settings({"DATABASE_URL": unix}, env_file=None).database_url == unix


# --- GraphiQL's default follows the identity provider -------------------------------------

POOL = {"AWS_COGNITO_USER_POOL_ID": "us-east-1_RealPool1", "AWS_COGNITO_APP_CLIENT_ID": "web"}


@pytest.mark.parametrize(
    ("environ", "enabled"),
    [
        ({}, True),  # the local identity provider: development
        ({"POPMAP_GRAPHIQL": "false"}, False),
        (POOL, False),  # a user pool: a deployment publishes no explorer unless asked
        ({**POOL, "POPMAP_GRAPHIQL": "true"}, True),
        ({**POOL, "POPMAP_GRAPHIQL": "false"}, False),
    ],
)
def test_graphiql_is_on_by_default_only_with_the_local_identity_provider(
    environ: dict[str, str], enabled: bool
) -> None:
    assert load_settings(environ, env_file=None).graphiql_enabled is enabled


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"AWS_COGNITO_APP_CLIENT_ID": "web"}, "AWS_COGNITO_APP_CLIENT_ID is set but"),
        ({"AWS_COGNITO_ISSUER": "https://issuer.test"}, "AWS_COGNITO_ISSUER is set but"),
        (
            {"AWS_COGNITO_JWKS_URL": "https://issuer.test/jwks.json"},
            "AWS_COGNITO_JWKS_URL is set but",
        ),
        (
            {"AWS_COGNITO_USER_POOL_ID": "us-east-1_RealPool1"},
            "AWS_COGNITO_APP_CLIENT_ID must list",
        ),
        ({**POOL, "AWS_COGNITO_REGION": "eu-west-1"}, "does not match the pool's region us-east-1"),
    ],
)
def test_a_user_pool_setting_without_the_others_it_needs_is_refused(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ, env_file=None)


# --- emulator pools ----------------------------------------------------------------------------

EMULATOR = {
    "AWS_COGNITO_USER_POOL_ID": "local_5S8LTNzW",
    "AWS_COGNITO_APP_CLIENT_ID": "web",
    "AWS_COGNITO_ISSUER": "http://127.0.0.1:9229/local_5S8LTNzW",
}


def test_emulator_pool_is_accepted_with_its_issuer() -> None:
    settings = load_settings(EMULATOR, env_file=None)

    assert settings.cognito_issuer == "http://127.0.0.1:9229/local_5S8LTNzW"
    assert settings.cognito_jwks_url == (
        "http://127.0.0.1:9229/local_5S8LTNzW/.well-known/jwks.json"
    )
    assert settings.cognito_region is None  # not an AWS pool: nothing to derive it from


def test_emulator_pool_takes_any_region_given() -> None:
    settings = load_settings(
        {**EMULATOR, "AWS_COGNITO_REGION": "eu-west-1", "AWS_COGNITO_DOMAIN": "popmap-auth"},
        env_file=None,
    )

    assert settings.cognito_region == "eu-west-1"
    assert settings.cognito_hosted_ui_domain == "popmap-auth.auth.eu-west-1.amazoncognito.com"


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({**EMULATOR, "AWS_COGNITO_ISSUER": ""}, "AWS_COGNITO_ISSUER"),
        ({**EMULATOR, "AWS_COGNITO_DOMAIN": "popmap-auth"}, "AWS_COGNITO_REGION"),
        ({**EMULATOR, "AWS_COGNITO_USER_POOL_ID": "local_"}, "AWS_COGNITO_USER_POOL_ID"),
        ({**EMULATOR, "AWS_COGNITO_USER_POOL_ID": "local_a-b"}, "AWS_COGNITO_USER_POOL_ID"),
        ({**EMULATOR, "AWS_COGNITO_USER_POOL_ID": "remote_5S8LTNzW"}, "AWS_COGNITO_USER_POOL_ID"),
    ],
)
def test_emulator_pool_without_what_it_needs_is_refused(
    environ: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings(environ, env_file=None)


def test_emulator_pool_with_a_full_domain_needs_no_region() -> None:
    settings = load_settings({**EMULATOR, "AWS_COGNITO_DOMAIN": "auth.popmap.test"}, env_file=None)

    assert settings.cognito_hosted_ui_domain == "auth.popmap.test"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("POPMAP_DB_STATEMENT_TIMEOUT_MS", "-1"),
        ("POPMAP_DB_POOL_TIMEOUT_SECONDS", "0"),
        ("POPMAP_SHUTDOWN_TIMEOUT_SECONDS", "2.5"),
        ("POPMAP_SHUTDOWN_DRAIN_SECONDS", "-1"),
        ("POPMAP_SHUTDOWN_DRAIN_SECONDS", "soon"),
        ("POPMAP_DB_POOLER", "pgpool"),
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


def test_no_drain_and_no_pooler_by_default() -> None:
    settings = load_settings({}, env_file=None)

    assert settings.shutdown_drain_seconds == 0
    assert settings.db_pooler is None


DATABASE = "postgresql://popmap@127.0.0.1:6432/popmap"


def _pool_options(environ: dict[str, str]) -> dict[str, object]:
    settings = load_settings({"DATABASE_URL": DATABASE, **environ}, env_file=None)
    assert settings.database_url is not None
    config = tortoise_config(settings.database_url, pooler=settings.db_pooler)
    options: dict[str, object] = config["connections"]["default"]["credentials"]
    return options


@pytest.mark.parametrize("spelling", ["pgbouncer", "PgBouncer", " pgbouncer "])
def test_pgbouncer_turns_asyncpg_statement_cache_off(spelling: str) -> None:
    """asyncpg's named prepared statements do not survive transaction pooling."""
    options = _pool_options({"POPMAP_DB_POOLER": spelling})

    assert options["statement_cache_size"] == 0
    assert options["host"] == "127.0.0.1"
    assert options["port"] == 6432


@pytest.mark.parametrize("environ", [{}, {"POPMAP_DB_POOLER": "none"}, {"POPMAP_DB_POOLER": ""}])
def test_without_a_pooler_asyncpg_keeps_its_statement_cache(environ: dict[str, str]) -> None:
    options = _pool_options(environ)

    assert "statement_cache_size" not in options  # asyncpg's default cache
