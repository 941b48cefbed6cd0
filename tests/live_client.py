"""A graphql-transport-ws client for tests, over a real WebSocket (the `websockets` package)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

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
        """The next message other than the server's keep-alive pings."""
        while True:
            async with asyncio.timeout(PATIENCE_SECONDS):
                text = await self.socket.recv()
            message: dict[str, Any] = json.loads(text)
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

    async def closed_with(self) -> int | None:
        """Read until the server closes; the close code."""
        try:
            while True:
                async with asyncio.timeout(PATIENCE_SECONDS):
                    await self.socket.recv()
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd is not None else None


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
