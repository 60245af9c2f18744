"""Cleaning up after a PostgreSQL restore whose process was killed (kill -9, a host crash) midway.

What such a crash can leave, given how postgres.py restores (shadow database, then ONE transaction):

1. Killed before or during pg_restore, ANALYZE or the property copy: a shadow database, complete or
   not, and the live database as it was. pg_restore runs in its own process group (dbtools.run_tool),
   so it outlives the bot and goes on writing into the shadow; even when it dies too, its server
   session finishes the statement it was running. drop_shadow() therefore refuses new connections to
   the shadow and drops it WITH (FORCE), which terminates those sessions (pg_restore runs with
   --exit-on-error, so a terminated session ends it rather than leaving it to write on).
2. Killed after `ALTER DATABASE live WITH ALLOW_CONNECTIONS false` (autocommit, so it stays) but
   before the renames committed, including inside the rename transaction (the server rolls an
   uncommitted transaction back when its client is gone): the live name still holds the old data
   but refuses every connection: an outage. repair_swap() allows connections again.
3. Killed after the COMMIT: the swap is complete (the transaction re-enabled connections to both
   databases itself); nothing to repair, and the shadow name no longer exists.
4. Killed during `CREATE DATABASE shadow`: the server goes on creating it (it notices a vanished client
   only when it next writes to it), and the shadow is invisible until that commits. Asking "does the
   shadow exist?" then answers no, and a moment later it does: a shadow nobody drops, or a retry whose
   own CREATE DATABASE of the same name fails. exists_settled() ends such statements first.

The live NAME cannot be missing after any of these: both renames are in one transaction, so the
name moves from the old database to the restored one atomically. repair_swap() therefore refuses to
guess when it does find the name missing (someone dropped or renamed it by hand).
"""

from __future__ import annotations

from contextlib import suppress

import psycopg

from bot import format as fmt
from bot.backends import postgres_admin as admin
from bot.backends.dbtools import SHADOW_MARK
from bot.errors import DatabaseError


def shadow_size(conn: admin.Conn, name: str) -> int | None:
    """Bytes on disk, or None if the server will not say (no CONNECT right on it, say)."""
    with suppress(psycopg.Error):
        row = conn.execute("SELECT pg_database_size(%s)", (name,)).fetchone()
        return int(row[0]) if row and row[0] is not None else None
    return None


def drop_shadow(conn: admin.Conn, name: str) -> int | None:
    """Drop a shadow database whatever is still connected to it; return its size before (if known)."""
    size = shadow_size(conn, name)
    # First, so that no orphan pg_restore worker can open a new session between terminate and drop.
    with suppress(psycopg.Error):  # not the owner: FORCE below still terminates the sessions
        admin.set_allow_connections(conn, name, False)
    admin.drop_database(conn, name)  # WITH (FORCE): terminates pg_restore's sessions itself
    return size


def exists_settled(conn: admin.Conn, name: str, *, timeout_s: float = 10.0) -> bool:
    """Whether the shadow `name` exists, once no crashed attempt is still creating (or filling) it.

    Shadow names belong to one run (dbtools.shadow_name) and the standby's to the bot, so a statement
    naming one is the bot's own, and where this is called, a crashed attempt's: its server session
    outlives it (case 4 above).
    """
    admin.end_statements_naming(conn, name, timeout_s=timeout_s)
    return admin.exists(conn, name)


def discard(conn: admin.Conn, name: str) -> str | None:
    if not exists_settled(conn, name):
        return None
    size = drop_shadow(conn, name)
    return f"dropped the leftover shadow database {name}" + (f" ({fmt.size(size)})" if size is not None else "")


def repair_swap(conn: admin.Conn, live: str) -> list[str]:
    """Let the live database accept connections again if an interrupted switch left it closed."""
    row = conn.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", (live,)).fetchone()
    if row is None:
        # Impossible through the bot (see the module docstring): whatever happened, a human must look.
        others = [
            str(r[0])
            for r in conn.execute(
                "SELECT datname FROM pg_database WHERE starts_with(datname, %s) ORDER BY 1", (live[:20],)
            )
            if SHADOW_MARK in str(r[0]) or "_before_rollback_" in str(r[0])
        ]
        raise DatabaseError(
            f"the live database {live} does not exist; the bot's switch renames in one transaction and"
            " cannot have left it so, so nothing was changed",
            hint="look at what else exists before renaming anything back by hand"
            + (f": {', '.join(others[:5])}" if others else ""),
        )
    if row[0]:
        return []
    # Waits (lock_timeout) for a dying switch transaction still holding the database to roll back.
    admin.set_allow_connections(conn, live, True)
    return [
        f"the live database {live} accepts connections again (an interrupted switch had closed it"
        " before swapping anything; it still holds the data it had before the restore)"
    ]
