"""The read model: the schema and the declarations must agree, the compiled read path
answers what the resolvers answer (tests/test_differential.py compares them on every read
query), and a relation declared once works everywhere (Category.businesses, added as the
worked example in ARCHITECTURE.md)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
import strawberry
from graphql import build_schema as build_sdl

from popmap_gql.api.binding import ReadModelMismatch, bind, derive_columns
from popmap_gql.api.engine import graphql_schema
from popmap_gql.api.schema import build_schema
from popmap_gql.api.types import READ_MODEL
from popmap_gql.config import Settings
from popmap_gql.db.models import EventStatus
from popmap_gql.read.model import ENUM, INSTANT, OPTIONAL_TEXT, PLAIN, Entity, Form
from tests.conftest import QueryCounter
from tests.fake_cognito import FakeCognito
from tests.helpers import global_id, gql, make_business, make_category
from tests.people import ANONYMOUS, person, post

CATEGORY_PAGE = "{ categories { slug businesses { name } } }"


async def test_category_businesses_shows_each_viewer_what_it_may_see_by_name(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    bakery = await make_category("Bakery")
    await make_category("Empty")
    owner = await person(cognito, "baker")
    staff = await person(cognito, "moderator", groups=("staff",))
    await make_business("Crumbs", categories=[bakery])
    await make_business("Anvil Bread", categories=[bakery])
    await make_business("Unverified Buns", categories=[bakery], verified=False, owner=owner.user)
    await make_business("Stranger's Loaves", categories=[bakery], verified=False)

    seen = {}
    for who in (ANONYMOUS, owner, staff):
        body = await post(client, who, CATEGORY_PAGE)
        assert "errors" not in body, body
        seen[who.name] = {
            c["slug"]: [b["name"] for b in c["businesses"]] for c in body["data"]["categories"]
        }

    assert seen["anonymous"] == {"bakery": ["Anvil Bread", "Crumbs"], "empty": []}
    assert seen["baker"]["bakery"] == ["Anvil Bread", "Crumbs", "Unverified Buns"]
    assert seen["moderator"]["bakery"] == [
        "Anvil Bread",
        "Crumbs",
        "Stranger's Loaves",
        "Unverified Buns",
    ]


async def test_category_businesses_stop_at_their_declared_size(client: httpx.AsyncClient) -> None:
    crafts = await make_category("Crafts")
    for number in range(52):
        await make_business(f"Shop {number:02}", categories=[crafts])

    body = await gql(client, CATEGORY_PAGE)

    [category] = body["data"]["categories"]
    assert [b["name"] for b in category["businesses"]] == [f"Shop {n:02}" for n in range(50)]


async def test_a_compiled_read_costs_one_statement_per_root_field(
    client: httpx.AsyncClient, sql_counter: QueryCounter
) -> None:
    bakery = await make_category("Bakery")
    await make_business("Crumbs", categories=[bakery])
    query = "{ categories { name businesses { name categories { slug } } } }"
    await gql(client, query)  # warm: the answer is now cached

    sql_counter.statements.clear()
    await gql(client, "{ categories { slug businesses { categories { name } } } }")

    # the cache's data-version read, the one statement building the JSON, the version
    # read that lets the answer be stored
    assert len(sql_counter.statements) == 3, sql_counter.statements


async def test_text_that_looks_like_the_fallback_mark_is_only_text(
    client: httpx.AsyncClient, sql_counter: QueryCounter
) -> None:
    odd = '{"$popmap$fallback" : true}'
    bakery = await make_category(odd, slug="odd")
    await make_business(odd, description=odd, categories=[bakery])

    sql_counter.statements.clear()
    body = await gql(client, "{ categories { name businesses { name description } } }")

    assert body == {
        "data": {"categories": [{"name": odd, "businesses": [{"name": odd, "description": odd}]}]}
    }
    assert len(sql_counter.statements) == 3, sql_counter.statements  # compiled, no fallback


async def test_search_takes_wildcards_literally(client: httpx.AsyncClient) -> None:
    for name in ("100% Juice", "1000 Juices", "Snake_Case Tees", "Snakes and Tees", "Back\\slash"):
        await make_business(name)
    query = "query ($q: String!) { businesses(filter: { search: $q }) { edges { node { name } } } }"

    async def names(search: str) -> list[str]:
        body = await gql(client, query, {"q": search})
        return sorted(edge["node"]["name"] for edge in body["data"]["businesses"]["edges"])

    # each term holds a word of three characters, which the trigram index needs
    assert await names("100%") == ["100% Juice"]
    assert await names("ake_cas") == ["Snake_Case Tees"]
    assert await names("ack\\sla") == ["Back\\slash"]
    assert await names("juice") == ["100% Juice", "1000 Juices"]


def test_the_real_schema_agrees_with_the_read_model() -> None:
    bound = bind(graphql_schema(build_schema(Settings())), READ_MODEL)
    assert bound.caps[("Category", "businesses")] == 50
    assert bound.caps[("Event", "host_business")] == 1


SDL = """
type Query { categories: [Category!]! }
type Category { id: ID! name: String! slug: String! businesses: [Business!]! }
type Business { id: ID! name: String! secret: String }
type Event { id: ID! }
type Viewer { id: ID! }
"""


def test_a_schema_and_read_model_that_disagree_stop_the_build() -> None:
    with pytest.raises(ReadModelMismatch) as refused:
        bind(build_sdl(SDL), READ_MODEL)

    message = str(refused.value)
    # a field the read model does not declare
    assert "Business.secret is not declared in the read model" in message
    # a declared field the type lacks
    assert "Business.categories is declared but the type has no such field" in message
    assert "Event.title is declared but the type has no such field" in message
    # a relation whose size is not declared (SDL fields carry no size)
    assert "Category.businesses declares no size" in message


MISSHAPEN_SDL = """
type Query { categories: [Category!]! }
type Category { id: ID! name: String! slug: Category businesses: [Event!]! }
type Business { id: ID! contact_email: String events: [Event!]! }
type Event { id: ID! categories: Category }
scalar Viewer
"""


def test_fields_of_the_wrong_shape_stop_the_build() -> None:
    with pytest.raises(ReadModelMismatch) as refused:
        bind(build_sdl(MISSHAPEN_SDL), READ_MODEL)

    message = str(refused.value)
    # an entity whose type is no object type
    assert "Viewer is declared but is no object type of the schema" in message
    # a column whose GraphQL name is not the camel case of its Python name
    assert "Business.contact_email: its GraphQL name is not contactEmail" in message
    # a column returning an object
    assert "Category.slug is declared as a value but returns Category" in message
    # relations of another type, to-one for to-many, without the relation's arguments
    assert "Category.businesses returns Event, declared Business" in message
    assert "Event.categories: a list in one and not in the other" in message
    assert "Business.events: arguments differ from the relation's" in message


@strawberry.type(name="Category")
class ArguedCategory:
    id: strawberry.ID
    slug: str

    @strawberry.field
    def name(self, short: bool = False) -> str:
        return self.slug


@strawberry.type
class ArguedQuery:
    @strawberry.field
    def category(self) -> ArguedCategory:
        return ArguedCategory(id=strawberry.ID("1"), slug="bakery")


def test_a_column_taking_arguments_stops_the_build() -> None:
    with pytest.raises(ReadModelMismatch, match=r"Category\.name takes arguments the read model"):
        bind(graphql_schema(strawberry.Schema(query=ArguedQuery)), READ_MODEL)


def test_plain_fields_become_columns_by_convention() -> None:
    @strawberry.type
    class Stall:
        id: strawberry.ID
        pk: strawberry.Private[int]
        name: str
        note: str | None
        opens_at: datetime
        status: EventStatus
        tables: int
        owner_key: strawberry.Private[int]

        @strawberry.field
        def computed_here(self) -> str:
            return "not a column"

    declared = Entity(name="Stall", table="stall", visibility=None, carried=(("owner_key", "x"),))

    derived = derive_columns(declared, Stall)

    assert [(column.field, column.form) for column in derived.columns] == [
        ("id", Form("id", "Stall")),
        ("name", PLAIN),
        ("note", OPTIONAL_TEXT),
        ("opens_at", INSTANT),
        ("status", ENUM),
        ("tables", PLAIN),
    ]
    row = {
        "id": 7,
        "name": "Stall",
        "note": "",
        "opens_at": datetime(2026, 1, 1, tzinfo=UTC),
        "status": "APPROVED",
        "tables": 3,
        "x": 9,
    }
    assert derived.values(row) == {
        "id": "U3RhbGw6Nw",
        "name": "Stall",
        "note": None,
        "opens_at": datetime(2026, 1, 1, tzinfo=UTC),
        "status": EventStatus.APPROVED,
        "tables": 3,
        "pk": 7,
        "owner_key": 9,
    }


async def test_a_guarded_field_another_person_may_not_read_is_refused_as_before(
    client: httpx.AsyncClient, cognito: FakeCognito
) -> None:
    owner = await person(cognito, "baker")
    neighbour = await person(cognito, "neighbour")
    business = await make_business("Crumbs", owner=owner.user)
    query = "query ($id: ID!) { business(id: $id) { name availableEvents { id } } }"
    variables = {"id": global_id("Business", business.id)}

    mine = await post(client, owner, query, variables)
    theirs = await post(client, neighbour, query, variables)

    assert mine == {"data": {"business": {"name": "Crumbs", "availableEvents": []}}}
    # the compiled statement marks the field it may not answer; the resolvers then answer
    # the whole request, with the error where the field is
    assert theirs["data"] == {"business": {"name": "Crumbs", "availableEvents": None}}
    [error] = theirs["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert error["path"] == ["business", "availableEvents"]
