"""What a committed write tells every process: the ids it touched, by NOTIFY.

A write calls `touched` inside its own transaction: PostgreSQL delivers a notification
only when that transaction commits, and drops it on a rollback, so a listener never hears
of a change nobody can read. The payload names ids only, never row data (what a viewer
may see is decided by each subscription's own read): `{"e": [event ids], "b": [business
ids]}`; a business stands for the events it hosts or takes part in. Every write touches
one event or business, or one of each, well under the 8,000 bytes PostgreSQL allows a
payload. `{"all": true}` (from another program on the channel) makes every subscription
re-read its list, as any payload a listener cannot read does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from popmap_gql.db.client import Connection, execute

__all__ = ["CHANNEL", "Touched", "payload", "read_payload", "touched"]

CHANNEL = "popmap_live"


@dataclass(frozen=True, slots=True)
class Touched:
    """What one or more writes touched; `everything` when they could not say."""

    events: frozenset[int] = frozenset()
    businesses: frozenset[int] = frozenset()
    everything: bool = False

    def __or__(self, other: Touched) -> Touched:
        return Touched(
            self.events | other.events,
            self.businesses | other.businesses,
            self.everything or other.everything,
        )

    def __bool__(self) -> bool:
        return self.everything or bool(self.events or self.businesses)


def payload(events: Iterable[int] = (), businesses: Iterable[int] = ()) -> str:
    event_ids, business_ids = sorted(set(events)), sorted(set(businesses))
    body: dict[str, list[int]] = {}
    if event_ids:
        body["e"] = event_ids
    if business_ids:
        body["b"] = business_ids
    return orjson.dumps(body).decode()


def read_payload(text: str) -> Touched:
    """A notification's ids; anything unreadable (another program on the channel, a
    newer format) counts as "everything", so no change is missed."""
    try:
        body = orjson.loads(text)
        if body.get("all") is True:
            return Touched(everything=True)
        events = body.get("e", [])
        businesses = body.get("b", [])
        if all(isinstance(i, int) for i in (*events, *businesses)):
            return Touched(frozenset(events), frozenset(businesses))
    except (orjson.JSONDecodeError, AttributeError, TypeError):
        pass
    return Touched(everything=True)


async def touched(
    connection: Connection, *, events: Iterable[int] = (), businesses: Iterable[int] = ()
) -> None:
    """Tell every listener, once `connection`'s transaction commits, what it touched."""
    await execute("SELECT pg_notify($1, $2)", [CHANNEL, payload(events, businesses)], on=connection)
