"""SQLite's steps of a restore (the hooks restore.restore_aside calls): the dump staged beside the live file
(the "shadow"), verified there, then written into the live database through the backup API.

sqlite.py's docstring says why the backup API and not a file rename, and what a crash leaves.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from bot import format as fmt
from bot.backends.dbtools import one_line, partial_path, publish, stamp
from bot.backends.reporter import Reporter
from bot.backends.restore import Loaded, Restore, Swapped
from bot.errors import DumpFailed, RestoreFailed

if TYPE_CHECKING:
    from bot.backends.sqlite import SQLiteDatabase

_BUSY, _LOCKED, _DONE = 5, 6, 101  # sqlite3_backup_step() result codes
STAGE_MARK = ".rb_restore_"


class SQLiteRestore(Restore):
    """One restore of `db` from `source`: implements restore.RestoreHooks."""

    shadow_kind = "staged copy"

    def __init__(self, db: SQLiteDatabase, source: Path, *, cancel: threading.Event | None = None) -> None:
        super().__init__(str(db.path), source, cancel=cancel)
        self.db = db

    def refuse(self, shadow: str) -> None:
        self.db.shadow_path(shadow, action="restore into", error=RestoreFailed)

    def prepare(self, say: Reporter) -> None:
        if not self.db.path.is_file():
            raise RestoreFailed(
                f"the live database file {self.db.path} does not exist; nothing was restored",
                hint="check the environment's database URL",
            )
        # The dump itself is verified once staged: the copy beside the live file is what gets restored,
        # so the source may change or vanish meanwhile.

    def new_shadow(self) -> str:
        return str(self.db.path.with_name(f".{self.db.name}{STAGE_MARK}{stamp(seconds=True)}"))

    def exists(self, shadow: str) -> bool:
        return Path(shadow).exists()

    def drop_shadow(self, shadow: str) -> None:
        Path(shadow).unlink(missing_ok=True)

    def create_shadow(self, shadow: str) -> list[str]:
        return []  # load() creates it: the staged copy is the dump, copied

    def load(self, shadow: str, say: Reporter) -> None:
        try:
            shutil.copyfile(self.source, shadow)
        except OSError as exc:
            raise RestoreFailed(f"cannot stage {self.source}: {exc.strerror}; {self.untouched}") from None

    def verify_loaded(self, shadow: str, say: Reporter) -> Loaded:
        return Loaded(entries=self.db.verify_dump(Path(shadow), shown_as=self.source.name).entries)

    def swap(self, shadow: str, say: Reporter) -> Swapped:
        staged = Path(shadow)
        kept = self._free_kept_name()
        kept_partial = partial_path(kept)
        size = staged.stat().st_size  # pages × page size: what the backup API will count up to
        text = f"restoring {self.source.name} into {self.db.path} ({fmt.size(size)})"
        say.measure(text, done=0, total=size, unit="bytes", at_once=True)
        try:
            problems = self._backup_into_live(staged, kept_partial, say=say)
        except BaseException:
            kept_partial.unlink(missing_ok=True)  # not committed: the live file still has this data
            raise
        staged.unlink(missing_ok=True)
        try:
            publish(kept_partial, kept)  # committed: from here on the saved copy is the only previous data
        except DumpFailed:
            raise RestoreFailed(
                f"{self.db.path} was restored, but the previous data could not be renamed: it is in {kept_partial}",
                hint=f"rename {kept_partial.name} by hand to keep it; do not delete it",
            ) from None
        if problems:
            raise RestoreFailed(
                f"{self.db.path} was restored but SQLite's check reports: {'; '.join(problems)}; the previous"
                f" data is kept as {kept}",
                hint="inspect the database before letting the application use it",
            )
        return Swapped(kept=str(kept))

    def _free_kept_name(self) -> Path:
        base = f"{self.db.name}.before_rollback_{stamp()}"
        kept, counter = self.db.path.with_name(base), 2
        while kept.exists() or partial_path(kept).exists():
            kept, counter = self.db.path.with_name(f"{base}_{counter}"), counter + 1
        return kept

    def _backup_into_live(self, staged: Path, kept_partial: Path, *, say: Reporter) -> list[str]:
        """Copy `staged` over the live database in one write transaction, saving the old data first.

        Returns what SQLite's quick check of the result reports (nothing when all is well).

        One page per step, so that the first step only takes the write lock: the callback after it
        saves the still-committed old data (readers may read while we hold the write lock, writers
        may not write), and only then are the live pages replaced. Measured in bytes: pages × page size.
        """
        live_path, busy_timeout_s = self.db.path, self.db.busy_timeout_s
        saved = False
        busy_since: float | None = None

        def step(status: int, remaining: int, total: int) -> None:
            nonlocal saved, busy_since
            if status in (_BUSY, _LOCKED):
                busy_since = busy_since or time.monotonic()
                if time.monotonic() - busy_since > busy_timeout_s:
                    raise _LiveBusy()  # raising here makes SQLite abandon the backup, changing nothing
                return
            busy_since = None
            if not saved:
                if status == _DONE:  # cannot happen: a dump with a table has ≥2 pages, so ≥2 steps
                    raise RestoreFailed(
                        f"{live_path} was restored in a single step, before its previous data could be saved",
                        hint="the previous data survives only in the pre-rollback dump, if one was taken",
                    )
                say.say(f"saving the current data as {kept_partial.name.removesuffix('.partial')}")
                if wal:  # committed data = file + WAL; a reader still sees it while we hold the write lock
                    with closing(open_ro(live_path)) as old, closing(sqlite3.connect(kept_partial)) as copy:
                        old.backup(copy, progress=_give_up_after(busy_timeout_s))
                        copy.execute("PRAGMA journal_mode=DELETE")
                else:
                    # The backup holds an EXCLUSIVE lock (no reader may in) but has changed only its page
                    # cache: the file on disk is exactly the committed data, and nobody else can touch it.
                    shutil.copyfile(live_path, kept_partial)
                saved = True
                fault_injection_seam("sqlite-restore-saved-previous-data")
            done, of = (total - remaining) * page, total * page
            say.measure(
                f"restoring {self.db.name}: {total - remaining} of {total} pages", done=done, total=of, unit="bytes"
            )

        try:
            with (
                closing(open_ro(staged, immutable=True)) as src,
                closing(sqlite3.connect(live_path, timeout=1.0, isolation_level=None)) as live,
            ):
                page = int(src.execute("PRAGMA page_size").fetchone()[0])
                wal = str(live.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"
                src.backup(live, pages=1, progress=step, sleep=0.05)
                problems = [str(r[0]) for r in live.execute("PRAGMA quick_check(3)")]
        except _LiveBusy:
            raise RestoreFailed(
                f"the live database stayed locked by another connection for {busy_timeout_s:.0f}s; {self.untouched}",
                hint="retry when the application is idle (or stop it first)",
            ) from None
        except (sqlite3.Error, OSError) as exc:
            raise RestoreFailed(
                f"restore into {live_path} failed: {one_line(exc)}; SQLite rolled it back, {self.untouched}",
                hint="check disk space and permissions beside the database file, then retry",
            ) from None
        return [] if problems == ["ok"] else problems


class _LiveBusy(Exception):
    pass


def _give_up_after(seconds: float) -> Callable[[int, int, int], None]:
    """A backup progress callback that abandons the backup once it has been refused a lock too long
    (Python's backup() would otherwise retry forever)."""
    since: list[float] = []

    def step(status: int, _remaining: int, _total: int) -> None:
        if status not in (_BUSY, _LOCKED):
            since.clear()
        elif not since:
            since.append(time.monotonic())
        elif time.monotonic() - since[0] > seconds:
            raise _LiveBusy()

    return step


def open_ro(path: Path, *, immutable: bool = False) -> sqlite3.Connection:
    """Read-only, and never creating a file: a typo in a path must not produce an empty database."""
    flags = "mode=ro" + ("&immutable=1" if immutable else "")
    return sqlite3.connect(f"file:{quote(str(path))}?{flags}", uri=True)


def fault_injection_seam(point: str) -> None:
    """TEST-ONLY fault-injection seam: a no-op unless RB_FAULT_INJECTION_PAUSE names `point`.

    tests/test_crash_cleanup_sqlite.py sets it in a child process it then SIGKILLs, to hold the
    restore inside its write transaction: that moment lasts milliseconds, and no other connection can
    hold it open (the backup keeps the live file's EXCLUSIVE lock from its first page to its commit).
    Nothing in the bot sets this variable.
    """
    if os.environ.get("RB_FAULT_INJECTION_PAUSE") == point:
        while True:
            time.sleep(60)
