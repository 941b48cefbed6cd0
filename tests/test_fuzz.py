"""Property-based fuzz of the whole schema over real HTTP: no request is ever a 500.

hypothesis-graphql writes queries and mutations from the exported schema; the scalars
are drawn from hostile values (NUL, lone surrogates, instants whose UTC time overflows,
IDs in forms other than the canonical one, forged cursors) mixed with the real IDs of
seeded rows, so that documents also reach the resolvers and the SQL. Each document is
sent by a viewer drawn from anonymous, a stranger, an owner, staff and two other servers
(client-credentials tokens with every scope and with none); all tokens are really signed.
Refusals of any kind are fine; a 5xx or an INTERNAL_SERVER_ERROR is not.

The run is derandomized (the same examples on every run, so CI does not flake) and
small; raise FUZZ_EXAMPLES locally for a longer hunt. A second axis (at the end) sends the
same documents with their values written as clients may write them.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import functools
import json
import os
from collections.abc import Callable
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


def documents(custom: Any, *, mutations: bool = True) -> st.SearchStrategy[str]:
    """One root field per document, each field as likely as any other, so that one
    field's refusal does not hide another's fault; one document in as many breaks the
    schema somewhere."""
    parsed = graphql_schema()
    roots = (parsed.query_type, parsed.mutation_type) if mutations else (parsed.query_type,)
    per_field = [
        hypothesis_graphql.from_schema(parsed, fields=[name], custom_scalars=custom)
        for root in roots
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
            # nearest first needs a centre, relevance a term: cursors made for these
            made_for = {
                "DISTANCE": ", filter: {near: {latitude: 30.27, longitude: -97.74, radiusKm: 100}}",
                "RELEVANCE": ', filter: {search: "shop"}',
            }.get(order, "")
            query = (
                f"{{ {field}(first: 1, orderBy: {order}{made_for})"
                " { pageInfo { endCursor } } }"
            )
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


# --- the second axis: how the values are written --------------------------------------
#
# The same documents again, each literal argument moved into a variable whose value is
# written the way a client may write it: an Int as `5`, `5.0` or `5e0`, enums as strings,
# input objects with their fields in another order; bodies come with a byte-order mark or
# repeated keys, and some variables hold numbers at the edges of what JSON parsers, Int
# and Float take. Beside "never a 500", a query must get the same data both ways: values
# that coerce alike are the same request (tests/test_decision_keys.py).

Draw = Callable[[st.SearchStrategy[Any]], Any]  # st.DataObject.draw

EDGE_NUMBERS = [
    "2147483647",
    "2147483648",
    "-2147483649",
    "9007199254740993",
    "18446744073709551616",
    "-0",
    "-0.0",
    "1e308",
    "1e309",
    "4.9e-324",
    "1e-400",
    "1E2",
    "100.000000000000001",
]


def _spelled(value: Any, draw: Draw) -> str:
    """`value` as JSON, its integers written as integers, floats or exponents."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int):
        if abs(value) >= 2**53:
            return str(value)
        spelling: str = draw(
            st.sampled_from([str(value), f"{value}.0", f"{value}e0", f"{value}0e-1"])
        )
        return spelling
    if isinstance(value, float | str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ",".join(_spelled(item, draw) for item in value) + "]"
    items = list(value.items())
    order = draw(st.permutations(items)) if len(items) > 1 else items
    return "{" + ",".join(f"{json.dumps(k)}:{_spelled(v, draw)}" for k, v in order) + "}"


@dataclass(frozen=True)
class Variablized:
    literal: str  # the document as generated
    document: str  # its arguments as variables
    variables: str  # their values, as JSON text written as a client may


def variablized(document: str, draw: Draw) -> Variablized | None:
    """The document with each top-level argument of a field moved into a variable of the
    argument's type; None when it does not parse or validate (nothing to compare)."""
    parsed_schema = graphql_schema()
    try:
        tree = graphql.parse(document)
    except graphql.GraphQLError:
        return None
    if graphql.validate(parsed_schema, tree):
        return None
    type_info = graphql.TypeInfo(parsed_schema)
    definitions: list[graphql.VariableDefinitionNode] = []
    values: list[str] = []

    class Mover(graphql.Visitor):
        def enter_argument(self, node: graphql.ArgumentNode, *_: Any) -> Any:
            argument = type_info.get_argument()
            if argument is None or isinstance(node.value, graphql.VariableNode):
                return None
            name = f"v{len(definitions)}"
            type_node = graphql.parse_type(str(argument.type))
            definitions.append(
                graphql.VariableDefinitionNode(
                    variable=graphql.VariableNode(name=graphql.NameNode(value=name)),
                    type=type_node,
                )
            )
            value = graphql.value_from_ast_untyped(node.value)
            values.append(f"{json.dumps(name)}:{_spelled(value, draw)}")
            return graphql.ArgumentNode(
                name=node.name, value=graphql.VariableNode(name=graphql.NameNode(value=name))
            )

    moved = graphql.visit(tree, graphql.TypeInfoVisitor(type_info, Mover()))
    operations = [d for d in moved.definitions if isinstance(d, graphql.OperationDefinitionNode)]
    if len(operations) != 1:
        return None
    operation = operations[0]
    with_variables = dataclasses.replace(
        operation, variable_definitions=(*(operation.variable_definitions or ()), *definitions)
    )
    rebuilt = graphql.DocumentNode(
        definitions=tuple(with_variables if d is operation else d for d in moved.definitions)
    )
    return Variablized(document, graphql.print_ast(rebuilt), "{" + ",".join(values) + "}")


def framed(query: str, variables: str, draw: Draw) -> bytes:
    """A request body around `query` and `variables`: plain, after a byte-order mark, with
    a decoy `query` key before the real one, or with an edge number beside them."""
    core = f'"query":{json.dumps(query)},"variables":{variables}'
    frame = draw(st.sampled_from(["plain", "bom", "repeated", "edge"]))
    if frame == "bom":
        return b"\xef\xbb\xbf{" + core.encode() + b"}"
    if frame == "repeated":
        return ('{"query":"{ nope }",' + core + ',"variables":' + variables + "}").encode()
    if frame == "edge":
        edge = draw(st.sampled_from(EDGE_NUMBERS))
        return ("{" + core + f',"extensions":{{"n":{edge}}},"operationName":null}}').encode()
    return ("{" + core + "}").encode()


def _codes(body: dict[str, Any]) -> list[str]:
    return sorted((e.get("extensions") or {}).get("code", "") for e in body.get("errors") or [])


def fuzz_spellings(
    http: httpx.Client, documents: st.SearchStrategy[str], people: list[Person]
) -> None:
    @settings(
        max_examples=EXAMPLES // 2,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(document=documents, who=st.sampled_from(people), data=st.data())
    def check(document: str, who: Person, data: st.DataObject) -> None:
        moved = variablized(document, data.draw)
        if moved is None:
            return
        headers = {**who.headers, "content-type": "application/json"}
        body = framed(moved.document, moved.variables, data.draw)
        response = http.post("/graphql", content=body, headers=headers)
        failure = _failure(response)
        assert failure is None, f"{who.name} sent:\n{body!r}\n{failure}"
        if response.status_code != 200 or not moved.literal.lstrip().startswith(("query", "{")):
            return  # a refused body (a byte-order mark: 400); a mutation is not repeated
        literal = http.post(
            "/graphql", content=json.dumps({"query": moved.literal}), headers=headers
        )
        written, plain = response.json(), literal.json()
        if "GRAPHQL_VALIDATION_FAILED" in _codes(plain):
            # A literal the SDL's scalars let through but the server's refuse (an instant
            # such as 2026-02-30): as a variable, the same value is refused in coercion.
            assert written.get("data") is None, f"{who.name}: {body!r}"
            assert written.get("errors"), f"{who.name}: {body!r}"
            return
        # Both forms validate, so both reach the resolvers with the same values: the
        # same data and the same refusals.
        assert (written.get("data"), _codes(written)) == (plain.get("data"), _codes(plain)), (
            f"{who.name}: {body!r}"
        )

    check()


async def test_no_spelling_of_the_values_makes_the_server_fail_or_answer_otherwise(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    seeded = await seed(client, cognito)
    custom = scalars(seeded)
    # half of them queries, which are sent both ways and compared
    generated = st.one_of(documents(custom, mutations=False), documents(custom))

    with httpx.Client(base_url=client.base_url, timeout=30) as http:
        await asyncio.to_thread(fuzz_spellings, http, generated, seeded.people)
