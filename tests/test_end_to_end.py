"""A whole story through the real program with the local identity provider's tokens."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from popmap_gql.config import Settings
from tests.helpers import NOW
from tests.processes import clean_env, popmap_gql, running_server


def dev_tokens(env: dict[str, str], email: str, *groups: str) -> dict[str, str]:
    args = ["--email", email, *(arg for group in groups for arg in ("--group", group))]
    result = popmap_gql(env, "dev-token", *args)
    assert result.returncode == 0, result.stderr
    tokens: dict[str, str] = json.loads(result.stdout)
    return tokens


def call(base: str, token: str, query: str, **variables: Any) -> dict[str, Any]:
    response = httpx.post(
        f"{base}/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert "errors" not in body, body
    data: dict[str, Any] = body["data"]
    return data


def test_owner_submits_staff_verifies_owner_joins_and_leaves(
    settings: Settings,
    tmp_path: Path,
    clean_db: None,  # it expects exactly its own events: no rows left by earlier tests
) -> None:
    assert settings.database_url is not None
    env = clean_env(DATABASE_URL=settings.database_url, POPMAP_DATA_DIR=str(tmp_path))
    owner = dev_tokens(env, "olivia@example.com")["access_token"]
    staff = dev_tokens(env, "sam@example.com", "staff")["access_token"]

    with running_server(env) as base:
        business = call(
            base,
            owner,
            'mutation { submitBusiness(input: {name: "Olivia\'s Olives"}) { business { id } } }',
        )["submitBusiness"]["business"]["id"]
        call(
            base,
            staff,
            "mutation ($id: ID!) { verifyBusiness(id: $id) { business { isVerified } } }",
            id=business,
        )
        event = call(
            base,
            staff,
            "mutation ($input: EventInput!) { submitEvent(input: $input) { event { id } } }",
            input={
                "title": "Olive Oil Tasting",
                "latitude": 30.26,
                "longitude": -97.74,
                "startsAt": (NOW + timedelta(days=30)).isoformat(),
                "endsAt": (NOW + timedelta(days=30, hours=3)).isoformat(),
            },
        )["submitEvent"]["event"]["id"]
        call(
            base,
            staff,
            "mutation ($id: ID!) { moderateEvent(id: $id, status: APPROVED) { event { id } } }",
            id=event,
        )

        available = call(
            base,
            owner,
            "query ($id: ID!) { business(id: $id) { viewerIsOwner availableEvents { id } } }",
            id=business,
        )["business"]
        joined = call(
            base,
            owner,
            "mutation ($e: ID!, $b: ID!) { joinEvent(eventId: $e, businessId: $b) { changed } }",
            e=event,
            b=business,
        )["joinEvent"]
        listed = call(
            base, owner, "query ($e: ID!) { event(id: $e) { businesses { id } } }", e=event
        )["event"]["businesses"]
        left = call(
            base,
            owner,
            "mutation ($e: ID!, $b: ID!) { leaveEvent(eventId: $e, businessId: $b) { changed } }",
            e=event,
            b=business,
        )["leaveEvent"]
        after = call(
            base, owner, "query ($e: ID!) { event(id: $e) { businesses { id } } }", e=event
        )["event"]["businesses"]

    assert available == {"viewerIsOwner": True, "availableEvents": [{"id": event}]}
    assert joined == {"changed": True}
    assert listed == [{"id": business}]
    assert left == {"changed": True}
    assert after == []
