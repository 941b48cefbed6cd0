"""An index of the businesses available for hire, in id order, for counts of a category.

A count of `businesses(filter: {categorySlugs: [...], availableForHire: true})` reads the
category's (category, business) rows in business order (`Through` in db/lists.py) and
merges them with the businesses for hire in id order, until it has counted
`POPMAP_MAX_EXACT_COUNT` + 1. With `is_verified` and the owner in the index (what
`Visibility` reads), the merge reads neither table. Before it, the count hashed every
business of the category first (48,579 for a category at 100x).

Built with CREATE INDEX CONCURRENTLY, which does not block writes (docs/deployment.md
gives the time at 100x); the migration is not atomic, and the DROP ... IF EXISTS first
removes an invalid index an interrupted build left behind.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

FORWARD = [
    "DROP INDEX CONCURRENTLY IF EXISTS business_hire_idx",
    "CREATE INDEX CONCURRENTLY business_hire_idx ON business (available_for_hire, id)"
    " INCLUDE (is_verified, owner_id)",
]
REVERSE = ["DROP INDEX CONCURRENTLY IF EXISTS business_hire_idx"]


class Migration(migrations.Migration):
    dependencies = [("models", "0013_business_search_text")]
    atomic = False  # CREATE INDEX CONCURRENTLY runs outside a transaction

    operations = [ops.RunSQL(FORWARD, reverse_sql=REVERSE)]
