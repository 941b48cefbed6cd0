"""Uploads through S3: moto's S3 in server mode on loopback plays the bucket, the browser's
form goes to it with httpx, and the API checks, publishes and serves the picture's URL.

moto accepts any form POST (it checks neither the policy's signature nor its conditions),
so here the refusals come from the API when the key is saved, as they must for anything a
real bucket let through: the API trusts only what it reads back."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from popmap_gql.auth.local_idp import LOCAL_SERVICE_CLIENT_ID, LocalIdentityProvider
from popmap_gql.config import Settings
from popmap_gql.db.models import Business, Event, MediaUpload
from tests.helpers import error_codes, global_id
from tests.media_kit import (
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
from tests.people import Person, post
from tests.processes import clean_env, free_port, popmap_gql, running_server

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

BUCKET = "popmap-media-test"
PNG = image_bytes("PNG")
JPEG = image_bytes("JPEG")
# moto's test credentials, given to the server's environment and to our own client only
FAKE_AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture(scope="module")
def moto_s3() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def s3(moto_s3: str) -> S3Client:
    """The bucket as docs/media.md sets it up: CORS for the browser's POST, public reads of
    published pictures only."""
    import boto3

    client: S3Client = boto3.client(
        "s3",
        region_name="us-east-1",
        endpoint_url=moto_s3,
        aws_access_key_id=FAKE_AWS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=FAKE_AWS["AWS_SECRET_ACCESS_KEY"],
    )
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_cors(
        Bucket=BUCKET,
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedOrigins": ["http://localhost:5173"],
                    "AllowedMethods": ["POST"],
                    "AllowedHeaders": ["*"],
                }
            ]
        },
    )
    public_read = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{BUCKET}/media/*",
            }
        ],
    }
    client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(public_read))
    return client


@pytest.fixture(autouse=True)
def empty_bucket(s3: S3Client) -> None:
    """The bucket lives for the module; each test starts with it empty."""
    listed = s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    if listed:
        s3.delete_objects(
            Bucket=BUCKET, Delete={"Objects": [{"Key": item["Key"]} for item in listed]}
        )


@pytest.fixture(scope="module")
def s3_env(
    settings: Settings, moto_s3: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """The real program's environment: our database, no user pool (the local identity
    provider signs the tokens), and the bucket."""
    assert settings.database_url is not None
    return clean_env(
        DATABASE_URL=settings.database_url,
        POPMAP_DATA_DIR=str(tmp_path_factory.mktemp("s3-server")),
        POPMAP_MEDIA_BUCKET=BUCKET,
        AWS_S3_ENDPOINT_URL=moto_s3,
        **FAKE_AWS,
    )


@pytest.fixture(scope="module")
def s3_api_url(s3_env: dict[str, str], s3: S3Client) -> Iterator[str]:
    with running_server(s3_env) as base:
        yield base


@pytest.fixture
async def s3_client(s3_api_url: str, clean_db: None) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=s3_api_url, timeout=30) as http:
        yield http


@pytest.fixture
def ana(s3_env: dict[str, str]) -> Person:
    """A new person in each test: the server remembers the people it has seen, and each
    test starts with an empty database."""
    email = f"ana-{uuid.uuid4().hex[:8]}@example.com"
    tokens = LocalIdentityProvider(Path(s3_env["POPMAP_DATA_DIR"])).mint(email, [])
    return Person("ana", None, tokens["id_token"])


async def owned_business(client: httpx.AsyncClient, who: Person) -> str:
    body = await post(client, who, SUBMIT_BUSINESS, {"input": {"name": "Crumbs"}})
    business_id: str = body["data"]["submitBusiness"]["business"]["id"]
    return business_id


async def save_logo(
    client: httpx.AsyncClient, who: Person, business_id: str, key: str
) -> dict[str, Any]:
    variables = {"id": business_id, "input": {"logo": key}}
    return await post(client, who, UPDATE_BUSINESS, variables)


async def logo_key(business_id: str) -> str:
    business = await Business.get(name="Crumbs")
    assert global_id("Business", business.pk) == business_id
    return business.logo_key


def object_exists(s3: S3Client, key: str) -> bool:
    return s3.list_objects_v2(Bucket=BUCKET, Prefix=key).get("KeyCount", 0) > 0


def run_gc(env: dict[str, str]) -> str:
    result = popmap_gql(env, "media", "gc", "--min-age-hours", "0", timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_a_logo_goes_from_the_browser_to_the_bucket_and_is_served_from_there(
    s3_client: httpx.AsyncClient, ana: Person, moto_s3: str, s3: S3Client
) -> None:
    business = await owned_business(s3_client, ana)
    signed = await create_upload(s3_client, ana, "BUSINESS_LOGO", "image/png", len(PNG))
    assert signed["url"] == f"{moto_s3}/{BUCKET}"
    assert {"key", "Content-Type", "policy", "x-amz-signature"} <= form_fields(signed).keys()

    response = await send_form(signed, PNG)
    assert response.status_code == 204, response.text
    saved = await save_logo(s3_client, ana, business, signed["key"])

    assert "errors" not in saved, saved
    url = saved["data"]["updateBusiness"]["business"]["logoUrl"]
    assert url.startswith(f"{moto_s3}/{BUCKET}/media/business-logo/")
    async with httpx.AsyncClient() as browser:  # anonymous, as a page's <img> would be
        picture = await browser.get(url)
    assert picture.status_code == 200
    assert picture.content == PNG
    assert picture.headers["content-type"] == "image/png"
    head = s3.head_object(Bucket=BUCKET, Key=url.removeprefix(f"{moto_s3}/{BUCKET}/"))
    assert "immutable" in head["CacheControl"]


async def test_the_presigned_policy_binds_the_key_the_type_and_the_exact_size(
    s3_client: httpx.AsyncClient, ana: Person
) -> None:
    signed = await create_upload(s3_client, ana, "EVENT_IMAGE", "image/jpeg", 1234)
    fields = form_fields(signed)
    policy = json.loads(base64.b64decode(fields["policy"]))
    assert {"key": signed["key"]} in policy["conditions"]
    assert {"Content-Type": "image/jpeg"} in policy["conditions"]
    assert {"bucket": BUCKET} in policy["conditions"]
    assert ["content-length-range", 1234, 1234] in policy["conditions"]
    expires = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    assert timedelta(0) < expires - datetime.now(UTC) <= timedelta(minutes=5, seconds=5)
    assert fields["x-amz-algorithm"] == "AWS4-HMAC-SHA256"


@pytest.mark.parametrize(
    ("declared", "data"),
    [
        ("image/jpeg", PNG),
        ("image/png", b"<html><script>alert(1)</script></html>"),
        ("image/png", png_claiming(50_000, 50_000)),
    ],
    ids=["png-as-jpeg", "html-as-png", "fifty-thousand-pixels-square"],
)
async def test_an_upload_that_is_not_a_real_image_of_its_type_is_refused_and_deleted(
    s3_client: httpx.AsyncClient, ana: Person, s3: S3Client, declared: str, data: bytes
) -> None:
    business = await owned_business(s3_client, ana)
    signed = await create_upload(s3_client, ana, "BUSINESS_LOGO", declared, len(data))
    assert (await send_form(signed, data, part_type=declared)).status_code == 204  # moto

    body = await save_logo(s3_client, ana, business, signed["key"])

    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == "input.logo"
    assert not object_exists(s3, signed["key"])
    assert not object_exists(s3, "media/")
    assert await logo_key(business) == ""


@pytest.mark.parametrize("data", [PNG + b"\x00" * 100, None], ids=["larger", "no-file"])
async def test_an_upload_of_another_size_or_without_the_file_is_refused_when_saved(
    s3_client: httpx.AsyncClient, ana: Person, s3: S3Client, data: bytes | None
) -> None:
    business = await owned_business(s3_client, ana)
    signed = await create_upload(s3_client, ana, "BUSINESS_LOGO", "image/png", len(PNG))
    await send_form(signed, data)

    body = await save_logo(s3_client, ana, business, signed["key"])

    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert not object_exists(s3, "media/")
    assert (await MediaUpload.get(key=signed["key"])).used_at is None


async def test_a_saved_logo_cannot_be_replaced_by_posting_the_form_again(
    s3_client: httpx.AsyncClient, ana: Person
) -> None:
    business = await owned_business(s3_client, ana)
    signed = await create_upload(s3_client, ana, "BUSINESS_LOGO", "image/png", len(PNG))
    await send_form(signed, PNG)
    saved = await save_logo(s3_client, ana, business, signed["key"])
    url = saved["data"]["updateBusiness"]["business"]["logoUrl"]

    same_size_other_bytes = b"<html>".ljust(len(PNG), b" ")
    assert (await send_form(signed, same_size_other_bytes)).status_code == 204  # moto

    async with httpx.AsyncClient() as browser:
        assert (await browser.get(url)).content == PNG
    again = await save_logo(s3_client, ana, business, signed["key"])
    assert error_codes(again) == ["BAD_USER_INPUT"]


async def test_gc_deletes_old_uploads_and_replaced_logos_from_the_bucket(
    s3_client: httpx.AsyncClient, ana: Person, s3: S3Client, s3_env: dict[str, str]
) -> None:
    business = await owned_business(s3_client, ana)
    first = await upload(s3_client, ana, "BUSINESS_LOGO", "image/png", PNG)
    assert "errors" not in await save_logo(s3_client, ana, business, first)
    replaced = await logo_key(business)
    second = await upload(s3_client, ana, "BUSINESS_LOGO", "image/jpeg", JPEG)
    assert "errors" not in await save_logo(s3_client, ana, business, second)
    current = await logo_key(business)
    never_saved = await upload(s3_client, ana, "EVENT_IMAGE", "image/png", PNG)
    assert object_exists(s3, replaced)  # replacing leaves the old object, for gc

    # moto's objects cannot be back-dated: collect everything not shown, whatever its age.
    output = run_gc(s3_env)

    remaining = {item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert remaining == {current}
    assert {first, second, replaced, never_saved}.isdisjoint(remaining)
    assert "4 objects deleted, 3 uploads forgotten" in output
    assert await MediaUpload.all().count() == 0


async def test_a_service_uploads_an_event_image_to_the_bucket_and_gc_collects_its_unsaved_one(
    s3_client: httpx.AsyncClient, s3: S3Client, s3_env: dict[str, str]
) -> None:
    tokens = LocalIdentityProvider(Path(s3_env["POPMAP_DATA_DIR"])).mint_client_credentials(
        LOCAL_SERVICE_CLIENT_ID, ["popmap/events.write"]
    )
    importer = Person("importer", None, str(tokens["access_token"]))
    saved = await upload(s3_client, importer, "EVENT_IMAGE", "image/png", PNG)
    never_saved = await upload(s3_client, importer, "EVENT_IMAGE", "image/png", PNG)
    assert saved.startswith("uploads/c")
    assert object_exists(s3, saved)
    starts = datetime.now(UTC) + timedelta(days=3)
    event = {
        "title": "Imported",
        "latitude": 30.27,
        "longitude": -97.74,
        "startsAt": starts.isoformat(),
        "endsAt": (starts + timedelta(hours=2)).isoformat(),
        "image": saved,
    }

    body = await post(s3_client, importer, SUBMIT_EVENT, {"input": event})
    assert "errors" not in body, body
    shown = (await Event.get(title="Imported")).image_key
    output = run_gc(s3_env)

    remaining = {item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])}
    assert remaining == {shown}
    assert "2 objects deleted, 2 uploads forgotten" in output
    assert never_saved not in remaining


async def test_a_key_whose_form_was_never_posted_is_refused_when_saved(
    s3_client: httpx.AsyncClient, ana: Person
) -> None:
    business = await owned_business(s3_client, ana)
    signed = await create_upload(s3_client, ana, "BUSINESS_LOGO", "image/png", len(PNG))

    body = await save_logo(s3_client, ana, business, signed["key"])

    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["message"] == "nothing was uploaded with this key"
    assert await logo_key(business) == ""


async def test_an_upload_sent_as_another_type_than_signed_is_refused_and_deleted(
    s3_client: httpx.AsyncClient, ana: Person, s3: S3Client
) -> None:
    # a real bucket refuses this form (the policy binds Content-Type); moto lets it through
    business = await owned_business(s3_client, ana)
    signed = await create_upload(s3_client, ana, "BUSINESS_LOGO", "image/png", len(PNG))
    fields = form_fields(signed) | {"Content-Type": "text/html"}
    assert (await send_form(signed, PNG, fields=fields)).status_code == 204

    body = await save_logo(s3_client, ana, business, signed["key"])

    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert (
        body["errors"][0]["message"] == "the uploaded file was sent as 'text/html', not image/png"
    )
    assert not object_exists(s3, signed["key"])
    assert await logo_key(business) == ""


async def test_a_logo_is_refused_with_503_while_the_bucket_cannot_be_reached(
    s3_env: dict[str, str], ana: Person, clean_db: None, tmp_path: Path
) -> None:
    env = s3_env | {"AWS_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}  # nothing there
    log = tmp_path / "server.log"
    with running_server(env, log=log) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            business = await owned_business(http, ana)
            signed = await create_upload(http, ana, "BUSINESS_LOGO", "image/png", len(PNG))
            variables = {"id": business, "input": {"logo": signed["key"]}}
            response = await http.post(
                "/graphql",
                json={"query": UPDATE_BUSINESS, "variables": variables},
                headers=ana.headers,
            )

    assert response.status_code == 503
    assert response.headers["retry-after"].isdigit()
    assert error_codes(response.json()) == ["SERVICE_UNAVAILABLE"]
    assert response.json()["errors"][0]["message"] == "the media store is unavailable; try again"
    assert "S3 request failed" in log.read_text()
    assert await logo_key(business) == ""
    assert (await MediaUpload.get(key=signed["key"])).used_at is None  # still to be saved


@pytest.mark.parametrize(
    ("setting", "published_at"),
    [
        ({"POPMAP_MEDIA_BASE_URL": "https://cdn.popmap.test/"}, "https://cdn.popmap.test/media/"),
        # boto3's own variable, not ours: the published URL is the bucket's on AWS
        (
            {"AWS_S3_ENDPOINT_URL": "", "AWS_ENDPOINT_URL_S3": "MOTO"},
            f"https://{BUCKET}.s3.us-east-1.amazonaws.com/media/",
        ),
    ],
    ids=["base-url", "aws"],
)
async def test_a_saved_logo_is_published_at_the_base_url_or_else_the_buckets_own(
    s3_env: dict[str, str],
    moto_s3: str,
    ana: Person,
    clean_db: None,
    setting: dict[str, str],
    published_at: str,
) -> None:
    env = s3_env | {name: moto_s3 if value == "MOTO" else value for name, value in setting.items()}
    with running_server(env) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            business = await owned_business(http, ana)
            key = await upload(http, ana, "BUSINESS_LOGO", "image/png", PNG)
            saved = await save_logo(http, ana, business, key)

    assert "errors" not in saved, saved
    url = saved["data"]["updateBusiness"]["business"]["logoUrl"]
    assert url.startswith(f"{published_at}business-logo/")
    assert url.endswith(".png")
