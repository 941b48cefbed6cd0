from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from popmap_gql.db.models import EventStatus


class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name="Category",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("name", fields.CharField(unique=True, max_length=100)),
                ("slug", fields.CharField(unique=True, max_length=100)),
            ],
            options={"table": "category", "app": "models", "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="User",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("username", fields.CharField(db_index=True, max_length=150)),
                ("email", fields.CharField(default="", max_length=254)),
                ("first_name", fields.CharField(default="", max_length=150)),
                ("last_name", fields.CharField(default="", max_length=150)),
                ("identity_provider", fields.CharField(default="Cognito", max_length=64)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={"table": "popmap_user", "app": "models", "pk_attr": "id"},
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Business",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("name", fields.CharField(max_length=200)),
                ("description", fields.TextField(default="", unique=False)),
                ("contact_email", fields.CharField(default="", max_length=254)),
                ("contact_phone", fields.CharField(default="", max_length=16)),
                ("website", fields.CharField(default="", max_length=500)),
                ("instagram_url", fields.CharField(default="", max_length=500)),
                ("tiktok_url", fields.CharField(default="", max_length=500)),
                ("available_for_hire", fields.BooleanField(default=False)),
                ("logo_url", fields.CharField(default="", max_length=500)),
                (
                    "categories",
                    fields.ManyToManyField(
                        "models.Category",
                        unique=True,
                        db_constraint=True,
                        through="business_category",
                        forward_key="category_id",
                        backward_key="business_id",
                        related_name="businesses",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "owner",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="owner_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="businesses",
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("is_verified", fields.BooleanField(default=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "business",
                "app": "models",
                "indexes": [Index(fields=["is_verified", "name"])],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="CognitoIdentity",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                (
                    "user",
                    fields.OneToOneField(
                        "models.User",
                        source_field="user_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="identity",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("issuer", fields.CharField(max_length=255)),
                ("sub", fields.CharField(max_length=255)),
                ("profile_complete", fields.BooleanField(default=False)),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "cognito_identity",
                "app": "models",
                "unique_together": (("issuer", "sub"),),
                "pk_attr": "id",
                "table_description": "The one Cognito identity a user signs in with, keyed by (issuer, sub), never by email.",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Event",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("title", fields.CharField(max_length=200)),
                ("description", fields.TextField(default="", unique=False)),
                ("location_name", fields.CharField(default="", max_length=200)),
                ("address", fields.CharField(default="", max_length=300)),
                ("latitude", fields.FloatField()),
                ("longitude", fields.FloatField()),
                ("starts_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("ends_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("image_url", fields.CharField(default="", max_length=500)),
                (
                    "status",
                    fields.CharEnumField(
                        default=EventStatus.PENDING,
                        description="PENDING: PENDING\nAPPROVED: APPROVED\nREJECTED: REJECTED\nCANCELLED: CANCELLED",
                        enum_type=EventStatus,
                        max_length=16,
                    ),
                ),
                (
                    "host_business",
                    fields.ForeignKeyField(
                        "models.Business",
                        source_field="host_business_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="hosted_events",
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                (
                    "created_by",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="created_by_id",
                        null=True,
                        db_constraint=True,
                        to_field="id",
                        related_name="submitted_events",
                        on_delete=OnDelete.SET_NULL,
                    ),
                ),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("updated_at", fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={
                "table": "event",
                "app": "models",
                "indexes": [
                    Index(fields=["status", "starts_at"]),
                    Index(fields=["latitude", "longitude"]),
                ],
                "pk_attr": "id",
            },
            bases=["Model"],
        ),
        ops.CreateModel(
            name="Participation",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                (
                    "event",
                    fields.ForeignKeyField(
                        "models.Event",
                        source_field="event_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="participations",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "business",
                    fields.ForeignKeyField(
                        "models.Business",
                        source_field="business_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="participations",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                ("joined_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={
                "table": "participation",
                "app": "models",
                "unique_together": (("business", "event"),),
                "pk_attr": "id",
                "table_description": "A business taking part in an event; one row per (business, event).",
            },
            bases=["Model"],
        ),
    ]
