"""Database layer: Tortoise models, ORM configuration, embedded PostgreSQL, migrations."""
