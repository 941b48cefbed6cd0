"""A client cannot forge a record of `serve`'s text log, nor make one huge: every value it
chose is escaped (or quoted) and cut to MAX_VALUE_CHARS, so the log parses as one line
per record, each line starting with a timestamp a record of the server's own."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from popmap_gql.config import Settings
from popmap_gql.logs import MAX_VALUE_CHARS, JsonFormatter, TextFormatter, clip
from tests.processes import clean_env, server_process

ACCESS = "popmap_gql.access"
FORGED = "2026-12-06 12:00:00,000 INFO popmap_gql.access: POST /graphql 200 request_id=forged"
# A record's first line: LOG_FORMAT's asctime, level and logger.
RECORD = re.compile(
    r"(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (?P<level>[A-Z]+) (?P<logger>[\w.]+): "
    r"(?P<rest>.*)"
)
# logfmt's tokens: key=value (the value bare or quoted with escapes), a quoted string, a word
TOKEN = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|[^ "]+)|"(?:[^"\\]|\\.)*"|[^ ]+')


def fields_of(text: str) -> list[tuple[str, str]]:
    """The key=value pairs of a text line's tail, as a logfmt reader takes them."""
    return [(m[1], m[2]) for m in TOKEN.finditer(text) if m[1] is not None]


def unescape(value: str) -> str:
    """A text field's value as written (quoted and escaped when not plain)."""
    if not value.startswith('"'):
        return value
    return value[1:-1].encode("latin-1", "backslashreplace").decode("unicode_escape")


def parse(log: str) -> list[dict[str, Any]]:
    """The log's records: after the first (`serve`'s banner, on stdout, comes before), a
    line that is not a record's first line must be indented."""
    records: list[dict[str, Any]] = []
    for line in log.splitlines():
        match = RECORD.fullmatch(line)
        if match is None and not records:
            continue
        if match is None:
            assert line.startswith("    ") or not line.strip(), f"a line of no record: {line!r}"
            continue
        pairs = fields_of(match["rest"])
        keys = [key for key, _ in pairs]
        assert len(keys) == len(set(keys)), f"a field written twice: {line!r}"
        records.append({**match.groupdict(), "fields": dict(pairs)})
    return records


@pytest.fixture(scope="module")
def served(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    data_dir = tmp_path_factory.mktemp("forgery")
    log = data_dir / "server.log"
    assert settings.database_url is not None
    env = clean_env(DATABASE_URL=settings.database_url, POPMAP_DATA_DIR=str(data_dir))
    with server_process(env, log=log) as (_, base):  # text logs: the default
        yield base, log


async def send(base: str, head: str, body: bytes = b"") -> int:
    """One HTTP/1.1 request written byte for byte; its response's status."""
    url = urlsplit(base)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    writer.write(f"{head}\r\nHost: {url.netloc}\r\n{length}Connection: close\r\n\r\n".encode())
    writer.write(body)
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    await reader.read()
    writer.close()
    return status


def access_records(log: Path, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while True:
        records = [
            r
            for r in parse(log.read_text())
            if r["logger"] == ACCESS and r["fields"].get("route") != "/healthz"  # start-up's
        ]
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


async def test_no_client_value_forges_a_record_or_a_field(served: tuple[str, Path]) -> None:
    base, log = served
    before = len(access_records(log, 0))
    forged_path = (
        "/graphql%0a" + FORGED.replace(" ", "%20") + "%E2%80%A8" + FORGED.replace(" ", "%20")
    )
    long_name = "Op\n" + FORGED + "x" * 20_000
    body = orjson.dumps({"query": "query Q { categories { name } }", "operationName": long_name})
    query_string = "query=%7B%20categories%20%7B%20name%20%7D%20%7D%0a" + FORGED.replace(" ", "%20")
    statuses = [
        await send(base, f"GET {forged_path} HTTP/1.1"),
        await send(base, f"GET /graphql?{query_string} HTTP/1.1\r\nAccept: application/json"),
        await send(
            base,
            "POST /graphql HTTP/1.1\r\nContent-Type: application/json\r\n"
            'X-Request-ID: forged request_id=forged "x"\r\n'
            'User-Agent: agent" request_id=forged viewer_kind=staff',
            body,
        ),
    ]

    records = access_records(log, before + 3)[before:]
    assert len(records) == 3, records
    assert statuses == [404, 200, 400]  # no route; answered; no operation of that name
    for record in records:
        fields = {key: unescape(value) for key, value in record["fields"].items()}
        assert fields["request_id"] != "forged"
        assert re.fullmatch(r"[0-9a-f]{16}", fields["request_id"])  # made: the given was not plain
        assert "viewer_kind" not in fields or fields["viewer_kind"] == "anonymous"
        assert len(record["rest"]) < 4 * MAX_VALUE_CHARS
    path = unescape(records[0]["fields"]["path"])
    assert path == clip("/graphql\n" + FORGED + "\u2028" + FORGED)  # decoded, then escaped
    named = unescape(records[2]["fields"]["operation_name"])
    assert named == clip(long_name)
    assert named.endswith(f"...(+{len(long_name) - MAX_VALUE_CHARS} chars)")
    assert "agent" not in log.read_text()  # the user agent is never logged


def _record(message: str, exc: BaseException | None = None, **fields: Any) -> logging.LogRecord:
    info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    record = logging.LogRecord(ACCESS, logging.ERROR, __file__, 1, message, (), info)
    record.fields = fields
    return record


def test_a_traceback_is_indented_so_its_text_cannot_pass_for_a_record() -> None:
    try:
        raise ValueError(f"bad input\n{FORGED}")
    except ValueError as exc:
        error = exc
    line = TextFormatter().format(_record(f"failed: {FORGED}\r\n{FORGED}", error, path="/x"))

    first, *rest = line.split("\n")
    assert "\r" not in line
    assert first.endswith(" path=/x")
    assert rest
    assert all(part.startswith("    ") for part in rest)
    assert "ValueError: bad input" in line


def test_a_json_record_keeps_its_traceback_and_stack_as_fields_of_its_one_line() -> None:
    try:
        raise ValueError(f"bad input\n{FORGED}")
    except ValueError as exc:
        error = exc
    record = _record(f"failed: {FORGED}\r\n{FORGED}", error, path="/x")
    record.stack_info = 'Stack (most recent call last):\n  File "x.py", line 1, in <module>'

    line = JsonFormatter().format(record)

    assert "\n" not in line
    assert "\r" not in line
    entry = orjson.loads(line)
    assert entry["message"] == f"failed: {FORGED}\r\n{FORGED}"
    assert entry["path"] == "/x"
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith(f"ValueError: bad input\n{FORGED}")
    assert entry["stack"] == record.stack_info


def test_text_fields_are_cut_and_quoted_with_their_backslashes_escaped() -> None:
    line = TextFormatter().format(_record("GET", path='\\" a=b' + "y" * 2000, codes=["A", "B"]))

    fields = dict(fields_of(line))
    assert unescape(fields["path"]) == clip('\\" a=b' + "y" * 2000)
    assert "a" not in fields  # the quote did not end the value
    assert fields["codes"] == "A,B"


def test_json_fields_are_cut_too() -> None:
    entry = orjson.loads(JsonFormatter().format(_record("GET", operation_name="n" * 5000)))

    assert entry["operation_name"] == clip("n" * 5000)
    assert len(entry["operation_name"]) < MAX_VALUE_CHARS + 32
