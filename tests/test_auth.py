"""Cognito tokens over HTTP: who is accepted, who is refused (401, never 500), and the viewer."""

from __future__ import annotations

import asyncio
import base64
import gzip
import http.client
import json
import time
import tracemalloc
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from popmap_gql.auth.jwks import FETCH_SECONDS
from popmap_gql.auth.local_idp import LocalIdentityProvider
from popmap_gql.auth.userinfo import UserInfoClient
from popmap_gql.config import Settings
from popmap_gql.db.models import CognitoIdentity, User
from tests.conftest import JWKS_COOLDOWN_SECONDS, QueryCounter, serving
from tests.fake_cognito import (
    ISSUER,
    MOBILE_CLIENT,
    WEB_CLIENT,
    FakeCognito,
    SigningKey,
    b64url,
)
from tests.helpers import error_codes
from tests.processes import clean_env, running_server

ME = "{ me { id username email firstName lastName groups isStaff identityProvider } }"


async def ask_me(client: httpx.AsyncClient, token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return await client.post("/graphql", json={"query": ME}, headers=headers)


async def me(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    response = await ask_me(client, token)
    assert response.status_code == 200, response.text
    body = response.json()
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["me"]
    return result


def assert_refused(response: httpx.Response) -> None:
    """A bad token: 401, a bearer challenge, and a GraphQL error with UNAUTHENTICATED."""
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token", error_description="')
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert error_codes(body) == ["UNAUTHENTICATED"]
    assert "data" not in body


# --- accepted tokens --------------------------------------------------------------------


async def test_without_token_me_is_null(client: httpx.AsyncClient) -> None:
    response = await ask_me(client, None)

    assert response.json() == {"data": {"me": None}}


async def test_a_nul_character_in_a_profile_claim_is_dropped_not_a_500(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    """Cognito lets a person put any character in their own attributes, and PostgreSQL's
    text cannot hold a NUL: from an ID token or from userInfo, it is left out."""
    by_id, by_userinfo = str(uuid.uuid4()), str(uuid.uuid4())
    cognito.profiles[by_userinfo] = {"email": "bo\x00@example.com", "family_name": "Li\x00"}

    first = await me(
        client,
        cognito.id_token(
            sub=by_id,
            email="ana@example.com",
            given_name="An\x00a",
            **{"cognito:username": "ana\x00"},
        ),
    )
    second = await me(client, cognito.access_token(sub=by_userinfo, username="bo"))

    assert (first["username"], first["firstName"]) == ("ana", "Ana")
    assert (second["email"], second["lastName"]) == ("bo@example.com", "Li")


async def test_access_and_id_tokens_of_one_person_give_the_same_viewer(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    sub = str(uuid.uuid4())
    cognito.profiles[sub] = {"email": "ana@example.com"}

    by_id_token = await me(
        client,
        cognito.id_token(
            sub=sub,
            email="ana@example.com",
            given_name="Ana",
            family_name="Diaz",
            **{"cognito:username": "ana", "cognito:groups": ["owners"]},
        ),
    )
    by_access_token = await me(client, cognito.access_token(sub=sub, username="ana"))

    assert by_id_token == {
        "id": by_id_token["id"],
        "username": "ana",
        "email": "ana@example.com",
        "firstName": "Ana",
        "lastName": "Diaz",
        "groups": ["owners"],
        "isStaff": False,
        "identityProvider": "Cognito",
    }
    assert by_access_token["id"] == by_id_token["id"]
    assert by_access_token["groups"] == []  # groups come from each token, not the database
    assert await User.all().count() == 1


async def test_mobile_app_client_is_accepted_too(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    viewer = await me(client, cognito.access_token(client_id=MOBILE_CLIENT))

    assert viewer["id"]


async def test_staff_group_makes_the_viewer_staff(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    viewer = await me(client, cognito.access_token(**{"cognito:groups": ["staff", "owners"]}))

    assert viewer["isStaff"] is True
    assert viewer["groups"] == ["staff", "owners"]


async def test_federated_sign_in_records_the_provider(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    identities = [{"providerName": "Facebook", "providerType": "Facebook", "userId": "1234"}]
    by_id_token = await me(
        client,
        cognito.id_token(identities=identities, **{"cognito:username": "Facebook_1234"}),
    )
    by_access_token = await me(client, cognito.access_token(username="Facebook_98765"))

    assert by_id_token["identityProvider"] == "Facebook"
    assert by_access_token["identityProvider"] == "Facebook"


async def test_users_are_never_matched_by_email_or_username(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    first = await me(
        client, cognito.id_token(email="same@example.com", **{"cognito:username": "x"})
    )
    second = await me(
        client, cognito.id_token(email="same@example.com", **{"cognito:username": "x"})
    )

    assert first["id"] != second["id"]
    assert await CognitoIdentity.all().count() == 2


async def test_access_token_profile_is_filled_once_from_userinfo(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    sub = str(uuid.uuid4())
    cognito.profiles[sub] = {"email": "bo@example.com", "given_name": "Bo"}
    before = cognito.hits["userinfo"]

    first = await me(client, cognito.access_token(sub=sub))
    second = await me(client, cognito.access_token(sub=sub))

    assert (first["email"], first["firstName"]) == ("bo@example.com", "Bo")
    assert second["email"] == "bo@example.com"
    assert cognito.hits["userinfo"] - before == 1


async def test_userinfo_failure_never_fails_the_request_and_is_retried_later(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    sub = str(uuid.uuid4())
    cognito.profiles[sub] = {"email": "cy@example.com"}
    cognito.userinfo_status = 503
    try:
        during_outage = await me(client, cognito.access_token(sub=sub))
    finally:
        cognito.userinfo_status = 200
    await asyncio.sleep(1.1)  # the test settings retry userInfo after a second
    after_outage = await me(client, cognito.access_token(sub=sub))

    assert during_outage["email"] is None
    assert after_outage["email"] == "cy@example.com"
    assert during_outage["id"] == after_outage["id"]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'["not", "a", "profile"]', id="an array"),
        pytest.param(b"[" * 10_000, id="nested too deeply for the parser"),
    ],
)
async def test_a_userinfo_answer_that_is_no_profile_never_fails_the_request(
    client: httpx.AsyncClient,
    cognito: FakeCognito,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
) -> None:
    cognito.userinfo_body = body
    try:
        viewer = await me(client, cognito.access_token())
    finally:
        cognito.userinfo_body = None

    assert viewer["id"]
    assert viewer["email"] is None
    assert "userInfo request failed, profile left to fill later" in caplog.text


async def test_fifty_concurrent_first_requests_create_one_user(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    token = cognito.id_token()

    responses = await asyncio.gather(*(ask_me(client, token) for _ in range(50)))

    assert {r.status_code for r in responses} == {200}
    assert len({r.json()["data"]["me"]["id"] for r in responses}) == 1
    assert await User.all().count() == 1
    assert await CognitoIdentity.all().count() == 1


# --- refused tokens ---------------------------------------------------------------------


def _replace_header(token: str, header: dict[str, Any]) -> str:
    _, payload, signature = token.split(".")
    return f"{b64url(header)}.{payload}.{signature}"


def _flip_bit(segment: str) -> str:
    raw = bytearray(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    raw[len(raw) // 2] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()


def _hs256(secret: bytes, claims: dict[str, Any], kid: str) -> str:
    # PyJWT refuses to HMAC-sign with a PEM key, which is the point of the attack;
    # build the token by hand as an attacker would.
    import hashlib
    import hmac

    signing_input = f"{b64url({'alg': 'HS256', 'typ': 'JWT', 'kid': kid})}.{b64url(claims)}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def _refusals() -> dict[str, Callable[[FakeCognito], str]]:
    def unsigned(c: FakeCognito) -> str:
        header = {"alg": "none", "kid": c.key.kid}
        return f"{b64url(header)}.{b64url(c.claims())}."

    def other_pool(c: FakeCognito) -> str:
        return c.sign(c.claims(iss=ISSUER.replace("PopmapTest1", "SomeOtherPool")))

    def payload_bit(c: FakeCognito) -> str:
        header, payload, signature = c.access_token().split(".")
        return f"{header}.{_flip_bit(payload)}.{signature}"

    def signature_bit(c: FakeCognito) -> str:
        header, payload, signature = c.access_token().split(".")
        return f"{header}.{payload}.{_flip_bit(signature)}"

    now = int(time.time())
    return {
        "alg none": unsigned,
        "HS256 with the public key as PEM": lambda c: _hs256(
            c.key.public_pem, c.claims(), c.key.kid
        ),
        "HS256 with the public key as JWK text": lambda c: _hs256(
            json.dumps(c.key.jwk).encode(), c.claims(), c.key.kid
        ),
        "header alg RS384 with an RS256 key": lambda c: c.sign(c.claims(), algorithm="RS384"),
        "header alg RS256 rewritten to PS256": lambda c: _replace_header(
            c.access_token(), {"alg": "PS256", "kid": c.key.kid}
        ),
        "unknown kid": lambda c: c.sign(c.claims(), key=SigningKey("no-such-kid")),
        "no kid": lambda c: _replace_header(c.access_token(), {"alg": "RS256", "typ": "JWT"}),
        "kid is a number": lambda c: _replace_header(c.access_token(), {"alg": "RS256", "kid": 7}),
        "expired": lambda c: c.access_token(iat=now - 7200, exp=now - 3600),
        "missing exp": lambda c: c.access_token(exp=None),
        "missing iat": lambda c: c.access_token(iat=None),
        "nbf in the future": lambda c: c.access_token(nbf=now + 600),
        "iat in the future": lambda c: c.access_token(iat=now + 600, exp=now + 4200),
        "wrong iss": lambda c: c.access_token(iss="https://evil.example/"),
        "valid token of another pool": other_pool,
        "id token with wrong aud": lambda c: c.id_token(aud="someone-elses-client"),
        "access token with wrong client_id": lambda c: c.access_token(client_id="other-client"),
        "access token with aud instead of client_id": lambda c: c.access_token(
            client_id=None, aud="web-client-id"
        ),
        "token_use missing": lambda c: c.access_token(token_use=None),
        "token_use refresh": lambda c: c.access_token(token_use="refresh"),
        "two segments": lambda c: ".".join(c.access_token().split(".")[:2]),
        "four segments": lambda c: c.access_token() + ".e30",
        "bad base64 header": lambda c: "%%%." + c.access_token().split(".", 1)[1],
        "non-JSON header": lambda c: b64url(b"not json") + "." + c.access_token().split(".", 1)[1],
        "sub is a number": lambda c: (
            c.access_token(sub=None) and c.sign({**c.claims(), "sub": 12345})
        ),
        "groups is a string": lambda c: c.access_token(**{"cognito:groups": "staff"}),
        "username is a number": lambda c: c.access_token(username=12345),
        "cognito:username is empty": lambda c: c.id_token(**{"cognito:username": ""}),
        "email is a list": lambda c: c.id_token(email=["ana@example.com"]),
        "exp is a string": lambda c: c.access_token(exp="tomorrow"),
        # NumericDate claims are JSON numbers; PyJWT alone compares int(value)
        "exp is a numeric string": lambda c: c.access_token(exp=str(now + 3600)),
        "iat is a numeric string": lambda c: c.access_token(iat=str(now)),
        "nbf is a numeric string": lambda c: c.access_token(nbf=str(now - 60)),
        "exp is true": lambda c: c.access_token(exp=True),
        "iat is false": lambda c: c.access_token(iat=False),
        "nbf is false": lambda c: c.access_token(nbf=False),
        "exp is infinite": lambda c: c.access_token(exp=float("inf")),
        "exp is beyond any float": lambda c: c.access_token(exp=10**400),
        # Cognito's ID tokens name one audience, as a string
        "id token aud is a list holding our client": lambda c: c.id_token(aud=[WEB_CLIENT]),
        "id token aud lists both our clients": lambda c: c.id_token(
            aud=[WEB_CLIENT, MOBILE_CLIENT]
        ),
        "access token client_id is a list": lambda c: c.access_token(client_id=[WEB_CLIENT]),
        "oversized": lambda c: c.access_token(padding="x" * 20_000),
        "flipped bit in payload": payload_bit,
        "flipped bit in signature": signature_bit,
    }


REFUSALS = _refusals()


@pytest.mark.parametrize("case", list(REFUSALS))
async def test_token_is_refused_with_401(
    client: httpx.AsyncClient, cognito: FakeCognito, case: str
) -> None:
    token = REFUSALS[case](cognito)

    assert_refused(await ask_me(client, token))


@pytest.mark.parametrize("header", ["jku", "x5u"])
async def test_key_url_headers_are_ignored_and_never_fetched(
    client: httpx.AsyncClient, cognito: FakeCognito, header: str
) -> None:
    token = cognito.sign(
        cognito.claims(),
        key=cognito.attacker_key,
        headers={header: f"{cognito.base_url}/attacker/jwks.json"},
    )
    before = cognito.hits["attacker"]

    assert_refused(await ask_me(client, token))
    assert cognito.hits["attacker"] == before


async def test_embedded_jwk_header_is_ignored(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    # signed by the attacker, claiming the pool's kid, carrying the attacker's public key
    attacker_jwk = {**cognito.attacker_key.jwk, "kid": cognito.key.kid}
    token = jwt.encode(
        cognito.claims(),
        cognito.attacker_key.private,
        algorithm="RS256",
        headers={"kid": cognito.key.kid, "jwk": attacker_jwk},
    )

    assert_refused(await ask_me(client, token))


@pytest.mark.parametrize(
    "authorization", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "token abc"]
)
async def test_malformed_authorization_header_is_401(
    client: httpx.AsyncClient, authorization: str
) -> None:
    response = await client.post(
        "/graphql", json={"query": ME}, headers={"Authorization": authorization}
    )

    assert_refused(response)


def _post_with_raw_authorization(base: str, authorization: str) -> tuple[int, dict[str, Any]]:
    """POST `me` with an Authorization value sent byte for byte.

    httpx (h11) refuses to send a header value with surrounding whitespace, which RFC 9110
    lets servers receive and ignore; http.client sends it as given.
    """
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(
            "POST",
            "/graphql",
            body=json.dumps({"query": ME}),
            headers={"Content-Type": "application/json", "Authorization": authorization},
        )
        response = connection.getresponse()
        body: dict[str, Any] = json.loads(response.read())
        return response.status, body
    finally:
        connection.close()


@pytest.mark.parametrize(
    "form",
    ["bearer {}", "BEARER {}", "Bearer   {}", "Bearer {}  ", "Bearer {}\t", "  Bearer {}"],
)
async def test_authorization_header_is_read_as_rfc_6750_says(
    api_url: str, clean_db: None, cognito: FakeCognito, form: str
) -> None:
    token = cognito.access_token(username="hal")

    status, body = await asyncio.to_thread(
        _post_with_raw_authorization, api_url, form.format(token)
    )

    assert status == 200, body
    assert body["data"]["me"]["username"] == "hal"


@pytest.mark.parametrize("form", ["Bearer\t{}", "Bearer {} {}", "Bearer {},", "Bearer,{}", "{}"])
async def test_bearer_token_in_another_shape_is_401(
    client: httpx.AsyncClient, cognito: FakeCognito, form: str
) -> None:
    token = cognito.access_token()

    response = await client.post(
        "/graphql",
        json={"query": ME},
        headers={"Authorization": form.format(token, token)},
    )

    assert_refused(response)


async def test_401_answers_in_the_media_type_apollo_asks_for(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/graphql",
        json={"query": ME},
        headers={
            "Authorization": "Bearer nonsense",
            "Accept": "application/graphql-response+json, application/json;q=0.9",
        },
    )

    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/graphql-response+json")


async def test_a_cached_token_is_refused_once_past_its_expiry_and_leeway(
    client: httpx.AsyncClient, cognito: FakeCognito, settings: Settings
) -> None:
    now = int(time.time())
    expired = now - int(settings.token_leeway_seconds) + 2  # accepted for two more seconds
    token = cognito.access_token(exp=expired, iat=expired - 3600)

    first = await ask_me(client, token)
    again = await ask_me(client, token)  # the verified token and its viewer are cached
    await asyncio.sleep(max(0.0, expired + settings.token_leeway_seconds + 0.5 - time.time()))
    late = await ask_me(client, token)

    assert first.status_code == again.status_code == 200
    assert_refused(late)


async def test_numeric_dates_may_be_fractional_json_numbers(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    now = time.time()

    viewer = await me(client, cognito.access_token(iat=now - 0.5, nbf=now - 0.5, exp=now + 600.5))

    assert viewer["id"]


# --- the viewer cache -------------------------------------------------------------------


async def test_email_from_an_id_token_is_seen_at_once_by_the_same_persons_access_token(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    sub = str(uuid.uuid4())
    cognito.profiles[sub] = {"email": "old@example.com"}
    access = cognito.access_token(sub=sub, username="fay")

    first = await me(client, access)  # profile from userInfo; the viewer is cached
    await me(
        client, cognito.id_token(sub=sub, email="new@example.com", **{"cognito:username": "fay"})
    )
    after = await me(client, access)

    assert first["email"] == "old@example.com"
    assert after["email"] == "new@example.com"
    assert after["id"] == first["id"]


async def test_repeat_requests_with_a_token_read_no_user_even_after_a_profile_change(
    client: httpx.AsyncClient, cognito: FakeCognito, sql_counter: QueryCounter
) -> None:
    sub = str(uuid.uuid4())
    access = cognito.access_token(sub=sub, username="gus")
    id_token = cognito.id_token(sub=sub, email="gus@example.com", **{"cognito:username": "gus"})
    await me(client, access)  # provisions the user

    def user_reads() -> list[str]:
        return [s for s in sql_counter.statements if "cognito_identity" in s]

    sql_counter.statements.clear()
    await me(client, access)
    repeat = user_reads()
    await me(client, id_token)  # records the email: one update
    sql_counter.statements.clear()
    after_change = await me(client, access)

    assert repeat == []
    assert user_reads() == []  # the changed profile came from memory, not a lookup
    assert after_change["email"] == "gus@example.com"


# --- the JWKS cache ---------------------------------------------------------------------


async def test_known_key_is_fetched_once_and_then_served_from_cache(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    await me(client, cognito.access_token())  # the key is cached from here on
    before = cognito.hits["jwks"]

    responses = await asyncio.gather(*(ask_me(client, cognito.access_token()) for _ in range(100)))

    assert {r.status_code for r in responses} == {200}
    assert cognito.hits["jwks"] == before


async def test_flood_of_unknown_kids_fetches_at_most_once_per_cooldown(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    await me(client, cognito.access_token())
    await asyncio.sleep(JWKS_COOLDOWN_SECONDS)  # a refetch is allowed again
    before = cognito.hits["jwks"]
    started = time.monotonic()

    async def forged() -> httpx.Response:
        return await ask_me(
            client, cognito.sign(cognito.claims(), key=SigningKey(uuid.uuid4().hex))
        )

    async def genuine() -> httpx.Response:
        return await ask_me(client, cognito.access_token())

    results = await asyncio.gather(*(forged() for _ in range(200)), *(genuine() for _ in range(20)))
    elapsed = time.monotonic() - started

    assert [r.status_code for r in results[:200]] == [401] * 200
    assert [r.status_code for r in results[200:]] == [200] * 20
    windows = int(elapsed // JWKS_COOLDOWN_SECONDS) + 1
    assert 1 <= cognito.hits["jwks"] - before <= windows


@asynccontextmanager
async def serve_trusting(
    fake: FakeCognito, settings: Settings, data_dir: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Path]]:
    """`popmap-gql serve` trusting a pool that `fake` (on a loopback port of its own)
    stands in for: a client of it, and the file its output goes to."""
    assert settings.database_url is not None
    async with serving(fake.app()) as url:
        fake.base_url = url
        log = data_dir / "server.log"
        with running_server(fake.server_env(settings.database_url, data_dir), log=log) as base:
            async with httpx.AsyncClient(base_url=base, timeout=30) as api:
                yield api, log


def _ec_jwk(kid: str) -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk: dict[str, Any] = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "use": "sig"}


async def test_only_the_rsa_signing_keys_of_the_jwks_are_trusted(
    settings: Settings, tmp_path: Path, clean_db: None
) -> None:
    """Other keys are skipped, one by one: a malformed key loses none of the others."""
    fake = FakeCognito()
    skipped = {
        kid: SigningKey(kid)
        for kid in ("encryption", "rs512", "ec", "no-modulus", "number-modulus", "modulus-one")
    }
    fake.jwks_body = json.dumps(
        {
            "keys": [
                "not an object",
                {name: value for name, value in SigningKey("x").jwk.items() if name != "kid"},
                {**skipped["encryption"].jwk, "use": "enc"},
                {**skipped["rs512"].jwk, "alg": "RS512"},
                _ec_jwk("ec"),
                {name: v for name, v in skipped["no-modulus"].jwk.items() if name != "n"},
                {**skipped["number-modulus"].jwk, "n": 12345},
                {**skipped["modulus-one"].jwk, "n": "AQ"},
                fake.key.jwk,
            ]
        }
    ).encode()

    async with serve_trusting(fake, settings, tmp_path) as (api, log):
        viewer = await me(api, fake.access_token())
        refusals = {
            kid: await ask_me(api, fake.sign(fake.claims(), key=key))
            for kid, key in skipped.items()
        }

    assert viewer["id"]
    for kid, response in refusals.items():
        assert response.status_code == 401, kid
        assert_refused(response)
    output = log.read_text()
    for kid in ("no-modulus", "number-modulus", "modulus-one"):
        assert f"skipping malformed JWKS key {kid!r}" in output
    assert "fetched 1 signing key(s)" in output


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b'{"keys": "none"}', "not a JWKS document", id="no list of keys"),
        pytest.param(b"[" * 60_000, "nested", id="nested too deeply for the parser"),
        pytest.param(
            json.dumps({"keys": [], "padding": "x" * 64 * 1024}).encode(),
            "answer larger than 65536 bytes",
            id="larger than 64 KB",
        ),
    ],
)
async def test_a_jwks_answer_that_is_no_key_set_is_503_not_401(
    settings: Settings, tmp_path: Path, clean_db: None, body: bytes, reason: str
) -> None:
    fake = FakeCognito()
    fake.jwks_body = body

    async with serve_trusting(fake, settings, tmp_path) as (api, log):
        response = await ask_me(api, fake.access_token())

    assert response.status_code == 503, response.text
    assert error_codes(response.json()) == ["SERVICE_UNAVAILABLE"]
    assert "www-authenticate" not in response.headers
    assert f"could not fetch signing keys from {fake.jwks_url}" in log.read_text()
    assert reason in log.read_text()


def _dripping(body: bytes, *, seconds: float = 10.0) -> Starlette:
    """An upstream that sends a space every 0.25 s for `seconds`, then `body`: each read
    comes well within the HTTP client's timeouts, the whole answer long after."""

    async def drip() -> AsyncIterator[bytes]:
        for _ in range(int(seconds / 0.25)):
            yield b" "
            await asyncio.sleep(0.25)
        yield body

    async def answer(request: Request) -> Response:
        return StreamingResponse(drip(), media_type="application/json")

    return Starlette(routes=[Route("/slow", answer)])


@pytest.mark.parametrize("upstream", ["AWS_COGNITO_JWKS_URL", "AWS_COGNITO_USERINFO_URL"])
async def test_an_upstream_answering_a_byte_at_a_time_is_given_up_within_seconds(
    cognito: FakeCognito, settings: Settings, tmp_path: Path, clean_db: None, upstream: str
) -> None:
    """A JWKS (503) or userInfo (no profile yet) answer is cut off after FETCH_SECONDS
    however slowly, not after each read's timeout times its bytes."""
    assert settings.database_url is not None
    sub = str(uuid.uuid4())
    if upstream == "AWS_COGNITO_JWKS_URL":
        body = json.dumps({"keys": [cognito.key.jwk]})
    else:
        body = json.dumps({"sub": sub, "email": "slow@example.com"})

    async with serving(_dripping(body.encode())) as slow:
        env = cognito.server_env(settings.database_url, tmp_path, **{upstream: f"{slow}/slow"})
        with running_server(env) as base:
            async with httpx.AsyncClient(base_url=base, timeout=30) as api:
                started = time.monotonic()
                response = await ask_me(api, cognito.access_token(sub=sub))
                elapsed = time.monotonic() - started

    assert elapsed < FETCH_SECONDS + 2, elapsed
    if upstream == "AWS_COGNITO_JWKS_URL":
        assert response.status_code == 503, response.text
    else:
        assert response.status_code == 200, response.text
        assert response.json()["data"]["me"]["email"] is None


async def test_a_compressed_userinfo_answer_is_refused_before_it_is_inflated() -> None:
    """64 KB of gzip inflate to 64 MB: the 16 KB bound of userInfo (and 64 KB of the
    keys) holds for the bytes in memory, not only for those on the wire."""
    bomb = gzip.compress(b'{"email": "bomb@example.com"' + b" " * 60_000_000 + b"}")
    assert len(bomb) < 64 * 1024

    async def answer(request: Request) -> Response:
        return Response(bomb, media_type="application/json", headers={"content-encoding": "gzip"})

    async with (
        serving(Starlette(routes=[Route("/userInfo", answer)])) as upstream,
        httpx.AsyncClient() as http,
    ):
        tracemalloc.start()
        try:
            profile = await UserInfoClient(f"{upstream}/userInfo", http).fetch("token")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    assert profile is None
    assert peak < 8_000_000, peak


async def test_userinfo_is_asked_at_most_once_per_retry_interval(
    settings: Settings, tmp_path: Path, clean_db: None
) -> None:
    """While it fails, userInfo is asked again only after POPMAP_USERINFO_RETRY_SECONDS
    (5 minutes by default), however often the person's access tokens come."""
    fake = FakeCognito(userinfo_status=503)
    sub = str(uuid.uuid4())

    async with serve_trusting(fake, settings, tmp_path) as (api, _log):
        first = await me(api, fake.access_token(sub=sub))
        again = [await me(api, fake.access_token(sub=sub)) for _ in range(3)]

    assert fake.hits["userinfo"] == 1
    assert first["email"] is None
    assert {viewer["id"] for viewer in again} == {first["id"]}


# --- an emulator's pool (cognito-local: local_...) ---------------------------------------


async def test_tokens_of_an_emulator_pool_are_accepted_with_its_issuer(
    cognito: FakeCognito, settings: Settings, tmp_path: Path, clean_db: None
) -> None:
    pool = "local_5S8LTNzW"
    issuer = f"{cognito.base_url}/{pool}"  # the JWKS URL derives from it
    assert settings.database_url is not None
    env = clean_env(
        DATABASE_URL=settings.database_url,
        POPMAP_DATA_DIR=str(tmp_path),
        AWS_COGNITO_USER_POOL_ID=pool,
        AWS_COGNITO_APP_CLIENT_ID=WEB_CLIENT,
        AWS_COGNITO_ISSUER=issuer,
    )
    sub = str(uuid.uuid4())
    with running_server(env) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as api:
            by_id = await me(
                api,
                cognito.id_token(
                    iss=issuer, sub=sub, email="ivy@example.com", **{"cognito:username": "ivy"}
                ),
            )
            by_access = await me(api, cognito.access_token(iss=issuer, sub=sub, username="ivy"))
            aws_pool_token = await ask_me(api, cognito.access_token())
            config = await api.post(
                "/graphql", json={"query": "{ authConfig { userPoolId region localDevelopment } }"}
            )

    assert by_id["email"] == by_access["email"] == "ivy@example.com"
    assert by_access["id"] == by_id["id"]
    assert_refused(aws_pool_token)
    assert config.json()["data"]["authConfig"] == {
        "userPoolId": pool,
        "region": None,
        "localDevelopment": False,
    }


# --- authConfig and the local identity provider -----------------------------------------


async def test_auth_config_gives_amplify_what_it_needs(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/graphql",
        json={
            "query": "{ authConfig { userPoolId userPoolClientId userPoolClientIds region domain"
            " scopes redirectSignIn redirectSignOut responseType localDevelopment } }"
        },
    )

    assert response.json()["data"]["authConfig"] == {
        "userPoolId": "us-east-1_PopmapTest1",
        "userPoolClientId": "web-client-id",
        "userPoolClientIds": ["web-client-id", "mobile-client-id"],
        "region": "us-east-1",
        "domain": "popmap-auth.auth.us-east-1.amazoncognito.com",
        "scopes": ["openid", "email", "profile"],
        "redirectSignIn": ["http://localhost:5173/callback"],
        "redirectSignOut": ["http://localhost:5173"],
        "responseType": "code",
        "localDevelopment": False,
    }


async def test_local_identity_provider_tokens_are_refused_while_a_pool_is_configured(
    client: httpx.AsyncClient, tmp_path: Any
) -> None:
    tokens = LocalIdentityProvider(tmp_path).mint("mallory@example.com", ["staff"])

    assert_refused(await ask_me(client, tokens["access_token"]))
    assert_refused(await ask_me(client, tokens["id_token"]))
