from __future__ import annotations

import httpx

from tests.helpers import gql, make_business, make_category, make_event


async def test_events_lists_upcoming_event_with_businesses_and_categories(
    client: httpx.AsyncClient,
) -> None:
    bakery = await make_category("Bakery")
    baker = await make_business("Crumbs", categories=[bakery])
    await make_event("Market", businesses=[baker])

    body = await gql(
        client,
        "{ events(first: 5) { edges { node { title businesses { name categories { name } } } } } }",
    )

    assert body == {
        "data": {
            "events": {
                "edges": [
                    {
                        "node": {
                            "title": "Market",
                            "businesses": [{"name": "Crumbs", "categories": [{"name": "Bakery"}]}],
                        }
                    }
                ]
            }
        }
    }
