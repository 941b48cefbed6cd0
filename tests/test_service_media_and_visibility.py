"""Services meet what main added beside them: uploads (a service with events.write uploads
event images for its own events; an upload is saved only by whoever created it) and the
one visibility declaration (a service also sees the events it submitted, through filters
and relation lists as well as lookups; read.all sees everything)."""

from __future__ import annotations

import hashlib
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from popmap_gql.config import Settings
from popmap_gql.db.models import Event, EventStatus, MediaUpload
from popmap_gql.db.uploads import UploadOwner
from popmap_gql.media.rules import UPLOAD_KEY, new_upload_key
from tests.fake_cognito import OTHER_SERVICE_CLIENT, SERVICE_CLIENT, FakeCognito
from tests.helpers import NOW, error_codes, global_id, make_business, make_event
from tests.media_kit import CREATE_UPLOAD, SUBMIT_EVENT, create_upload, image_bytes, upload
from tests.people import ANONYMOUS, Person, person, post, service

EVERY_SCOPE = ("events.write", "moderate", "read.all")
EVENT_INPUT = {
    "title": "Imported market",
    "latitude": 30.27,
    "longitude": -97.74,
    "startsAt": (NOW + timedelta(days=5)).isoformat(),
    "endsAt": (NOW + timedelta(days=5, hours=3)).isoformat(),
}
UPDATE_IMAGE = (
    "mutation ($id: ID!, $key: String!) { updateEvent(id: $id, input: {image: $key})"
    " { event { imageUrl } } }"
)


@pytest.fixture(autouse=True)
def empty_media_folder(settings: Settings) -> None:
    """The app's media folder lives for the session; each test starts with it empty."""
    shutil.rmtree(settings.media_dir, ignore_errors=True)


# --- uploads ------------------------------------------------------------------------------

WRITER_SCOPES = ("events.write",)
PNG = image_bytes("PNG")


def _bad_image_input(body: dict[str, Any]) -> None:
    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == "input.image"


async def test_service_with_events_write_uploads_an_event_image_and_saves_it_on_its_event(
    client: httpx.AsyncClient, cognito: FakeCognito, settings: Settings
) -> None:
    caller = service(cognito, "importer", WRITER_SCOPES)
    key = await upload(client, caller, "EVENT_IMAGE", "image/png", PNG)

    body = await post(client, caller, SUBMIT_EVENT, {"input": {**EVENT_INPUT, "image": key}})

    assert "errors" not in body, body
    url = body["data"]["submitEvent"]["event"]["imageUrl"]
    api = str(client.base_url).rstrip("/")
    assert url.startswith(f"{api}/media/event-image/")
    picture = await client.get(url.removeprefix(api))
    assert picture.status_code == 200
    assert picture.content == PNG
    row = await MediaUpload.get(key=key)
    assert (row.user_id, row.client_id) == (None, SERVICE_CLIENT)
    assert row.used_at is not None
    event = await Event.get(title="Imported market")
    assert event.created_by_client == SERVICE_CLIENT
    assert url.endswith(event.image_key)


async def test_service_saves_its_upload_on_the_event_it_submitted_with_update_event(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    event = await make_event("Ours", created_by_client=SERVICE_CLIENT)
    caller = service(cognito, "importer", WRITER_SCOPES)
    key = await upload(client, caller, "EVENT_IMAGE", "image/png", PNG)

    body = await post(
        client, caller, UPDATE_IMAGE, {"id": global_id("Event", event.id), "key": key}
    )

    assert "errors" not in body, body
    assert "/media/event-image/" in body["data"]["updateEvent"]["event"]["imageUrl"]
    assert (await Event.get(id=event.id)).image_key.startswith("media/event-image/")


async def test_service_upload_keys_sit_under_a_digest_of_its_client_id_not_its_text(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    signed = await create_upload(
        client, service(cognito, "importer", WRITER_SCOPES), "EVENT_IMAGE", "image/png", 10
    )
    other = await create_upload(
        client,
        service(cognito, "other", WRITER_SCOPES, client=OTHER_SERVICE_CLIENT),
        "EVENT_IMAGE",
        "image/png",
        10,
    )

    digest = hashlib.sha256(SERVICE_CLIENT.encode()).hexdigest()[:32]
    assert signed["key"].startswith(f"uploads/c{digest}/")
    assert SERVICE_CLIENT not in signed["key"]
    assert other["key"].split("/")[1] != signed["key"].split("/")[1]


@pytest.mark.parametrize("client_id", ["../../etc/passwd", "a/b", "\u00e9\x00 ", "1", ""])
def test_any_client_id_text_gives_an_upload_key_of_the_one_safe_pattern(client_id: str) -> None:
    key = new_upload_key(UploadOwner(client_id=client_id), "image/png")

    match = UPLOAD_KEY.fullmatch(key)
    assert match is not None, key
    assert match["owner"].startswith("c")  # never a person's prefix, which is all digits
    assert ".." not in key
    assert key.count("/") == 2


@pytest.mark.parametrize("scopes", [EVERY_SCOPE, ()], ids=["every scope", "no scope"])
async def test_service_cannot_create_a_business_logo_upload_whatever_its_scopes(
    client: httpx.AsyncClient, cognito: FakeCognito, scopes: tuple[str, ...]
) -> None:
    caller = service(cognito, "importer", scopes)

    body = await post(
        client, caller, CREATE_UPLOAD, {"kind": "BUSINESS_LOGO", "type": "image/png", "size": 100}
    )

    assert error_codes(body) == ["FORBIDDEN"], body
    assert "requiredScope" not in body["errors"][0]["extensions"]  # no scope would allow it
    assert await MediaUpload.all().count() == 0


@pytest.mark.parametrize("scopes", [("moderate", "read.all"), ()], ids=["other scopes", "none"])
async def test_service_without_events_write_cannot_create_an_event_image_upload(
    client: httpx.AsyncClient, cognito: FakeCognito, scopes: tuple[str, ...]
) -> None:
    caller = service(cognito, "importer", scopes)

    body = await post(
        client, caller, CREATE_UPLOAD, {"kind": "EVENT_IMAGE", "type": "image/png", "size": 100}
    )

    assert error_codes(body) == ["FORBIDDEN"], body
    assert body["errors"][0]["extensions"]["requiredScope"] == "popmap/events.write"
    assert await MediaUpload.all().count() == 0


async def test_service_submitting_an_event_with_a_persons_upload_key_is_refused_and_saves_nothing(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    ana = await person(cognito, "ana")
    key = await upload(client, ana, "EVENT_IMAGE", "image/png", PNG)
    caller = service(cognito, "importer", WRITER_SCOPES)

    body = await post(client, caller, SUBMIT_EVENT, {"input": {**EVENT_INPUT, "image": key}})

    _bad_image_input(body)
    assert await Event.filter(title="Imported market").count() == 0
    assert (await MediaUpload.get(key=key)).used_at is None  # still Ana's to save


async def test_service_updating_its_event_with_a_persons_upload_key_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    ana = await person(cognito, "ana")
    key = await upload(client, ana, "EVENT_IMAGE", "image/png", PNG)
    event = await make_event(
        "Ours", image_url="https://cdn.example/ours.png", created_by_client=SERVICE_CLIENT
    )
    caller = service(cognito, "importer", WRITER_SCOPES)

    body = await post(
        client, caller, UPDATE_IMAGE, {"id": global_id("Event", event.id), "key": key}
    )

    _bad_image_input(body)
    saved = await Event.get(id=event.id)
    assert (saved.image_url, saved.image_key) == ("https://cdn.example/ours.png", "")
    assert (await MediaUpload.get(key=key)).used_at is None


async def test_person_submitting_an_event_with_a_services_upload_key_is_refused_and_saves_nothing(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    key = await upload(
        client, service(cognito, "importer", WRITER_SCOPES), "EVENT_IMAGE", "image/png", PNG
    )
    ana = await person(cognito, "ana")

    body = await post(client, ana, SUBMIT_EVENT, {"input": {**EVENT_INPUT, "image": key}})

    _bad_image_input(body)
    assert await Event.filter(title="Imported market").count() == 0
    assert (await MediaUpload.get(key=key)).used_at is None  # still the service's to save


async def test_another_service_cannot_save_a_services_upload_key(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    key = await upload(
        client, service(cognito, "importer", WRITER_SCOPES), "EVENT_IMAGE", "image/png", PNG
    )
    other = service(cognito, "other", WRITER_SCOPES, client=OTHER_SERVICE_CLIENT)

    body = await post(client, other, SUBMIT_EVENT, {"input": {**EVENT_INPUT, "image": key}})

    _bad_image_input(body)
    assert await Event.filter(title="Imported market").count() == 0
    assert (await MediaUpload.get(key=key)).used_at is None


async def test_a_service_cannot_hold_more_than_twenty_unsaved_uploads_and_others_are_unaffected(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    caller = service(cognito, "importer", WRITER_SCOPES)
    variables = {"kind": "EVENT_IMAGE", "type": "image/png", "size": 10}
    for _ in range(20):
        await create_upload(client, caller, "EVENT_IMAGE", "image/png", 10)

    body = await post(client, caller, CREATE_UPLOAD, variables)

    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == "kind"
    assert await MediaUpload.filter(client_id=SERVICE_CLIENT).count() == 20
    other = service(cognito, "other", WRITER_SCOPES, client=OTHER_SERVICE_CLIENT)
    await create_upload(client, other, "EVENT_IMAGE", "image/png", 10)
    await create_upload(client, await person(cognito, "ana"), "EVENT_IMAGE", "image/png", 10)


def _age(path: Path, days: float) -> None:
    then = (datetime.now(UTC) - timedelta(days=days)).timestamp()
    os.utime(path, (then, then))


async def test_gc_removes_a_services_unsaved_upload_and_keeps_the_image_its_event_shows(
    client: httpx.AsyncClient, cognito: FakeCognito, settings: Settings
) -> None:
    from tests.conftest import run_cli

    caller = service(cognito, "importer", WRITER_SCOPES)
    saved = await upload(client, caller, "EVENT_IMAGE", "image/png", PNG)
    body = await post(client, caller, SUBMIT_EVENT, {"input": {**EVENT_INPUT, "image": saved}})
    assert "errors" not in body, body
    shown = (await Event.get(title="Imported market")).image_key
    never_saved = await upload(client, caller, "EVENT_IMAGE", "image/png", PNG)
    for key in (saved, shown, never_saved):
        _age(settings.media_dir / key, days=2)
    await MediaUpload.all().update(created_at=datetime.now(UTC) - timedelta(days=2))

    output = run_cli(
        "media",
        "gc",
        env={
            "DATABASE_URL": settings.database_url or "",
            "POPMAP_DATA_DIR": str(settings.data_dir),
        },
    )

    assert "2 objects deleted, 2 uploads forgotten" in output
    files = {p.relative_to(settings.media_dir).as_posix() for p in settings.media_dir.rglob("*")}
    assert {f for f in files if (settings.media_dir / f).is_file()} == {shown}
    assert await MediaUpload.all().count() == 0


# --- visibility: one declaration, every path ---------------------------------------------------

BUSINESS_EVENTS = (
    "query ($id: ID!) { business(id: $id) { events { title } } }"  # the loaders' SQL fragment
)
FILTERED_EVENTS = (
    "query ($id: ID!) { events(filter: {businessId: $id}) { totalCount edges { node { title } } } }"
)
DRAFTS = '{ businesses(filter: {search: "Draft"}) { edges { node { name } } } }'


def _business_events(data: dict[str, Any]) -> list[str]:
    return sorted(event["title"] for event in data["business"]["events"])


def _filtered_events(data: dict[str, Any]) -> list[str]:
    titles = sorted(edge["node"]["title"] for edge in data["events"]["edges"])
    assert data["events"]["totalCount"] == len(titles)
    return titles


def _viewers(cognito: FakeCognito) -> dict[str, Person]:
    return {
        "anonymous": ANONYMOUS,
        "writer": service(cognito, "writer", ("events.write",)),
        "other service": service(cognito, "other", ("events.write",), client=OTHER_SERVICE_CLIENT),
        "reader": service(cognito, "reader", ("read.all",), client=OTHER_SERVICE_CLIENT),
    }


OWN = ["Fair", "Imported"]
SEEN_THROUGH_A_BUSINESS = {"anonymous": ["Fair"], "writer": OWN, "other service": ["Fair"]}


@pytest.mark.parametrize(
    ("viewer", "expected"), [*SEEN_THROUGH_A_BUSINESS.items(), ("reader", OWN)]
)
@pytest.mark.parametrize(
    ("query", "read"),
    [(BUSINESS_EVENTS, _business_events), (FILTERED_EVENTS, _filtered_events)],
    ids=["Business.events", "events(businessId)"],
)
async def test_services_pending_event_is_seen_by_it_and_read_all_only_on_every_path(
    client: httpx.AsyncClient,
    cognito: FakeCognito,
    viewer: str,
    expected: list[str],
    query: str,
    read: Any,
) -> None:
    market = await make_business("Market")
    await make_event("Fair", businesses=[market])
    await make_event(
        "Imported",
        status=EventStatus.PENDING,
        created_by_client=SERVICE_CLIENT,
        businesses=[market],
    )

    body = await post(
        client, _viewers(cognito)[viewer], query, {"id": global_id("Business", market.id)}
    )

    assert "errors" not in body, body
    assert read(body["data"]) == expected


@pytest.mark.parametrize(("viewer", "expected"), [("writer", []), ("reader", ["Draft"])])
async def test_a_service_owns_no_business_so_only_read_all_sees_unverified_ones(
    client: httpx.AsyncClient, cognito: FakeCognito, viewer: str, expected: list[str]
) -> None:
    await make_business("Draft", verified=False)

    body = await post(client, _viewers(cognito)[viewer], DRAFTS)

    assert "errors" not in body, body
    assert [edge["node"]["name"] for edge in body["data"]["businesses"]["edges"]] == expected
