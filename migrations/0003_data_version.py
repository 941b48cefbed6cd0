"""A committed-write counter that response caches compare against.

Every statement that changes what visitors can see bumps `data_version.version` through
statement-level triggers, in the writer's own transaction: the new number becomes visible
exactly when the write commits, so a reader that sees it also sees the write.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

TABLES = ["category", "business", "business_category", "event", "participation"]

FORWARD = [
    "CREATE TABLE data_version (id smallint PRIMARY KEY CHECK (id = 1), version bigint NOT NULL)",
    "INSERT INTO data_version (id, version) VALUES (1, 1)",
    """
    CREATE FUNCTION popmap_bump_data_version() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        UPDATE data_version SET version = version + 1 WHERE id = 1;
        RETURN NULL;
    END
    $$
    """,
    *(
        f"CREATE TRIGGER {table}_bumps_data_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE"
        f" ON {table} FOR EACH STATEMENT EXECUTE FUNCTION popmap_bump_data_version()"
        for table in TABLES
    ),
]

REVERSE = [
    *(f"DROP TRIGGER {table}_bumps_data_version ON {table}" for table in TABLES),
    "DROP FUNCTION popmap_bump_data_version()",
    "DROP TABLE data_version",
]


class Migration(migrations.Migration):
    dependencies = [("models", "0002_constraints_and_indexes")]

    operations = [ops.RunSQL(FORWARD, reverse_sql=REVERSE)]
