"""The read API over HTTP: filters, ordering, pagination, visibility and input errors."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from popmap_gql.db.models import EventStatus
from tests.helpers import (
    NOW,
    error_codes,
    global_id,
    gql,
    make_business,
    make_category,
    make_event,
    make_user,
)

BUSINESS_NAMES = """
query ($first: Int, $after: String, $filter: BusinessFilter, $orderBy: BusinessOrder) {
  businesses(first: $first, after: $after, filter: $filter, orderBy: $orderBy) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { name } }
  }
}
"""

EVENT_TITLES = """
query ($first: Int, $after: String, $filter: EventFilter, $orderBy: EventOrder) {
  events(first: $first, after: $after, filter: $filter, orderBy: $orderBy) {
    totalCount
    pageInfo { hasNextPage endCursor }
    edges { cursor node { title } }
  }
}
"""


async def business_names(client: httpx.AsyncClient, **variables: Any) -> list[str]:
    body = await gql(client, BUSINESS_NAMES, variables)
    assert "errors" not in body, body
    return [edge["node"]["name"] for edge in body["data"]["businesses"]["edges"]]


async def event_titles(client: httpx.AsyncClient, **variables: Any) -> list[str]:
    body = await gql(client, EVENT_TITLES, variables)
    assert "errors" not in body, body
    return [edge["node"]["title"] for edge in body["data"]["events"]["edges"]]


# --- categories -------------------------------------------------------------------------


async def test_categories_are_listed_by_name_with_opaque_ids(client: httpx.AsyncClient) -> None:
    await make_category("Crafts")
    await make_category("Bakery")

    body = await gql(client, "{ categories { id name slug } }")

    categories = body["data"]["categories"]
    assert [c["name"] for c in categories] == ["Bakery", "Crafts"]
    assert [c["slug"] for c in categories] == ["bakery", "crafts"]
    assert all(c["id"] and not c["id"].isdigit() for c in categories)


# --- business filters -------------------------------------------------------------------


async def test_business_search_matches_name_or_description_case_insensitively(
    client: httpx.AsyncClient,
) -> None:
    await make_business("Sunrise Bakery")
    await make_business("Night Owl", description="Late-night BAKERY and coffee")
    await make_business("Ceramics Studio")

    names = await business_names(client, filter={"search": "bakery"})

    assert names == ["Night Owl", "Sunrise Bakery"]


async def test_business_search_treats_like_wildcards_as_plain_text(
    client: httpx.AsyncClient,
) -> None:
    await make_business("100% Organic")
    await make_business("1000 Organic")
    await make_business("Shop_one")
    await make_business("Shopxone")

    assert await business_names(client, filter={"search": "100%"}) == ["100% Organic"]
    assert await business_names(client, filter={"search": "p_one"}) == ["Shop_one"]


async def test_business_filter_by_category_slugs_matches_any_listed_category(
    client: httpx.AsyncClient,
) -> None:
    bakery, coffee, crafts = (
        await make_category("Bakery"),
        await make_category("Coffee"),
        await make_category("Crafts"),
    )
    await make_business("Bread", categories=[bakery])
    await make_business("Beans", categories=[coffee])
    await make_business("Both", categories=[bakery, coffee])
    await make_business("Pots", categories=[crafts])

    names = await business_names(client, filter={"categorySlugs": ["bakery", "coffee"]})

    assert names == ["Beans", "Both", "Bread"]  # "Both" once, not twice
    assert await business_names(client, filter={"categorySlugs": ["unknown"]}) == []


async def test_business_filter_by_availability_for_hire(client: httpx.AsyncClient) -> None:
    await make_business("For Hire", available_for_hire=True)
    await make_business("Not For Hire", available_for_hire=False)

    assert await business_names(client, filter={"availableForHire": True}) == ["For Hire"]
    assert await business_names(client, filter={"availableForHire": False}) == ["Not For Hire"]


async def test_business_orderings(client: httpx.AsyncClient) -> None:
    for name in ("Beta", "Alpha", "Gamma"):
        await make_business(name)

    assert await business_names(client) == ["Alpha", "Beta", "Gamma"]
    assert await business_names(client, orderBy="NAME_DESC") == ["Gamma", "Beta", "Alpha"]
    assert await business_names(client, orderBy="NEWEST_FIRST") == ["Gamma", "Alpha", "Beta"]


# --- event filters ----------------------------------------------------------------------


async def test_events_are_upcoming_by_default_and_past_ones_on_request(
    client: httpx.AsyncClient,
) -> None:
    await make_event("Last week", starts_in=timedelta(days=-7))
    await make_event("Running now", starts_in=timedelta(hours=-1), hours=3)
    await make_event("Tomorrow", starts_in=timedelta(days=1))

    assert await event_titles(client) == ["Running now", "Tomorrow"]
    assert await event_titles(client, filter={"upcoming": True}) == ["Running now", "Tomorrow"]
    assert await event_titles(client, filter={"upcoming": False}) == [
        "Last week",
        "Running now",
        "Tomorrow",
    ]


async def test_events_filter_by_start_window(client: httpx.AsyncClient) -> None:
    await make_event("Day 1", starts_in=timedelta(days=1))
    await make_event("Day 3", starts_in=timedelta(days=3))
    await make_event("Day 5", starts_in=timedelta(days=5))

    window = {
        "startsAfter": (NOW + timedelta(days=2)).isoformat(),
        "startsBefore": (NOW + timedelta(days=4)).isoformat(),
    }
    assert await event_titles(client, filter=window) == ["Day 3"]
    assert await event_titles(client, filter={"startsAfter": window["startsAfter"]}) == [
        "Day 3",
        "Day 5",
    ]


async def test_events_filter_by_bounding_box(client: httpx.AsyncClient) -> None:
    await make_event("Austin", latitude=30.27, longitude=-97.74)
    await make_event("Dallas", latitude=32.78, longitude=-96.80)
    await make_event("Fiji", latitude=-17.7, longitude=178.0)
    await make_event("Samoa", latitude=-13.8, longitude=-172.1)

    around_austin = {"north": 30.5, "south": 30.0, "east": -97.5, "west": -98.0}
    assert await event_titles(client, filter={"bbox": around_austin}) == ["Austin"]

    across_antimeridian = {"north": 0.0, "south": -30.0, "east": -170.0, "west": 170.0}
    titles = await event_titles(client, filter={"bbox": across_antimeridian})
    assert sorted(titles) == ["Fiji", "Samoa"]


async def test_events_filter_by_category_slugs_of_taking_part_businesses(
    client: httpx.AsyncClient,
) -> None:
    bakery, music = await make_category("Bakery"), await make_category("Music")
    baker = await make_business("Baker", categories=[bakery])
    band = await make_business("Band", categories=[music])
    hidden_baker = await make_business("Hidden baker", verified=False, categories=[bakery])
    await make_event("Bread fair", businesses=[baker, band])
    await make_event("Concert", businesses=[band])
    await make_event("Secret bake-off", businesses=[hidden_baker])

    # the unverified baker's event does not show up through its category
    assert await event_titles(client, filter={"categorySlugs": ["bakery"]}) == ["Bread fair"]
    assert await event_titles(client, filter={"categorySlugs": ["music"]}) == [
        "Bread fair",
        "Concert",
    ]


async def test_events_filter_by_business_includes_hosted_and_joined(
    client: httpx.AsyncClient,
) -> None:
    baker = await make_business("Baker")
    other = await make_business("Other")
    await make_event("Joined", starts_in=timedelta(days=1), businesses=[baker])
    await make_event("Hosted", starts_in=timedelta(days=2), host_business=baker)
    await make_event("Unrelated", starts_in=timedelta(days=3), businesses=[other])

    titles = await event_titles(client, filter={"businessId": global_id("Business", baker.id)})

    assert titles == ["Joined", "Hosted"]


async def test_event_orderings(client: httpx.AsyncClient) -> None:
    await make_event("Second", starts_in=timedelta(days=2))
    await make_event("First", starts_in=timedelta(days=1))
    await make_event("Third", starts_in=timedelta(days=3))

    assert await event_titles(client) == ["First", "Second", "Third"]
    assert await event_titles(client, orderBy="STARTS_AT_DESC") == ["Third", "Second", "First"]
    assert await event_titles(client, orderBy="NEWEST_FIRST") == ["Third", "First", "Second"]


# --- pagination -------------------------------------------------------------------------


@pytest.mark.parametrize("order", ["NAME_ASC", "NAME_DESC", "NEWEST_FIRST"])
async def test_business_pages_cover_every_row_once(client: httpx.AsyncClient, order: str) -> None:
    # duplicate names make the id tie-breaker matter
    for number in range(23):
        await make_business(f"Shop {number % 7}")

    seen: list[str] = []
    after = None
    pages = 0
    while True:
        body = await gql(
            client,
            "query ($after: String, $order: BusinessOrder) { businesses(first: 5, after: $after,"
            " orderBy: $order) { totalCount pageInfo { hasNextPage endCursor }"
            " edges { node { id } } } }",
            {"after": after, "order": order},
        )
        connection = body["data"]["businesses"]
        assert connection["totalCount"] == 23
        seen.extend(edge["node"]["id"] for edge in connection["edges"])
        pages += 1
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]

    assert pages == 5
    assert len(seen) == 23
    assert len(set(seen)) == 23


async def test_event_pages_stay_stable_when_rows_are_added_before_the_cursor(
    client: httpx.AsyncClient,
) -> None:
    for day in range(1, 7):
        await make_event(f"Day {day}", starts_in=timedelta(days=day))
    body = await gql(client, EVENT_TITLES, {"first": 3})
    first_page = [edge["node"]["title"] for edge in body["data"]["events"]["edges"]]
    cursor = body["data"]["events"]["pageInfo"]["endCursor"]

    await make_event("Earlier insert", starts_in=timedelta(hours=12))
    second_page = await event_titles(client, first=3, after=cursor)

    assert first_page == ["Day 1", "Day 2", "Day 3"]
    assert second_page == ["Day 4", "Day 5", "Day 6"]


async def test_first_is_capped_at_one_hundred(client: httpx.AsyncClient) -> None:
    await make_business("Only")

    assert await business_names(client, first=100) == ["Only"]
    for bad in (0, -1, 101):
        body = await gql(client, BUSINESS_NAMES, {"first": bad})
        assert error_codes(body) == ["BAD_USER_INPUT"]
        assert body["errors"][0]["extensions"]["field"] == "first"
        assert body["data"] is None


@pytest.mark.parametrize(
    "cursor",
    [
        "not-base64!",
        "e30",  # base64 of "{}"
        "WyJTVEFSVFNfQVRfQVNDIiwieCIsMV0",  # a cursor of the events list
        "",
        "A" * 2000,
    ],
)
async def test_malformed_cursor_is_bad_user_input(client: httpx.AsyncClient, cursor: str) -> None:
    body = await gql(client, BUSINESS_NAMES, {"after": cursor})

    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == "after"


# --- single lookups and visibility ------------------------------------------------------


async def test_business_lookup_returns_fields_categories_and_events(
    client: httpx.AsyncClient,
) -> None:
    bakery = await make_category("Bakery")
    baker = await make_business(
        "Baker",
        categories=[bakery],
        contact_email="hi@baker.example",
        contact_phone="+15125550100",
        website="https://baker.example",
    )
    await make_event("Fair", businesses=[baker])
    await make_event("Own party", host_business=baker)

    body = await gql(
        client,
        "query ($id: ID!) { business(id: $id) { id name contactEmail contactPhone website"
        " tiktokUrl isVerified categories { slug } events { title } hostedEvents { title } } }",
        {"id": global_id("Business", baker.id)},
    )

    assert body["data"]["business"] == {
        "id": global_id("Business", baker.id),
        "name": "Baker",
        "contactEmail": "hi@baker.example",
        "contactPhone": "+15125550100",
        "website": "https://baker.example",
        "tiktokUrl": None,
        "isVerified": True,
        "categories": [{"slug": "bakery"}],
        "events": [{"title": "Fair"}],
        "hostedEvents": [{"title": "Own party"}],
    }


async def test_event_lookup_returns_host_businesses_categories_and_activity(
    client: httpx.AsyncClient,
) -> None:
    bakery, music = await make_category("Bakery"), await make_category("Music")
    host = await make_business("Host", categories=[music])
    baker = await make_business("Baker", categories=[bakery, music])
    event = await make_event("Fair", host_business=host, businesses=[host, baker])
    past = await make_event("Past", starts_in=timedelta(days=-3))

    query = (
        "query ($id: ID!) { event(id: $id) { title status isActive hostBusiness { name }"
        " businesses { name } categories { name } } }"
    )
    body = await gql(client, query, {"id": global_id("Event", event.id)})
    assert body["data"]["event"] == {
        "title": "Fair",
        "status": "APPROVED",
        "isActive": True,
        "hostBusiness": {"name": "Host"},
        "businesses": [{"name": "Host"}, {"name": "Baker"}],
        "categories": [{"name": "Bakery"}, {"name": "Music"}],
    }
    body = await gql(client, query, {"id": global_id("Event", past.id)})
    assert body["data"]["event"]["isActive"] is False


async def test_anonymous_sees_only_verified_businesses(client: httpx.AsyncClient) -> None:
    owner = await make_user("owner")
    await make_business("Verified")
    hidden = await make_business("Unverified", verified=False, owner=owner)
    event = await make_event("Fair", businesses=[hidden], host_business=hidden)

    assert await business_names(client) == ["Verified"]
    body = await gql(
        client,
        "query ($id: ID!) { business(id: $id) { name } }",
        {"id": global_id("Business", hidden.id)},
    )
    assert body["data"] == {"business": None}
    assert error_codes(body) == ["NOT_FOUND"]

    body = await gql(
        client,
        "query ($id: ID!) { event(id: $id) { businesses { name } hostBusiness { name } } }",
        {"id": global_id("Event", event.id)},
    )
    assert body["data"]["event"] == {"businesses": [], "hostBusiness": None}


@pytest.mark.parametrize(
    "status", [EventStatus.PENDING, EventStatus.REJECTED, EventStatus.CANCELLED]
)
async def test_anonymous_sees_only_approved_events(
    client: httpx.AsyncClient, status: EventStatus
) -> None:
    baker = await make_business("Baker")
    await make_event("Approved", businesses=[baker])
    hidden = await make_event("Hidden", status=status, businesses=[baker])

    assert await event_titles(client) == ["Approved"]
    body = await gql(
        client,
        "query ($id: ID!) { event(id: $id) { title } }",
        {"id": global_id("Event", hidden.id)},
    )
    assert error_codes(body) == ["NOT_FOUND"]
    body = await gql(
        client,
        "query ($id: ID!) { business(id: $id) { events { title } } }",
        {"id": global_id("Business", baker.id)},
    )
    assert body["data"]["business"]["events"] == [{"title": "Approved"}]


# --- input errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["", "garbage", global_id("Event", 1), global_id("Business", 0), global_id("Business", -5)],
)
async def test_lookups_by_malformed_or_foreign_ids_are_not_found(
    client: httpx.AsyncClient, value: str
) -> None:
    await make_business("Shop")  # id 1, which the Event ID's number names too
    business = await gql(client, "query ($id: ID!) { business(id: $id) { name } }", {"id": value})
    event = await gql(client, "query ($id: ID!) { event(id: $id) { title } }", {"id": value})

    # IDs are opaque: text that is not an ID the API wrote names nothing.
    assert error_codes(business) == ["NOT_FOUND"]
    assert business["data"] == {"business": None}
    assert error_codes(event) == ["NOT_FOUND"]
    assert event["data"] == {"event": None}


async def test_unknown_business_is_not_found(client: httpx.AsyncClient) -> None:
    body = await gql(
        client,
        "query ($id: ID!) { business(id: $id) { name } }",
        {"id": global_id("Business", 999)},
    )

    assert error_codes(body) == ["NOT_FOUND"]
    assert body["errors"][0]["path"] == ["business"]


@pytest.mark.parametrize(
    ("bbox", "field"),
    [
        ({"north": 91, "south": 0, "east": 1, "west": 0}, "bbox.north"),
        ({"north": 10, "south": -90.5, "east": 1, "west": 0}, "bbox.south"),
        ({"north": 10, "south": 0, "east": 181, "west": 0}, "bbox.east"),
        ({"north": 10, "south": 0, "east": 1, "west": -180.01}, "bbox.west"),
        ({"north": 0, "south": 10, "east": 1, "west": 0}, "bbox.south"),
    ],
)
async def test_out_of_range_bounding_box_is_bad_user_input(
    client: httpx.AsyncClient, bbox: dict[str, float], field: str
) -> None:
    body = await gql(client, EVENT_TITLES, {"filter": {"bbox": bbox}})

    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == field


async def test_timestamps_without_offset_are_bad_user_input(client: httpx.AsyncClient) -> None:
    body = await gql(client, EVENT_TITLES, {"filter": {"startsAfter": "2026-01-01T10:00:00"}})

    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["extensions"]["field"] == "filter.startsAfter"


async def test_search_text_with_nul_or_over_length_is_bad_user_input(
    client: httpx.AsyncClient,
) -> None:
    for search in ("bad\x00byte", "x" * 201):
        body = await gql(client, BUSINESS_NAMES, {"filter": {"search": search}})
        assert error_codes(body) == ["BAD_USER_INPUT"]
        assert body["errors"][0]["extensions"]["field"] == "filter.search"


async def test_too_many_category_slugs_or_event_ids_are_bad_user_input(
    client: httpx.AsyncClient,
) -> None:
    slugs = [f"category-{n}" for n in range(51)]
    ids = [global_id("Event", n) for n in range(1, 102)]

    for query, variables, field in (
        (BUSINESS_NAMES, {"filter": {"categorySlugs": slugs}}, "filter.categorySlugs"),
        (EVENT_TITLES, {"filter": {"categorySlugs": slugs}}, "filter.categorySlugs"),
        (EVENT_TITLES, {"filter": {"ids": ids}}, "filter.ids"),
    ):
        body = await gql(client, query, variables)
        assert error_codes(body) == ["BAD_USER_INPUT"], field
        assert body["errors"][0]["extensions"]["field"] == field
        assert body["data"] is None
    # at the limits, the lists are read
    assert await business_names(client, filter={"categorySlugs": slugs[:50]}) == []
    assert await event_titles(client, filter={"ids": ids[:100]}) == []


async def test_an_overlong_id_is_bad_user_input_in_a_filter_and_names_nothing_in_a_lookup(
    client: httpx.AsyncClient,
) -> None:
    shop = await make_business("Shop")
    overlong = global_id("Business", shop.id) + "A" * 64

    filtered = await gql(client, EVENT_TITLES, {"filter": {"businessId": overlong}})
    looked_up = await gql(
        client, "query ($id: ID!) { business(id: $id) { name } }", {"id": overlong}
    )

    assert error_codes(filtered) == ["BAD_USER_INPUT"]
    assert filtered["errors"][0]["extensions"]["field"] == "filter.businessId"
    assert error_codes(looked_up) == ["NOT_FOUND"]
    assert looked_up["data"] == {"business": None}


async def test_wrongly_typed_variable_is_bad_user_input(client: httpx.AsyncClient) -> None:
    body = await gql(client, BUSINESS_NAMES, {"first": "ten"})

    assert error_codes(body) == ["BAD_USER_INPUT"]


async def test_status_filter_is_forbidden_to_anonymous(client: httpx.AsyncClient) -> None:
    await make_event("Pending", status=EventStatus.PENDING)

    body = await gql(client, EVENT_TITLES, {"filter": {"status": "PENDING"}})

    assert error_codes(body) == ["FORBIDDEN"]
    assert body["data"] is None


async def test_events_filter_by_ends_after_and_business_upcoming_events(
    client: httpx.AsyncClient,
) -> None:
    baker = await make_business("Baker")
    await make_event("Past", starts_in=timedelta(days=-10), businesses=[baker])
    await make_event("Soon", starts_in=timedelta(days=2), businesses=[baker])
    await make_event("Later", starts_in=timedelta(days=9), businesses=[baker])

    still_running = {"upcoming": False, "endsAfter": (NOW + timedelta(days=5)).isoformat()}
    assert await event_titles(client, filter=still_running) == ["Later"]
    body = await gql(
        client,
        "query ($id: ID!) { business(id: $id) { all: events { title }"
        " upcoming: events(upcoming: true) { title } } }",
        {"id": global_id("Business", baker.id)},
    )
    assert body["data"]["business"] == {
        "all": [{"title": "Past"}, {"title": "Soon"}, {"title": "Later"}],
        "upcoming": [{"title": "Soon"}, {"title": "Later"}],
    }
