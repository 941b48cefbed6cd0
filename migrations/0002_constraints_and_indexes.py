"""Check constraints and foreign-key indexes that Tortoise's CreateModel does not emit."""

from tortoise import migrations
from tortoise.migrations import operations as ops

FORWARD = [
    "ALTER TABLE event ADD CONSTRAINT event_latitude_range CHECK (latitude BETWEEN -90 AND 90)",
    "ALTER TABLE event ADD CONSTRAINT event_longitude_range CHECK (longitude BETWEEN -180 AND 180)",
    "ALTER TABLE event ADD CONSTRAINT event_ends_after_start CHECK (ends_at > starts_at)",
    "ALTER TABLE event ADD CONSTRAINT event_status_known "
    "CHECK (status IN ('PENDING', 'APPROVED', 'REJECTED', 'CANCELLED'))",
    "ALTER TABLE business ADD CONSTRAINT business_contact_phone_format "
    "CHECK (contact_phone = '' OR contact_phone ~ '^\\+[0-9]{9,15}$')",
    # The unique (business_id, event_id) index serves lookups by business; these serve the rest.
    "CREATE INDEX participation_event_idx ON participation (event_id, joined_at)",
    "CREATE INDEX business_category_category_idx ON business_category (category_id)",
    "CREATE INDEX event_host_business_idx ON event (host_business_id)",
    "CREATE INDEX event_created_by_idx ON event (created_by_id)",
    "CREATE INDEX business_owner_idx ON business (owner_id)",
]

REVERSE = [
    "DROP INDEX business_owner_idx",
    "DROP INDEX event_created_by_idx",
    "DROP INDEX event_host_business_idx",
    "DROP INDEX business_category_category_idx",
    "DROP INDEX participation_event_idx",
    "ALTER TABLE business DROP CONSTRAINT business_contact_phone_format",
    "ALTER TABLE event DROP CONSTRAINT event_status_known",
    "ALTER TABLE event DROP CONSTRAINT event_ends_after_start",
    "ALTER TABLE event DROP CONSTRAINT event_longitude_range",
    "ALTER TABLE event DROP CONSTRAINT event_latitude_range",
]


class Migration(migrations.Migration):
    dependencies = [("models", "0001_initial")]

    operations = [ops.RunSQL(FORWARD, reverse_sql=REVERSE)]
