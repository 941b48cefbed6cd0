"""No N+1: one request costs the same number of SQL statements for 5 events as for 50."""

from __future__ import annotations

import httpx

from popmap_gql.db.models import Business
from tests.conftest import QueryCounter
from tests.helpers import error_codes, global_id, gql, make_business, make_category, make_event

MAP_QUERY = """
query ($first: Int) {
  events(first: $first) {
    totalCount
    edges { node {
      title
      hostBusiness { name }
      businesses { name categories { name slug } events { title } }
      categories { name }
    } }
  }
}
"""


async def _make_events(count: int, businesses: list[Business]) -> None:
    for number in range(count):
        taking_part = [businesses[(number + k) % len(businesses)] for k in range(3)]
        await make_event(f"Event {number}", businesses=taking_part, host_business=taking_part[0])


async def _statements_for(client: httpx.AsyncClient, counter: QueryCounter, first: int) -> int:
    counter.statements.clear()
    body = await gql(client, MAP_QUERY, {"first": first})
    assert "errors" not in body, body
    edges = body["data"]["events"]["edges"]
    assert len(edges) == first
    assert all(len(edge["node"]["businesses"]) == 3 for edge in edges)
    assert all(edge["node"]["categories"] for edge in edges)
    return len(counter.statements)


async def test_statement_count_does_not_grow_with_page_size(
    client: httpx.AsyncClient, sql_counter: QueryCounter
) -> None:
    categories = [await make_category(f"Category {n}") for n in range(6)]
    businesses = [
        await make_business(f"Shop {n}", categories=[categories[n % 6], categories[(n + 1) % 6]])
        for n in range(12)
    ]
    await _make_events(50, businesses)

    five = await _statements_for(client, sql_counter, 5)
    fifty = await _statements_for(client, sql_counter, 50)

    # the response cache's data-version read, then the page with everything it selects
    # (host businesses, businesses and their categories and events, the event's
    # categories: one statement building the JSON), the count, then the cache's second
    # version read (no write since: the answer may be stored): whatever the page size
    assert five == fifty == 4, sql_counter.statements


LOOKUP_QUERY = """
query ($id: ID!) {
  business(id: $id) {
    name
    ...Related
    soon: events(upcoming: true) { title }
  }
}
fragment Related on Business {
  categories { slug }
  events { title businesses { name categories { slug } } categories { name } }
  ... on Business { hostedEvents { title businesses { name } } }
}
"""


async def _lookup_statements(
    client: httpx.AsyncClient, counter: QueryCounter, business: Business, events: int
) -> int:
    counter.statements.clear()
    body = await gql(client, LOOKUP_QUERY, {"id": global_id("Business", business.id)})
    assert "errors" not in body, body
    found = body["data"]["business"]
    assert found["categories"] == [{"slug": "category-0"}, {"slug": "category-1"}]
    assert len(found["events"]) == len(found["soon"]) == events
    # relations selected through a fragment spread and an inline fragment are there
    for event in found["events"]:
        assert event["businesses"][0]["name"] == business.name
        assert all(b["categories"] for b in event["businesses"])
        assert event["categories"]
    assert len(found["hostedEvents"]) == events
    assert all(event["businesses"] for event in found["hostedEvents"])
    return len(counter.statements)


async def test_business_lookup_costs_the_same_for_3_events_as_for_30(
    client: httpx.AsyncClient, sql_counter: QueryCounter
) -> None:
    categories = [await make_category(f"Category {n}") for n in range(3)]
    few = await make_business("Few", categories=categories[:2])
    many = await make_business("Many", categories=categories[:2])
    others = [await make_business(f"Other {n}", categories=[categories[2]]) for n in range(4)]
    for owner, count in ((few, 3), (many, 30)):
        for number in range(count):
            await make_event(
                f"{owner.name} {number}",
                businesses=[owner, others[number % 4]],
                host_business=owner,
            )

    three = await _lookup_statements(client, sql_counter, few, 3)
    thirty = await _lookup_statements(client, sql_counter, many, 30)

    # the data-version read, the business with everything selected under it (one
    # statement building the JSON), then the data-version read that lets the answer be
    # stored
    assert three == thirty == 3, sql_counter.statements


# The same page with a field the compiled path declines for an anonymous visitor (the
# owner-only availableEvents, refused with UNAUTHENTICATED by its resolver): the
# resolvers answer it, and their DataLoaders keep it N+1-free.
DECLINED_MAP_QUERY = MAP_QUERY.replace(
    "hostBusiness { name }", "hostBusiness { name availableEvents { title } }"
)


async def test_the_resolvers_answer_a_declined_page_in_as_many_statements_for_5_as_for_50(
    client: httpx.AsyncClient, sql_counter: QueryCounter
) -> None:
    categories = [await make_category(f"Category {n}") for n in range(6)]
    businesses = [
        await make_business(f"Shop {n}", categories=[categories[n % 6], categories[(n + 1) % 6]])
        for n in range(12)
    ]
    await _make_events(50, businesses)

    counts = []
    for first in (5, 50):
        sql_counter.statements.clear()
        body = await gql(client, DECLINED_MAP_QUERY, {"first": first})
        assert set(error_codes(body)) == {"UNAUTHENTICATED"}
        edges = body["data"]["events"]["edges"]
        assert len(edges) == first
        assert all(len(edge["node"]["businesses"]) == 3 for edge in edges)
        assert all(edge["node"]["businesses"][0]["categories"] for edge in edges)
        assert all(edge["node"]["businesses"][0]["events"] for edge in edges)
        assert all(edge["node"]["categories"] for edge in edges)
        counts.append(len(sql_counter.statements))

    # the page, the count, then one statement per relation and level (host businesses,
    # businesses, their categories, their events, the events' categories); no cache reads,
    # as availableEvents is private: whatever the page size
    assert counts[0] == counts[1] == 7, sql_counter.statements
