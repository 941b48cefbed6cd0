"""Events submitted by services (client-credentials app clients) record their client id."""

from tortoise import fields, migrations
from tortoise.migrations import operations as ops

# Partial: only the few events submitted by services are indexed, for "its own events".
INDEX = (
    "CREATE INDEX event_created_by_client_idx ON event (created_by_client)"
    " WHERE created_by_client IS NOT NULL"
)


class Migration(migrations.Migration):
    dependencies = [("models", "0004_media_uploads")]

    operations = [
        ops.AddField(
            model_name="Event",
            name="created_by_client",
            field=fields.CharField(max_length=128, null=True),
        ),
        ops.RunSQL([INDEX], reverse_sql=["DROP INDEX event_created_by_client_idx"]),
    ]
