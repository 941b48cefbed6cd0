"""Each event's participations with their businesses, from the index alone.

`participation_event_idx` (event_id, joined_at) found an event's participations but not
their businesses: a filter of events by category (`categorySlugs`) read the table for
every participation of every event it checked (about ten per event at 100x), and so did
the loader of an event's businesses. The index is built again with the business in it
(`INCLUDE (business_id)`): its key is unchanged, so the release before this one uses it
as it did the old one.

Built with CREATE INDEX CONCURRENTLY under a new name, then the old one dropped the same
way, which blocks no writes (docs/deployment.md gives the time at 100x); the migration is
not atomic, and each step can run again after an interruption.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

FORWARD = [
    "DROP INDEX CONCURRENTLY IF EXISTS participation_event_business_idx",
    "CREATE INDEX CONCURRENTLY participation_event_business_idx"
    " ON participation (event_id, joined_at) INCLUDE (business_id)",
    "DROP INDEX CONCURRENTLY IF EXISTS participation_event_idx",
]
REVERSE = [
    "DROP INDEX CONCURRENTLY IF EXISTS participation_event_idx",
    "CREATE INDEX CONCURRENTLY participation_event_idx ON participation (event_id, joined_at)",
    "DROP INDEX CONCURRENTLY IF EXISTS participation_event_business_idx",
]


class Migration(migrations.Migration):
    dependencies = [("models", "0014_business_hire_index")]
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    operations = [ops.RunSQL(FORWARD, reverse_sql=REVERSE)]
