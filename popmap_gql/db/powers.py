"""Who may use which operation: the audience of a request and, per mutation and per
viewer-dependent read, which people and which service scope may use it (`POWERS`). The one
statement of these powers; the permission classes, the service checks, visibility's "sees
everything" and the table of docs/services.md all read it. The rules about rows (who sees
which, "owner or staff", who may change an event) are in `db/rules.py`.

People are signed-in users (staff by Cognito group). Services are other servers signed in
with the client-credentials grant: they have no user row and act only through the scopes
of their token, never through groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, StrEnum

from popmap_gql.db.models import UploadKind

__all__ = [
    "ANONYMOUS",
    "AVAILABLE_EVENTS",
    "HIDDEN_ROWS",
    "POWERS",
    "STATUS_FILTER",
    "UPLOAD_SAVED_BY",
    "Audience",
    "People",
    "Power",
    "Scope",
    "permission_table",
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
