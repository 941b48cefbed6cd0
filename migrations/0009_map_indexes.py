"""Indexes whose cost follows the answer, not the table (a national map).

- `business_search_trgm`: trigram GIN (pg_trgm) on the searched text, so
  `name ILIKE '%term%' OR description ILIKE '%term%'` reads the rows holding the term's
  trigrams instead of every business; a term that matches nothing reads nothing.
- `event_location_gist`: a GiST index on `point(longitude, latitude)`, so a map box
  (`<@ box(...)`, two boxes across the antimeridian) reads the events inside it.
- `event_status_ends_idx`: (status, ends_at), for "upcoming" lists and their counts.
- `business_category_category_business_idx`: (category_id, business_id), so a category's
  businesses come from the index alone.

Every index is built with CREATE INDEX CONCURRENTLY, which does not block writes while
it reads a big table (docs/deployment.md gives the times at 100x). That cannot run in a
transaction, so the migration is not atomic: each statement runs on its own. An
interrupted concurrent build leaves an invalid index behind, and the migration is not
recorded; the DROP ... IF EXISTS before each build removes it when the migration runs
again.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

INDEXES = {
    "business_search_trgm": ("business USING gin (name gin_trgm_ops, description gin_trgm_ops)"),
    "event_location_gist": "event USING gist (point(longitude, latitude))",
    "event_status_ends_idx": "event (status, ends_at)",
    "business_category_category_business_idx": "business_category (category_id, business_id)",
}

FORWARD = ["CREATE EXTENSION IF NOT EXISTS pg_trgm"]
for _name, _target in INDEXES.items():
    FORWARD.append(f"DROP INDEX CONCURRENTLY IF EXISTS {_name}")
    FORWARD.append(f"CREATE INDEX CONCURRENTLY {_name} ON {_target}")
FORWARD.append("ANALYZE business, event, business_category")

REVERSE = [f"DROP INDEX CONCURRENTLY IF EXISTS {name}" for name in reversed(INDEXES)]


class Migration(migrations.Migration):
    dependencies = [("models", "0008_persisted_queries")]
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    operations = [ops.RunSQL(FORWARD, reverse_sql=REVERSE)]
