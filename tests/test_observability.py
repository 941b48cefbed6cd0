"""Access lines and Prometheus metrics of `popmap-gql serve`, read as an operator would:
its log parsed line by line as JSON, its /metrics scraped and parsed with
prometheus_client's own parser. Tokens are real ones signed by the fake Cognito."""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from popmap_gql.config import ConfigError, Settings, load_settings
from popmap_gql.db.orm import connection_credentials
from popmap_gql.http.observe import VIEWER_ID_KEY_FILE
from popmap_gql.logs import JsonFormatter, TextFormatter
from popmap_gql.metrics import MAX_OPERATION_NAMES, OTHER, OperationNames
from tests.fake_cognito import SERVICE_CLIENT, FakeCognito
from tests.helpers import make_category
from tests.people import person, service
from tests.processes import free_port, server_process

ACCESS = "popmap_gql.access"
STATEMENT_TIMEOUT_MS = 1500
HEX16 = re.compile(r"[0-9a-f]{16}")


@dataclass(frozen=True)
class Server:
    base: str
    log: Path
    data_dir: Path

    def records(self) -> list[dict[str, Any]]:
        """Every JSON line the server wrote so far."""
        return [orjson.loads(line) for line in self.log.read_text().splitlines() if _json(line)]

    def access_line(self, request_id: str) -> dict[str, Any]:
        """The access line of one request (written just after its response: wait for it)."""
        deadline = time.monotonic() + 15
        while True:
            for record in self.records():
                if record["logger"] == ACCESS and record["request_id"] == request_id:
                    return record
            assert time.monotonic() < deadline, f"no access line for {request_id}"
            time.sleep(0.05)


def _json(line: str) -> bool:
    return line.startswith("{")


def _env(settings: Settings, cognito: FakeCognito, data_dir: Path, **more: str) -> dict[str, str]:
    assert settings.database_url is not None
    return cognito.server_env(
        settings.database_url,
        data_dir,
        POPMAP_JWKS_COOLDOWN_SECONDS="0",  # every unknown kid fetches the keys again
        POPMAP_DB_STATEMENT_TIMEOUT_MS=str(STATEMENT_TIMEOUT_MS),
        POPMAP_LOG_FORMAT="json",
        POPMAP_METRICS="true",
        **more,
    )


@pytest.fixture(scope="module")
def server(
    settings: Settings, cognito: FakeCognito, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("observed")
    log = data_dir / "server.log"
    with server_process(_env(settings, cognito, data_dir), log=log) as (_, base):
        yield Server(base, log, data_dir)


@pytest.fixture
async def http(server: Server, clean_db: None) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as client:
        yield client


CATEGORIES = "query Categories { categories { name } }"


async def ask(
    http: httpx.AsyncClient,
    query: str,
    variables: dict[str, Any] | None = None,
    *,
    token: str | None = None,
    request_id: str | None = None,
    operation_name: str | None = None,
) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if request_id is not None:
        headers["X-Request-ID"] = request_id
    body: dict[str, Any] = {"query": query, "variables": variables or {}}
    if operation_name is not None:
        body["operationName"] = operation_name
    return await http.post("/graphql", json=body, headers=headers)


# --- the access line ----------------------------------------------------------------------


async def test_a_graphql_request_has_one_access_line_with_its_facts(
    server: Server, http: httpx.AsyncClient
) -> None:
    await make_category("Bakeries")
    first = await ask(http, CATEGORIES, request_id="probe-1.a:b_c")
    second = await ask(http, CATEGORIES, request_id="probe-2")  # the same body: a cache hit

    assert first.headers["x-request-id"] == "probe-1.a:b_c"
    assert second.headers["x-popmap-cache"] == "hit"
    miss, hit = server.access_line("probe-1.a:b_c"), server.access_line("probe-2")
    for line in (miss, hit):
        assert line["level"] == "INFO"
        assert line["method"] == "POST"
        assert line["path"] == line["route"] == "/graphql"
        assert line["status"] == 200
        assert line["operation_name"] == "Categories"
        assert line["operation_type"] == "query"
        assert line["viewer_kind"] == "anonymous"
        assert line["viewer_id"] is None
        assert line["error_codes"] == []
        assert line["duration_ms"] > 0
    assert (miss["cache"], hit["cache"]) == ("miss", "hit")
    # a hit reads only the data version; a miss also runs the query and checks the version
    assert hit["statements"] == 1
    assert miss["statements"] > hit["statements"]
    assert [r["request_id"] for r in server.records() if r["logger"] == ACCESS].count(
        "probe-2"
    ) == 1


async def test_a_mutation_and_refusals_say_their_type_and_error_codes(
    server: Server, http: httpx.AsyncClient
) -> None:
    mutation = 'mutation Submit { submitBusiness(input: {name: "X"}) { business { id } } }'
    refused = await ask(http, mutation, request_id="anon-mutation")
    invalid = await ask(http, "query Broken { nope }", request_id="invalid")
    bad_token = await ask(http, CATEGORIES, token="not-a-jwt", request_id="bad-token")

    assert [refused.status_code, invalid.status_code, bad_token.status_code] == [200, 200, 401]
    line = server.access_line("anon-mutation")
    assert (line["operation_name"], line["operation_type"]) == ("Submit", "mutation")
    assert line["error_codes"] == ["UNAUTHENTICATED"]
    assert line["cache"] == "none"
    line = server.access_line("invalid")
    assert line["error_codes"] == ["GRAPHQL_VALIDATION_FAILED"]
    assert line["statements"] == 0
    line = server.access_line("bad-token")
    assert (line["status"], line["error_codes"]) == (401, ["UNAUTHENTICATED"])
    assert line["viewer_kind"] is None  # refused before there was a viewer


async def test_request_ids_are_taken_when_short_and_plain_else_made(
    server: Server, http: httpx.AsyncClient
) -> None:
    unsafe = [b"has space", b"x" * 65, b'quote"d', "é".encode(), b""]
    answers = [await http.get("/healthz", headers={b"X-Request-ID": value}) for value in unsafe]
    answers += [await http.get("/healthz") for _ in range(2)]

    made = [answer.headers["x-request-id"] for answer in answers]
    assert all(HEX16.fullmatch(request_id) for request_id in made), made
    assert len(set(made)) == len(made)
    for request_id in made:
        assert server.access_line(request_id)["route"] == "/healthz"


async def test_viewers_are_logged_by_kind_and_keyed_hash_of_their_id(
    server: Server, http: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    ada, staff = await person(cognito, "ada"), await person(cognito, "boss", ("staff",))
    robot = service(cognito, "robot")
    for request_id, who in (("ada-1", ada), ("ada-2", ada), ("staff", staff), ("bot", robot)):
        response = await ask(http, CATEGORIES, token=who.token, request_id=request_id)
        assert response.status_code == 200, response.text

    key = (server.data_dir / VIEWER_ID_KEY_FILE).read_bytes()

    def keyed(subject: str) -> str:
        return hmac.new(key, subject.encode(), hashlib.sha256).hexdigest()[:16]

    assert ada.user is not None
    assert staff.user is not None
    lines = {rid: server.access_line(rid) for rid in ("ada-1", "ada-2", "staff", "bot")}
    assert [lines[rid]["viewer_kind"] for rid in lines] == ["person", "person", "staff", "service"]
    assert lines["ada-1"]["viewer_id"] == keyed(f"user:{ada.user.id}")
    assert lines["ada-2"]["viewer_id"] == lines["ada-1"]["viewer_id"]
    assert lines["staff"]["viewer_id"] == keyed(f"user:{staff.user.id}")
    assert lines["bot"]["viewer_id"] == keyed(f"client:{SERVICE_CLIENT}")
    assert SERVICE_CLIENT not in server.log.read_text()


async def test_other_routes_have_access_lines_without_the_graphql_fields(
    server: Server, http: httpx.AsyncClient
) -> None:
    for path, request_id in (
        ("/healthz", "health"),
        ("/readyz", "ready"),
        ("/media/no/such.png", "media"),
        ("/nowhere", "nowhere"),
    ):
        await http.get(path, headers={"X-Request-ID": request_id})

    lines = {rid: server.access_line(rid) for rid in ("health", "ready", "media", "nowhere")}
    assert [(line["route"], line["status"]) for line in lines.values()] == [
        ("/healthz", 200),
        ("/readyz", 200),
        ("/media/{path:path}", 404),
        ("unmatched", 404),
    ]
    assert lines["ready"]["statements"] == 1  # SELECT 1
    assert lines["nowhere"]["error_codes"] == ["NOT_FOUND"]
    for line in lines.values():
        for graphql_only in ("operation_name", "operation_type", "cache", "viewer_kind"):
            assert graphql_only not in line


async def test_no_token_email_or_variable_value_reaches_the_log(
    server: Server, http: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    who = await person(cognito, "mailmarkerq7")  # email mailmarkerq7@example.com
    assert who.token is not None
    search = """query Search($s: String, $n: Int) {
        businesses(first: $n, filter: {search: $s}) { edges { node { name } } } }"""
    asked = [
        await ask(http, search, {"s": "varmarkerq7", "n": 3}, token=who.token),
        await ask(http, search, {"s": "x", "n": "intmarkerq7"}, token=who.token),
        await ask(http, CATEGORIES, token="tokenmarkerq7.abc.def"),
        await ask(http, "mutation Log($e: String!) { x(e: $e) }", {"e": "mutmarkerq7"}),
    ]
    request_ids = [answer.headers["x-request-id"] for answer in asked]
    for request_id in request_ids:
        server.access_line(request_id)  # every line of these requests has been written

    log = server.log.read_text()
    for marker in ("mailmarkerq7", "varmarkerq7", "intmarkerq7", "tokenmarkerq7", "mutmarkerq7"):
        assert marker not in log
    assert who.token not in log
    assert who.token[-20:] not in log  # nor the token's signature


# --- metrics ------------------------------------------------------------------------------


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus text exposition, by name and sorted labels."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_requests_cache_jwks_pool_and_statement_timeouts(
    server: Server, http: httpx.AsyncClient, cognito: FakeCognito, settings: Settings
) -> None:
    metrics = f"{server.base}/metrics"
    await make_category("Bakeries")
    probe = "query Probe { categories { name } }"
    long_name = "N" * 65  # a valid GraphQL name, too long for a label
    start = scrape(metrics)
    assert (await ask(http, probe)).headers["x-popmap-cache"] == "miss"
    assert (await ask(http, probe)).headers["x-popmap-cache"] == "hit"
    probed = scrape(metrics)
    await ask(http, f"query {long_name} {{ categories {{ slug }} }}")
    # a kid the keys lack makes the server fetch them again (no cooldown), and it fails
    ada = await person(cognito, "ada")
    assert (await ask(http, CATEGORIES, token=ada.token)).status_code == 200
    cognito.jwks_status = 503
    try:
        forged = cognito.sign(cognito.claims("id"), key=cognito.attacker_key)
        assert (await ask(http, CATEGORIES, token=forged)).status_code == 401
    finally:
        cognito.jwks_status = 200
    async with locked(settings, "category"):
        slow = await ask(http, "query Slow { categories { id } }")
    end = scrape(metrics)

    def delta(name: str, **labels: str) -> float:
        return value(end, name, **labels) - value(start, name, **labels)

    assert slow.status_code == 503, slow.text
    assert (
        delta("popmap_http_requests_total", route="/graphql", operation="Probe", status="200") == 2
    )
    assert (
        delta("popmap_http_request_duration_seconds_count", route="/graphql", operation="Probe")
        == 2
    )
    assert delta("popmap_http_requests_total", route="/graphql", operation=OTHER, status="200") == 1
    assert (
        delta("popmap_http_requests_total", route="/graphql", operation="Slow", status="503") == 1
    )
    assert not any(long_name in str(labels) for _, labels in end)
    assert (
        value(probed, "popmap_response_cache_hits_total")
        - value(start, "popmap_response_cache_hits_total")
        == 1
    )
    assert (
        value(probed, "popmap_response_cache_misses_total")
        - value(start, "popmap_response_cache_misses_total")
        == 1
    )
    assert value(end, "popmap_response_cache_bytes") > 0
    assert value(end, "popmap_jwks_fetches_total", outcome="ok") >= 1
    assert delta("popmap_jwks_fetches_total", outcome="failed") == 1
    assert delta("popmap_db_faults_total", kind="statement timeout") == 1
    # every borrowed connection was given back, nobody waits
    assert value(end, "popmap_db_pool_in_use") == 0
    assert value(end, "popmap_db_pool_waiting") == 0
    assert value(end, "popmap_http_requests_total", route="/metrics", operation="", status="200")


async def test_only_operations_that_ran_take_an_operation_label(
    server: Server, http: httpx.AsyncClient
) -> None:
    metrics = f"{server.base}/metrics"
    # More refused names than there are label slots: none names an operation that ran.
    for n in range(MAX_OPERATION_NAMES + 1):
        assert (await ask(http, CATEGORIES, operation_name=f"Junk{n}")).status_code == 400
    assert (await ask(http, "query Invalid { nope }")).status_code == 200
    costly = (
        "query Costly { events(first: 100) { edges { node { businesses { events { id } } } } } }"
    )
    assert (await ask(http, costly)).json()["errors"][0]["extensions"]["code"] == "QUERY_TOO_COSTLY"
    assert (await ask(http, "query RanAfterJunk { categories { slug } }")).status_code == 200

    operations = {dict(labels).get("operation") for _, labels in scrape(metrics)}

    assert "RanAfterJunk" in operations
    assert not {name for name in operations if name and name.startswith("Junk")}
    assert not {"Invalid", "Costly"} & operations


class locked:
    """A table locked by a connection of the test's own until the block ends."""

    def __init__(self, settings: Settings, table: str) -> None:
        assert settings.database_url is not None
        self.url, self.table = settings.database_url, table

    async def __aenter__(self) -> None:
        self.conn = await asyncpg.connect(**connection_credentials(self.url))
        await self.conn.execute(f"BEGIN; LOCK TABLE {self.table} IN ACCESS EXCLUSIVE MODE")

    async def __aexit__(self, *_: object) -> None:
        await self.conn.close()


async def test_metrics_are_off_unless_asked_for(client: httpx.AsyncClient) -> None:
    response = await client.get("/metrics")

    assert response.status_code == 404


def test_every_worker_logs_json_and_one_port_serves_every_workers_metrics(
    settings: Settings, cognito: FakeCognito, tmp_path: Path
) -> None:
    metrics_port = free_port()
    env = _env(settings, cognito, tmp_path, POPMAP_METRICS_PORT=str(metrics_port))
    log = tmp_path / "server.log"
    requests = 12
    with server_process(env, "--workers", "2", log=log) as (_, base):
        deadline = time.monotonic() + 60
        while log.read_text().count("Application startup complete") < 2:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        for n in range(requests):  # a connection each, so that both workers answer some
            response = httpx.post(
                f"{base}/graphql",
                json={"query": "query WorkersProbe { categories { name } }"},
                headers={"X-Request-ID": f"workers-{n}"},
            )
            assert response.status_code == 200, response.text
        samples = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
        on_the_api_port = httpx.get(f"{base}/metrics")
        deadline = time.monotonic() + 15
        while log.read_text().count('"operation_name":"WorkersProbe"') < requests:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        folder_files = list((tmp_path / "metrics").iterdir())
    lines = log.read_text().splitlines()

    plain = [line for line in lines if not line.startswith("{")]
    # the two lines `serve` prints on stdout for a person starting it
    assert sorted(plain) == [
        f"Popmap GraphQL API on {base}/graphql",
        f"metrics on http://127.0.0.1:{metrics_port}/metrics",
    ]
    records = [orjson.loads(line) for line in lines if line.startswith("{")]
    startups = [r for r in records if "Application startup complete" in r["message"]]
    assert len({r["pid"] for r in startups}) == 2
    access = [r for r in records if r["logger"] == ACCESS and r["route"] == "/graphql"]
    assert sorted(r["request_id"] for r in access) == sorted(
        f"workers-{n}" for n in range(requests)
    )
    assert {r["pid"] for r in access} <= {r["pid"] for r in startups}
    total = value(
        samples,
        "popmap_http_requests_total",
        route="/graphql",
        operation="WorkersProbe",
        status="200",
    )
    assert total == requests
    assert on_the_api_port.status_code == 404
    assert folder_files  # the workers' files, in the folder `serve` made


# --- the pieces ---------------------------------------------------------------------------


def test_operation_names_become_labels_only_when_short_plain_and_among_the_first() -> None:
    names = OperationNames(limit=2)

    assert names.label(None) == ""
    assert names.label("a" * 65) == OTHER
    assert names.label("two words") == OTHER
    assert [names.label(n) for n in ("First", "Second", "Third", "First")] == [
        "First",
        "Second",
        OTHER,
        "First",
    ]


def _record(message: str, **fields: Any) -> logging.LogRecord:
    record = logging.LogRecord(ACCESS, logging.INFO, __file__, 1, message, (), None)
    record.fields = fields
    return record


def test_text_lines_quote_client_text_so_it_cannot_forge_a_line_or_a_field() -> None:
    line = TextFormatter().format(
        _record("GET", path="/a b\nstatus=200", status=404, codes=["A", "B"], none=None)
    )

    assert "\n" not in line.replace("\\n", "")  # still one line
    assert line.endswith(' path="/a b\\nstatus=200" status=404 codes=A,B')


def test_json_lines_hold_the_fields_as_members() -> None:
    entry = orjson.loads(JsonFormatter().format(_record("GET /x 200", status=200, cache="hit")))

    assert entry["logger"] == ACCESS
    assert (entry["message"], entry["status"], entry["cache"]) == ("GET /x 200", 200, "hit")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"POPMAP_LOG_FORMAT": "xml"}, "POPMAP_LOG_FORMAT must be one of text, json"),
        ({"POPMAP_METRICS_PORT": "70000"}, "POPMAP_METRICS_PORT must be a TCP port"),
        ({"POPMAP_METRICS": "maybe"}, "POPMAP_METRICS must be a boolean"),
    ],
)
def test_malformed_observability_settings_stop_start_up(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(environ, env_file=None)


def test_observability_settings_are_parsed() -> None:
    settings = load_settings(
        {"POPMAP_LOG_FORMAT": "JSON", "POPMAP_METRICS": "true", "POPMAP_METRICS_PORT": "9100"},
        env_file=None,
    )

    assert (settings.log_format, settings.metrics, settings.metrics_port) == ("json", True, 9100)
    assert load_settings({}, env_file=None).log_format == "text"
