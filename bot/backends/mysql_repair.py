"""Cleaning up after a MySQL/MariaDB restore whose process was killed (kill -9, a host crash) midway.

The states a crash can leave, in the order mysql.py and mysql_objects.swap_in go through them:

1. Killed while the dump loads: a shadow database, complete or not, and the live one as it was. The
   `mysql` client runs in its own process group (dbtools.run_tool), so it outlives the bot, still
   reading the dump into the shadow. discard() kills the sessions using the shadow before dropping
   it; the client is started with --skip-reconnect, so it ends instead of reconnecting (it would
   reconnect to the shadow's NAME, and fill a new shadow of a retried restore with stale rows).
2. Killed after the kept database was created but before its journal was written: an empty
   `<live>_before_rollback_<stamp>` database, live untouched. It never held anything: dropped.
3. Journal written, live views and triggers dropped (all, some or none), RENAME not done. The
   dead bot's RENAME may still be waiting on the server for a metadata lock (the server notices a
   dead client only when it next talks to it), so it is killed first; then the live views and
   triggers are recreated from the journal and the kept database (journal only) dropped.
4. RENAME done (it is one atomic statement: tables are never half moved), objects not all
   recreated: the switch is finished from the journal (live gets the dump's views, triggers,
   routines and events; kept gets the old ones, events disabled), then the journal is dropped.
5. Swap complete: no journal is left; nothing to repair. The shadow (empty, or with the dump's
   routines) may remain for discard() if the crash came before swap_in dropped it.
6. Killed while the shadow's CREATE DATABASE waited for a lock (a backup's FLUSH TABLES WITH READ
   LOCK or BACKUP STAGE holds off every DDL): the server goes on waiting for the dead bot and creates
   the shadow once the lock is free, after cleanup or a retry looked and found none (a shadow nobody
   drops; the retry's CREATE DATABASE fails). exists_settled() ends such a statement first.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from bot import format as fmt
from bot.backends import mysql_objects as objs
from bot.backends import mysql_routines as routines
from bot.backends.dbtools import fit_name
from bot.errors import DatabaseError

NAME_MAX = 64
KEPT_MARK = "_before_rollback_"
_KEPT_TAIL = re.compile(r"[0-9]{12}(?:_[0-9]{1,4})?")


def is_kept_name(live: str, name: str) -> bool:
    _, mark, tail = name.rpartition(KEPT_MARK)
    return bool(mark) and bool(_KEPT_TAIL.fullmatch(tail)) and fit_name(live, mark + tail, max_bytes=NAME_MAX) == name


def exists_settled(conn: Any, shadow: str, *, timeout_s: float) -> bool:
    """Does the shadow exist, once no dead bot's CREATE DATABASE of it is still waiting on the server?

    Shadow names are per run, so a CREATE DATABASE of this one is this run's own, from an earlier
    (crashed) attempt: matched by its text and killed. One we may not kill is left: the check then
    says what it finds.
    """
    creating = f"CREATE DATABASE {objs.q(shadow)}"
    _end_statements(conn, lambda text: text.startswith(creating), timeout_s=timeout_s)
    return objs.schema_exists(conn, shadow)


def _end_statements(conn: Any, is_ours: Callable[[str], bool], *, timeout_s: float) -> bool:
    """Kill the sessions (never ours) running a statement `is_ours` picks by its text, until none is
    left or `timeout_s` passes. → whether none is left."""
    query = "SELECT ID, INFO FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND INFO IS NOT NULL"
    deadline = time.monotonic() + timeout_s
    while True:
        running = [int(r[0]) for r in objs.rows(conn, query) if is_ours(str(r[1]).strip())]
        if not running:
            return True
        if time.monotonic() > deadline:
            return False
        for session in running:
            with suppress(Exception):  # gone meanwhile, or not ours to kill: the loop sees which
                objs.run(conn, f"KILL CONNECTION {session}")
        time.sleep(0.1)


def discard(conn: Any, shadow: str, *, timeout_s: float) -> str | None:
    if not exists_settled(conn, shadow, timeout_s=timeout_s):
        return None
    size = objs.rows(
        conn,
        "SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
        (shadow,),
    )[0][0]
    killed = objs.kill_sessions(conn, [shadow], timeout_s=timeout_s)  # an orphaned `mysql` still loading it
    objs.run(conn, "SET SESSION lock_wait_timeout = %s", (max(1, int(timeout_s)),))
    objs.run(conn, f"DROP DATABASE IF EXISTS {objs.q(shadow)}")
    said = f"dropped the leftover shadow database {shadow} ({fmt.size(int(size or 0))})"
    return said + (f" after closing {killed} session(s) still using it" if killed else "")


def repair_swap(conn: Any, live: str, *, timeout_s: float) -> list[str]:
    objs.run(conn, "SET SESSION lock_wait_timeout = %s", (max(1, int(timeout_s)),))
    said: list[str] = []
    candidates = objs.rows(
        conn,
        "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE %s ORDER BY 1",
        ("%\\_before\\_rollback\\_%",),
    )
    for kept in [str(r[0]) for r in candidates if is_kept_name(live, str(r[0]))]:
        kept_tables = objs.tables(conn, kept)
        if objs.JOURNAL in kept_tables:
            said += _settle(conn, objs.read_journal(conn, kept), timeout_s=timeout_s)
        elif not kept_tables and _empty(conn, kept):
            objs.run(conn, f"DROP DATABASE IF EXISTS {objs.q(kept)}")
            said.append(f"dropped {kept}, an empty database an interrupted switch had created (it never held data)")
    return said


def _empty(conn: Any, db: str) -> bool:
    checks = [
        ("TABLES", "TABLE_SCHEMA"),
        ("ROUTINES", "ROUTINE_SCHEMA"),
        ("EVENTS", "EVENT_SCHEMA"),
        ("TRIGGERS", "TRIGGER_SCHEMA"),
    ]
    return not any(
        objs.rows(conn, f"SELECT 1 FROM information_schema.{t} WHERE {c} = %s LIMIT 1", (db,)) for t, c in checks
    )


def _stop_dead_statements(conn: Any, j: objs.Journal, *, timeout_s: float) -> None:
    """Kill the crashed bot's own statements still running on the server, so the state stops moving.

    Matched by their exact text, rebuilt from the journal: nobody else's session is touched.
    """
    mine = {f"DROP {o.kind} IF EXISTS {objs.q(j.live)}.{objs.q(o.name)}" for o in j.old.triggers + j.old.views}
    if j.live_tables or j.new_tables:
        mine.add(
            objs.rename_statement(
                live=j.live, kept=j.kept, shadow=j.shadow, live_tables=j.live_tables, new_tables=j.new_tables
            )
        )
    if _end_statements(conn, lambda text: text in mine, timeout_s=timeout_s):
        return
    raise DatabaseError(
        f"the interrupted switch of {j.live} still has a statement running on the server; nothing was changed",
        hint="kill it (SHOW PROCESSLIST) or wait for it, then repair again",
    )


def _settle(conn: Any, j: objs.Journal, *, timeout_s: float) -> list[str]:
    _stop_dead_statements(conn, j, timeout_s=timeout_s)
    # The kept database is where the live tables go, and only the RENAME puts them there.
    if j.live_tables:
        renamed = j.live_tables[0] in objs.tables(conn, j.kept)
    else:
        renamed = j.renamed or (bool(j.new_tables) and j.new_tables[0] in objs.tables(conn, j.live))
    return _finish(conn, j) if renamed else _roll_back(conn, j)


def _roll_back(conn: Any, j: objs.Journal) -> list[str]:
    lost = objs.create(conn, j.live, j.old.views + j.old.triggers, skip_existing=True)
    if [t for t in objs.tables(conn, j.kept) if t != objs.JOURNAL]:  # cannot be: then it was renamed
        raise DatabaseError(f"{j.kept} holds tables although the switch journal says none moved; nothing dropped")
    objs.run(conn, f"DROP DATABASE IF EXISTS {objs.q(j.kept)}")
    if lost:
        raise DatabaseError(
            f"{j.live} has its tables as they were, but these views or triggers could not be put back after an"
            f" interrupted switch: {'; '.join(lost[:5])}",
            hint="recreate them by hand from the pre-rollback dump",
        )
    return [
        f"put {j.live} back as it was: a switch interrupted before moving any table had removed its views and"
        f" triggers ({len(j.old.views)} views, {len(j.old.triggers)} triggers recreated); dropped the unused {j.kept}"
    ]


def _finish(conn: Any, j: objs.Journal) -> list[str]:
    # Whatever the crash left half made, drop it by name and make it again: idempotent. Routines and
    # events the dump has unchanged were never touched (mysql_routines): they keep their grants.
    gone, coming = routines.replaced(j.old.routines + j.old.events, j.new.routines + j.new.events)
    for o in gone + coming + j.new.views + j.new.triggers:
        objs.run(conn, f"DROP {o.kind} IF EXISTS {objs.q(j.live)}.{objs.q(o.name)}")
    events = [o for o in coming if o.kind == "EVENT"]
    failed = objs.create(conn, j.live, [o for o in coming if o not in events] + j.new.views + j.new.triggers + events)
    why = "" if j.routine_grants is not None else "not readable when the switch began"
    given = routines.give_back(conn, j.live, j.routine_grants, why, gone, coming)
    old = j.old.routines + j.old.views + j.old.triggers + j.old.events
    not_copied = objs.create(conn, j.kept, old, disable_events=True, skip_existing=True)
    objs.run(conn, f"DROP TABLE IF EXISTS {objs.q(j.kept)}.{objs.q(objs.JOURNAL)}")
    if failed:
        raise DatabaseError(
            f"{j.live} holds the restored tables (previous data kept as {j.kept}) but its views, triggers,"
            f" routines or events are not all back after an interrupted switch: {'; '.join(failed[:5])}",
            hint="recreate the missing ones by hand from the dump, then check the application",
        )
    said = [
        f"finished a switch interrupted after its RENAME: {j.live} holds the restored tables with the dump's"
        f" views, triggers, routines and events; the previous data is kept as {j.kept}"
    ]
    return said + given + [f"not copied to {j.kept}: {w}" for w in not_copied]
