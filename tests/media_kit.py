"""Helpers for media tests: real image files, and the browser's side of an upload."""

from __future__ import annotations

import io
import struct
import zlib
from typing import Any

import httpx
from PIL import Image

from tests.people import Person, post

CREATE_UPLOAD = """
mutation ($kind: UploadKind!, $type: String!, $size: Int!) {
  createUpload(kind: $kind, contentType: $type, byteSize: $size) {
    url key expiresAt maxBytes fields { name value }
  }
}
"""

SUBMIT_BUSINESS = """
mutation ($input: BusinessInput!) {
  submitBusiness(input: $input) { business { id name logoUrl } }
}
"""

UPDATE_BUSINESS = """
mutation ($id: ID!, $input: BusinessInput!) {
  updateBusiness(id: $id, input: $input) { business { id logoUrl } }
}
"""

SUBMIT_EVENT = """
mutation ($input: EventInput!) { submitEvent(input: $input) { event { id title imageUrl } } }
"""


def image_bytes(image_format: str, size: tuple[int, int] = (64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(buffer, image_format)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims `width` x `height` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * 64 * 1024)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


async def create_upload(
    client: httpx.AsyncClient, who: Person, kind: str, content_type: str, size: int
) -> dict[str, Any]:
    body = await post(
        client, who, CREATE_UPLOAD, {"kind": kind, "type": content_type, "size": size}
    )
    assert "errors" not in body, body
    signed: dict[str, Any] = body["data"]["createUpload"]
    return signed


def form_fields(signed: dict[str, Any]) -> dict[str, str]:
    return {field["name"]: field["value"] for field in signed["fields"]}


async def send_form(
    signed: dict[str, Any],
    data: bytes | None,
    *,
    fields: dict[str, str] | None = None,
    filename: str = "picture",
    part_type: str = "application/octet-stream",
) -> httpx.Response:
    """POST the form as a browser's FormData does: multipart, the fields in order, then
    the file (left out when `data` is None)."""
    values = fields if fields is not None else form_fields(signed)
    parts: list[tuple[str, tuple[str | None, bytes | str, str | None]]] = [
        (name, (None, value, None)) for name, value in values.items()
    ]
    if data is not None:
        parts.append(("file", (filename, data, part_type)))
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.post(
            signed["url"], files=parts, headers={"origin": "http://localhost:5173"}
        )


async def upload(
    client: httpx.AsyncClient, who: Person, kind: str, content_type: str, data: bytes
) -> str:
    """Create an upload, send the file, and return the key to save."""
    signed = await create_upload(client, who, kind, content_type, len(data))
    response = await send_form(signed, data)
    assert response.status_code == 204, response.text
    key: str = signed["key"]
    return key
