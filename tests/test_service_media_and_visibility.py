"""Services meet what main added beside them: uploads (owned by people, so never a service's)
and the one visibility declaration (a service also sees the events it submitted, through
filters and relation lists as well as lookups; read.all sees everything)."""

from __future__ import annotations

import shutil
from datetime import timedelta
from typing import Any

import httpx
import pytest

from popmap_gql.config import Settings
from popmap_gql.db.models import Event, EventStatus, MediaUpload
from tests.fake_cognito import OTHER_SERVICE_CLIENT, SERVICE_CLIENT, FakeCognito
from tests.helpers import NOW, error_codes, global_id, make_business, make_event
from tests.media_kit import CREATE_UPLOAD, SUBMIT_EVENT, image_bytes, upload
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


@pytest.mark.parametrize("kind", ["EVENT_IMAGE", "BUSINESS_LOGO"])
async def test_service_cannot_create_an_upload_whatever_its_scopes(
    client: httpx.AsyncClient, cognito: FakeCognito, kind: str
) -> None:
    caller = service(cognito, "importer", EVERY_SCOPE)

    body = await post(
        client, caller, CREATE_UPLOAD, {"kind": kind, "type": "image/png", "size": 100}
    )

    assert error_codes(body) == ["FORBIDDEN"], body
    assert "requiredScope" not in body["errors"][0]["extensions"]  # no scope would allow it
    assert await MediaUpload.all().count() == 0


async def test_service_submitting_an_event_with_a_persons_upload_key_is_refused_and_saves_nothing(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    ana = await person(cognito, "ana")
    key = await upload(client, ana, "EVENT_IMAGE", "image/png", image_bytes("PNG"))
    caller = service(cognito, "importer", ("events.write",))

    body = await post(client, caller, SUBMIT_EVENT, {"input": {**EVENT_INPUT, "image": key}})

    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == "input.image"
    assert await Event.filter(title="Imported market").count() == 0
    assert (await MediaUpload.get(key=key)).used_at is None  # still Ana's to save


async def test_service_updating_its_event_with_an_upload_key_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    event = await make_event(
        "Ours", image_url="https://cdn.example/ours.png", created_by_client=SERVICE_CLIENT
    )
    caller = service(cognito, "importer", ("events.write",))

    body = await post(
        client, caller, UPDATE_IMAGE, {"id": global_id("Event", event.id), "key": "uploads/1/x.png"}
    )

    assert error_codes(body) == ["BAD_USER_INPUT"], body
    assert body["errors"][0]["extensions"]["field"] == "input.image"
    assert (await Event.get(id=event.id)).image_url == "https://cdn.example/ours.png"


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
