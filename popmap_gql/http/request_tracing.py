"""The server span of each HTTP request (see popmap_gql/tracing.py); a pass-through while
tracing is off."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from popmap_gql import tracing

__all__ = ["RequestTracing"]

# Only the W3C trace context is read from the request's headers.
_PROPAGATED = (b"traceparent", b"tracestate")


class RequestTracing:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not tracing.enabled():
            await self.app(scope, receive, send)
            return
        carrier = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope["headers"]
            if name in _PROPAGATED
        }
        with tracing.request_span(scope["method"], scope["path"], carrier) as span:

            async def send_with_status(message: Message) -> None:
                if message["type"] == "http.response.start":
                    span.set_attribute("http.response.status_code", message["status"])
                await send(message)

            await self.app(scope, receive, send_with_status)
