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

The order of the steps is restore.py's (written once for every engine); this module connects and
dumps, postgres_restore does each restore step, postgres_admin holds the SQL.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

import psycopg
from psycopg.conninfo import make_conninfo

from bot import format as fmt
from bot.backends import postgres_admin as admin
from bot.backends import postgres_prestage as prestage
from bot.backends import postgres_repair as repair
from bot.backends.base import DumpInfo, Progress, Standby, no_progress
from bot.backends.dbtools import (
    DEFAULT_TOOL_TIMEOUT_S,
    RETRY_HINT,
    ToolRun,
    dump_file_size,
    file_size,
    no_objects,
    one_line,
    refuse_unless_shadow,
    run_tool,
    shadow_name_for,
    tool_env,
)
from bot.backends.postgres_restore import PostgresRestore
from bot.backends.reporter import MEASURE_EVERY_S, Reporter
from bot.backends.restore import RestoresAside, StagedAside, Tick, dump_verified
from bot.errors import DatabaseError, DumpFailed, RestoreFailed
from bot.redact import register_secret

_DUMP_TABLE = re.compile(r'^pg_dump: dumping contents of table "(.*)"$')
_TOC_LINE = re.compile(r"^\d+; \d+ \d+ ")


class PostgresDatabase(RestoresAside):
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
        jobs: int | None = None,
        compress: int = 1,
        keep_owners: bool | None = None,
        analyze: bool = True,
        verify_data: bool = True,
    ) -> None:
        """`keep_owners=None` decides per dump: keep the dump's owners when this role may assign them.

        `verify_data` makes verify() read every data block (pg_restore to /dev/null), because a
        truncated archive still lists its table of contents happily. `jobs` > 1 restores in parallel
        (default: one per core, up to 4). `compress` is pg_dump's zlib level: 1, because pg_dump
        compresses on one core and level 6 (its default) took 2.4× as long as level 1 for a dump
        only 3% smaller, measured on generated data (see the README's benchmarks).
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
        self.jobs = max(1, jobs if jobs is not None else min(4, os.cpu_count() or 1))
        self.compress = compress
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
            with self.connect(self.name, timeout_s=min(self.connect_timeout_s, 10.0)) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise DatabaseError(
                f"cannot connect to {self.describe()}: {one_line(exc)}",
                hint="check that the server is up and that the URL's user, password and database are right",
            ) from None

    def dump(self, dest: Path, *, progress: Progress = no_progress) -> DumpInfo:
        return dump_verified(self, dest, progress=progress)

    def verify(self, path: Path) -> DumpInfo:
        return self._verify(Path(path).absolute(), deep=self.verify_data)

    def shadow_name(self, tag: str) -> str:
        return shadow_name_for(self.name, tag, max_bytes=admin.PG_NAME_MAX)

    def restore_hooks(self, source: Path, *, cancel: threading.Event | None) -> PostgresRestore:
        return PostgresRestore(self, source, cancel=cancel)

    def discard_shadow(self, shadow: str) -> str | None:
        refuse_unless_shadow(self.name, shadow, max_bytes=admin.PG_NAME_MAX, action="drop")
        with self.admin_session(f"the shadow database {shadow} may still exist") as conn:
            return repair.discard(conn, shadow)

    def repair_interrupted_swap(self) -> list[str]:
        with self.admin_session(f"the live database {self.name} may still refuse connections") as conn:
            return repair.repair_swap(conn, self.name)

    # --- identities (base.DatabaseIdentities): an oid survives a rename -------------------------------

    def identity(self, name: str) -> str | None:
        with self.admin_session(f"{name} was not changed") as conn:
            row = conn.execute("SELECT oid::bigint FROM pg_database WHERE datname = %s", (name,)).fetchone()
        return str(row[0]) if row else None

    def name_of(self, identity: str) -> str | None:
        with self.admin_session("nothing was changed") as conn:
            row = conn.execute("SELECT datname FROM pg_database WHERE oid = %s::oid", (identity,)).fetchone()
        return str(row[0]) if row else None

    # --- standbys (base.StandbyDatabase; postgres_prestage) ----------------------------------------

    def build_standby(self, source: Path, *, label: str, progress: Progress = no_progress) -> Standby:
        return prestage.build(self, Path(source).absolute(), label=label, progress=progress)

    def standby_build_lock(self, *, progress: Progress = no_progress) -> AbstractContextManager[None]:
        return prestage.build_lock(self, progress=progress)

    def stage_standby(self, prestaged: Standby, *, label: str) -> StagedAside:
        return prestage.stage(self, prestaged, label=label)

    def drop_standby(self) -> str | None:
        return prestage.drop(self)

    def dump_kept(self, kept: str, dest: Path, *, progress: Progress = no_progress) -> DumpInfo:
        return prestage.dump_kept(self, kept, dest, progress=progress)

    # --- the dump's hooks (restore.DumpHooks) ----------------------------------------------------

    dump_noun = "objects"

    def expected_size(self) -> int | None:
        """The database's size on disk: an overestimate of a compressed dump, so a bar never overruns."""
        try:
            with self.connect(self.name, timeout_s=min(self.connect_timeout_s, 10.0)) as conn:
                row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
        except psycopg.Error:  # pg_dump will say what is wrong, in its own words
            return None
        return int(row[0]) if row and row[0] is not None else None

    def write_dump(self, partial: Path, say: Reporter, tick: Tick) -> None:
        tables = 0

        def on_line(line: str) -> None:
            nonlocal tables
            match = _DUMP_TABLE.match(line)
            if match:
                tables += 1
                say.maybe(f"dumping table {match.group(1)} ({tables} so far, {fmt.size(file_size(partial))})")

        args = [
            "pg_dump",
            "--format=custom",
            f"--compress={self.compress}",
            "--no-password",
            "--verbose",
            # Waiting forever behind a migration's lock is worse at 3 a.m. than a clear failure.
            f"--lock-wait-timeout={int(self.lock_wait_timeout_s * 1000)}",
            f"--file={partial}",
            f"--dbname={self.conninfo(self.name)}",
        ]
        run = run_tool(
            args, env=self.env(), timeout_s=self.tool_timeout_s, on_line=on_line, on_tick=tick, tick_s=MEASURE_EVERY_S
        )
        if not run.ok:
            raise DumpFailed(
                f"pg_dump of {self.describe()} failed: {run.why()}; no dump was kept and the database was not changed",
                hint=_dump_hint(run),
            )

    def verify_dump(self, path: Path, *, shown_as: str) -> DumpInfo:
        return self._verify(path, deep=self.verify_data, shown_as=shown_as)

    # --- connections and tools, shared with postgres_restore -----------------------------------------

    def conninfo(self, dbname: str) -> str:
        return make_conninfo("", **{**self._params, "dbname": dbname})

    def env(self) -> dict[str, str]:
        extra = {"PGCONNECT_TIMEOUT": str(max(2, int(self.connect_timeout_s)))}
        if self._password:
            extra["PGPASSWORD"] = self._password
        return tool_env(extra)

    def connect(self, dbname: str, *, timeout_s: float) -> admin.Conn:
        extra: dict[str, str] = {"connect_timeout": str(max(2, int(timeout_s)))}
        if self._password:
            extra["password"] = self._password
        # The password goes into the in-memory conninfo only; it is never logged or shown.
        return psycopg.connect(make_conninfo(self.conninfo(dbname), **extra), autocommit=True)

    @contextmanager
    def admin_session(self, state: str) -> Iterator[admin.Conn]:
        """A session on the maintenance database; failures to get one say what state things are in."""
        try:
            conn = self.connect(self.maintenance_db, timeout_s=self.connect_timeout_s)
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

    def toc(self, path: Path, *, shown_as: str = "") -> list[str]:
        """The archive's table of contents (one line per object); DumpFailed if unreadable or empty."""
        shown = shown_as or path.name
        dump_file_size(path, shown)
        run = run_tool(
            ["pg_restore", "--list", str(path)],
            env=self.env(),
            timeout_s=self.tool_timeout_s,
            capture_stdout=True,
        )
        if not run.ok:
            raise DumpFailed(f"{shown} is not a readable pg_dump archive ({run.why()})", hint=RETRY_HINT)
        toc = [line for line in run.stdout.splitlines() if _TOC_LINE.match(line)]
        if not toc:
            raise no_objects(shown)
        return toc

    # --- internals ------------------------------------------------------------------------------

    def _verify(self, path: Path, *, deep: bool, shown_as: str = "") -> DumpInfo:
        toc = self.toc(path, shown_as=shown_as)
        if deep:
            run = run_tool(
                ["pg_restore", f"--file={os.devnull}", str(path)],
                env=self.env(),
                timeout_s=self.tool_timeout_s,
            )
            if not run.ok:
                raise DumpFailed(
                    f"{shown_as or path.name} is damaged: its table of contents reads but its data does not"
                    f" ({run.why()})",
                    hint="the file is truncated or corrupt; use another restore point, or take a new dump",
                )
        return DumpInfo(path=path, size_bytes=file_size(path), entries=len(toc), verified=True)


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
