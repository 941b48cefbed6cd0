""" "Near me" over HTTP: `EventFilter.near` (a circle, by great-circle distance) and
`orderBy: DISTANCE` (nearest first), for each kind of viewer, with exact edges, the true
order where degrees mislead, cursors that page by distance and refuse another centre,
and bad input refused naming the field."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

from popmap_gql.api.arguments import MAX_NEAR_RADIUS_KM
from popmap_gql.db.models import EventStatus
from tests.fake_cognito import FakeCognito
from tests.helpers import error_codes, make_event
from tests.people import ANONYMOUS, post, service, viewers

NEAR = """query ($near: NearInput, $first: Int, $after: String, $orderBy: EventOrder!) {
  events(filter: {near: $near}, first: $first, after: $after, orderBy: $orderBy) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { title } }
  }
}"""

CENTRE = {"latitude": 30.27, "longitude": -97.74}
KM_PER_DEGREE = 6371.0088 * math.pi / 180  # of latitude, on the sphere the API measures on


def north(km: float) -> dict[str, float]:
    return {"latitude": CENTRE["latitude"] + km / KM_PER_DEGREE, "longitude": CENTRE["longitude"]}


def east_degrees(degrees: float) -> dict[str, float]:
    return {"latitude": CENTRE["latitude"], "longitude": CENTRE["longitude"] + degrees}


async def event_at(title: str, place: dict[str, float], **fields: Any) -> None:
    await make_event(title, latitude=place["latitude"], longitude=place["longitude"], **fields)


async def _map() -> None:
    """Events around the centre. 0.95 degrees east is 91.2 km (a degree of longitude is
    cos(30.27 degrees) = 0.864 of one of latitude) and 0.88 degrees north is 97.9 km: in
    degrees the north one is nearer, on the earth the east one."""
    await event_at("Here", CENTRE)
    await event_at("1 km north", north(1.0))
    await event_at("Pending 2 km north", north(2.0), status=EventStatus.PENDING)
    await event_at("3 km north", north(3.0))
    await event_at("0.95 degrees east", east_degrees(0.95))
    await make_event("0.88 degrees north", latitude=CENTRE["latitude"] + 0.88, longitude=-97.74)
    await event_at("99.99 km north", north(99.99))
    await event_at("100.01 km north", north(100.01))
    await make_event("Far away", latitude=51.5, longitude=-0.12)


EXPECTED = [
    "Here",
    "1 km north",
    "3 km north",
    "0.95 degrees east",
    "0.88 degrees north",
    "99.99 km north",
]


def _titles(body: dict[str, Any]) -> list[str]:
    assert "errors" not in body, body
    return [edge["node"]["title"] for edge in body["data"]["events"]["edges"]]


async def test_near_orders_by_true_distance_with_exact_edges_for_every_viewer(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    await _map()
    near = {**CENTRE, "radiusKm": 100.0}

    for who in await viewers(cognito):
        body = await post(client, who, NEAR, {"near": near, "orderBy": "DISTANCE"})

        staff = who.name == "moderator"
        expected = [*EXPECTED[:2], *(["Pending 2 km north"] if staff else []), *EXPECTED[2:]]
        assert _titles(body) == expected, who.name
        assert body["data"]["events"]["totalCount"] == len(expected)
        # without DISTANCE: the same circle, in the default order (start time, then id)
        by_start = await post(client, who, NEAR, {"near": near, "orderBy": "STARTS_AT_ASC"})
        assert sorted(_titles(by_start)) == sorted(expected), who.name


async def test_paging_by_distance_continues_exactly_after_each_page(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    await _map()
    # Several events at one place: equal distances, broken by id across page boundaries.
    for n in range(3):
        await event_at(f"Twin {n}", north(50.0))
    expected = [*EXPECTED[:3], "Twin 0", "Twin 1", "Twin 2", *EXPECTED[3:]]
    near = {**CENTRE, "radiusKm": MAX_NEAR_RADIUS_KM}

    for who in (ANONYMOUS, service(cognito, "partner")):
        for first in (1, 2, 4):
            seen: list[str] = []
            after = None
            while True:
                variables = {"near": near, "first": first, "after": after, "orderBy": "DISTANCE"}
                body = await post(client, who, NEAR, variables)
                page = body["data"]["events"]
                seen.extend(_titles(body))
                if not page["pageInfo"]["hasNextPage"]:
                    break
                after = page["pageInfo"]["endCursor"]
                assert after == page["edges"][-1]["cursor"]
            assert seen == expected, (who.name, first)


async def test_a_cursor_from_another_centre_or_order_is_refused(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    await _map()
    near = {**CENTRE, "radiusKm": 100.0}
    first = await post(client, ANONYMOUS, NEAR, {"near": near, "first": 2, "orderBy": "DISTANCE"})
    cursor = first["data"]["events"]["pageInfo"]["endCursor"]
    elsewhere = {**north(1.0), "radiusKm": 100.0}
    by_start = await post(client, ANONYMOUS, NEAR, {"near": near, "orderBy": "STARTS_AT_ASC"})
    start_cursor = by_start["data"]["events"]["pageInfo"]["endCursor"]

    for who in await viewers(cognito):
        for variables in (
            {"near": elsewhere, "after": cursor, "orderBy": "DISTANCE"},
            {"near": near, "after": cursor, "orderBy": "STARTS_AT_ASC"},
            {"near": near, "after": start_cursor, "orderBy": "DISTANCE"},
        ):
            body = await post(client, who, NEAR, variables)

            assert error_codes(body) == ["BAD_USER_INPUT"], (who.name, variables, body)
            assert body["errors"][0]["extensions"]["field"] == "after"
        # a wider circle around the same centre continues the same order
        wider = {**CENTRE, "radiusKm": MAX_NEAR_RADIUS_KM}
        variables = {"near": wider, "after": cursor, "orderBy": "DISTANCE"}
        body = await post(client, who, NEAR, variables)
        staff = who.name == "moderator"
        rest = [*(["Pending 2 km north"] if staff else []), *EXPECTED[2:]]
        assert _titles(body) == rest, who.name


@pytest.mark.parametrize(
    ("near", "field"),
    [
        ({**CENTRE, "radiusKm": 0}, "filter.near.radiusKm"),
        ({**CENTRE, "radiusKm": -1}, "filter.near.radiusKm"),
        ({**CENTRE, "radiusKm": 10_000}, "filter.near.radiusKm"),
        ({**CENTRE, "radiusKm": MAX_NEAR_RADIUS_KM + 0.001}, "filter.near.radiusKm"),
        ({"latitude": 91, "longitude": 0, "radiusKm": 1}, "filter.near.latitude"),
        ({"latitude": -90.5, "longitude": 0, "radiusKm": 1}, "filter.near.latitude"),
        ({"latitude": 0, "longitude": 180.5, "radiusKm": 1}, "filter.near.longitude"),
    ],
)
async def test_a_circle_out_of_range_is_refused_naming_the_field(
    client: httpx.AsyncClient, cognito: FakeCognito, near: dict[str, float], field: str | None
) -> None:
    for who in await viewers(cognito):
        body = await post(client, who, NEAR, {"near": near, "orderBy": "DISTANCE"})

        assert body.get("data") is None, body
        assert error_codes(body) == ["BAD_USER_INPUT"], (who.name, body)
        if field is not None:
            assert body["errors"][0]["extensions"]["field"] == field


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400"])
async def test_nan_and_infinity_in_variables_are_refused_as_json_cannot_hold_them(
    client: httpx.AsyncClient, cognito: FakeCognito, number: str
) -> None:
    for who in await viewers(cognito):
        for near in (
            f'{{"latitude": 30.27, "longitude": -97.74, "radiusKm": {number}}}',
            f'{{"latitude": {number}, "longitude": -97.74, "radiusKm": 5}}',
        ):
            text = (
                '{"query": "query ($near: NearInput) { events(filter: {near: $near},'
                ' orderBy: DISTANCE) { totalCount } }", "variables": {"near": ' + near + "}}"
            )
            response = await client.post(
                "/graphql",
                content=text.encode(),
                headers={**who.headers, "Content-Type": "application/json"},
            )

            # JSON has no NaN nor infinity: the body is refused before any GraphQL
            assert response.status_code == 400, response.text
            assert error_codes(response.json()) == ["BAD_REQUEST"]


@pytest.mark.parametrize(
    "near",
    [
        "{latitude: 30.27, longitude: -97.74, radiusKm: 1e400}",
        "{latitude: 1e400, longitude: -97.74, radiusKm: 5}",
        "{latitude: 30.27, longitude: -1e400, radiusKm: 5}",
    ],
)
async def test_a_number_beyond_a_double_in_the_document_is_refused(
    client: httpx.AsyncClient, cognito: FakeCognito, near: str
) -> None:
    # the nearest a client can come to NaN or infinity in GraphQL
    query = f"{{ events(filter: {{near: {near}}}, orderBy: DISTANCE) {{ totalCount }} }}"
    for who in await viewers(cognito):
        body = await post(client, who, query)

        assert body.get("data") is None, body
        assert error_codes(body) == ["BAD_USER_INPUT"], (who.name, body)


async def test_distance_without_near_is_refused_naming_order_by(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    await event_at("Here", CENTRE)
    for who in await viewers(cognito):
        body = await post(client, who, NEAR, {"near": None, "orderBy": "DISTANCE"})

        assert body.get("data") is None, body
        assert error_codes(body) == ["BAD_USER_INPUT"], (who.name, body)
        assert body["errors"][0]["extensions"]["field"] == "orderBy"


async def test_a_circle_across_the_antimeridian_and_around_a_pole(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    # Fiji: 179.9 E and 179.9 W are 21 km apart across the date line.
    await make_event("East of the line", latitude=-17.0, longitude=179.9)
    await make_event("West of the line", latitude=-17.0, longitude=-179.9)
    await make_event("Across the island", latitude=-17.0, longitude=178.0)
    # The pole: every longitude is near it.
    await make_event("Pole, facing Greenwich", latitude=89.9, longitude=0.0)
    await make_event("Pole, facing the date line", latitude=89.95, longitude=180.0)
    await make_event("Svalbard", latitude=78.2, longitude=15.6)

    for who in await viewers(cognito):
        fiji = {"latitude": -17.0, "longitude": 179.95, "radiusKm": 30.0}
        body = await post(client, who, NEAR, {"near": fiji, "orderBy": "DISTANCE"})
        assert _titles(body) == ["East of the line", "West of the line"], who.name

        pole = {"latitude": 90.0, "longitude": 0.0, "radiusKm": 50.0}
        body = await post(client, who, NEAR, {"near": pole, "orderBy": "DISTANCE"})
        assert _titles(body) == ["Pole, facing the date line", "Pole, facing Greenwich"]
