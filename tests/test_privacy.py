"""Fields whose answer depends on who asks are marked on the field, and never cached."""

from __future__ import annotations

import httpx
import pytest
import strawberry
from graphql import DocumentNode, parse, validate

from popmap_gql.api.privacy import PrivateFields, private, private_type
from popmap_gql.api.schema import schema
from popmap_gql.api.types import Viewer
from popmap_gql.http.cache import cacheable
from tests.fake_cognito import FakeCognito
from tests.helpers import global_id, make_business
from tests.people import person

# How a test reaches each private field, and what it selects below it. Keyed like the
# schema's own marks, so a newly marked field fails the coverage test until added here.
REACH = {"Query": ("", ""), "Business": ("business(id: $id) {", "}")}
BELOW = {
    ("Query", "me"): "{ id username }",
    ("Query", "serviceClient"): "{ clientId }",
    ("Business", "viewerIsOwner"): "",
    ("Business", "availableEvents"): "{ id }",
}
STYLES = ("plain", "aliased", "in a fragment", "in an inline fragment")


def test_the_tests_reach_every_field_the_schema_marks_private() -> None:
    assert set(BELOW) == schema.private_fields.coordinates


def document(type_name: str, selection: str, style: str) -> str:
    """A query selecting `selection` on `type_name`, written in one of STYLES."""
    before, after = REACH[type_name]
    fragment = ""
    if style == "aliased":
        selection = f"renamed: {selection}"
    elif style == "in a fragment":
        fragment = f" fragment Picked on {type_name} {{ {selection} }}"
        selection = "...Picked"
    elif style == "in an inline fragment":
        selection = f"... on {type_name} {{ {selection} }}"
    variables = "($id: ID!)" if before else ""
    return f"query Probe{variables} {{ {before} {selection} {after} }}{fragment}"


async def ask_twice(
    client: httpx.AsyncClient, query: str, variables: dict[str, str], headers: dict[str, str]
) -> list[str | None]:
    """The x-popmap-cache header of two identical requests, each answered without error."""
    seen = []
    for _ in range(2):
        payload = {"query": query, "variables": variables if "$id" in query else {}}
        response = await client.post("/graphql", json=payload, headers=headers)
        assert response.status_code == 200, response.text
        assert "errors" not in response.json(), response.text
        seen.append(response.headers.get("x-popmap-cache"))
    return seen


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("coordinate", sorted(BELOW), ids=".".join)
async def test_every_private_field_makes_its_operation_uncached(
    client: httpx.AsyncClient,
    cognito: FakeCognito,
    coordinate: tuple[str, str],
    style: str,
) -> None:
    owner = await person(cognito, "owner")
    business = await make_business("Crumbs", owner=owner.user)
    variables = {"id": global_id("Business", business.id)}
    type_name, field = coordinate
    private_query = document(type_name, f"{field} {BELOW[coordinate]}", style)
    public_query = document(type_name, "__typename", style)  # the same shape, nothing private

    assert await ask_twice(client, public_query, variables, owner.headers) == ["miss", "hit"]
    assert await ask_twice(client, private_query, variables, owner.headers) == [None, None]


# A small schema of its own: the real one has no public field sharing a private one's name.
@private_type
@strawberry.type
class Caller:
    name: str


@strawberry.type
class Widget:
    me: str = strawberry.field(description="The widget's own label: public.")

    viewer_likes: bool = strawberry.field(default=False, metadata=private())


@strawberry.type
class Query:
    me: Caller | None = strawberry.field(default=None, metadata=private())

    @strawberry.field
    def widget(self) -> Widget:
        return Widget(me="w")


WIDGETS = strawberry.Schema(query=Query)


def validated(query: str) -> DocumentNode:
    parsed = parse(query)
    assert validate(WIDGETS._schema, parsed) == []
    return parsed


def test_a_public_field_named_like_a_private_one_elsewhere_is_cacheable() -> None:
    fields = PrivateFields(WIDGETS._schema)

    assert fields.coordinates == {("Query", "me"), ("Widget", "viewerLikes")}
    assert cacheable(validated("{ widget { me } }"), fields)
    assert cacheable(validated("{ me: widget { me } }"), fields)  # an alias named `me` too
    assert not cacheable(validated("{ me { name } }"), fields)


@pytest.mark.parametrize(
    "query",
    [
        "{ widget { viewerLikes } }",
        "{ widget { liked: viewerLikes } }",
        "{ widget { ...Likes } } fragment Likes on Widget { viewerLikes }",
        "{ widget { ... on Widget { me viewerLikes } } }",
        "query One { widget { me } } query Other { w: widget { viewerLikes } }",
        "{ caller: me { ... on Caller { name } } }",
    ],
)
def test_a_newly_marked_field_is_never_cached_with_no_list_to_edit(query: str) -> None:
    assert not cacheable(validated(query), PrivateFields(WIDGETS._schema))


def test_start_up_refuses_a_field_returning_a_private_type_without_the_mark() -> None:
    @strawberry.type
    class Unmarked:
        @strawberry.field
        def who_asks(self) -> Caller | None:
            return None

    with pytest.raises(TypeError, match=r"^Unmarked\.whoAsks returns Caller, which is private"):
        PrivateFields(strawberry.Schema(query=Unmarked)._schema)


def test_start_up_refuses_an_unmarked_list_of_the_real_viewer_type() -> None:
    @strawberry.type
    class Leaky:
        @strawberry.field
        def everyone(self) -> list[Viewer]:
            return []

    with pytest.raises(TypeError, match=r"^Leaky\.everyone returns Viewer"):
        PrivateFields(strawberry.Schema(query=Leaky)._schema)


@strawberry.type
class Guest:
    name: str


@strawberry.type
class Visitors:
    @strawberry.field
    def visitor(self) -> Caller | Guest:
        return Guest(name="g")


def test_start_up_refuses_an_unmarked_union_that_may_be_the_viewer() -> None:
    with pytest.raises(TypeError, match=r"^Visitors\.visitor returns CallerGuest"):
        PrivateFields(strawberry.Schema(query=Visitors)._schema)


@strawberry.input
class Wish:
    secret: str = strawberry.field(metadata=private())


@strawberry.type
class Wishes:
    @strawberry.field
    def granted(self, wish: Wish) -> bool:
        return False


def test_start_up_refuses_a_mark_on_an_input_field() -> None:
    with pytest.raises(TypeError, match=r"^Wish\.secret: an input field cannot be private"):
        PrivateFields(strawberry.Schema(query=Wishes)._schema)


@strawberry.interface
class Thing:
    label: str


@strawberry.type
class Gadget(Thing):
    label: str = strawberry.field(default="mine", metadata=private())


@strawberry.type
class Gizmo(Thing):
    label: str = "plain"


@strawberry.interface
class Secret:
    code: str = strawberry.field(metadata=private())


@strawberry.type
class Locker(Secret):
    code: str = "1234"


@strawberry.type
class Things:
    @strawberry.field
    def thing(self) -> Thing:
        return Gadget()

    @strawberry.field
    def secret(self) -> Secret:
        return Locker()


THINGS = strawberry.Schema(query=Things, types=[Gadget, Gizmo, Locker])


@pytest.mark.parametrize(
    "query",
    [
        "{ thing { label } }",
        "{ thing { ... on Gizmo { label } } }",
        "{ secret { ... on Locker { code } } }",
    ],
)
def test_a_field_marked_on_an_interface_or_one_of_its_types_is_private_on_all(
    query: str,
) -> None:
    fields = PrivateFields(THINGS._schema)
    parsed = parse(query)
    assert validate(THINGS._schema, parsed) == []

    assert not cacheable(parsed, fields)
    assert cacheable(parse("{ thing { __typename } }"), fields)
