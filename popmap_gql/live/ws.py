"""GraphQL over WebSocket (`graphql-transport-ws`) on GET /graphql: subscriptions only.

Our own implementation of the protocol (graphql-ws's PROTOCOL.md), not Strawberry's
handler: that one runs each subscription's own async generator through graphql-core,
per subscriber, while here identical subscriptions share one evaluation (cohorts.py);
and the limits below (a bounded send buffer, subscriptions per connection, the token's
expiry) sit between the socket and the cohorts.

The connection: the client sends `connection_init` within POPMAP_WS_INIT_TIMEOUT_SECONDS
(else 4408; twice: 4429), its payload may carry `Authorization: Bearer <token>` (any key
case; else the upgrade request's own header counts), verified by the same authenticator
as HTTP (a bad token: 4403); the server answers `connection_ack`, and closes with 4403
when the token expires, so the client reconnects with a fresh one. `subscribe` before the
ack is 4401, a duplicate id 4409, a malformed message 4400, a message larger than
POPMAP_MAX_BODY_BYTES 1009. `ping` is answered `pong`; the server sends `ping` every
POPMAP_WS_KEEPALIVE_SECONDS. Queries and mutations are refused (`error`, code
OPERATION_NOT_SUPPORTED): they are served over HTTP, where the response cache and CSRF
rules apply. A subscription passes the same document checks as an HTTP request: trusted
documents, depth, aliases, tokens and the cost limit (admission.py); it is charged its
cost once, when it starts, to the viewer's budget (http/budgets.py), and refused with
RATE_LIMITED (an `error` message; the socket stays open) when that cannot pay.

Each connection has a bounded send buffer (POPMAP_WS_SEND_BUFFER messages): a client
that stops reading fills it and is closed with 1008, never buffered without bound.
Browsers send `Origin`; one not in CORS_ALLOWED_ORIGINS is refused before the upgrade
(403). Past POPMAP_WS_MAX_CONNECTIONS sockets, a new one is closed with 1013.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketState

from popmap_gql import observe
from popmap_gql.api.admission import Admission
from popmap_gql.api.engine import CannotGetOperationTypeError
from popmap_gql.api.errors import format_error
from popmap_gql.api.schema import PopmapSchema
from popmap_gql.auth.authenticator import Authenticator
from popmap_gql.auth.viewer import Viewer
from popmap_gql.config import Settings
from popmap_gql.errors import InvalidToken, ServiceUnavailable
from popmap_gql.http.budgets import Budgets, charged_cost
from popmap_gql.http.observe import viewer_kind
from popmap_gql.http.persisted import PersistedDocuments
from popmap_gql.http.request_errors import BadRequest
from popmap_gql.live.cohorts import Cohort, CohortKey, Hub, LiveRefused, coded
from popmap_gql.live.query import NotLive, derive

__all__ = ["PROTOCOL", "LiveEndpoint"]

logger = logging.getLogger(__name__)
access_log = logging.getLogger("popmap_gql.access")

PROTOCOL = "graphql-transport-ws"

# graphql-ws's close codes (PROTOCOL.md), and RFC 6455's.
BAD_REQUEST = 4400
UNAUTHORIZED = 4401
FORBIDDEN = 4403
SUBPROTOCOL_NOT_ACCEPTABLE = 4406
INIT_TIMEOUT = 4408
SUBSCRIBER_EXISTS = 4409
TOO_MANY_INITIALISATIONS = 4429
INTERNAL_ERROR = 4500
POLICY_VIOLATION = 1008  # a slow consumer
TOO_BIG = 1009
TRY_AGAIN_LATER = 1013

_PING = b'{"type":"ping"}'
_PONG = b'{"type":"pong"}'
_ACK = b'{"type":"connection_ack"}'


class _Close(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class LiveEndpoint:
    """The ASGI endpoint of WebSockets on /graphql."""

    def __init__(
        self,
        schema: PopmapSchema,
        settings: Settings,
        hub: Hub,
        persisted: PersistedDocuments,
        budgets: Budgets | None,
    ) -> None:
        self.schema = schema
        self.settings = settings
        self.hub = hub
        self.persisted = persisted
        self.budgets = budgets
        self.allowed_origins = frozenset(settings.cors_allowed_origins)
        self.open = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        origin = websocket.headers.get("origin")
        if (
            origin is not None
            and origin not in self.allowed_origins
            and "*" not in self.allowed_origins
        ):
            await websocket.close(code=POLICY_VIOLATION)  # before the upgrade: HTTP 403
            return
        if PROTOCOL not in scope.get("subprotocols", ()):
            await websocket.accept()
            await websocket.close(SUBPROTOCOL_NOT_ACCEPTABLE, "Subprotocol not acceptable")
            return
        await websocket.accept(subprotocol=PROTOCOL)
        if self.open >= self.settings.ws_max_connections:
            await websocket.close(TRY_AGAIN_LATER, "Too many connections")
            return
        self.open += 1
        _gauge("ws_connections", 1)
        connection = _Connection(self, websocket)
        try:
            await connection.run()
        finally:
            self.open -= 1
            _gauge("ws_connections", -1)


class _Subscription:
    """One subscription of a connection: what the cohort delivers to."""

    __slots__ = ("cohort", "connection", "prefix", "subscription_id")

    def __init__(self, connection: _Connection, subscription_id: str) -> None:
        self.connection = connection
        self.subscription_id = subscription_id
        self.prefix = b'{"id":' + orjson.dumps(subscription_id) + b',"type":"next","payload":'
        self.cohort: Cohort | None = None

    def deliver(self, payloads: list[bytes]) -> None:
        self.connection.queue(*(self.prefix + payload + b"}" for payload in payloads))

    def end(self, errors: list[dict[str, Any]]) -> None:
        connection = self.connection
        if connection.subscriptions.get(self.subscription_id) is self:
            del connection.subscriptions[self.subscription_id]
            connection._leave(self)
            connection._error(self.subscription_id, errors)


class _Connection:
    def __init__(self, endpoint: LiveEndpoint, websocket: WebSocket) -> None:
        self.endpoint = endpoint
        self.settings = endpoint.settings
        self.websocket = websocket
        # Each entry is what one event queued at once (a window's changes, a pong), so a
        # burst of changes is one entry and only a client that stops reading fills it.
        self.outbox: asyncio.Queue[tuple[bytes, ...]] = asyncio.Queue(
            maxsize=self.settings.ws_send_buffer
        )
        self.subscriptions: dict[str, _Subscription] = {}
        self.viewer: Viewer | None = None
        self.init_received = False
        self.closing: _Close | None = None
        self.started = time.perf_counter()
        self.sent = 0
        self.subscribed = 0
        self.request = _http_request(websocket)
        loop = asyncio.get_running_loop()
        # closes the socket when it runs out: the init timeout, then the token's expiry
        self._timer = loop.call_later(
            self.settings.ws_init_timeout_seconds,
            self.close,
            INIT_TIMEOUT,
            "Connection initialisation timeout",
        )
        self._pinger = loop.call_later(self.settings.ws_keepalive_seconds, self._ping)
        # They start once run() waits; the connection lasts as long as the reader, which
        # close() ends.
        self.reader = asyncio.create_task(self._read_loop())
        self.sender = asyncio.create_task(self._send_loop())

    # --- the connection's life -----------------------------------------------------------

    async def run(self) -> None:
        try:
            await asyncio.wait({self.reader})
        finally:
            self.reader.cancel()
            self.sender.cancel()
            self._pinger.cancel()
            self._timer.cancel()
            for subscription in self.subscriptions.values():
                self._leave(subscription)
            closing = self.closing
            if (
                closing is not None
                and self.websocket.application_state != WebSocketState.DISCONNECTED
            ):
                with contextlib.suppress(RuntimeError, OSError):  # the client is gone already
                    await self.websocket.close(closing.code, closing.reason)
            self._access_line()

    def close(self, code: int, reason: str) -> None:
        """Close the socket with `code` (from any task; the first reason wins)."""
        if self.closing is None:
            # a close frame's reason holds at most 123 bytes (RFC 6455, 5.5)
            self.closing = _Close(code, reason.encode()[:123].decode(errors="ignore"))
            self.reader.cancel()

    def queue(self, *messages: bytes) -> None:
        if self.closing is not None:
            return
        try:
            self.outbox.put_nowait(messages)
        except asyncio.QueueFull:
            logger.warning("live: a client that does not read is closed (slow consumer)")
            self.close(POLICY_VIOLATION, "Slow consumer: messages were not read")

    async def _send_loop(self) -> None:
        try:
            while True:
                for message in await self.outbox.get():
                    await self.websocket.send_text(message.decode())
                    self.sent += 1
                    if (metrics := observe.metrics) is not None:
                        metrics.ws_messages.inc()
        except (RuntimeError, OSError):
            self.reader.cancel()  # the client went away

    def _ping(self) -> None:
        """Every POPMAP_WS_KEEPALIVE_SECONDS (a timer, not a task per idle socket)."""
        self.queue(_PING)
        loop = asyncio.get_running_loop()
        self._pinger = loop.call_later(self.settings.ws_keepalive_seconds, self._ping)

    async def _read_loop(self) -> None:
        try:
            while True:
                message = await self.websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                text = message.get("text")
                if text is None:
                    raise _Close(BAD_REQUEST, "Binary messages are not supported")
                if len(text.encode()) > self.settings.max_body_bytes:  # bytes, not characters
                    raise _Close(TOO_BIG, "Message too big")
                await self._handle(_parse(text))
        except _Close as close:
            self.close(close.code, close.reason)
        except Exception:
            logger.exception("live: the connection failed")
            self.close(INTERNAL_ERROR, "Internal server error")

    # --- messages ------------------------------------------------------------------------

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "connection_init":
            await self._init(message.get("payload"))
        elif kind == "ping":
            self.queue(_PONG)
        elif kind == "pong":
            pass
        elif kind == "subscribe":
            await self._subscribe(message)
        elif kind == "complete":
            subscription_id = message.get("id")
            if isinstance(subscription_id, str) and subscription_id in self.subscriptions:
                self._leave(self.subscriptions.pop(subscription_id))
        else:
            raise _Close(BAD_REQUEST, f"Invalid message type {str(kind)[:40]!r}")

    async def _init(self, payload: Any) -> None:
        if self.init_received:
            raise _Close(TOO_MANY_INITIALISATIONS, "Too many initialisation requests")
        self.init_received = True
        if payload is not None and not isinstance(payload, dict):
            raise _Close(BAD_REQUEST, "The connection_init payload must be an object")
        authorization = _authorization(payload or {})
        if authorization is None:
            authorization = self.websocket.headers.get("authorization")
        authenticator: Authenticator = self.websocket.app.state.authenticator
        try:
            viewer = await authenticator.authenticate(authorization)
            expires_at = await authenticator.expires_at(authorization) if authorization else None
        except InvalidToken:
            raise _Close(FORBIDDEN, "Forbidden") from None
        except ServiceUnavailable:
            raise _Close(TRY_AGAIN_LATER, "Try again later") from None
        self._timer.cancel()
        if expires_at is not None:
            delay = max(0.0, expires_at - time.time())
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(delay, self.close, FORBIDDEN, "Token expired")
        self.viewer = viewer
        self.queue(_ACK)

    async def _subscribe(self, message: dict[str, Any]) -> None:
        if self.viewer is None:
            raise _Close(UNAUTHORIZED, "Unauthorized")
        subscription_id = message.get("id")
        payload = message.get("payload")
        if not isinstance(subscription_id, str) or not subscription_id:
            raise _Close(BAD_REQUEST, "A subscribe message needs an id")
        if not isinstance(payload, dict):
            raise _Close(BAD_REQUEST, "A subscribe message needs a payload object")
        query, variables = payload.get("query"), payload.get("variables")
        name = payload.get("operationName")
        kinds = ((query, str), (variables, dict), (name, str), (payload.get("extensions"), dict))
        if not all(isinstance(value, kind | None) for value, kind in kinds):
            raise _Close(BAD_REQUEST, "Invalid subscribe payload")
        if subscription_id in self.subscriptions:
            raise _Close(SUBSCRIBER_EXISTS, f"Subscriber for {subscription_id[:40]} already exists")
        if len(self.subscriptions) >= self.settings.ws_max_subscriptions:
            self._error(
                subscription_id,
                [
                    coded(
                        f"at most {self.settings.ws_max_subscriptions} subscriptions at once"
                        " on one connection",
                        "TOO_MANY_SUBSCRIPTIONS",
                    )
                ],
            )
            return
        subscription = _Subscription(self, subscription_id)
        self.subscriptions[subscription_id] = subscription
        try:
            subscription.cohort = await self._join(subscription, payload, query, variables, name)
        except LiveRefused as refused:
            if self.subscriptions.pop(subscription_id, None) is subscription:
                self._error(subscription_id, refused.errors)
            return
        self.subscribed += 1
        _gauge("ws_subscriptions", 1)

    async def _join(
        self,
        subscription: _Subscription,
        payload: Mapping[str, Any],
        query: str | None,
        variables: dict[str, Any] | None,
        name: str | None,
    ) -> Cohort:
        schema = self.endpoint.schema
        try:
            document = await self.endpoint.persisted.document(payload, query)
        except BadRequest as exc:
            raise LiveRefused([coded(exc.message, exc.code)]) from None
        if document is None:
            raise LiveRefused([coded("No GraphQL query found in the request", "BAD_REQUEST")])
        prepared = schema.documents.prepare(document.text)
        if prepared.document is None or prepared.errors:
            raise LiveRefused([format_error(error) for error in prepared.errors])
        admission = schema.admit(prepared, name, variables)
        if admission.errors:
            raise LiveRefused([format_error(error) for error in admission.errors])
        if admission.operation is None:
            reason = CannotGetOperationTypeError(name and name[:100]).as_http_error_reason()
            raise LiveRefused([coded(reason, "BAD_REQUEST")])  # as HTTP words it
        try:
            live = derive(schema.documents.schema, prepared.document, admission, variables)
        except NotLive as exc:
            raise LiveRefused(
                [
                    coded(
                        f"Only subscriptions are served over WebSocket ({exc}); queries"
                        " and mutations are served over HTTP",
                        "OPERATION_NOT_SUPPORTED",
                    )
                ]
            ) from None
        assert self.viewer is not None
        await self._charge(admission)
        audience = self.viewer.audience
        key: CohortKey = (
            document.text,
            admission.operation_name,
            admission.key,
            audience.user_id,
            audience.is_staff,
            audience.client_id,
            frozenset(audience.scopes),
            str(self.request.base_url),
        )
        return await self.endpoint.hub.join(
            key, live, self.viewer, self.request, subscription, admission.cost
        )

    async def _charge(self, admission: Admission) -> None:
        """A subscription is charged its admitted cost once, when it starts, to the budget
        an HTTP request of this viewer from this address pays (budgets.py); a client over
        budget gets an `error` message RATE_LIMITED, and the connection stays open."""
        budgets = self.endpoint.budgets
        if budgets is None:
            return
        subject = budgets.subject(self.viewer, self.websocket.scope)
        outcome = budgets.still_refused(subject) or await budgets.charge(
            subject, charged_cost(admission)
        )
        if not outcome.allowed:
            retry = outcome.retry_after(subject.policy)
            message = budgets.refusal_message(subject, outcome)
            raise LiveRefused([coded(message, "RATE_LIMITED", retryAfter=retry)])

    def _leave(self, subscription: _Subscription) -> None:
        if subscription.cohort is not None:
            self.endpoint.hub.leave(subscription.cohort, subscription)
            subscription.cohort = None
            _gauge("ws_subscriptions", -1)

    def _error(self, subscription_id: str, errors: list[dict[str, Any]]) -> None:
        self.queue(orjson.dumps({"id": subscription_id, "type": "error", "payload": errors}))

    def _access_line(self) -> None:
        if not access_log.isEnabledFor(logging.INFO):
            return
        kind = "none" if self.viewer is None else viewer_kind(self.viewer)
        closing = self.closing
        access_log.info(
            "websocket /graphql viewer=%s subscriptions=%d sent=%d close=%s seconds=%.1f",
            kind,
            self.subscribed,
            self.sent,
            closing.code if closing is not None else "client",
            time.perf_counter() - self.started,
        )


def _parse(text: str) -> dict[str, Any]:
    try:
        message = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise _Close(BAD_REQUEST, "Invalid message: not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        raise _Close(BAD_REQUEST, "Invalid message: no type")
    return message


def _authorization(payload: Mapping[str, Any]) -> str | None:
    for key, value in payload.items():
        if key.lower() == "authorization":
            if not isinstance(value, str):
                raise _Close(FORBIDDEN, "Forbidden")
            return value
    return None


def _http_request(websocket: WebSocket) -> Request:
    """The upgrade request as an HTTP request: what a GraphQL context is built from (its
    origin starts the media URLs, as over HTTP)."""
    scheme = {"ws": "http", "wss": "https"}.get(websocket.scope.get("scheme", "ws"), "http")
    return Request({**websocket.scope, "type": "http", "scheme": scheme, "method": "GET"})


def _gauge(name: str, change: int) -> None:
    if (metrics := observe.metrics) is not None:
        getattr(metrics, name).inc(change)
