"""GraphQL object types, built from the rows they show: ORM models (lists, mutations) or
the mappings of the SQL relation loaders, both read by column name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, Generic, Self, TypeVar, cast

import strawberry
from tortoise.models import Model

from popmap_gql.api.binding import derive_columns
from popmap_gql.api.context import Context, Info
from popmap_gql.api.permissions import require_power_in
from popmap_gql.api.privacy import private, private_type
from popmap_gql.api.sizes import COUNTS, PAGE_ITEMS, Capped, cap_of, listed, sized
from popmap_gql.config import default_of
from popmap_gql.db import models
from popmap_gql.db.commands import MAX_CATEGORIES
from popmap_gql.db.lists import Count
from popmap_gql.db.powers import AVAILABLE_EVENTS
from popmap_gql.db.rules import ACTS_FOR_BUSINESS
from popmap_gql.errors import Forbidden, Unauthenticated
from popmap_gql.read.loaders import LoaderSetup
from popmap_gql.read.model import ENTITIES, Entity

__all__ = [
    "BUILDERS",
    "CLASSES",
    "LOADER_SETUP",
    "READ_MODEL",
    "AuthConfig",
    "Business",
    "Category",
    "Connection",
    "Edge",
    "Event",
    "EventStatus",
    "PageInfo",
    "Viewer",
    "computed",
    "related",
]

# Registers the model's enum with Strawberry; annotations use models.EventStatus itself.
EventStatus = strawberry.enum(models.EventStatus, name="EventStatus")

NodeT = TypeVar("NodeT")


class _Built:
    """A type built from a row of its read-model entity (the entity of its name)."""

    @classmethod
    def from_row(cls, row: Model) -> Self:
        """From an ORM model: its column values by column name (foreign keys as
        `<name>_id`), the shape of a SQL row."""
        return cls.from_values(row.__dict__)

    @classmethod
    def from_values(cls, row: Mapping[str, Any]) -> Self:
        return cls(**READ_MODEL[cls.__name__].values(row))


@strawberry.type
class Category(_Built):
    id: strawberry.ID
    pk: strawberry.Private[int]
    name: str
    slug: str

    @strawberry.field(
        **listed(
            "Businesses in this category that the viewer can see, by name; the first {n}.",
            Capped(50),
        )
    )
    async def businesses(self, info: Info) -> list[Business]:
        return cast(list[Business], await related(self, info.context, "businesses"))


@strawberry.type
class Business(_Built):
    id: strawberry.ID
    pk: strawberry.Private[int]
    owner_id: strawberry.Private[int | None]
    name: str
    description: str
    contact_email: str | None
    contact_phone: str | None
    website: str | None
    instagram_url: str | None
    tiktok_url: str | None
    available_for_hire: bool
    logo_key: strawberry.Private[str]
    given_logo_url: strawberry.Private[str]
    is_verified: bool
    created_at: datetime
    updated_at: datetime

    @strawberry.field(
        description="The uploaded logo's public URL, or the URL given in logoUrl (deprecated)."
    )
    def logo_url(self, info: Info) -> str | None:
        return cast(str | None, computed(self, info.context, "logo_url"))

    @strawberry.field(**listed("Its categories, by name (at most {n}).", Capped(MAX_CATEGORIES)))
    async def categories(self, info: Info) -> list[Category]:
        return cast(list[Category], await related(self, info.context, "categories"))

    @strawberry.field(
        **listed(
            "Approved events this business takes part in, soonest first; at most {n}: with"
            " more, the {n} that end last (so every event not ended yet, up to {n}).",
            Capped(50),
        )
    )
    async def events(
        self,
        info: Info,
        upcoming: Annotated[
            bool, strawberry.argument(description="Only events that have not ended yet.")
        ] = False,
    ) -> list[Event]:
        return cast(list[Event], await related(self, info.context, "events", upcoming=upcoming))

    @strawberry.field(
        **listed(
            "Events this business hosts, soonest first; at most {n}: with more, the {n} that"
            " end last.",
            Capped(50),
        )
    )
    async def hosted_events(self, info: Info) -> list[Event]:
        return cast(list[Event], await related(self, info.context, "hosted_events"))

    @strawberry.field(
        description="True when the signed-in viewer owns this business. Use this, not a"
        " comparison of ids, to show owner-only controls.",
        metadata=private(),
    )
    def viewer_is_owner(self, info: Info) -> bool:
        return cast(bool, computed(self, info.context, "viewer_is_owner"))

    @strawberry.field(
        **listed(
            "Owner and staff only (others get FORBIDDEN): approved events that have not"
            " ended and that this business has not joined, soonest first, at most {n}.",
            Capped(100),
            private(),
        )
    )
    async def available_events(self, info: Info) -> list[Event] | None:
        viewer = info.context.viewer
        if not viewer.is_authenticated:
            raise Unauthenticated("sign in to see the events your business can join")
        if viewer.is_service:
            require_power_in(info.context, AVAILABLE_EVENTS)
        elif not ACTS_FOR_BUSINESS.holds(viewer.audience, self.owner_id):
            raise Forbidden("only the business's owner or staff may see this")
        loader = info.context.loaders.related("Business", "available_events")
        return cast(list[Event], await loader.load(self.pk))


@strawberry.type
class Event(_Built):
    id: strawberry.ID
    pk: strawberry.Private[int]
    host_business_id: strawberry.Private[int | None]
    created_by_id: strawberry.Private[int | None]
    title: str
    description: str
    location_name: str | None
    address: str | None
    latitude: float
    longitude: float
    starts_at: datetime
    ends_at: datetime
    image_key: strawberry.Private[str]
    given_image_url: strawberry.Private[str]
    status: models.EventStatus
    created_at: datetime
    updated_at: datetime

    @strawberry.field(
        description="The uploaded image's public URL, or the URL given in imageUrl (deprecated)."
    )
    def image_url(self, info: Info) -> str | None:
        return cast(str | None, computed(self, info.context, "image_url"))

    @strawberry.field(description="True while the event is approved and has not ended.")
    def is_active(self, info: Info) -> bool:
        return cast(bool, computed(self, info.context, "is_active"))

    @strawberry.field
    async def host_business(self, info: Info) -> Business | None:
        return cast(Business | None, await related(self, info.context, "host_business"))

    @strawberry.field(
        **listed("Businesses taking part, in the order they joined; the first {n}.", Capped(50))
    )
    async def businesses(self, info: Info) -> list[Business]:
        return cast(list[Business], await related(self, info.context, "businesses"))

    @strawberry.field(
        **listed(
            "The distinct categories of the businesses taking part, by name; the first {n}.",
            Capped(20),
        )
    )
    async def categories(self, info: Info) -> list[Category]:
        return cast(list[Category], await related(self, info.context, "categories"))


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class Edge(Generic[NodeT]):
    cursor: str
    node: NodeT


@strawberry.type
class Connection(Generic[NodeT]):
    edges: list[Edge[NodeT]] = strawberry.field(metadata=sized(PAGE_ITEMS))
    page_info: PageInfo
    # counts once per connection, however many of its count fields are selected
    count: strawberry.Private[Callable[[], Awaitable[Count]]]

    @strawberry.field(
        description="How many items match the filter, across all pages: exact up to the"
        f" server's count limit (POPMAP_MAX_EXACT_COUNT, {default_of('max_exact_count'):,}"
        " by default); beyond it, that limit, with totalCountIsExact false.",
        metadata=sized(COUNTS),
    )
    async def total_count(self) -> int:
        return (await self.count()).n

    @strawberry.field(
        description="Whether totalCount is the exact number of matches; false when more"
        " items match than the server counts (totalCount is then its count limit).",
        metadata=sized(COUNTS),
    )
    async def total_count_is_exact(self) -> bool:
        return (await self.count()).exact


@private_type
@strawberry.type(description="The signed-in person.")
class Viewer:
    id: strawberry.ID
    pk: strawberry.Private[int]
    username: str
    email: str | None
    first_name: str | None
    last_name: str | None
    groups: list[str]
    is_staff: bool
    identity_provider: str = strawberry.field(
        description="Cognito for the pool's own users; Facebook, Google, ... for federated ones."
    )

    @strawberry.field(
        **listed("Businesses the viewer owns, verified or not, by name; the first {n}.", Capped(50))
    )
    async def businesses(self, info: Info) -> list[Business]:
        return cast(list[Business], await related(self, info.context, "businesses"))

    @strawberry.field(
        **listed(
            "Events the viewer submitted, in any status, newest first; the latest {n}.",
            Capped(100),
        )
    )
    async def submitted_events(self, info: Info) -> list[Event]:
        return cast(list[Event], await related(self, info.context, "submitted_events"))


@strawberry.type(description="What a client needs for Amplify.configure and the hosted UI.")
class AuthConfig:
    user_pool_id: str | None
    user_pool_client_id: str | None = strawberry.field(
        description="The first configured app client (the web app's)."
    )
    user_pool_client_ids: list[str]
    region: str | None
    issuer: str
    domain: str | None = strawberry.field(
        description="The hosted UI's full host name"
        " (popmap-auth.auth.us-east-1.amazoncognito.com, or a custom domain); with the local"
        " identity provider, this server's host:port, while it is reached over HTTPS."
    )
    user_pool_endpoint: str | None = strawberry.field(
        description="Amplify's Auth.Cognito.userPoolEndpoint: where the user-pool API is"
        " (this server, with the local identity provider); null with a pool: AWS's own."
    )
    scopes: list[str]
    redirect_sign_in: list[str]
    redirect_sign_out: list[str]
    response_type: str
    identity_providers: list[str]
    local_development: bool = strawberry.field(
        description="True when the server trusts its local development identity provider."
    )


# --- derived from the read model ------------------------------------------------------

# The GraphQL class of each read-model entity: builders and resolvers find theirs here.
CLASSES: dict[str, type] = {
    "Category": Category,
    "Business": Business,
    "Event": Event,
    "Viewer": Viewer,
}
# The read model with every column field: the declared entities, completed with the
# plain fields of their classes (read/model.py `Column` says the conventions).
READ_MODEL: dict[str, Entity] = {
    name: derive_columns(entity, CLASSES[name]) for name, entity in ENTITIES.items()
}
BUILDERS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "Category": Category.from_values,
    "Business": Business.from_values,
    "Event": Event.from_values,
}
# The loaders' setup: the read model, each type's builder and each relation's size
LOADER_SETUP = LoaderSetup(
    model=READ_MODEL,
    caps={
        (entity.name, relation.field): cap_of(CLASSES[entity.name], relation.field)
        if relation.many
        else 1
        for entity in READ_MODEL.values()
        for relation in entity.relations
    },
    builders=BUILDERS,
)


def _entity_of(obj: Any) -> Entity:
    return READ_MODEL[type(obj).__name__]


async def related(obj: Any, context: Context, field: str, **arguments: Any) -> Any:
    """The relation `field` of `obj`, from the request's loader."""
    entity = _entity_of(obj)
    relation = entity.relation(field)
    assert relation is not None
    key = getattr(obj, relation.key_attribute)
    if key is None:
        return [] if relation.many else None
    return await context.loaders.related(entity.name, field, arguments).load(key)


def computed(obj: Any, context: Context, field: str) -> Any:
    """A computed field of `obj`, by the read model's Python form."""
    found = _entity_of(obj).computed_field(field)
    assert found is not None
    return found.python(obj, context)
