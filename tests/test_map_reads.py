"""The map's reads at scale, over HTTP: search terms the trigram index can serve, bounding
boxes through the point index (exact edges, across the antimeridian), and the bounded
totalCount, for each kind of viewer and on both read paths."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from tortoise import connections

from popmap_gql.config import Settings
from popmap_gql.db.lists import FEW_ROWS, WALK_LIMIT, WALKED_INDEXES
from popmap_gql.db.models import EventStatus
from tests.fake_cognito import FakeCognito
from tests.helpers import error_codes, global_id, make_business, make_category, make_event
from tests.people import ANONYMOUS, Person, person, post, viewers
from tests.processes import clean_env, running_server

SEARCH = """query ($search: String) {
  businesses(filter: {search: $search}) { totalCount edges { node { name } } } }"""
EVENTS_IN = """query ($bbox: BoundingBox) {
  events(filter: {bbox: $bbox}) { totalCount edges { node { title } } } }"""
UPDATE_BUSINESS = """mutation ($id: ID, $input: BusinessInput!) {
  updateBusiness(id: $id, input: $input) { business { id name } } }"""
COUNTS = """{
  events(first: 1) { totalCount totalCountIsExact edges { node { title } } }
  businesses(first: 1) { totalCount totalCountIsExact }
  also: events(first: 2) { totalCountIsExact }
}"""


@pytest.mark.parametrize("term", ["ab", "%", "_", "a b c", "%%__", "  x  ", "é!"])
async def test_a_search_without_a_three_character_word_is_refused_for_every_viewer(
    client: httpx.AsyncClient, cognito: FakeCognito, term: str
) -> None:
    await make_business("Abbey Bakery")

    for who in await viewers(cognito):
        body = await post(client, who, SEARCH, {"search": term})

        assert error_codes(body) == ["BAD_USER_INPUT"], (who.name, body)
        error = body["errors"][0]
        assert error["extensions"]["field"] == "filter.search"
        assert "at least 3" in error["message"]


async def test_search_finds_the_term_anywhere_and_its_wildcards_literally(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    await make_business("100% Organic")
    await make_business("100 Organic")
    await make_business("Abbey Bakery", description="Sourdough, baked at dawn")
    await make_business("Hidden Bakery", verified=False)

    for who in await viewers(cognito):
        staff = who.name == "moderator"

        async def names(term: str, who: Person = who) -> list[str]:
            body = await post(client, who, SEARCH, {"search": term})
            assert "errors" not in body, body
            return [edge["node"]["name"] for edge in body["data"]["businesses"]["edges"]]

        assert await names("100%") == ["100% Organic"]
        assert await names("BAKERY") == ["Abbey Bakery", *(["Hidden Bakery"] if staff else [])]
        assert await names("ourdoug") == ["Abbey Bakery"]  # in the description
        assert await names("ab baker") == []  # the whole term, not its words
        assert await names("qqxzv") == []


async def test_a_search_with_a_control_character_is_refused(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    # The searched text is a business's name and description on two lines (migration
    # 0013): a term with a newline could otherwise match across the two.
    await make_business("Goat", description="farm")

    for who in await viewers(cognito):
        for term in ["goat\nfarm", "goat\tfarm", "goat\x7ffarm"]:
            body = await post(client, who, SEARCH, {"search": term})

            assert error_codes(body) == ["BAD_USER_INPUT"], (who.name, term, body)
            assert body["errors"][0]["extensions"]["field"] == "filter.search"


async def test_search_folds_case_beyond_ascii_and_follows_every_edit(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    staff = await person(cognito, "moderator", groups=("staff",))
    cafe = await make_business("Café Ölmühle", description="ÉPICERIE FINE")

    async def names(term: str) -> list[str]:
        body = await post(client, ANONYMOUS, SEARCH, {"search": term})
        assert "errors" not in body, body
        assert body["data"]["businesses"]["totalCount"] == len(body["data"]["businesses"]["edges"])
        return [edge["node"]["name"] for edge in body["data"]["businesses"]["edges"]]

    assert await names("CAFÉ ÖL") == ["Café Ölmühle"]
    assert await names("épicerie") == ["Café Ölmühle"]

    renamed = await post(
        client,
        staff,
        UPDATE_BUSINESS,
        {
            "id": global_id("Business", cafe.id),
            "input": {"name": "Tea Room", "description": "Leaves"},
        },
    )
    assert "errors" not in renamed, renamed

    assert await names("café") == []
    assert await names("épicerie") == []
    assert await names("TEA ROOM") == ["Tea Room"]
    assert await names("leaves") == ["Tea Room"]


async def test_a_count_of_several_categories_counts_each_business_once(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    bakery, coffee, tea = [await make_category(n) for n in ("Bakery", "Coffee", "Tea")]
    [anonymous, owner, staff, service] = await viewers(cognito)
    await make_business("Both", categories=[bakery, coffee], available_for_hire=True)
    await make_business("Bread", categories=[bakery], available_for_hire=True)
    await make_business("Beans", categories=[coffee, tea])
    await make_business("Leaves", categories=[tea], available_for_hire=True)
    await make_business("Own both", verified=False, owner=owner.user, categories=[bakery, coffee])
    await make_business("Hidden", verified=False, categories=[coffee], available_for_hire=True)
    query = """query ($slugs: [String!], $hire: Boolean) {
      businesses(filter: {categorySlugs: $slugs, availableForHire: $hire}) {
        totalCount totalCountIsExact edges { node { name } } } }"""
    expected = {
        # (slugs, for hire): what an anonymous viewer and a service, the owner, staff see
        (("bakery", "coffee"), None): (
            ["Beans", "Both", "Bread"],
            ["Beans", "Both", "Bread", "Own both"],
            ["Beans", "Both", "Bread", "Hidden", "Own both"],
        ),
        (("bakery", "coffee"), True): (
            ["Both", "Bread"],
            ["Both", "Bread"],
            ["Both", "Bread", "Hidden"],
        ),
        (("coffee",), None): (
            ["Beans", "Both"],
            ["Beans", "Both", "Own both"],
            ["Beans", "Both", "Hidden", "Own both"],
        ),
        (("tea", "coffee", "bakery", "tea"), True): (
            ["Both", "Bread", "Leaves"],
            ["Both", "Bread", "Leaves"],
            ["Both", "Bread", "Hidden", "Leaves"],
        ),
    }

    for (slugs, hire), (public, owners, staffs) in expected.items():
        for who, names in [
            (anonymous, public),
            (service, public),
            (owner, owners),
            (staff, staffs),
        ]:
            body = await post(client, who, query, {"slugs": list(slugs), "hire": hire})

            assert "errors" not in body, body
            found = body["data"]["businesses"]
            assert [edge["node"]["name"] for edge in found["edges"]] == names, (who.name, slugs)
            assert (found["totalCount"], found["totalCountIsExact"]) == (len(names), True)


@pytest.mark.parametrize("degrees", [0.5, 1.0, 1.5, 360.0])
async def test_a_box_includes_events_on_its_edges_and_nothing_beyond_them(
    client: httpx.AsyncClient, cognito: FakeCognito, degrees: float
) -> None:
    # The point index compares with a tolerance of 1e-6; the edges are exact all the same,
    # through the index (up to WIDE_BOX_DEGREES) and without it (wider).
    lat_span, lon_span = min(degrees, 40.0), degrees
    south, west = 30.0, -98.0 if degrees < 360 else -180.0
    north, east = south + lat_span, west + lon_span
    await make_event("North-west corner", latitude=north, longitude=west)
    await make_event("South-east corner", latitude=south, longitude=east)
    await make_event("Just north", latitude=north + 1e-7, longitude=west + lon_span / 2)
    if degrees < 360:
        await make_event("Just east", latitude=south + lat_span / 2, longitude=east + 1e-7)
    middle = {"latitude": south + lat_span / 2, "longitude": west + lon_span / 2}
    await make_event("Pending inside", status=EventStatus.PENDING, **middle)  # type: ignore[arg-type]
    box = {"north": north, "south": south, "east": east, "west": west}

    for who in await viewers(cognito):
        body = await post(client, who, EVENTS_IN, {"bbox": box})

        assert "errors" not in body, body
        titles = sorted(edge["node"]["title"] for edge in body["data"]["events"]["edges"])
        pending = ["Pending inside"] if who.name == "moderator" else []
        assert titles == sorted(["North-west corner", "South-east corner", *pending]), who.name
        assert body["data"]["events"]["totalCount"] == len(titles)


# A box wider than WIDE_BOX_DEGREES is answered without the point index (db/lists.py):
# each answer below is the same either side of it.
@pytest.mark.parametrize("degrees", [10.0, 0.5])
async def test_a_box_across_the_antimeridian_joins_both_sides_with_exact_edges(
    client: httpx.AsyncClient, cognito: FakeCognito, degrees: float
) -> None:
    west, east = 180.0 - degrees, -180.0 + degrees
    await make_event("West edge", latitude=-17.0, longitude=west)
    await make_event("Dateline east", latitude=-17.0, longitude=180.0)
    await make_event("Dateline west", latitude=-17.0, longitude=-180.0)
    await make_event("East edge", latitude=-17.0 + degrees / 4, longitude=east)
    await make_event("Just west of it", latitude=-17.0, longitude=west - 1e-7)
    await make_event("Just north of it", latitude=-17.0 + degrees / 2 + 1e-7, longitude=180.0)
    await make_event("Greenwich", latitude=-17.0, longitude=0.0)
    box = {"north": -17.0 + degrees / 2, "south": -17.0 - degrees / 2, "east": east, "west": west}

    for who in await viewers(cognito):
        body = await post(client, who, EVENTS_IN, {"bbox": box})

        assert "errors" not in body, body
        titles = sorted(edge["node"]["title"] for edge in body["data"]["events"]["edges"])
        assert titles == ["Dateline east", "Dateline west", "East edge", "West edge"], who.name


@pytest.mark.parametrize(
    ("bbox", "field"),
    [
        ("{north: 10, south: 20, east: 1, west: 0}", "bbox.south"),
        # beyond a double: the nearest a client can come to NaN or infinity in GraphQL
        ("{north: 1e400, south: 0, east: 1, west: 0}", None),
        ("{north: 10, south: 0, east: -1e400, west: 0}", None),
    ],
)
async def test_a_box_with_north_below_south_or_beyond_a_number_is_refused(
    client: httpx.AsyncClient, cognito: FakeCognito, bbox: str, field: str | None
) -> None:
    query = f"{{ events(filter: {{bbox: {bbox}}}) {{ totalCount }} }}"
    for who in await viewers(cognito):
        body = await post(client, who, query)

        assert body.get("data") is None, body
        codes = error_codes(body)
        assert codes == ["BAD_USER_INPUT"], (who.name, body)
        if field is not None:
            assert body["errors"][0]["extensions"]["field"] == field


async def test_total_count_is_exact_under_the_default_limit(client: httpx.AsyncClient) -> None:
    for n in range(3):
        await make_event(f"E{n}")
        await make_business(f"B{n}")

    body = await post(client, ANONYMOUS, COUNTS)

    assert body["data"]["events"]["totalCount"] == 3
    assert body["data"]["events"]["totalCountIsExact"] is True
    assert body["data"]["businesses"] == {"totalCount": 3, "totalCountIsExact": True}


def counting_to_three(settings: Settings, tmp_path: Path, compiled: str) -> dict[str, str]:
    """A server's environment: the test's database and Cognito, counts capped at 3, no
    response cache, the compiled read path on or off."""
    assert settings.database_url is not None
    return clean_env(
        DATABASE_URL=settings.database_url,
        POPMAP_DATA_DIR=str(tmp_path),
        POPMAP_MAX_EXACT_COUNT="3",
        POPMAP_RESPONSE_CACHE="false",
        POPMAP_COMPILED_READS=compiled,
        AWS_COGNITO_USER_POOL_ID=settings.cognito_user_pool_id or "",
        AWS_COGNITO_APP_CLIENT_ID=",".join(settings.cognito_app_client_ids),
        AWS_COGNITO_REGION=settings.cognito_region or "",
        AWS_COGNITO_JWKS_URL=settings.cognito_jwks_url_override or "",
    )


@pytest.mark.parametrize("compiled", ["true", "false"])
async def test_total_count_stops_at_the_limit_and_says_so(
    settings: Settings, cognito: FakeCognito, tmp_path: Path, clean_db: None, compiled: str
) -> None:
    staff = await person(cognito, "moderator", groups=("staff",))
    for n in range(3):
        await make_business(f"B{n}")
        await make_event(f"E{n}")
    await make_event("Pending", status=EventStatus.PENDING)
    env = counting_to_three(settings, tmp_path, compiled)

    with running_server(env) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as api:
            at_limit = await post(api, ANONYMOUS, COUNTS)
            over_limit = await post(api, staff, COUNTS)  # staff also sees the pending one

    assert "errors" not in at_limit, at_limit
    assert at_limit["data"]["events"]["totalCount"] == 3
    assert at_limit["data"]["events"]["totalCountIsExact"] is True
    assert at_limit["data"]["businesses"] == {"totalCount": 3, "totalCountIsExact": True}
    assert "errors" not in over_limit, over_limit
    events: dict[str, Any] = over_limit["data"]["events"]
    assert (events["totalCount"], events["totalCountIsExact"]) == (3, False)
    assert len(events["edges"]) == 1
    assert over_limit["data"]["also"] == {"totalCountIsExact": False}
    assert over_limit["data"]["businesses"] == {"totalCount": 3, "totalCountIsExact": True}


RANKED = """query ($search: String, $after: String, $first: Int) {
  businesses(first: $first, after: $after, filter: {search: $search}, orderBy: RELEVANCE) {
    totalCount totalCountIsExact pageInfo { hasNextPage endCursor } edges { node { name } } } }"""


async def test_relevance_lists_the_most_similar_names_first_and_pages_by_cursor(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    await make_business("Goat")  # similarity 1
    await make_business("Blue Goat")  # 0.5
    await make_business("Goat Cheese Farm Shop")  # lower
    await make_business("Dairy", description="goat milk")  # the name shares no trigram: 0
    await make_business("Hidden Goat", verified=False)

    for who in await viewers(cognito):
        staff = who.name == "moderator"
        expected = ["Goat", "Blue Goat", *(["Hidden Goat"] if staff else [])]
        expected += ["Goat Cheese Farm Shop", "Dairy"]
        first = await post(client, who, RANKED, {"search": "GOAT", "first": 2})
        assert "errors" not in first, first
        page = first["data"]["businesses"]
        after = page["pageInfo"]["endCursor"]
        rest = await post(client, who, RANKED, {"search": "GOAT", "after": after, "first": 10})
        assert "errors" not in rest, rest

        names = [e["node"]["name"] for e in page["edges"]]
        names += [e["node"]["name"] for e in rest["data"]["businesses"]["edges"]]
        assert names == expected, who.name
        assert page["totalCount"] == len(expected)
        assert page["pageInfo"]["hasNextPage"] is True
        assert rest["data"]["businesses"]["pageInfo"]["hasNextPage"] is False
        # a cursor measured against one term continues no other term's list
        other = await post(client, who, RANKED, {"search": "dairy", "after": after})
        assert error_codes(other) == ["BAD_USER_INPUT"], other
        assert other["errors"][0]["extensions"]["field"] == "after"


async def test_relevance_without_a_search_is_refused_naming_order_by(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    for who in await viewers(cognito):
        for search in (None, "   "):
            body = await post(client, who, RANKED, {"search": search})

            assert error_codes(body) == ["BAD_USER_INPUT"], (who.name, body)
            assert body["errors"][0]["extensions"]["field"] == "orderBy"
            assert "RELEVANCE needs filter.search" in body["errors"][0]["message"]


@pytest.mark.parametrize("compiled", ["true", "false"])
async def test_relevance_ranks_the_first_matches_by_name_past_the_count_limit(
    settings: Settings, tmp_path: Path, clean_db: None, compiled: str
) -> None:
    # Ranking reads every match it ranks: past POPMAP_MAX_EXACT_COUNT matches, it ranks
    # the first that many by name, which totalCountIsExact: false says.
    for name in ["Alpine Goat Dairy Farm", "Goat", "Barn Goat", "Zed Goat", "Blue Goat"]:
        await make_business(name)
    env = counting_to_three(settings, tmp_path, compiled)
    with running_server(env) as base:
        async with httpx.AsyncClient(base_url=base, timeout=30) as api:
            body = await post(api, ANONYMOUS, RANKED, {"search": "goat"})

    assert "errors" not in body, body
    found = body["data"]["businesses"]
    # by name the first three are Alpine Goat Dairy Farm, Barn Goat, Blue Goat
    assert [e["node"]["name"] for e in found["edges"]] == [
        "Blue Goat",
        "Barn Goat",
        "Alpine Goat Dairy Farm",
    ]
    assert (found["totalCount"], found["totalCountIsExact"]) == (3, False)


PAGED_EVENTS = """query ($after: String, $order: EventOrder!) {
  events(first: 2, after: $after, orderBy: $order) {
    pageInfo { hasNextPage endCursor } edges { node { title } } } }"""


@pytest.mark.parametrize("order", ["STARTS_AT_ASC", "STARTS_AT_DESC", "NEWEST_FIRST"])
async def test_an_owners_list_merges_their_own_rows_with_the_public_ones_in_order(
    client: httpx.AsyncClient, cognito: FakeCognito, order: str
) -> None:
    # An owner's list reads the public rows and their own others in the index's order
    # and merges them, staff's a branch per status (Visibility.sql_branches): pages
    # must interleave them exactly.
    owner = await person(cognito, "owner")
    for day in range(1, 7):
        own = day % 2 == 0
        await make_event(
            f"Day {day}{' (own, pending)' if own else ''}",
            starts_in=timedelta(days=day),
            status=EventStatus.PENDING if own else EventStatus.APPROVED,
            created_by=owner.user if own else None,
        )

    staff = await person(cognito, "moderator", groups=("staff",))  # a branch per status
    for who, own in [(ANONYMOUS, False), (owner, True), (staff, True)]:
        titles: list[str] = []
        after = None
        while True:
            body = await post(client, who, PAGED_EVENTS, {"after": after, "order": order})
            assert "errors" not in body, body
            page = body["data"]["events"]
            titles += [edge["node"]["title"] for edge in page["edges"]]
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        days = [d for d in range(1, 7) if own or d % 2]
        if order != "STARTS_AT_ASC":
            days.reverse()  # made in start order, so newest first is latest first too
        assert titles == [f"Day {d}{' (own, pending)' if d % 2 == 0 else ''}" for d in days]


PAGED_SEARCH = """query ($search: String, $after: String, $order: BusinessOrder) {
  businesses(first: 10, after: $after, filter: {search: $search}, orderBy: $order) {
    totalCount pageInfo { hasNextPage endCursor } edges { node { name } } } }"""


async def _every_page(
    client: httpx.AsyncClient, who: Person, search: str, order: str
) -> tuple[list[str], int]:
    names: list[str] = []
    after, total = None, -1
    while True:
        variables = {"search": search, "after": after, "order": order}
        body = await post(client, who, PAGED_SEARCH, variables)
        assert "errors" not in body, (who.name, body)
        page = body["data"]["businesses"]
        total = page["totalCount"] if after is None else total
        names += [edge["node"]["name"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return names, total
        after = page["pageInfo"]["endCursor"]


@pytest.mark.parametrize("order", ["NAME_ASC", "NAME_DESC", "NEWEST_FIRST", "RELEVANCE"])
async def test_a_search_whose_matches_lie_past_the_walk_limit_lists_them_all_in_order(
    client: httpx.AsyncClient, cognito: FakeCognito, order: str
) -> None:
    # A search's page walks at most WALK_LIMIT entries of the name order, then gathers
    # every match (ListQuery._searched): here every match comes after more names than
    # that (as "Zilker" at 100x), for each viewer, through every page.
    everyone = await viewers(cognito)
    owner = everyone[1]
    assert owner.user is not None
    for n in range(36):  # more than a page of each kind, past the walk in name order and,
        # made before the rest, in creation order
        await make_business(f"Zilker {n:02}", verified=n % 3 != 0, owner=owner.user)
    await connections.get("default").execute_query(
        "INSERT INTO business (name, description, contact_email, contact_phone, website,"
        " instagram_url, tiktok_url, available_for_hire, logo_url, is_verified, created_at,"
        " updated_at) SELECT 'Aardvark ' || lpad(n::text, 6, '0'), 'nothing to find', '',"
        " '', '', '', '', false, '', true, now(), now() FROM generate_series(1, $1) n",
        [WALK_LIMIT + 50],
    )
    await make_business("Zilker goods", description="in the walk's reach", verified=True)
    await make_business("Aardvark 000007 annex", description="near ZILKER park")

    for who in everyone:
        sees_all = who.name in ("owner", "moderator")  # the owner's own and staff
        expected = sorted(
            [f"Zilker {n:02}" for n in range(36) if sees_all or n % 3 != 0]
            + ["Zilker goods", "Aardvark 000007 annex"]
        )
        if order == "NAME_DESC":
            expected.reverse()
        if order == "NEWEST_FIRST":
            expected = ["Aardvark 000007 annex", "Zilker goods"]
            expected += [f"Zilker {n:02}" for n in reversed(range(36)) if sees_all or n % 3]
        names, total = await _every_page(client, who, "zilker", order)
        if order == "RELEVANCE":  # ranked by similarity: the same names, another order
            assert sorted(names) == sorted(expected), who.name
            assert names[-1] == "Aardvark 000007 annex"  # its name shares no trigram
        else:
            assert names == expected, who.name
        assert total == len(expected), who.name


CATEGORY_BUSINESSES = "{ categories { slug businesses { name } } }"


async def test_a_categorys_first_businesses_by_name_wherever_its_members_lie(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    # A category's `businesses` (the first 50 by name) reads the name order while its
    # members are dense there, else its own rows (category_members): "late" has 60
    # members after more names than a walk reads, "dense" 60 among the first names,
    # "few" 3; for each viewer.
    everyone = await viewers(cognito)
    owner = everyone[1]
    late, dense, few = [await make_category(name) for name in ("late", "dense", "few")]
    for n in range(60):
        await make_business(f"Zed {n:02}", verified=n % 4 != 0, owner=owner.user, categories=[late])
        await make_business(f"Aaron {n:02}", verified=n % 4 != 0, categories=[dense])
    await make_business("Aaron few", categories=[few, late])
    await connections.get("default").execute_query(
        "INSERT INTO business (name, description, contact_email, contact_phone, website,"
        " instagram_url, tiktok_url, available_for_hire, logo_url, is_verified, created_at,"
        " updated_at) SELECT 'Ab ' || lpad(n::text, 6, '0'), '', '', '', '', '', '', false,"
        " '', true, now(), now() FROM generate_series(1, $1) n",
        [WALK_LIMIT + 50],
    )

    for who in everyone:
        own, staff = who.name == "owner", who.name == "moderator"
        body = await post(client, who, CATEGORY_BUSINESSES)
        assert "errors" not in body, body
        listed = {
            c["slug"]: [b["name"] for b in c["businesses"]] for c in body["data"]["categories"]
        }
        zed = [f"Zed {n:02}" for n in range(60) if n % 4 or own or staff]
        aaron = [f"Aaron {n:02}" for n in range(60) if n % 4 or staff]
        assert listed["late"] == (["Aaron few", *zed])[:50], who.name
        assert listed["dense"] == aaron[:50], who.name
        assert listed["few"] == ["Aaron few"], who.name


PAGED_OF_CATEGORY = """query ($after: String, $order: EventOrder!) {
  events(first: 100, after: $after, filter: {categorySlugs: ["many"]}, orderBy: $order) {
    totalCount totalCountIsExact pageInfo { hasNextPage endCursor } edges { node { title } } } }"""


@pytest.mark.parametrize("order", ["STARTS_AT_ASC", "STARTS_AT_DESC"])
async def test_the_events_of_a_category_of_many_rows_page_in_order(
    client: httpx.AsyncClient, cognito: FakeCognito, order: str
) -> None:
    # A category with FEW_ROWS or more (event, business) rows is not read from its rows
    # but as a search's page is (found, then a walk of the order): every event once,
    # in order, across pages, beside events of no category and a hidden business's.
    many = await make_category("many")
    shown = await make_business("Shown", categories=[many])
    also = await make_business("Also", categories=[many])
    hidden = await make_business("Hidden", verified=False, categories=[many])
    n = FEW_ROWS + 50
    await connections.get("default").execute_query(
        "INSERT INTO event (title, description, location_name, address, latitude, longitude,"
        " starts_at, ends_at, image_url, status, created_at, updated_at) SELECT"
        " 'E ' || lpad(n::text, 5, '0'), '', '', '', 30.27, -97.74, now() + n * interval '1 h',"
        " now() + n * interval '1 h' + interval '2 h', '', 'APPROVED', now(), now()"
        " FROM generate_series(1, $1) n",
        [n + 20],
    )
    # "Shown" in the first n events, "Also" in every other one of them (an event is
    # listed once however many of its businesses are of the category), "Hidden" in the
    # last 20, which nobody else takes part in
    await connections.get("default").execute_query(
        "INSERT INTO participation (joined_at, business_id, event_id) SELECT now(), b.id, e.id"
        " FROM event e, business b WHERE (b.id = $1 AND e.title <= $4)"
        " OR (b.id = $2 AND e.title <= $4 AND e.id % 2 = 0) OR (b.id = $3 AND e.title > $4)",
        [shown.pk, also.pk, hidden.pk, f"E {n:05}"],
    )

    titles: list[str] = []
    after, first_page = None, None
    while True:
        body = await post(client, ANONYMOUS, PAGED_OF_CATEGORY, {"after": after, "order": order})
        assert "errors" not in body, body
        page = body["data"]["events"]
        first_page = first_page or page
        titles += [edge["node"]["title"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    expected = [f"E {k:05}" for k in range(1, n + 1)]
    assert titles == (expected if order == "STARTS_AT_ASC" else expected[::-1])
    assert (first_page["totalCount"], first_page["totalCountIsExact"]) == (1000, False)


@pytest.mark.parametrize(("index", "columns"), list(WALKED_INDEXES.values()))
async def test_a_search_walks_each_index_by_exactly_its_columns(
    clean_db: None, index: str, columns: tuple[str, ...]
) -> None:
    # The walk reads the index alone only if it asks for no other column (WALKED_INDEXES
    # beside migrations 0013 and 0017, which define the indexes).
    rows = await connections.get("default").execute_query_dict(
        "SELECT a.attname FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY"
        " AS k(attnum, n) JOIN pg_attribute a ON a.attrelid = i.indrelid"
        " AND a.attnum = k.attnum WHERE i.indexrelid = $1::regclass ORDER BY k.n",
        [index],
    )
    assert tuple(row["attname"] for row in rows) == columns
