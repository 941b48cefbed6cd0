"""Turn PostgreSQL's JIT compilation off for this database.

PostgreSQL compiles a statement's plan to machine code when its estimated cost passes
`jit_above_cost` (100,000 by default). The API's statements are short, but some of their
plans hold a branch that runs only when cheaper ones did not answer (a search's gathering
of every match, `ListQuery._searched`), and PostgreSQL prices the whole: at 100x the
categories with their businesses were estimated at 610,000 and spent 180 to 300 ms
compiling a statement that then ran in 25 ms. `ALTER DATABASE ... SET` applies to every
new session of the database, through any connection pooler, which a start-up parameter
would not (PgBouncer refuses the ones it does not know).

It needs the database's owner (or a superuser), as migrating does anyway; the reverse
puts the server's default back.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

FORWARD = [
    "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET jit = off', current_database()); END $$",
    "SET jit = off",  # this session too, for what runs after it here
]
REVERSE = [
    "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I RESET jit', current_database()); END $$",
]


class Migration(migrations.Migration):
    dependencies = [("models", "0017_newest_first_indexes")]

    operations = [ops.RunSQL(FORWARD, reverse_sql=REVERSE)]
