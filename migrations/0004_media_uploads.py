"""Uploaded logos and event images: the uploads the API signs, and the keys saved on rows."""

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.indexes import Index
from tortoise.migrations import operations as ops

from popmap_gql.db.models import UploadKind

# What Tortoise's CreateModel and AddField do not emit: the checks of the upload table, and
# indexes for `media gc`, which asks whether candidate keys are still referenced.
FORWARD = [
    "ALTER TABLE media_upload ADD CONSTRAINT media_upload_kind_known "
    "CHECK (kind IN ('BUSINESS_LOGO', 'EVENT_IMAGE'))",
    "ALTER TABLE media_upload ADD CONSTRAINT media_upload_byte_size_positive CHECK (byte_size > 0)",
    "CREATE INDEX business_logo_key_idx ON business (logo_key) WHERE logo_key <> ''",
    "CREATE INDEX event_image_key_idx ON event (image_key) WHERE image_key <> ''",
]

REVERSE = [
    "DROP INDEX event_image_key_idx",
    "DROP INDEX business_logo_key_idx",
    "ALTER TABLE media_upload DROP CONSTRAINT media_upload_byte_size_positive",
    "ALTER TABLE media_upload DROP CONSTRAINT media_upload_kind_known",
]


class Migration(migrations.Migration):
    dependencies = [("models", "0003_data_version")]

    initial = False

    operations = [
        ops.CreateModel(
            name="MediaUpload",
            fields=[
                (
                    "id",
                    fields.BigIntField(
                        generated=True, primary_key=True, unique=True, db_index=True
                    ),
                ),
                ("key", fields.CharField(unique=True, max_length=100)),
                (
                    "user",
                    fields.ForeignKeyField(
                        "models.User",
                        source_field="user_id",
                        db_constraint=True,
                        to_field="id",
                        related_name="media_uploads",
                        on_delete=OnDelete.CASCADE,
                    ),
                ),
                (
                    "kind",
                    fields.CharEnumField(
                        description="BUSINESS_LOGO: BUSINESS_LOGO\nEVENT_IMAGE: EVENT_IMAGE",
                        enum_type=UploadKind,
                        max_length=16,
                    ),
                ),
                ("content_type", fields.CharField(max_length=32)),
                ("byte_size", fields.IntField()),
                ("created_at", fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ("expires_at", fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ("used_at", fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={
                "table": "media_upload",
                "app": "models",
                "indexes": [Index(fields=["user_id", "created_at"])],
                "pk_attr": "id",
                "table_description": "An upload the API signed for one viewer and one use; `used_at` once it is saved.",
            },
            bases=["Model"],
        ),
        ops.AddField(
            model_name="Business",
            name="logo_key",
            field=fields.CharField(default="", db_default="", max_length=100),
        ),
        ops.AddField(
            model_name="Event",
            name="image_key",
            field=fields.CharField(default="", db_default="", max_length=100),
        ),
        ops.RunSQL(FORWARD, reverse_sql=REVERSE),
    ]
