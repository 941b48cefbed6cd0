"""No N+1: one request costs the same number of SQL statements for 5 events as for 50."""

from __future__ import annotations

import httpx

from popmap_gql.db.models import Business
from tests.conftest import QueryCounter
from tests.helpers import gql, make_business, make_category, make_event

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

    # the response cache's data-version read, then page, count, host businesses,
    # businesses by event, categories by business, events by business: one statement
    # each, whatever the page size
    assert five == fifty == 7, sql_counter.statements
