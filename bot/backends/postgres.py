"""PostgreSQL: pg_dump custom-format dumps, and restores that never touch live data until they succeed.

A restore goes into a fresh shadow database beside the live one; only when pg_restore has finished
without error are the two swapped by renaming, in one transaction, so the application's DATABASE_URL
names the restored data and the previous data is kept under `<name>_before_rollback_<UTC stamp>`.
The password travels to tools in PGPASSWORD and never on a command line or in a message.

Before the rename the live database is closed to new connections (ALLOW_CONNECTIONS false) and its
sessions are terminated. If the bot dies in that window (kill -9, host crash), the live database keeps
its old data but refuses connections; repair_interrupted_swap(), which the engine calls when it resumes
or aborts an interrupted run, opens it again, and discard_shadow() drops the half-restored shadow even
while an orphaned pg_restore still writes into it. postgres_repair explains every state a crash can leave.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from bot.backends import postgres_admin as admin
from bot.backends import postgres_repair as repair
from bot.backends.base import DumpInfo, Progress, RestoreResult, no_progress
from bot.backends.dbtools import (
    DEFAULT_TOOL_TIMEOUT_S,
    RETRY_HINT,
    Reporter,
    ToolRun,
    dump_file_size,
    file_size,
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

log = logging.getLogger(__name__)

_RESTORE_STEP = re.compile(r"^pg_restore: (creating|processing data for|executing|processing item) (.*)$")
_DUMP_TABLE = re.compile(r'^pg_dump: dumping contents of table "(.*)"$')
_TOC_LINE = re.compile(r"^\d+; \d+ \d+ ")


class PostgresDatabase:
    """A live PostgreSQL database, dumped with pg_dump and restored aside then swapped in by rename."""

    engine = "postgres"

    def __init__(
        self,
        url: str,
        *,
        tool_timeout_s: float = DEFAULT_TOOL_TIMEOUT_S,
        connect_timeout_s: float = 10.0,
        swap_timeout_s: float = 30.0,
        lock_wait_timeout_s: float = 120.0,
        maintenance_db: str = "postgres",
        jobs: int = 1,
        keep_owners: bool | None = None,
        analyze: bool = True,
        verify_data: bool = True,
    ) -> None:
        """`keep_owners=None` decides per dump: keep the dump's owners when this role may assign them.

        `verify_data` makes verify() read every data block (pg_restore to /dev/null), because a
        truncated archive still lists its table of contents happily. `jobs` > 1 restores in parallel.
        """
        register_secret(url)  # whatever happens next, this URL's password is masked everywhere
        params = admin.parse_url(url)
        self.name = params["dbname"]
        self._password = params.pop("password", None)
        self._params = params
        self.tool_timeout_s = tool_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.swap_timeout_s = swap_timeout_s
        self.lock_wait_timeout_s = lock_wait_timeout_s
        self.maintenance_db = maintenance_db
        self.jobs = max(1, jobs)
        self.keep_owners = keep_owners
        self.analyze = analyze
        self.verify_data = verify_data

    # --- Database protocol ----------------------------------------------------------------------

    def required_tools(self) -> list[str]:
        return ["pg_dump", "pg_restore"]

    def describe(self) -> str:
        user = self._params.get("user", "")
        host = self._params.get("host") or self._params.get("hostaddr") or "localhost"
        port = self._params.get("port", "5432")
        return f"postgresql://{user + '@' if user else ''}{host}:{port}/{self.name}"

    def check(self) -> None:
        try:
            with self._connect(self.name, timeout_s=min(self.connect_timeout_s, 10.0)) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise DatabaseError(
                f"cannot connect to {self.describe()}: {one_line(exc)}",
                hint="check that the server is up and that the URL's user, password and database are right",
            ) from None

    def dump(self, dest: Path, *, progress: Progress = no_progress) -> DumpInfo:
        say = Reporter(progress)
        dest = Path(dest).absolute()
        partial = prepare_dest(dest)
        tables = 0

        def on_line(line: str) -> None:
            nonlocal tables
            match = _DUMP_TABLE.match(line)
            if match:
                tables += 1
                say.maybe(f"dumping table {match.group(1)} ({tables} so far, {human_size(file_size(partial))})")

        def on_tick() -> None:
            say.maybe(f"dumping {self.name}: {tables} tables, {human_size(file_size(partial))} written")

        say.say(f"dumping {self.describe()} to {dest.name}")
        args = [
            "pg_dump",
            "--format=custom",
            "--no-password",
            "--verbose",
            # Waiting forever behind a migration's lock is worse at 3 a.m. than a clear failure.
            f"--lock-wait-timeout={int(self.lock_wait_timeout_s * 1000)}",
            f"--file={partial}",
            f"--dbname={self._conninfo(self.name)}",
        ]
        try:
            run = run_tool(args, env=self._env(), timeout_s=self.tool_timeout_s, on_line=on_line, on_tick=on_tick)
            if not run.ok:
                raise DumpFailed(
                    f"pg_dump of {self.describe()} failed: {run.why()}; no dump was kept and the database"
                    " was not changed",
                    hint=_dump_hint(run),
                )
            say.say(f"verifying {dest.name} ({human_size(file_size(partial))})")
            checked = self._verify(partial, deep=self.verify_data, shown_as=dest.name)
            publish(partial, dest)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        say.say(f"dump {dest.name} verified: {checked.entries} objects, {human_size(checked.size_bytes)}")
        return DumpInfo(path=dest, size_bytes=checked.size_bytes, entries=checked.entries, verified=True)

    def verify(self, path: Path) -> DumpInfo:
        return self._verify(Path(path).absolute(), deep=self.verify_data)

    def shadow_name(self, tag: str) -> str:
        return shadow_name_for(self.name, tag, max_bytes=admin.PG_NAME_MAX)

    def restore(self, source: Path, *, progress: Progress = no_progress, shadow: str | None = None) -> RestoreResult:
        say = Reporter(progress)
        started = time.monotonic()
        source = Path(source).absolute()
        untouched = f"the live database {self.name} was not touched"
        if shadow is not None:
            refuse_unless_shadow(
                self.name, shadow, max_bytes=admin.PG_NAME_MAX, action="restore into", error=RestoreFailed
            )
        say.say(f"checking {source.name}")
        try:
            toc = self._toc(source)
        except DumpFailed as exc:
            raise RestoreFailed(f"cannot restore from {exc.message}; {untouched}", hint=exc.hint) from None

        with self._admin(untouched) as conn:
            live = admin.database_info(conn, self.name)
            if live is None:
                raise RestoreFailed(
                    f"the live database {self.name} does not exist on {self.describe()}; nothing was restored",
                    hint="check the environment's DATABASE_URL names the right database",
                )
            no_owner, owner_note = self._ownership(conn, toc)
            if shadow is None:
                shadow = admin.free_name(conn, self.name, f"_rb_shadow_{stamp(seconds=True)}")
            elif admin.exists(conn, shadow):  # left by an interrupted attempt of this same run
                say.say(f"dropping the shadow database {shadow} left by an interrupted attempt")
                repair.drop_shadow(conn, shadow)
            say.say(f"creating shadow database {shadow}")
            try:
                warnings = admin.create_shadow(conn, shadow, live)
            except psycopg.Error as exc:
                raise RestoreFailed(
                    f"could not create the shadow database {shadow}: {one_line(exc)}; {untouched}",
                    hint="the bot's role needs CREATEDB (and ownership of the live database) to restore",
                ) from None

        swapped = False
        try:
            self._pg_restore(source, shadow, total=len(toc), no_owner=no_owner, say=say, untouched=untouched)
            if self.analyze:
                warnings += self._analyze(shadow, say)
            with self._admin(untouched) as conn:
                warnings += admin.copy_properties(conn, live, shadow)
            kept, terminated = self._swap(shadow, say)
            swapped = True
        finally:
            if not swapped:
                self._drop_quietly(shadow, say)

        summary = f"restored {len(toc)} objects from {source.name} into {self.name}; previous data kept as {kept}"
        say.say(summary)
        for warning in warnings:
            say.say(f"warning: {warning}")
        details = {
            "source": str(source),
            "objects": str(len(toc)),
            "kept": kept,
            "shadow": shadow,
            "ownership": owner_note,
            "terminated_sessions": str(terminated),
            "duration": human_duration(time.monotonic() - started),
        }
        if warnings:
            details["warnings"] = redact("; ".join(warnings))
        return RestoreResult(database=self.name, previous=kept, summary=summary, details=details)

    def discard_shadow(self, shadow: str) -> str | None:
        refuse_unless_shadow(self.name, shadow, max_bytes=admin.PG_NAME_MAX, action="drop")
        with self._admin(f"the shadow database {shadow} may still exist") as conn:
            return repair.discard(conn, shadow)

    def repair_interrupted_swap(self) -> list[str]:
        with self._admin(f"the live database {self.name} may still refuse connections") as conn:
            return repair.repair_swap(conn, self.name)

    # --- helpers for tests, the demo and the engine ---------------------------------------------

    def table_counts(self) -> dict[str, int]:
        """Row count of every user table, as {"schema.table": rows}."""
        try:
            with self._connect(self.name, timeout_s=self.connect_timeout_s) as conn:
                return admin.table_counts(conn)
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot read {self.describe()}: {one_line(exc)}") from None

    # --- internals ------------------------------------------------------------------------------

    def _conninfo(self, dbname: str) -> str:
        return make_conninfo("", **{**self._params, "dbname": dbname})

    def _env(self) -> dict[str, str]:
        extra = {"PGCONNECT_TIMEOUT": str(max(2, int(self.connect_timeout_s)))}
        if self._password:
            extra["PGPASSWORD"] = self._password
        return tool_env(extra)

    def _connect(self, dbname: str, *, timeout_s: float) -> admin.Conn:
        extra: dict[str, str] = {"connect_timeout": str(max(2, int(timeout_s)))}
        if self._password:
            extra["password"] = self._password
        # The password goes into the in-memory conninfo only; it is never logged or shown.
        return psycopg.connect(make_conninfo(self._conninfo(dbname), **extra), autocommit=True)

    @contextmanager
    def _admin(self, state: str) -> Iterator[admin.Conn]:
        """A session on the maintenance database; failures to get one say what state things are in."""
        try:
            conn = self._connect(self.maintenance_db, timeout_s=self.connect_timeout_s)
        except psycopg.Error as exc:
            raise RestoreFailed(
                f"cannot connect to the maintenance database {self.maintenance_db}: {one_line(exc)}; {state}",
                hint="the bot's role needs CONNECT on it (or configure another maintenance database)",
            ) from None
        with conn:
            try:
                conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(self.swap_timeout_s * 1000)}ms",))
                yield conn
            except psycopg.Error as exc:  # whatever the step did not explain itself
                raise RestoreFailed(f"database error on {self.describe()}: {one_line(exc)}; {state}") from None

    def _toc(self, path: Path, *, shown_as: str = "") -> list[str]:
        """The archive's table of contents (one line per object); DumpFailed if unreadable or empty."""
        shown = shown_as or path.name
        dump_file_size(path, shown)
        run = run_tool(
            ["pg_restore", "--list", str(path)],
            env=self._env(),
            timeout_s=self.tool_timeout_s,
            capture_stdout=True,
        )
        if not run.ok:
            raise DumpFailed(f"{shown} is not a readable pg_dump archive ({run.why()})", hint=RETRY_HINT)
        toc = [line for line in run.stdout.splitlines() if _TOC_LINE.match(line)]
        if not toc:
            raise no_objects(shown)
        return toc

    def _verify(self, path: Path, *, deep: bool, shown_as: str = "") -> DumpInfo:
        toc = self._toc(path, shown_as=shown_as)
        if deep:
            run = run_tool(
                ["pg_restore", f"--file={os.devnull}", str(path)],
                env=self._env(),
                timeout_s=self.tool_timeout_s,
            )
            if not run.ok:
                raise DumpFailed(
                    f"{shown_as or path.name} is damaged: its table of contents reads but its data does not"
                    f" ({run.why()})",
                    hint="the file is truncated or corrupt; use another restore point, or take a new dump",
                )
        return DumpInfo(path=path, size_bytes=file_size(path), entries=len(toc), verified=True)

    def _ownership(self, conn: admin.Conn, toc: list[str]) -> tuple[bool, str]:
        """Whether to restore with --no-owner, and a note saying what ownership the objects will get.

        Keeping owners matters (the app's role must own its tables to migrate them) but only works if
        this role may give objects to those owners; otherwise pg_restore would fail on the first one.
        """
        me, _ = admin.current_role(conn)
        if self.keep_owners is not None:
            return (not self.keep_owners, "as in the dump" if self.keep_owners else f"owned by {me}")
        missing = admin.can_assign_owners(conn, admin.owners_in_toc(toc))
        if missing:
            return True, f"owned by {me} (cannot assign the dump's owners: {', '.join(missing[:5])})"
        return False, "as in the dump"

    def _pg_restore(
        self, source: Path, shadow: str, *, total: int, no_owner: bool, say: Reporter, untouched: str
    ) -> None:
        done = 0
        current = "connecting"
        started = time.monotonic()

        def on_line(line: str) -> None:
            nonlocal done, current
            match = _RESTORE_STEP.match(line)
            if match:
                done = min(done + 1, total)
                current = f"{match.group(1)} {match.group(2)}"
                say.maybe(f"restoring into {shadow}: {done} of {total} objects ({current})")

        def on_tick() -> None:
            elapsed = human_duration(time.monotonic() - started)
            say.maybe(f"restoring into {shadow}: {done} of {total} objects, {elapsed} so far ({current})")

        args = ["pg_restore", "--verbose", "--no-password", "--exit-on-error"]
        args += ["--no-owner"] if no_owner else []
        args += [f"--jobs={self.jobs}"] if self.jobs > 1 else []
        args += [f"--dbname={self._conninfo(shadow)}", str(source)]
        say.say(f"restoring {source.name} into {shadow} ({total} objects)")
        run = run_tool(args, env=self._env(), timeout_s=self.tool_timeout_s, on_line=on_line, on_tick=on_tick)
        if not run.ok:
            raise RestoreFailed(
                f"restore failed at {current} ({done} of {total} objects): {run.why()}; {untouched}",
                hint="fix the cause and retry, or restore from another dump; if it is about owners,"
                " retry with keep_owners off",
            )

    def _analyze(self, shadow: str, say: Reporter) -> list[str]:
        """Gather planner statistics before the swap: without them the first queries can crawl."""
        say.say(f"analyzing {shadow}")
        try:
            with self._connect(shadow, timeout_s=self.connect_timeout_s) as conn:
                conn.execute("SET statement_timeout = 0")
                conn.execute("ANALYZE")
        except psycopg.Error as exc:
            return [f"ANALYZE of the restored data failed ({one_line(exc)}); autovacuum will catch up"]
        return []

    def _swap(self, shadow: str, say: Reporter) -> tuple[str, int]:
        live = self.name
        untouched = f"the live database {live} was not touched"
        with self._admin(untouched) as conn:
            kept = admin.free_name(conn, live, f"_before_rollback_{stamp()}")
            say.say(f"switching: closing connections to {live}")
            try:
                admin.set_allow_connections(conn, live, False)
                terminated = 0
                for attempt in range(3):
                    terminated += admin.disconnect_others(conn, live, timeout_s=self.swap_timeout_s)
                    admin.disconnect_others(conn, shadow, timeout_s=self.swap_timeout_s)
                    try:
                        admin.swap(conn, live=live, shadow=shadow, kept=kept)
                        say.say(f"switched: {live} now holds the restored data; previous data is {kept}")
                        return kept, terminated
                    except psycopg.errors.ObjectInUse:
                        if attempt == 2:  # a session slipped in between terminate and rename, thrice
                            raise
            except (psycopg.Error, admin.SessionsRemain) as exc:
                if isinstance(exc, admin.SessionsRemain):
                    why = f"sessions would not close: {'; '.join(exc.sessions[:5])}"
                else:
                    why = one_line(exc)
                if self._swapped_anyway(shadow, kept):  # e.g. the reply to COMMIT was lost
                    return kept, 0
                self._reenable(live)
                raise RestoreFailed(
                    f"could not switch {live} to the restored data: {why}; {live} is as it was"
                    " and accepts connections again; the restored copy was dropped",
                    hint="retry when the sessions are gone (or stop the app first); the bot's role must own"
                    f" {live} and be allowed to terminate its sessions",
                ) from None
            except BaseException:  # interrupted: never leave the live database refusing connections
                if not self._swapped_anyway(shadow, kept):
                    self._reenable(live)
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _swapped_anyway(self, shadow: str, kept: str) -> bool:
        with suppress(Exception), self._admin("") as conn:
            return admin.exists(conn, kept) and not admin.exists(conn, shadow)
        return False

    def _reenable(self, live: str) -> None:
        try:
            with self._admin("") as conn:
                admin.set_allow_connections(conn, live, True)
        except Exception:
            log.error("could not re-enable connections to %s", live, exc_info=True)

    def _drop_quietly(self, shadow: str, say: Reporter) -> None:
        try:
            with self._admin("") as conn:
                admin.drop_database(conn, shadow)
        except Exception as exc:
            say.say(f"could not drop the shadow database {shadow} ({redact(str(exc))}): drop it by hand")


def _dump_hint(run: ToolRun) -> str:
    text = run.why().lower()
    if run.timed_out:
        return "raise the tool timeout for this database, or dump at a quieter time"
    if "lock" in text and "timeout" in text:
        return "a session holds a lock on a table (a migration?); let it finish, then retry"
    if "server version mismatch" in text:
        return "install a pg_dump at least as new as the server"
    if "no space" in text:
        return "free disk space in the backup directory, then retry"
    return "fix the cause above and retry; nothing was changed"
