"""A covering index for lists of businesses, so a filter passes over rows in the index.

A list of businesses in name order (the default, and a search's) walks the
(is_verified, name) index and checks each business against the filter; a search for a
common word at a national map's size passes over thousands before it has a page. With
the id, the searched description, `available_for_hire` and the owner in the index, the
page's ids come from an index-only scan (`ListQuery.page_sql` selects the ids first,
then the page's rows by id), which reads no table row it does not return.

Built with CREATE INDEX CONCURRENTLY, which does not block writes (docs/deployment.md
gives the time at 100x); as in migration 0009, the migration is therefore not atomic, and
the DROP ... IF EXISTS first removes an invalid index an interrupted build left behind.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

FORWARD = [
    "DROP INDEX CONCURRENTLY IF EXISTS business_listing_idx",
    "CREATE INDEX CONCURRENTLY business_listing_idx ON business (is_verified, name, id)"
    " INCLUDE (description, available_for_hire, owner_id)",
]
REVERSE = ["DROP INDEX CONCURRENTLY IF EXISTS business_listing_idx"]


class Migration(migrations.Migration):
    dependencies = [("models", "0011_event_span_index")]
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    operations = [ops.RunSQL(FORWARD, reverse_sql=REVERSE)]
