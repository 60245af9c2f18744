"""PostgreSQL standbys (prestage = true): a restore point restored beside the live database ahead of time.

`snapshot` restores the restore point into `<live>_rb_shadow_standby` exactly as a rollback would
(postgres_restore's hooks: pg_restore, ANALYZE, the live database's properties), then closes it to
connections. A rollback then checks that it is that very database (same oid: a dropped and re-created
one gets a new oid) and still closed to connections (so nothing can have written to it: opening it
takes its owner or a superuser, on purpose), checks that the live database's properties and extension
versions are still the standby's (grants, settings or an extension may have changed since the snapshot:
then the standby is unusable and the rollback takes the normal path, which says so), opens it, and
swaps it in with the rollback's own swap (postgres_restore.swap, so crash repair is the same too).

The kept database a swap leaves is closed to connections; dump_kept opens it just long enough for
pg_dump (whose snapshot makes the dump one consistent state) and closes it again.

One build at a time: two snapshots of one environment (two deploys in quick succession, on two
replicas or CI runners) would otherwise drop each other's standby half-way. `build_lock` is a
PostgreSQL advisory lock named after the standby, on the maintenance database, held by the builder's
session for the whole build: the server itself serialises the builders, and frees the lock if the
builder dies. The engine decides, once it has the lock, whether its restore point is still the newest.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from bot.backends import postgres_admin as admin
from bot.backends import postgres_extensions as extensions
from bot.backends import postgres_properties as properties
from bot.backends import postgres_repair as repair
from bot.backends.base import DumpInfo, Progress, Standby
from bot.backends.dbtools import one_line
from bot.backends.postgres_restore import PostgresRestore
from bot.backends.reporter import Reporter
from bot.backends.restore import StagedAside, stage_aside
from bot.errors import RestoreFailed, StandbyUnusable

if TYPE_CHECKING:
    from bot.backends.postgres import PostgresDatabase

STANDBY_TAG = "standby"
_LOCK_POLL_S = 1.0
_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtextextended(%s, 0))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended(%s, 0))"


def standby_name(db: PostgresDatabase) -> str:
    return db.shadow_name(STANDBY_TAG)


def build(db: PostgresDatabase, source: Path, *, label: str, progress: Progress) -> Standby:
    name = standby_name(db)
    # stage_aside drops the previous standby first (same name), and drops this one if anything fails.
    staged = stage_aside(PostgresRestore(db, source), progress=progress, shadow=name)
    try:
        with db.admin_session(f"the standby {name} may still accept connections") as conn:
            admin.set_allow_connections(conn, name, False)
            admin.disconnect_others(conn, name, timeout_s=db.swap_timeout_s)
            info = admin.database_info(conn, name)
    except BaseException:
        staged.discard(progress=progress)
        raise
    assert info is not None  # we just created it and hold its only name
    Reporter(progress).say(f"standby {name} holds {label}, closed to connections until a rollback swaps it in")
    return Standby(database=name, oid=info.oid, label=label)


@contextmanager
def build_lock(db: PostgresDatabase, *, progress: Progress) -> Iterator[None]:
    """Hold the standby's build lock for the block; wait (saying so) while another builder holds it.

    Waits at most the tool timeout, the longest a builder's pg_restore may take; RestoreFailed then.
    The lock is the session's: closing the session when the block ends frees it, whatever happened.
    """
    name = standby_name(db)
    key = f"rollback-bot standby {name}"
    untouched = f"the standby {name} was not touched"
    try:
        conn = db.connect(db.maintenance_db, timeout_s=db.connect_timeout_s)
    except psycopg.Error as exc:
        raise RestoreFailed(
            f"cannot connect to the maintenance database {db.maintenance_db}: {one_line(exc)}; {untouched}"
        ) from None
    with conn:
        try:
            _wait_for_turn(conn, key, name, progress=progress, deadline=time.monotonic() + db.tool_timeout_s)
        except psycopg.Error as exc:  # only waiting is ours to explain: what the block raises is the build's
            raise RestoreFailed(f"could not take the standby's build lock: {one_line(exc)}; {untouched}") from None
        try:
            yield
        finally:
            with suppress(psycopg.Error):  # a session that broke took its lock with it
                conn.execute(_UNLOCK, (key,))


def _wait_for_turn(conn: admin.Conn, key: str, name: str, *, progress: Progress, deadline: float) -> None:
    said = False
    while not _take(conn, key):
        if not said:
            Reporter(progress).say(f"another snapshot is building the standby {name}: waiting for it to finish")
            said = True
        if time.monotonic() > deadline:
            raise RestoreFailed(f"another snapshot was still building the standby {name}; it was not touched")
        time.sleep(_LOCK_POLL_S)


def _take(conn: admin.Conn, key: str) -> bool:
    row = conn.execute(_TRY_LOCK, (key,)).fetchone()
    return bool(row and row[0])


def stage(db: PostgresDatabase, standby: Standby, *, label: str) -> StagedAside:
    started = time.monotonic()
    hooks = PostgresRestore(db, Path(label))
    hooks.untouched = f"the live database {db.name} was not touched"
    with db.admin_session(hooks.untouched) as conn:
        found = conn.execute(
            "SELECT oid::bigint, datallowconn FROM pg_database WHERE datname = %s", (standby.database,)
        ).fetchone()
        if found is None:
            raise StandbyUnusable(f"the standby {standby.database} does not exist any more")
        if int(found[0]) != standby.oid:
            raise StandbyUnusable(f"{standby.database} is not the standby the snapshot built (it was re-created)")
        if found[1]:
            raise StandbyUnusable(f"the standby {standby.database} was opened to connections: it may have changed")
        live = admin.database_info(conn, db.name)
        if live is None:
            raise RestoreFailed(f"the live database {db.name} does not exist on {db.describe()}; nothing was restored")
        if _properties(conn, db.name) != _properties(conn, standby.database):
            # Copying them over would only add; the normal path creates its shadow from them afresh.
            raise StandbyUnusable(
                f"the owner, grants, settings, comment or labels of {db.name} differ from the standby"
                f" {standby.database}'s (changed since it was built, or not carried over)"
            )
        hooks.info = live
        hooks.ownership = "as when the standby was built"
        admin.set_allow_connections(conn, standby.database, True)  # a failed swap drops it, as any shadow
    changed = _extensions_changed(db, standby.database)  # read once open: pg_extension is per database
    if changed:
        raise StandbyUnusable(changed)
    return StagedAside(hooks, standby.database, None, [], started)


def drop(db: PostgresDatabase) -> str | None:
    name = standby_name(db)
    with db.admin_session(f"the standby {name} may still exist") as conn:
        return repair.discard(conn, name)


def dump_kept(db: PostgresDatabase, kept: str, dest: Path, *, progress: Progress) -> DumpInfo:
    if "_before_rollback_" not in kept:
        raise RestoreFailed(f"{kept} is not a database kept by a rollback's swap; nothing was dumped")
    sibling = copy.copy(db)  # the same server and credentials, another database
    sibling.name = kept
    sibling._params = {**db._params, "dbname": kept}
    with db.admin_session(f"{kept} is kept as it was") as conn:
        if not admin.exists(conn, kept):
            raise RestoreFailed(f"the kept database {kept} does not exist: the pre-rollback state cannot be dumped")
        admin.set_allow_connections(conn, kept, True)
    try:
        return sibling.dump(dest, progress=progress)
    finally:
        with db.admin_session(f"{kept} may still accept connections") as conn:
            admin.set_allow_connections(conn, kept, False)


def _properties(conn: admin.Conn, name: str) -> properties.Properties | None:
    """What the application sees of a database itself: everything a restore carries over from the live one
    (postgres_properties: owner, ACL, connection limit, settings, comment, security labels)."""
    return properties.read(conn, name)


def _extensions_changed(db: PostgresDatabase, standby: str) -> str | None:
    """Why the standby's extension versions are not the live ones any more (a restore takes the live one's)."""
    try:
        with db.connect(db.name, timeout_s=db.connect_timeout_s) as conn:
            live = extensions.installed(conn)
        with db.connect(standby, timeout_s=db.connect_timeout_s) as conn:
            built = extensions.installed(conn)
    except psycopg.Error as exc:
        return (
            f"the extension versions of {db.name} and of the standby {standby} could not be compared: {one_line(exc)}"
        )
    changed = sorted(name for name in live.keys() & built.keys() if live[name] != built[name])
    if changed:
        return f"the versions of extensions {', '.join(changed)} in {db.name} differ from the standby's"
    return None
