"""The composition root: create_app(settings) -> Starlette."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from tortoise.contrib.starlette import RegisterTortoise

from popmap_gql import tracing
from popmap_gql.api.errors import MASKED_MESSAGE, RETRY_AFTER_SECONDS, fault_log
from popmap_gql.api.schema import build_schema
from popmap_gql.auth.authenticator import build_authenticator
from popmap_gql.auth.hosted_ui import LocalSignIn, hosted_ui_routes
from popmap_gql.auth.user_pool_api import (
    AMPLIFY_EXPOSED_HEADERS,
    AMPLIFY_REQUEST_HEADERS,
    user_pool_api_routes,
)
from popmap_gql.config import Settings, load_settings
from popmap_gql.db.client import execute
from popmap_gql.db.embedded import embedded_database_url
from popmap_gql.db.orm import tortoise_config
from popmap_gql.errors import DatabaseUnavailable, ServiceUnavailable
from popmap_gql.http.media_routes import FORM_OVERHEAD_BYTES, media_routes
from popmap_gql.http.middleware import BodySizeLimit
from popmap_gql.http.observe import RequestObserver, echoed_request_id
from popmap_gql.http.request_tracing import RequestTracing
from popmap_gql.http.view import GraphQLView, error_response
from popmap_gql.live.cohorts import Hub
from popmap_gql.live.listener import Listener
from popmap_gql.live.ws import LiveEndpoint
from popmap_gql.media.stores import UPLOAD_PATH
from popmap_gql.media.uploads import build_store
from popmap_gql.metrics import CONTENT_TYPE, Metrics
from popmap_gql.observe import install as install_metrics

__all__ = ["create_app", "create_app_from_environment"]

logger = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 2.0


async def healthz(_request: Request) -> JSONResponse:
    """The process is up; says nothing about its dependencies."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    """Ready to serve: not draining before a shutdown, and the database answers, through
    the pool, within a short timeout."""
    if request.app.state.draining:
        return _unavailable("draining")
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await execute("SELECT 1")
    except TimeoutError as exc:
        fault = DatabaseUnavailable("no answer within the readiness timeout")
        fault.__cause__ = exc
        fault_log.report(fault)
    except ServiceUnavailable as exc:
        fault_log.report(exc)
    else:
        return JSONResponse({"status": "ready"})
    return _unavailable("unavailable")


def _unavailable(status: str) -> JSONResponse:
    return JSONResponse(
        {"status": status}, status_code=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
    )


@asynccontextmanager
async def drain_on_sigterm(app: Starlette, seconds: float) -> AsyncIterator[None]:
    """While the app runs, SIGTERM first drains: /readyz answers 503 for `seconds` while
    every request is still served, so that a load balancer polling /readyz stops routing
    here; only then does the signal reach the server (uvicorn), which stops accepting
    connections and lets requests in flight finish. A second SIGTERM ends the drain early.

    Each worker process runs its own lifespan and gets its own SIGTERM from `serve`.
    Nothing changes when `seconds` is 0 or the app does not run in the main thread
    (signals are delivered there only).
    """
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return
    loop = asyncio.get_running_loop()
    server_handler = signal.getsignal(signal.SIGTERM)  # uvicorn's, installed before us
    timer: asyncio.TimerHandle | None = None
    passed_on = False

    def give_back() -> None:
        loop.remove_signal_handler(signal.SIGTERM)
        signal.signal(signal.SIGTERM, server_handler)

    def pass_on() -> None:
        """The drain is over: SIGTERM goes to the server, as if it had just arrived."""
        nonlocal passed_on
        passed_on = True
        give_back()
        signal.raise_signal(signal.SIGTERM)

    def on_sigterm() -> None:
        nonlocal timer
        if timer is not None:  # a second SIGTERM while draining: stop now
            timer.cancel()
            pass_on()
            return
        app.state.draining = True
        logger.info("SIGTERM: draining for %g s (/readyz answers 503), then stopping", seconds)
        timer = loop.call_later(seconds, pass_on)

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    try:
        yield
    finally:
        if not passed_on:  # stopped another way (SIGINT): the server's handler again
            if timer is not None:
                timer.cancel()
            give_back()


async def internal_error(request: Request, _exc: Exception) -> Response:
    """Outside GraphQL execution (e.g. while authenticating): masked, in GraphQL's shape,
    with the request id of the access line.

    Starlette's ServerErrorMiddleware calls this, then re-raises for uvicorn to log.
    """
    return error_response(
        request.headers.get("accept", ""),
        500,
        MASKED_MESSAGE,
        "INTERNAL_SERVER_ERROR",
        headers=echoed_request_id(request.scope),
    )


async def service_unavailable(request: Request, exc: Exception) -> Response:
    """A dependency's fault in a route other than GraphQL's (the media upload endpoint
    reading the database): 503 with Retry-After, as the GraphQL endpoint answers."""
    assert isinstance(exc, ServiceUnavailable)
    fault_log.report(exc)
    return error_response(
        request.headers.get("accept", ""),
        503,
        exc.message,
        exc.code,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def http_error(request: Request, exc: Exception) -> Response:
    """Routing's own refusals (404, 405 on /healthz) in GraphQL's shape, headers kept.

    Starlette's 405 carries the route's Allow header, which RFC 9110 requires.
    """
    assert isinstance(exc, HTTPException)
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "BAD_REQUEST")
    return error_response(
        request.headers.get("accept", ""),
        exc.status_code,
        exc.detail,
        code,
        headers=dict(exc.headers) if exc.headers else None,
    )


def metrics_endpoint(metrics: Metrics) -> Route:
    """GET /metrics: Prometheus's text format, this process's or every worker's."""

    async def scrape(_request: Request) -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    return Route("/metrics", scrape, methods=["GET"])


def create_app(settings: Settings) -> Starlette:
    metrics = install_metrics(settings.metrics_multiprocess_dir) if settings.metrics else None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        url = settings.database_url or await embedded_database_url(settings.embedded_pgdata)
        config = tortoise_config(
            url,
            pool_size=settings.db_pool_size,
            statement_timeout_ms=settings.db_statement_timeout_ms,
            pool_timeout=settings.db_pool_timeout_seconds,
            pooler=settings.db_pooler,
        )
        # One client for JWKS and userInfo: short timeouts, no redirects, pooled connections.
        http = httpx.AsyncClient(timeout=httpx.Timeout(3.0), follow_redirects=False)
        async with (
            http,
            RegisterTortoise(app, config=config),
            drain_on_sigterm(app, settings.shutdown_drain_seconds),
        ):
            app.state.authenticator = build_authenticator(settings, http)
            app.state.media_store = build_store(settings)
            tracing.start(settings)
            listener = Listener(settings.db_listen_url or url, hub.touched, hub.refresh_all)
            app.state.listener = listener
            listening = asyncio.create_task(listener.run())
            try:
                yield
            finally:
                listening.cancel()
                if view.budgets is not None:
                    await view.budgets.close()
                tracing.stop()
                if metrics is not None:
                    metrics.process_ended()

    view = GraphQLView(build_schema(settings), settings)
    hub = Hub(view.schema, settings)
    # Without a pool, the local provider's hosted UI and user-pool API (for Amplify);
    # with one, none of it: no route, no CORS header of theirs.
    local_sign_in = None if settings.cognito_configured else LocalSignIn(settings)
    middleware = [
        # Outermost of ours: every request gets its access line, refused ones included.
        Middleware(RequestObserver, data_dir=settings.data_dir, metrics=metrics),
        # then the request's span covers everything below (a pass-through when off)
        Middleware(RequestTracing),
        Middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts)),
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_allowed_origins),
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=[
                "authorization",
                "content-type",
                "accept",
                "apollo-require-preflight",
                *(AMPLIFY_REQUEST_HEADERS if local_sign_in else ()),
            ],
            # budgets.py: a browser's client may read its budget and when to retry
            expose_headers=[
                "WWW-Authenticate",
                "X-Request-ID",
                "RateLimit",
                "RateLimit-Policy",
                "Retry-After",
                *(AMPLIFY_EXPOSED_HEADERS if local_sign_in else ()),
            ],
            max_age=600,
        ),
        Middleware(
            BodySizeLimit,
            max_bytes=settings.max_body_bytes,
            limits={UPLOAD_PATH: settings.media_max_bytes + FORM_OVERHEAD_BYTES},
        ),
    ]
    routes = [
        # Every method reaches the view, which answers 405 with Allow itself.
        Route("/graphql", view),
        # Subscriptions: graphql-transport-ws on the same path (live/ws.py).
        WebSocketRoute(
            "/graphql", LiveEndpoint(view.schema, settings, hub, view.persisted, view.budgets)
        ),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        # Without a bucket the API is the media store: it takes the uploads and serves them.
        *(media_routes() if settings.media_bucket is None else []),
        # With a port of its own, `serve` answers scrapes there instead (see cli.py).
        *([metrics_endpoint(metrics)] if metrics and settings.metrics_port is None else []),
        *([*hosted_ui_routes(), *user_pool_api_routes()] if local_sign_in else []),
    ]
    app = Starlette(
        debug=settings.debug,
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        exception_handlers={
            HTTPException: http_error,
            ServiceUnavailable: service_unavailable,
            Exception: internal_error,
        },
    )
    app.state.draining = False  # set by drain_on_sigterm
    app.state.local_sign_in = local_sign_in
    return app


def create_app_from_environment() -> Starlette:
    """Factory for `uvicorn --factory` and worker processes."""
    return create_app(load_settings())
