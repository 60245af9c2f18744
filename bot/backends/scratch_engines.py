"""Each engine's part of a scratch copy (bot/backends/scratch.py): its name, URL, size, drop, rows and checks.

The restore itself is the engine's rollback hooks (postgres_restore, mysql_restore, sqlite_restore), so
only what a rollback never does lives here: naming a copy that is never swapped in, reading it back, and
dropping it. Everything that reads runs read-only: PostgreSQL in a READ ONLY transaction, sent with the
extended protocol (one statement, so a check cannot COMMIT its way out), MySQL in START TRANSACTION READ
ONLY without multi-statements, SQLite on a read-only connection.
"""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from contextlib import closing, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlencode

import psycopg
import pymysql
from psycopg import sql

from bot import format as fmt
from bot.backends import mysql_objects as objs
from bot.backends import postgres_admin as admin
from bot.backends import postgres_repair as pg_repair
from bot.backends.dbtools import fit_name, is_shadow_name, one_line
from bot.backends.mysql import MySQLDatabase
from bot.backends.mysql_restore import NAME_MAX as MYSQL_NAME_MAX
from bot.backends.mysql_restore import MySQLRestore
from bot.backends.postgres import PostgresDatabase
from bot.backends.postgres_restore import PostgresRestore
from bot.backends.restore import Loaded
from bot.backends.sqlite import SQLiteDatabase
from bot.backends.sqlite_restore import SQLiteRestore, open_ro
from bot.errors import DatabaseError
from bot.redact import redact

if TYPE_CHECKING:
    from bot.backends.reporter import Reporter
    from bot.backends.restore import RestoreHooks

PURPOSE = re.compile(r"[a-z][a-z0-9]{1,15}")
TAG = re.compile(r"[A-Za-z0-9]{1,32}")
# A rollback's shadow (and the prestaged standby: `_rb_shadow_standby`) and SQLite's staged copy.
RESERVED = frozenset({"shadow", "restore", "standby"})
Rows = list[tuple[Any, ...]]


class ScratchEngine(Protocol):
    what: str  # "scratch database", "scratch copy"

    def name_for(self, purpose: str, tag: str) -> str: ...
    def is_scratch(self, name: str) -> bool: ...
    def hooks(self, source: Path, *, cancel: threading.Event | None) -> RestoreHooks: ...
    def url(self, name: str) -> str: ...
    def size(self, name: str) -> int | None: ...
    def drop(self, name: str) -> str | None: ...
    def row_counts(self, name: str) -> dict[str, int]: ...
    def query(self, name: str, text: str, *, timeout_s: float) -> tuple[Rows | None, int]: ...


def is_scratch_of(base: str, name: str, *, sep: str, max_bytes: int) -> bool:
    """Whether `name` is exactly what `base + sep + "rb_<purpose>_<tag>"` (cut to fit) gives, for a purpose
    that is not a rollback's: reconstructed, never matched by pattern alone, like dbtools.is_shadow_name."""
    head, found, tail = name.rpartition(f"{sep}rb_")
    purpose, _, tag = tail.partition("_")
    if not found or not head or not PURPOSE.fullmatch(purpose) or purpose in RESERVED or not TAG.fullmatch(tag):
        return False
    return name != base and fit_name(base, f"{sep}rb_{purpose}_{tag}", max_bytes=max_bytes) == name


def verdict(rows: Rows | None, columns: int, *, booleans: bool) -> tuple[bool, str]:
    """Passed only for one row of one column holding true (1 where the engine has no boolean type)."""
    if rows is None:
        return False, "no result: a check must be a query"
    if len(rows) != 1 or columns != 1:
        return False, f"{len(rows)} row(s) of {columns} column(s), not one value"
    value = rows[0][0]
    passed = value is True or (not booleans and type(value) is int and value == 1)
    if value is None:
        return passed, "NULL"
    if isinstance(value, bool):
        return passed, "true" if value else "false"
    return passed, " ".join(redact(str(value)).split())[:120]


# --- PostgreSQL ------------------------------------------------------------------------------------------

_PG_TABLES = """
SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
ORDER BY 1, 2
"""


class PostgresScratch:
    what = "scratch database"

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    def name_for(self, purpose: str, tag: str) -> str:
        return fit_name(self.db.name, f"_rb_{purpose}_{tag}", max_bytes=admin.PG_NAME_MAX)

    def is_scratch(self, name: str) -> bool:
        live, limit = self.db.name, admin.PG_NAME_MAX
        return is_scratch_of(live, name, sep="_", max_bytes=limit) and not is_shadow_name(live, name, max_bytes=limit)

    def hooks(self, source: Path, *, cancel: threading.Event | None) -> RestoreHooks:
        return PostgresRestore(self.db, source, cancel=cancel)

    def url(self, name: str) -> str:
        # The backend keeps the URL's parts, not the URL: rebuilt here with the copy's name.
        params = {k: v for k, v in self.db._params.items() if k != "dbname"}
        user, host, port = params.pop("user", ""), params.pop("host", ""), params.pop("port", "")
        password = self.db._password
        auth = quote(user, safe="") + (f":{quote(password, safe='')}" if password else "")
        if host and "/" not in host and "," not in host:
            where = (f"[{host}]" if ":" in host else quote(host, safe="")) + (f":{port}" if port else "")
        else:  # a socket folder or several hosts: libpq reads them from the query string
            where = ""
            params.update({k: v for k, v in (("host", host), ("port", port)) if v})
        query = f"?{urlencode(params)}" if params else ""
        return f"postgresql://{auth + '@' if auth else ''}{where}/{quote(name, safe='')}{query}"

    def size(self, name: str) -> int | None:
        with self.db.admin_session("") as conn:
            return pg_repair.shadow_size(conn, name)

    def drop(self, name: str) -> str | None:
        with self.db.admin_session(f"the {self.what} {name} may still exist") as conn:
            if not admin.exists(conn, name):
                return None
            size = pg_repair.drop_shadow(conn, name)  # closed to connections first, then DROP … WITH (FORCE)
        return f"dropped the {self.what} {name}" + (f" ({fmt.size(size)})" if size is not None else "")

    def row_counts(self, name: str) -> dict[str, int]:
        counts: dict[str, int] = {}
        try:
            with self.db.connect(name, timeout_s=self.db.connect_timeout_s) as conn, conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")  # one snapshot
                conn.execute("SET LOCAL statement_timeout = 0")
                for schema, table in conn.execute(_PG_TABLES).fetchall():
                    query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
                    row = conn.execute(query).fetchone()
                    counts[f"{schema}.{table}"] = int(row[0]) if row else 0
        except psycopg.Error as exc:
            raise DatabaseError(f"could not count the rows of {name}: {one_line(exc)}") from None
        return counts

    def query(self, name: str, text: str, *, timeout_s: float) -> tuple[Rows | None, int]:
        with (
            self.db.connect(name, timeout_s=self.db.connect_timeout_s) as conn,
            conn.transaction(force_rollback=True),
        ):
            conn.execute("SET TRANSACTION READ ONLY")
            conn.execute("SELECT set_config('statement_timeout', %s, true)", (f"{int(timeout_s * 1000)}ms",))
            cursor = conn.execute(text.encode(), binary=True)  # binary: the extended protocol, one statement
            if cursor.description is None:
                return None, 0
            return list(cursor.fetchall()), len(cursor.description)


# --- MySQL / MariaDB -------------------------------------------------------------------------------------


class MySQLScratch:
    what = "scratch database"

    def __init__(self, db: MySQLDatabase) -> None:
        self.db = db

    def name_for(self, purpose: str, tag: str) -> str:
        return fit_name(self.db.name, f"_rb_{purpose}_{tag}", max_bytes=MYSQL_NAME_MAX)

    def is_scratch(self, name: str) -> bool:
        live, limit = self.db.name, MYSQL_NAME_MAX
        return is_scratch_of(live, name, sep="_", max_bytes=limit) and not is_shadow_name(live, name, max_bytes=limit)

    def hooks(self, source: Path, *, cancel: threading.Event | None) -> RestoreHooks:
        return _MySQLScratchRestore(self.db, source, cancel=cancel)

    def url(self, name: str) -> str:
        db = self.db
        auth = quote(db.user, safe="") + (f":{quote(db._password, safe='')}" if db._password else "")
        host = f"[{db.host}]" if ":" in db.host else quote(db.host, safe="")
        query = f"?{urlencode(db._options)}" if db._options else ""
        return f"mysql://{auth + '@' if auth else ''}{host}:{db.port}/{quote(name, safe='')}{query}"

    def size(self, name: str) -> int | None:
        with self.db.admin_session("") as conn:
            return _mysql_size(conn, name)

    def drop(self, name: str) -> str | None:
        timeout_s = self.db.swap_timeout_s
        with self.db.admin_session(f"the {self.what} {name} may still exist") as conn:
            if not objs.schema_exists(conn, name):
                return None
            size = _mysql_size(conn, name)
            objs.kill_sessions(conn, [name], timeout_s=timeout_s)  # a `mysql` client still loading it
            objs.run(conn, "SET SESSION lock_wait_timeout = %s", (max(1, int(timeout_s)),))
            objs.run(conn, f"DROP DATABASE IF EXISTS {objs.q(name)}")
        return f"dropped the {self.what} {name}" + (f" ({fmt.size(size)})" if size is not None else "")

    def row_counts(self, name: str) -> dict[str, int]:
        try:
            with closing(self.db.connect(name, timeout_s=self.db.connect_timeout_s)) as conn:
                objs.run(conn, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
                tables = objs.rows(
                    conn,
                    "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s"
                    " AND TABLE_TYPE IN ('BASE TABLE', 'SYSTEM VERSIONED') ORDER BY 1",
                    (name,),
                )
                counts = {
                    str(t): int(objs.rows(conn, f"SELECT COUNT(*) FROM {objs.q(name)}.{objs.q(str(t))}")[0][0])
                    for (t,) in tables
                }
                objs.run(conn, "ROLLBACK")
        except pymysql.MySQLError as exc:
            raise DatabaseError(f"could not count the rows of {name}: {one_line(exc)}") from None
        return counts

    def query(self, name: str, text: str, *, timeout_s: float) -> tuple[Rows | None, int]:
        with closing(self.db.connect(name, timeout_s=self.db.connect_timeout_s)) as conn:
            with suppress(pymysql.MySQLError):  # MariaDB: seconds
                objs.run(conn, "SET SESSION max_statement_time = %s", (timeout_s,))
            with suppress(pymysql.MySQLError):  # MySQL: milliseconds, SELECT only
                objs.run(conn, "SET SESSION max_execution_time = %s", (int(timeout_s * 1000),))
            objs.run(conn, "START TRANSACTION READ ONLY")
            try:
                with conn.cursor() as cursor:
                    cursor.execute(text)  # no arguments: the text is not %-formatted; one statement only
                    if cursor.description is None:
                        return None, 0
                    return list(cursor.fetchall()), len(cursor.description)
            finally:
                with suppress(pymysql.MySQLError):
                    objs.run(conn, "ROLLBACK")


def _mysql_size(conn: Any, name: str) -> int:
    found = objs.rows(
        conn,
        "SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
        (name,),
    )
    return int(found[0][0] or 0) if found else 0


class _MySQLScratchRestore(MySQLRestore):
    """A rollback's MySQL restore, but prepare() never repairs an interrupted switch of the live database
    (a rollback's swap may be under way right now), and the copy's events are disabled once loaded."""

    shadow_kind = "scratch database"
    settles_interrupted_switch = False

    def verify_loaded(self, shadow: str, say: Reporter) -> Loaded:
        with self.db.admin_session(self.untouched) as conn:
            for (event,) in objs.rows(
                conn, "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s", (shadow,)
            ):
                objs.run(conn, f"ALTER EVENT {objs.q(shadow)}.{objs.q(str(event))} DISABLE")
        return super().verify_loaded(shadow, say)


# --- SQLite ----------------------------------------------------------------------------------------------

_FILE_NAME_MAX = 255


class SQLiteScratch:
    what = "scratch copy"

    def __init__(self, db: SQLiteDatabase) -> None:
        self.db = db

    def name_for(self, purpose: str, tag: str) -> str:
        """A file beside the live one: `<file>.rb_<purpose>_<tag>`."""
        return str(self.db.path.with_name(fit_name(self.db.name, f".rb_{purpose}_{tag}", max_bytes=_FILE_NAME_MAX)))

    def is_scratch(self, name: str) -> bool:
        path = Path(name)
        return (
            path.is_absolute()
            and path.parent == self.db.path.parent
            and is_scratch_of(self.db.name, path.name, sep=".", max_bytes=_FILE_NAME_MAX)
        )

    def hooks(self, source: Path, *, cancel: threading.Event | None) -> RestoreHooks:
        hooks = SQLiteRestore(self.db, source, cancel=cancel)
        hooks.shadow_kind = self.what
        return hooks

    def url(self, name: str) -> str:
        return f"sqlite:///{quote(name)}"

    def size(self, name: str) -> int | None:
        try:
            return Path(name).stat().st_size
        except OSError:
            return None

    def drop(self, name: str) -> str | None:
        path, size = Path(name), self.size(name)
        for extra in ("-journal", "-wal", "-shm"):
            Path(name + extra).unlink(missing_ok=True)
        try:
            path.unlink()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DatabaseError(f"could not delete the {self.what} {path}: {exc.strerror}") from None
        return f"deleted the {self.what} {path.name}" + (f" ({fmt.size(size)})" if size is not None else "")

    def row_counts(self, name: str) -> dict[str, int]:
        try:
            with closing(open_ro(Path(name))) as conn:
                tables = conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY 1"
                ).fetchall()
                quoted = {str(t): '"' + str(t).replace('"', '""') + '"' for (t,) in tables}
                return {t: int(conn.execute(f"SELECT count(*) FROM {q}").fetchone()[0]) for t, q in quoted.items()}
        except sqlite3.Error as exc:
            raise DatabaseError(f"could not count the rows of {name}: {one_line(exc)}") from None

    def query(self, name: str, text: str, *, timeout_s: float) -> tuple[Rows | None, int]:
        deadline = time.monotonic() + timeout_s
        with closing(open_ro(Path(name))) as conn:
            conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)  # non-zero: interrupt
            cursor = conn.execute(text)  # one statement only (sqlite3 refuses more)
            if cursor.description is None:
                return None, 0
            return list(cursor.fetchall()), len(cursor.description)


def engine_for(db: object) -> ScratchEngine:
    if isinstance(db, PostgresDatabase):
        return PostgresScratch(db)
    if isinstance(db, MySQLDatabase):
        return MySQLScratch(db)
    if isinstance(db, SQLiteDatabase):
        return SQLiteScratch(db)
    raise DatabaseError(f"{type(db).__name__} cannot make scratch copies", hint="use postgres, mysql or sqlite")
