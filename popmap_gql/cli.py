"""Command line: serve, migrate, seed-demo, export-schema, dev-token, media gc."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import logging.config
import os
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from types import FrameType

from tortoise import Tortoise

from popmap_gql.config import ConfigError, Settings, load_settings
from popmap_gql.logs import logging_config

__all__ = ["main"]

logger = logging.getLogger("popmap_gql")


async def _database_url(settings: Settings) -> str:
    from popmap_gql.db.embedded import embedded_database_url

    return settings.database_url or await embedded_database_url(settings.embedded_pgdata)


@asynccontextmanager
async def _orm(url: str, settings: Settings) -> AsyncIterator[None]:
    """The ORM on a small pool of its own, for a command's work."""
    from popmap_gql.db.orm import tortoise_config

    await Tortoise.init(config=tortoise_config(url, pool_size=2, pooler=settings.db_pooler))
    try:
        yield
    finally:
        await Tortoise.close_connections()


async def _seed(url: str, settings: Settings) -> None:
    from popmap_gql.db.migrate import migrate
    from popmap_gql.db.seed import seed_demo

    await migrate(url)
    async with _orm(url, settings):
        report = await seed_demo()
    print(
        f"demo data ready: {report.categories} categories, {report.businesses} businesses,"
        f" {report.events} events"
    )


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from popmap_gql.db.migrate import migrate

    async def run() -> None:
        await migrate(await _database_url(settings))

    asyncio.run(run())
    print("migrations applied")
    return 0


def cmd_seed_demo(settings: Settings, _args: argparse.Namespace) -> int:
    async def run() -> None:
        await _seed(await _database_url(settings), settings)

    asyncio.run(run())
    return 0


def cmd_export_schema(_settings: Settings, args: argparse.Namespace) -> int:
    from popmap_gql.api.schema import schema

    text = schema.as_str() + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


class _Stopped(Exception):
    """SIGTERM or SIGINT arrived: stop like a normal exit, so that atexit handlers run."""


def _raise_stopped(signum: int, _frame: FrameType | None) -> None:
    raise _Stopped(signal.Signals(signum).name)


# Each HTTP request is at most this many bytes of request line and headers under h11
# (uvicorn's other HTTP implementation, httptools, has no such limit: docs/operations.md).
MAX_REQUEST_HEAD_BYTES = 16 * 1024


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    """Run uvicorn; SIGTERM, like SIGINT, drains in-flight requests and stops cleanly.

    uvicorn shuts down gracefully on either signal and then raises it again with the
    handler that was installed before it started. With Python's defaults SIGTERM would
    then kill this process outright, skipping the atexit handler that stops the embedded
    PostgreSQL. With `_raise_stopped` installed, both end as a normal exit, status 0.
    """
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, _raise_stopped)
    try:
        _serve(settings, args)
    except _Stopped as stopped:
        logger.info("stopped by %s", stopped)
    except _CannotServe as refused:
        print(f"popmap-gql: {refused}", file=sys.stderr)
        return 1
    return 0


class _CannotServe(Exception):
    """The database is unreachable or lacks migrations: every request would fail."""


def _serve(settings: Settings, args: argparse.Namespace) -> None:
    import asyncpg
    import uvicorn

    from popmap_gql.db.migrate import pending_migrations

    async def prepare() -> str:
        url = await _database_url(settings)
        if args.demo:
            await _seed(url, settings)
        try:
            pending = await pending_migrations(url, pooler=settings.db_pooler)
        except (OSError, asyncpg.PostgresError) as exc:
            raise _CannotServe(f"cannot reach the database to check its schema: {exc}") from exc
        if pending:
            raise _CannotServe(
                f"the database lacks {len(pending)} migration(s) ({', '.join(pending)});"
                " run `popmap-gql migrate` first (or `popmap-gql serve --demo`)"
            )
        return url

    _check_data_folder_keys(settings)
    # The embedded server (if any) belongs to this process; workers and the reloader's
    # children reach it through DATABASE_URL and stop with it.
    url = asyncio.run(prepare())
    os.environ["DATABASE_URL"] = url
    if settings.database_url is None:
        logger.warning("using the embedded PostgreSQL in %s", settings.embedded_pgdata)
    _prepare_metrics(settings, args)
    if settings.budgets and settings.budget_redis_url is None and (args.workers > 1):
        logger.warning(
            "budgets: each of the %d workers keeps its own buckets, so a client may spend"
            " its budget once per worker; set POPMAP_BUDGET_REDIS_URL to share them",
            args.workers,
        )
    certificate, key = _tls_files(settings, args)
    scheme = "https" if certificate else "http"
    print(f"Popmap GraphQL API on {scheme}://{args.host}:{args.port}/graphql", flush=True)
    uvicorn.run(
        "popmap_gql.app:create_app_from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        reload=args.reload,
        log_config=logging_config(settings.log_level, settings.log_format),
        log_level=settings.log_level.lower(),
        access_log=False,  # the app writes its own access line (http/observe.py)
        proxy_headers=True,
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
        timeout_keep_alive=settings.keep_alive_seconds,
        # uvicorn counts an open WebSocket as a connection too: sockets have their own
        # limit (POPMAP_WS_MAX_CONNECTIONS, live/ws.py), so they never use up HTTP's.
        limit_concurrency=settings.max_connections + settings.ws_max_connections,
        h11_max_incomplete_event_size=MAX_REQUEST_HEAD_BYTES,
        ssl_certfile=certificate,
        ssl_keyfile=key,
    )


def _check_data_folder_keys(settings: Settings) -> None:
    """Read (or make) the data folder's keys that the app loads at start-up, so that a
    damaged one is refused here, in one line (a ConfigError, exit 2), and not by a
    traceback from uvicorn's startup (exit 3)."""
    from popmap_gql.auth.local_idp import LocalIdentityProvider
    from popmap_gql.media.uploads import build_store

    if not settings.cognito_configured:
        LocalIdentityProvider(settings.data_dir)
    if settings.media_bucket is None:
        build_store(settings)


def _tls_files(settings: Settings, args: argparse.Namespace) -> tuple[str | None, str | None]:
    """uvicorn's certificate and key for `--https`: the given files, or the data folder's
    own (made on first use, see tls.py)."""
    if not args.https:
        return None, None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            raise _CannotServe("--tls-cert and --tls-key go together")
        return args.tls_cert, args.tls_key
    from popmap_gql.tls import local_certificate

    made = local_certificate(settings.data_dir, args.host)
    if made.created:
        print(
            f"made a certificate for this data folder; trust {made.authority} in the browser"
            " (docs/local-sign-in.md)",
            flush=True,
        )
    return str(made.certificate), str(made.key)


METRICS_FOLDER = "metrics"
_MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"


def _prepare_metrics(settings: Settings, args: argparse.Namespace) -> None:
    """With metrics on and more than one process serving (workers, or the reloader's
    child), each worker writes its values to files in a fresh folder under the data
    folder, named in PROMETHEUS_MULTIPROC_DIR before any process imports
    prometheus_client; otherwise no such folder applies. With POPMAP_METRICS_PORT, this
    process answers scrapes on that port (for every worker)."""
    os.environ.pop(_MULTIPROC_VARIABLE, None)
    if not settings.metrics:
        return
    folder = None
    if args.workers > 1 or args.reload:
        from popmap_gql.metrics import prepare_multiprocess_dir

        folder = prepare_multiprocess_dir(settings.data_dir / METRICS_FOLDER)
        os.environ[_MULTIPROC_VARIABLE] = str(folder)
    if settings.metrics_port is None:
        return
    from prometheus_client import start_http_server

    from popmap_gql.metrics import exposition_registry
    from popmap_gql.observe import install

    # One process: the app in this process records into the same Metrics (install).
    registry = exposition_registry(folder, None if folder else install(None).registry)
    start_http_server(settings.metrics_port, addr=args.host, registry=registry)
    print(f"metrics on http://{args.host}:{settings.metrics_port}/metrics", flush=True)


def cmd_dev_token(settings: Settings, args: argparse.Namespace) -> int:
    if settings.cognito_configured:
        print(
            "popmap-gql: dev-token works only with the local identity provider, which is off"
            " while AWS_COGNITO_USER_POOL_ID is set",
            file=sys.stderr,
        )
        return 2
    from popmap_gql.auth.local_idp import LocalIdentityProvider, local_service_client_ids

    local = LocalIdentityProvider(settings.data_dir)
    if args.client_credentials:
        # A service's token, as Cognito's token endpoint answers the client-credentials grant.
        service_clients = local_service_client_ids(settings)
        client_id = args.client_id or service_clients[0]
        if client_id not in service_clients:
            print(
                f"popmap-gql: warning: {client_id} is not in AWS_COGNITO_SERVICE_CLIENT_IDS;"
                " serve will refuse this token",
                file=sys.stderr,
            )
        token = local.mint_client_credentials(client_id, args.scope, ttl_seconds=args.ttl)
        print(json.dumps(token, indent=2))
        return 0
    if args.email is None:
        print("popmap-gql: dev-token needs --email (or --client-credentials)", file=sys.stderr)
        return 2
    tokens = local.mint(args.email, args.group, ttl_seconds=args.ttl)
    print(json.dumps(tokens, indent=2))
    return 0


def cmd_media_gc(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from popmap_gql.media.uploads import build_store, collect_garbage

    async def run() -> None:
        async with _orm(await _database_url(settings), settings):
            report = await collect_garbage(
                build_store(settings), datetime.now(UTC), timedelta(hours=args.min_age_hours)
            )
        print(
            f"media gc: {report.objects_deleted} objects deleted,"
            f" {report.uploads_forgotten} uploads forgotten"
        )

    asyncio.run(run())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="popmap-gql", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--reload", action="store_true", help="restart on code changes")
    serve.add_argument(
        "--demo", action="store_true", help="migrate and load demo data first (idempotent)"
    )
    serve.add_argument(
        "--https",
        action="store_true",
        help="serve over TLS (the local hosted UI needs it), with a certificate made in the"
        " data folder unless --tls-cert and --tls-key are given",
    )
    serve.add_argument("--tls-cert", help="with --https: a PEM certificate (chain), e.g. mkcert's")
    serve.add_argument("--tls-key", help="with --https: its PEM private key")
    serve.set_defaults(handler=cmd_serve)

    commands.add_parser("migrate", help="apply database migrations").set_defaults(
        handler=cmd_migrate
    )
    commands.add_parser("seed-demo", help="load demo data (idempotent)").set_defaults(
        handler=cmd_seed_demo
    )
    export = commands.add_parser("export-schema", help="print the GraphQL SDL")
    export.add_argument("--output", "-o", help="write to this file instead of stdout")
    export.set_defaults(handler=cmd_export_schema)
    token = commands.add_parser(
        "dev-token", help="print Cognito-shaped tokens from the local identity provider"
    )
    token.add_argument("--email", help="a person's token for this address")
    token.add_argument(
        "--group", action="append", default=[], help="a Cognito group, e.g. staff (repeatable)"
    )
    token.add_argument(
        "--client-credentials",
        action="store_true",
        help="a service's token (client-credentials grant) instead of a person's",
    )
    token.add_argument(
        "--client-id", help="the service's app client (default: the local service client)"
    )
    token.add_argument(
        "--scope",
        action="append",
        default=[],
        help="a service scope, e.g. popmap/moderate (repeatable)",
    )
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    token.set_defaults(handler=cmd_dev_token)
    media = commands.add_parser("media", help="uploaded logos and event images")
    media_commands = media.add_subparsers(dest="media_command", required=True)
    gc = media_commands.add_parser(
        "gc", help="delete uploads older than a day that no business or event shows"
    )
    # A day is more than the time an upload may take to be saved (rules.py CLAIM_SECONDS).
    gc.add_argument(
        "--min-age-hours",
        type=float,
        default=24.0,
        help="leave objects and uploads younger than this (default 24)",
    )
    gc.set_defaults(handler=cmd_media_gc)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        logging.config.dictConfig(logging_config(settings.log_level, settings.log_format))
        result: int = args.handler(settings, args)
    except ConfigError as exc:  # a setting, or a file of the data folder (a key) it names
        print(f"popmap-gql: configuration error: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    raise SystemExit(main())
