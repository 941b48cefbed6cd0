"""`event_category` (migration 0016), which `events(filter: {categorySlugs})` reads, follows
every change of who takes part and of a business's categories: through the API's own
mutations over HTTP, through deletes that cascade, through two transactions racing on
one business, and it always equals what it is derived from."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest

from popmap_gql.config import Settings
from popmap_gql.db.models import Participation
from popmap_gql.db.orm import connection_credentials
from tests.fake_cognito import FakeCognito
from tests.helpers import global_id, make_business, make_category, make_event
from tests.people import ANONYMOUS, person, post

EVENTS_OF = """query ($slugs: [String!]) {
  events(filter: {categorySlugs: $slugs}) { totalCount edges { node { title } } } }"""
JOIN = """mutation ($eventId: ID!, $businessId: ID!) {
  joinEvent(eventId: $eventId, businessId: $businessId) { changed } }"""
LEAVE = """mutation ($eventId: ID!, $businessId: ID!) {
  leaveEvent(eventId: $eventId, businessId: $businessId) { changed } }"""
RECATEGORIZE = """mutation ($id: ID, $slugs: [String!]) {
  updateBusiness(id: $id, input: {categorySlugs: $slugs}) { business { id } } }"""

DERIVED = (
    "SELECT p.event_id, bc.category_id, p.business_id FROM participation p"
    " JOIN business_category bc ON bc.business_id = p.business_id"
)
STORED = "SELECT event_id, category_id, business_id FROM event_category"


async def titles(client: httpx.AsyncClient, slug: str) -> list[str]:
    body = await post(client, ANONYMOUS, EVENTS_OF, {"slugs": [slug]})
    assert "errors" not in body, body
    events = body["data"]["events"]
    assert events["totalCount"] == len(events["edges"])
    return [edge["node"]["title"] for edge in events["edges"]]


async def rows(settings: Settings, sql: str) -> set[tuple[int, int, int]]:
    assert settings.database_url is not None
    conn = await asyncpg.connect(**connection_credentials(settings.database_url))
    try:
        return {tuple(row) for row in await conn.fetch(sql)}
    finally:
        await conn.close()


async def test_joins_leaves_and_new_categories_move_an_event_between_categories(
    client: httpx.AsyncClient, cognito: FakeCognito, settings: Settings
) -> None:
    owner = await person(cognito, "owner")
    bakery, coffee = await make_category("Bakery"), await make_category("Coffee")
    shop = await make_business("Shop", owner=owner.user, categories=[bakery])
    fair = await make_event("Fair")
    ids = {"eventId": global_id("Event", fair.id), "businessId": global_id("Business", shop.id)}

    assert await titles(client, "bakery") == []
    joined = await post(client, owner, JOIN, ids)
    assert joined["data"]["joinEvent"]["changed"] is True, joined
    assert await titles(client, "bakery") == ["Fair"]
    assert await titles(client, "coffee") == []

    moved = await post(
        client, owner, RECATEGORIZE, {"id": global_id("Business", shop.id), "slugs": ["coffee"]}
    )
    assert "errors" not in moved, moved
    assert await titles(client, "bakery") == []
    assert await titles(client, "coffee") == ["Fair"]

    left = await post(client, owner, LEAVE, ids)
    assert left["data"]["leaveEvent"]["changed"] is True, left
    assert await titles(client, "coffee") == []
    assert await rows(settings, STORED) == await rows(settings, DERIVED) == set()
    assert coffee.id  # the category stays; only its rows went


async def test_deleting_a_business_an_event_or_a_category_removes_their_rows(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    bakery, tea = await make_category("Bakery"), await make_category("Tea")
    kept = await make_business("Kept", categories=[bakery, tea])
    gone = await make_business("Gone", categories=[bakery])
    fair, market = await make_event("Fair", businesses=[kept, gone]), await make_event("Market")
    await make_event("Picnic", businesses=[gone])
    await Participation.create(event=market, business=kept)

    await gone.delete()
    assert await titles(client, "bakery") == ["Fair", "Market"]
    await fair.delete()
    assert await titles(client, "bakery") == ["Market"]
    await tea.delete()
    assert await titles(client, "tea") == []
    assert await rows(settings, STORED) == await rows(settings, DERIVED)
    assert len(await rows(settings, STORED)) == 1


async def test_a_join_and_a_new_category_of_one_business_at_once_miss_nothing(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # The second of two transactions changing one business waits for the first, then
    # reads what it committed, so (event, category) is not lost between them. Two locks
    # make it wait today: the trigger's lock on the business, and the data_version row
    # every write updates first (migration 0007, whose trigger fires before this one);
    # removing either alone keeps this test passing, removing both fails it.
    bakery = await make_category("Bakery")
    shop = await make_business("Shop")
    fair = await make_event("Fair")
    assert settings.database_url is not None
    credentials = connection_credentials(settings.database_url)
    joining, categorizing = (
        await asyncpg.connect(**credentials),
        await asyncpg.connect(**credentials),
    )
    try:
        join = joining.transaction()
        await join.start()
        await joining.execute(
            "INSERT INTO participation (event_id, business_id, joined_at) VALUES ($1, $2, now())",
            fair.id,
            shop.id,
        )
        categorize = categorizing.transaction()
        await categorize.start()
        adding = asyncio.create_task(
            categorizing.execute(
                "INSERT INTO business_category (business_id, category_id) VALUES ($1, $2)",
                shop.id,
                bakery.id,
            )
        )
        await asyncio.sleep(0.3)
        assert not adding.done()  # waiting for the join's lock on the business
        await join.commit()
        await adding
        await categorize.commit()
    finally:
        await joining.close()
        await categorizing.close()

    assert await titles(client, "bakery") == ["Fair"]
    assert await rows(settings, STORED) == await rows(settings, DERIVED)


async def test_rows_it_is_derived_from_are_not_updated_in_place(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    bakery = await make_category("Bakery")
    shop = await make_business("Shop", categories=[bakery])
    await make_event("Fair", businesses=[shop])
    assert settings.database_url is not None
    conn = await asyncpg.connect(**connection_credentials(settings.database_url))
    try:
        for update in (
            "UPDATE participation SET business_id = business_id",
            "UPDATE business_category SET business_id = business_id",
        ):
            with pytest.raises(asyncpg.RaiseError, match="inserted and deleted, not updated"):
                await conn.execute(update)
    finally:
        await conn.close()
    assert await titles(client, "bakery") == ["Fair"]
