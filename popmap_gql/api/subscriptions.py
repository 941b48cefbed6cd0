"""The Subscription root: eventsChanged, the live form of `events(filter:)`.

Subscriptions are served over WebSocket (`graphql-transport-ws` on /graphql) by
`popmap_gql/live/`, which evaluates each group of identical subscriptions once per
window by running the list query itself (live/cohorts.py); graphql-core's per-subscriber
execution is never used, so the resolver below is never reached. The HTTP endpoint
refuses subscription operations before execution.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from enum import Enum

import strawberry

from popmap_gql.api.query import EventFilter
from popmap_gql.api.types import Event
from popmap_gql.errors import PopmapError

__all__ = ["EventChange", "EventChangeKind", "Subscription"]


@strawberry.enum(description="How an event's place in a subscriber's list changed.")
class EventChangeKind(Enum):
    ADDED = "ADDED"
    UPDATED = "UPDATED"
    REMOVED = "REMOVED"


@strawberry.type(description="One change of the events a subscription's filter shows its viewer.")
class EventChange:
    change: EventChangeKind
    event_id: strawberry.ID = strawberry.field(description="The event's id, also when removed.")
    event: Event | None = strawberry.field(
        description="The event as the viewer may see it now; null when REMOVED."
    )


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="Changes of what `events(filter:)` shows the viewer: ADDED when an event"
        " enters it, UPDATED when a selected field of one in it changes, REMOVED when one"
        " leaves it (cancelled, rejected, moved out of the box, no longer visible). Served"
        " over WebSocket (graphql-transport-ws) on /graphql."
    )
    async def events_changed(
        self, filter: EventFilter | None = None
    ) -> AsyncGenerator[EventChange, None]:
        raise PopmapError("eventsChanged is served over WebSocket (graphql-transport-ws)")
        yield  # an async generator, as Strawberry requires of a subscription
