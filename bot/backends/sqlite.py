"""SQLite: dumps and restores with SQLite's own online backup API, safe while the app keeps running.

Why not copy the file and os.replace() it over the live one: an application's open connections keep
the old inode (they would go on reading and writing the kept copy, unseen), and a leftover -wal or
-journal file of the old database would be replayed into the new one and corrupt it. The backup API
writes the restored pages into the live database inside one SQLite write transaction instead: atomic,
visible to every open connection at commit, and rolled back by SQLite itself if anything fails.

The previous data is saved as `<file>.before_rollback_<UTC stamp>` from inside that same transaction
(right after it has taken the write lock, before anything is committed), so no write can fall
between the saved copy and the restore.

A crash (kill -9) mid-restore can leave: the staged copy of the dump (`.<file>.rb_restore_<tag>`, the
"shadow", which discard_shadow deletes); an uncommitted restore transaction, which SQLite rolls back
from the -journal on the next open (or ignores, in WAL mode) and repair_interrupted_swap makes happen at
once; and the saved copy still named `.partial`. That copy is complete whenever the live file's pages
may have been replaced (it is written before the first one is), so repair keeps it under its final
name; an incomplete one proves the restore never got that far, and is deleted.
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from bot.backends.base import DumpInfo, Progress, RestoreResult, no_progress
from bot.backends.dbtools import (
    RETRY_HINT,
    Reporter,
    dump_file_size,
    human_duration,
    human_size,
    no_objects,
    one_line,
    partial_path,
    publish,
    refuse_unless_shadow,
    shadow_name_for,
    stamp,
)
from bot.errors import DatabaseError, DumpFailed, RestoreFailed

_HEADER = b"SQLite format 3\x00"
_OK, _BUSY, _LOCKED, _DONE = 0, 5, 6, 101  # sqlite3_backup_step() result codes
_STAGE_MARK = ".rb_restore_"
_FILE_NAME_MAX = 255  # bytes in a file name on every filesystem a bot would run on


class SQLiteDatabase:
    """A live SQLite database file."""

    engine = "sqlite"

    def __init__(self, url: str, *, busy_timeout_s: float = 60.0) -> None:
        """`busy_timeout_s`: how long a restore waits for the app's locks before giving up untouched."""
        parts = urlsplit(url)
        if parts.scheme.split("+")[0] != "sqlite" or parts.netloc or parts.query:
            raise DatabaseError(
                "the database URL is not a sqlite:/// URL",
                hint="use sqlite:///relative/path.db or sqlite:////absolute/path.db",
            )
        raw = unquote(parts.path)[1:]  # sqlite:///x.db → "x.db"; sqlite:////srv/x.db → "/srv/x.db"
        if not raw or raw == ":memory:":
            raise DatabaseError("the database URL names no database file", hint="use sqlite:///path/to/app.db")
        self.path = Path(raw).absolute()
        self.name = self.path.name
        self.busy_timeout_s = busy_timeout_s

    # --- Database protocol ----------------------------------------------------------------------

    def required_tools(self) -> list[str]:
        return []

    def describe(self) -> str:
        return f"sqlite:///{self.path}"

    def check(self) -> None:
        if not self.path.is_file():
            raise DatabaseError(f"the database file {self.path} does not exist", hint="check the URL's path")
        try:
            with closing(_open_ro(self.path)) as conn:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot read {self.path}: {one_line(exc)}") from None

    def dump(self, dest: Path, *, progress: Progress = no_progress) -> DumpInfo:
        say = Reporter(progress)
        dest = Path(dest).absolute()
        partial = partial_path(dest)
        if not self.path.is_file():
            raise DumpFailed(
                f"the database file {self.path} does not exist; no dump was taken", hint="check the URL's path"
            )
        say.say(f"dumping {self.path} to {dest.name}")
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            partial.unlink(missing_ok=True)
            with closing(_open_ro(self.path)) as src, closing(sqlite3.connect(partial)) as dst:

                def step(_status: int, remaining: int, total: int) -> None:
                    say.maybe(f"dumping {self.name}: {total - remaining} of {total} pages")

                src.backup(dst, pages=1024, progress=step)  # a consistent snapshot, WAL content included
                dst.execute("PRAGMA journal_mode=DELETE")  # a dump is one self-contained file
            checked = self._verify(partial, shown_as=dest.name)
            publish(partial, dest)
        except (sqlite3.Error, OSError) as exc:
            partial.unlink(missing_ok=True)
            raise DumpFailed(
                f"dump of {self.path} failed: {one_line(exc)}; no dump was kept and the database was not changed",
                hint="check disk space and permissions in the backup directory, then retry",
            ) from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        say.say(f"dump {dest.name} verified: {checked.entries} objects, {human_size(checked.size_bytes)}")
        return DumpInfo(path=dest, size_bytes=checked.size_bytes, entries=checked.entries, verified=True)

    def verify(self, path: Path) -> DumpInfo:
        return self._verify(Path(path).absolute())

    def shadow_name(self, tag: str) -> str:
        """The staged copy of the dump beside the live file (hidden, so nobody takes it for a database)."""
        return str(
            self.path.with_name(shadow_name_for(f".{self.name}", tag, max_bytes=_FILE_NAME_MAX, mark=_STAGE_MARK))
        )

    def restore(self, source: Path, *, progress: Progress = no_progress, shadow: str | None = None) -> RestoreResult:
        say = Reporter(progress)
        started = time.monotonic()
        source = Path(source).absolute()
        untouched = f"the live database {self.path} was not touched"
        staged = None if shadow is None else self._shadow_path(shadow, action="restore into", error=RestoreFailed)
        if not self.path.is_file():
            raise RestoreFailed(
                f"the live database file {self.path} does not exist; nothing was restored",
                hint="check the environment's database URL",
            )
        say.say(f"checking {source.name}")
        # The copy beside the live file is what gets restored, so the source may change or vanish meanwhile.
        if staged is None:
            staged = self.path.with_name(f".{self.name}{_STAGE_MARK}{stamp(seconds=True)}")
        elif staged.exists():
            say.say(f"deleting the staged copy {staged.name} left by an interrupted attempt")
            staged.unlink()
        kept = self._free_kept_name()
        kept_partial = partial_path(kept)
        try:
            try:
                shutil.copyfile(source, staged)
                checked = self._verify(staged, shown_as=source.name)
            except OSError as exc:
                raise RestoreFailed(f"cannot stage {source}: {exc.strerror}; {untouched}") from None
            except DumpFailed as exc:
                raise RestoreFailed(f"cannot restore from {exc.message}; {untouched}", hint=exc.hint) from None
            say.say(f"restoring {source.name} into {self.path} ({human_size(checked.size_bytes)})")
            try:
                problems = self._backup_into_live(staged, kept_partial, say=say, untouched=untouched)
            except BaseException:
                kept_partial.unlink(missing_ok=True)  # not committed: the live file still has this data
                raise
        finally:
            staged.unlink(missing_ok=True)
        try:
            publish(kept_partial, kept)  # committed: from here on the saved copy is the only previous data
        except DumpFailed:
            raise RestoreFailed(
                f"{self.path} was restored, but the previous data could not be renamed: it is in {kept_partial}",
                hint=f"rename {kept_partial.name} by hand to keep it; do not delete it",
            ) from None
        if problems:
            raise RestoreFailed(
                f"{self.path} was restored but SQLite's check reports: {'; '.join(problems)}; the previous"
                f" data is kept as {kept}",
                hint="inspect the database before letting the application use it",
            )
        summary = f"restored {checked.entries} objects from {source.name} into {self.path};"
        summary += f" previous data kept as {kept}"
        say.say(summary)
        details = {
            "source": str(source),
            "objects": str(checked.entries),
            "kept": str(kept),
            "duration": human_duration(time.monotonic() - started),
        }
        return RestoreResult(database=str(self.path), previous=str(kept), summary=summary, details=details)

    def discard_shadow(self, shadow: str) -> str | None:
        path = self._shadow_path(shadow, action="delete")
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DatabaseError(f"could not delete the leftover staged copy {path}: {exc.strerror}") from None
        return f"deleted the leftover staged copy {path.name} ({human_size(size)})"

    def repair_interrupted_swap(self) -> list[str]:
        said: list[str] = []
        pattern = re.compile(re.escape(self.name) + r"\.before_rollback_[0-9]{12}(_[0-9]+)?\.partial")
        for partial in sorted(p for p in self.path.parent.glob(f"{glob_escape(self.name)}.before_rollback_*.partial")):
            if pattern.fullmatch(partial.name):
                said.append(self._settle_kept(partial))
        journal = self.path.with_name(self.name + "-journal")
        if self.path.is_file() and journal.is_file() and journal.stat().st_size > 0:
            # A hot journal is rolled back by the first connection that may write; do it now rather
            # than leave it to whichever app (or read-only reporting job) opens the file first.
            try:
                with closing(sqlite3.connect(f"file:{quote(str(self.path))}?mode=rw", uri=True, timeout=5)) as conn:
                    conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.Error as exc:
                raise DatabaseError(f"cannot open {self.path} to roll back its journal: {one_line(exc)}") from None
            if not journal.is_file() or journal.stat().st_size == 0:
                said.append(f"SQLite rolled back the unfinished restore left in {journal.name}")
        return said

    # --- helpers for tests, the demo and the engine ---------------------------------------------

    def table_counts(self) -> dict[str, int]:
        try:
            with closing(_open_ro(self.path)) as conn:
                names = [
                    str(r[0])
                    for r in conn.execute(
                        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
                    )
                ]
                return {n: int(conn.execute(f'SELECT count(*) FROM "{_ident(n)}"').fetchone()[0]) for n in names}
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot read {self.path}: {one_line(exc)}") from None

    # --- internals ------------------------------------------------------------------------------

    def _verify(self, path: Path, *, shown_as: str = "") -> DumpInfo:
        shown = shown_as or path.name
        hint = RETRY_HINT
        size = dump_file_size(path, shown)
        try:
            with path.open("rb") as handle:
                header = handle.read(len(_HEADER))
        except OSError as exc:
            raise DumpFailed(f"cannot read {shown}: {exc.strerror}", hint=hint) from None
        if header != _HEADER:
            raise DumpFailed(f"{shown} is not an SQLite database file", hint=hint)
        try:
            with closing(_open_ro(path, immutable=True)) as conn:
                problems = [str(r[0]) for r in conn.execute("PRAGMA integrity_check(5)")]
                if problems != ["ok"]:
                    raise DumpFailed(f"{shown} is damaged: {'; '.join(problems)[:300]}", hint=hint)
                entries = int(
                    conn.execute("SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchone()[0]
                )
        except sqlite3.Error as exc:
            raise DumpFailed(f"{shown} is damaged: {one_line(exc)}", hint=hint) from None
        if entries == 0:
            raise no_objects(shown)
        return DumpInfo(path=path, size_bytes=size, entries=entries, verified=True)

    def _shadow_path(self, shadow: str, *, action: str, error: type[DatabaseError] = DatabaseError) -> Path:
        path = Path(shadow).absolute()
        name = path.name if path.parent == self.path.parent else ""  # only ever beside the live file
        refuse_unless_shadow(
            f".{self.name}",
            name,
            max_bytes=_FILE_NAME_MAX,
            action=action,
            error=error,
            mark=_STAGE_MARK,
            shown=str(path),
        )
        return path

    def _settle_kept(self, partial: Path) -> str:
        """Keep a saved copy an interrupted restore left as .partial if it is whole; delete it if not."""
        kept = partial.with_name(partial.name.removesuffix(".partial"))
        try:
            self._verify(partial)
            whole = True
        except DumpFailed as exc:
            whole = "holds no tables" in exc.message  # whole, but of an empty database
        if not whole:
            partial.unlink(missing_ok=True)
            return (
                f"deleted {partial.name}: an interrupted restore stopped while saving it, before changing"
                f" {self.name}, which still holds that data"
            )
        if kept.exists():
            return f"left {partial.name} as it is: {kept.name} exists too; compare them by hand"
        publish(partial, kept)
        return f"kept the data from before an interrupted restore as {kept.name} (it was left as {partial.name})"

    def _free_kept_name(self) -> Path:
        base = f"{self.name}.before_rollback_{stamp()}"
        kept, counter = self.path.with_name(base), 2
        while kept.exists() or partial_path(kept).exists():
            kept, counter = self.path.with_name(f"{base}_{counter}"), counter + 1
        return kept

    def _backup_into_live(self, staged: Path, kept_partial: Path, *, say: Reporter, untouched: str) -> list[str]:
        """Copy `staged` over the live database in one write transaction, saving the old data first.

        Returns what SQLite's quick check of the result reports (nothing when all is well).

        One page per step, so that the first step only takes the write lock: the callback after it
        saves the still-committed old data (readers may read while we hold the write lock, writers
        may not write), and only then are the live pages replaced.
        """
        saved = False
        busy_since: float | None = None

        def step(status: int, remaining: int, total: int) -> None:
            nonlocal saved, busy_since
            if status in (_BUSY, _LOCKED):
                busy_since = busy_since or time.monotonic()
                if time.monotonic() - busy_since > self.busy_timeout_s:
                    raise _LiveBusy()  # raising here makes SQLite abandon the backup, changing nothing
                return
            busy_since = None
            if not saved:
                if status == _DONE:  # cannot happen: a dump with a table has ≥2 pages, so ≥2 steps
                    raise RestoreFailed(
                        f"{self.path} was restored in a single step, before its previous data could be saved",
                        hint="the previous data survives only in the pre-rollback dump, if one was taken",
                    )
                say.say(f"saving the current data as {kept_partial.name.removesuffix('.partial')}")
                if wal:  # committed data = file + WAL; a reader still sees it while we hold the write lock
                    with closing(_open_ro(self.path)) as old, closing(sqlite3.connect(kept_partial)) as copy:
                        old.backup(copy, progress=_give_up_after(self.busy_timeout_s))
                        copy.execute("PRAGMA journal_mode=DELETE")
                else:
                    # The backup holds an EXCLUSIVE lock (no reader may in) but has changed only its page
                    # cache: the file on disk is exactly the committed data, and nobody else can touch it.
                    shutil.copyfile(self.path, kept_partial)
                saved = True
                fault_injection_seam("sqlite-restore-saved-previous-data")
            say.maybe(f"restoring {self.name}: {total - remaining} of {total} pages")

        try:
            with (
                closing(_open_ro(staged, immutable=True)) as src,
                closing(sqlite3.connect(self.path, timeout=1.0, isolation_level=None)) as live,
            ):
                wal = str(live.execute("PRAGMA journal_mode").fetchone()[0]).lower() == "wal"
                src.backup(live, pages=1, progress=step, sleep=0.05)
                problems = [str(r[0]) for r in live.execute("PRAGMA quick_check(3)")]
        except _LiveBusy:
            raise RestoreFailed(
                f"the live database stayed locked by another connection for {self.busy_timeout_s:.0f}s; {untouched}",
                hint="retry when the application is idle (or stop it first)",
            ) from None
        except (sqlite3.Error, OSError) as exc:
            raise RestoreFailed(
                f"restore into {self.path} failed: {one_line(exc)}; SQLite rolled it back, {untouched}",
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


def _open_ro(path: Path, *, immutable: bool = False) -> sqlite3.Connection:
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


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def _ident(name: str) -> str:
    return name.replace('"', '""')
