"""Deeply nested `variables` and `extensions` are a coded 400, never a 500."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from graphql import (
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLSchema,
)

from popmap_gql.api.engine import graphql_schema
from popmap_gql.api.schema import schema
from popmap_gql.http.nesting import MAX_JSON_DEPTH
from tests.helpers import make_business

NAMES = "{ businesses { edges { node { name } } } }"
FILTERED = "query ($f: BusinessFilter) { businesses(filter: $f) { edges { node { name } } } }"


def nested(levels: int, shape: str) -> Any:
    """A value whose objects or arrays nest `levels` deep, counting the outermost."""
    value: Any = "bottom"
    for _ in range(levels):
        value = {"a": value} if shape == "objects" else [value]
    return value


async def send(client: httpx.AsyncClient, method: str, params: dict[str, Any]) -> httpx.Response:
    if method == "POST":
        return await client.post("/graphql", json=params)
    # the standard library's encoder: orjson itself refuses 255 levels and more
    encoded = {
        name: value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        for name, value in params.items()
    }
    return await client.get("/graphql", params=encoded, headers={"accept": "application/json"})


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize("shape", ["objects", "arrays"])
async def test_variables_nested_300_deep_are_a_coded_bad_request(
    client: httpx.AsyncClient, method: str, shape: str
) -> None:
    await make_business("Crumbs")
    variables = {"unused": nested(300, shape)}

    response = await send(client, method, {"query": NAMES, "variables": variables})

    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert f"`variables` are nested more than {MAX_JSON_DEPTH} levels" in error["message"]


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_a_declared_variable_nested_300_deep_is_a_coded_bad_request(
    client: httpx.AsyncClient, method: str
) -> None:
    variables = {"f": {"categorySlugs": nested(300, "arrays")}}

    response = await send(client, method, {"query": FILTERED, "variables": variables})

    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_extensions_nested_300_deep_are_a_coded_bad_request(
    client: httpx.AsyncClient, method: str
) -> None:
    extensions = {"persistedQuery": nested(300, "objects")}

    response = await send(client, method, {"query": NAMES, "extensions": extensions})

    assert response.status_code == 400, response.text
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert "`extensions` are nested" in error["message"]


@pytest.mark.parametrize("shape", ["objects", "arrays"])
async def test_variables_nested_to_the_limit_are_answered(
    client: httpx.AsyncClient, shape: str
) -> None:
    await make_business("Crumbs")
    variables = nested(MAX_JSON_DEPTH - 1, shape)  # inside the `variables` object itself

    response = await client.post(
        "/graphql", json={"query": NAMES, "variables": {"unused": variables}}
    )

    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"businesses": {"edges": [{"node": {"name": "Crumbs"}}]}}}


def _input_depth(graphql_type: GraphQLInputType, seen: frozenset[str] = frozenset()) -> int:
    """Levels of JSON objects and arrays a value of this type can take."""
    if isinstance(graphql_type, GraphQLNonNull):
        return _input_depth(graphql_type.of_type, seen)
    if isinstance(graphql_type, GraphQLList):
        return 1 + _input_depth(graphql_type.of_type, seen)
    if isinstance(graphql_type, GraphQLInputObjectType):
        assert graphql_type.name not in seen, f"{graphql_type.name} contains itself"
        inner = seen | {graphql_type.name}
        fields = graphql_type.fields.values()
        return 1 + max((_input_depth(field.type, inner) for field in fields), default=0)
    return 0  # scalars and enums


def test_every_input_of_the_schema_fits_within_the_depth_limit() -> None:
    core: GraphQLSchema = graphql_schema(schema)
    arguments = [
        argument
        for root in (core.query_type, core.mutation_type)
        if root is not None
        for field in root.fields.values()
        for argument in field.args.values()
    ]
    deepest = max(_input_depth(argument.type) for argument in arguments)

    assert deepest >= 2  # filters and inputs are objects holding lists
    assert 1 + deepest <= MAX_JSON_DEPTH  # one level for the `variables` object itself
