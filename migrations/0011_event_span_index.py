"""An index on each event's duration, so that "not ended" lists start near now.

A list of events not ended as of an instant, in start order (the map's upcoming events,
a business's upcoming events, `availableEvents`, `endsAfter`), used to read the
(status, starts_at) index from the first event ever held and skip every ended one: at a
national map's size, most of the table. No event lasts longer than the longest one, so an
event not ended at an instant started at most that long before it; the lists say so
(`Ended.not_ended_rows_sql` in popmap_gql/db/rules.py), and this index makes "the
longest" one look-up (`max(ends_at - starts_at)` reads its last entry).

Built with CREATE INDEX CONCURRENTLY, which does not block writes (docs/deployment.md
gives the time at 100x); as in migration 0009, the migration is therefore not atomic, and
the DROP ... IF EXISTS first removes an invalid index an interrupted build left behind.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

FORWARD = [
    "DROP INDEX CONCURRENTLY IF EXISTS event_span_idx",
    "CREATE INDEX CONCURRENTLY event_span_idx ON event ((ends_at - starts_at))",
]
REVERSE = ["DROP INDEX CONCURRENTLY IF EXISTS event_span_idx"]


class Migration(migrations.Migration):
    dependencies = [("models", "0010_local_idp_sessions")]
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    operations = [ops.RunSQL(FORWARD, reverse_sql=REVERSE)]
