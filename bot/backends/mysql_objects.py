"""The SQL half of the MySQL/MariaDB backend: schema objects and the atomic table swap.

MySQL has no "rename database", so the swap moves tables: one `RENAME TABLE live.t TO kept.t, …,
shadow.t TO live.t, …` statement, which the server applies atomically (all or nothing). Two kinds of
object cannot ride along and are recreated from their own SHOW CREATE text instead:

- views and triggers: the server refuses to move a view to another database, or a table that has
  triggers ("Trigger in wrong schema"). They are dropped just before the rename and recreated just
  after it. Limit: a write landing in that sub-second window does not fire the (missing) triggers.
- routines and events belong to the database, not to a table: the live ones that differ from the
  dump's are replaced by them (mysql_routines: the unchanged ones are left alone, and the replaced
  routines get their GRANT EXECUTE … ON FUNCTION back where the bot may). The kept copy gets the old
  routines, views and triggers back, and the old events disabled so that they do not run against it.
Database-, table- and column-level grants are by name and so keep applying to the live database, as do
the database's default character set, collation and comment (the live database itself stays).

Because the live views and triggers are dropped before the RENAME, and their definitions would
otherwise live only in the bot's memory, the swap first writes a journal (every definition, both
table lists, and whether the RENAME happened) into a table of the kept database, and drops it last.
After a crash mysql_repair reads it to put the live database back, or to finish the switch.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

import pymysql
import pymysql.charset

from bot.backends import mysql_routines as routines
from bot.backends.dbtools import one_line
from bot.errors import RestoreFailed

if TYPE_CHECKING:
    from bot.backends.mysql_routines import RoutineGrant

TABLE_TYPES = ("BASE TABLE", "SEQUENCE", "SYSTEM VERSIONED")  # what RENAME TABLE can move between databases
_WORD = re.compile(r"^\w+$")
_ALREADY_EXISTS = {1050, 1304, 1359, 1537}  # table/view, routine, trigger, event
_EVENT_STATE = re.compile(r" ON COMPLETION (NOT )?PRESERVE (ENABLE|DISABLE ON SLAVE|DISABLE)\b")


@dataclass(frozen=True)
class SchemaObject:
    """One view, trigger, routine or event, as SHOW CREATE tells it, with the session it needs."""

    kind: str  # "VIEW" | "TRIGGER" | "PROCEDURE" | "FUNCTION" | "EVENT"
    name: str
    create: str
    sql_mode: str | None
    charset_client: str
    collation_connection: str
    time_zone: str | None = None


@dataclass(frozen=True)
class Objects:
    views: list[SchemaObject]
    triggers: list[SchemaObject]
    routines: list[SchemaObject]
    events: list[SchemaObject]

    def count(self) -> int:
        return len(self.views) + len(self.triggers) + len(self.routines) + len(self.events)


JOURNAL = "rollback_bot_swap_journal"  # a table of the kept database while a swap is under way


def q(name: str) -> str:
    """A backtick-quoted identifier."""
    return "`" + name.replace("`", "``") + "`"


def create_database(name: str, charset: str, collation: str) -> str:
    """CREATE DATABASE like the live one.

    Built as text, without parameters: pymysql would take a '%' in a name for a placeholder.
    Character set names are plain words; anything else is left to the server's default.
    """
    if not (_WORD.match(charset) and _WORD.match(collation)):
        return f"CREATE DATABASE {q(name)}"
    return f"CREATE DATABASE {q(name)} CHARACTER SET {charset} COLLATE {collation}"


def rows(conn: Any, query: str, args: tuple[Any, ...] | None = None) -> list[tuple[Any, ...]]:
    with conn.cursor() as cur:
        cur.execute(query, args)
        return list(cur.fetchall())


def run(conn: Any, statement: str | bytes, args: tuple[Any, ...] | None = None) -> None:
    with conn.cursor() as cur:
        if isinstance(statement, bytes):
            conn.query(statement)  # already encoded in the object's own client character set
        else:
            cur.execute(statement, args)


def schema_exists(conn: Any, name: str) -> bool:
    return bool(rows(conn, "SELECT 1 FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (name,)))


def tables(conn: Any, db: str) -> list[str]:
    placeholders = ", ".join(["%s"] * len(TABLE_TYPES))
    return [
        str(r[0])
        for r in rows(
            conn,
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s"
            f" AND TABLE_TYPE IN ({placeholders}) ORDER BY TABLE_NAME",
            (db, *TABLE_TYPES),
        )
    ]


def capture(conn: Any, db: str) -> Objects:
    """Every view, trigger, routine and event of `db`, with names unqualified relative to `db`.

    SHOW CREATE omits the database name of objects in the current database, which is what lets the
    same text be replayed in another database; hence the USE.
    """
    run(conn, f"USE {q(db)}")
    views = [
        SchemaObject("VIEW", str(name), str(r[1]), None, str(r[2]), str(r[3]))
        for (name,) in rows(
            conn,
            "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s ORDER BY TABLE_NAME",
            (db,),
        )
        for r in rows(conn, f"SHOW CREATE VIEW {q(str(name))}")
    ]
    triggers = [
        SchemaObject("TRIGGER", str(name), str(r[2]), str(r[1]), str(r[3]), str(r[4]))
        for (name,) in rows(
            conn,
            "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s"
            " ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, ACTION_ORDER",
            (db,),
        )
        for r in rows(conn, f"SHOW CREATE TRIGGER {q(str(name))}")
    ]
    routines = [
        SchemaObject(str(kind), str(name), str(r[2]), str(r[1]), str(r[3]), str(r[4]))
        for name, kind in rows(
            conn,
            "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s"
            " AND ROUTINE_TYPE IN ('PROCEDURE', 'FUNCTION') ORDER BY ROUTINE_TYPE, ROUTINE_NAME",
            (db,),
        )
        for r in rows(conn, f"SHOW CREATE {kind} {q(str(name))}")
    ]
    events = [
        SchemaObject("EVENT", str(name), str(r[3]), str(r[1]), str(r[4]), str(r[5]), time_zone=str(r[2]))
        for (name,) in rows(
            conn,
            "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s ORDER BY EVENT_NAME",
            (db,),
        )
        for r in rows(conn, f"SHOW CREATE EVENT {q(str(name))}")
    ]
    return Objects(views=views, triggers=triggers, routines=routines, events=events)


def drop(conn: Any, db: str, objects: list[SchemaObject]) -> None:
    for obj in objects:
        run(conn, f"DROP {obj.kind} IF EXISTS {q(db)}.{q(obj.name)}")


def create(
    conn: Any,
    db: str,
    objects: list[SchemaObject],
    *,
    disable_events: bool = False,
    skip_existing: bool = False,
) -> list[str]:
    """Recreate `objects` in `db`, each in the session it was created in; return what failed.

    Views may depend on views: those that fail are retried while any progress is made.
    `skip_existing` counts "already exists" as success (for undoing a partly done drop).
    """
    run(conn, f"USE {q(db)}")
    original_mode = str(rows(conn, "SELECT @@SESSION.sql_mode")[0][0])
    original_tz = str(rows(conn, "SELECT @@SESSION.time_zone")[0][0])
    pending = list(objects)
    failures: dict[str, str] = {}
    try:
        while pending:
            retry: list[SchemaObject] = []
            for obj in pending:
                try:
                    _create_one(conn, obj, disable_events=disable_events)
                    failures.pop(obj.name, None)
                except pymysql.MySQLError as exc:
                    if skip_existing and exc.args and exc.args[0] in _ALREADY_EXISTS:
                        failures.pop(obj.name, None)
                        continue
                    failures[obj.name] = f"{obj.kind.lower()} {obj.name}: {exc.args[-1] if exc.args else exc}"
                    retry.append(obj)
            if len(retry) == len(pending):
                break
            pending = retry
    finally:
        run(conn, "SET NAMES utf8mb4")
        run(conn, "SET SESSION sql_mode = %s, time_zone = %s", (original_mode, original_tz))
    return list(failures.values())


def _create_one(conn: Any, obj: SchemaObject, *, disable_events: bool) -> None:
    settings = ["character_set_client = %s", "collation_connection = %s"]
    args: list[str] = [obj.charset_client, obj.collation_connection]
    if obj.sql_mode is not None:
        settings.append("sql_mode = %s")
        args.append(obj.sql_mode)
    if obj.time_zone is not None:
        settings.append("time_zone = %s")
        args.append(obj.time_zone)
    text = obj.create
    if obj.kind == "EVENT" and disable_events:
        text = _EVENT_STATE.sub(lambda m: f" ON COMPLETION {m.group(1) or ''}PRESERVE DISABLE", text, count=1)
    run(conn, "SET SESSION " + ", ".join(settings), tuple(args))
    try:
        encoding = pymysql.charset.charset_by_name(obj.charset_client).encoding
    except (KeyError, AttributeError):
        encoding = "utf8"
    run(conn, text.encode(encoding, "surrogateescape"))


def kill_sessions(conn: Any, dbs: list[str], *, timeout_s: float) -> int:
    """Disconnect every session whose current database is one of `dbs`; return how many we killed.

    Sessions we may not kill are left: their metadata locks make the RENAME wait, up to
    lock_wait_timeout, and then fail as a whole, which leaves everything as it was.
    """
    placeholders = ", ".join(["%s"] * len(dbs))
    query = (
        "SELECT ID FROM information_schema.PROCESSLIST"
        f" WHERE DB IN ({placeholders}) AND ID <> CONNECTION_ID() AND COMMAND <> 'Killed'"
    )
    killed: set[int] = set()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ids = [int(r[0]) for r in rows(conn, query, tuple(dbs))]
        fresh = [i for i in ids if i not in killed]
        if not fresh:
            break
        for session in fresh:
            with suppress(pymysql.MySQLError):  # not ours to kill, or already gone
                run(conn, f"KILL CONNECTION {session}")
            killed.add(session)
        time.sleep(0.1)
    return len(killed)


def pct(name: str) -> str:
    """An identifier for a statement run with parameters (pymysql would read a '%' in it as one)."""
    return q(name).replace("%", "%%")


@dataclass(frozen=True)
class Journal:
    """What a swap needs to be undone or finished by someone who was not there."""

    live: str
    shadow: str
    kept: str
    live_tables: list[str]
    new_tables: list[str]
    old: Objects
    new: Objects
    renamed: bool = False
    routine_grants: list[RoutineGrant] | None = None  # None: unreadable (mysql_routines)

    def to_bytes(self) -> bytes:
        # ensure_ascii: a definition that is not valid UTF-8 still round-trips, escaped.
        return json.dumps(asdict(self)).encode("ascii")

    @staticmethod
    def from_bytes(raw: bytes) -> Journal:
        data = json.loads(raw)

        def objects(d: dict[str, list[dict[str, Any]]]) -> Objects:
            return Objects(**{k: [SchemaObject(**o) for o in v] for k, v in d.items()})

        grants = data.get("routine_grants")  # JSON made the tuples lists
        data["routine_grants"] = None if grants is None else [tuple(g) for g in grants]
        return Journal(**{**data, "old": objects(data["old"]), "new": objects(data["new"])})


def write_journal(conn: Any, journal: Journal) -> None:
    table = f"{pct(journal.kept)}.{q(JOURNAL)}"
    run(conn, f"CREATE TABLE {table} (id INT PRIMARY KEY, renamed BOOL NOT NULL, body LONGBLOB NOT NULL) ENGINE=InnoDB")
    run(conn, f"INSERT INTO {table} VALUES (1, 0, %s)", (journal.to_bytes(),))


def read_journal(conn: Any, kept: str) -> Journal:
    row = rows(conn, f"SELECT renamed, body FROM {q(kept)}.{q(JOURNAL)} WHERE id = 1")[0]
    return replace(Journal.from_bytes(bytes(row[1])), renamed=bool(row[0]))


def rename_statement(*, live: str, kept: str, shadow: str, live_tables: list[str], new_tables: list[str]) -> str:
    moves = [f"{q(live)}.{q(t)} TO {q(kept)}.{q(t)}" for t in live_tables]
    moves += [f"{q(shadow)}.{q(t)} TO {q(live)}.{q(t)}" for t in new_tables]
    return "RENAME TABLE " + ", ".join(moves)


def swap_in(
    conn: Any,
    *,
    live: str,
    shadow: str,
    kept: str,
    charset: tuple[str, str],
    timeout_s: float,
    say: Callable[[str], None],
) -> tuple[str, int, list[str]]:
    """Move live's tables to `kept` and the shadow's into live; return (kept, sessions killed, warnings).

    Raises RestoreFailed saying what state things are in: before the RENAME everything is undone;
    after it the data swap stands and only what is missing is reported.
    """
    untouched = f"the live database {live} was not touched"
    try:
        new = capture(conn, shadow)
        old = capture(conn, live)
        grants, unreadable = routines.read_grants(conn, live)
        drop(conn, shadow, new.views + new.triggers)
        live_tables, new_tables = tables(conn, live), tables(conn, shadow)
        if JOURNAL in live_tables:
            raise RestoreFailed(
                f"{live} has a table named {JOURNAL}, the name the switch journals under; {untouched}",
                hint="rename that table, then retry",
            )
        run(conn, create_database(kept, *charset))
        write_journal(conn, Journal(live, shadow, kept, live_tables, new_tables, old, new, routine_grants=grants))
        say(f"switching: closing connections to {live}")
        killed = kill_sessions(conn, [live, shadow], timeout_s=timeout_s)
        run(conn, "SET SESSION lock_wait_timeout = %s", (max(1, int(timeout_s)),))
    except pymysql.MySQLError as exc:
        raise RestoreFailed(
            f"could not prepare the switch: {one_line(exc)}; {untouched}",
            hint="the bot's user needs SHOW VIEW, TRIGGER, EVENT and CREATE ROUTINE on the database",
        ) from None
    try:
        drop(conn, live, old.triggers + old.views)  # they cannot move with the tables
        if live_tables or new_tables:
            statement = rename_statement(
                live=live, kept=kept, shadow=shadow, live_tables=live_tables, new_tables=new_tables
            )
            run(conn, statement)  # atomic: every table moves, or none does
        with suppress(pymysql.MySQLError):  # only a shortcut: repair also sees where the tables are
            run(conn, f"UPDATE {q(kept)}.{q(JOURNAL)} SET renamed = 1")
    except pymysql.MySQLError as exc:
        raise RestoreFailed(
            f"could not switch {live} to the restored data: {one_line(exc)}; {_undo(conn, live, old, kept)};"
            " the restored copy was dropped",
            hint="retry when the sessions using it are gone (or stop the app first)",
        ) from None
    say(f"switched: {live} now holds the restored tables; previous tables are in {kept}")
    # From here on the data swap has happened: failures are reported, never undone.
    try:
        gone, coming = routines.replaced(old.routines + old.events, new.routines + new.events)
        drop(conn, live, gone)
        events = [o for o in coming if o.kind == "EVENT"]
        failed = create(conn, live, [o for o in coming if o not in events] + new.views + new.triggers + events)
        warnings = routines.give_back(conn, live, grants, unreadable, gone, coming)
        leftovers = old.routines + old.views + old.triggers + old.events
        warnings += [f"not copied to {kept}: {f}" for f in create(conn, kept, leftovers, disable_events=True)]
        run(conn, f"DROP DATABASE IF EXISTS {q(shadow)}")
        run(conn, f"DROP TABLE IF EXISTS {q(kept)}.{q(JOURNAL)}")  # last: until here a repair can finish
    except pymysql.MySQLError as exc:
        failed = [one_line(exc)]
    if failed:
        raise RestoreFailed(
            f"{live} holds the restored tables (previous data kept as {kept}) but its views, triggers,"
            f" routines or events are not all back: {'; '.join(failed[:5])}",
            hint="recreate the missing ones by hand from the dump, then check the application",
        )
    return kept, killed, warnings


def _undo(conn: Any, live: str, old: Objects, kept: str) -> str:
    """Put back the views and triggers dropped before a RENAME that failed; say what state that is."""
    try:
        lost = create(conn, live, old.views + old.triggers, skip_existing=True)
        run(conn, f"DROP DATABASE IF EXISTS {q(kept)}")
    except pymysql.MySQLError as exc:
        return f"{live} has its tables as they were but may miss views or triggers ({one_line(exc)})"
    if lost:
        return f"{live} has its tables as they were but misses: {'; '.join(lost)}"
    return f"{live} is as it was"
