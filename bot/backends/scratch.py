"""Scratch copies: a dump restored beside the live database, read back, then dropped. Never swapped in.

Restore drills (bot/engine/drills.py) prove a restore point restores; rehearsals run a whole plan on one.
The restore is a rollback's own, written once: restore.stage_aside with the engine's hooks (pg_restore and
the live database's properties; `mysql` with the live character set; SQLite's staged, integrity-checked
copy), pointed at a scratch name instead of a shadow name. So a dump that passes here is a dump a
rollback can load, and what fails here is what would fail at 3 a.m. Only the swap is missing: a
scratch copy can never take the live database's place (its hooks refuse to swap).

Names: `<live>_rb_<purpose>_<tag>` on PostgreSQL (63 bytes) and MySQL (64), `<file>.rb_<purpose>_<tag>`
beside an SQLite file; the live name is cut, never the suffix. A purpose is 2 to 16 lowercase letters
or digits and never a rollback's (`shadow`, the standby's, SQLite's `restore`), so a scratch name is
never one a rollback, a standby or a kept `_before_rollback_` copy uses; restore_scratch and
drop_scratch refuse any name scratch_name could not have given for this database.

Whoever makes a copy writes its name down first (the store's readiness_checks.scratch) and drops it
in a `finally`; after a crash, drop_scratch with the written-down name cleans up (it stops whatever
still loads into it, as a rollback's leftover shadow is dropped).
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bot.backends.base import Database, Progress, ProgressUnit
from bot.backends.dbtools import one_line
from bot.backends.reporter import Reporter
from bot.backends.restore import Loaded, RestoreHooks, Swapped, stage_aside
from bot.backends.scratch_engines import PURPOSE, RESERVED, TAG, ScratchEngine, engine_for, verdict
from bot.errors import DatabaseError, RestoreFailed

CHECK_TIMEOUT_S = 60.0  # per configured check: a check is a quick query, not a report


@dataclass(frozen=True)
class ScratchCopy:
    name: str  # the database (SQLite: the file's absolute path)
    url: str  # a connection URL for it, with the live database's credentials (a secret: never show it)
    seconds: float  # the restore, from checking the dump to the loaded, verified copy
    size: int | None  # bytes on disk, when the server says
    entries: int | None = None  # objects (PostgreSQL), tables and views (MySQL) or objects (SQLite) restored
    warnings: tuple[str, ...] = field(default_factory=tuple)  # what the restore could not carry over


@dataclass(frozen=True)
class CheckResult:
    sql: str
    passed: bool
    value: str | None  # what it returned, shown ("true", "false", "NULL", "3 row(s) of 1 column(s)…")
    error: str | None  # the database's words when it failed to run
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def scratch_name(db: Database, purpose: str, tag: str) -> str:
    """`<live>_rb_<purpose>_<tag>` (SQLite: a file beside the live one), within the engine's name limit.

    Pure: touches nothing, so the caller can write it down before restore_scratch creates it.
    """
    if not PURPOSE.fullmatch(purpose) or purpose in RESERVED:
        raise DatabaseError(
            f"{purpose!r} cannot name a scratch copy's purpose",
            hint="2 to 16 lowercase letters or digits, not shadow, restore or standby (a rollback's)",
        )
    if not TAG.fullmatch(tag):
        raise DatabaseError(f"{tag!r} cannot tag a scratch copy: use 1 to 32 letters or digits")
    return engine_for(db).name_for(purpose, tag)


def is_scratch_name(db: Database, name: str) -> bool:
    """Whether `name` is one scratch_name gives for `db` (for any purpose and tag)."""
    return engine_for(db).is_scratch(name)


def restore_scratch(
    db: Database, dump: Path, *, name: str, say: Reporter, cancel: threading.Event | None = None
) -> ScratchCopy:
    """Create `name` and restore `dump` into it, exactly as a rollback loads its shadow; the live database
    is never touched. A leftover of the same name is dropped first. Any failure (or `cancel` being set)
    drops what was made and raises RestoreFailed (DumpFailed's words when the dump is unusable)."""
    engine = _scratch_engine(db, name, action="restore into")
    started = time.monotonic()
    hooks = _ScratchHooks(engine.hooks(Path(dump).absolute(), cancel=cancel), name=name, what=engine.what)
    staged = stage_aside(hooks, progress=_through(say), shadow=name)
    seconds = time.monotonic() - started
    try:
        size = engine.size(name)
    except Exception:  # a size is a nicety; the copy is there
        size = None
    return ScratchCopy(
        name=name,
        url=engine.url(name),
        seconds=seconds,
        size=size,
        entries=staged.entries,
        warnings=tuple(staged.warnings),
    )


def row_counts(db: Database, name: str) -> dict[str, int]:
    """Exact count(*) of every user table, read in one read-only snapshot where the engine has one.

    Keys: "schema.table" on PostgreSQL (system schemas left out; a partitioned table once, its partitions
    counted in it), the table's name on MySQL and SQLite (a database there is one schema).
    Raises DatabaseError if a table cannot be read.
    """
    return engine_for(db).row_counts(name)


def run_checks(db: Database, name: str, sqls: list[str], *, timeout_s: float = CHECK_TIMEOUT_S) -> list[CheckResult]:
    """Run each query in its own read-only transaction with a statement timeout, rolled back after.

    Passed only for exactly one row of one column holding true (PostgreSQL: a boolean; MySQL and SQLite,
    which have none, also 1). Errors (syntax, a write refused, a timeout) are a failed check, never raised.
    """
    engine = engine_for(db)
    results = []
    for text in sqls:
        started = time.monotonic()
        try:
            rows, columns = engine.query(name, text, timeout_s=timeout_s)
        except Exception as exc:  # the database's words (syntax, a write refused, a timeout), never raised
            results.append(CheckResult(text, False, None, one_line(exc, limit=300), time.monotonic() - started))
            continue
        passed, shown = verdict(rows, columns, booleans=db.engine == "postgres")
        results.append(CheckResult(text, passed, shown, None, time.monotonic() - started))
    return results


def drop_scratch(db: Database, name: str) -> str | None:
    """Drop the scratch copy (stopping whatever still loads into it); say what was dropped, None if nothing.

    Idempotent. Refuses, changing nothing, a name scratch_name could not have given for `db`.
    """
    return _scratch_engine(db, name, action="drop").drop(name)


# --- internals -------------------------------------------------------------------------------------------


def _scratch_engine(db: Database, name: str, *, action: str) -> ScratchEngine:
    engine = engine_for(db)
    if not engine.is_scratch(name):
        raise DatabaseError(
            f"refused to {action} {name!r}: it is not a scratch name of {db.describe()} (the live database,"
            " a rollback's shadow or standby and kept before_rollback copies are never touched this way);"
            " nothing was changed",
            hint="use the name scratch_name() gave",
        )
    return engine


def _through(say: Reporter) -> Progress:
    """A Progress callback passing stage_aside's sentences and measures on to the caller's Reporter."""

    def progress(
        message: str, /, *, done: float | None = None, total: float | None = None, unit: ProgressUnit | None = None
    ) -> None:
        if done is None:
            say.say(message)
        else:
            say.measure(message, done=done, total=total, unit=unit or "objects")

    return progress


class _ScratchHooks:
    """A rollback's restore hooks aimed at one scratch name: the same checks and load, and no swap."""

    def __init__(self, inner: RestoreHooks, *, name: str, what: str) -> None:
        self.inner = inner
        self.name = name
        self.live, self.source, self.untouched = inner.live, inner.source, inner.untouched
        self.noun, self.shadow_kind, self.cancel = inner.noun, what, inner.cancel

    def refuse(self, shadow: str) -> None:
        if shadow != self.name:
            raise RestoreFailed(f"refused to restore into {shadow!r}: not this scratch copy; nothing was changed")

    def prepare(self, say: Reporter) -> int | None:
        return self.inner.prepare(say)

    def new_shadow(self) -> str:
        return self.name

    def exists(self, shadow: str) -> bool:
        return self.inner.exists(shadow)

    def drop_shadow(self, shadow: str) -> None:
        self.inner.drop_shadow(shadow)

    def create_shadow(self, shadow: str) -> list[str]:
        return self.inner.create_shadow(shadow)

    def load(self, shadow: str, say: Reporter) -> None:
        self.inner.load(shadow, say)

    def verify_loaded(self, shadow: str, say: Reporter) -> Loaded:
        return self.inner.verify_loaded(shadow, say)

    def swap(self, shadow: str, say: Reporter) -> Swapped:
        raise RestoreFailed(f"a scratch copy ({shadow}) is never swapped in; {self.untouched}")
