"""MySQL and MariaDB: mysqldump dumps, restored into a shadow database and swapped in table by table.

Credentials reach mysqldump and mysql only through a temporary option file (0600, given as the first
option, deleted right after), never on a command line. The swap itself is a single atomic RENAME TABLE;
see mysql_objects for what moves with the tables and what is recreated around them.

The order of the steps is restore.py's (written once for every engine); this module connects and
dumps, mysql_restore does each restore step.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pymysql

from bot import format as fmt
from bot.backends import mysql_objects as objs
from bot.backends import mysql_repair as repair
from bot.backends.base import DumpInfo, Progress, no_progress
from bot.backends.dbtools import (
    DEFAULT_TOOL_TIMEOUT_S,
    RETRY_HINT,
    dump_file_size,
    file_size,
    no_objects,
    one_line,
    refuse_unless_shadow,
    run_tool,
    shadow_name_for,
    tool_env,
)
from bot.backends.mysql_restore import NAME_MAX, MySQLRestore
from bot.backends.reporter import MEASURE_EVERY_S, Reporter
from bot.backends.restore import RestoresAside, Tick, dump_verified
from bot.errors import DatabaseError, DumpFailed, RestoreFailed
from bot.redact import register_secret

_TRAILER = b"-- Dump completed"
_OBJECT_MARKERS = (b"-- Table structure for table ", b"-- Final view structure for view ")
_NAMES_A_DATABASE = (b"USE ", b"CREATE DATABASE ")
# URL query parameters we understand, and their option-file names.
_QUERY_OPTIONS = {"ssl_ca": "ssl-ca", "ssl_cert": "ssl-cert", "ssl_key": "ssl-key", "unix_socket": "socket"}


class MySQLDatabase(RestoresAside):
    """A live MySQL/MariaDB database: mysqldump out, mysql into a shadow, RENAME TABLE swap."""

    engine = "mysql"

    def __init__(
        self,
        url: str,
        *,
        tool_timeout_s: float = DEFAULT_TOOL_TIMEOUT_S,
        connect_timeout_s: float = 10.0,
        swap_timeout_s: float = 30.0,
    ) -> None:
        register_secret(url)
        parts = urlsplit(url)
        if parts.scheme.split("+")[0] not in ("mysql", "mariadb"):
            raise DatabaseError("the database URL is not a mysql:// URL", hint="use mysql://user:password@host:port/db")
        try:
            port = parts.port or 3306
        except ValueError:
            raise DatabaseError(
                "the database URL has an invalid port", hint="use mysql://user:password@host:port/db"
            ) from None
        self.name = unquote(parts.path.lstrip("/"))
        if not self.name or "/" in self.name:
            raise DatabaseError("the database URL names no database", hint="end it with /dbname")
        self.user = unquote(parts.username or "")
        self._password = unquote(parts.password) if parts.password is not None else None
        register_secret(self._password)
        self.host = parts.hostname or "localhost"
        self.port = port
        self._options: dict[str, str] = {}
        for key, value in parse_qsl(parts.query):
            if key.replace("-", "_") == "socket":
                key = "unix_socket"
            if key.replace("-", "_") not in _QUERY_OPTIONS:
                raise DatabaseError(
                    f"the database URL has an unsupported parameter {key!r}",
                    hint="supported: " + ", ".join(sorted(_QUERY_OPTIONS)),
                )
            self._options[key.replace("-", "_")] = value
        self.tool_timeout_s = tool_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.swap_timeout_s = swap_timeout_s

    # --- Database protocol ----------------------------------------------------------------------

    def required_tools(self) -> list[str]:
        return ["mysqldump", "mysql"]

    def describe(self) -> str:
        return f"mysql://{self.user + '@' if self.user else ''}{self.host}:{self.port}/{self.name}"

    def check(self) -> None:
        try:
            with self.connect(self.name, timeout_s=min(self.connect_timeout_s, 10.0)) as conn:
                objs.rows(conn, "SELECT 1")
        except pymysql.MySQLError as exc:
            raise self._unreachable(exc, "") from None

    def dump(self, dest: Path, *, progress: Progress = no_progress) -> DumpInfo:
        return dump_verified(self, dest, progress=progress)

    def verify(self, path: Path) -> DumpInfo:
        return self.read_dump(Path(path).absolute())[0]

    def shadow_name(self, tag: str) -> str:
        return shadow_name_for(self.name, tag, max_bytes=NAME_MAX)

    def restore_hooks(self, source: Path, *, cancel: threading.Event | None) -> MySQLRestore:
        return MySQLRestore(self, source, cancel=cancel)

    def discard_shadow(self, shadow: str) -> str | None:
        refuse_unless_shadow(self.name, shadow, max_bytes=NAME_MAX, action="drop")
        with self.admin_session(f"the shadow database {shadow} may still exist") as conn:
            return repair.discard(conn, shadow, timeout_s=self.swap_timeout_s)

    def repair_interrupted_swap(self) -> list[str]:
        with self.admin_session(f"the live database {self.name} may still miss views or triggers") as conn:
            return repair.repair_swap(conn, self.name, timeout_s=self.swap_timeout_s)

    # --- the dump's hooks (restore.DumpHooks) ----------------------------------------------------

    dump_noun = "tables and views"

    def expected_size(self) -> int | None:
        """What the server says the tables take (data and indexes); checks first that it answers at all."""
        try:
            with self.connect(self.name, timeout_s=min(self.connect_timeout_s, 10.0)) as conn:
                row = objs.rows(
                    conn,
                    "SELECT COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) FROM information_schema.TABLES"
                    " WHERE TABLE_SCHEMA = %s",
                    (self.name,),
                )
        except pymysql.MySQLError as exc:
            raise self._unreachable(exc, "no dump was taken") from None
        return int(row[0][0] or 0) or None

    def write_dump(self, partial: Path, say: Reporter, tick: Tick) -> None:
        done = 0

        def on_line(line: str) -> None:
            nonlocal done
            if line.startswith("-- Retrieving table structure for table "):
                done += 1
                table = line.removeprefix("-- Retrieving table structure for table ").rstrip(".")
                say.maybe(f"dumping table {table} ({done} so far, {fmt.size(file_size(partial))})")

        with self.defaults_file() as defaults:
            args = [
                "mysqldump",
                f"--defaults-extra-file={defaults}",  # must come first to be honoured
                "--single-transaction",  # a consistent snapshot without locking InnoDB tables
                "--routines",
                "--triggers",
                "--events",
                "--hex-blob",  # binary columns survive any client character set
                "--no-tablespaces",  # needs the PROCESS privilege an app user rarely has
                "--verbose",
                f"--result-file={partial}",
                *self._gtid_option(),
                "--",
                self.name,
            ]
            run = run_tool(
                args,
                env=tool_env({}),
                timeout_s=self.tool_timeout_s,
                on_line=on_line,
                on_tick=tick,
                tick_s=MEASURE_EVERY_S,
            )
        if not run.ok:
            raise DumpFailed(
                f"mysqldump of {self.describe()} failed: {run.why()}; no dump was kept and the database"
                " was not changed",
                hint="fix the cause above and retry (the bot's user needs SELECT, SHOW VIEW, TRIGGER,"
                " EVENT and LOCK TABLES on the database)",
            )

    def verify_dump(self, path: Path, *, shown_as: str) -> DumpInfo:
        return self.read_dump(path, shown_as=shown_as)[0]

    # --- connections, tools and dump files, shared with mysql_restore ---------------------------------

    def read_dump(self, path: Path, *, shown_as: str = "") -> tuple[DumpInfo, list[int]]:
        """The dump's DumpInfo and the byte offset where each table or view begins; DumpFailed if unusable."""
        shown = shown_as or path.name
        size = dump_file_size(path, shown)
        try:
            return self._scan(path, shown, size)
        except OSError as exc:
            raise DumpFailed(f"cannot read {shown}: {exc.strerror}", hint=RETRY_HINT) from None

    # --- internals ------------------------------------------------------------------------------

    def connect(self, db: str | None, *, timeout_s: float) -> Any:
        ssl = {k.removeprefix("ssl_"): v for k, v in self._options.items() if k.startswith("ssl_")}
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user or None,
            password=self._password or "",
            database=db,
            unix_socket=self._options.get("unix_socket"),
            ssl=ssl or None,
            charset="utf8mb4",
            connect_timeout=max(2, int(timeout_s)),
            autocommit=True,
        )

    @contextmanager
    def admin_session(self, state: str) -> Iterator[Any]:
        try:
            conn = self.connect(None, timeout_s=self.connect_timeout_s)
        except pymysql.MySQLError as exc:
            raise RestoreFailed(f"cannot connect to {self.describe()}: {one_line(exc)}; {state}") from None
        try:
            yield conn
        except pymysql.MySQLError as exc:  # whatever the step did not explain itself
            raise RestoreFailed(f"database error on {self.describe()}: {one_line(exc)}; {state}") from None
        finally:
            with suppress(Exception):
                conn.close()

    @contextmanager
    def defaults_file(self) -> Iterator[str]:
        """A private option file with the credentials, removed as soon as the tool is done."""
        # utf8mb4 spelled out: under the C locale the tools would otherwise guess latin1.
        lines = ["[client]", f"host={_quote(self.host)}", f"port={self.port}", "default-character-set=utf8mb4"]
        if self.user:
            lines.append(f"user={_quote(self.user)}")
        if self._password is not None:
            lines.append(f"password={_quote(self._password)}")
        if "unix_socket" in self._options:
            lines.append(f"socket={_quote(self._options['unix_socket'])}")
        else:
            lines.append("protocol=TCP")  # "localhost" would otherwise mean a socket to the tools only
        for key, option in _QUERY_OPTIONS.items():
            if key in self._options and key != "unix_socket":
                lines.append(f"{option}={_quote(self._options[key])}")
        # Only the mysql client knows connect-timeout (mysqldump would refuse it), hence its own group;
        # a dump asks the server its size first (expected_size), with a timeout, before mysqldump can hang.
        lines += ["[mysql]", f"connect-timeout={max(2, int(self.connect_timeout_s))}"]
        problem = DatabaseError(
            "cannot write a private option file for the MySQL tools; nothing was changed",
            hint="check the temporary directory (TMPDIR) has space and is writable",
        )
        try:
            fd, path = tempfile.mkstemp(prefix="rollback-bot-", suffix=".cnf")  # created 0600
        except OSError:
            raise problem from None
        try:
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write("\n".join(lines) + "\n")
            except OSError:
                raise problem from None
            yield path
        finally:
            with suppress(OSError):
                os.unlink(path)

    def _gtid_option(self) -> list[str]:
        """Oracle MySQL's mysqldump writes GTID_PURGED, which a restore into a shadow cannot apply."""
        try:
            run = run_tool(["mysqldump", "--version"], env=tool_env({}), timeout_s=30, capture_stdout=True)
        except Exception:
            return []
        return [] if "mariadb" in run.stdout.lower() else ["--set-gtid-purged=OFF"]

    def _unreachable(self, exc: pymysql.MySQLError, state: str) -> DatabaseError:
        cls = DumpFailed if state else DatabaseError
        return cls(
            f"cannot connect to {self.describe()}: {one_line(exc)}" + (f"; {state}" if state else ""),
            hint="check that the server is up and that the URL's user, password and database are right",
        )

    def _scan(self, path: Path, shown: str, size: int) -> tuple[DumpInfo, list[int]]:
        with path.open("rb") as handle:
            handle.seek(max(0, size - 4096))
            if _TRAILER not in handle.read():
                raise DumpFailed(
                    f"{shown} is incomplete: it lacks mysqldump's closing '-- Dump completed' line",
                    hint=RETRY_HINT,
                )
            handle.seek(0)
            starts: list[int] = []
            offset = 0
            for line in handle:
                if line.startswith(_OBJECT_MARKERS):
                    starts.append(offset)
                elif line.startswith(_NAMES_A_DATABASE):
                    # Made with --databases/--all-databases: it would write straight into the database it
                    # names (the live one) instead of the shadow, so it is refused rather than "restored".
                    raise DumpFailed(
                        f"{shown} names its database (it was made with --databases or --all-databases),"
                        " so it cannot be restored aside",
                        hint="use a dump of the one database without --databases (as the bot makes them)",
                    )
                offset += len(line)
        if not starts:
            raise no_objects(shown)
        return DumpInfo(path=path, size_bytes=size, entries=len(starts), verified=True), starts


def _quote(value: str) -> str:
    """A value for a MySQL option file: double-quoted, with the escapes the option parser knows."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'
