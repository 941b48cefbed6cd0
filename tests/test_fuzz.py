"""Property-based fuzz of the whole schema over real HTTP: no request is ever a 500.

hypothesis-graphql writes queries and mutations from the exported schema; the scalars
are drawn from hostile values (NUL, lone surrogates, instants whose UTC time overflows,
IDs in forms other than the canonical one, forged cursors) mixed with the real IDs of
seeded rows, so that documents also reach the resolvers and the SQL. Each document is
sent by a viewer drawn from anonymous, a stranger, an owner, staff and two other servers
(client-credentials tokens with every scope and with none); all tokens are really signed.
Refusals of any kind are fine; a 5xx or an INTERNAL_SERVER_ERROR is not.

The run is derandomized (the same examples on every run, so CI does not flake) and
small; raise FUZZ_EXAMPLES locally for a longer hunt.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

import graphql
import httpx
import hypothesis_graphql
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from popmap_gql.api.schema import schema
from popmap_gql.db.models import EventStatus
from tests.fake_cognito import FakeCognito
from tests.helpers import global_id, gql, make_business, make_category, make_event
from tests.people import ANONYMOUS, Person, person, service

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "600"))

Node = graphql.ValueNode
T = TypeVar("T")


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode("utf-8", "surrogatepass")).decode().rstrip("=")


def _string(value: str) -> Node:
    return graphql.StringValueNode(value=value)


HOSTILE_TEXT = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",  # a lone surrogate: the request body is then not valid JSON for the server
    "%",
    "_",
    "\\",
    "'; DROP TABLE business; --",
    "x" * 5000,
    "\u0661",
    "javascript:alert(1)",
    "https://example.com/logo.png",
    "+15125550100",
    "someone@example.com",
    "bakery",
]
# Valid ISO 8601 instants whose UTC time lies outside years 1..9999.
OVERFLOWING_INSTANTS = ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"]
HOSTILE_INSTANTS = [
    "9999-12-31T23:59:59.999999+00:00",
    "0001-01-01T00:00:00Z",
    "2026-01-01T10:00:00",  # no offset
    "2026-02-30T10:00:00Z",
    "2026-01-01T10:00:00+24:00",
    "not a date",
    "",
]
# Forged cursors: base64 of JSON carrying sort values PostgreSQL cannot take.
HOSTILE_CURSORS = [
    _b64(json.dumps([order, value, pk], separators=(",", ":")))
    for order in ("NAME_ASC", "STARTS_AT_ASC", "NEWEST_FIRST")
    for value in ("a\x00", "\ud800", *OVERFLOWING_INSTANTS)
    for pk in (1, True)
]


def hostile_ids(real: list[str]) -> list[str]:
    """The real IDs, and other spellings of them that must not name any row."""
    odd = [
        _b64(text)
        for text in (
            "Business: 1",
            "Business:01",
            "Business:1_0",
            "Business:\u0661",
            "Business:-1",
            "Business:0",
            f"Business:{2**63}",
            "Event:1\x00",
            "Category:1 ",
            "User:1",
            "Business:\ud800",
        )
    ]
    return [*real, *odd, *(r + "==" for r in real[:2]), "", "\x00", "garbage!"]


def instants() -> st.SearchStrategy[str]:
    offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
        lambda minutes: timezone(timedelta(minutes=minutes))
    )
    moments = st.datetimes(
        min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31), timezones=offsets
    )
    near = st.integers(min_value=-30, max_value=30).map(
        lambda days: datetime.now(UTC) + timedelta(days=days)
    )
    return st.one_of(
        st.sampled_from(OVERFLOWING_INSTANTS),
        st.sampled_from(HOSTILE_INSTANTS),
        moments.map(datetime.isoformat),
        near.map(str),
    )


def _mostly(usual: st.SearchStrategy[T], hostile: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    """`hostile` one time in three: a document reaches the resolvers and the SQL only when
    its other arguments pass, so most values must be plausible."""
    return st.integers(min_value=0, max_value=2).flatmap(lambda n: hostile if n == 0 else usual)


def scalars(real: Seeded) -> dict[str, st.SearchStrategy[Node]]:
    ints = _mostly(
        st.integers(min_value=1, max_value=100),
        st.sampled_from([0, -1, 101, 2**31 - 1, -(2**31), 2**31, 10**30]),
    )
    floats = _mostly(
        st.floats(min_value=-90, max_value=90),
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False),
            st.sampled_from([-0.0, -90.000001, 180.000001, 1e308, -1e308]),
        ),
    )
    return {
        "ID": _mostly(st.sampled_from(real.ids), st.sampled_from(hostile_ids(real.ids))).map(
            _string
        ),
        "String": _mostly(
            st.one_of(st.sampled_from(["bakery", "music", *real.cursors]), st.text(max_size=20)),
            st.sampled_from(HOSTILE_TEXT + HOSTILE_CURSORS),
        ).map(_string),
        "DateTime": instants().map(_string),
        "Int": ints.map(lambda value: graphql.IntValueNode(value=str(value))),
        "Float": floats.map(lambda value: graphql.FloatValueNode(value=repr(value))),
    }


@functools.cache
def graphql_schema() -> graphql.GraphQLSchema:
    """The served schema, as clients see it (its SDL)."""
    return graphql.build_schema(schema.as_str())


def documents(custom: Any) -> st.SearchStrategy[str]:
    """One root field per document, each field as likely as any other, so that one
    field's refusal does not hide another's fault; one document in as many breaks the
    schema somewhere."""
    parsed = graphql_schema()
    per_field = [
        hypothesis_graphql.from_schema(parsed, fields=[name], custom_scalars=custom)
        for root in (parsed.query_type, parsed.mutation_type)
        if root is not None
        for name in root.fields
    ]
    negative = hypothesis_graphql.from_schema(
        parsed, custom_scalars=custom, mode=hypothesis_graphql.Mode.NEGATIVE
    )
    return st.one_of(*per_field, negative)


@dataclass(frozen=True)
class Seeded:
    people: list[Person]
    ids: list[str]  # of existing rows, businesses first (most ID arguments name one)
    cursors: list[str]  # as the API writes them, one per list and order


async def seed(client: httpx.AsyncClient, cognito: FakeCognito) -> Seeded:
    """A few rows of every kind and every visibility, the viewers, and real cursors."""
    owner = await person(cognito, "owner")
    # Hypothesis draws the first entries most often; staff reach the most code.
    people = [
        await person(cognito, "moderator", groups=("staff",)),
        owner,
        await person(cognito, "stranger"),
        ANONYMOUS,
        service(cognito, "importer", ("events.write", "read.all", "moderate")),
        service(cognito, "scopeless"),
    ]
    bakery, music = await make_category("Bakery"), await make_category("Music")
    shop = await make_business("Shop", owner=owner.user, categories=[bakery])
    draft = await make_business("Draft", owner=owner.user, verified=False, categories=[music])
    other = await make_business("Other", categories=[bakery, music])
    events = [
        await make_event("Fair", businesses=[shop, other], host_business=shop),
        await make_event("Past", starts_in=timedelta(days=-5), businesses=[draft]),
        await make_event(
            "Proposal", status=EventStatus.PENDING, created_by=owner.user, host_business=draft
        ),
        await make_event("Cancelled", status=EventStatus.CANCELLED, businesses=[other]),
    ]
    ids = [
        *(global_id("Business", b.id) for b in (shop, draft, other)),
        *(global_id("Event", e.id) for e in events),
        *(global_id("Category", c.id) for c in (bakery, music)),
    ]
    return Seeded(people, ids, await _cursors(client))


async def _cursors(client: httpx.AsyncClient) -> list[str]:
    cursors = []
    for field, enum in (("businesses", "BusinessOrder"), ("events", "EventOrder")):
        enum_type = graphql_schema().type_map[enum]
        assert isinstance(enum_type, graphql.GraphQLEnumType)
        for order in enum_type.values:
            query = f"{{ {field}(first: 1, orderBy: {order}) {{ pageInfo {{ endCursor }} }} }}"
            body = await gql(client, query)
            cursors.append(body["data"][field]["pageInfo"]["endCursor"])
    return cursors


def _failure(response: httpx.Response) -> str | None:
    """Why this answer is a server fault, or None when it is an answer."""
    if response.status_code >= 500:
        return f"HTTP {response.status_code}: {response.text[:500]}"
    body = response.json()
    for error in body.get("errors") or []:
        if (error.get("extensions") or {}).get("code") == "INTERNAL_SERVER_ERROR":
            return f"INTERNAL_SERVER_ERROR: {error}"
    return None


def fuzz(http: httpx.Client, documents: st.SearchStrategy[str], people: list[Person]) -> None:
    """Post each generated document as one of `people`; fail on any server fault."""

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(document=documents, who=st.sampled_from(people))
    def check(document: str, who: Person) -> None:
        # json.dumps escapes lone surrogates, which httpx's own encoder cannot send
        body = json.dumps({"query": document})
        response = http.post(
            "/graphql", content=body, headers={**who.headers, "content-type": "application/json"}
        )
        failure = _failure(response)
        assert failure is None, f"{who.name} sent:\n{document}\n{failure}"

    check()


async def test_no_generated_document_makes_the_server_fail(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    seeded = await seed(client, cognito)
    generated = documents(scalars(seeded))

    # Hypothesis drives a blocking loop; the server runs in this event loop meanwhile.
    with httpx.Client(base_url=client.base_url, timeout=30) as http:
        await asyncio.to_thread(fuzz, http, generated, seeded.people)
