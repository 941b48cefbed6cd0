"""The Mutation root: thin resolvers over the commands in `popmap_gql.db.commands`.

Payloads return the changed objects with their ids, so normalised caches (Apollo, urql)
update without a refetch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import UnionType
from typing import Annotated, Any, Generic, TypeVar, Union, get_args, get_origin, get_type_hints

import strawberry
from strawberry.types import get_object_definition

from popmap_gql.api.context import Info
from popmap_gql.api.engine import to_camel_case
from popmap_gql.api.permissions import business_in_arguments, guard
from popmap_gql.api.sizes import Capped, sized
from popmap_gql.api.types import Business, Event
from popmap_gql.db import commands
from popmap_gql.db.models import EventStatus
from popmap_gql.db.models import UploadKind as UploadKindValue
from popmap_gql.db.powers import POWERS
from popmap_gql.db.uploads import ClaimedUpload, UploadOwner
from popmap_gql.errors import BadUserInput
from popmap_gql.media.stores import MediaStore
from popmap_gql.media.uploads import claim_upload, create_upload
from popmap_gql.read.ids import decode_id

__all__ = ["Mutation"]


CommandT = TypeVar("CommandT")

UploadKind = strawberry.enum(UploadKindValue, name="UploadKind")

_LOGO = "A key from createUpload(kind: BUSINESS_LOGO), once the file is uploaded."
_IMAGE = "A key from createUpload(kind: EVENT_IMAGE), once the file is uploaded."


@strawberry.input(description="A business's details; on update, omitted fields stay as they are.")
class BusinessInput:
    name: str | None = None
    description: str | None = None
    contact_email: str | None = None
    contact_phone: str | None = strawberry.field(
        default=None, description="+ and 9 to 15 digits, e.g. +15125550100."
    )
    website: str | None = None
    instagram_url: str | None = None
    tiktok_url: str | None = None
    logo: str | None = strawberry.field(default=None, description=_LOGO)
    logo_url: str | None = strawberry.field(
        default=None, deprecation_reason="Upload the logo (createUpload) and save its key in logo."
    )
    available_for_hire: bool | None = None
    category_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Replaces the categories (with categorySlugs)."
    )
    category_slugs: list[str] | None = None


@strawberry.input
class EventInput:
    title: str
    latitude: float
    longitude: float
    starts_at: datetime
    ends_at: datetime
    description: str = ""
    location_name: str = ""
    address: str = ""
    image: str | None = strawberry.field(default=None, description=_IMAGE)
    image_url: str = strawberry.field(
        default="", deprecation_reason="Upload the image (createUpload) and save its key in image."
    )
    host_business_id: strawberry.ID | None = strawberry.field(
        default=None, description="One of your businesses."
    )


@strawberry.input(
    description="An event's details to change; omitted fields stay as they are. The rules"
    " are those of EventInput, applied to the event as it will be."
)
class EventUpdateInput:
    title: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    description: str | None = None
    location_name: str | None = None
    address: str | None = None
    image: str | None = strawberry.field(default=None, description=_IMAGE)
    image_url: str | None = strawberry.field(
        default=None,
        deprecation_reason="Upload the image (createUpload) and save its key in image.",
    )


# --- from an input to its command ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decoded:
    """A global ID of `type_name` (or a list of them) becomes its primary key."""

    type_name: str


@dataclass(frozen=True, slots=True)
class Claimed:
    """An upload key from createUpload becomes the checked, published upload of `kind`."""

    kind: UploadKindValue


def _as_command_type(hint: Any) -> Any:
    """The type a value given as `hint` has in a command: lists become tuples."""
    origin = get_origin(hint)
    if origin is list:
        return tuple[(_as_command_type(get_args(hint)[0]), ...)]  # type: ignore[misc]
    if origin in (Union, UnionType):
        return Union[tuple(_as_command_type(arg) for arg in get_args(hint))]  # noqa: UP007
    return hint


@dataclass(frozen=True)
class CommandOf(Generic[CommandT]):
    """How an input type becomes a command's dataclass: field by field, by name. A value
    is taken as given (a list as a tuple); only the fields in `differ` are turned into
    what the command holds. Both must name the same fields, and every other field must
    have the same type in both: checked when the schema loads, so adding a field to an
    input and its command needs nothing here."""

    input: type
    command: type[CommandT]
    differ: Mapping[str, Decoded | Claimed] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        given, wanted = get_type_hints(self.input), get_type_hints(self.command)
        where = f"{self.input.__name__} and commands.{self.command.__name__}"
        if set(given) != set(wanted):
            msg = f"{where} must have the same fields: {sorted(set(given) ^ set(wanted))}"
            raise TypeError(msg)
        if unknown := set(self.differ) - set(given):
            msg = f"{where}: no fields {sorted(unknown)} to convert"
            raise TypeError(msg)
        for name, hint in given.items():
            if name not in self.differ and _as_command_type(hint) != wanted[name]:
                msg = f"{where}: {name} is {hint} in one and {wanted[name]} in the other"
                raise TypeError(msg)

    async def __call__(self, info: Info, data: Any) -> CommandT:
        """The command for `data`: IDs decoded first, then uploads claimed (so a malformed
        ID publishes nothing)."""
        values: dict[str, Any] = {}
        claims: list[tuple[str, UploadKindValue]] = []
        for field in dataclasses.fields(data):
            name = field.name
            value = getattr(data, name)
            how = self.differ.get(name)
            if value is None:
                values[name] = None
            elif isinstance(how, Claimed):
                claims.append((name, how.kind))
            elif isinstance(how, Decoded):
                at = f"input.{to_camel_case(name)}"
                if isinstance(value, list):
                    values[name] = tuple(decode_id(how.type_name, v, field=at) for v in value)
                else:
                    values[name] = decode_id(how.type_name, value, field=at)
            else:
                values[name] = tuple(value) if isinstance(value, list) else value
        for name, kind in claims:
            values[name] = await _claim(
                info, getattr(data, name), kind, f"input.{to_camel_case(name)}"
            )
        return self.command(**values)


_BUSINESS_CHANGES = CommandOf(
    BusinessInput,
    commands.BusinessChanges,
    {"logo": Claimed(UploadKindValue.BUSINESS_LOGO), "category_ids": Decoded("Category")},
)
_EVENT_FIELDS = CommandOf(
    EventInput,
    commands.EventFields,
    {"image": Claimed(UploadKindValue.EVENT_IMAGE), "host_business_id": Decoded("Business")},
)
_EVENT_CHANGES = CommandOf(
    EventUpdateInput, commands.EventChanges, {"image": Claimed(UploadKindValue.EVENT_IMAGE)}
)


@strawberry.type
class UploadField:
    name: str
    value: str


@strawberry.type(
    description="Send the file with a multipart/form-data POST to url: every field, in this"
    " order, then the file (named `file`) last. Then save key on the business or event."
)
class SignedUpload:
    url: str
    # S3's presigned POST has 7 fields, the embedded store's 5.
    fields: list[UploadField] = strawberry.field(metadata=sized(Capped(10)))
    key: str
    expires_at: datetime = strawberry.field(description="The POST is refused after this.")
    max_bytes: int = strawberry.field(description="The largest file the server accepts.")


@strawberry.type
class BusinessPayload:
    business: Business


@strawberry.type
class EventPayload:
    event: Event


@strawberry.type
class UpdateEventPayload:
    event: Event
    changed: bool = strawberry.field(description="False when every value was already so.")
    returned_to_pending: bool = strawberry.field(
        description="True when this change of place or time sent the approved event back to"
        " staff for approval: it is PENDING and hidden from the public until approved again."
    )


@strawberry.type
class CancelEventPayload:
    event: Event
    changed: bool = strawberry.field(description="False when the event was already cancelled.")


@strawberry.type
class ParticipationPayload:
    event: Event
    business: Business
    changed: bool = strawberry.field(description="False when the call changed nothing.")


def _media_store(info: Info) -> MediaStore:
    store: MediaStore = info.context.request.app.state.media_store
    return store


def _uploader(info: Info) -> UploadOwner:
    return UploadOwner.of(info.context.viewer.audience)


async def _claim(info: Info, key: str, kind: UploadKindValue, field: str) -> ClaimedUpload:
    return await claim_upload(_media_store(info), _uploader(info), key, kind, field)


async def _change_participation(
    command: Callable[..., Awaitable[commands.ParticipationChange]],
    info: Info,
    event_id: str,
    business_id: str,
) -> ParticipationPayload:
    """joinEvent or leaveEvent. The command checks the business before the event (as a
    permission class would), so a malformed event ID is refused only once the business's
    checks have passed: the command raises it where it would say NOT_FOUND."""
    business = decode_id("Business", business_id, field="businessId")
    event: int | None = None
    malformed: BadUserInput | None = None
    try:
        event = decode_id("Event", event_id, field="eventId")
    except BadUserInput as exc:
        malformed = exc
    change = await command(info.context.viewer.audience, event, business, no_event=malformed)
    return ParticipationPayload(
        event=Event.from_values(change.event),
        business=Business.from_values(change.business),
        changed=change.changed,
    )


@strawberry.type
class Mutation:
    @strawberry.mutation(
        permission_classes=guard("createUpload"),
        description="Sign an upload of one JPEG, PNG or WebP file of exactly byteSize bytes;"
        " the form expires within minutes, and the key must be saved within the hour."
        " Signed-in people; services with the events.write scope, for EVENT_IMAGE only."
        " An upload is saved only by whoever created it.",
    )
    async def create_upload(
        self, info: Info, kind: UploadKindValue, content_type: str, byte_size: int
    ) -> SignedUpload:
        issued = await create_upload(
            _media_store(info),
            info.context.settings,
            info.context.api_base,
            _uploader(info),
            kind,
            content_type,
            byte_size,
        )
        return SignedUpload(
            url=issued.post.url,
            fields=[UploadField(name=name, value=value) for name, value in issued.post.fields],
            key=issued.key,
            expires_at=issued.expires_at,
            max_bytes=issued.max_bytes,
        )

    @strawberry.mutation(
        permission_classes=guard("submitBusiness"),
        description="Submit your business; it is listed once staff verify it.",
    )
    async def submit_business(self, info: Info, input: BusinessInput) -> BusinessPayload:
        viewer_id = info.context.viewer.user_id
        assert viewer_id is not None  # IsAuthenticated
        row = await commands.submit_business(viewer_id, await _BUSINESS_CHANGES(info, input))
        return BusinessPayload(business=Business.from_row(row))

    @strawberry.mutation(
        permission_classes=guard("updateBusiness"),
        description="Owner or staff. Name the business with `id`.",
    )
    async def update_business(
        self,
        info: Info,
        *,
        id: strawberry.ID | None = None,
        input: BusinessInput,
        business_id: Annotated[
            strawberry.ID | None,
            strawberry.argument(
                deprecation_reason="Use `id`, as every mutation of one object does."
            ),
        ] = None,
    ) -> BusinessPayload:
        business = business_in_arguments({"id": id, "business_id": business_id})
        row = await commands.update_business(business, await _BUSINESS_CHANGES(info, input))
        return BusinessPayload(business=Business.from_row(row))

    @strawberry.mutation(
        permission_classes=guard("submitEvent"),
        description="Propose an event; it is shown once staff approve it. Services: with"
        " the events.write scope, and without a host business.",
    )
    async def submit_event(self, info: Info, input: EventInput) -> EventPayload:
        row = await commands.submit_event(
            info.context.viewer.audience, await _EVENT_FIELDS(info, input)
        )
        return EventPayload(event=Event.from_row(row))

    @strawberry.mutation(
        permission_classes=guard("updateEvent"),
        description="The event's submitter (a service: with events.write), its host"
        " business's owner, or staff. Pending and"
        " approved events can change; an approved one returns to PENDING when anyone but"
        " staff changes its place or time.",
    )
    async def update_event(
        self, info: Info, id: strawberry.ID, input: EventUpdateInput
    ) -> UpdateEventPayload:
        edit = await commands.update_event(
            info.context.viewer.audience, decode_id("Event", id), await _EVENT_CHANGES(info, input)
        )
        return UpdateEventPayload(
            event=Event.from_row(edit.event),
            changed=edit.changed,
            returned_to_pending=edit.returned_to_pending,
        )

    @strawberry.mutation(
        permission_classes=guard("cancelEvent"),
        description="The event's submitter (a service: with events.write), its host"
        " business's owner, or staff. Final:"
        " a cancelled event cannot change again; cancelling it again changes nothing.",
    )
    async def cancel_event(self, info: Info, id: strawberry.ID) -> CancelEventPayload:
        edit = await commands.cancel_event(info.context.viewer.audience, decode_id("Event", id))
        return CancelEventPayload(event=Event.from_row(edit.event), changed=edit.changed)

    @strawberry.mutation(
        permission_classes=guard("joinEvent"),
        description="Join your verified business to an approved event that has not ended.",
    )
    async def join_event(
        self, info: Info, event_id: strawberry.ID, business_id: strawberry.ID
    ) -> ParticipationPayload:
        return await _change_participation(commands.join_event, info, event_id, business_id)

    @strawberry.mutation(permission_classes=guard("leaveEvent"))
    async def leave_event(
        self, info: Info, event_id: strawberry.ID, business_id: strawberry.ID
    ) -> ParticipationPayload:
        return await _change_participation(commands.leave_event, info, event_id, business_id)

    @strawberry.mutation(
        permission_classes=guard("verifyBusiness"),
        description="Staff, or a service with the moderate scope.",
    )
    async def verify_business(
        self,
        info: Info,
        id: strawberry.ID,
        verified: bool = True,
    ) -> BusinessPayload:
        row = await commands.verify_business(decode_id("Business", id), verified)
        return BusinessPayload(business=Business.from_row(row))

    @strawberry.mutation(
        permission_classes=guard("moderateEvent"),
        description="Staff, or a service with the moderate scope. PENDING may become"
        " APPROVED, REJECTED or CANCELLED;"
        " APPROVED may become REJECTED or CANCELLED; REJECTED may become APPROVED;"
        " CANCELLED is final.",
    )
    async def moderate_event(
        self,
        info: Info,
        id: strawberry.ID,
        status: EventStatus,
    ) -> EventPayload:
        row = await commands.moderate_event(decode_id("Event", id), status)
        return EventPayload(event=Event.from_row(row))


def _check_every_mutation_has_a_power() -> None:
    """A new mutation needs its row in POWERS (who may use it); found when the schema loads."""
    definition = get_object_definition(Mutation, strict=True)
    missing = [
        f.python_name for f in definition.fields if to_camel_case(f.python_name) not in POWERS
    ]
    if missing:
        msg = f"mutations without a row in popmap_gql.db.powers.POWERS: {missing}"
        raise TypeError(msg)


_check_every_mutation_has_a_power()
