"""Indexes for lists ordered newest first, of businesses and of events.

`orderBy: NEWEST_FIRST` had no index in its order: a page of businesses read and sorted
every verified business (450,000 at 100x, about 100 ms), and a page of events every event
its filter admits. These give each visibility branch (`Visibility.sql_branches`) in
creation order. The businesses' index holds what a search's page tests as it walks
(`ListQuery._searched`), as `business_listing_idx` does for the name order, so that a page
takes its ids from the index alone.

Built with CREATE INDEX CONCURRENTLY, which does not block writes (docs/deployment.md
gives the times at 100x); the migration is not atomic, and each DROP ... IF EXISTS first
removes an invalid index an interrupted build left behind.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

FORWARD = [
    "DROP INDEX CONCURRENTLY IF EXISTS business_newest_idx",
    "CREATE INDEX CONCURRENTLY business_newest_idx ON business (is_verified, created_at, id)"
    " INCLUDE (search_text, available_for_hire, owner_id)",
    "DROP INDEX CONCURRENTLY IF EXISTS event_newest_idx",
    "CREATE INDEX CONCURRENTLY event_newest_idx ON event (status, created_at, id)",
]
REVERSE = [
    "DROP INDEX CONCURRENTLY IF EXISTS event_newest_idx",
    "DROP INDEX CONCURRENTLY IF EXISTS business_newest_idx",
]


class Migration(migrations.Migration):
    dependencies = [("models", "0016_event_category")]
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    operations = [ops.RunSQL(FORWARD, reverse_sql=REVERSE)]
