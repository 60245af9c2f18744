"""MySQL/MariaDB's steps of a restore (the hooks restore.restore_aside calls): a shadow database with the
live one's character set, the `mysql` client fed the dump, then mysql_objects' atomic RENAME TABLE swap.
"""

from __future__ import annotations

import bisect
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pymysql

from bot import format as fmt
from bot.backends import mysql_objects as objs
from bot.backends import mysql_repair as repair
from bot.backends.dbtools import (
    fit_name,
    one_line,
    refuse_unless_shadow,
    run_tool,
    stamp,
    tool_env,
)
from bot.backends.reporter import MEASURE_EVERY_S, Reporter
from bot.backends.restore import Loaded, Restore, Swapped
from bot.errors import RestoreFailed

if TYPE_CHECKING:
    from bot.backends.mysql import MySQLDatabase

NAME_MAX = 64  # MySQL identifiers: 64 characters; counting bytes keeps multibyte names safe too


class MySQLRestore(Restore):
    """One restore of `db` from `source`: implements restore.RestoreHooks."""

    noun = "tables and views"
    # A rollback settles a switch of the live database cut short earlier; a scratch copy (drills,
    # rehearsals) must not, since a rollback's own switch may be under way at that very moment.
    settles_interrupted_switch = True

    def __init__(self, db: MySQLDatabase, source: Path, *, cancel: threading.Event | None = None) -> None:
        super().__init__(db.name, source, cancel=cancel)
        self.db = db
        self.size = 0
        self.starts: list[int] = []  # byte offset where each table's (or view's) part of the dump begins
        self.charset = ("", "")

    def refuse(self, shadow: str) -> None:
        refuse_unless_shadow(self.live, shadow, max_bytes=NAME_MAX, action="restore into", error=RestoreFailed)

    def prepare(self, say: Reporter) -> int:
        checked, self.starts = self.db.read_dump(self.source)
        self.size = checked.size_bytes
        with self.db.admin_session(self.untouched) as conn:
            charset = objs.rows(
                conn,
                "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA"
                " WHERE SCHEMA_NAME = %s",
                (self.live,),
            )
            if not charset:
                raise RestoreFailed(
                    f"the live database {self.live} does not exist on {self.db.describe()}; nothing was restored",
                    hint="check the environment's DATABASE_URL names the right database",
                )
            self.charset = (str(charset[0][0]), str(charset[0][1]))
            # A switch cut short earlier must be settled first, or its missing views would be "kept" missing.
            if self.settles_interrupted_switch:
                for repaired in repair.repair_swap(conn, self.live, timeout_s=self.db.swap_timeout_s):
                    say.say(repaired)
        return checked.entries

    def new_shadow(self) -> str:
        with self.db.admin_session(self.untouched) as conn:
            return self._free_name(conn, f"_rb_shadow_{stamp(seconds=True)}")

    def exists(self, shadow: str) -> bool:
        with self.db.admin_session(self.untouched) as conn:
            return repair.exists_settled(conn, shadow, timeout_s=self.db.swap_timeout_s)

    def drop_shadow(self, shadow: str) -> None:
        # Kills the sessions still using it first: an orphaned `mysql` client may still be loading it.
        with self.db.admin_session(f"the shadow database {shadow} may still exist") as conn:
            repair.discard(conn, shadow, timeout_s=self.db.swap_timeout_s)

    def create_shadow(self, shadow: str) -> list[str]:
        with self.db.admin_session(self.untouched) as conn:
            try:
                objs.run(conn, objs.create_database(shadow, *self.charset))
            except pymysql.MySQLError as exc:
                raise RestoreFailed(
                    f"could not create the shadow database {shadow}: {one_line(exc)}; {self.untouched}",
                    hint=f"the bot's user needs CREATE and DROP on databases named {self.live}_*",
                ) from None
        return []

    def load(self, shadow: str, say: Reporter) -> None:
        """Feed the dump to `mysql` in the shadow, measured in tables: how far into the file it has read."""
        size, total = self.size, len(self.starts)
        started = time.monotonic()

        def where(dump: Any) -> tuple[int, int]:
            # The child shares this file description, so our offset is how far mysql has read.
            offset = os.lseek(dump.fileno(), 0, os.SEEK_CUR)
            return offset, max(0, bisect.bisect_right(self.starts, offset) - 1)  # the last one begun is not done

        with self.source.open("rb") as dump, self.db.defaults_file() as defaults:

            def on_tick() -> None:
                offset, done = where(dump)
                elapsed = fmt.duration(time.monotonic() - started, rough=True)
                text = f"restoring into {shadow}: {done} of {total} tables and views, {100 * offset // max(size, 1)}%"
                say.measure(f"{text} of {fmt.size(size)}, {elapsed} so far", done=done, total=total, unit="tables")

            text = f"restoring {self.source.name} into {shadow} ({fmt.size(size)}, {total} tables and views)"
            say.measure(text, done=0, total=total, unit="tables", at_once=True)
            # --skip-reconnect: orphaned by a crash and cut off by discard_shadow, the client must end,
            # not reconnect to the shadow's name (a retried restore may have created it afresh).
            args = ["mysql", f"--defaults-extra-file={defaults}", "--batch", "--skip-reconnect", f"--database={shadow}"]
            run = run_tool(
                args,
                env=tool_env({}),
                timeout_s=self.db.tool_timeout_s,
                stdin=dump,
                on_tick=on_tick,
                tick_s=MEASURE_EVERY_S,
                cancel=self.cancel,
            )
            offset, done = where(dump)
        if not run.ok:
            raise RestoreFailed(
                f"restore failed {100 * offset // max(size, 1)}% into the dump ({done} of {total} tables and views"
                f" loaded): {run.why()}; {self.untouched}",
                hint="fix the cause and retry, or restore from another dump",
            )
        say.measure(f"restored {total} tables and views into {shadow}", done=total, total=total, unit="tables")

    def verify_loaded(self, shadow: str, say: Reporter) -> Loaded:
        return Loaded()  # the client stops at the first error, so a clean exit means everything is in

    def swap(self, shadow: str, say: Reporter) -> Swapped:
        with self.db.admin_session(self.untouched) as conn:
            kept = self._free_name(conn, f"_before_rollback_{stamp()}")
            kept, killed, warnings = objs.swap_in(
                conn,
                live=self.live,
                shadow=shadow,
                kept=kept,
                charset=self.charset,
                timeout_s=self.db.swap_timeout_s,
                say=say.say,
            )
        return Swapped(kept=kept, details={"terminated_sessions": str(killed)}, warnings=warnings)

    def _free_name(self, conn: Any, suffix: str) -> str:
        name = fit_name(self.live, suffix, max_bytes=NAME_MAX)
        counter = 2
        while objs.schema_exists(conn, name):
            name = fit_name(self.live, f"{suffix}_{counter}", max_bytes=NAME_MAX)
            counter += 1
        return name
