"""Demo data: realistic, with upcoming events, and idempotent."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from popmap_gql.db.models import Business, Category, Event, EventStatus, Participation
from popmap_gql.db.seed import seed_demo
from tests.helpers import gql


async def test_seed_demo_is_idempotent_and_gives_upcoming_events(
    client: httpx.AsyncClient,
) -> None:
    first = await seed_demo()
    participations = await Participation.all().count()
    second = await seed_demo()

    assert first == second
    assert (first.categories, first.businesses, first.events) == (8, 30, 40)
    assert await Participation.all().count() == participations
    assert await Category.all().count() == 8
    assert await Business.filter(is_verified=False).count() > 0
    assert await Event.filter(status=EventStatus.PENDING).count() > 0

    body = await gql(
        client,
        "{ events(first: 5) { totalCount edges { node { title endsAt latitude longitude"
        " businesses { name categories { name } } } } } }",
    )
    connection = body["data"]["events"]
    assert connection["totalCount"] >= 20
    now = datetime.now(UTC)
    for edge in connection["edges"]:
        node = edge["node"]
        assert datetime.fromisoformat(node["endsAt"]) >= now  # upcoming
        assert 30.0 < node["latitude"] < 30.6  # Austin
        assert -98.0 < node["longitude"] < -97.5
        assert node["businesses"]
        assert all(business["categories"] for business in node["businesses"])
