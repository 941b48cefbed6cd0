"""Uploads through the embedded store: the browser's form POST to the API itself, saving
the key, fetching the picture by its URL, and every way of abusing each step."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from popmap_gql.config import Settings
from popmap_gql.db.models import Business, Event, MediaUpload
from popmap_gql.media.policy import Policy, load_or_create_secret, sign_policy
from tests.fake_cognito import FakeCognito
from tests.helpers import error_codes, global_id
from tests.media_kit import (
    CREATE_UPLOAD,
    SUBMIT_BUSINESS,
    SUBMIT_EVENT,
    UPDATE_BUSINESS,
    create_upload,
    form_fields,
    image_bytes,
    png_claiming,
    send_form,
    upload,
)
from tests.people import ANONYMOUS, Person, person, post
from tests.processes import running_server

PNG = image_bytes("PNG")
JPEG = image_bytes("JPEG")
WEBP = image_bytes("WEBP")


@pytest.fixture(autouse=True)
def empty_media_folder(settings: Settings) -> None:
    """The app's media folder lives for the session; each test starts with it empty."""
    shutil.rmtree(settings.media_dir, ignore_errors=True)


@pytest.fixture
async def ana(client: httpx.AsyncClient, cognito: FakeCognito) -> Person:
    return await person(cognito, "ana")


@pytest.fixture
async def ben(client: httpx.AsyncClient, cognito: FakeCognito) -> Person:
    return await person(cognito, "ben")


def stored_files(settings: Settings) -> set[str]:
    root = settings.media_dir
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


async def owned_business(who: Person) -> Business:
    return await Business.create(
        name=f"{who.name}'s shop", owner_id=who.user.id if who.user else None
    )


async def save_logo(
    client: httpx.AsyncClient, who: Person, business: Business, key: str
) -> dict[str, Any]:
    return await post(
        client,
        who,
        UPDATE_BUSINESS,
        {"id": global_id("Business", business.pk), "input": {"logo": key}},
    )


def bad_input_field(body: dict[str, Any]) -> str:
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    field: str = body["errors"][0]["extensions"]["field"]
    return field


# --- the flow that works -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "data"), [("image/png", PNG), ("image/jpeg", JPEG), ("image/webp", WEBP)]
)
async def test_owner_uploads_a_logo_saves_it_and_anyone_fetches_it_by_its_url(
    client: httpx.AsyncClient, ana: Person, content_type: str, data: bytes
) -> None:
    business = await owned_business(ana)
    signed = await create_upload(client, ana, "BUSINESS_LOGO", content_type, len(data))
    api = str(client.base_url).rstrip("/")
    assert signed["url"] == f"{api}/media/uploads"
    assert [f["name"] for f in signed["fields"]][:2] == ["key", "Content-Type"]
    assert signed["maxBytes"] == 5 * 1024 * 1024

    response = await send_form(signed, data)
    assert response.status_code == 204, response.text
    saved = await save_logo(client, ana, business, signed["key"])

    assert "errors" not in saved, saved
    url = saved["data"]["updateBusiness"]["business"]["logoUrl"]
    assert url.startswith(f"{api}/media/business-logo/")
    picture = await client.get(url)
    assert picture.status_code == 200
    assert picture.content == data
    assert picture.headers["content-type"] == content_type
    assert "immutable" in picture.headers["cache-control"]
    assert picture.headers["x-content-type-options"] == "nosniff"
    upload_row = await MediaUpload.get(key=signed["key"])
    assert upload_row.used_at is not None


async def test_event_image_is_saved_when_the_event_is_submitted(
    client: httpx.AsyncClient, ana: Person
) -> None:
    key = await upload(client, ana, "EVENT_IMAGE", "image/jpeg", JPEG)
    now = datetime.now(UTC)
    body = await post(
        client,
        ana,
        SUBMIT_EVENT,
        {
            "input": {
                "title": "Night market",
                "latitude": 30.2,
                "longitude": -97.7,
                "startsAt": (now + timedelta(days=1)).isoformat(),
                "endsAt": (now + timedelta(days=1, hours=3)).isoformat(),
                "image": key,
            }
        },
    )
    assert "errors" not in body, body
    url = body["data"]["submitEvent"]["event"]["imageUrl"]
    assert "/media/event-image/" in url
    assert (await client.get(url)).content == JPEG


UPDATE_EVENT = """
mutation ($id: ID!, $input: EventUpdateInput!) {
  updateEvent(id: $id, input: $input) { changed event { id imageUrl } }
}
"""


async def test_an_uploaded_image_replaces_an_events_image_url_on_update(
    client: httpx.AsyncClient, ana: Person
) -> None:
    assert ana.user is not None
    event = await Event.create(
        title="Night market",
        latitude=30.2,
        longitude=-97.7,
        starts_at=datetime.now(UTC) + timedelta(days=1),
        ends_at=datetime.now(UTC) + timedelta(days=1, hours=3),
        image_url="https://cdn.example/old.jpg",
        created_by_id=ana.user.id,
    )
    logo_key = await upload(client, ana, "BUSINESS_LOGO", "image/png", PNG)
    image_key = await upload(client, ana, "EVENT_IMAGE", "image/png", PNG)
    event_id = global_id("Event", event.pk)

    wrong_kind = await post(
        client, ana, UPDATE_EVENT, {"id": event_id, "input": {"image": logo_key}}
    )
    body = await post(client, ana, UPDATE_EVENT, {"id": event_id, "input": {"image": image_key}})

    assert bad_input_field(wrong_kind) == "input.image"
    assert "errors" not in body, body
    url = body["data"]["updateEvent"]["event"]["imageUrl"]
    assert "/media/event-image/" in url
    assert (await client.get(url)).content == PNG
    assert (await Event.get(id=event.pk)).image_url == ""
    reused = await post(client, ana, UPDATE_EVENT, {"id": event_id, "input": {"image": image_key}})
    assert bad_input_field(reused) == "input.image"


async def test_an_empty_image_url_removes_an_uploaded_picture_as_for_a_logo(
    client: httpx.AsyncClient, ana: Person
) -> None:
    """`imageUrl: ""` clears the event's picture, uploaded or not, as `logoUrl: ""` clears
    a business's: the uploaded one used to stay."""
    assert ana.user is not None
    event = await Event.create(
        title="Night market",
        latitude=30.2,
        longitude=-97.7,
        starts_at=datetime.now(UTC) + timedelta(days=1),
        ends_at=datetime.now(UTC) + timedelta(days=1, hours=3),
        created_by_id=ana.user.id,
    )
    event_id = global_id("Event", event.pk)
    image_key = await upload(client, ana, "EVENT_IMAGE", "image/png", PNG)
    saved = await post(client, ana, UPDATE_EVENT, {"id": event_id, "input": {"image": image_key}})
    assert "errors" not in saved, saved
    business = await owned_business(ana)
    logo_key = await upload(client, ana, "BUSINESS_LOGO", "image/png", PNG)
    assert "errors" not in await save_logo(client, ana, business, logo_key)

    cleared = await post(client, ana, UPDATE_EVENT, {"id": event_id, "input": {"imageUrl": ""}})
    no_logo = await post(
        client,
        ana,
        UPDATE_BUSINESS,
        {"id": global_id("Business", business.pk), "input": {"logoUrl": ""}},
    )

    assert "errors" not in cleared, cleared
    assert no_logo["data"]["updateBusiness"]["business"]["logoUrl"] is None
    assert cleared["data"]["updateEvent"]["changed"] is True
    assert cleared["data"]["updateEvent"]["event"]["imageUrl"] is None
    assert (await Event.get(id=event.pk)).image_key == ""


async def test_a_logo_can_be_given_when_the_business_is_submitted(
    client: httpx.AsyncClient, ana: Person
) -> None:
    key = await upload(client, ana, "BUSINESS_LOGO", "image/png", PNG)
    body = await post(client, ana, SUBMIT_BUSINESS, {"input": {"name": "Crumbs", "logo": key}})
    assert "errors" not in body, body
    assert (await client.get(body["data"]["submitBusiness"]["business"]["logoUrl"])).content == PNG


async def test_an_https_logo_url_still_works_and_replaces_an_uploaded_logo(
    client: httpx.AsyncClient, ana: Person
) -> None:
    business = await owned_business(ana)
    assert "errors" not in await save_logo(
        client, ana, business, await upload(client, ana, "BUSINESS_LOGO", "image/png", PNG)
    )
    body = await post(
        client,
        ana,
        UPDATE_BUSINESS,
        {
            "id": global_id("Business", business.pk),
            "input": {"logoUrl": "https://cdn.example/l.png"},
        },
    )
    assert body["data"]["updateBusiness"]["business"]["logoUrl"] == "https://cdn.example/l.png"


async def test_logo_and_logo_url_together_are_refused(
    client: httpx.AsyncClient, ana: Person
) -> None:
    business = await owned_business(ana)
    key = await upload(client, ana, "BUSINESS_LOGO", "image/png", PNG)
    body = await post(
        client,
        ana,
        UPDATE_BUSINESS,
        {
            "id": global_id("Business", business.pk),
            "input": {"logo": key, "logoUrl": "https://cdn.example/l.png"},
        },
    )
    assert bad_input_field(body) == "input.logo"
    assert (await MediaUpload.get(key=key)).used_at is None  # the key can still be saved
    assert "errors" not in await save_logo(client, ana, business, key)


# --- createUpload ------------------------------------------------------------------------


async def test_anonymous_people_cannot_create_uploads(client: httpx.AsyncClient) -> None:
    body = await post(
        client,
        ANONYMOUS,
        CREATE_UPLOAD,
        {"kind": "BUSINESS_LOGO", "type": "image/png", "size": 10},
    )
    assert error_codes(body) == ["UNAUTHENTICATED"]
    assert await MediaUpload.all().count() == 0


@pytest.mark.parametrize(
    "content_type", ["image/gif", "text/html", "image/svg+xml", "IMAGE/PNG", ""]
)
async def test_create_upload_refuses_other_content_types(
    client: httpx.AsyncClient, ana: Person, content_type: str
) -> None:
    body = await post(
        client,
        ana,
        CREATE_UPLOAD,
        {"kind": "BUSINESS_LOGO", "type": content_type, "size": 10},
    )
    assert bad_input_field(body) == "contentType"
    assert await MediaUpload.all().count() == 0


@pytest.mark.parametrize("size", [0, -1, 5 * 1024 * 1024 + 1, 2**31 - 1])
async def test_create_upload_refuses_empty_and_oversize_files(
    client: httpx.AsyncClient, ana: Person, size: int
) -> None:
    body = await post(
        client,
        ana,
        CREATE_UPLOAD,
        {"kind": "EVENT_IMAGE", "type": "image/png", "size": size},
    )
    assert bad_input_field(body) == "byteSize"


async def test_one_person_cannot_hold_more_than_twenty_unsaved_uploads(
    client: httpx.AsyncClient, ana: Person, ben: Person
) -> None:
    for _ in range(20):
        await create_upload(client, ana, "BUSINESS_LOGO", "image/png", 10)
    body = await post(
        client,
        ana,
        CREATE_UPLOAD,
        {"kind": "BUSINESS_LOGO", "type": "image/png", "size": 10},
    )
    assert bad_input_field(body) == "kind"
    assert await MediaUpload.filter(user_id=ana.user.id if ana.user else 0).count() == 20
    await create_upload(client, ben, "BUSINESS_LOGO", "image/png", 10)  # others are unaffected


async def test_upload_keys_sit_under_the_viewers_own_prefix(
    client: httpx.AsyncClient, ana: Person
) -> None:
    signed = await create_upload(client, ana, "BUSINESS_LOGO", "image/webp", 10)
    assert ana.user is not None
    assert signed["key"].startswith(f"uploads/{ana.user.id}/")
    assert signed["key"].endswith(".webp")


# --- the upload endpoint -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "data"),
    [
        ("image/jpeg", PNG),  # a PNG named JPEG
        ("image/png", b"<html><script>alert(1)</script></html>".ljust(200, b" ")),
        ("image/png", PNG[: len(PNG) - 20]),  # truncated
        ("image/webp", JPEG),
        ("image/png", png_claiming(0, 48)),  # a header of no pixels
    ],
    ids=["png-as-jpeg", "html-as-png", "truncated-png", "jpeg-as-webp", "no-pixels"],
)
async def test_upload_endpoint_refuses_files_that_are_not_the_declared_image_type(
    client: httpx.AsyncClient, ana: Person, settings: Settings, declared: str, data: bytes
) -> None:
    signed = await create_upload(client, ana, "BUSINESS_LOGO", declared, len(data))
    response = await send_form(signed, data, part_type=declared)
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert signed["key"] not in stored_files(settings)


async def test_upload_endpoint_refuses_an_image_of_fifty_thousand_pixels_square(
    client: httpx.AsyncClient, ana: Person, settings: Settings
) -> None:
    bomb = png_claiming(50_000, 50_000)
    signed = await create_upload(client, ana, "BUSINESS_LOGO", "image/png", len(bomb))
    response = await send_form(signed, bomb)
    assert response.status_code == 400
    assert "pixels" in response.json()["errors"][0]["message"]
    assert signed["key"] not in stored_files(settings)


@pytest.mark.parametrize("size", [(8001, 1), (1, 8001)], ids=["too-wide", "too-tall"])
async def test_upload_endpoint_refuses_an_image_longer_than_the_limit_on_one_side(
    client: httpx.AsyncClient, ana: Person, settings: Settings, size: tuple[int, int]
) -> None:
    # few pixels in all (8,001), but more than 8,000 on one side
    narrow = png_claiming(*size)
    signed = await create_upload(client, ana, "BUSINESS_LOGO", "image/png", len(narrow))
    response = await send_form(signed, narrow)
    assert response.status_code == 400
    assert response.json()["errors"][0] == {
        "message": f"the image is {size[0]} x {size[1]} pixels; at most 8000 per side and"
        " 24000000 in all",
        "extensions": {"code": "BAD_REQUEST"},
    }
    assert stored_files(settings) == set()


@pytest.mark.parametrize(
    ("data", "has"),
    [
        (PNG + b"\x00", f"more than {len(PNG)}"),
        (PNG + b"\x00" * 1000, f"more than {len(PNG)}"),  # read only that far
        (PNG[:-1], str(len(PNG) - 1)),
        (b"", "0"),
    ],
    ids=["larger", "much-larger", "smaller", "empty"],
)
async def test_upload_endpoint_refuses_a_file_of_another_size_than_signed(
    client: httpx.AsyncClient, ana: Person, settings: Settings, data: bytes, has: str
) -> None:
    signed = await create_upload(client, ana, "BUSINESS_LOGO", "image/png", len(PNG))
    response = await send_form(signed, data)
    assert response.status_code == 400, response.text
    message = response.json()["errors"][0]["message"]
    assert message == f"the file must have {len(PNG)} bytes, it has {has}"
    assert signed["key"] not in stored_files(settings)


async def test_upload_endpoint_refuses_a_post_without_the_file(
    client: httpx.AsyncClient, ana: Person, settings: Settings
) -> None:
    signed = await create_upload(client, ana, "BUSINESS_LOGO", "image/png", len(PNG))
    response = await send_form(signed, None)
    assert response.status_code == 400
    assert "file" in response.json()["errors"][0]["message"]
    assert stored_files(settings) == set()


async def test_upload_endpoint_refuses_fields_after_the_file(
    client: httpx.AsyncClient, ana: Person, settings: Settings
) -> None:
    signed = await create_upload(client, ana, "BUSINESS_LOGO", "image/png", len(PNG))
    fields = form_fields(signed)
    parts: list[tuple[str, tuple[str | None, bytes | str, str | None]]] = [
        *[(name, (None, value, None)) for name, value in fields.items()],
        ("file", ("a.png", PNG, "image/png")),
        ("key", (None, "uploads/1/aaaaaaaaaaaaaaaaaaaaaa.png", None)),
    ]
    async with httpx.AsyncClient() as http:
        response = await http.post(signed["url"], files=parts)
    assert response.status_code == 400
    assert stored_files(settings) == set()


@pytest.mark.parametrize("shape", ["json", "urlencoded", "two-files", "repeated-field"])
async def test_upload_endpoint_refuses_forms_of_another_shape(
    client: httpx.AsyncClient, ana: Person, settings: Settings, shape: str
) -> None:
    signed = await create_upload(client, ana, "BUSINESS_LOGO", "image/png", len(PNG))
    fields = form_fields(signed)
    parts: list[tuple[str, tuple[str | None, bytes | str, str | None]]] = [
        (name, (None, value, None)) for name, value in fields.items()
    ]
    async with httpx.AsyncClient() as http:
        if shape == "json":
            response = await http.post(signed["url"], json=fields)
        elif shape == "urlencoded":
            response = await http.post(signed["url"], data=fields)
        elif shape == "two-files":
            files = [*parts, ("file", ("a.png", PNG, None)), ("file", ("b.png", PNG, None))]
            response = await http.post(signed["url"], files=files)
        else:
            files = [*parts, ("key", (None, signed["key"], None)), ("file", ("a.png", PNG, None))]
            response = await http.post(signed["url"], files=files)
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"
    assert stored_files(settings) == set()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"drop": "x-popmap-algorithm"}, "missing form fields: x-popmap-algorithm"),
        ({"drop": "policy", "add": ("acl", "public-read")}, "unexpected form field 'acl'"),
        ({"drop": "policy", "add": ("key", "x")}, "unexpected form field 'key'"),
    ],
    ids=["missing", "unknown", "repeated"],
)
async def test_upload_endpoint_names_a_missing_or_unexpected_field(
    client: httpx.AsyncClient,
    ana: Person,
    settings: Settings,
    change: dict[str, Any],
    message: str,
) -> None:
    signed = await create_upload(client, ana, "BUSINESS_LOGO", "image/png", len(PNG))
    parts = [(name, (None, value, None)) for name, value in form_fields(signed).items()]
    parts = [part for part in parts if part[0] != change["drop"]]
    if "add" in change:
        name, value = change["add"]
        parts.append((name, (None, value, None)))
    async with httpx.AsyncClient() as http:
        response = await http.post(signed["url"], files=[*parts, ("file", ("a.png", PNG, None))])
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0] == {
        "message": message,
        "extensions": {"code": "BAD_REQUEST"},
    }
    assert stored_files(settings) == set()


async def test_upload_endpoint_refuses_another_signing_algorithm(
    client: httpx.AsyncClient, ana: Person, settings: Settings
) -> None:
    signed = await create_upload(client, ana, "BUSINESS_LOGO", "image/png", len(PNG))
    fields = form_fields(signed)
    algorithm = fields["x-popmap-algorithm"]
    fields["x-popmap-algorithm"] = "HMAC-MD5"
    response = await send_form(signed, PNG, fields=fields)
    assert response.status_code == 403
    assert response.json()["errors"][0] == {
        "message": f"x-popmap-algorithm must be {algorithm}",
        "extensions": {"code": "FORBIDDEN"},
    }
    assert stored_files(settings) == set()


def _tampered_policy(encoded: str, **changes: Any) -> str:
    document = json.loads(base64.b64decode(encoded))
    for condition in document["conditions"]:
        if isinstance(condition, dict):
            for name in list(condition):
                condition[name] = changes.get(name, condition[name])
        elif "range" in changes:
            condition[1:] = changes["range"]
    return base64.b64encode(json.dumps(document).encode()).decode()


@pytest.mark.parametrize(
    "tamper",
    [
        {"range": [1, 10_000_000]},
        {"Content-Type": "text/html"},
        {"key": "media/business-logo/AAAAAAAAAAAAAAAAAAAAAA.png"},
    ],
    ids=["size-range", "content-type", "key"],
)
async def test_upload_endpoint_refuses_a_tampered_policy(
    client: httpx.AsyncClient, ana: Person, settings: Settings, tamper: dict[str, Any]
) -> None:
    signed = await create_upload(client, ana, "BUSINESS_LOGO", "image/png", len(PNG))
    fields = form_fields(signed)
    fields["policy"] = _tampered_policy(fields["policy"], **tamper)
    response = await send_form(signed, PNG, fields=fields)
    assert response.status_code == 403
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert stored_files(settings) == set()


async def test_upload_endpoint_refuses_a_forged_signature(
    client: httpx.AsyncClient, ana: Person, settings: Settings
) -> None:
    signed = await create_upload(client, ana, "BUSINESS_LOGO", "image/png", len(PNG))
    fields = form_fields(signed)
    fields["x-popmap-signature"] = "0" * 64
    assert (await send_form(signed, PNG, fields=fields)).status_code == 403
    assert stored_files(settings) == set()


@pytest.mark.parametrize(
    ("name", "value"),
    [("x-popmap-signature", "é" * 64), ("policy", "ü€" * 40), ("x-popmap-signature", "")],
    ids=["non-ascii-signature", "non-ascii-policy", "empty-signature"],
)
async def test_upload_endpoint_refuses_non_ascii_or_empty_signed_fields_with_403(
    client: httpx.AsyncClient, ana: Person, settings: Settings, name: str, value: str
) -> None:
    signed = await create_upload(client, ana, "BUSINESS_LOGO", "image/png", len(PNG))
    fields = form_fields(signed) | {name: value}
    response = await send_form(signed, PNG, fields=fields)
    assert response.status_code == 403, response.text
    assert stored_files(settings) == set()


@pytest.mark.parametrize(
    "key", ["../media.key", "/etc/passwd", "uploads/1/../../media.key", "media/business-logo/x.png"]
)
async def test_upload_endpoint_refuses_a_key_other_than_the_signed_one(
    client: httpx.AsyncClient, ana: Person, settings: Settings, key: str
) -> None:
    signed = await create_upload(client, ana, "BUSINESS_LOGO", "image/png", len(PNG))
    fields = form_fields(signed) | {"key": key}
    assert (await send_form(signed, PNG, fields=fields)).status_code == 403
    assert stored_files(settings) == set()


async def test_upload_endpoint_refuses_an_expired_policy(
    client: httpx.AsyncClient, ana: Person, settings: Settings
) -> None:
    signed = await create_upload(client, ana, "BUSINESS_LOGO", "image/png", len(PNG))
    # The same policy signed with the server's own key, but expired a second ago.
    secret = load_or_create_secret(settings.data_dir / "media.key")
    expired = Policy(
        key=signed["key"],
        content_type="image/png",
        min_bytes=len(PNG),
        max_bytes=len(PNG),
        expires_at=datetime.now(UTC) - timedelta(seconds=1),
    )
    encoded, signature = sign_policy(secret, expired)
    fields = form_fields(signed) | {"policy": encoded, "x-popmap-signature": signature}
    response = await send_form(signed, PNG, fields=fields)
    assert response.status_code == 403
    assert "expired" in response.json()["errors"][0]["message"]
    assert stored_files(settings) == set()


def _encoded(document: Any) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


@pytest.mark.parametrize(
    "encoded",
    [
        "not base64!",
        base64.b64encode(b"not json").decode(),
        _encoded({"expiration": "2099-01-01T00:00:00Z"}),
        _encoded(
            {
                "expiration": "2099-01-01T00:00:00Z",
                "conditions": [{"key": "k"}, {"Content-Type": "image/png"}, ["size", "1", "9"]],
            }
        ),
        _encoded(
            {
                "expiration": "tomorrow",
                "conditions": [
                    {"key": "k"},
                    {"Content-Type": "image/png"},
                    ["content-length-range", 1, 9],
                ],
            }
        ),
    ],
    ids=["not-base64", "not-json", "no-conditions", "bad-length-range", "bad-expiration"],
)
async def test_upload_endpoint_refuses_a_malformed_policy_even_with_a_valid_signature(
    client: httpx.AsyncClient, ana: Person, settings: Settings, encoded: str
) -> None:
    # Signed with the server's own key: only a policy of another release could be malformed.
    signed = await create_upload(client, ana, "BUSINESS_LOGO", "image/png", len(PNG))
    secret = load_or_create_secret(settings.data_dir / "media.key")
    signature = hmac.new(secret, encoded.encode(), hashlib.sha256).hexdigest()
    fields = form_fields(signed) | {"policy": encoded, "x-popmap-signature": signature}
    response = await send_form(signed, PNG, fields=fields)
    assert response.status_code == 403
    assert response.json()["errors"][0] == {
        "message": "the policy is malformed",
        "extensions": {"code": "FORBIDDEN"},
    }
    assert stored_files(settings) == set()


async def test_a_second_post_to_the_same_key_does_not_replace_the_first(
    client: httpx.AsyncClient, ana: Person, settings: Settings
) -> None:
    signed = await create_upload(client, ana, "BUSINESS_LOGO", "image/png", len(PNG))
    assert (await send_form(signed, PNG)).status_code == 204
    other = image_bytes("PNG", (64, 49))
    assert len(other) != len(PNG) or other != PNG
    same_size = PNG[:-12] + PNG[-12:]  # identical bytes, still refused: a key takes one upload
    response = await send_form(signed, same_size)
    assert response.status_code == 409
    assert (settings.media_dir / signed["key"]).read_bytes() == PNG


async def test_the_form_post_is_refused_once_the_key_was_saved(
    client: httpx.AsyncClient, ana: Person
) -> None:
    business = await owned_business(ana)
    signed = await create_upload(client, ana, "BUSINESS_LOGO", "image/png", len(PNG))
    assert (await send_form(signed, PNG)).status_code == 204
    assert "errors" not in await save_logo(client, ana, business, signed["key"])
    assert (await send_form(signed, PNG)).status_code == 409


async def test_the_upload_endpoint_takes_files_larger_than_the_graphql_body_limit(
    client: httpx.AsyncClient, ana: Person, settings: Settings
) -> None:
    noise = Image.frombytes("RGB", (300, 300), os.urandom(300 * 300 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, "PNG")
    data = buffer.getvalue()
    assert len(data) > settings.max_body_bytes

    key = await upload(client, ana, "BUSINESS_LOGO", "image/png", data)

    assert (settings.media_dir / key).read_bytes() == data


async def test_an_upload_body_over_the_media_limit_is_refused_with_413_before_it_is_read(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    declared = settings.media_max_bytes + 64 * 1024
    url = client.base_url
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(
        f"POST /media/uploads HTTP/1.1\r\nHost: {url.host}:{url.port}\r\n"
        "Content-Type: multipart/form-data; boundary=x\r\n"
        f"Content-Length: {declared}\r\n\r\n".encode()
    )
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    assert status_line.startswith(b"HTTP/1.1 413"), status_line
    assert stored_files(settings) == set()


@pytest.mark.parametrize(
    "path",
    [
        "/media/../media.key",
        "/media/%2e%2e/media.key",
        "/media/..%2fmedia.key",
        "/media/business-logo/..%2f..%2fmedia.key",
        "/media//etc/passwd",
        "/media/uploads/1/AAAAAAAAAAAAAAAAAAAAAA.png",
    ],
)
async def test_media_route_serves_published_keys_only(
    client: httpx.AsyncClient, ana: Person, settings: Settings, path: str
) -> None:
    await upload(client, ana, "BUSINESS_LOGO", "image/png", PNG)  # the key file now exists
    assert (settings.data_dir / "media.key").exists()
    response = await client.get(path)
    assert response.status_code == 404
    assert response.content != (settings.data_dir / "media.key").read_bytes()


async def test_a_pending_upload_is_not_served(client: httpx.AsyncClient, ana: Person) -> None:
    key = await upload(client, ana, "BUSINESS_LOGO", "image/png", PNG)
    assert (await client.get(f"/{key}")).status_code == 404


# --- saving a key --------------------------------------------------------------------------


async def test_a_key_issued_to_another_person_is_refused(
    client: httpx.AsyncClient, ana: Person, ben: Person
) -> None:
    business = await owned_business(ben)
    key = await upload(client, ana, "BUSINESS_LOGO", "image/png", PNG)
    body = await save_logo(client, ben, business, key)
    assert bad_input_field(body) == "input.logo"
    assert (await Business.get(id=business.pk)).logo_key == ""
    assert (await MediaUpload.get(key=key)).used_at is None


async def test_a_key_issued_for_an_event_image_is_refused_as_a_logo(
    client: httpx.AsyncClient, ana: Person
) -> None:
    business = await owned_business(ana)
    key = await upload(client, ana, "EVENT_IMAGE", "image/png", PNG)
    body = await save_logo(client, ana, business, key)
    assert bad_input_field(body) == "input.logo"
    assert "EVENT_IMAGE" in body["errors"][0]["message"]
    assert (await Business.get(id=business.pk)).logo_key == ""


async def test_a_key_cannot_be_saved_twice(client: httpx.AsyncClient, ana: Person) -> None:
    first, second = await owned_business(ana), await owned_business(ana)
    key = await upload(client, ana, "BUSINESS_LOGO", "image/png", PNG)
    assert "errors" not in await save_logo(client, ana, first, key)
    body = await save_logo(client, ana, second, key)
    assert bad_input_field(body) == "input.logo"
    assert (await Business.get(id=second.pk)).logo_key == ""


async def test_two_saves_of_one_key_at_once_let_exactly_one_win(
    client: httpx.AsyncClient, ana: Person
) -> None:
    first, second = await owned_business(ana), await owned_business(ana)
    key = await upload(client, ana, "BUSINESS_LOGO", "image/png", PNG)

    bodies = await asyncio.gather(
        save_logo(client, ana, first, key), save_logo(client, ana, second, key)
    )

    assert sorted(error_codes(body) for body in bodies) == [[], ["BAD_USER_INPUT"]]
    keys = [(await Business.get(id=b.pk)).logo_key for b in (first, second)]
    assert sorted(bool(k) for k in keys) == [False, True]


async def test_an_expired_key_is_refused(client: httpx.AsyncClient, ana: Person) -> None:
    business = await owned_business(ana)
    key = await upload(client, ana, "BUSINESS_LOGO", "image/png", PNG)
    await MediaUpload.filter(key=key).update(expires_at=datetime.now(UTC) - timedelta(seconds=1))
    body = await save_logo(client, ana, business, key)
    assert bad_input_field(body) == "input.logo"
    assert "expired" in body["errors"][0]["message"]


async def test_a_key_whose_file_was_never_sent_is_refused(
    client: httpx.AsyncClient, ana: Person
) -> None:
    business = await owned_business(ana)
    signed = await create_upload(client, ana, "BUSINESS_LOGO", "image/png", len(PNG))
    body = await save_logo(client, ana, business, signed["key"])
    assert bad_input_field(body) == "input.logo"
    assert (await MediaUpload.get(key=signed["key"])).used_at is None


@pytest.mark.parametrize(
    "key",
    [
        "../media.key",
        "/etc/passwd",
        "uploads/1/../../media.key",
        "uploads/1/AAAAAAAAAAAAAAAAAAAAAA.png/../../../media.key",
        "media/business-logo/AAAAAAAAAAAAAAAAAAAAAA.png",
        "x" * 10_000,
    ],
)
async def test_keys_that_are_paths_are_refused(
    client: httpx.AsyncClient, ana: Person, key: str
) -> None:
    business = await owned_business(ana)
    body = await save_logo(client, ana, business, key)
    assert bad_input_field(body) == "input.logo"
    assert (await Business.get(id=business.pk)).logo_key == ""


# --- URLs and the response cache -----------------------------------------------------------


async def test_cached_answers_keep_the_host_each_request_came_through(
    client: httpx.AsyncClient, ana: Person
) -> None:
    business = await owned_business(ana)
    await Business.filter(id=business.pk).update(is_verified=True)
    assert "errors" not in await save_logo(
        client, ana, business, await upload(client, ana, "BUSINESS_LOGO", "image/png", PNG)
    )
    query = {"query": "{ businesses { edges { node { logoUrl } } } }"}
    port = client.base_url.port
    urls = {}
    for host in ("127.0.0.1", "localhost", "127.0.0.1"):
        response = await client.post("/graphql", json=query, headers={"host": f"{host}:{port}"})
        urls[host] = response.json()["data"]["businesses"]["edges"][0]["node"]["logoUrl"]
    assert urls["127.0.0.1"].startswith(f"http://127.0.0.1:{port}/media/")
    assert urls["localhost"].startswith(f"http://localhost:{port}/media/")


async def test_with_a_media_base_url_and_a_user_pool_one_cached_answer_serves_every_host(
    client: httpx.AsyncClient, settings: Settings, cognito: FakeCognito, tmp_path: Path
) -> None:
    # Neither media URLs nor authConfig then name the origin a request came through.
    key = "media/business-logo/AAAAAAAAAAAAAAAAAAAAAA.png"
    await Business.create(name="Crumbs", is_verified=True, logo_key=key)
    assert settings.database_url is not None
    env = cognito.server_env(
        settings.database_url, tmp_path, POPMAP_MEDIA_BASE_URL="https://cdn.popmap.test"
    )
    query = {"query": "{ businesses { edges { node { logoUrl } } } }"}
    with running_server(env) as base:
        port = httpx.URL(base).port
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            answers = [
                await http.post("/graphql", json=query, headers={"host": f"{host}:{port}"})
                for host in ("127.0.0.1", "localhost")
            ]

    assert [a.headers.get("x-popmap-cache") for a in answers] == ["miss", "hit"]
    for answer in answers:
        [edge] = answer.json()["data"]["businesses"]["edges"]
        assert edge["node"]["logoUrl"] == f"https://cdn.popmap.test/{key}"


# --- housekeeping ----------------------------------------------------------------------------


def _age(path: Path, days: float) -> None:
    then = (datetime.now(UTC) - timedelta(days=days)).timestamp()
    os.utime(path, (then, then))


async def test_gc_removes_a_replaced_logo_and_unsaved_uploads_but_keeps_the_logo_shown(
    client: httpx.AsyncClient, ana: Person, settings: Settings
) -> None:
    from tests.conftest import run_cli

    business = await owned_business(ana)
    first = await upload(client, ana, "BUSINESS_LOGO", "image/png", PNG)
    assert "errors" not in await save_logo(client, ana, business, first)
    old_logo = (await Business.get(id=business.pk)).logo_key
    second = await upload(client, ana, "BUSINESS_LOGO", "image/jpeg", JPEG)
    assert "errors" not in await save_logo(client, ana, business, second)
    current = (await Business.get(id=business.pk)).logo_key
    never_saved = await upload(client, ana, "BUSINESS_LOGO", "image/webp", WEBP)
    recent = await upload(client, ana, "BUSINESS_LOGO", "image/png", PNG)
    assert (settings.media_dir / old_logo).exists()  # replacing leaves it, for gc

    for key in (first, second, old_logo, current, never_saved):
        _age(settings.media_dir / key, days=2)
    await MediaUpload.exclude(key=recent).update(created_at=datetime.now(UTC) - timedelta(days=2))

    output = run_cli(
        "media",
        "gc",
        env={
            "DATABASE_URL": settings.database_url or "",
            "POPMAP_DATA_DIR": str(settings.data_dir),
        },
    )

    assert "4 objects deleted, 3 uploads forgotten" in output
    assert stored_files(settings) == {current, recent}
    assert [upload.key for upload in await MediaUpload.all()] == [recent]
    response = await client.get(f"/{current}")
    assert response.status_code == 200


# --- docs/media.md's flow, through the real program with no media setting ----------------


def test_the_real_program_with_no_media_setting_takes_an_upload_and_serves_it(
    settings: Settings, tmp_path: Path
) -> None:
    from popmap_gql.auth.local_idp import LocalIdentityProvider
    from tests.processes import clean_env, running_server

    assert settings.database_url is not None
    env = clean_env(DATABASE_URL=settings.database_url, POPMAP_DATA_DIR=str(tmp_path))
    token = LocalIdentityProvider(tmp_path).mint(f"readme-{os.getpid()}@example.com", [])
    headers = {"Authorization": f"Bearer {token['id_token']}"}

    with running_server(env) as base, httpx.Client(base_url=base, headers=headers) as api:
        signed = api.post(
            "/graphql",
            json={
                "query": CREATE_UPLOAD,
                "variables": {"kind": "BUSINESS_LOGO", "type": "image/png", "size": len(PNG)},
            },
        ).json()["data"]["createUpload"]
        parts = [(f["name"], (None, f["value"], None)) for f in signed["fields"]]
        sent = httpx.post(signed["url"], files=[*parts, ("file", ("logo.png", PNG, "image/png"))])
        saved = api.post(
            "/graphql",
            json={
                "query": SUBMIT_BUSINESS,
                "variables": {"input": {"name": "Readme Rolls", "logo": signed["key"]}},
            },
        ).json()
        url = saved["data"]["submitBusiness"]["business"]["logoUrl"]
        picture = httpx.get(url)

    assert signed["url"] == f"{base}/media/uploads"
    assert sent.status_code == 204, sent.text
    assert url.startswith(f"{base}/media/business-logo/")
    assert picture.content == PNG
    assert (tmp_path / "media" / url.removeprefix(f"{base}/")).is_file()
