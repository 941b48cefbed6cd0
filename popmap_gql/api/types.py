"""GraphQL object types, built from the rows they show: ORM models (lists, mutations) or
the mappings of the SQL relation loaders, both read by column name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar, cast

import strawberry
from tortoise.models import Model

from popmap_gql.api.context import Context, Info
from popmap_gql.api.dataloading import Missing, peek, ready
from popmap_gql.api.permissions import require_service_power
from popmap_gql.api.privacy import private, private_type
from popmap_gql.api.sizes import PAGE_ITEMS, Capped, cap_of, sized
from popmap_gql.db import models
from popmap_gql.db.commands import MAX_CATEGORIES
from popmap_gql.db.powers import AVAILABLE_EVENTS, may_act_for_business
from popmap_gql.db.queries import ACTIVE_EVENTS, ended
from popmap_gql.errors import Forbidden, Unauthenticated
from popmap_gql.read.ids import encode_id

if TYPE_CHECKING:
    from popmap_gql.api.loaders import Loaders

__all__ = [
    "AuthConfig",
    "Business",
    "Category",
    "Connection",
    "Edge",
    "Event",
    "EventStatus",
    "PageInfo",
    "Viewer",
]

# Registers the model's enum with Strawberry; annotations use models.EventStatus itself.
EventStatus = strawberry.enum(models.EventStatus, name="EventStatus")

NodeT = TypeVar("NodeT")
T = TypeVar("T")


def _columns(row: Model) -> Mapping[str, Any]:
    """A model's column values by column name (foreign keys as `<name>_id`), the shape of
    a SQL row."""
    return row.__dict__


def _as_is(value: T) -> T:
    return value


def _or_none(value: str) -> str | None:
    """Empty text columns are absent values to clients."""
    return value or None


@strawberry.type
class Category:
    id: strawberry.ID
    pk: strawberry.Private[int]
    name: str
    slug: str

    @classmethod
    def from_row(cls, row: models.Category) -> Category:
        return cls.from_values(_columns(row))

    @classmethod
    def from_values(cls, row: Mapping[str, Any]) -> Category:
        pk = row["id"]
        return cls(
            id=strawberry.ID(encode_id("Category", pk)), pk=pk, name=row["name"], slug=row["slug"]
        )


@strawberry.type
class Business:
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
        return self.load_logo_url(info.context)

    def load_logo_url(self, context: Context) -> str | None:
        return _picture_url(context, self.logo_key, self.given_logo_url)

    # Relation resolvers are sync: the root resolvers prefetch what the query selects,
    # and `ready` falls back to an awaitable DataLoader load when they did not. Each
    # delegates to a method taking the context, which graphql-core calls directly (see
    # DIRECT_RESOLVERS).

    @strawberry.field(
        description=f"Its categories, by name (at most {MAX_CATEGORIES}).",
        metadata=sized(Capped(MAX_CATEGORIES)),
    )
    def categories(self, info: Info) -> list[Category]:
        return self.load_categories(info.context)

    def load_categories(self, context: Context) -> list[Category]:
        return ready(context.loaders.categories_by_business, self.pk, _as_is)

    @strawberry.field(
        description="Approved events this business takes part in, soonest first; at most 50:"
        " with more, the 50 that end last (so every event not ended yet, up to 50).",
        metadata=sized(Capped(50)),
    )
    def events(
        self,
        info: Info,
        upcoming: Annotated[
            bool, strawberry.argument(description="Only events that have not ended yet.")
        ] = False,
    ) -> list[Event]:
        return self.load_events(info.context, upcoming=upcoming)

    def load_events(self, context: Context, *, upcoming: bool = False) -> list[Event]:
        def convert(events: list[Event]) -> list[Event]:
            if upcoming:
                now = datetime.now(UTC)
                return [event for event in events if not ended(event.ends_at, now)]
            return events

        return ready(context.loaders.events_by_business, self.pk, convert)

    @strawberry.field(
        description="Events this business hosts, soonest first; at most 50: with more, the"
        " 50 that end last.",
        metadata=sized(Capped(50)),
    )
    def hosted_events(self, info: Info) -> list[Event]:
        return self.load_hosted_events(info.context)

    def load_hosted_events(self, context: Context) -> list[Event]:
        return ready(context.loaders.hosted_events_by_business, self.pk, _as_is)

    @strawberry.field(
        description="True when the signed-in viewer owns this business. Use this, not a"
        " comparison of ids, to show owner-only controls.",
        metadata=private(),
    )
    def viewer_is_owner(self, info: Info) -> bool:
        viewer_id = info.context.viewer.user_id
        return viewer_id is not None and viewer_id == self.owner_id

    @strawberry.field(
        description="Owner and staff only (others get FORBIDDEN): approved events that have"
        " not ended and that this business has not joined, soonest first, at most 100.",
        metadata=sized(Capped(100)) | private(),
    )
    async def available_events(self, info: Info) -> list[Event] | None:
        viewer = info.context.viewer
        if not viewer.is_authenticated:
            raise Unauthenticated("sign in to see the events your business can join")
        if viewer.is_service:
            require_service_power(info, AVAILABLE_EVENTS)
        elif not may_act_for_business(viewer.audience, self.owner_id):
            raise Forbidden("only the business's owner or staff may see this")
        return await info.context.loaders.available_events_by_business.load(self.pk)

    @classmethod
    def from_row(cls, row: models.Business) -> Business:
        return cls.from_values(_columns(row))

    @classmethod
    def from_values(cls, row: Mapping[str, Any]) -> Business:
        pk = row["id"]
        return cls(
            id=strawberry.ID(encode_id("Business", pk)),
            pk=pk,
            owner_id=row["owner_id"],
            name=row["name"],
            description=row["description"],
            contact_email=_or_none(row["contact_email"]),
            contact_phone=_or_none(row["contact_phone"]),
            website=_or_none(row["website"]),
            instagram_url=_or_none(row["instagram_url"]),
            tiktok_url=_or_none(row["tiktok_url"]),
            available_for_hire=row["available_for_hire"],
            logo_key=row["logo_key"],
            given_logo_url=row["logo_url"],
            is_verified=row["is_verified"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


@strawberry.type
class Event:
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
        return self.load_image_url(info.context)

    def load_image_url(self, context: Context) -> str | None:
        return _picture_url(context, self.image_key, self.given_image_url)

    @strawberry.field(description="True while the event is approved and has not ended.")
    def is_active(self) -> bool:
        return ACTIVE_EVENTS.holds(self.status, self.ends_at, datetime.now(UTC))

    @strawberry.field
    def host_business(self, info: Info) -> Business | None:
        return self.load_host_business(info.context)

    def load_host_business(self, context: Context) -> Business | None:
        if self.host_business_id is None:
            return None
        return ready(context.loaders.business_by_id, self.host_business_id, _as_is)

    @strawberry.field(
        description="Businesses taking part, in the order they joined; the first 50.",
        metadata=sized(Capped(50)),
    )
    def businesses(self, info: Info) -> list[Business]:
        return self.load_businesses(info.context)

    def load_businesses(self, context: Context) -> list[Business]:
        return ready(context.loaders.businesses_by_event, self.pk, _as_is)

    @strawberry.field(
        description="The distinct categories of the businesses taking part, by name; the first 20.",
        metadata=sized(Capped(20)),
    )
    def categories(self, info: Info) -> list[Category]:
        return self.load_categories(info.context)

    def load_categories(self, context: Context) -> list[Category]:
        loaders = context.loaders
        businesses = peek(loaders.businesses_by_event, self.pk)
        if not isinstance(businesses, Missing):
            known: list[list[Category]] = []
            for business in businesses:
                categories = peek(loaders.categories_by_business, business.pk)
                if isinstance(categories, Missing):
                    break
                known.append(categories)
            else:
                return _distinct_categories(known)
        # graphql-core awaits what a sync resolver returns when it is awaitable
        return cast(list[Category], self._categories_later(loaders))

    async def _categories_later(self, loaders: Loaders) -> list[Category]:
        businesses = await loaders.businesses_by_event.load(self.pk)
        per_business = await loaders.categories_by_business.load_many([b.pk for b in businesses])
        return _distinct_categories(per_business)

    @classmethod
    def from_row(cls, row: models.Event) -> Event:
        return cls.from_values(_columns(row))

    @classmethod
    def from_values(cls, row: Mapping[str, Any]) -> Event:
        pk = row["id"]
        return cls(
            id=strawberry.ID(encode_id("Event", pk)),
            pk=pk,
            host_business_id=row["host_business_id"],
            created_by_id=row["created_by_id"],
            title=row["title"],
            description=row["description"],
            location_name=_or_none(row["location_name"]),
            address=_or_none(row["address"]),
            latitude=row["latitude"],
            longitude=row["longitude"],
            starts_at=row["starts_at"],
            ends_at=row["ends_at"],
            image_key=row["image_key"],
            given_image_url=row["image_url"],
            status=models.EventStatus(row["status"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


# Relation fields whose work is a method taking the context: graphql-core calls these
# directly (installed by the schema), skipping Strawberry's resolver wrapper, which costs
# more than the work on a map page with hundreds of businesses. The Strawberry resolvers
# above stay the documented fields and call the same methods.
DIRECT_RESOLVERS: dict[tuple[str, str], Callable[..., Any]] = {
    ("Business", "logoUrl"): Business.load_logo_url,
    ("Event", "imageUrl"): Event.load_image_url,
    ("Business", "categories"): Business.load_categories,
    ("Business", "events"): Business.load_events,
    ("Business", "hostedEvents"): Business.load_hosted_events,
    ("Event", "hostBusiness"): Event.load_host_business,
    ("Event", "businesses"): Event.load_businesses,
    ("Event", "categories"): Event.load_categories,
}


def _picture_url(context: Context, key: str, given_url: str) -> str | None:
    """An uploaded picture's URL is built when asked, so a new CDN applies to every row."""
    if key:
        return f"{context.media_base}/{key}"
    return given_url or None


def _distinct_categories(per_business: Iterable[list[Category]]) -> list[Category]:
    distinct = {category.pk: category for categories in per_business for category in categories}
    ordered = sorted(distinct.values(), key=lambda category: (category.name, category.pk))
    return ordered[:EVENT_CATEGORIES_CAP]


EVENT_CATEGORIES_CAP = cap_of(Event, "categories")


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
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many items match the filter, across all pages.")
    async def total_count(self) -> int:
        return await self.count()


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
        description="Businesses the viewer owns, verified or not, by name; the first 50.",
        metadata=sized(Capped(50)),
    )
    async def businesses(self, info: Info) -> list[Business]:
        return await info.context.loaders.businesses_by_owner.load(self.pk)

    @strawberry.field(
        description="Events the viewer submitted, in any status, newest first; the latest 100.",
        metadata=sized(Capped(100)),
    )
    async def submitted_events(self, info: Info) -> list[Event]:
        return await info.context.loaders.events_by_creator.load(self.pk)


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
        " (popmap-auth.auth.us-east-1.amazoncognito.com, or a custom domain)."
    )
    scopes: list[str]
    redirect_sign_in: list[str]
    redirect_sign_out: list[str]
    response_type: str
    identity_providers: list[str]
    local_development: bool = strawberry.field(
        description="True when the server trusts its local development identity provider."
    )
