"""MySQL and MariaDB: mysqldump dumps, restored into a shadow database and swapped in table by table.

Credentials reach mysqldump and mysql only through a temporary option file (0600, given as the first
option, deleted right after), never on a command line. The swap itself is a single atomic RENAME TABLE;
see mysql_objects for what moves with the tables and what is recreated around them.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pymysql

from bot.backends import mysql_objects as objs
from bot.backends import mysql_repair as repair
from bot.backends.base import DumpInfo, Progress, RestoreResult, no_progress
from bot.backends.dbtools import (
    DEFAULT_TOOL_TIMEOUT_S,
    RETRY_HINT,
    Reporter,
    dump_file_size,
    file_size,
    fit_name,
    human_duration,
    human_size,
    no_objects,
    one_line,
    prepare_dest,
    publish,
    refuse_unless_shadow,
    run_tool,
    shadow_name_for,
    stamp,
    tool_env,
)
from bot.errors import DatabaseError, DumpFailed, RestoreFailed
from bot.redact import redact, register_secret

NAME_MAX = 64  # MySQL identifiers: 64 characters; counting bytes keeps multibyte names safe too
_TRAILER = b"-- Dump completed"
_OBJECT_MARKERS = (b"-- Table structure for table ", b"-- Final view structure for view ")
_NAMES_A_DATABASE = (b"USE ", b"CREATE DATABASE ")
# URL query parameters we understand, and their option-file names.
_QUERY_OPTIONS = {"ssl_ca": "ssl-ca", "ssl_cert": "ssl-cert", "ssl_key": "ssl-key", "unix_socket": "socket"}


class MySQLDatabase:
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
        self._reachable("")

    def _reachable(self, state: str) -> None:
        try:
            with self._connect(self.name, timeout_s=min(self.connect_timeout_s, 10.0)) as conn:
                objs.rows(conn, "SELECT 1")
        except pymysql.MySQLError as exc:
            cls = DumpFailed if state else DatabaseError
            raise cls(
                f"cannot connect to {self.describe()}: {one_line(exc)}" + (f"; {state}" if state else ""),
                hint="check that the server is up and that the URL's user, password and database are right",
            ) from None

    def dump(self, dest: Path, *, progress: Progress = no_progress) -> DumpInfo:
        say = Reporter(progress)
        dest = Path(dest).absolute()
        partial = prepare_dest(dest)
        done = 0

        def on_line(line: str) -> None:
            nonlocal done
            if line.startswith("-- Retrieving table structure for table "):
                done += 1
                table = line.removeprefix("-- Retrieving table structure for table ").rstrip(".")
                say.maybe(f"dumping table {table} ({done} so far, {human_size(file_size(partial))})")

        def on_tick() -> None:
            say.maybe(f"dumping {self.name}: {done} tables, {human_size(file_size(partial))} written")

        self._reachable("no dump was taken")
        say.say(f"dumping {self.describe()} to {dest.name}")
        try:
            with self._defaults_file() as defaults:
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
                run = run_tool(args, env=tool_env({}), timeout_s=self.tool_timeout_s, on_line=on_line, on_tick=on_tick)
            if not run.ok:
                raise DumpFailed(
                    f"mysqldump of {self.describe()} failed: {run.why()}; no dump was kept and the database"
                    " was not changed",
                    hint="fix the cause above and retry (the bot's user needs SELECT, SHOW VIEW, TRIGGER,"
                    " EVENT and LOCK TABLES on the database)",
                )
            say.say(f"verifying {dest.name} ({human_size(file_size(partial))})")
            checked = self._verify(partial, shown_as=dest.name)
            publish(partial, dest)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        say.say(f"dump {dest.name} verified: {checked.entries} tables and views, {human_size(checked.size_bytes)}")
        return DumpInfo(path=dest, size_bytes=checked.size_bytes, entries=checked.entries, verified=True)

    def verify(self, path: Path) -> DumpInfo:
        return self._verify(Path(path).absolute())

    def shadow_name(self, tag: str) -> str:
        return shadow_name_for(self.name, tag, max_bytes=NAME_MAX)

    def restore(self, source: Path, *, progress: Progress = no_progress, shadow: str | None = None) -> RestoreResult:
        say = Reporter(progress)
        started = time.monotonic()
        source = Path(source).absolute()
        untouched = f"the live database {self.name} was not touched"
        if shadow is not None:
            refuse_unless_shadow(self.name, shadow, max_bytes=NAME_MAX, action="restore into", error=RestoreFailed)
        say.say(f"checking {source.name}")
        try:
            checked = self._verify(source)
        except DumpFailed as exc:
            raise RestoreFailed(f"cannot restore from {exc.message}; {untouched}", hint=exc.hint) from None
        with self._admin(untouched) as conn:
            charset = objs.rows(
                conn,
                "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA"
                " WHERE SCHEMA_NAME = %s",
                (self.name,),
            )
            if not charset:
                raise RestoreFailed(
                    f"the live database {self.name} does not exist on {self.describe()}; nothing was restored",
                    hint="check the environment's DATABASE_URL names the right database",
                )
            cs, collation = str(charset[0][0]), str(charset[0][1])
            # A switch cut short earlier must be settled first, or its missing views would be "kept" missing.
            for repaired in repair.repair_swap(conn, self.name, timeout_s=self.swap_timeout_s):
                say.say(repaired)
            if shadow is None:
                shadow = self._free_name(conn, f"_rb_shadow_{stamp(seconds=True)}")
            elif objs.schema_exists(conn, shadow):  # left by an interrupted attempt of this same run
                say.say(f"dropping the shadow database {shadow} left by an interrupted attempt")
                repair.discard(conn, shadow, timeout_s=self.swap_timeout_s)
            say.say(f"creating shadow database {shadow}")
            try:
                objs.run(conn, objs.create_database(shadow, cs, collation))
            except pymysql.MySQLError as exc:
                raise RestoreFailed(
                    f"could not create the shadow database {shadow}: {one_line(exc)}; {untouched}",
                    hint=f"the bot's user needs CREATE and DROP on databases named {self.name}_*",
                ) from None
        swapped = False
        try:
            self._load(source, shadow, size=checked.size_bytes, say=say, untouched=untouched)
            kept, killed, warnings = self._swap(shadow, (cs, collation), say)
            swapped = True
        finally:
            if not swapped:
                self._drop_quietly(shadow, say)
        summary = f"restored {checked.entries} tables and views from {source.name} into {self.name};"
        summary += f" previous data kept as {kept}"
        say.say(summary)
        for warning in warnings:
            say.say(f"warning: {warning}")
        details = {
            "source": str(source),
            "objects": str(checked.entries),
            "kept": kept,
            "shadow": shadow,
            "terminated_sessions": str(killed),
            "duration": human_duration(time.monotonic() - started),
        }
        if warnings:
            details["warnings"] = redact("; ".join(warnings))
        return RestoreResult(database=self.name, previous=kept, summary=summary, details=details)

    def discard_shadow(self, shadow: str) -> str | None:
        refuse_unless_shadow(self.name, shadow, max_bytes=NAME_MAX, action="drop")
        with self._admin(f"the shadow database {shadow} may still exist") as conn:
            return repair.discard(conn, shadow, timeout_s=self.swap_timeout_s)

    def repair_interrupted_swap(self) -> list[str]:
        with self._admin(f"the live database {self.name} may still miss views or triggers") as conn:
            return repair.repair_swap(conn, self.name, timeout_s=self.swap_timeout_s)

    # --- helpers for tests, the demo and the engine ---------------------------------------------

    def table_counts(self) -> dict[str, int]:
        """Row count of every table, as {"table": rows}."""
        try:
            with self._connect(self.name, timeout_s=self.connect_timeout_s) as conn:
                return {
                    t: int(objs.rows(conn, f"SELECT COUNT(*) FROM {objs.q(t)}")[0][0])
                    for t in objs.tables(conn, self.name)
                }
        except pymysql.MySQLError as exc:
            raise DatabaseError(f"cannot read {self.describe()}: {one_line(exc)}") from None

    # --- internals ------------------------------------------------------------------------------

    def _connect(self, db: str | None, *, timeout_s: float) -> Any:
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
    def _admin(self, state: str) -> Iterator[Any]:
        try:
            conn = self._connect(None, timeout_s=self.connect_timeout_s)
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
    def _defaults_file(self) -> Iterator[str]:
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
        # dump() checks the server answers, with a timeout, before mysqldump gets a chance to hang.
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

    def _verify(self, path: Path, *, shown_as: str = "") -> DumpInfo:
        shown = shown_as or path.name
        size = dump_file_size(path, shown)
        try:
            return self._scan(path, shown, size)
        except OSError as exc:
            raise DumpFailed(f"cannot read {shown}: {exc.strerror}", hint=RETRY_HINT) from None

    def _scan(self, path: Path, shown: str, size: int) -> DumpInfo:
        with path.open("rb") as handle:
            handle.seek(max(0, size - 4096))
            if _TRAILER not in handle.read():
                raise DumpFailed(
                    f"{shown} is incomplete: it lacks mysqldump's closing '-- Dump completed' line",
                    hint=RETRY_HINT,
                )
            handle.seek(0)
            entries = 0
            for line in handle:
                if line.startswith(_OBJECT_MARKERS):
                    entries += 1
                elif line.startswith(_NAMES_A_DATABASE):
                    # Made with --databases/--all-databases: it would write straight into the database it
                    # names (the live one) instead of the shadow, so it is refused rather than "restored".
                    raise DumpFailed(
                        f"{shown} names its database (it was made with --databases or --all-databases),"
                        " so it cannot be restored aside",
                        hint="use a dump of the one database without --databases (as the bot makes them)",
                    )
        if entries == 0:
            raise no_objects(shown)
        return DumpInfo(path=path, size_bytes=size, entries=entries, verified=True)

    def _free_name(self, conn: Any, suffix: str) -> str:
        name = fit_name(self.name, suffix, max_bytes=NAME_MAX)
        counter = 2
        while objs.schema_exists(conn, name):
            name = fit_name(self.name, f"{suffix}_{counter}", max_bytes=NAME_MAX)
            counter += 1
        return name

    def _load(self, source: Path, shadow: str, *, size: int, say: Reporter, untouched: str) -> None:
        """Feed the dump to `mysql` in the shadow database, reporting how far into the file it is."""
        started = time.monotonic()
        with source.open("rb") as dump, self._defaults_file() as defaults:

            def on_tick() -> None:
                # The child shares this file description, so our offset is how far mysql has read.
                done = os.lseek(dump.fileno(), 0, os.SEEK_CUR)
                percent = 100 * done // max(size, 1)
                elapsed = human_duration(time.monotonic() - started)
                say.maybe(f"restoring into {shadow}: {percent}% of {human_size(size)}, {elapsed} so far")

            say.say(f"restoring {source.name} into {shadow} ({human_size(size)})")
            # --skip-reconnect: orphaned by a crash and cut off by discard_shadow, the client must end,
            # not reconnect to the shadow's name (a retried restore may have created it afresh).
            args = ["mysql", f"--defaults-extra-file={defaults}", "--batch", "--skip-reconnect", f"--database={shadow}"]
            run = run_tool(args, env=tool_env({}), timeout_s=self.tool_timeout_s, stdin=dump, on_tick=on_tick)
            where = f"{100 * os.lseek(dump.fileno(), 0, os.SEEK_CUR) // max(size, 1)}% into the dump"
        if not run.ok:
            raise RestoreFailed(
                f"restore failed {where}: {run.why()}; {untouched}",
                hint="fix the cause and retry, or restore from another dump",
            )

    def _swap(self, shadow: str, charset: tuple[str, str], say: Reporter) -> tuple[str, int, list[str]]:
        with self._admin(f"the live database {self.name} was not touched") as conn:
            kept = self._free_name(conn, f"_before_rollback_{stamp()}")
            return objs.swap_in(
                conn,
                live=self.name,
                shadow=shadow,
                kept=kept,
                charset=charset,
                timeout_s=self.swap_timeout_s,
                say=say.say,
            )

    def _drop_quietly(self, shadow: str, say: Reporter) -> None:
        try:
            with self._admin("") as conn:
                objs.run(conn, f"DROP DATABASE IF EXISTS {objs.q(shadow)}")
        except Exception as exc:
            say.say(f"could not drop the shadow database {shadow} ({redact(str(exc))}): drop it by hand")


def _quote(value: str) -> str:
    """A value for a MySQL option file: double-quoted, with the escapes the option parser knows."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'
