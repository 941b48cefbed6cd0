"""The server-to-server documentation (docs/services.md): its permission table is the enforced
one, and its Python example runs as written against a token endpoint and the API on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import httpx

from popmap_gql.db.powers import permission_table
from tests.fake_cognito import SERVICE_CLIENT, SERVICE_SECRETS, FakeCognito
from tests.helpers import make_event

SERVICES_PAGE = Path(__file__).resolve().parent.parent / "docs" / "services.md"


def page_between(start: str, end: str) -> str:
    text = SERVICES_PAGE.read_text()
    match = re.search(re.escape(start) + r"\n(.*?)" + re.escape(end), text, re.DOTALL)
    assert match is not None, f"docs/services.md has no {start} ... {end}"
    return match.group(1)


def test_documented_permission_table_is_the_one_the_code_enforces() -> None:
    table = page_between("<!-- permissions:begin -->", "<!-- permissions:end -->")

    assert table == permission_table("popmap")


def python_example() -> str:
    return page_between("<!-- service-client-example -->\n```python", "```")


async def test_documented_python_example_caches_its_token_and_retries_once_after_a_401(
    client: httpx.AsyncClient, api_url: str, cognito: FakeCognito, tmp_path: Path
) -> None:
    await make_event("Market")
    script = tmp_path / "popmap_service.py"
    script.write_text(python_example())
    # The first token the endpoint hands out is signed by a key the API does not trust.
    cognito.queued_service_tokens.append(
        cognito.sign(cognito.service_claims(), key=cognito.attacker_key)
    )
    tokens_before = cognito.hits["token"]
    env = {
        **os.environ,
        "POPMAP_TOKEN_URL": cognito.token_url,
        "POPMAP_CLIENT_ID": SERVICE_CLIENT,
        "POPMAP_CLIENT_SECRET": SERVICE_SECRETS[SERVICE_CLIENT],
        "POPMAP_SCOPES": "popmap/events.write popmap/read.all",
        "POPMAP_API_URL": api_url,
    }

    # A subprocess, awaited, so that this event loop keeps serving the API and the token endpoint.
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=60)

    assert process.returncode == 0, stderr.decode()
    first, second = (json.loads(line) for line in stdout.decode().splitlines())
    assert first == {
        "data": {
            "serviceClient": {
                "clientId": SERVICE_CLIENT,
                "scopes": ["popmap/events.write", "popmap/read.all"],
            }
        }
    }
    assert second == {"data": {"events": {"totalCount": 1}}}
    # the refused token, then one good token for both queries
    assert cognito.hits["token"] - tokens_before == 2
