"""Signing in from a browser app with no AWS account: the local identity provider's hosted
UI (`/oauth2/authorize`, `/login`, `/oauth2/token`, `/logout`, `/oauth2/userInfo`) and
user-pool API (`POST /` with `X-Amz-Target`), through the real `popmap-gql serve`.

Each test plays the browser's part as Amplify v6 does it (PKCE S256, the state echoed, the
form submitted) and checks the answers as Amplify and boto3 read them.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
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

from popmap_gql.auth.local_idp import LOCAL_CLIENT_ID, LOCAL_POOL_ID
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
    http: Any = httpx,
) -> SignedIn:
    """authorize -> the sign-in page -> the form -> back at the app's callback (`http`:
    a client of its own, for HTTPS; by default httpx's functions)."""
    verifier, challenge = pkce()
    params = authorize_params(challenge, identity_provider=provider, scope=scope)
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

    response = user_pool(
        base,
        "GetTokensFromRefreshToken",
        {"ClientId": LOCAL_CLIENT_ID, "RefreshToken": tokens["refresh_token"]},
    )

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
        user_pool(
            base,
            "GetTokensFromRefreshToken",
            {"ClientId": LOCAL_CLIENT_ID, "RefreshToken": tokens["refresh_token"]},
        ),
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
    refreshed = user_pool(
        base,
        "GetTokensFromRefreshToken",
        {"ClientId": LOCAL_CLIENT_ID, "RefreshToken": tokens["refresh_token"]},
    )
    refused(refreshed, "NotAuthorizedException")


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
        refreshed = user_pool(
            base,
            "GetTokensFromRefreshToken",
            {"ClientId": LOCAL_CLIENT_ID, "RefreshToken": device["refresh_token"]},
        )
        refused(refreshed, "NotAuthorizedException")
    still = user_pool(
        base,
        "GetTokensFromRefreshToken",
        {"ClientId": LOCAL_CLIENT_ID, "RefreshToken": someone_else["refresh_token"]},
    )
    assert still.status_code == 200
    again = user_pool(base, "GlobalSignOut", {"AccessToken": phone["access_token"]})
    refused(again, "NotAuthorizedException")


def test_user_pool_api_refusals_are_aws_json_errors(base: str) -> None:
    unknown = user_pool(base, "AdminDeleteUser", {"UserPoolId": LOCAL_POOL_ID})
    wrong_client = user_pool(
        base, "GetTokensFromRefreshToken", {"ClientId": "someone", "RefreshToken": "x"}
    )
    unknown_token = user_pool(
        base, "GetTokensFromRefreshToken", {"ClientId": LOCAL_CLIENT_ID, "RefreshToken": "x"}
    )
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
