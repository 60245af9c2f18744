"""PostgreSQL's steps of a restore (the hooks restore.restore_aside calls): a shadow database, pg_restore,
ANALYZE and the live database's properties, then the rename swap.

The swap closes the live database to new connections (ALLOW_CONNECTIONS false), terminates its
sessions and renames both databases in ONE transaction; postgres_repair explains what a crash in that
window leaves and how it is repaired.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

import psycopg

from bot import format as fmt
from bot.backends import postgres_admin as admin
from bot.backends import postgres_extensions as extensions
from bot.backends import postgres_properties as properties
from bot.backends import postgres_repair as repair
from bot.backends.dbtools import one_line, refuse_unless_shadow, run_tool, stamp
from bot.backends.reporter import MEASURE_EVERY_S, Reporter
from bot.backends.restore import Loaded, Restore, Swapped
from bot.errors import RestoreFailed

if TYPE_CHECKING:
    from bot.backends.postgres import PostgresDatabase

log = logging.getLogger(__name__)

_RESTORE_STEP = re.compile(r"^pg_restore: (creating|processing data for|executing|processing item) (.*)$")


class PostgresRestore(Restore):
    """One restore of `db` from `source`: implements restore.RestoreHooks."""

    def __init__(self, db: PostgresDatabase, source: Path, *, cancel: threading.Event | None = None) -> None:
        super().__init__(db.name, source, cancel=cancel)
        self.db = db
        self.toc: list[str] = []
        self.info: admin.DbInfo | None = None
        self.no_owner = False
        self.ownership = ""
        self.live_extensions: dict[str, str] = {}
        self.pinned: dict[str, str] = {}  # extension → the live version, where a plain restore would differ
        self.notes: list[str] = []  # warnings found before the shadow exists
        self.pin_failures: dict[str, str] = {}

    def refuse(self, shadow: str) -> None:
        refuse_unless_shadow(self.live, shadow, max_bytes=admin.PG_NAME_MAX, action="restore into", error=RestoreFailed)

    def prepare(self, say: Reporter) -> int:
        self.toc = self.db.toc(self.source)
        with self.db.admin_session(self.untouched) as conn:
            self.info = admin.database_info(conn, self.live)
            if self.info is None:
                raise RestoreFailed(
                    f"the live database {self.live} does not exist on {self.db.describe()}; nothing was restored",
                    hint="check the environment's DATABASE_URL names the right database",
                )
            self.no_owner, self.ownership = self._ownership(conn)
            self._extensions_to_pin(conn)
        return len(self.toc)

    def new_shadow(self) -> str:
        with self.db.admin_session(self.untouched) as conn:
            return admin.free_name(conn, self.live, f"_rb_shadow_{stamp(seconds=True)}")

    def exists(self, shadow: str) -> bool:
        with self.db.admin_session(self.untouched) as conn:
            return repair.exists_settled(conn, shadow)

    def drop_shadow(self, shadow: str) -> None:
        # Refuses new connections first, then DROP … WITH (FORCE): an orphaned pg_restore cannot write on.
        with self.db.admin_session(f"the shadow database {shadow} may still exist") as conn:
            repair.drop_shadow(conn, shadow)

    def create_shadow(self, shadow: str) -> list[str]:
        assert self.info is not None  # prepare() ran
        with self.db.admin_session(self.untouched) as conn:
            try:
                return admin.create_shadow(conn, shadow, self.info)
            except psycopg.Error as exc:
                raise RestoreFailed(
                    f"could not create the shadow database {shadow}: {one_line(exc)}; {self.untouched}",
                    hint="the bot's role needs CREATEDB (and ownership of the live database) to restore",
                ) from None

    def load(self, shadow: str, say: Reporter) -> None:
        """pg_restore into the shadow, measured in table-of-contents entries (it names each as it goes).

        In two parts when extensions must be set to the live versions first (postgres_extensions).
        """
        total = len(self.toc)
        done = 0
        current = "connecting"
        started = time.monotonic()

        def on_line(line: str) -> None:
            nonlocal done, current
            match = _RESTORE_STEP.match(line)
            if match:
                done = min(done + 1, total)
                current = f"{match.group(1)} {match.group(2)}"
                text = f"restoring into {shadow}: {done} of {total} objects ({current})"
                say.measure(text, done=done, total=total, unit="objects")

        def on_tick() -> None:
            elapsed = fmt.duration(time.monotonic() - started, rough=True)
            say.maybe(f"restoring into {shadow}: {done} of {total} objects, {elapsed} so far ({current})")

        say.measure(
            f"restoring {self.source.name} into {shadow} ({total} objects)",
            done=0,
            total=total,
            unit="objects",
            at_once=True,
        )

        def restore(use_list: list[str] | None, jobs: int) -> None:
            with tempfile.TemporaryDirectory(prefix="rb-toc-") as folder:
                args = ["pg_restore", "--verbose", "--no-password", "--exit-on-error"]
                args += ["--no-owner"] if self.no_owner else []
                args += [f"--jobs={jobs}"] if jobs > 1 else []
                if use_list is not None:
                    listed = Path(folder) / "toc.list"
                    listed.write_text("".join(line + "\n" for line in use_list))
                    args.append(f"--use-list={listed}")
                args += [f"--dbname={self.db.conninfo(shadow)}", str(self.source)]
                run = run_tool(
                    args,
                    env=self.db.env(),
                    timeout_s=self.db.tool_timeout_s,
                    on_line=on_line,
                    on_tick=on_tick,
                    tick_s=MEASURE_EVERY_S,
                    cancel=self.cancel,
                )
            if not run.ok:
                raise RestoreFailed(
                    f"restore failed at {current} ({done} of {total} objects): {run.why()}; {self.untouched}",
                    hint="fix the cause and retry, or restore from another dump; if it is about owners,"
                    " retry with keep_owners off",
                )

        if not self.pinned:
            restore(None, self.db.jobs)
        else:  # schemas and extensions first, extensions set to the live versions, then the rest
            head, tail = extensions.split(self.toc)
            restore(head, 1)
            current = "setting extension versions"
            try:
                with self.db.connect(shadow, timeout_s=self.db.connect_timeout_s) as conn:
                    self.pin_failures = extensions.pin(conn, self.pinned)
            except psycopg.Error as exc:
                raise RestoreFailed(
                    f"restore failed setting extension versions: {one_line(exc)}; {self.untouched}",
                    hint="check that the server is up and the bot's role may connect to the new database, then retry",
                ) from None
            restore(tail, self.db.jobs)
        # Not every entry is named in pg_restore's output (comments, ACLs): the whole archive is in now.
        say.measure(f"restored {total} objects into {shadow}", done=total, total=total, unit="objects")

    def verify_loaded(self, shadow: str, say: Reporter) -> Loaded:
        warnings = self.notes + (self._analyze(shadow, say) if self.db.analyze else [])
        with self.db.admin_session(self.untouched) as conn:
            warnings += properties.carry_over(conn, self.live, shadow)
        if self.live_extensions:
            try:
                with self.db.connect(shadow, timeout_s=self.db.connect_timeout_s) as conn:
                    restored = extensions.installed(conn)
                warnings += extensions.mismatches(self.live_extensions, restored, self.pin_failures)
            except psycopg.Error as exc:
                warnings.append(f"the restored database's extension versions could not be checked: {one_line(exc)}")
        return Loaded(warnings=warnings)

    def swap(self, shadow: str, say: Reporter) -> Swapped:
        live, db = self.live, self.db
        with db.admin_session(self.untouched) as conn:
            kept = admin.free_name(conn, live, f"_before_rollback_{stamp()}")
            say.say(f"switching: closing connections to {live}")
            try:
                admin.set_allow_connections(conn, live, False)
                terminated = 0
                for attempt in range(3):
                    terminated += admin.disconnect_others(conn, live, timeout_s=db.swap_timeout_s)
                    admin.disconnect_others(conn, shadow, timeout_s=db.swap_timeout_s)
                    try:
                        admin.swap(conn, live=live, shadow=shadow, kept=kept)
                        say.say(f"switched: {live} now holds the restored data; previous data is {kept}")
                        return self._swapped(kept, terminated)
                    except psycopg.errors.ObjectInUse:
                        if attempt == 2:  # a session slipped in between terminate and rename, thrice
                            raise
            except (psycopg.Error, admin.SessionsRemain) as exc:
                if isinstance(exc, admin.SessionsRemain):
                    why = f"sessions would not close: {'; '.join(exc.sessions[:5])}"
                else:
                    why = one_line(exc)
                if self._swapped_anyway(shadow, kept):  # e.g. the reply to COMMIT was lost
                    return self._swapped(kept, 0)
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

    # --- internals ------------------------------------------------------------------------------

    def _swapped(self, kept: str, terminated: int) -> Swapped:
        return Swapped(kept=kept, details={"ownership": self.ownership, "terminated_sessions": str(terminated)})

    def _ownership(self, conn: admin.Conn) -> tuple[bool, str]:
        """Whether to restore with --no-owner, and a note saying what ownership the objects will get.

        Keeping owners matters (the app's role must own its tables to migrate them) but only works if
        this role may give objects to those owners; otherwise pg_restore would fail on the first one.
        """
        me, _ = admin.current_role(conn)
        keep = self.db.keep_owners
        if keep is not None:
            return (not keep, "as in the dump" if keep else f"owned by {me}")
        missing = admin.can_assign_owners(conn, admin.owners_in_toc(self.toc))
        if missing:
            return True, f"owned by {me} (cannot assign the dump's owners: {', '.join(missing[:5])})"
        return False, "as in the dump"

    def _extensions_to_pin(self, conn: admin.Conn) -> None:
        if not extensions.in_toc(self.toc):
            return
        try:
            with self.db.connect(self.live, timeout_s=self.db.connect_timeout_s) as live:
                self.live_extensions = extensions.installed(live)
        except psycopg.Error as exc:
            self.notes.append(
                f"the live database's extension versions could not be read ({one_line(exc)}): the restored"
                " database has the server's default versions"
            )
            return
        self.pinned = extensions.to_pin(conn, self.live_extensions, self.toc)

    def _analyze(self, shadow: str, say: Reporter) -> list[str]:
        """Gather planner statistics before the swap: without them the first queries can crawl.

        vacuumdb --analyze-only spreads the tables over the restore's jobs (one session each): 0.37 s
        against 0.23 s at 130 MiB, 0.55 s against 0.34 s at 600 MiB, on 2 cores (the largest table
        bounds it). statement_timeout is lifted as pg_restore lifts it: a role's limit must not cut it
        short. Where the client package lacks vacuumdb, or it fails (a pooler refusing the option that
        lifts the limit, say), one session of ours does it: slower, never a refusal.
        """
        say.say(f"analyzing {shadow}")
        if shutil.which("vacuumdb") is not None:
            args = ["vacuumdb", "--analyze-only", "--no-password", f"--dbname={self.db.conninfo(shadow)}"]
            args += [f"--jobs={self.db.jobs}"] if self.db.jobs > 1 else []
            env = self.db.env()
            env["PGOPTIONS"] = f"{env.get('PGOPTIONS', '')} -c statement_timeout=0".strip()
            run = run_tool(args, env=env, timeout_s=self.db.tool_timeout_s, cancel=self.cancel)
            if run.ok or run.cancelled:
                return []  # a cancelled restore is dropped: its statistics do not matter
            log.warning("vacuumdb --analyze-only failed (%s): analyzing %s in one session", run.why(), shadow)
        try:
            with self.db.connect(shadow, timeout_s=self.db.connect_timeout_s) as conn:
                conn.execute("SET statement_timeout = 0")
                conn.execute("ANALYZE")
        except psycopg.Error as exc:
            return [f"ANALYZE of the restored data failed ({one_line(exc)}); autovacuum will catch up"]
        return []

    def _swapped_anyway(self, shadow: str, kept: str) -> bool:
        with suppress(Exception), self.db.admin_session("") as conn:
            return admin.exists(conn, kept) and not admin.exists(conn, shadow)
        return False

    def _reenable(self, live: str) -> None:
        try:
            with self.db.admin_session("") as conn:
                admin.set_allow_connections(conn, live, True)
        except Exception:
            log.error("could not re-enable connections to %s", live, exc_info=True)
