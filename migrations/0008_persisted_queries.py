"""The store of automatic persisted queries, shared by every replica.

A client sends a document's SHA-256 instead of its text once the server knows it
(Apollo's protocol); the text is stored here the first time it comes with its hash, so a
document registered through one replica runs through any other. The table is bounded
by the server (POPMAP_APQ_MAX_DOCUMENTS): `last_used` says which documents go first,
and the index finds them without sorting the table.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

FORWARD = [
    """
    CREATE TABLE persisted_query (
        hash text PRIMARY KEY CHECK (hash ~ '^[0-9a-f]{64}$'),
        document text NOT NULL,
        last_used timestamptz NOT NULL DEFAULT now()
    )
    """,
    "CREATE INDEX persisted_query_last_used_idx ON persisted_query (last_used)",
]

REVERSE = ["DROP TABLE persisted_query"]


class Migration(migrations.Migration):
    dependencies = [("models", "0007_data_version_on_change")]

    operations = [ops.RunSQL(FORWARD, reverse_sql=REVERSE)]
