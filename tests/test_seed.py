"""Demo data: realistic, with upcoming events, and idempotent."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import httpx

from popmap_gql.db.models import Business, Category, Event, EventStatus, Participation
from popmap_gql.db.seed import seed_demo
from tests.conftest import drop_database, fresh_database, run_cli
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


async def test_the_seed_demo_command_migrates_an_empty_database_and_loads_the_demo_once(
    server_url: str,
) -> None:
    url = await fresh_database(server_url)
    try:
        first = await asyncio.to_thread(run_cli, "seed-demo", env={"DATABASE_URL": url})
        again = await asyncio.to_thread(run_cli, "seed-demo", env={"DATABASE_URL": url})
        conn = await asyncpg.connect(url)
        try:
            businesses = await conn.fetchval("SELECT count(*) FROM business")
        finally:
            await conn.close()
    finally:
        await drop_database(server_url, url)

    assert first == again == "demo data ready: 8 categories, 30 businesses, 40 events\n"
    assert businesses == 30
