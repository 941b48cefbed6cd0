"""Tortoise models for Popmap's domain; the schema itself changes only through migrations."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields
from tortoise.models import Model

__all__ = [
    "Business",
    "Category",
    "CognitoIdentity",
    "Event",
    "EventStatus",
    "MediaUpload",
    "Participation",
    "UploadKind",
    "User",
]


class EventStatus(StrEnum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


class UploadKind(StrEnum):
    BUSINESS_LOGO = "BUSINESS_LOGO"
    EVENT_IMAGE = "EVENT_IMAGE"


class User(Model):
    id = fields.BigIntField(primary_key=True)
    username = fields.CharField(max_length=150, db_index=True)
    email = fields.CharField(max_length=254, default="")
    first_name = fields.CharField(max_length=150, default="")
    last_name = fields.CharField(max_length=150, default="")
    identity_provider = fields.CharField(max_length=64, default="Cognito")
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "popmap_user"


class CognitoIdentity(Model):
    """The one Cognito identity a user signs in with, keyed by (issuer, sub), never by email."""

    id = fields.BigIntField(primary_key=True)
    user: fields.OneToOneRelation[User] = fields.OneToOneField(
        "models.User", related_name="identity", on_delete=fields.CASCADE
    )
    issuer = fields.CharField(max_length=255)
    sub = fields.CharField(max_length=255)
    # Access tokens carry no profile; it is filled once from the userInfo endpoint.
    profile_complete = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "cognito_identity"
        unique_together = (("issuer", "sub"),)


class Category(Model):
    id = fields.BigIntField(primary_key=True)
    name = fields.CharField(max_length=100, unique=True)
    slug = fields.CharField(max_length=100, unique=True)

    class Meta:
        table = "category"
        ordering = ("name",)


class Business(Model):
    id = fields.BigIntField(primary_key=True)
    name = fields.CharField(max_length=200)
    description = fields.TextField(default="")
    contact_email = fields.CharField(max_length=254, default="")
    contact_phone = fields.CharField(max_length=16, default="")
    website = fields.CharField(max_length=500, default="")
    instagram_url = fields.CharField(max_length=500, default="")
    tiktok_url = fields.CharField(max_length=500, default="")
    available_for_hire = fields.BooleanField(default=False)
    logo_url = fields.CharField(max_length=500, default="")
    # An uploaded logo (a published media key); logo_url is the older free-text URL.
    logo_key = fields.CharField(max_length=100, default="", db_default="")
    categories: fields.ManyToManyRelation[Category] = fields.ManyToManyField(
        "models.Category", related_name="businesses", through="business_category"
    )
    owner: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="businesses", null=True, on_delete=fields.SET_NULL
    )
    owner_id: int | None
    is_verified = fields.BooleanField(default=False)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "business"
        indexes = (("is_verified", "name"),)


class Event(Model):
    id = fields.BigIntField(primary_key=True)
    title = fields.CharField(max_length=200)
    description = fields.TextField(default="")
    location_name = fields.CharField(max_length=200, default="")
    address = fields.CharField(max_length=300, default="")
    latitude = fields.FloatField()
    longitude = fields.FloatField()
    starts_at = fields.DatetimeField()
    ends_at = fields.DatetimeField()
    image_url = fields.CharField(max_length=500, default="")
    image_key = fields.CharField(max_length=100, default="", db_default="")
    status = fields.CharEnumField(EventStatus, max_length=16, default=EventStatus.PENDING)
    host_business: fields.ForeignKeyNullableRelation[Business] = fields.ForeignKeyField(
        "models.Business", related_name="hosted_events", null=True, on_delete=fields.SET_NULL
    )
    host_business_id: int | None
    created_by: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="submitted_events", null=True, on_delete=fields.SET_NULL
    )
    created_by_id: int | None
    # The app client of the service that submitted it (migration 0005); created_by is
    # then null, as a service has no user row.
    created_by_client = fields.CharField(max_length=128, null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "event"
        indexes = (("status", "starts_at"), ("latitude", "longitude"))
        # Check constraints (coordinates, ends after start, known status) live in
        # migration 0002: Tortoise's CreateModel does not emit Meta.constraints.


class Participation(Model):
    """A business taking part in an event; one row per (business, event)."""

    id = fields.BigIntField(primary_key=True)
    event: fields.ForeignKeyRelation[Event] = fields.ForeignKeyField(
        "models.Event", related_name="participations", on_delete=fields.CASCADE
    )
    event_id: int
    business: fields.ForeignKeyRelation[Business] = fields.ForeignKeyField(
        "models.Business", related_name="participations", on_delete=fields.CASCADE
    )
    business_id: int
    joined_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "participation"
        unique_together = (("business", "event"),)


class MediaUpload(Model):
    """An upload the API signed for one viewer and one use; `used_at` once it is saved."""

    id = fields.BigIntField(primary_key=True)
    key = fields.CharField(max_length=100, unique=True)
    # The owner: a person (user) or a service (its app client's id); exactly one is set.
    user: fields.ForeignKeyNullableRelation[User] = fields.ForeignKeyField(
        "models.User", related_name="media_uploads", on_delete=fields.CASCADE, null=True
    )
    user_id: int | None
    client_id = fields.CharField(max_length=128, null=True)
    kind = fields.CharEnumField(UploadKind, max_length=16)
    content_type = fields.CharField(max_length=32)
    byte_size = fields.IntField()
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "media_upload"
        indexes = (("user_id", "created_at"),)
