"""What people and services change: each command validates, then writes in one transaction."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.transactions import in_transaction

from popmap_gql.db import notify
from popmap_gql.db.models import Business, Category, Event, EventStatus
from popmap_gql.db.participation import ParticipationChange, join_event, leave_event
from popmap_gql.db.powers import Audience
from popmap_gql.db.rules import (
    ACTS_FOR_BUSINESS,
    BUSINESS_VISIBILITY,
    EVENT_VISIBILITY,
    MAY_CHANGE_EVENT,
    EventOwners,
)
from popmap_gql.db.uploads import ClaimedUpload, mark_used
from popmap_gql.db.validation import (
    check_coordinates,
    check_email,
    check_period,
    check_phone,
    check_text,
    check_url,
)
from popmap_gql.errors import BadUserInput, Forbidden, NotFound

__all__ = [
    "ALLOWED_TRANSITIONS",
    "EDITABLE_STATUSES",
    "PLACE_AND_TIME",
    "BusinessChanges",
    "EventChanges",
    "EventEdit",
    "EventFields",
    "ParticipationChange",
    "cancel_event",
    "join_event",
    "leave_event",
    "moderate_event",
    "submit_business",
    "submit_event",
    "update_business",
    "update_event",
    "verify_business",
]

MAX_CATEGORIES = 10

# Moderation: which status an event may move to from each status. CANCELLED is final;
# a rejected event may be reconsidered; an approved one may still be pulled.
ALLOWED_TRANSITIONS: dict[EventStatus, frozenset[EventStatus]] = {
    EventStatus.PENDING: frozenset(
        {EventStatus.APPROVED, EventStatus.REJECTED, EventStatus.CANCELLED}
    ),
    EventStatus.APPROVED: frozenset({EventStatus.REJECTED, EventStatus.CANCELLED}),
    EventStatus.REJECTED: frozenset({EventStatus.APPROVED}),
    EventStatus.CANCELLED: frozenset(),
}

# What staff approved when they approved an event: a change of any of these by anyone
# but staff sends an approved event back to PENDING for another look.
PLACE_AND_TIME = frozenset(
    {"starts_at", "ends_at", "location_name", "address", "latitude", "longitude"}
)

# Events whose details may still change; a rejected or cancelled one is closed.
EDITABLE_STATUSES = frozenset({EventStatus.PENDING, EventStatus.APPROVED})


@dataclass(frozen=True, slots=True)
class BusinessChanges:
    """Fields of a business; None leaves a field as it is ("" clears optional text)."""

    name: str | None = None
    description: str | None = None
    contact_email: str | None = None
    contact_phone: str | None = None
    website: str | None = None
    instagram_url: str | None = None
    tiktok_url: str | None = None
    logo_url: str | None = None
    logo: ClaimedUpload | None = None
    available_for_hire: bool | None = None
    category_ids: tuple[int, ...] | None = None
    category_slugs: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class EventFields:
    title: str
    latitude: float
    longitude: float
    starts_at: datetime
    ends_at: datetime
    description: str = ""
    location_name: str = ""
    address: str = ""
    image_url: str = ""
    image: ClaimedUpload | None = None
    host_business_id: int | None = None


@dataclass(frozen=True, slots=True)
class EventChanges:
    """Fields of an event to change; None leaves a field as it is ("" clears optional text).

    The host business is not among them: it decides who may change the event.
    """

    title: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    description: str | None = None
    location_name: str | None = None
    address: str | None = None
    image: ClaimedUpload | None = None
    image_url: str | None = None


@dataclass(frozen=True, slots=True)
class EventEdit:
    event: Event
    changed: bool
    returned_to_pending: bool


def _business_columns(changes: BusinessChanges, *, creating: bool) -> dict[str, Any]:
    p = "input."
    columns: dict[str, Any] = {}
    if changes.name is not None or creating:
        columns["name"] = check_text(changes.name or "", f"{p}name", max_length=200, required=True)
    checks = (
        ("description", changes.description, lambda v, f: check_text(v, f, max_length=5000)),
        ("contact_email", changes.contact_email, check_email),
        ("contact_phone", changes.contact_phone, check_phone),
        ("website", changes.website, check_url),
        ("instagram_url", changes.instagram_url, check_url),
        ("tiktok_url", changes.tiktok_url, check_url),
        ("logo_url", changes.logo_url, check_url),
    )
    for column, value, check in checks:
        if value is not None:
            camel = column.split("_")[0] + "".join(w.title() for w in column.split("_")[1:])
            columns[column] = check(value, f"{p}{camel}")
    if changes.available_for_hire is not None:
        columns["available_for_hire"] = changes.available_for_hire
    columns.update(_picture("logo", changes.logo, changes.logo_url))
    return columns


def _picture(name: str, upload: ClaimedUpload | None, url: str | None) -> dict[str, str]:
    """The `<name>_key` and `<name>_url` columns: an upload or a URL, each replacing the other."""
    if upload is None:
        return {} if url is None else {f"{name}_key": ""}
    if url:
        raise BadUserInput(f"give {name} or {name}Url, not both", field=upload.field)
    return {f"{name}_key": upload.published_key, f"{name}_url": ""}


async def _categories(changes: BusinessChanges) -> list[Category] | None:
    """The categories named by id and slug, or None when neither was given."""
    if changes.category_ids is None and changes.category_slugs is None:
        return None
    ids = set(changes.category_ids or ())
    slugs = {
        check_text(s, "input.categorySlugs", max_length=100) for s in changes.category_slugs or ()
    }
    if len(ids) + len(slugs) > MAX_CATEGORIES:
        raise BadUserInput(f"at most {MAX_CATEGORIES} categories", field="input.categoryIds")
    by_id = {c.id: c for c in await Category.filter(id__in=list(ids))} if ids else {}
    by_slug = {c.slug: c for c in await Category.filter(slug__in=list(slugs))} if slugs else {}
    if unknown_ids := ids - by_id.keys():
        raise BadUserInput(f"unknown category ids: {len(unknown_ids)}", field="input.categoryIds")
    if unknown_slugs := slugs - by_slug.keys():
        raise BadUserInput(
            f"unknown category slugs: {', '.join(sorted(unknown_slugs))[:200]}",
            field="input.categorySlugs",
        )
    return list({c.id: c for c in [*by_id.values(), *by_slug.values()]}.values())


async def submit_business(owner_id: int, changes: BusinessChanges) -> Business:
    """A new business owned by the submitter, unverified until staff verify it."""
    columns = _business_columns(changes, creating=True)
    categories = await _categories(changes)
    async with in_transaction() as conn:
        if changes.logo is not None:
            await mark_used(conn, changes.logo)
        business = await Business.create(**columns, owner_id=owner_id, is_verified=False)
        if categories:
            await business.categories.add(*categories)
    return business


async def update_business(business_id: int, changes: BusinessChanges) -> Business:
    columns = _business_columns(changes, creating=False)
    categories = await _categories(changes)
    async with in_transaction() as conn:
        business = await Business.select_for_update().get_or_none(id=business_id)
        if business is None:
            raise NotFound("no such business")
        if changes.logo is not None:
            await mark_used(conn, changes.logo)
        if columns:
            business.update_from_dict(columns)
            await business.save()
        if categories is not None:
            await business.categories.clear()
            if categories:
                await business.categories.add(*categories)
        await notify.touched(conn, businesses=[business.id])
    return business


def _event_columns(fields: EventFields) -> dict[str, Any]:
    """The event's columns as stored, or BAD_USER_INPUT naming the first bad field; the
    one set of rules for submitting and for the merged result of an update."""
    p = "input."
    title = check_text(fields.title, f"{p}title", max_length=200, required=True)
    check_coordinates(fields.latitude, fields.longitude, p)
    starts_at, ends_at = check_period(fields.starts_at, fields.ends_at, p)
    return {
        "title": title,
        "description": check_text(fields.description, f"{p}description", max_length=5000),
        "location_name": check_text(fields.location_name, f"{p}locationName", max_length=200),
        "address": check_text(fields.address, f"{p}address", max_length=300),
        "image_url": check_url(fields.image_url, f"{p}imageUrl"),
        **_picture("image", fields.image, fields.image_url or None),
        "latitude": fields.latitude,
        "longitude": fields.longitude,
        "starts_at": starts_at,
        "ends_at": ends_at,
    }


async def submit_event(audience: Audience, fields: EventFields) -> Event:
    """A new PENDING event by a person or a service; its host, if any, must be the
    submitter's business (a service owns none)."""
    columns = _event_columns(fields)
    if fields.host_business_id is not None:
        host = await Business.filter(
            BUSINESS_VISIBILITY.q(audience), id=fields.host_business_id
        ).first()
        if host is None:
            raise NotFound("no such business")
        if not ACTS_FOR_BUSINESS.holds(audience, host.owner_id):
            raise Forbidden("the host business must be one of yours")
    async with in_transaction() as conn:
        if fields.image is not None:
            await mark_used(conn, fields.image)
        event = await Event.create(
            **columns,
            host_business_id=fields.host_business_id,
            created_by_id=audience.user_id,
            created_by_client=audience.client_id,
            status=EventStatus.PENDING,
        )
        await notify.touched(conn, events=[event.id])
        return event


async def _locked_visible_event(audience: Audience, event_id: int) -> Event:
    """The event if the audience can see it (else NOT_FOUND), locked until the transaction
    ends. FOR NO KEY UPDATE serialises joins, moderation and changes of one event, which
    all lock its row first, while its participations can still reference it."""
    event = (
        await Event.filter(EVENT_VISIBILITY.q(audience), id=event_id)
        .select_for_update(no_key=True)
        .first()
    )
    if event is None:
        raise NotFound("no such event")
    return event


async def _event_to_change(audience: Audience, event_id: int) -> Event:
    """The event, locked until the transaction ends, if the audience may change it.

    Call inside a transaction. An event the audience cannot see is NOT_FOUND before
    anything else, so the answer reveals nothing about other people's events.
    """
    event = await _locked_visible_event(audience, event_id)
    host = (
        await Business.get_or_none(id=event.host_business_id)
        if event.host_business_id is not None
        else None
    )
    owners = EventOwners(
        creator_id=event.created_by_id,
        client_id=event.created_by_client,
        host_owner_id=host.owner_id if host is not None else None,
    )
    if not MAY_CHANGE_EVENT.holds(audience, owners):
        raise Forbidden("only the event's submitter, its host's owner or staff may change it")
    return event


def _merged(event: Event, changes: EventChanges) -> EventFields:
    """The event as it will be: each given change, else the stored value."""
    values: dict[str, Any] = {"image": changes.image}
    for field in dataclasses.fields(EventChanges):
        given = getattr(changes, field.name)
        if field.name != "image":
            values[field.name] = getattr(event, field.name) if given is None else given
    if changes.image is not None and changes.image_url is None:
        values["image_url"] = ""  # a new upload replaces the stored URL, as it would on submit
    return EventFields(**values)


async def update_event(audience: Audience, event_id: int, changes: EventChanges) -> EventEdit:
    """Change a pending or approved event. The merged result obeys the submit rules; a
    change of place or time by anyone but staff returns an approved event to PENDING."""
    async with in_transaction() as conn:
        event = await _event_to_change(audience, event_id)
        if event.status not in EDITABLE_STATUSES:
            raise BadUserInput(f"a {event.status.value} event cannot be changed", field="id")
        columns = _event_columns(_merged(event, changes))
        # the picture as given: `_merged` carries the stored URL, which is "" beside an
        # upload, so only the change itself tells whether imageUrl "" clears the upload
        columns.update(_picture("image", changes.image, changes.image_url))
        if changes.image is not None:
            await mark_used(conn, changes.image)
        changed = {name for name, value in columns.items() if getattr(event, name) != value}
        back_to_pending = (
            event.status is EventStatus.APPROVED
            and not audience.is_staff
            and bool(changed & PLACE_AND_TIME)
        )
        if changed:
            event.update_from_dict({name: columns[name] for name in changed})
            if back_to_pending:
                event.status = EventStatus.PENDING
                changed.add("status")
            await event.save(update_fields=[*sorted(changed), "updated_at"])
            await notify.touched(conn, events=[event.id])
    return EventEdit(event=event, changed=bool(changed), returned_to_pending=back_to_pending)


async def cancel_event(audience: Audience, event_id: int) -> EventEdit:
    """Cancel for good; cancelling a cancelled event changes nothing and is no error."""
    async with in_transaction() as conn:
        event = await _event_to_change(audience, event_id)
        if event.status is EventStatus.CANCELLED:
            return EventEdit(event=event, changed=False, returned_to_pending=False)
        if EventStatus.CANCELLED not in ALLOWED_TRANSITIONS[event.status]:
            raise BadUserInput(f"a {event.status.value} event cannot be cancelled", field="id")
        event.status = EventStatus.CANCELLED
        await event.save(update_fields=["status", "updated_at"])
        await notify.touched(conn, events=[event.id])
    return EventEdit(event=event, changed=True, returned_to_pending=False)


async def verify_business(business_id: int, verified: bool) -> Business:
    async with in_transaction() as conn:
        business = await Business.select_for_update().get_or_none(id=business_id)
        if business is None:
            raise NotFound("no such business")
        if business.is_verified != verified:
            business.is_verified = verified
            await business.save(update_fields=["is_verified", "updated_at"])
            await notify.touched(conn, businesses=[business.id])
    return business


async def moderate_event(event_id: int, status: EventStatus) -> Event:
    async with in_transaction() as conn:
        event = await Event.select_for_update().get_or_none(id=event_id)
        if event is None:
            raise NotFound("no such event")
        if event.status is not status:
            if status not in ALLOWED_TRANSITIONS[event.status]:
                raise BadUserInput(
                    f"a {event.status.value} event cannot become {status.value}", field="status"
                )
            event.status = status
            await event.save(update_fields=["status", "updated_at"])
            await notify.touched(conn, events=[event.id])
    return event
