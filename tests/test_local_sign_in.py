"""Signing in from a browser app with no AWS account: the local identity provider's hosted
UI (`/oauth2/authorize`, `/login`, `/oauth2/token`, `/logout`, `/oauth2/userInfo`) and
user-pool API (`POST /` with `X-Amz-Target`), through the real `popmap-gql serve`.

Each test plays the browser's part as Amplify v6 does it (PKCE S256, the state echoed, the
form submitted) and checks the answers as Amplify and boto3 read them.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import html
import ipaddress
import json
import re
import secrets
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from popmap_gql.auth.local_idp import LOCAL_CLIENT_ID, LOCAL_POOL_ID, LocalIdentityProvider
from popmap_gql.config import Settings
from popmap_gql.db.orm import connection_credentials
from tests.processes import clean_env, running_server

CALLBACK = "http://localhost:5173/callback"  # the default AWS_COGNITO_REDIRECT_SIGN_IN
SIGNED_OUT = "http://localhost:5173"  # the default AWS_COGNITO_REDIRECT_SIGN_OUT
APP_ORIGIN = "http://localhost:5173"  # a default CORS_ALLOWED_ORIGINS entry
ADMIN = "aws.cognito.signin.user.admin"
SCOPES = f"openid email profile {ADMIN}"
ME = "{ me { id username email groups isStaff identityProvider } }"
TARGET = "AWSCognitoIdentityProviderService."
AMZ_JSON = "application/x-amz-json-1.1"


@pytest.fixture(scope="module")
def local_env(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """`serve` with no user pool, on the test database."""
    assert settings.database_url is not None
    data = tmp_path_factory.mktemp("local-sign-in")
    return clean_env(DATABASE_URL=settings.database_url, POPMAP_DATA_DIR=str(data))


@pytest.fixture(scope="module")
def base(local_env: dict[str, str]) -> Iterator[str]:
    with running_server(local_env) as url:
        yield url


# --- the browser's part -------------------------------------------------------------------


def pkce() -> tuple[str, str]:
    """A code verifier and its S256 challenge (RFC 7636), computed here, not by the server."""
    verifier = secrets.token_urlsafe(72)[:96]
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def authorize_params(challenge: str, **overrides: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "redirect_uri": CALLBACK,
        "response_type": "code",
        "client_id": LOCAL_CLIENT_ID,
        "identity_provider": "COGNITO",
        "scope": SCOPES,
        "state": "Xy12-eyJhcHAiOiJwb3BtYXAifQ",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        **overrides,
    }
    return {name: value for name, value in params.items() if value is not None}


def query_of(location: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


@dataclass
class SignedIn:
    code: str
    verifier: str
    state: str


def sign_in(
    base: str,
    email: str,
    *,
    staff: bool = False,
    groups: str = "",
    provider: str = "COGNITO",
    scope: str = SCOPES,
    nonce: str | None = None,
    http: Any = httpx,
) -> SignedIn:
    """authorize -> the sign-in page -> the form -> back at the app's callback (`http`:
    a client of its own, for HTTPS; by default httpx's functions)."""
    verifier, challenge = pkce()
    params = authorize_params(challenge, identity_provider=provider, scope=scope, nonce=nonce)
    to_login = http.get(f"{base}/oauth2/authorize", params=params)
    assert to_login.status_code == 302, to_login.text
    assert to_login.headers["location"].startswith("/login?")
    page = http.get(f"{base}{to_login.headers['location']}")
    assert page.status_code == 200
    assert "Development only" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    # Browsers apply form-action to the redirect after the form, which leaves for the app.
    assert "form-action" not in page.headers["content-security-policy"]
    fields = {
        name: html.unescape(value)
        for name, value in re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', page.text)
    }
    fields.update(email=email, groups=groups)
    if staff:
        fields["staff"] = "yes"
    back = http.post(f"{base}/login", data=fields)
    assert back.status_code == 302, back.text
    location = back.headers["location"]
    assert location.startswith(f"{CALLBACK}?")
    answer = query_of(location)
    return SignedIn(answer["code"], verifier, answer["state"])


def exchange(
    base: str, code: str, verifier: str, http: Any = httpx, **overrides: str
) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": LOCAL_CLIENT_ID,
        "redirect_uri": CALLBACK,
        "code_verifier": verifier,
        **overrides,
    }
    response: httpx.Response = http.post(
        f"{base}/oauth2/token", data=form, headers={"x-amz-user-agent": "test"}
    )
    return response


def tokens_of(base: str, email: str, **options: Any) -> dict[str, Any]:
    signed_in = sign_in(base, email, **options)
    response = exchange(base, signed_in.code, signed_in.verifier)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def ask_me(base: str, token: str, http: Any = httpx) -> dict[str, Any]:
    response = http.post(
        f"{base}/graphql", json={"query": ME}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    me: dict[str, Any] = response.json()["data"]["me"]
    return me


def user_pool(base: str, operation: str, body: dict[str, Any]) -> httpx.Response:
    """A user-pool API call as Amplify's client sends it."""
    return httpx.post(
        f"{base}/",
        content=json.dumps(body),
        headers={
            "content-type": AMZ_JSON,
            "x-amz-target": f"{TARGET}{operation}",
            "x-amz-user-agent": "aws-amplify/6.15.4 auth/4 framework/1",
            "cache-control": "no-store",
        },
    )


def refresh(base: str, refresh_token: str) -> httpx.Response:
    """The user-pool API's refresh of `refresh_token`, for the local app client."""
    return user_pool(
        base,
        "GetTokensFromRefreshToken",
        {"ClientId": LOCAL_CLIENT_ID, "RefreshToken": refresh_token},
    )


def refused(response: httpx.Response, kind: str) -> str:
    """The message of an AWS JSON-protocol error of this kind."""
    assert response.status_code == 400, response.text
    assert response.headers["x-amzn-errortype"].startswith(kind)
    assert response.json()["__type"] == kind
    message: str = response.json()["message"]
    return message


def oauth_error(response: httpx.Response, error: str) -> None:
    assert response.status_code in (400, 401), response.text
    assert response.json()["error"] == error
    assert response.json()["error_description"] == response.json()["error_message"]


def claims(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


# --- point 1: the hosted UI ---------------------------------------------------------------


def test_hosted_ui_sign_in_gives_tokens_the_api_accepts(base: str) -> None:
    signed_in = sign_in(base, "Ana@Example.com", staff=True, groups="editors")
    assert signed_in.state == "Xy12-eyJhcHAiOiJwb3BtYXAifQ"  # echoed as sent

    response = exchange(base, signed_in.code, signed_in.verifier)

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "id_token", "refresh_token", "expires_in", "token_type"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    access, identity = claims(body["access_token"]), claims(body["id_token"])
    assert access["origin_jti"] == identity["origin_jti"]  # what makes Amplify revoke
    assert access["scope"] == SCOPES
    assert identity["email"] == "ana@example.com"
    by_id = ask_me(base, body["id_token"])
    by_access = ask_me(base, body["access_token"])
    assert by_id["email"] == "ana@example.com"
    assert by_id["groups"] == ["staff", "editors"]
    assert by_id["isStaff"] is True
    assert by_id["identityProvider"] == "Cognito"
    assert by_access["id"] == by_id["id"]


def test_fake_facebook_yields_a_federated_user(base: str) -> None:
    native = tokens_of(base, "fede@example.com")
    federated = tokens_of(base, "fede@example.com", provider="Facebook")

    identity = claims(federated["id_token"])
    assert identity["cognito:username"].startswith("Facebook_")
    [link] = identity["identities"]
    assert link["providerName"] == "Facebook"
    assert link["userId"].isdigit()
    assert f"{LOCAL_POOL_ID}_Facebook" in identity["cognito:groups"]
    me = ask_me(base, federated["id_token"])
    assert me["identityProvider"] == "Facebook"
    assert me["username"].startswith("Facebook_")
    # Another user of the pool than the native one with the same email, as in Cognito.
    assert me["id"] != ask_me(base, native["id_token"])["id"]


def test_a_code_is_single_use(base: str) -> None:
    signed_in = sign_in(base, "once@example.com")
    assert exchange(base, signed_in.code, signed_in.verifier).status_code == 200

    again = exchange(base, signed_in.code, signed_in.verifier)

    oauth_error(again, "invalid_grant")


def test_a_wrong_code_verifier_is_refused_and_uses_up_the_code(base: str) -> None:
    signed_in = sign_in(base, "pkce@example.com")
    other_verifier, _ = pkce()

    wrong = exchange(base, signed_in.code, other_verifier)
    right_but_late = exchange(base, signed_in.code, signed_in.verifier)

    oauth_error(wrong, "invalid_grant")
    assert "code_verifier" in wrong.json()["error_description"]
    oauth_error(right_but_late, "invalid_grant")


def test_a_missing_code_verifier_is_refused(base: str) -> None:
    signed_in = sign_in(base, "noverifier@example.com")
    form = {
        "grant_type": "authorization_code",
        "code": signed_in.code,
        "client_id": LOCAL_CLIENT_ID,
        "redirect_uri": CALLBACK,
    }

    response = httpx.post(f"{base}/oauth2/token", data=form)

    oauth_error(response, "invalid_request")


def test_an_expired_code_is_refused(base: str, local_env: dict[str, str]) -> None:
    signed_in = sign_in(base, "late@example.com")
    code_hash = hashlib.sha256(signed_in.code.encode()).hexdigest()

    async def age() -> None:
        connection = await asyncpg.connect(**connection_credentials(local_env["DATABASE_URL"]))
        try:
            await connection.execute(
                "UPDATE local_idp_code SET expires_at = now() - interval '1 second'"
                " WHERE code_hash = $1",
                code_hash,
            )
        finally:
            await connection.close()

    asyncio.run(age())  # as if the 5 minutes had passed

    response = exchange(base, signed_in.code, signed_in.verifier)

    oauth_error(response, "invalid_grant")
    assert "expired" in response.json()["error_description"]


def test_the_redirect_uri_must_be_the_one_the_code_was_issued_for(base: str) -> None:
    signed_in = sign_in(base, "redirect@example.com")

    response = exchange(
        base, signed_in.code, signed_in.verifier, redirect_uri="http://localhost:5173/other"
    )

    oauth_error(response, "invalid_grant")


def test_a_wrong_client_is_refused(base: str) -> None:
    signed_in = sign_in(base, "client@example.com")
    _verifier, challenge = pkce()

    at_token = exchange(base, signed_in.code, signed_in.verifier, client_id="someone-else")
    with_secret = httpx.post(
        f"{base}/oauth2/token",
        data={"grant_type": "authorization_code", "code": signed_in.code},
        auth=(LOCAL_CLIENT_ID, "a-secret"),
    )
    at_authorize = httpx.get(
        f"{base}/oauth2/authorize", params=authorize_params(challenge, client_id="someone-else")
    )

    oauth_error(at_token, "invalid_client")
    oauth_error(with_secret, "invalid_client")
    assert with_secret.status_code == 401
    assert at_authorize.status_code == 400  # a page: the redirect URI cannot be trusted
    assert "location" not in at_authorize.headers
    # The refused attempts did not use up the code.
    assert exchange(base, signed_in.code, signed_in.verifier).status_code == 200


def test_a_token_request_missing_the_redirect_uri_does_not_use_up_the_code(base: str) -> None:
    signed_in = sign_in(base, "no-redirect@example.com")
    form = {
        "grant_type": "authorization_code",
        "code": signed_in.code,
        "client_id": LOCAL_CLIENT_ID,
        "code_verifier": signed_in.verifier,
    }

    missing = httpx.post(f"{base}/oauth2/token", data=form)
    complete = exchange(base, signed_in.code, signed_in.verifier)

    oauth_error(missing, "invalid_request")
    assert missing.json()["error_description"] == "code and redirect_uri are required"
    assert complete.status_code == 200, complete.text


@pytest.mark.parametrize(
    ("authorization", "description"),
    [
        ("Bearer abc", "another scheme than Basic"),
        ("Basic !!!", "Basic credentials that are not base64"),
        (f"Basic {base64.b64encode(bytes([0xFF, 0xFE, 0x3A])).decode()}", "not UTF-8"),
    ],
)
def test_the_token_endpoint_refuses_unreadable_client_credentials_with_401(
    base: str, authorization: str, description: str
) -> None:
    response = httpx.post(
        f"{base}/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": "x"},
        headers={"authorization": authorization},
    )

    assert response.status_code == 401, description
    oauth_error(response, "invalid_client")


@pytest.mark.parametrize(
    ("form", "error"),
    [
        ({"grant_type": "client_credentials"}, "unauthorized_client"),
        ({"grant_type": "password", "username": "x", "password": "y"}, "unsupported_grant_type"),
        ({}, "unsupported_grant_type"),
        ({"grant_type": "refresh_token"}, "invalid_request"),
        ({"grant_type": "refresh_token", "refresh_token": ""}, "invalid_request"),
    ],
)
def test_the_token_endpoint_refuses_other_grants_and_missing_parameters(
    base: str, form: dict[str, str], error: str
) -> None:
    response = httpx.post(f"{base}/oauth2/token", data={**form, "client_id": LOCAL_CLIENT_ID})

    assert response.status_code == 400
    oauth_error(response, error)


def test_a_foreign_redirect_uri_is_refused_on_a_page(base: str) -> None:
    _, challenge = pkce()
    for foreign in ("https://evil.example/callback", "http://localhost:5173/callback/x", ""):
        response = httpx.get(
            f"{base}/oauth2/authorize", params=authorize_params(challenge, redirect_uri=foreign)
        )

        assert response.status_code == 400
        assert "location" not in response.headers
        assert "redirect_mismatch" in response.text


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "too-short"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "openid popmap/moderate"}, "invalid_scope"),
        ({"identity_provider": "Google"}, "invalid_request"),
        ({"idp_identifier": "example.com"}, "invalid_request"),
    ],
)
def test_authorize_refusals_go_back_to_the_app_with_the_state(
    base: str, overrides: dict[str, str | None], error: str
) -> None:
    _, challenge = pkce()

    response = httpx.get(
        f"{base}/oauth2/authorize", params=authorize_params(challenge, **overrides)
    )

    assert response.status_code == 302
    location = response.headers["location"]
    assert location.startswith(f"{CALLBACK}?")
    answer = query_of(location)
    assert answer["error"] == error
    assert answer["error_description"]
    assert answer["state"] == "Xy12-eyJhcHAiOiJwb3BtYXAifQ"
    assert "code" not in answer


def test_the_sign_in_page_refuses_a_bad_email_and_escapes_it(base: str) -> None:
    _, challenge = pkce()
    fields = {**authorize_params(challenge), "email": '"><script>x</script>', "groups": ""}

    response = httpx.post(f"{base}/login", data=fields)

    assert response.status_code == 400
    assert "<script>x" not in response.text
    assert "&lt;script&gt;" in response.text
    assert "location" not in response.headers


def test_a_repeated_parameter_is_refused(base: str) -> None:
    _, challenge = pkce()
    params = httpx.QueryParams(authorize_params(challenge)).add(
        "redirect_uri", "https://evil.example/"
    )

    response = httpx.get(f"{base}/oauth2/authorize", params=params)

    assert response.status_code == 400
    assert "location" not in response.headers


def test_an_overlong_parameter_is_refused_on_a_page(base: str) -> None:
    _, challenge = pkce()

    response = httpx.get(
        f"{base}/oauth2/authorize", params=authorize_params(challenge, state="s" * 2049)
    )

    assert response.status_code == 400
    assert "location" not in response.headers
    assert "parameter state is too long" in response.text


@pytest.mark.parametrize("name", ["nonce", "email", "state"])
def test_a_nul_character_in_a_parameter_is_refused_on_a_page(base: str, name: str) -> None:
    """Not a 500 from PostgreSQL, whose text and jsonb cannot hold one."""
    _, challenge = pkce()
    fields = {**authorize_params(challenge), "email": "nul@example.com", "groups": ""}

    response = httpx.post(f"{base}/login", data={**fields, name: "a\x00b@example.com"})

    assert response.status_code == 400, response.text
    assert "location" not in response.headers
    assert f"parameter {name} holds a NUL character" in response.text


def test_the_sign_in_page_refuses_what_authorize_refuses(base: str) -> None:
    """Opened directly, not through /oauth2/authorize: the same checks, the same answers."""
    _, challenge = pkce()

    wrong_client = httpx.get(
        f"{base}/login", params=authorize_params(challenge, client_id="someone-else")
    )
    no_pkce = httpx.get(f"{base}/login", params=authorize_params(challenge, code_challenge=None))

    assert wrong_client.status_code == 400
    assert "location" not in wrong_client.headers
    assert f"client_id must be {LOCAL_CLIENT_ID}" in wrong_client.text
    assert no_pkce.status_code == 302
    answer = query_of(no_pkce.headers["location"])
    assert answer["error"] == "invalid_request"
    assert answer["state"] == "Xy12-eyJhcHAiOiJwb3BtYXAifQ"


def _form_body(fields: dict[str, str]) -> bytes:
    return str(httpx.QueryParams(fields)).encode()


def _bodies_that_are_not_a_small_form(challenge: str) -> dict[str, tuple[str, bytes, str]]:
    """(content type, body, the problem named) of bodies the form endpoints refuse."""
    fields = {**authorize_params(challenge), "email": "form@example.com"}
    return {
        "JSON": ("application/json", json.dumps(fields).encode(), "x-www-form-urlencoded"),
        "too large": (
            "application/x-www-form-urlencoded",
            _form_body({**fields, "groups": "g" * 16 * 1024}),
            "the body is too large",
        ),
        "not UTF-8": (
            "application/x-www-form-urlencoded",
            _form_body(fields) + b"&groups=\xff",
            "the body is not a form",
        ),
        "51 fields": (
            "application/x-www-form-urlencoded",
            _form_body({**fields, **{f"extra{n}": "x" for n in range(51 - len(fields))}}),
            "the body is not a form",
        ),
    }


@pytest.mark.parametrize("case", ["JSON", "too large", "not UTF-8", "51 fields"])
def test_the_sign_in_form_refuses_a_body_that_is_not_a_small_form(base: str, case: str) -> None:
    _, challenge = pkce()
    content_type, body, problem = _bodies_that_are_not_a_small_form(challenge)[case]

    response = httpx.post(f"{base}/login", content=body, headers={"content-type": content_type})

    assert response.status_code == 400
    assert "location" not in response.headers  # no code, and not back to the app
    assert problem in response.text
    assert response.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize("case", ["JSON", "too large", "not UTF-8", "51 fields"])
def test_the_token_and_revoke_endpoints_refuse_a_body_that_is_not_a_small_form(
    base: str, case: str
) -> None:
    _, challenge = pkce()
    content_type, body, problem = _bodies_that_are_not_a_small_form(challenge)[case]

    for path in ("/oauth2/token", "/oauth2/revoke"):
        response = httpx.post(f"{base}{path}", content=body, headers={"content-type": content_type})

        assert response.status_code == 400, path
        oauth_error(response, "invalid_request")
        assert problem in response.json()["error_description"]


def test_the_sign_in_form_checks_the_authorize_parameters_again(base: str) -> None:
    """The form carries them as hidden fields, so a client may change them."""
    _, challenge = pkce()
    fields = {**authorize_params(challenge), "email": "again@example.com", "groups": ""}

    wrong_client = httpx.post(f"{base}/login", data={**fields, "client_id": "someone-else"})
    no_pkce = httpx.post(f"{base}/login", data={**fields, "code_challenge_method": "plain"})

    assert wrong_client.status_code == 400
    assert "location" not in wrong_client.headers
    assert f"client_id must be {LOCAL_CLIENT_ID}" in wrong_client.text
    assert no_pkce.status_code == 302
    answer = query_of(no_pkce.headers["location"])
    assert answer["error"] == "invalid_request"
    assert "code" not in answer


@pytest.mark.parametrize(
    ("staff", "groups"),
    [
        (False, "editors, <b>bold</b>"),
        (False, "g" * 129),
        (False, ",".join(f"group{n}" for n in range(21))),
        (True, ",".join(f"group{n}" for n in range(20))),  # with the staff group, 21
    ],
)
def test_the_sign_in_page_refuses_bad_groups_and_keeps_the_email(
    base: str, staff: bool, groups: str
) -> None:
    _, challenge = pkce()
    fields = {**authorize_params(challenge), "email": "gus@example.com", "groups": groups}
    if staff:
        fields["staff"] = "yes"

    response = httpx.post(f"{base}/login", data=fields)

    assert response.status_code == 400
    assert "location" not in response.headers
    assert "Groups are up to 20 names" in response.text
    assert 'value="gus@example.com"' in response.text  # the form again, filled in
    assert "<b>bold" not in response.text


def test_logout_goes_only_to_an_allowed_sign_out_url(base: str) -> None:
    allowed = httpx.get(
        f"{base}/logout", params={"client_id": LOCAL_CLIENT_ID, "logout_uri": SIGNED_OUT}
    )
    foreign = httpx.get(
        f"{base}/logout",
        params={"client_id": LOCAL_CLIENT_ID, "logout_uri": "https://evil.example/"},
    )
    wrong_client = httpx.get(
        f"{base}/logout", params={"client_id": "someone-else", "logout_uri": SIGNED_OUT}
    )

    assert allowed.status_code == 302
    assert allowed.headers["location"] == SIGNED_OUT
    assert foreign.status_code == 400
    assert "location" not in foreign.headers
    assert wrong_client.status_code == 400
    assert "location" not in wrong_client.headers


def test_logout_refuses_a_repeated_parameter_on_a_page(base: str) -> None:
    params = httpx.QueryParams({"client_id": LOCAL_CLIENT_ID, "logout_uri": SIGNED_OUT}).add(
        "logout_uri", "https://evil.example/"
    )

    response = httpx.get(f"{base}/logout", params=params)

    assert response.status_code == 400
    assert "location" not in response.headers
    assert "logout_uri is repeated" in response.text
    assert response.headers["x-frame-options"] == "DENY"


def test_logout_with_a_redirect_uri_signs_in_again(base: str) -> None:
    _, challenge = pkce()
    params = {**authorize_params(challenge), "client_id": LOCAL_CLIENT_ID}

    again = httpx.get(f"{base}/logout", params=params)
    to_login = httpx.get(f"{base}{again.headers['location']}")
    nowhere = httpx.get(f"{base}/logout", params={"client_id": LOCAL_CLIENT_ID})

    assert again.status_code == 302
    assert again.headers["location"].startswith("/oauth2/authorize?")
    assert query_of(again.headers["location"]) == params
    assert to_login.status_code == 302
    assert to_login.headers["location"].startswith("/login?")
    assert nowhere.status_code == 400
    assert "location" not in nowhere.headers
    assert "logout needs logout_uri" in nowhere.text


def test_userinfo_answers_the_person_of_an_access_token(base: str) -> None:
    tokens = tokens_of(base, "info@example.com", provider="Facebook")

    answer = httpx.get(
        f"{base}/oauth2/userInfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    with_id_token = httpx.get(
        f"{base}/oauth2/userInfo", headers={"Authorization": f"Bearer {tokens['id_token']}"}
    )
    anonymous = httpx.get(f"{base}/oauth2/userInfo")

    assert answer.status_code == 200, answer.text
    info = answer.json()
    assert info["email"] == "info@example.com"
    assert info["email_verified"] == "true"
    assert info["sub"] == claims(tokens["access_token"])["sub"]
    assert info["username"].startswith("Facebook_")
    assert json.loads(info["identities"])[0]["providerName"] == "Facebook"
    assert with_id_token.status_code == 401
    assert with_id_token.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert anonymous.status_code == 401


def test_without_the_openid_scope_there_is_no_id_token_and_no_userinfo(base: str) -> None:
    """As with Cognito: no ID token without openid, and userInfo needs that scope; the
    user-pool API, which needs the admin scope only, still answers."""
    tokens = tokens_of(base, "no-openid@example.com", scope=ADMIN)

    info = httpx.get(
        f"{base}/oauth2/userInfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    user = user_pool(base, "GetUser", {"AccessToken": tokens["access_token"]})
    refreshed = refresh(base, tokens["refresh_token"])

    assert set(tokens) == {"access_token", "refresh_token", "expires_in", "token_type"}
    assert claims(tokens["access_token"])["scope"] == ADMIN
    assert info.status_code == 403
    assert info.headers["www-authenticate"].startswith('Bearer error="insufficient_scope"')
    assert info.json()["error"] == "insufficient_scope"
    assert user.status_code == 200, user.text
    assert {a["Name"]: a["Value"] for a in user.json()["UserAttributes"]}["email"] == (
        "no-openid@example.com"
    )
    assert refreshed.status_code == 200, refreshed.text
    assert set(refreshed.json()["AuthenticationResult"]) == {
        "AccessToken",
        "ExpiresIn",
        "TokenType",
    }
    assert (
        ask_me(base, refreshed.json()["AuthenticationResult"]["AccessToken"])["username"]
        == (claims(tokens["access_token"])["username"])
    )


def test_an_expired_access_token_is_refused_as_expired(
    base: str, local_env: dict[str, str]
) -> None:
    """Signed with the key `serve` trusts (the data folder's), an hour past its expiry."""
    provider = LocalIdentityProvider(Path(local_env["POPMAP_DATA_DIR"]))
    expired = provider.mint("expired@example.com", [], ttl_seconds=-3600, scopes=("openid", ADMIN))[
        "access_token"
    ]

    got = user_pool(base, "GetUser", {"AccessToken": expired})
    info = httpx.get(f"{base}/oauth2/userInfo", headers={"Authorization": f"Bearer {expired}"})

    assert refused(got, "NotAuthorizedException") == "Access Token has expired"
    assert info.status_code == 401
    assert info.headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="Access Token has expired"'
    )


def test_a_token_of_another_data_folders_key_is_refused(base: str, tmp_path: Path) -> None:
    """Shaped as the local provider's tokens are, signed with a key `serve` does not hold."""
    stranger = LocalIdentityProvider(tmp_path).mint(
        "stranger@example.com", ["staff"], scopes=("openid", ADMIN)
    )

    graphql = httpx.post(
        f"{base}/graphql",
        json={"query": ME},
        headers={"Authorization": f"Bearer {stranger['id_token']}"},
    )
    got = user_pool(base, "GetUser", {"AccessToken": stranger["access_token"]})

    assert graphql.status_code == 401
    assert graphql.headers["www-authenticate"] == (
        'Bearer error="invalid_token", error_description="unknown signing key"'
    )
    assert refused(got, "NotAuthorizedException") == "Invalid Access Token"


def test_the_nonce_of_the_sign_in_is_in_its_id_token(base: str) -> None:
    tokens = tokens_of(base, "nonce@example.com", nonce="n-0S6_WzA2Mj")

    refreshed = refresh(base, tokens["refresh_token"])

    assert claims(tokens["id_token"])["nonce"] == "n-0S6_WzA2Mj"
    assert "nonce" not in claims(tokens["access_token"])
    # A refresh is no new authentication request: no nonce, as OIDC Core 12.2 says.
    assert "nonce" not in claims(refreshed.json()["AuthenticationResult"]["IdToken"])


def test_the_jwks_verifies_the_tokens(base: str) -> None:
    tokens = tokens_of(base, "keys@example.com")
    keys = httpx.get(f"{base}/.well-known/jwks.json").json()

    [key] = keys["keys"]
    verified = jwt.decode(
        tokens["id_token"],
        jwt.PyJWK(key).key,
        algorithms=["RS256"],
        audience=LOCAL_CLIENT_ID,
        issuer=claims(tokens["id_token"])["iss"],
    )

    assert verified["email"] == "keys@example.com"
    assert "d" not in key  # the public half only


def test_auth_config_names_the_local_user_pool_endpoint(base: str) -> None:
    response = httpx.post(
        f"{base}/graphql",
        json={
            "query": "{ authConfig { userPoolId region domain userPoolEndpoint"
            " identityProviders localDevelopment } }"
        },
    )

    assert response.json()["data"]["authConfig"] == {
        "userPoolId": LOCAL_POOL_ID,
        "region": "us-east-1",
        "domain": None,  # Amplify builds https://<domain>: over plain HTTP there is none
        "userPoolEndpoint": f"{base}/",
        "identityProviders": ["COGNITO", "Facebook"],
        "localDevelopment": True,
    }


# --- point 2: the user-pool API -----------------------------------------------------------


def test_get_tokens_from_refresh_token_gives_tokens_the_api_accepts(base: str) -> None:
    tokens = tokens_of(base, "refresh@example.com", staff=True)

    response = refresh(base, tokens["refresh_token"])

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == AMZ_JSON
    result = response.json()["AuthenticationResult"]
    assert set(result) == {"AccessToken", "IdToken", "ExpiresIn", "TokenType"}
    new_access = claims(result["AccessToken"])
    assert new_access["origin_jti"] == claims(tokens["access_token"])["origin_jti"]
    assert new_access["jti"] != claims(tokens["access_token"])["jti"]
    me = ask_me(base, result["IdToken"])
    assert me["email"] == "refresh@example.com"
    assert me["isStaff"] is True
    assert ask_me(base, result["AccessToken"])["id"] == me["id"]


def test_initiate_auth_refresh_token_auth_and_the_token_endpoint_refresh(base: str) -> None:
    tokens = tokens_of(base, "older-amplify@example.com")

    initiated = user_pool(
        base,
        "InitiateAuth",
        {
            "AuthFlow": "REFRESH_TOKEN_AUTH",
            "ClientId": LOCAL_CLIENT_ID,
            "AuthParameters": {"REFRESH_TOKEN": tokens["refresh_token"]},
        },
    )
    by_grant = httpx.post(
        f"{base}/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": LOCAL_CLIENT_ID,
            "refresh_token": tokens["refresh_token"],
        },
    )
    password = user_pool(
        base,
        "InitiateAuth",
        {
            "AuthFlow": "USER_PASSWORD_AUTH",
            "ClientId": LOCAL_CLIENT_ID,
            "AuthParameters": {"USERNAME": "x", "PASSWORD": "y"},
        },
    )

    assert initiated.status_code == 200, initiated.text
    assert initiated.json()["ChallengeParameters"] == {}
    assert ask_me(base, initiated.json()["AuthenticationResult"]["IdToken"])["email"] == (
        "older-amplify@example.com"
    )
    assert by_grant.status_code == 200, by_grant.text
    assert "refresh_token" not in by_grant.json()  # no rotation, as Cognito's default
    assert (
        ask_me(base, by_grant.json()["access_token"])["username"]
        == claims(tokens["access_token"])["username"]
    )
    refused(password, "InvalidParameterException")


def test_a_revoked_refresh_token_is_refused_everywhere(base: str) -> None:
    tokens = tokens_of(base, "revoked@example.com")

    revoked = user_pool(
        base, "RevokeToken", {"ClientId": LOCAL_CLIENT_ID, "Token": tokens["refresh_token"]}
    )

    assert revoked.status_code == 200
    assert revoked.json() == {}
    message = refused(
        refresh(base, tokens["refresh_token"]),
        "NotAuthorizedException",
    )
    assert message == "Refresh Token has been revoked"
    refused(
        user_pool(
            base,
            "InitiateAuth",
            {
                "AuthFlow": "REFRESH_TOKEN_AUTH",
                "ClientId": LOCAL_CLIENT_ID,
                "AuthParameters": {"REFRESH_TOKEN": tokens["refresh_token"]},
            },
        ),
        "NotAuthorizedException",
    )
    by_grant = httpx.post(
        f"{base}/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": LOCAL_CLIENT_ID,
            "refresh_token": tokens["refresh_token"],
        },
    )
    oauth_error(by_grant, "invalid_grant")
    # The sign-in's access tokens are revoked with it for the user-pool API.
    got = user_pool(base, "GetUser", {"AccessToken": tokens["access_token"]})
    assert refused(got, "NotAuthorizedException") == "Access Token has been revoked"


def test_oauth2_revoke_revokes_the_refresh_token(base: str) -> None:
    tokens = tokens_of(base, "revoke-endpoint@example.com")

    response = httpx.post(
        f"{base}/oauth2/revoke",
        data={"token": tokens["refresh_token"], "client_id": LOCAL_CLIENT_ID},
    )

    assert response.status_code == 200
    refreshed = refresh(base, tokens["refresh_token"])
    refused(refreshed, "NotAuthorizedException")


def test_oauth2_revoke_refuses_another_client_or_no_token_and_revokes_nothing(base: str) -> None:
    tokens = tokens_of(base, "revoke-refused@example.com")

    other_client = httpx.post(
        f"{base}/oauth2/revoke", data={"token": tokens["refresh_token"], "client_id": "someone"}
    )
    with_secret = httpx.post(
        f"{base}/oauth2/revoke",
        data={"token": tokens["refresh_token"]},
        auth=(LOCAL_CLIENT_ID, "a-secret"),
    )
    no_token = httpx.post(f"{base}/oauth2/revoke", data={"client_id": LOCAL_CLIENT_ID})
    unknown = httpx.post(
        f"{base}/oauth2/revoke", data={"token": "no-such-token", "client_id": LOCAL_CLIENT_ID}
    )

    oauth_error(other_client, "invalid_client")
    oauth_error(with_secret, "invalid_client")
    # RFC 7009 section 2.2.1 and RFC 6749 section 5.2: authenticated with HTTP Basic, 401
    assert (other_client.status_code, with_secret.status_code) == (400, 401)
    oauth_error(no_token, "invalid_request")
    assert unknown.status_code == 200  # RFC 7009: tells nothing about tokens
    still = refresh(base, tokens["refresh_token"])
    assert still.status_code == 200, still.text


def test_get_user_lists_the_attributes(base: str) -> None:
    tokens = tokens_of(base, "attributes@example.com")

    response = user_pool(base, "GetUser", {"AccessToken": tokens["access_token"]})

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["Username"] == claims(tokens["access_token"])["username"]
    assert {a["Name"]: a["Value"] for a in body["UserAttributes"]} == {
        "sub": claims(tokens["access_token"])["sub"],
        "email": "attributes@example.com",
        "email_verified": "true",
    }


def test_get_user_needs_the_admin_scope_and_an_access_token(base: str) -> None:
    """As with Cognito: Amplify's fetchUserAttributes needs aws.cognito.signin.user.admin
    among the scopes the app asks for."""
    tokens = tokens_of(base, "narrow@example.com", scope="openid email")

    narrow = user_pool(base, "GetUser", {"AccessToken": tokens["access_token"]})
    id_token = user_pool(base, "GetUser", {"AccessToken": tokens["id_token"]})
    forged = user_pool(base, "GetUser", {"AccessToken": tokens["access_token"][:-6] + "AAAAAA"})

    assert refused(narrow, "NotAuthorizedException") == "Access Token does not have required scopes"
    assert refused(id_token, "NotAuthorizedException") == "Invalid Access Token"
    assert refused(forged, "NotAuthorizedException") == "Invalid Access Token"


def test_global_sign_out_revokes_every_sign_in_of_that_person(base: str) -> None:
    laptop = tokens_of(base, "global@example.com")
    phone = tokens_of(base, "global@example.com")
    someone_else = tokens_of(base, "bystander@example.com")

    response = user_pool(base, "GlobalSignOut", {"AccessToken": laptop["access_token"]})

    assert response.status_code == 200
    assert response.json() == {}
    for device in (laptop, phone):
        refreshed = refresh(base, device["refresh_token"])
        refused(refreshed, "NotAuthorizedException")
    still = refresh(base, someone_else["refresh_token"])
    assert still.status_code == 200
    again = user_pool(base, "GlobalSignOut", {"AccessToken": phone["access_token"]})
    refused(again, "NotAuthorizedException")


def test_user_pool_api_refusals_are_aws_json_errors(base: str) -> None:
    unknown = user_pool(base, "AdminDeleteUser", {"UserPoolId": LOCAL_POOL_ID})
    wrong_client = user_pool(
        base, "GetTokensFromRefreshToken", {"ClientId": "someone", "RefreshToken": "x"}
    )
    unknown_token = refresh(base, "x")
    missing = user_pool(base, "GetUser", {})
    not_json = httpx.post(
        f"{base}/",
        content=b"{nope",
        headers={"content-type": AMZ_JSON, "x-amz-target": f"{TARGET}GetUser"},
    )
    no_target = httpx.post(f"{base}/", content=b"{}", headers={"content-type": AMZ_JSON})

    refused(unknown, "UnknownOperationException")
    refused(wrong_client, "ResourceNotFoundException")
    assert refused(unknown_token, "NotAuthorizedException") == "Invalid Refresh Token"
    refused(missing, "InvalidParameterException")
    refused(not_json, "SerializationException")
    refused(no_target, "UnknownOperationException")


def test_user_pool_api_refuses_bad_bodies_and_parameters_with_aws_json_errors(
    base: str,
) -> None:
    def raw(body: bytes, content_type: str = AMZ_JSON) -> httpx.Response:
        return httpx.post(
            f"{base}/",
            content=body,
            headers={"content-type": content_type, "x-amz-target": f"{TARGET}GetUser"},
        )

    tokens = tokens_of(base, "parameters@example.com")

    answers = {
        "plain JSON": raw(b"{}", "application/json"),
        "too large": raw(json.dumps({"AccessToken": "x" * 64 * 1024}).encode()),
        "an array": raw(b"[]"),
        "long token": user_pool(base, "GetUser", {"AccessToken": "x" * (16 * 1024 + 1)}),
        "a secret": user_pool(
            base,
            "GetTokensFromRefreshToken",
            {
                "ClientId": LOCAL_CLIENT_ID,
                "ClientSecret": "s",
                "RefreshToken": tokens["refresh_token"],
            },
        ),
        "parameters not an object": user_pool(
            base,
            "InitiateAuth",
            {"AuthFlow": "REFRESH_TOKEN_AUTH", "ClientId": LOCAL_CLIENT_ID, "AuthParameters": "x"},
        ),
        "revoke for another client": user_pool(
            base, "RevokeToken", {"ClientId": "someone", "Token": tokens["refresh_token"]}
        ),
        "revoke an unknown token": user_pool(
            base, "RevokeToken", {"ClientId": LOCAL_CLIENT_ID, "Token": "no-such-token"}
        ),
    }

    assert refused(answers["plain JSON"], "SerializationException") == (
        f"Content-Type must be {AMZ_JSON}"
    )
    assert refused(answers["too large"], "SerializationException") == "the body is too large"
    assert refused(answers["an array"], "SerializationException") == (
        "the body must be a JSON object"
    )
    assert refused(answers["long token"], "InvalidParameterException") == (
        "AccessToken is too long"
    )
    assert refused(answers["a secret"], "NotAuthorizedException") == (
        f"Client {LOCAL_CLIENT_ID} has no secret."
    )
    assert refused(answers["parameters not an object"], "InvalidParameterException") == (
        "AuthParameters is required"
    )
    assert refused(answers["revoke for another client"], "UnauthorizedException") == (
        "Invalid client"
    )
    assert refused(answers["revoke an unknown token"], "UnsupportedTokenTypeException") == (
        "Invalid refresh token"
    )
    # None of it revoked the sign-in.
    still = refresh(base, tokens["refresh_token"])
    assert still.status_code == 200, still.text


def test_user_pool_api_refuses_json_nested_too_deeply_for_the_parser(base: str) -> None:
    response = httpx.post(
        f"{base}/",
        content=b"[" * 60_000,  # within the 64 KB a body may have
        headers={"content-type": AMZ_JSON, "x-amz-target": f"{TARGET}GetUser"},
    )

    assert refused(response, "SerializationException") == "the body is not JSON"


@pytest.mark.parametrize(
    ("operation", "body"),
    [
        ("RevokeToken", {"ClientId": LOCAL_CLIENT_ID, "Token": "\ud800"}),
        ("GetTokensFromRefreshToken", {"ClientId": LOCAL_CLIENT_ID, "RefreshToken": "\ud800"}),
        ("GetUser", {"AccessToken": "a.b.\ud800"}),
    ],
)
def test_user_pool_api_refuses_a_string_that_is_no_unicode_text(
    base: str, operation: str, body: dict[str, str]
) -> None:
    """JSON can escape half of a UTF-16 pair (\\ud800), which no UTF-8 can encode."""
    answer = user_pool(base, operation, body)

    assert "is not Unicode text" in refused(answer, "InvalidParameterException")


def test_the_user_pool_api_answers_boto3(base: str) -> None:
    """The real AWS SDK, unsigned as for these operations, given this server as its
    endpoint: the wire format is Cognito's."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import ClientError

    tokens = tokens_of(base, "boto@example.com")
    idp = boto3.client(
        "cognito-idp",
        region_name="us-east-1",
        endpoint_url=base,
        config=Config(signature_version=UNSIGNED, retries={"max_attempts": 1}),
    )

    user = idp.get_user(AccessToken=tokens["access_token"])
    refreshed = idp.get_tokens_from_refresh_token(
        ClientId=LOCAL_CLIENT_ID, RefreshToken=tokens["refresh_token"]
    )
    idp.revoke_token(ClientId=LOCAL_CLIENT_ID, Token=tokens["refresh_token"])
    with pytest.raises(ClientError) as after:
        idp.initiate_auth(
            ClientId=LOCAL_CLIENT_ID,
            AuthFlow="REFRESH_TOKEN_AUTH",
            AuthParameters={"REFRESH_TOKEN": tokens["refresh_token"]},
        )

    assert {a["Name"]: a["Value"] for a in user["UserAttributes"]}["email"] == "boto@example.com"
    assert ask_me(base, refreshed["AuthenticationResult"]["IdToken"])["email"] == (
        "boto@example.com"
    )
    assert after.value.response["Error"]["Code"] == "NotAuthorizedException"
    assert after.value.response["Error"]["Message"] == "Refresh Token has been revoked"


def test_cors_lets_the_app_call_the_token_endpoint_and_the_user_pool_api(base: str) -> None:
    amplify_headers = (
        "content-type,x-amz-target,x-amz-user-agent,amz-sdk-invocation-id,amz-sdk-request,"
        "cache-control"
    )
    for path in ("/", "/oauth2/token"):
        preflight = httpx.options(
            f"{base}{path}",
            headers={
                "Origin": APP_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": amplify_headers,
            },
        )

        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == APP_ORIGIN
        allowed = preflight.headers["access-control-allow-headers"].lower()
        assert all(name in allowed for name in amplify_headers.split(","))
    failed = httpx.post(
        f"{base}/",
        content=b"{}",
        headers={
            "content-type": AMZ_JSON,
            "x-amz-target": f"{TARGET}GetUser",
            "Origin": APP_ORIGIN,
        },
    )
    assert failed.headers["access-control-allow-origin"] == APP_ORIGIN
    assert "x-amzn-errortype" in failed.headers["access-control-expose-headers"].lower()
    stranger = httpx.options(
        f"{base}/",
        headers={
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-amz-target",
        },
    )
    assert "access-control-allow-origin" not in stranger.headers


# --- state shared by workers, and a configured pool ---------------------------------------


def test_codes_and_refresh_tokens_work_across_workers(local_env: dict[str, str]) -> None:
    """Every request on a connection of its own, so the kernel spreads them over both
    workers: state kept in one worker's memory would fail about half of these."""
    with running_server(local_env, "--workers", "2") as two:
        for number in range(6):
            tokens = tokens_of(two, f"worker{number}@example.com")
            refreshed = user_pool(
                two,
                "GetTokensFromRefreshToken",
                {"ClientId": LOCAL_CLIENT_ID, "RefreshToken": tokens["refresh_token"]},
            )
            assert refreshed.status_code == 200, refreshed.text
            revoked = user_pool(
                two, "RevokeToken", {"ClientId": LOCAL_CLIENT_ID, "Token": tokens["refresh_token"]}
            )
            assert revoked.status_code == 200
            again = user_pool(
                two,
                "GetTokensFromRefreshToken",
                {"ClientId": LOCAL_CLIENT_ID, "RefreshToken": tokens["refresh_token"]},
            )
            refused(again, "NotAuthorizedException")


def test_a_configured_pool_switches_all_of_it_off(settings: Settings, tmp_path: Path) -> None:
    assert settings.database_url is not None
    env = clean_env(
        DATABASE_URL=settings.database_url,
        POPMAP_DATA_DIR=str(tmp_path),
        AWS_COGNITO_USER_POOL_ID="us-east-1_RealPool1",
        AWS_COGNITO_APP_CLIENT_ID="web",
        AWS_COGNITO_DOMAIN="popmap-auth",
    )
    _, challenge = pkce()
    with running_server(env) as pooled:
        answers = [
            httpx.get(f"{pooled}/oauth2/authorize", params=authorize_params(challenge)),
            httpx.get(f"{pooled}/login", params=authorize_params(challenge)),
            httpx.post(f"{pooled}/login", data={**authorize_params(challenge), "email": "a@b.co"}),
            httpx.post(f"{pooled}/oauth2/token", data={"grant_type": "authorization_code"}),
            httpx.post(f"{pooled}/oauth2/revoke", data={"token": "x"}),
            httpx.get(f"{pooled}/oauth2/userInfo"),
            httpx.get(f"{pooled}/logout", params={"client_id": LOCAL_CLIENT_ID}),
            httpx.get(f"{pooled}/.well-known/jwks.json"),
            user_pool(pooled, "GetUser", {"AccessToken": "x"}),
        ]
        preflight = httpx.options(
            f"{pooled}/",
            headers={
                "Origin": APP_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-amz-target",
            },
        )
        config = httpx.post(
            f"{pooled}/graphql",
            json={"query": "{ authConfig { userPoolId domain userPoolEndpoint } }"},
        )

    assert [answer.status_code for answer in answers] == [404] * len(answers)
    assert preflight.status_code == 400  # x-amz-target is not an allowed header then
    assert config.json()["data"]["authConfig"] == {
        "userPoolId": "us-east-1_RealPool1",
        "domain": "popmap-auth.auth.us-east-1.amazoncognito.com",
        "userPoolEndpoint": None,
    }
    assert not (tmp_path / "local-idp").exists()


# --- point 3: HTTPS -----------------------------------------------------------------------


def test_serve_https_makes_a_certificate_and_serves_the_hosted_ui_over_tls(
    settings: Settings, tmp_path: Path
) -> None:
    assert settings.database_url is not None
    env = clean_env(DATABASE_URL=settings.database_url, POPMAP_DATA_DIR=str(tmp_path))
    query = {"query": "{ authConfig { domain userPoolEndpoint } }"}
    with running_server(env, "--https", scheme="https") as secure:
        authority = tmp_path / "tls" / "ca.pem"
        trusting = ssl.create_default_context(cafile=str(authority))
        with httpx.Client(verify=trusting) as http:  # checks the chain and the host name
            config = http.post(f"{secure}/graphql", json=query).json()["data"]["authConfig"]
            # As Amplify builds its URLs: https://<domain>/oauth2/...
            hosted_ui = f"https://{config['domain']}"
            signed_in = sign_in(hosted_ui, "tls@example.com", http=http)
            tokens = exchange(hosted_ui, signed_in.code, signed_in.verifier, http=http).json()
            me = ask_me(secure, tokens["id_token"], http=http)
            refreshed = http.post(
                config["userPoolEndpoint"],
                content=json.dumps(
                    {"ClientId": LOCAL_CLIENT_ID, "RefreshToken": tokens["refresh_token"]}
                ),
                headers={
                    "content-type": AMZ_JSON,
                    "x-amz-target": f"{TARGET}GetTokensFromRefreshToken",
                },
            )
        first = (tmp_path / "tls" / "cert.pem").read_bytes()
    with running_server(env, "--https", scheme="https"):
        second = (tmp_path / "tls" / "cert.pem").read_bytes()

    assert config == {
        "domain": secure.removeprefix("https://"),
        "userPoolEndpoint": f"{secure}/",
    }
    assert me["email"] == "tls@example.com"
    assert refreshed.status_code == 200, refreshed.text
    assert first == second  # made once, then reused
    assert sorted(path.name for path in (tmp_path / "tls").iterdir()) == [
        "ca.pem",
        "cert.pem",
        "key.pem",  # the server's; the authority's private key is nowhere
    ]
    assert (tmp_path / "tls" / "key.pem").stat().st_mode & 0o077 == 0
    ca = x509.load_pem_x509_certificate(authority.read_bytes())
    limits = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert limits.critical
    permitted = limits.value.permitted_subtrees or []
    assert x509.DNSName("localhost") in permitted
    assert x509.DNSName("example.com") not in permitted


def test_serve_https_on_another_address_makes_a_certificate_for_it_too(
    settings: Settings, tmp_path: Path
) -> None:
    assert settings.database_url is not None
    env = clean_env(
        DATABASE_URL=settings.database_url,
        POPMAP_DATA_DIR=str(tmp_path),
        ALLOWED_HOSTS="127.0.0.2",
    )
    with running_server(env, "--https", scheme="https", host="127.0.0.2") as secure:
        trusting = ssl.create_default_context(cafile=str(tmp_path / "tls" / "ca.pem"))
        with httpx.Client(verify=trusting) as http:  # checks the address against the names
            health = http.get(f"{secure}/healthz")

    assert health.status_code == 200
    certificate = x509.load_pem_x509_certificate((tmp_path / "tls" / "cert.pem").read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert x509.IPAddress(ipaddress.ip_address("127.0.0.2")) in names
    assert x509.DNSName("localhost") in names  # the loopback names as always


def _certificate_ending_in(days: int) -> bytes:
    """A certificate for every loopback name, as `serve --https` makes, ending in `days`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=800))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.mark.parametrize(
    "left",
    [
        pytest.param(b"not a certificate", id="unreadable"),
        pytest.param(_certificate_ending_in(days=10), id="ending within 30 days"),
        # As a run stopped after writing a new key, before its certificate, leaves them.
        pytest.param(_certificate_ending_in(days=400), id="not of the key beside it"),
    ],
)
def test_serve_https_replaces_an_unreadable_ending_or_mismatched_certificate(
    settings: Settings, tmp_path: Path, left: bytes
) -> None:
    assert settings.database_url is not None
    folder = tmp_path / "tls"
    folder.mkdir(mode=0o700)
    (folder / "cert.pem").write_bytes(left)
    other_key = ec.generate_private_key(ec.SECP256R1())
    (folder / "key.pem").write_bytes(
        other_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    env = clean_env(DATABASE_URL=settings.database_url, POPMAP_DATA_DIR=str(tmp_path))
    log = tmp_path / "server.log"
    with running_server(env, "--https", scheme="https", log=log) as secure:
        trusting = ssl.create_default_context(cafile=str(folder / "ca.pem"))
        with httpx.Client(verify=trusting) as http:
            health = http.get(f"{secure}/healthz")

    assert health.status_code == 200
    assert f"made a certificate for this data folder; trust {folder / 'ca.pem'}" in (
        log.read_text()
    )
    made = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())
    assert made.not_valid_after_utc - datetime.datetime.now(datetime.UTC) > datetime.timedelta(
        days=800
    )
