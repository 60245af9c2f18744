"""The store's Alembic migrations: the only way its schema changes (see bot.store._migrate)."""
