"""The embedded store's upload endpoint while PostgreSQL is down: 503 with Retry-After, as
the GraphQL endpoint answers, never a masked 500."""

from __future__ import annotations

import httpx

from tests.fake_cognito import FakeCognito
from tests.media_kit import CREATE_UPLOAD, image_bytes, send_form
from tests.postgres_control import StoppablePostgres
from tests.test_faults import (  # the faults module's PostgreSQL and server, for this module
    assert_unavailable,
    http,  # noqa: F401
    new_token,
    server,  # noqa: F401
    stopped,
)

PNG = image_bytes("PNG")


async def test_an_upload_answers_503_with_retry_after_while_postgres_is_down(
    postgres: StoppablePostgres,
    http: httpx.AsyncClient,  # noqa: F811
    cognito: FakeCognito,
) -> None:
    token = new_token(cognito)
    created = await http.post(
        "/graphql",
        json={
            "query": CREATE_UPLOAD,
            "variables": {"kind": "BUSINESS_LOGO", "type": "image/png", "size": len(PNG)},
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert created.status_code == 200, created.text
    signed = created.json()["data"]["createUpload"]

    async with stopped(postgres):
        response = await send_form(signed, PNG)

    assert_unavailable(response)
