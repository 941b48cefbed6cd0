"""Searched text stored lower-cased, so a search compares bytes instead of folding case.

`filter.search` was `name ILIKE '%term%' OR description ILIKE '%term%'`. In a UTF-8
database PostgreSQL folds the case of every row it tests (`lower()` of both texts, per
row), about 1.3 microseconds a row on this machine: a search's count, which reads rows
until it has counted `POPMAP_MAX_EXACT_COUNT` + 1, spent most of its time there at 100x.

- `business.search_text` holds `lower(name) || E'\\n' || lower(description)`, set by the
  trigger `business_search_text` on every insert and update, which is where that rule is
  written; a search is `search_text LIKE lower('%term%')`, the same matches as the two
  ILIKEs (PostgreSQL's ILIKE in UTF-8 is LIKE on both sides lower-cased), since a term
  never holds the newline between the two (`filter.search` refuses control characters).
- the rows there already are filled in batches of 10,000, each its own transaction (the
  DO block commits), so no lock is held on many rows for long and writes go on;
- `business_search_text_trgm`: trigram GIN on it, for the searches that match little;
- `business_listing_idx` is built again with `search_text` in place of `description`, so a
  search's page and its count read the index alone;
- a CHECK that it is set, validated without blocking writes; then VACUUM (ANALYZE).

`business_search_trgm` (migration 0009) is no longer read, but the release before this
one searches with it while a rolling deploy replaces it: a later release drops it.
Built with CREATE INDEX CONCURRENTLY (docs/deployment.md gives the times at 100x); the
migration is not atomic, and each step can run again after an interruption.
"""

from tortoise import migrations
from tortoise.migrations import operations as ops

FORWARD = [
    "ALTER TABLE business ADD COLUMN IF NOT EXISTS search_text text",
    """CREATE OR REPLACE FUNCTION popmap_business_search_text() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      NEW.search_text := lower(NEW.name) || E'\\n' || lower(NEW.description);
      RETURN NEW;
    END $$""",
    "DROP TRIGGER IF EXISTS business_search_text ON business",
    "CREATE TRIGGER business_search_text BEFORE INSERT OR UPDATE ON business"
    " FOR EACH ROW EXECUTE FUNCTION popmap_business_search_text()",
    # Fill the rows there already: an update that changes nothing else fires the trigger.
    """DO $$
    DECLARE
      done bigint := 0;
      last bigint := (SELECT coalesce(max(id), 0) FROM business);
    BEGIN
      WHILE done < last LOOP
        UPDATE business SET search_text = NULL
          WHERE id > done AND id <= done + 10000 AND search_text IS NULL;
        done := done + 10000;
        COMMIT;
      END LOOP;
    END $$""",
    "ALTER TABLE business DROP CONSTRAINT IF EXISTS business_search_text_set",
    "ALTER TABLE business ADD CONSTRAINT business_search_text_set"
    " CHECK (search_text IS NOT NULL) NOT VALID",
    "ALTER TABLE business VALIDATE CONSTRAINT business_search_text_set",
    "DROP INDEX CONCURRENTLY IF EXISTS business_search_text_trgm",
    "CREATE INDEX CONCURRENTLY business_search_text_trgm ON business"
    " USING gin (search_text gin_trgm_ops)",
    "DROP INDEX CONCURRENTLY IF EXISTS business_listing_idx",
    "CREATE INDEX CONCURRENTLY business_listing_idx ON business (is_verified, name, id)"
    " INCLUDE (search_text, available_for_hire, owner_id)",
    # The batches left a dead version of every row: VACUUM marks the pages all-visible
    # again, which an index-only scan needs (it blocks no writes), and ANALYZEs.
    "VACUUM (ANALYZE) business",
]
REVERSE = [
    "DROP INDEX CONCURRENTLY IF EXISTS business_listing_idx",
    "CREATE INDEX CONCURRENTLY business_listing_idx ON business (is_verified, name, id)"
    " INCLUDE (description, available_for_hire, owner_id)",
    "DROP INDEX CONCURRENTLY IF EXISTS business_search_text_trgm",
    "DROP TRIGGER IF EXISTS business_search_text ON business",
    "DROP FUNCTION IF EXISTS popmap_business_search_text()",
    "ALTER TABLE business DROP COLUMN IF EXISTS search_text",
]


class Migration(migrations.Migration):
    dependencies = [("models", "0012_business_listing_index")]
    atomic = False  # CREATE INDEX CONCURRENTLY and the batches' COMMITs run outside one

    operations = [ops.RunSQL(FORWARD, reverse_sql=REVERSE)]
