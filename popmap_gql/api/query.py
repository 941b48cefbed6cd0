"""The Query root: categories, businesses and events, with filters and cursor pagination."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from enum import Enum
from typing import TypeVar, cast

import strawberry

from popmap_gql.api import arguments
from popmap_gql.api.arguments import MAX_IDS, MAX_NEAR_RADIUS_KM, MIN_SEARCH_WORD
from popmap_gql.api.context import Context, Info
from popmap_gql.api.privacy import private
from popmap_gql.api.services import ServiceClient, service_client
from popmap_gql.api.sizes import Capped, Paged, cap_of, listed
from popmap_gql.api.types import (
    AuthConfig,
    Business,
    Category,
    Connection,
    Edge,
    Event,
    PageInfo,
    Viewer,
)
from popmap_gql.auth.local_idp import LOCAL_CLIENT_ID, LOCAL_ISSUER, LOCAL_POOL_ID
from popmap_gql.auth.local_sessions import FEDERATED_PROVIDERS
from popmap_gql.auth.viewer import Viewer as AuthViewer
from popmap_gql.config import Settings, default_of
from popmap_gql.db import lists
from popmap_gql.db.models import EventStatus as DbEventStatus
from popmap_gql.errors import NotFound
from popmap_gql.read.ids import encode_cursor, encode_id

__all__ = [
    "PAGE",
    "NearInput",
    "Query",
    "auth_config",
    "business_list_query",
    "event_list_query",
    "viewer_object",
]

# The page of every connection (its `first` argument: the default when omitted, and the cap).
PAGE = Paged(default=20, cap=100)

NodeT = TypeVar("NodeT")


@strawberry.enum(description="How to order businesses; ties break on creation order.")
class BusinessOrder(Enum):
    NAME_ASC = "NAME_ASC"
    NAME_DESC = "NAME_DESC"
    NEWEST_FIRST = "NEWEST_FIRST"
    RELEVANCE = strawberry.enum_value(
        "RELEVANCE",
        description="Names most similar to filter.search first (only with search): of a"
        " search matching more than the count limit (POPMAP_MAX_EXACT_COUNT,"
        f" {default_of('max_exact_count'):,} by default; totalCountIsExact false), the"
        " first that many by name are ranked.",
    )


@strawberry.enum(description="How to order events; ties break on creation order.")
class EventOrder(Enum):
    STARTS_AT_ASC = "STARTS_AT_ASC"
    STARTS_AT_DESC = "STARTS_AT_DESC"
    NEWEST_FIRST = "NEWEST_FIRST"
    DISTANCE = strawberry.enum_value(
        "DISTANCE", description="Nearest first from filter.near's centre (only with near)."
    )


@strawberry.input
class BusinessFilter:
    search: str | None = strawberry.field(
        default=None,
        description="Case-insensitive text in the name or description; it must hold a word"
        f" of at least {MIN_SEARCH_WORD} letters or digits.",
    )
    category_slugs: list[str] | None = strawberry.field(
        default=None, description="Businesses in any of these categories."
    )
    available_for_hire: bool | None = None


@strawberry.input
class BoundingBox:
    north: float
    south: float
    east: float
    west: float


@strawberry.input(description="A circle on the map: events within radiusKm of a point.")
class NearInput:
    latitude: float = strawberry.field(description="The centre's latitude, -90 to 90.")
    longitude: float = strawberry.field(description="The centre's longitude, -180 to 180.")
    radius_km: float = strawberry.field(
        description="Great-circle distance in kilometres, more than 0 and at most"
        f" {MAX_NEAR_RADIUS_KM:g}."
    )


@strawberry.input
class EventFilter:
    upcoming: bool = strawberry.field(
        default=True,
        description="Only events not yet ended (endsAt >= now); false includes past ones.",
    )
    ends_after: datetime | None = strawberry.field(
        default=None,
        description="Events still running at or after this instant (upcoming as of then).",
    )
    starts_after: datetime | None = strawberry.field(
        default=None, description="Events starting at or after this instant."
    )
    starts_before: datetime | None = strawberry.field(
        default=None, description="Events starting before this instant."
    )
    bbox: BoundingBox | None = strawberry.field(
        default=None, description="The visible map area; west > east crosses the antimeridian."
    )
    category_slugs: list[str] | None = strawberry.field(
        default=None, description="Events where a business of any of these categories takes part."
    )
    business_id: strawberry.ID | None = strawberry.field(
        default=None, description="Events this business takes part in or hosts."
    )
    status: DbEventStatus | None = strawberry.field(
        default=None, description="Staff, or a service with read.all."
    )
    ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description=f"Only these events (at most {MAX_IDS} ids)."
    )
    near: NearInput | None = strawberry.field(
        default=None,
        description="Events within this circle; orderBy: DISTANCE lists them nearest first.",
    )


def _connection(
    page: lists.Page[lists.Row],
    query: lists.ListQuery,
    nodes: list[NodeT],
) -> Connection[NodeT]:
    edges = [
        Edge(cursor=encode_cursor(query.cursor_order, query.sort_value(row), row["id"]), node=node)
        for row, node in zip(page.items, nodes, strict=True)
    ]
    return Connection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next_page,
            has_previous_page=False,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        count=_once(lambda: lists.count_of(query)),
    )


def _once(count: Callable[[], Awaitable[lists.Count]]) -> Callable[[], Awaitable[lists.Count]]:
    """`count`, run at most once: totalCount and totalCountIsExact share its answer."""
    task: asyncio.Task[lists.Count] | None = None

    def shared() -> Awaitable[lists.Count]:
        nonlocal task
        if task is None:
            task = asyncio.ensure_future(count())
        return task

    return shared


def business_list_query(
    context: Context,
    first: int | None = None,
    after: str | None = None,
    filter: BusinessFilter | None = None,
    order_by: BusinessOrder = BusinessOrder.NAME_ASC,
) -> lists.ListQuery:
    """`Query.businesses`'s arguments checked and turned into the list's SQL (for the
    resolver and the compiled read path alike)."""
    size = arguments.page_size(PAGE, first)
    order = lists.BusinessOrder[order_by.name]
    flt = filter or BusinessFilter()
    criteria = lists.BusinessFilter(
        search=arguments.search_term(flt.search),
        category_slugs=arguments.category_slugs(flt.category_slugs, "filter.categorySlugs"),
        available_for_hire=flt.available_for_hire,
    )
    arguments.business_order(order, criteria.search)
    return lists.business_list(
        context.viewer.audience,
        criteria,
        order,
        size,
        arguments.after(order, after, search=criteria.search),
        count_cap=context.settings.max_exact_count,
    )


def event_list_query(
    context: Context,
    first: int | None = None,
    after: str | None = None,
    filter: EventFilter | None = None,
    order_by: EventOrder = EventOrder.STARTS_AT_ASC,
) -> lists.ListQuery:
    """`Query.events`'s arguments checked and turned into the list's SQL (for the resolver
    and the compiled read path alike)."""
    size = arguments.page_size(PAGE, first)
    order = lists.EventOrder[order_by.name]
    flt = filter or EventFilter()
    status = arguments.status_filter(context, flt.status)  # who may, before what
    criteria = lists.EventFilter(
        upcoming=flt.upcoming,
        ends_after=arguments.instant(flt.ends_after, "filter.endsAfter"),
        starts_after=arguments.instant(flt.starts_after, "filter.startsAfter"),
        starts_before=arguments.instant(flt.starts_before, "filter.startsBefore"),
        bbox=arguments.bounding_box(flt.bbox),
        category_slugs=arguments.category_slugs(flt.category_slugs, "filter.categorySlugs"),
        business_id=arguments.optional_id("Business", flt.business_id, "filter.businessId"),
        status=status,
        ids=arguments.event_ids(flt.ids),
        near=arguments.near(flt.near),
    )
    arguments.event_order(order, criteria.near)
    return lists.event_list(
        context.viewer.audience,
        criteria,
        order,
        size,
        arguments.after(order, after, criteria.near),
        count_cap=context.settings.max_exact_count,
    )


def viewer_object(viewer: AuthViewer) -> Viewer | None:
    if viewer.user_id is None:
        return None
    return Viewer(
        id=strawberry.ID(encode_id("User", viewer.user_id)),
        pk=viewer.user_id,
        username=viewer.username,
        email=viewer.email or None,
        first_name=viewer.first_name or None,
        last_name=viewer.last_name or None,
        groups=list(viewer.groups),
        is_staff=viewer.is_staff,
        identity_provider=viewer.identity_provider,
    )


def auth_config(settings: Settings, context: Context) -> AuthConfig:
    if not settings.cognito_configured:
        # The local provider's hosted UI is this server; Amplify builds https://<domain>
        # itself, so the domain is given only when this request came over HTTPS.
        url = context.request.url
        return AuthConfig(
            user_pool_id=LOCAL_POOL_ID,
            user_pool_client_id=LOCAL_CLIENT_ID,
            user_pool_client_ids=[LOCAL_CLIENT_ID],
            region=LOCAL_POOL_ID.partition("_")[0],
            issuer=LOCAL_ISSUER,
            domain=url.netloc if url.scheme == "https" else None,
            user_pool_endpoint=f"{context.api_base}/",
            scopes=list(settings.cognito_oauth_scopes),
            redirect_sign_in=list(settings.cognito_redirect_sign_in),
            redirect_sign_out=list(settings.cognito_redirect_sign_out),
            response_type="code",
            identity_providers=["COGNITO", *FEDERATED_PROVIDERS],
            local_development=True,
        )
    return AuthConfig(
        user_pool_id=settings.cognito_user_pool_id,
        user_pool_client_id=settings.cognito_app_client_ids[0],
        user_pool_client_ids=list(settings.cognito_app_client_ids),
        region=settings.cognito_region,
        issuer=settings.cognito_issuer,
        domain=settings.cognito_hosted_ui_domain,
        user_pool_endpoint=None,
        scopes=list(settings.cognito_oauth_scopes),
        redirect_sign_in=list(settings.cognito_redirect_sign_in),
        redirect_sign_out=list(settings.cognito_redirect_sign_out),
        response_type="code",
        identity_providers=list(settings.cognito_identity_providers),
        local_development=False,
    )


@strawberry.type
class Query:
    @strawberry.field(
        description="The signed-in person; null without a token and for services.",
        metadata=private(),
    )
    def me(self, info: Info) -> Viewer | None:
        return viewer_object(info.context.viewer)

    @strawberry.field(
        description="The service a server-to-server request acts for; null for people and"
        " anonymous callers.",
        metadata=private(),
    )
    def service_client(self, info: Info) -> ServiceClient | None:
        return service_client(info.context.viewer, info.context.settings)

    @strawberry.field(description="Public settings for Amplify.configure and the hosted UI.")
    def auth_config(self, info: Info) -> AuthConfig:
        return auth_config(info.context.settings, info.context)

    @strawberry.field(**listed("All categories, by name; the first {n}.", Capped(200)))
    async def categories(self) -> list[Category]:
        rows = await lists.list_categories(CATEGORIES_CAP)
        return [Category.from_values(row) for row in rows]

    @strawberry.field(**listed("Businesses the viewer can see, a page at a time.", PAGE))
    async def businesses(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: BusinessFilter | None = None,  # the contract's argument name
        order_by: BusinessOrder = BusinessOrder.NAME_ASC,
    ) -> Connection[Business]:
        query = business_list_query(info.context, first, after, filter, order_by)
        page = await lists.page_of(query)
        nodes = [Business.from_values(row) for row in page.items]
        return _connection(page, query, nodes)

    @strawberry.field(description="One business, if the viewer can see it.")
    async def business(self, info: Info, id: strawberry.ID) -> Business | None:
        pk = arguments.lookup("Business", id)
        business = None if pk is None else await info.context.loaders.by_id("Business").load(pk)
        if business is None:
            raise NotFound("no such business")
        return cast(Business, business)

    @strawberry.field(**listed("Events the viewer can see, a page at a time.", PAGE))
    async def events(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        filter: EventFilter | None = None,  # the contract's argument name
        order_by: EventOrder = EventOrder.STARTS_AT_ASC,
    ) -> Connection[Event]:
        query = event_list_query(info.context, first, after, filter, order_by)
        page = await lists.page_of(query)
        nodes = [Event.from_values(row) for row in page.items]
        return _connection(page, query, nodes)

    @strawberry.field(description="One event, if the viewer can see it.")
    async def event(self, info: Info, id: strawberry.ID) -> Event | None:
        pk = arguments.lookup("Event", id)
        event = None if pk is None else await info.context.loaders.by_id("Event").load(pk)
        if event is None:
            raise NotFound("no such event")
        return cast(Event, event)


CATEGORIES_CAP = cap_of(Query, "categories")
