"""Alembic's entry point: runs the migrations on the connection bot.store._migrate hands over.

There is no alembic.ini: _migrate builds the Config in code and owns the connection, its transaction and
the lock that serialises replicas, so this only tells Alembic what to run on.
"""

from __future__ import annotations

from alembic import context

from bot.store.schema import metadata

context.configure(connection=context.config.attributes["connection"], target_metadata=metadata)
with context.begin_transaction():  # a no-op inside _migrate's transaction, which commits or rolls back everything
    context.run_migrations()
