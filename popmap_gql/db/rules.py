"""The rules about rows, each stated once with its Python form and its SQL form side by side.

- `Visibility` (`BUSINESS_VISIBILITY`, `EVENT_VISIBILITY`): who sees which rows of a
  table. `q` is the ORM filter (commands, the differential test's oracle), `sql` the
  condition on a table alias (lists, lookups, the read model's relations, the compiled
  path, joinEvent/leaveEvent).
- `ENDED` and `ACTIVE_EVENTS`: an event has ended once its end lies before now; it is
  active while approved and not ended. `holds` checks an event in hand, `sql` is the
  condition on an event row as of the statement's start.
- `ACTS_FOR_BUSINESS`: "owner or staff", a person acts for a business they own, staff
  for any. `holds` checks a business in hand, `sql` is the condition on a business row,
  `refusal` what a person who may not is told.
- `MAY_CHANGE_EVENT`: who may change an event (`EventOwners`: the rows it belongs to),
  applied by the commands under the event's row lock; it has no SQL form.

Who may use which operation at all (per mutation and viewer-dependent read, the people
and the service scope) is `POWERS` in `db/powers.py`; these rules decide, row by row,
what an allowed audience sees and may act on. Every SQL form is assembled from constants
of these declarations; every value of a viewer travels as a parameter appended to
`params`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.expressions import Q

from popmap_gql.db.models import EventStatus
from popmap_gql.db.powers import POWERS, Audience

__all__ = [
    "ACTIVE_EVENTS",
    "ACTS_FOR_BUSINESS",
    "BUSINESS_VISIBILITY",
    "ENDED",
    "EVENT_VISIBILITY",
    "MAY_CHANGE_EVENT",
    "SPAN",
    "ActiveEvents",
    "ActsForBusiness",
    "Ended",
    "EventOwners",
    "MayChangeEvent",
    "Visibility",
]


# --- who sees which rows ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Visibility:
    """The one statement of who sees the rows of a table: everyone sees the public ones
    (`public_column` = `public_value`), a user also their own (`owner_column`), a service
    also the rows it submitted (`client_column`, where services submit rows), and whoever
    sees everything (staff, services with read.all) all of them. The ORM filter and the SQL
    fragment below are both derived from it."""

    public_column: str
    public_value: bool | EventStatus
    owner_column: str
    client_column: str | None = None

    def q(self, audience: Audience) -> Q:
        if audience.sees_everything:
            return Q()
        public: dict[str, Any] = {self.public_column: self.public_value}
        visible = Q(**public)
        for column, value in self._own(audience):
            own: dict[str, Any] = {column: value}
            visible |= Q(**own)
        return visible

    def sql(self, audience: Audience, alias: str, params: list[Any]) -> str:
        """SQL condition on `alias`; the user or client id is appended to `params`."""
        return self.sql_branches(audience, alias, params)[0]

    def sql_branches(
        self, audience: Audience, alias: str, params: list[Any]
    ) -> tuple[str, tuple[str, ...]]:
        """`sql`, and the same rows as disjoint branches when one index order cannot
        give them (the public rows and the audience's own others; for whoever sees
        everything, a branch per value of `public_column`), else none: a list in an
        index's order reads each branch in that order and merges them, where the OR (or
        no condition on the index's first column) would make PostgreSQL read and sort
        every row admitted."""
        if audience.sees_everything:
            return "TRUE", tuple(
                f"{alias}.{self.public_column} = {_literal(value)}" for value in self._values
            )
        public = f"{alias}.{self.public_column} = {_literal(self.public_value)}"
        own = []
        for column, value in self._own(audience):
            params.append(value)
            own.append(f"{alias}.{column} = ${len(params)}")
        if not own:
            return public, ()
        mine = own[0] if len(own) == 1 else f"({' OR '.join(own)})"
        return f"({' OR '.join([public, *own])})", (public, f"NOT {public} AND {mine}")

    def _own(self, audience: Audience) -> list[tuple[str, int | str]]:
        """The (column, value) pairs naming the audience's own rows."""
        own: list[tuple[str, int | str]] = []
        if audience.user_id is not None:
            own.append((self.owner_column, audience.user_id))
        if audience.client_id is not None and self.client_column is not None:
            own.append((self.client_column, audience.client_id))
        return own

    @property
    def _values(self) -> tuple[bool | EventStatus, ...]:
        """Every value `public_column` holds (NOT NULL; a status is one of EventStatus,
        which the CHECK event_status_known enforces)."""
        if isinstance(self.public_value, EventStatus):
            return tuple(EventStatus)
        return (True, False)


def _literal(value: bool | EventStatus) -> str:
    # a constant of our own declaration, never a client's value
    if isinstance(value, EventStatus):
        return f"'{value.value}'"
    return "TRUE" if value else "FALSE"


# Verified businesses; an owner also sees their own; staff and read.all see all.
BUSINESS_VISIBILITY = Visibility("is_verified", True, "owner_id")
# Approved events; the submitter (a person or a service) also sees their own; staff and
# read.all see all. A service owns no business; it may submit events (migration 0005).
EVENT_VISIBILITY = Visibility("status", EventStatus.APPROVED, "created_by_id", "created_by_client")


# --- ended and active ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ended:
    """The one statement of "ended": an event has ended once its end lies before now (it
    is still on at its last instant). The SQL form takes now as of the statement's start."""

    end_column: str = "ends_at"
    start_column: str = "starts_at"

    def holds(self, ends_at: datetime, now: datetime) -> bool:
        return ends_at < now

    def sql(self, alias: str) -> str:
        return f"{alias}.{self.end_column} < now()"

    def not_ended_rows_sql(self, alias: str, instant: str = "now()") -> str:
        """The rows not ended as of `instant` (SQL; now by default), for selecting rows:
        the same rule, with a bound on the start that follows from it, since no event
        lasts longer than the longest one. A list in start order then reads its index on
        `starts_at` from shortly before `instant` instead of from the first event ever
        held (the longest duration is one look-up in migration 0011's index; with no
        event at all, nothing is selected either way). The bound goes no further back
        than `_EARLIEST`: an event may last from year 1 to 9999, and `instant` minus that
        would lie before the first timestamp PostgreSQL holds (4714 BC), an error."""
        span = f"(SELECT max({SPAN}) FROM event)"  # noqa: S608 (constants only)
        span = f"LEAST({span}, {instant} - {_EARLIEST})"
        return (
            f"{alias}.{self.end_column} >= {instant}"
            f" AND {alias}.{self.start_column} >= {instant} - {span}"
        )


# Before any instant the API stores (validation.check_instant: year 1 and later), with
# days to spare for a time zone's offset when PostgreSQL subtracts the interval's days.
_EARLIEST = "'0001-01-01 00:00:00+00'::timestamptz - interval '2 days'"

# An event's duration, as migration 0011 indexes it: the planner reads the longest from
# that index only when the expression is written exactly so.
SPAN = "ends_at - starts_at"


ENDED = Ended()


@dataclass(frozen=True, slots=True)
class ActiveEvents:
    """The one statement of "active": approved and not ended. Joining needs it,
    `Event.isActive` shows it and `availableEvents` lists by it; the check of an event in
    hand and the SQL condition are both derived from these two facts."""

    status: EventStatus = EventStatus.APPROVED
    ended: Ended = ENDED

    def holds(self, status: EventStatus, ends_at: datetime, now: datetime) -> bool:
        return status is self.status and not self.ended.holds(ends_at, now)

    def sql(self, alias: str) -> str:
        return f"{alias}.status = '{self.status.value}' AND NOT ({self.ended.sql(alias)})"

    def rows_sql(self, alias: str) -> str:
        """The same condition for selecting rows (`Ended.not_ended_rows_sql`)."""
        return f"{alias}.status = '{self.status.value}' AND {self.ended.not_ended_rows_sql(alias)}"


ACTIVE_EVENTS = ActiveEvents()


# --- owner or staff -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActsForBusiness:
    """The one rule "owner or staff": a person acts for a business they own, staff for any.
    A service owns no business and never acts as its owner. `holds` checks a business in
    hand; `sql` is the same rule on a business row's owner column (the guard of
    `availableEvents` in the compiled path, joinEvent's and leaveEvent's statement)."""

    owner_column: str = "owner_id"
    refusal: str = "only the business's owner or staff may do this"

    def holds(self, audience: Audience, owner_id: int | None) -> bool:
        if audience.is_staff:
            return True
        return audience.user_id is not None and owner_id == audience.user_id

    def sql(self, audience: Audience, alias: str, params: list[Any]) -> str:
        """The rule as a SQL condition on business row `alias`; the user id is appended
        to `params`."""
        if audience.is_staff:
            return "TRUE"
        if audience.user_id is None:
            return "FALSE"
        params.append(audience.user_id)
        return f"{alias}.{self.owner_column} = ${len(params)}"


ACTS_FOR_BUSINESS = ActsForBusiness()


# --- who may change an event --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventOwners:
    """Who an event belongs to: the person or service that submitted it, its host's owner."""

    creator_id: int | None
    client_id: str | None
    host_owner_id: int | None


@dataclass(frozen=True, slots=True)
class MayChangeEvent:
    """The one rule for changing an event: its submitter, the owner of its host business,
    staff, or the service that submitted it when it holds the scope of `operation`'s row
    in `POWERS` (events.write)."""

    operation: str = "updateEvent"

    def holds(self, audience: Audience, owners: EventOwners) -> bool:
        if audience.is_staff:
            return True
        if audience.is_service:
            return (
                POWERS[self.operation].scope in audience.scopes
                and owners.client_id is not None
                and owners.client_id == audience.client_id
            )
        user = audience.user_id
        return user is not None and user in (owners.creator_id, owners.host_owner_id)


MAY_CHANGE_EVENT = MayChangeEvent()
