"""The embedded store over HTTP: the browser's signed form POST, and the published files.

`POST /media/uploads` takes what S3 takes: multipart/form-data with the signed fields first
and the file last. It stores nothing unless the signature holds, the policy has not
expired, the fields match it, the file has the size it binds and is a real image of its
type, and nothing is stored under the key yet. `GET /media/<key>` serves published keys
only (a fixed pattern, so no path can leave the folder), cacheable for ever: a key never
names other bytes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from popmap_gql.db.models import MediaUpload
from popmap_gql.errors import BadUserInput
from popmap_gql.media.images import check_image
from popmap_gql.media.policy import ALGORITHM, Policy, PolicyRefused
from popmap_gql.media.rules import IMMUTABLE_CACHE_CONTROL, PUBLISHED_KEY, content_type_of_key
from popmap_gql.media.stores import UPLOAD_PATH, LocalStore, ObjectExists

__all__ = ["FORM_OVERHEAD_BYTES", "media_routes"]

# Room for the signed fields and multipart framing beside the file itself.
FORM_OVERHEAD_BYTES = 16 * 1024
_SIGNED_FIELDS = ("key", "Content-Type", "policy", "x-popmap-algorithm", "x-popmap-signature")
_FIELD_BYTES = 2048


@dataclass
class UploadRefused(Exception):
    status: int
    code: str
    message: str


def _refusal(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"message": message, "extensions": {"code": code}}]}, status_code=status
    )


def _store(request: Request) -> LocalStore:
    store = request.app.state.media_store
    assert isinstance(store, LocalStore)  # these routes exist only without a bucket
    return store


def media_routes() -> list[Route]:
    """The routes of the embedded store, which the app adds when no bucket is configured."""

    async def upload(request: Request) -> Response:
        try:
            await _accept(_store(request), request)
        except UploadRefused as exc:
            return _refusal(exc.status, exc.code, exc.message)
        return Response(status_code=204)

    async def published(request: Request) -> Response:
        key = f"media/{request.path_params['path']}"
        # only a published key names a path: none can leave the folder
        path = _store(request).path(key) if PUBLISHED_KEY.fullmatch(key) else None
        if path is None or not path.is_file():
            return _refusal(404, "NOT_FOUND", "no such file")
        return FileResponse(
            path,
            media_type=content_type_of_key(key),
            headers={
                "Cache-Control": IMMUTABLE_CACHE_CONTROL,
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": "default-src 'none'; sandbox",
            },
        )

    return [
        Route(UPLOAD_PATH, upload, methods=["POST"]),
        Route("/media/{path:path}", published, methods=["GET"]),
    ]


async def _accept(store: LocalStore, request: Request) -> None:
    fields, file = await _form(request)
    try:
        policy = store.verify(fields["policy"], fields["x-popmap-signature"])
    except PolicyRefused as exc:
        raise UploadRefused(403, "FORBIDDEN", str(exc)) from None
    _match(policy, fields)
    data = await file.read(policy.max_bytes + 1)  # no further: how much more is unknown
    if not policy.min_bytes <= len(data) <= policy.max_bytes:
        has = f"more than {policy.max_bytes}" if len(data) > policy.max_bytes else len(data)
        raise UploadRefused(
            400, "BAD_REQUEST", f"the file must have {policy.max_bytes} bytes, it has {has}"
        )
    upload = await MediaUpload.get_or_none(key=policy.key)
    if upload is None or upload.used_at is not None:
        raise UploadRefused(409, "CONFLICT", "this upload was already used")
    try:
        await asyncio.to_thread(check_image, data, policy.content_type, "file")
        await store.store_upload(policy.key, data)
    except BadUserInput as exc:
        raise UploadRefused(400, "BAD_REQUEST", exc.message) from None
    except ObjectExists:
        raise UploadRefused(409, "CONFLICT", "a file was already uploaded with this key") from None


async def _form(request: Request) -> tuple[dict[str, str], UploadFile]:
    """The signed fields and the file, which must come last (as S3 requires)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise UploadRefused(400, "BAD_REQUEST", "send the upload as multipart/form-data")
    try:
        form = await request.form(
            max_files=1, max_fields=len(_SIGNED_FIELDS), max_part_size=_FIELD_BYTES
        )
    except HTTPException as exc:  # Starlette's answer to a malformed or oversized form
        raise UploadRefused(400, "BAD_REQUEST", str(exc.detail)) from None
    items = form.multi_items()
    if not items or items[-1][0] != "file" or not isinstance(items[-1][1], UploadFile):
        raise UploadRefused(400, "BAD_REQUEST", "the form must end with the file, named `file`")
    fields: dict[str, str] = {}
    for name, value in items[:-1]:
        if name not in _SIGNED_FIELDS or name in fields or not isinstance(value, str):
            raise UploadRefused(400, "BAD_REQUEST", f"unexpected form field {name[:40]!r}")
        fields[name] = value
    if missing := [name for name in _SIGNED_FIELDS if name not in fields]:
        raise UploadRefused(400, "BAD_REQUEST", f"missing form fields: {', '.join(missing)}")
    return fields, items[-1][1]


def _match(policy: Policy, fields: dict[str, str]) -> None:
    """The form's fields are the ones the signature covers."""
    if fields["x-popmap-algorithm"] != ALGORITHM:
        raise UploadRefused(403, "FORBIDDEN", f"x-popmap-algorithm must be {ALGORITHM}")
    if fields["key"] != policy.key or fields["Content-Type"] != policy.content_type:
        raise UploadRefused(
            403, "FORBIDDEN", "the form's key or Content-Type is not the signed one"
        )
