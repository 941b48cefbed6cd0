"""Which businesses of which category take part in each event, kept by triggers.

`events(filter: {categorySlugs: [...]})` asked, for each event it passed, whether one of
its participating businesses is of a category: a look-up per participation, about ten
per event at 100x before one was found, so a count of a thousand such events made some
ten thousand. `event_category` holds one row per (event, category, business) for each
participation and each category of its business: the question is one look-up per event
(its key), and the businesses it names are still checked against the viewer's
`Visibility` (a hidden business reveals nothing). The key, (category, event, business),
answers both "is this event's" and "which events are this category's" (the planner takes
the second for a rare category); the second index finds a business's rows when one of its
participations or categories goes.

The rows are derived from `participation` and `business_category` by statement triggers
on each, which see the rows the statement changed (transition tables, one event per
trigger). Each first locks the businesses whose rows changed (`FOR NO KEY UPDATE`, in id
order) and only then reads the other table: two transactions changing the same business
(a join, and a new category of it) take turns, and the second reads what the first
committed, so neither misses the other's row. A TRUNCATE of either empties it.

The rows there already are filled in batches of 10,000 businesses, each its own
transaction under the same locks, so writes to other businesses go on and a write to one
of the batch's waits for that batch only. The second index is built afterwards with
CREATE INDEX CONCURRENTLY; the migration is therefore not atomic, and each step can run
again after an interruption (docs/deployment.md gives the time at 100x).
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

# What each trigger does with the rows its statement changed (`changed_rows`): the rows a
# participation or a category of a business adds to event_category, and those it removes.
_LOCK = (
    "PERFORM 1 FROM business WHERE id IN (SELECT business_id FROM changed_rows)"
    " ORDER BY id FOR NO KEY UPDATE;"
)
_EFFECTS = {
    ("participation", "insert"): (
        "INSERT INTO event_category (event_id, category_id, business_id)"
        " SELECT n.event_id, bc.category_id, n.business_id FROM changed_rows n"
        " JOIN business_category bc ON bc.business_id = n.business_id ON CONFLICT DO NOTHING;"
    ),
    ("participation", "delete"): (
        "DELETE FROM event_category ec USING changed_rows o"
        " WHERE ec.event_id = o.event_id AND ec.business_id = o.business_id;"
    ),
    ("business_category", "insert"): (
        "INSERT INTO event_category (event_id, category_id, business_id)"
        " SELECT p.event_id, n.category_id, n.business_id FROM changed_rows n"
        " JOIN participation p ON p.business_id = n.business_id ON CONFLICT DO NOTHING;"
    ),
    ("business_category", "delete"): (
        "DELETE FROM event_category ec USING changed_rows o"
        " WHERE ec.business_id = o.business_id AND ec.category_id = o.category_id;"
    ),
}
_ROWS = {"insert": "NEW", "delete": "OLD"}


def _trigger(table: str, event: str) -> list[str]:
    name = f"{table}_{event}_derives_event_category"
    return [
        f"""CREATE OR REPLACE FUNCTION popmap_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          {_LOCK}
          {_EFFECTS[(table, event)]}
          RETURN NULL;
        END $$""",
        f"DROP TRIGGER IF EXISTS {name} ON {table}",
        f"CREATE TRIGGER {name} AFTER {event.upper()} ON {table}"
        f" REFERENCING {_ROWS[event]} TABLE AS changed_rows FOR EACH STATEMENT"
        f" EXECUTE FUNCTION popmap_{name}()",
    ]


def _no_updates(table: str) -> list[str]:
    """Neither table's rows change in place (a join or a category is added or removed);
    an UPDATE of one is refused rather than left out of event_category."""
    name = f"{table}_update_derives_event_category"
    return [
        f"""CREATE OR REPLACE FUNCTION popmap_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          RAISE EXCEPTION '{table} rows are inserted and deleted, not updated';
        END $$""",
        f"DROP TRIGGER IF EXISTS {name} ON {table}",
        f"CREATE TRIGGER {name} BEFORE UPDATE ON {table}"
        f" FOR EACH STATEMENT EXECUTE FUNCTION popmap_{name}()",
    ]


def _emptied_with(table: str) -> list[str]:
    name = f"{table}_truncate_derives_event_category"
    return [
        f"""CREATE OR REPLACE FUNCTION popmap_{name}() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
          TRUNCATE event_category;
          RETURN NULL;
        END $$""",
        f"DROP TRIGGER IF EXISTS {name} ON {table}",
        f"CREATE TRIGGER {name} AFTER TRUNCATE ON {table}"
        f" FOR EACH STATEMENT EXECUTE FUNCTION popmap_{name}()",
    ]


TABLES = ("participation", "business_category")

FORWARD = [
    "CREATE TABLE IF NOT EXISTS event_category ("
    " category_id bigint NOT NULL, event_id bigint NOT NULL, business_id bigint NOT NULL,"
    " PRIMARY KEY (category_id, event_id, business_id))",
    *(
        statement
        for table in TABLES
        for statement in (
            *_trigger(table, "insert"),
            *_trigger(table, "delete"),
            *_no_updates(table),
            *_emptied_with(table),
        )
    ),
    # The rows there already, a batch of businesses at a time under the triggers' locks.
    """DO $$
    DECLARE
      done bigint := 0;
      last bigint := (SELECT coalesce(max(id), 0) FROM business);
    BEGIN
      WHILE done < last LOOP
        PERFORM 1 FROM business WHERE id > done AND id <= done + 10000
          ORDER BY id FOR NO KEY UPDATE;
        INSERT INTO event_category (event_id, category_id, business_id)
          SELECT p.event_id, bc.category_id, p.business_id FROM participation p
          JOIN business_category bc ON bc.business_id = p.business_id
          WHERE p.business_id > done AND p.business_id <= done + 10000
          ON CONFLICT DO NOTHING;
        done := done + 10000;
        COMMIT;
      END LOOP;
    END $$""",
    "DROP INDEX CONCURRENTLY IF EXISTS event_category_business_idx",
    "CREATE INDEX CONCURRENTLY event_category_business_idx"
    " ON event_category (business_id, event_id)",
    "VACUUM (ANALYZE) event_category",
]

REVERSE = [
    *(
        statement
        for table in TABLES
        for event in ("insert", "delete", "update", "truncate")
        for statement in (
            f"DROP TRIGGER IF EXISTS {table}_{event}_derives_event_category ON {table}",
            f"DROP FUNCTION IF EXISTS popmap_{table}_{event}_derives_event_category()",
        )
    ),
    "DROP TABLE IF EXISTS event_category",
]


class Migration(migrations.Migration):
    dependencies = [("models", "0015_participation_covering_index")]
    atomic = False  # the batches' COMMITs and CREATE INDEX CONCURRENTLY run outside one

    operations = [ops.RunSQL(FORWARD, reverse_sql=REVERSE)]
