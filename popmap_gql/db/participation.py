"""joinEvent and leaveEvent: one statement each, which checks and writes at once.

A join or a leave is one round trip: the statement runs on its own, a transaction by
itself. Its checks come in the API's order, each rule taken from its one statement in
`db/rules.py`: the business the audience can see (`BUSINESS_VISIBILITY`: else NOT_FOUND),
one it may act for (`ACTS_FOR_BUSINESS`: else FORBIDDEN), the event it can see
(`EVENT_VISIBILITY`: else NOT_FOUND); then, to join, a verified business and an active
event (`ACTIVE_EVENTS`).

The event's row is locked (FOR NO KEY UPDATE, as every change of an event locks it first)
before the join is checked and written, so moderation cannot change the event in between:
a join that waited for moderation sees the event as moderation left it. A business may
leave an event it takes part in even when the event is no longer visible (cancelled or
pulled since). The statement answers the first check that failed and, when none did,
whether it changed a row and the two rows for the payload.

The statements are assembled from fixed fragments of those rules (hence S608 is off for
this module); every value is a bound parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from popmap_gql.db import notify
from popmap_gql.db.client import fetch
from popmap_gql.db.lists import Row
from popmap_gql.db.powers import Audience
from popmap_gql.db.rules import (
    ACTIVE_EVENTS,
    ACTS_FOR_BUSINESS,
    BUSINESS_VISIBILITY,
    EVENT_VISIBILITY,
)
from popmap_gql.errors import BadUserInput, Forbidden, NotFound, PopmapError

__all__ = ["ParticipationChange", "join_event", "leave_event"]


@dataclass(frozen=True, slots=True)
class ParticipationChange:
    """The event's and the business's rows (by column name) and whether a row changed."""

    event: Row
    business: Row
    changed: bool


# What the statement answers: the first check that failed, else OK.
_OK, _NO_BUSINESS, _NOT_OWNER, _NO_EVENT, _NOT_VERIFIED, _NOT_ACTIVE = (
    "OK",
    "NO_BUSINESS",
    "NOT_OWNER",
    "NO_EVENT",
    "NOT_VERIFIED",
    "NOT_ACTIVE",
)


def _participation_sql(audience: Audience, *, join: bool, params: list[Any]) -> str:
    """The join's or the leave's statement; `params` starts with the business id ($1) and
    the event id ($2), and the audience's values are appended. A row written is announced
    to live subscribers (db/notify.py) by the same statement, so only on commit."""
    business_visible = BUSINESS_VISIBILITY.sql(audience, "b", params)
    event_visible = EVENT_VISIBILITY.sql(audience, "e", params)
    acts_for_business = ACTS_FOR_BUSINESS.sql(audience, "biz", params)
    if join:
        event_found = event_visible
        lock = "FOR NO KEY UPDATE OF e"
        join_checks = (
            f" WHEN NOT (SELECT is_verified FROM biz) THEN '{_NOT_VERIFIED}'"
            f" WHEN NOT (SELECT active FROM ev) THEN '{_NOT_ACTIVE}'"
        )
        write = (
            "INSERT INTO participation (business_id, event_id, joined_at)"
            f" SELECT $1, $2, now() FROM verdict WHERE verdict.outcome = '{_OK}'"
            " ON CONFLICT (business_id, event_id) DO NOTHING"
        )
    else:
        event_found = (
            f"({event_visible} OR EXISTS (SELECT 1 FROM participation p"
            " WHERE p.event_id = e.id AND p.business_id = $1))"
        )
        lock = join_checks = ""
        write = (
            "DELETE FROM participation p USING verdict"
            f" WHERE verdict.outcome = '{_OK}' AND p.business_id = $1 AND p.event_id = $2"
        )
    params.append(notify.CHANNEL)
    channel = f"${len(params)}"
    params.append(
        notify.payload(events=[params[1]] if params[1] is not None else [], businesses=[params[0]])
    )
    announcement = f"${len(params)}"
    # Each CTE is read only once the CASE before it has passed, so an event is locked
    # only for a business the audience may act for.
    return f"""
WITH biz AS (
  SELECT b AS row, b.owner_id, b.is_verified FROM business b
  WHERE b.id = $1 AND {business_visible}),
ev AS (
  SELECT e AS row, e.status, {ACTIVE_EVENTS.sql("e")} AS active FROM event e
  WHERE e.id = $2 AND {event_found} {lock}),
verdict AS (SELECT CASE
  WHEN NOT EXISTS (SELECT 1 FROM biz) THEN '{_NO_BUSINESS}'
  WHEN NOT EXISTS (SELECT 1 FROM biz WHERE {acts_for_business}) THEN '{_NOT_OWNER}'
  WHEN NOT EXISTS (SELECT 1 FROM ev) THEN '{_NO_EVENT}'{join_checks}
  ELSE '{_OK}' END AS outcome),
written AS ({write} RETURNING 1)
SELECT verdict.outcome,
  EXISTS (SELECT 1 FROM written) AS changed,
  (SELECT count(pg_notify({channel}, {announcement})) FROM written) AS announced,
  CASE WHEN verdict.outcome IN ('{_OK}', '{_NOT_ACTIVE}') THEN (SELECT status FROM ev) END
    AS status,
  CASE WHEN verdict.outcome = '{_OK}' THEN (SELECT row FROM ev) END AS event,
  CASE WHEN verdict.outcome = '{_OK}' THEN (SELECT row FROM biz) END AS business
FROM verdict"""


async def _change_participation(
    audience: Audience,
    event_id: int | None,
    business_id: int,
    *,
    join: bool,
    no_event: PopmapError | None,
) -> ParticipationChange:
    params: list[Any] = [business_id, event_id]
    sql = _participation_sql(audience, join=join, params=params)
    # The statement is fixed text from our rules; every value travels as a parameter.
    [row] = await fetch(sql, params)
    outcome = row["outcome"]
    if outcome == _OK:
        return ParticipationChange(
            event=row["event"], business=row["business"], changed=row["changed"]
        )
    if outcome == _NO_BUSINESS:
        raise NotFound("no such business")
    if outcome == _NOT_OWNER:
        raise Forbidden(ACTS_FOR_BUSINESS.refusal)
    if outcome == _NO_EVENT:
        raise no_event or NotFound("no such event")
    if outcome == _NOT_VERIFIED:
        raise BadUserInput("the business is not verified yet", field="businessId")
    # the statement's verdict has no other outcome than _NOT_ACTIVE left
    approved = row["status"] == ACTIVE_EVENTS.status.value
    reason = "has ended" if approved else "is not approved"
    raise BadUserInput(f"only active events can be joined: this one {reason}", field="eventId")


async def join_event(
    audience: Audience,
    event_id: int | None,
    business_id: int,
    *,
    no_event: PopmapError | None = None,
) -> ParticipationChange:
    """Join a verified business the audience may act for to an approved event that has
    not ended; idempotent. `event_id` None names no event: `no_event` (by default
    NOT_FOUND) is raised once the business's checks have passed."""
    return await _change_participation(
        audience, event_id, business_id, join=True, no_event=no_event
    )


async def leave_event(
    audience: Audience,
    event_id: int | None,
    business_id: int,
    *,
    no_event: PopmapError | None = None,
) -> ParticipationChange:
    """Take a business the audience may act for out of an event; leaving one it is not
    in changes nothing. `event_id` and `no_event` as for join_event."""
    return await _change_participation(
        audience, event_id, business_id, join=False, no_event=no_event
    )
