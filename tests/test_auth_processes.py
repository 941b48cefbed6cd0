"""Auth through the real program: a Cognito emulator on loopback, the local identity provider,
and a JWKS outage, each with `popmap-gql serve` configured only through settings."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from popmap_gql.config import Settings
from tests.processes import clean_env, free_port, popmap_gql, running_server

ME = "{ me { id username email groups isStaff identityProvider } }"


def ask_me(base: str, token: str) -> httpx.Response:
    return httpx.post(
        f"{base}/graphql",
        json={"query": ME},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


# --- a real Cognito emulator: moto's server mode -----------------------------------------


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def _sign_in_with_moto(endpoint: str) -> dict[str, Any]:
    import boto3

    idp = boto3.client(
        "cognito-idp",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    pool = idp.create_user_pool(PoolName="popmap-users")["UserPool"]["Id"]
    client = idp.create_user_pool_client(
        UserPoolId=pool,
        ClientName="popmap-web-client",
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        ReadAttributes=["email"],
    )["UserPoolClient"]["ClientId"]
    idp.admin_create_user(
        UserPoolId=pool,
        Username="dana",
        UserAttributes=[{"Name": "email", "Value": "dana@example.com"}],
        MessageAction="SUPPRESS",
    )
    idp.admin_set_user_password(
        UserPoolId=pool, Username="dana", Password="Correct-Horse-9", Permanent=True
    )
    result = idp.initiate_auth(
        ClientId=client,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "dana", "PASSWORD": "Correct-Horse-9"},
    )["AuthenticationResult"]
    return {"pool": pool, "client": client, **result}


def test_tokens_from_a_cognito_emulator_are_accepted(
    moto_url: str, settings: Settings, tmp_path: Path
) -> None:
    signed_in = _sign_in_with_moto(moto_url)
    assert settings.database_url is not None
    env = clean_env(
        DATABASE_URL=settings.database_url,
        POPMAP_DATA_DIR=str(tmp_path),
        AWS_COGNITO_USER_POOL_ID=signed_in["pool"],
        AWS_COGNITO_APP_CLIENT_ID=f"some-mobile-client,{signed_in['client']}",
        AWS_COGNITO_REGION="us-east-1",
        AWS_COGNITO_JWKS_URL=f"{moto_url}/{signed_in['pool']}/.well-known/jwks.json",
    )
    with running_server(env) as base:
        by_access = ask_me(base, signed_in["AccessToken"])
        by_id = ask_me(base, signed_in["IdToken"])

    assert by_access.status_code == 200, by_access.text
    assert by_id.status_code == 200, by_id.text
    access_viewer = by_access.json()["data"]["me"]
    id_viewer = by_id.json()["data"]["me"]
    assert access_viewer["username"] == "dana"
    assert id_viewer["id"] == access_viewer["id"]
    assert id_viewer["email"] == "dana@example.com"
    assert id_viewer["identityProvider"] == "Cognito"


# --- the local identity provider ------------------------------------------------------------


def _dev_token(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return popmap_gql(env, "dev-token", *args)


def test_dev_token_without_an_email_says_what_it_needs(tmp_path: Path) -> None:
    minted = _dev_token(clean_env(POPMAP_DATA_DIR=str(tmp_path)), "--group", "staff")

    assert minted.returncode == 2
    assert minted.stdout == ""
    assert "dev-token needs --email (or --client-credentials)" in minted.stderr
    assert "Traceback" not in minted.stderr


def test_dev_token_output_is_accepted_by_serve(settings: Settings, tmp_path: Path) -> None:
    assert settings.database_url is not None
    env = clean_env(DATABASE_URL=settings.database_url, POPMAP_DATA_DIR=str(tmp_path))
    minted = _dev_token(env, "--email", "erin@example.com", "--group", "staff")
    assert minted.returncode == 0, minted.stderr
    tokens = json.loads(minted.stdout)

    with running_server(env) as base:
        by_id = ask_me(base, tokens["id_token"])
        by_access = ask_me(base, tokens["access_token"])
        forged = ask_me(base, tokens["access_token"][:-4] + "AAAA")
        config = httpx.post(
            f"{base}/graphql", json={"query": "{ authConfig { localDevelopment userPoolId } }"}
        )

    assert by_id.json()["data"]["me"]["email"] == "erin@example.com"
    assert by_id.json()["data"]["me"]["isStaff"] is True
    assert by_access.json()["data"]["me"]["id"] == by_id.json()["data"]["me"]["id"]
    assert forged.status_code == 401
    assert config.json()["data"]["authConfig"] == {
        "localDevelopment": True,
        "userPoolId": "us-east-1_PopmapLocal",
    }


def test_local_identity_provider_cannot_be_used_while_a_pool_is_configured(
    tmp_path: Path,
) -> None:
    env = clean_env(
        POPMAP_DATA_DIR=str(tmp_path),
        AWS_COGNITO_USER_POOL_ID="us-east-1_RealPool1",
        AWS_COGNITO_APP_CLIENT_ID="web",
    )

    result = _dev_token(env, "--email", "x@example.com")

    assert result.returncode == 2
    assert "AWS_COGNITO_USER_POOL_ID" in result.stderr
    assert not (tmp_path / "local-idp").exists()


@pytest.mark.parametrize("kind", ["ec-key", "not-pem"])
def test_dev_token_refuses_a_key_file_that_holds_no_rsa_key(tmp_path: Path, kind: str) -> None:
    """The local provider signs RS256 only: another kind of key in its file, or a file
    that holds no key, is named, and neither used nor replaced."""
    key_file = tmp_path / "local-idp" / "private-key.pem"
    key_file.parent.mkdir(mode=0o700)
    pem = (
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        if kind == "ec-key"
        else b"-----BEGIN PRIVATE KEY-----\ncut off"
    )
    key_file.write_bytes(pem)

    result = _dev_token(clean_env(POPMAP_DATA_DIR=str(tmp_path)), "--email", "x@example.com")

    assert result.returncode == 2
    assert result.stderr == (
        f"popmap-gql: configuration error: {key_file} does not hold an RSA key; remove it"
        " to make a new one (the tokens the old one signed stop verifying)\n"
    )  # that line alone: no traceback
    assert result.stdout == ""  # no token
    assert key_file.read_bytes() == pem


# --- a JWKS outage ---------------------------------------------------------------------------


def test_unreachable_jwks_with_no_cached_key_is_503_not_401(
    settings: Settings, tmp_path: Path
) -> None:
    from tests.fake_cognito import FakeCognito

    assert settings.database_url is not None
    closed_port = free_port()  # nothing listens here
    env = clean_env(
        DATABASE_URL=settings.database_url,
        POPMAP_DATA_DIR=str(tmp_path),
        AWS_COGNITO_USER_POOL_ID="us-east-1_PopmapTest1",
        AWS_COGNITO_APP_CLIENT_ID="web-client-id",
        AWS_COGNITO_JWKS_URL=f"http://127.0.0.1:{closed_port}/jwks.json",
    )
    with running_server(env) as base:
        response = ask_me(base, FakeCognito().access_token())

    assert response.status_code == 503
    assert response.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert "data" not in response.json()  # a request error
    assert "www-authenticate" not in response.headers


def test_local_identity_provider_is_announced_loudly_at_start_up(
    settings: Settings, tmp_path: Path
) -> None:
    assert settings.database_url is not None
    log = tmp_path / "server.log"
    env = clean_env(DATABASE_URL=settings.database_url, POPMAP_DATA_DIR=str(tmp_path))
    with running_server(env, log=log):
        pass

    output = log.read_text()
    assert "WARNING" in output
    assert "LOCAL DEVELOPMENT identity provider" in output


def test_no_local_provider_warning_with_a_pool(settings: Settings, tmp_path: Path) -> None:
    assert settings.database_url is not None
    log = tmp_path / "server.log"
    env = clean_env(
        DATABASE_URL=settings.database_url,
        POPMAP_DATA_DIR=str(tmp_path),
        AWS_COGNITO_USER_POOL_ID="us-east-1_RealPool1",
        AWS_COGNITO_APP_CLIENT_ID="web",
    )
    with running_server(env, log=log):
        pass

    assert "LOCAL DEVELOPMENT" not in log.read_text()
    assert not (tmp_path / "local-idp").exists()
