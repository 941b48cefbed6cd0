"""`popmap-gql dev-token --client-credentials` against the real `popmap-gql serve`, with no
settings, as docs/services.md shows."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from popmap_gql.config import Settings
from tests.processes import ROOT, clean_env, popmap_gql, running_server

WHO = "{ serviceClient { clientId scopes } me { id } }"


@pytest.fixture(scope="module")
def local_server(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str]]]:
    """`serve` with the local identity provider (no Cognito setting at all), and the
    environment `dev-token` must share with it (the data folder holds the key)."""
    data = tmp_path_factory.mktemp("local-services")
    env = clean_env(DATABASE_URL=str(settings.database_url), POPMAP_DATA_DIR=str(data))
    with running_server(env) as base:
        yield base, env


def dev_token(env: dict[str, str], *args: str) -> str:
    result = popmap_gql(env, "dev-token", "--client-credentials", *args)
    assert result.returncode == 0, result.stderr
    token: str = json.loads(result.stdout)["access_token"]
    return token


def ask(base: str, token: str, query: str) -> httpx.Response:
    return httpx.post(
        f"{base}/graphql",
        json={"query": query},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def test_dev_token_client_credentials_is_a_service_to_serve_with_no_settings(
    local_server: tuple[str, dict[str, str]],
) -> None:
    base, env = local_server
    token = dev_token(env, "--scope", "popmap/moderate", "--scope", "popmap/read.all")

    response = ask(base, token, WHO)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "data": {
            "serviceClient": {
                "clientId": "popmap-local-service",
                "scopes": ["popmap/moderate", "popmap/read.all"],
            },
            "me": None,
        }
    }


def test_dev_token_for_a_client_serve_does_not_list_is_refused(
    local_server: tuple[str, dict[str, str]],
) -> None:
    base, env = local_server
    token = dev_token(env, "--client-id", "unlisted-client", "--scope", "popmap/moderate")

    response = ask(base, token, WHO)

    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def test_dev_token_service_without_scope_is_told_which_scope_it_needs(
    local_server: tuple[str, dict[str, str]],
) -> None:
    base, env = local_server
    token = dev_token(env)

    response = ask(
        base, token, 'mutation { verifyBusiness(id: "QnVzaW5lc3M6MQ") { business { id } } }'
    )

    error = response.json()["errors"][0]
    assert error["extensions"] == {"code": "FORBIDDEN", "requiredScope": "popmap/moderate"}


def test_documented_local_example_runs_as_written(
    local_server: tuple[str, dict[str, str]],
) -> None:
    """docs/services.md's shell lines for a local service token, with the server's port."""
    base, env = local_server
    page = (ROOT / "docs" / "services.md").read_text()
    block = page.split("Locally, without AWS, the local identity provider mints the same tokens")[1]
    commands = block.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = commands.replace("http://127.0.0.1:8000", base)

    result = subprocess.run(
        ["bash", "-c", commands],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )

    assert json.loads(result.stdout)["data"]["serviceClient"]["scopes"] == [
        "popmap/moderate",
        "popmap/read.all",
    ]
