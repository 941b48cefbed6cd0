"""A graphql-transport-ws client for tests, over a real WebSocket (the `websockets` package)."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

PROTOCOL = "graphql-transport-ws"
# A bound on every wait, so a broken server fails the test instead of hanging it; no
# assertion is about how long anything took.
PATIENCE_SECONDS = 30.0


def ws_url(base: str) -> str:
    return base.replace("http://", "ws://", 1) + "/graphql"


class LiveClient:
    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket

    async def send(self, message: dict[str, Any]) -> None:
        await self.socket.send(json.dumps(message))

    async def receive(self) -> dict[str, Any]:
        """The next message other than the server's keep-alive pings (which do not
        extend the wait)."""
        async with asyncio.timeout(PATIENCE_SECONDS):
            while True:
                message: dict[str, Any] = json.loads(await self.socket.recv())
                if message["type"] != "ping":
                    return message

    async def init(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        await self.send({"type": "connection_init", **({"payload": payload} if payload else {})})
        return await self.receive()

    async def subscribe(
        self, subscription_id: str, query: str, variables: dict[str, Any] | None = None
    ) -> None:
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        await self.send({"id": subscription_id, "type": "subscribe", "payload": payload})

    async def next_change(self) -> dict[str, Any]:
        message = await self.receive()
        assert message["type"] == "next", message
        return message

    async def closed_with(self, most: int = 100_000) -> int | None:
        """Read until the server closes (at most `most` messages); the close code."""
        try:
            for _ in range(most):
                async with asyncio.timeout(PATIENCE_SECONDS):
                    await self.socket.recv()
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None
        raise AssertionError(f"the server sent {most} messages and did not close")


@asynccontextmanager
async def live(
    base: str,
    *,
    subprotocols: list[str] | None = None,
    headers: dict[str, str] | None = None,
    origin: str | None = None,
    **options: Any,
) -> AsyncIterator[LiveClient]:
    chosen = [PROTOCOL] if subprotocols is None else subprotocols
    async with connect(
        ws_url(base),
        subprotocols=[Subprotocol(p) for p in chosen] or None,
        additional_headers=headers,
        origin=origin,  # type: ignore[arg-type]
        open_timeout=PATIENCE_SECONDS,
        **options,
    ) as socket:
        yield LiveClient(socket)


class SilentClient:
    """A graphql-transport-ws client on a plain socket that reads only when told to, with
    a small receive buffer: a client that stops reading, as the kernel sees it (a client
    library keeps reading into its own memory)."""

    def __init__(self, base: str) -> None:
        url = ws_url(base)
        self.protocol = ClientProtocol(parse_uri(url), subprotocols=[Subprotocol(PROTOCOL)])
        host, port = url.removeprefix("ws://").split("/", 1)[0].rsplit(":", 1)
        self.socket = socket.socket()
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.socket.settimeout(PATIENCE_SECONDS)
        self.socket.connect((host, int(port)))
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        while self.protocol.handshake_exc is None and not self._handshake_done():
            self._read_some()
        assert self.protocol.handshake_exc is None, self.protocol.handshake_exc
        self.received: list[Any] = []

    def _handshake_done(self) -> bool:
        return any(isinstance(event, Response) for event in self._events())

    def _events(self) -> list[Any]:
        events = self.protocol.events_received()
        frames = [event for event in events if isinstance(event, Frame)]
        self.received = [*getattr(self, "received", []), *frames]
        return events

    def _flush(self) -> None:
        self.socket.sendall(b"".join(self.protocol.data_to_send()))

    def _read_some(self) -> None:
        data = self.socket.recv(65536)
        if data:
            self.protocol.receive_data(data)
        else:
            self.protocol.receive_eof()

    def send(self, message: dict[str, Any]) -> None:
        self.protocol.send_text(json.dumps(message).encode())
        self._flush()

    def read_until(self, kind: str) -> None:
        """Read messages until one of type `kind` (skipping the rest)."""
        while True:
            for frame in self.received:
                if frame.opcode is Opcode.TEXT and json.loads(frame.data)["type"] == kind:
                    self.received = []
                    return
            self.received = []
            self._read_some()
            self._events()

    def closed_with(self) -> int | None:
        """Read everything until the server's close frame; its code."""
        while self.protocol.close_rcvd is None:
            try:
                self._read_some()
            except OSError:
                break
            self._events()
            self.received = []
            self._flush()
        return self.protocol.close_rcvd.code if self.protocol.close_rcvd else None

    def close(self) -> None:
        self.socket.close()
