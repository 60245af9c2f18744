"""Bringing a store's schema to this release's, through the Alembic migrations in bot/store/migrations.

The store outlives releases, so its schema changes only by migration, never by `create_all`. Opening a
Store calls `upgrade`: an empty database is built from the first migration on; one made by release 0.1
(tables, but no `alembic_version`, since that release used `create_all`) is stamped at the baseline
first; an up-to-date one costs one query, no lock and no Alembic import, since every CLI command opens
a Store.

Replicas sharing a PostgreSQL store may start at the same moment: the upgrade runs in one transaction
(PostgreSQL's DDL is transactional) holding an advisory lock, and whoever waited on it reads the
revision again and finds nothing left to do. SQLite has one writer at a time anyway; BEGIN IMMEDIATE
takes that writer lock up front and makes the upgrade one transaction too, so a failure leaves no
half-migrated file (the driver would otherwise run each DDL statement outside any transaction).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError, ProgrammingError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001"  # release 0.1's tables, as its create_all made them
HEAD = "0005"  # the newest migration; a test holds it to the folder's head, so a new one cannot be missed
# Advisory locks are per database, so a fixed key only meets other openers of the same store.
_PG_LOCK_KEY = int.from_bytes(b"rollback", "big")
# Alembic's `op` and `context` are module globals: one thread at a time in a process runs it, whatever the store.
_ALEMBIC = threading.Lock()


def upgrade(engine: Engine) -> None:
    """Bring the store to the newest revision; an up-to-date store costs one query."""
    if _recorded_revision(engine) == HEAD:
        return
    # Alembic is imported only here: its import alone costs more than opening an up-to-date store.
    from alembic import command

    with _ALEMBIC, _exclusive(engine) as conn:
        current = current_revision(conn)  # another replica may have upgraded while this one waited
        if current == HEAD:
            return
        config = _config(conn)
        if current is None and sa.inspect(conn).has_table("runs"):
            command.stamp(config, BASELINE)  # made by release 0.1: its tables are the baseline's
        command.upgrade(config, HEAD)


def downgrade(engine: Engine, revision: str) -> None:
    """Take the schema back to `revision` (e.g. before running an older release on this store)."""
    from alembic import command

    with _ALEMBIC, _exclusive(engine) as conn:
        command.downgrade(_config(conn), revision)


def current_revision(conn: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def _recorded_revision(engine: Engine) -> str | None:
    """The revision in alembic_version, or None when it cannot be read (no table yet, for one)."""
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    except (ProgrammingError, OperationalError):
        return None  # only means "not known to be current": the locked path reads it again through Alembic


def _config(conn: Connection) -> Config:
    from alembic.config import Config

    config = Config()  # no alembic.ini: the package folder is the script location
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.attributes["connection"] = conn  # env.py runs the migrations on it
    return config


@contextmanager
def _exclusive(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that no other opener of this store can run beside, committed at the end."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            # The driver would run DDL outside any transaction: this connection opens and ends its own.
            conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # waits out another writer (busy_timeout)
            try:
                yield conn
            except BaseException:
                conn.exec_driver_sql("ROLLBACK")
                raise
            conn.exec_driver_sql("COMMIT")
        return
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            # Transaction-scoped: released by the commit that publishes the new schema, or by the rollback;
            # a pooled connection can never keep it.
            conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_PG_LOCK_KEY)))
        yield conn
