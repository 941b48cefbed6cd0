"""What the server remembers about a request (its cost, its plan, its cached answer) is
keyed on the coerced variable values execution sees, never on how the client wrote them:
values that coerce alike share a decision, values that do not never do."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import orjson

from tests.helpers import error_codes, global_id, gql, make_business, make_event

# Cost 305,201 with 100 events on a page; cheap with the default page size.
COSTLY = (
    "query C($n: Int) { events(first: $n, filter: {upcoming: false}) { edges { node {"
    " businesses { categories { name } events { title } } } } } }"
)


async def raw(client: httpx.AsyncClient, body: bytes) -> dict[str, Any]:
    """POST a body exactly as written (JSON numbers such as `1e2` survive)."""
    response = await client.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    decoded: dict[str, Any] = response.json()
    return decoded


def costly_body(n: str) -> bytes:
    return b'{"query": %s, "variables": {"n": %s}}' % (orjson.dumps(COSTLY), n.encode())


async def test_an_int_written_as_a_float_or_an_exponent_costs_what_the_int_costs(
    client: httpx.AsyncClient,
) -> None:
    for written in ("100", "100.0", "1e2", "1.0e2"):
        assert error_codes(await raw(client, costly_body(written))) == ["QUERY_TOO_COSTLY"], written


async def test_a_cheap_request_of_the_same_text_does_not_admit_a_costly_one(
    client: httpx.AsyncClient,
) -> None:
    for cheap in (await gql(client, COSTLY, {}), await raw(client, costly_body("1"))):
        assert "errors" not in cheap, cheap

    for written in ("100.0", "1e2", "100"):
        assert error_codes(await raw(client, costly_body(written))) == ["QUERY_TOO_COSTLY"]


async def test_a_costly_request_does_not_poison_the_legitimate_one(
    client: httpx.AsyncClient,
) -> None:
    await make_event("Market", businesses=[await make_business("Crumbs")])
    refused = await raw(client, costly_body("100.0"))
    assert error_codes(refused) == ["QUERY_TOO_COSTLY"]

    answered = await gql(client, COSTLY, {})
    omitted = await gql(client, COSTLY)
    explicit_null = await gql(client, COSTLY, {"n": None})

    for body in (answered, omitted, explicit_null):
        assert "errors" not in body, body
        assert len(body["data"]["events"]["edges"]) == 1


# --- the response cache -------------------------------------------------------------

TITLES = (
    "query T($first: Int = 1, $order: EventOrder! = STARTS_AT_ASC, $filter: EventFilter)"
    " { events(first: $first, orderBy: $order, filter: $filter) { edges { node { title } } } }"
)


async def titles(
    client: httpx.AsyncClient, body: bytes | dict[str, Any]
) -> tuple[list[str], str | None]:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    response = await client.post(
        "/graphql", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    decoded = response.json()
    assert "errors" not in decoded, decoded
    edges = decoded["data"]["events"]["edges"]
    return [edge["node"]["title"] for edge in edges], response.headers.get("x-popmap-cache")


async def test_values_that_coerce_alike_share_one_cached_answer(
    client: httpx.AsyncClient,
) -> None:
    await make_event("First")
    await make_event("Second", starts_in=timedelta(days=2))
    query = orjson.dumps(TITLES).decode()

    assert await titles(client, {"query": TITLES}) == (["First"], "miss")
    alike: list[bytes | dict[str, Any]] = [
        {"query": TITLES, "variables": {"first": 1}},  # the default written out
        f'{{"query": {query}, "variables": {{"first": 1.0}}}}'.encode(),  # a float for an Int
        f'{{"query": {query}, "variables": {{"first": 1e0}}}}'.encode(),  # an exponent
        {"query": TITLES, "variables": {}, "operationName": "T"},  # the only operation named
        {"query": TITLES, "variables": {"order": "STARTS_AT_ASC"}},  # the default enum
        {
            "query": TITLES,
            "operationName": None,
            "variables": {"first": 1, "order": "STARTS_AT_ASC"},
        },
    ]
    for body in alike:
        assert await titles(client, body) == (["First"], "hit"), body


async def test_input_objects_share_an_answer_whatever_the_order_of_their_fields(
    client: httpx.AsyncClient,
) -> None:
    await make_event("First")
    ordered = {"upcoming": True, "endsAfter": "2020-01-01T00:00:00Z"}
    reordered = {"endsAfter": "2020-01-01T01:00:00+01:00", "upcoming": True}  # same instant

    first = await titles(client, {"query": TITLES, "variables": {"filter": ordered}})
    second = await titles(client, {"query": TITLES, "variables": {"filter": reordered}})
    defaulted = await titles(
        client, {"query": TITLES, "variables": {"filter": {"endsAfter": "2020-01-01T00:00:00Z"}}}
    )

    assert first == (["First"], "miss")
    assert second == (["First"], "hit")
    assert defaulted == (["First"], "hit")  # `upcoming` defaults to true


async def test_values_that_differ_after_coercion_never_share_an_answer(
    client: httpx.AsyncClient,
) -> None:
    await make_event("First")
    await make_event("Second", starts_in=timedelta(days=2))

    assert await titles(client, {"query": TITLES}) == (["First"], "miss")
    # null is not the default: it asks for the server's page size
    assert await titles(client, {"query": TITLES, "variables": {"first": None}}) == (
        ["First", "Second"],
        "miss",
    )
    assert await titles(client, {"query": TITLES, "variables": {"first": 2}}) == (
        ["First", "Second"],
        "miss",
    )
    assert await titles(client, {"query": TITLES, "variables": {"order": "STARTS_AT_DESC"}}) == (
        ["Second"],
        "miss",
    )


async def test_an_id_written_as_a_number_is_the_id_written_as_a_string(
    client: httpx.AsyncClient,
) -> None:
    business = await make_business("Crumbs")
    lookup = "query B($id: ID!) { business(id: $id) { name } }"
    wanted = global_id("Business", business.id)

    as_string = await client.post("/graphql", json={"query": lookup, "variables": {"id": wanted}})
    assert as_string.json()["data"] == {"business": {"name": "Crumbs"}}

    # An ID variable accepts an Int: 5 and "5" are the same ID (no business has it), so
    # both get the same answer, and a number never reaches a decision as a number.
    by_number = await gql(client, lookup, {"id": 5})
    by_text = await gql(client, lookup, {"id": "5"})
    assert error_codes(by_number) == error_codes(by_text) == ["NOT_FOUND"]
