"""Other servers over HTTP with real client-credentials tokens: what they are refused (401 or
FORBIDDEN, never 500), what their scopes allow, and that they never become people."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from popmap_gql.auth.jwks import StaticKeys
from popmap_gql.auth.tokens import TokenVerifier
from popmap_gql.config import ConfigError, load_settings
from popmap_gql.db.models import Business, CognitoIdentity, Event, EventStatus, User
from tests.fake_cognito import (
    ISSUER,
    OTHER_SERVICE_CLIENT,
    SERVICE_CLIENT,
    WEB_CLIENT,
    FakeCognito,
)
from tests.helpers import NOW, error_codes, global_id, make_business, make_event
from tests.people import ANONYMOUS, Person, person, post, service
from tests.test_auth import assert_refused

SERVICE_CLIENT_QUERY = "{ serviceClient { clientId scopes } me { id } }"
VERIFY = "mutation ($id: ID!) { verifyBusiness(id: $id) { business { isVerified } } }"
EVENT_INPUT = {
    "title": "Imported market",
    "latitude": 30.27,
    "longitude": -97.74,
    "startsAt": (NOW + timedelta(days=5)).isoformat(),
    "endsAt": (NOW + timedelta(days=5, hours=3)).isoformat(),
}
SUBMIT = "mutation ($input: EventInput!) { submitEvent(input: $input) { event { id status } } }"


async def ask(
    client: httpx.AsyncClient, token: str, query: str, **variables: Any
) -> httpx.Response:
    return await client.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"Authorization": f"Bearer {token}"},
    )


async def answer(client: httpx.AsyncClient, token: str, query: str, **variables: Any) -> Any:
    response = await ask(client, token, query, **variables)
    assert response.status_code == 200, response.text
    return response.json()


# --- what a token says ----------------------------------------------------------------


async def test_service_sees_its_client_id_and_scopes_and_no_me(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    token = cognito.service_token(scopes=["popmap/moderate", "popmap/read.all"])

    body = await answer(client, token, SERVICE_CLIENT_QUERY)

    assert body["data"] == {
        "serviceClient": {
            "clientId": SERVICE_CLIENT,
            "scopes": ["popmap/moderate", "popmap/read.all"],
        },
        "me": None,
    }


async def test_unknown_scopes_of_our_resource_server_are_ignored_and_the_token_still_works(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    token = cognito.service_token(scopes=["popmap/moderate", "popmap/delete.everything"])

    body = await answer(client, token, SERVICE_CLIENT_QUERY)

    assert body["data"]["serviceClient"]["scopes"] == ["popmap/moderate"]


async def test_scope_of_another_resource_server_gives_no_power(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    business = await make_business("Draft", verified=False)
    token = cognito.service_token(scopes=["inventory/moderate", "moderate", "popmapx/moderate"])

    body = await answer(client, token, VERIFY, id=global_id("Business", business.id))

    assert error_codes(body) == ["FORBIDDEN"]
    assert body["errors"][0]["extensions"]["requiredScope"] == "popmap/moderate"
    assert not (await Business.get(id=business.id)).is_verified


@pytest.mark.parametrize("scope", ["", None])
async def test_empty_or_missing_scope_is_a_service_without_powers(
    client: httpx.AsyncClient, cognito: FakeCognito, scope: str | None
) -> None:
    claims = cognito.service_claims()
    claims["scope"] = scope
    token = cognito.sign({k: v for k, v in claims.items() if v is not None})

    body = await answer(client, token, SERVICE_CLIENT_QUERY)

    assert body["data"]["serviceClient"] == {"clientId": SERVICE_CLIENT, "scopes": []}


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"scope": ["popmap/moderate"]}, id="scope is a list"),
        pytest.param({"scope": 7}, id="scope is a number"),
        pytest.param({"username": SERVICE_CLIENT}, id="username on a service client's token"),
        pytest.param({"username": ""}, id="empty username on a service client's token"),
        pytest.param({"sub": "someone-else"}, id="sub is not the client"),
        pytest.param({"client_id": "unknown-client", "sub": "unknown-client"}, id="other client"),
        pytest.param({"iss": "https://issuer.example/other"}, id="other issuer"),
        pytest.param({"exp": int(NOW.timestamp()) - 3600}, id="expired"),
        pytest.param({"token_use": "id"}, id="not an access token"),
    ],
)
async def test_malformed_service_tokens_are_refused_with_401(
    client: httpx.AsyncClient, cognito: FakeCognito, overrides: dict[str, Any]
) -> None:
    token = cognito.service_token(scopes=["popmap/moderate"], **overrides)

    assert_refused(await ask(client, token, SERVICE_CLIENT_QUERY))


async def test_service_token_signed_with_another_key_is_refused(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    token = cognito.sign(cognito.service_claims(), key=cognito.attacker_key)

    assert_refused(await ask(client, token, SERVICE_CLIENT_QUERY))


async def test_id_token_naming_a_service_client_is_refused(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    token = cognito.id_token(aud=SERVICE_CLIENT)

    assert_refused(await ask(client, token, SERVICE_CLIENT_QUERY))


async def test_token_without_username_from_a_peoples_client_is_still_refused(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    token = cognito.service_token(WEB_CLIENT, ["popmap/moderate"])

    response = await ask(client, token, SERVICE_CLIENT_QUERY)

    assert_refused(response)
    assert "no username claim" in response.headers["www-authenticate"]


async def test_staff_group_on_a_service_token_makes_it_no_staff(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    business = await make_business("Draft", verified=False)
    groups: dict[str, Any] = {"cognito:groups": ["staff"]}
    token = cognito.service_token(SERVICE_CLIENT, [], **groups)

    body = await answer(client, token, VERIFY, id=global_id("Business", business.id))

    assert error_codes(body) == ["FORBIDDEN"]
    assert body["errors"][0]["extensions"]["requiredScope"] == "popmap/moderate"


async def test_persons_token_with_service_scopes_gains_no_service_powers(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    stranger = await person(cognito, "stranger")
    assert stranger.user is not None
    identity = await CognitoIdentity.get(user_id=stranger.user.id)
    token = cognito.access_token(
        sub=identity.sub, username="stranger", scope="openid popmap/moderate popmap/read.all"
    )
    business = await make_business("Draft", verified=False)

    verify = await answer(client, token, VERIFY, id=global_id("Business", business.id))
    who = await answer(client, token, SERVICE_CLIENT_QUERY)

    assert error_codes(verify) == ["FORBIDDEN"]
    assert "requiredScope" not in verify["errors"][0]["extensions"]
    assert who["data"]["serviceClient"] is None
    assert who["data"]["me"] is not None


# --- configuration -----------------------------------------------------------------------


def test_service_client_that_is_also_a_peoples_client_is_a_configuration_error() -> None:
    environ = {
        "AWS_COGNITO_USER_POOL_ID": "us-east-1_PopmapTest1",
        "AWS_COGNITO_APP_CLIENT_ID": "web,shared",
        "AWS_COGNITO_SERVICE_CLIENT_IDS": "shared,nightly",
    }

    with pytest.raises(ConfigError, match=r"AWS_COGNITO_SERVICE_CLIENT_IDS.*shared"):
        load_settings(environ, env_file=None)


def test_local_provider_refuses_its_peoples_client_as_a_service_client() -> None:
    with pytest.raises(ConfigError, match="both for people and services"):
        TokenVerifier(
            issuer=ISSUER,
            client_ids=["popmap-local-client"],
            keys=StaticKeys({}),
            service_client_ids=["popmap-local-client"],
        )


@pytest.mark.parametrize("value", ["", "  ", "pop map"])
def test_resource_server_must_be_an_identifier(value: str) -> None:
    with pytest.raises(ConfigError, match="AWS_COGNITO_RESOURCE_SERVER"):
        load_settings({"AWS_COGNITO_RESOURCE_SERVER": value}, env_file=None)


# --- what services do ----------------------------------------------------------------------


async def test_submitted_event_is_pending_and_recorded_as_the_clients(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    token = cognito.service_token(scopes=["popmap/events.write"])

    body = await answer(client, token, SUBMIT, input=EVENT_INPUT)

    assert body["data"]["submitEvent"]["event"]["status"] == "PENDING"
    event = await Event.get(title="Imported market")
    assert (event.created_by_id, event.created_by_client) == (None, SERVICE_CLIENT)


async def test_service_that_sees_everything_cannot_change_another_services_event(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    theirs = await make_event(
        "Theirs", status=EventStatus.APPROVED, created_by_client=OTHER_SERVICE_CLIENT
    )
    token = cognito.service_token(scopes=["popmap/events.write", "popmap/read.all"])

    body = await answer(
        client,
        token,
        "mutation ($id: ID!) { cancelEvent(id: $id) { changed } }",
        id=global_id("Event", theirs.id),
    )

    assert error_codes(body) == ["FORBIDDEN"]
    assert "requiredScope" not in body["errors"][0]["extensions"]
    assert (await Event.get(id=theirs.id)).status is EventStatus.APPROVED


async def test_services_approved_event_returns_to_pending_when_it_moves(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    event = await make_event("Ours", status=EventStatus.APPROVED, created_by_client=SERVICE_CLIENT)
    token = cognito.service_token(scopes=["popmap/events.write"])

    body = await answer(
        client,
        token,
        'mutation ($id: ID!) { updateEvent(id: $id, input: {address: "1 Elm St"})'
        " { returnedToPending event { status } } }",
        id=global_id("Event", event.id),
    )

    assert body["data"]["updateEvent"] == {
        "returnedToPending": True,
        "event": {"status": "PENDING"},
    }


async def test_nothing_a_service_does_creates_a_user(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    business = await make_business("Draft", verified=False)
    every_scope = ["popmap/events.write", "popmap/moderate", "popmap/read.all"]
    tokens = [cognito.service_token(scopes=every_scope), cognito.service_token(scopes=[])]
    operations: list[tuple[str, dict[str, Any]]] = [
        (SERVICE_CLIENT_QUERY, {}),
        ("{ me { id businesses { id } } }", {}),
        (SUBMIT, {"input": EVENT_INPUT}),
        (VERIFY, {"id": global_id("Business", business.id)}),
        ('mutation { submitBusiness(input: {name: "Mine"}) { business { id } } }', {}),
        ("{ events(filter: {status: PENDING}) { totalCount } }", {}),
    ]

    for token in tokens:
        for query, variables in operations:
            await answer(client, token, query, **variables)

    assert await User.all().count() == 0
    assert await CognitoIdentity.all().count() == 0
    assert await Event.filter(created_by_client=SERVICE_CLIENT).count() == 1


# --- the response cache ---------------------------------------------------------------------

PENDING_TITLES = "{ events { edges { node { title } } } }"


async def titles(client: httpx.AsyncClient, who: Person) -> tuple[list[str], str | None]:
    response = await client.post("/graphql", json={"query": PENDING_TITLES}, headers=who.headers)
    edges = response.json()["data"]["events"]["edges"]
    return [edge["node"]["title"] for edge in edges], response.headers.get("x-popmap-cache")


@pytest.mark.parametrize("scopes", [("read.all",), ("events.write",)])
async def test_services_view_never_reaches_the_public_through_the_cache(
    client: httpx.AsyncClient, cognito: FakeCognito, scopes: tuple[str, ...]
) -> None:
    await make_event("Public fair")
    await make_event("Imported", status=EventStatus.PENDING, created_by_client=SERVICE_CLIENT)
    caller = service(cognito, "importer", scopes)

    seen_by_service, _ = await titles(client, caller)
    seen_by_public, _ = await titles(client, ANONYMOUS)
    again_by_public, _ = await titles(client, ANONYMOUS)

    assert sorted(seen_by_service) == ["Imported", "Public fair"]
    assert seen_by_public == again_by_public == ["Public fair"]


async def test_service_without_read_all_is_not_cached_and_read_all_shares_the_staff_view(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    await make_event("Imported", status=EventStatus.PENDING, created_by_client=SERVICE_CLIENT)
    staff = await person(cognito, "moderator", groups=("staff",))
    writer = service(cognito, "writer", ("events.write",))
    reader = service(cognito, "reader", ("read.all",))

    writer_first = await titles(client, writer)
    writer_again = await titles(client, writer)
    staff_first = await titles(client, staff)
    reader_after_staff = await titles(client, reader)

    assert writer_first == writer_again == (["Imported"], None)
    assert staff_first == (["Imported"], "miss")
    assert reader_after_staff == (["Imported"], "hit")


async def test_other_service_does_not_see_a_services_pending_event(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    event = await make_event(
        "Imported", status=EventStatus.PENDING, created_by_client=SERVICE_CLIENT
    )
    other = service(cognito, "other", ("events.write",), client=OTHER_SERVICE_CLIENT)

    body = await post(
        client,
        other,
        "query ($id: ID!) { event(id: $id) { title } }",
        {"id": global_id("Event", event.id)},
    )

    assert body["data"] == {"event": None}
