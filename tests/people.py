"""Signed-in people for tests (a user row linked to a Cognito identity, and their token), and
services (another server's client-credentials token)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from popmap_gql.db.models import CognitoIdentity, User
from tests.fake_cognito import ISSUER, RESOURCE_SERVER, SERVICE_CLIENT, FakeCognito


@dataclass(frozen=True)
class Person:
    name: str
    user: User | None
    token: str | None

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


ANONYMOUS = Person("anonymous", None, None)


async def person(cognito: FakeCognito, name: str, groups: tuple[str, ...] = ()) -> Person:
    """A user who has signed in before, with a fresh ID token."""
    sub = str(uuid.uuid4())
    user = await User.create(username=name, email=f"{name}@example.com")
    await CognitoIdentity.create(user=user, issuer=ISSUER, sub=sub, profile_complete=True)
    token = cognito.id_token(
        sub=sub,
        email=f"{name}@example.com",
        **{"cognito:username": name, "cognito:groups": list(groups)},
    )
    return Person(name, user, token)


def service(
    cognito: FakeCognito, name: str, scopes: tuple[str, ...] = (), client: str = SERVICE_CLIENT
) -> Person:
    """Another server signed in with client credentials: no user row, a token with `scopes`
    (names of our resource server, e.g. "moderate")."""
    token = cognito.service_token(client, [f"{RESOURCE_SERVER}/{scope}" for scope in scopes])
    return Person(name, None, token)


async def viewers(cognito: FakeCognito) -> list[Person]:
    """One of each kind: anonymous, a signed-in owner, staff, a service."""
    return [
        ANONYMOUS,
        await person(cognito, "owner"),
        await person(cognito, "moderator", groups=("staff",)),
        service(cognito, "partner"),
    ]


async def post(
    client: httpx.AsyncClient, who: Person, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = await client.post(
        "/graphql", json={"query": query, "variables": variables or {}}, headers=who.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
