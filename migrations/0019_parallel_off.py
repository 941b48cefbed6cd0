"""No parallel workers for this database's statements.

With the plans of `ListQuery._searched`, PostgreSQL prices a statement by every branch it
holds, although most never run (each runs only if the ones before it did not answer),
and prices some of them in millions: above `parallel_setup_cost` it then starts parallel
workers for a statement that runs in a few milliseconds. At 100x the first 100 events of a
category took 44 to 54 ms with a worker where they take 26 to 34 ms without. The API
serves many short statements at once, each on one core; `ALTER DATABASE ... SET
max_parallel_workers_per_gather = 0` applies to every new session of the database,
through any pooler (as migration 0018 does for JIT). The reverse puts the server's
default back.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

FORWARD = [
    "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET max_parallel_workers_per_gather = 0',"
    " current_database()); END $$",
    "SET max_parallel_workers_per_gather = 0",  # this session too
]
REVERSE = [
    "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I RESET max_parallel_workers_per_gather',"
    " current_database()); END $$",
]


class Migration(migrations.Migration):
    dependencies = [("models", "0018_jit_off")]

    operations = [ops.RunSQL(FORWARD, reverse_sql=REVERSE)]
