"""Who may do what: the audience of a request and, per operation, which people and which
service scope may use it. The one statement of these rules; permissions, commands,
visibility and the table of docs/services.md all read it.

People are signed-in users (staff by Cognito group). Services are other servers signed in
with the client-credentials grant: they have no user row and act only through the scopes
of their token, never through groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Any

from popmap_gql.db.models import UploadKind

__all__ = [
    "ACTS_FOR_BUSINESS",
    "ANONYMOUS",
    "AVAILABLE_EVENTS",
    "HIDDEN_ROWS",
    "OWNER_OR_STAFF_ONLY",
    "POWERS",
    "STATUS_FILTER",
    "UPLOAD_SAVED_BY",
    "ActsForBusiness",
    "Audience",
    "EventOwners",
    "People",
    "Power",
    "Scope",
    "may_act_for_business",
    "may_act_for_business_sql",
    "permission_table",
    "who_may_change_event",
]


class Scope(StrEnum):
    """The custom scopes of our resource server, by name (the token says `popmap/<name>`)."""

    EVENTS_WRITE = "events.write"
    MODERATE = "moderate"
    READ_ALL = "read.all"


@dataclass(frozen=True, slots=True)
class Audience:
    """Who is asking: a person (user_id), a service (client_id), or nobody."""

    user_id: int | None = None
    is_staff: bool = False
    client_id: str | None = None  # the app client a service signs in as
    scopes: frozenset[Scope] = field(default_factory=frozenset)

    @property
    def is_service(self) -> bool:
        return self.client_id is not None

    @property
    def sees_everything(self) -> bool:
        """Every status of every row: staff, and services with the scope for it."""
        return self.is_staff or POWERS[HIDDEN_ROWS].scope in self.scopes


ANONYMOUS = Audience()


# The reads that visibility guards (every list, every lookup by id).
HIDDEN_ROWS = "unverified businesses, events not approved"
STATUS_FILTER = "events(filter: {status})"
AVAILABLE_EVENTS = "Business.availableEvents"


class People(Enum):
    """Which people may use an operation (the words of docs/services.md)."""

    ANYONE = "anyone"
    SIGNED_IN = "signed in"
    OWNER_OR_STAFF = "the business's owner, staff"
    EVENT_EDITOR = "the event's submitter, its host business's owner, staff"
    STAFF = "staff"
    OWN_VIEW = "the signed-in person (about themself)"
    OWN_ROWS = "their owner or submitter, staff"
    NOBODY = "nobody (null for people)"


@dataclass(frozen=True, slots=True)
class Power:
    people: People
    scope: Scope | None  # what a service needs; None: no service, ever
    services_note: str = ""  # what a service with the scope may do, when narrower


POWERS: dict[str, Power] = {
    # mutations
    "submitBusiness": Power(People.SIGNED_IN, None),
    "updateBusiness": Power(People.OWNER_OR_STAFF, None),
    "joinEvent": Power(People.OWNER_OR_STAFF, None),
    "leaveEvent": Power(People.OWNER_OR_STAFF, None),
    # A service may upload only what it may save (UPLOAD_SAVED_BY); checked below.
    "createUpload": Power(People.SIGNED_IN, Scope.EVENTS_WRITE, "kind EVENT_IMAGE only"),
    "submitEvent": Power(People.SIGNED_IN, Scope.EVENTS_WRITE, "no host business"),
    "updateEvent": Power(People.EVENT_EDITOR, Scope.EVENTS_WRITE, "events it submitted only"),
    "cancelEvent": Power(People.EVENT_EDITOR, Scope.EVENTS_WRITE, "events it submitted only"),
    "verifyBusiness": Power(People.STAFF, Scope.MODERATE),
    "moderateEvent": Power(People.STAFF, Scope.MODERATE),
    # viewer-dependent reads
    "Query.me": Power(People.OWN_VIEW, None, "null for services"),
    "Query.serviceClient": Power(People.NOBODY, None, "any service"),
    "Business.viewerIsOwner": Power(People.ANYONE, None, "false for services"),
    AVAILABLE_EVENTS: Power(People.OWNER_OR_STAFF, Scope.READ_ALL),
    STATUS_FILTER: Power(People.STAFF, Scope.READ_ALL),
    HIDDEN_ROWS: Power(People.OWN_ROWS, Scope.READ_ALL, "without it, only the events it submitted"),
}
"""Operation -> who may use it. Guarded mutations take their permission from here."""

# The mutation that saves each kind of upload: whoever may create an upload of a kind is
# whoever may save it, so a service gets no key it could never use.
UPLOAD_SAVED_BY: dict[UploadKind, str] = {
    UploadKind.BUSINESS_LOGO: "submitBusiness",
    UploadKind.EVENT_IMAGE: "submitEvent",
}


def _check_upload_power() -> None:
    """createUpload's row states, for the docs, the scope its savers' rows imply."""
    if set(UPLOAD_SAVED_BY) != set(UploadKind):
        raise TypeError("UPLOAD_SAVED_BY must name the saving mutation of every UploadKind")
    implied = {POWERS[saver].scope for saver in UPLOAD_SAVED_BY.values()} - {None}
    allowed = [kind.value for kind, saver in UPLOAD_SAVED_BY.items() if POWERS[saver].scope]
    stated = POWERS["createUpload"]
    note = f"kind {', '.join(allowed)} only" if allowed else ""
    if implied != {stated.scope} - {None} or stated.services_note != note:
        msg = f"POWERS['createUpload'] must have the scope of its savers, {implied}, and {note!r}"
        raise TypeError(msg)


_check_upload_power()


# What a person who may not act for a business is told.
OWNER_OR_STAFF_ONLY = "only the business's owner or staff may do this"


@dataclass(frozen=True, slots=True)
class ActsForBusiness:
    """The one rule "owner or staff": a person acts for a business they own, staff for any.
    A service owns no business and never acts as its owner. `holds` checks a business in
    hand; `condition` is the same rule on a SQL column reference (our own text, never a
    client's), and `sql` on a business row's owner column."""

    owner_column: str = "owner_id"

    def holds(self, audience: Audience, owner_id: int | None) -> bool:
        if audience.is_staff:
            return True
        return audience.user_id is not None and owner_id == audience.user_id

    def condition(self, audience: Audience, owner: str, params: list[Any]) -> str:
        """The rule as a SQL condition on `owner`; the user id is appended to `params`."""
        if audience.is_staff:
            return "TRUE"
        if audience.user_id is None:
            return "FALSE"
        params.append(audience.user_id)
        return f"{owner} = ${len(params)}"

    def sql(self, audience: Audience, alias: str, params: list[Any]) -> str:
        return self.condition(audience, f"{alias}.{self.owner_column}", params)


ACTS_FOR_BUSINESS = ActsForBusiness()


def may_act_for_business(audience: Audience, owner_id: int | None) -> bool:
    """`ACTS_FOR_BUSINESS` for a business in hand."""
    return ACTS_FOR_BUSINESS.holds(audience, owner_id)


def may_act_for_business_sql(audience: Audience, owner_column: str, params: list[Any]) -> str:
    """`ACTS_FOR_BUSINESS` as a SQL condition on `owner_column`, for a statement that checks
    and writes at once."""
    return ACTS_FOR_BUSINESS.condition(audience, owner_column, params)


def who_may_change_event(audience: Audience, event_owners: EventOwners) -> bool:
    """The one rule for changing an event: its submitter, the owner of its host business,
    staff, or the service that submitted it when it holds events.write."""
    if audience.is_staff:
        return True
    if audience.is_service:
        return (
            POWERS["updateEvent"].scope in audience.scopes
            and event_owners.client_id is not None
            and event_owners.client_id == audience.client_id
        )
    user = audience.user_id
    return user is not None and user in (event_owners.creator_id, event_owners.host_owner_id)


@dataclass(frozen=True, slots=True)
class EventOwners:
    """Who an event belongs to: the person or service that submitted it, its host's owner."""

    creator_id: int | None
    client_id: str | None
    host_owner_id: int | None


def permission_table(resource_server: str) -> str:
    """The table of POWERS in docs/services.md, in Markdown."""
    lines = [
        "| operation | people | services (scope) |",
        "| --- | --- | --- |",
    ]
    for operation, power in POWERS.items():
        if power.scope is not None:
            services = f"`{resource_server}/{power.scope.value}`"
            if power.services_note:
                services += f"; {power.services_note}"
        else:
            services = power.services_note or "never (FORBIDDEN)"
        lines.append(f"| `{operation}` | {power.people.value} | {services} |")
    return "\n".join(lines) + "\n"
