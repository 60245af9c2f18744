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

The order of the steps is restore.py's (written once for every engine); sqlite_restore does each one.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from contextlib import closing
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from bot import format as fmt
from bot.backends.base import DumpInfo, Progress, no_progress
from bot.backends.dbtools import (
    RETRY_HINT,
    dump_file_size,
    no_objects,
    one_line,
    publish,
    refuse_unless_shadow,
    shadow_name_for,
)
from bot.backends.reporter import Reporter
from bot.backends.restore import RestoresAside, Tick, dump_verified
from bot.backends.sqlite_restore import STAGE_MARK, SQLiteRestore, open_ro
from bot.errors import DatabaseError, DumpFailed

_HEADER = b"SQLite format 3\x00"
_FILE_NAME_MAX = 255  # bytes in a file name on every filesystem a bot would run on


class SQLiteDatabase(RestoresAside):
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
            with closing(open_ro(self.path)) as conn:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot read {self.path}: {one_line(exc)}") from None

    def dump(self, dest: Path, *, progress: Progress = no_progress) -> DumpInfo:
        return dump_verified(self, dest, progress=progress)

    def verify(self, path: Path) -> DumpInfo:
        return self.verify_dump(Path(path).absolute())

    def shadow_name(self, tag: str) -> str:
        """The staged copy of the dump beside the live file (hidden, so nobody takes it for a database)."""
        return str(
            self.path.with_name(shadow_name_for(f".{self.name}", tag, max_bytes=_FILE_NAME_MAX, mark=STAGE_MARK))
        )

    def restore_hooks(self, source: Path, *, cancel: threading.Event | None) -> SQLiteRestore:
        return SQLiteRestore(self, source, cancel=cancel)

    def discard_shadow(self, shadow: str) -> str | None:
        path = self.shadow_path(shadow, action="delete")
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise DatabaseError(f"could not delete the leftover staged copy {path}: {exc.strerror}") from None
        return f"deleted the leftover staged copy {path.name} ({fmt.size(size)})"

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

    # --- the dump's hooks (restore.DumpHooks) ----------------------------------------------------

    dump_noun = "objects"

    def expected_size(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            raise DumpFailed(
                f"the database file {self.path} does not exist; no dump was taken", hint="check the URL's path"
            ) from None

    def write_dump(self, partial: Path, say: Reporter, tick: Tick) -> None:
        try:
            with closing(open_ro(self.path)) as src, closing(sqlite3.connect(partial)) as dst:
                page = int(src.execute("PRAGMA page_size").fetchone()[0])

                def step(_status: int, remaining: int, total: int) -> None:
                    tick((total - remaining) * page)  # the copy lives in SQLite's cache until it commits

                src.backup(dst, pages=1024, progress=step)  # a consistent snapshot, WAL content included
                dst.execute("PRAGMA journal_mode=DELETE")  # a dump is one self-contained file
        except (sqlite3.Error, OSError) as exc:
            raise DumpFailed(
                f"dump of {self.path} failed: {one_line(exc)}; no dump was kept and the database was not changed",
                hint="check disk space and permissions in the backup directory, then retry",
            ) from None

    def verify_dump(self, path: Path, *, shown_as: str = "") -> DumpInfo:
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
            with closing(open_ro(path, immutable=True)) as conn:
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

    # --- shared with sqlite_restore ----------------------------------------------------------------

    def shadow_path(self, shadow: str, *, action: str, error: type[DatabaseError] = DatabaseError) -> Path:
        path = Path(shadow).absolute()
        name = path.name if path.parent == self.path.parent else ""  # only ever beside the live file
        refuse_unless_shadow(
            f".{self.name}",
            name,
            max_bytes=_FILE_NAME_MAX,
            action=action,
            error=error,
            mark=STAGE_MARK,
            shown=str(path),
        )
        return path

    # --- internals ------------------------------------------------------------------------------

    def _settle_kept(self, partial: Path) -> str:
        """Keep a saved copy an interrupted restore left as .partial if it is whole; delete it if not."""
        kept = partial.with_name(partial.name.removesuffix(".partial"))
        try:
            self.verify_dump(partial)
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


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)
