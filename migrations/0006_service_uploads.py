"""Uploads owned by services too: a person (user_id) or an app client (client_id), exactly one."""

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops

# What AlterField and AddField do not emit: the one-owner rule, and a partial index for
# the pending-upload cap of a service (few rows have a client).
FORWARD = [
    "ALTER TABLE media_upload ADD CONSTRAINT media_upload_one_owner"
    " CHECK ((user_id IS NULL) <> (client_id IS NULL))",
    "CREATE INDEX media_upload_client_id_created_at_idx ON media_upload (client_id, created_at)"
    " WHERE client_id IS NOT NULL",
]

REVERSE = [
    "DROP INDEX media_upload_client_id_created_at_idx",
    "ALTER TABLE media_upload DROP CONSTRAINT media_upload_one_owner",
]


class Migration(migrations.Migration):
    dependencies = [("models", "0005_service_clients")]

    initial = False

    operations = [
        ops.AlterField(
            model_name="MediaUpload",
            name="user",
            field=fields.ForeignKeyField(
                "models.User",
                source_field="user_id",
                null=True,
                db_constraint=True,
                to_field="id",
                related_name="media_uploads",
                on_delete=OnDelete.CASCADE,
            ),
        ),
        ops.AddField(
            model_name="MediaUpload",
            name="client_id",
            field=fields.CharField(null=True, max_length=128),
        ),
        ops.RunSQL(FORWARD, reverse_sql=REVERSE),
    ]
