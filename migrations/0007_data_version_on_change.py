"""Only statements that changed rows move `data_version` (migration 0003).

Migration 0003 bumps the version after every statement on the tables visitors read, even
one that changed nothing. joinEvent and leaveEvent check and write in one statement, so
a refused join, a join of a business already taking part and a leave of one that is not
would each move the version and empty every response cache for nothing. Each table now
has one trigger per kind of change, each seeing the rows the statement changed (its
transition table, which PostgreSQL allows for one event per trigger), and the version
moves only when there is at least one. TRUNCATE still always moves it.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

TABLES = ["category", "business", "business_category", "event", "participation"]

# (event, transition table): the rows an INSERT or UPDATE wrote, the rows a DELETE removed.
CHANGES = [("insert", "NEW"), ("update", "NEW"), ("delete", "OLD")]

FORWARD = [
    """
    CREATE FUNCTION popmap_bump_data_version_if_changed() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (SELECT 1 FROM changed_rows) THEN
            UPDATE data_version SET version = version + 1 WHERE id = 1;
        END IF;
        RETURN NULL;
    END
    $$
    """,
    *(
        statement
        for table in TABLES
        for statement in (
            f"DROP TRIGGER {table}_bumps_data_version ON {table}",
            *(
                f"CREATE TRIGGER {table}_{event}_bumps_data_version AFTER {event.upper()}"
                f" ON {table} REFERENCING {rows} TABLE AS changed_rows FOR EACH STATEMENT"
                " EXECUTE FUNCTION popmap_bump_data_version_if_changed()"
                for event, rows in CHANGES
            ),
            f"CREATE TRIGGER {table}_truncate_bumps_data_version AFTER TRUNCATE ON {table}"
            " FOR EACH STATEMENT EXECUTE FUNCTION popmap_bump_data_version()",
        )
    ),
]

REVERSE = [
    *(
        statement
        for table in TABLES
        for statement in (
            *(
                f"DROP TRIGGER {table}_{event}_bumps_data_version ON {table}"
                for event in (*(event for event, _ in CHANGES), "truncate")
            ),
            f"CREATE TRIGGER {table}_bumps_data_version AFTER INSERT OR UPDATE OR DELETE OR"
            f" TRUNCATE ON {table} FOR EACH STATEMENT EXECUTE FUNCTION popmap_bump_data_version()",
        )
    ),
    "DROP FUNCTION popmap_bump_data_version_if_changed()",
]


class Migration(migrations.Migration):
    dependencies = [("models", "0006_service_uploads")]

    operations = [ops.RunSQL(FORWARD, reverse_sql=REVERSE)]
