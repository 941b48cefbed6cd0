"""HTTP middleware of our own: the request body size limit."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from popmap_gql.http.view import error_response

__all__ = ["BodySizeLimit"]


class _TooLarge(Exception):
    pass


class BodySizeLimit:
    """Refuse request bodies over `max_bytes` with 413, declared or streamed; paths in
    `limits` (an upload endpoint) have their own."""

    def __init__(self, app: ASGIApp, max_bytes: int, limits: Mapping[str, int]) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limits.get(scope["path"], self.max_bytes)
        headers = dict(scope["headers"])
        accept = headers.get(b"accept", b"").decode("latin-1")
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_bytes):
            await self._refuse(accept, max_bytes, scope, receive, send)
            return

        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            response_started = response_started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if response_started:
                raise
            await self._refuse(accept, max_bytes, scope, receive, send)

    @staticmethod
    async def _refuse(
        accept: str, max_bytes: int, scope: Scope, receive: Receive, send: Send
    ) -> None:
        response = error_response(
            accept,
            413,
            f"request body is larger than {max_bytes} bytes",
            "PAYLOAD_TOO_LARGE",
            headers={"connection": "close"},
        )
        await response(scope, receive, send)
