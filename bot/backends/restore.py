"""The two procedures every database backend follows, written once: dump-verify-publish, and restore aside then swap.

A backend says how each step is done for its engine (the hooks); these functions fix the order, what
is reported, and what a failure leaves behind:

    restore_aside: refuse a foreign shadow name → check the dump and the live database → name the
    shadow (dropping a leftover of an interrupted attempt) → create it → load the dump into it →
    verify / complete it → swap it in (the live data is kept under a before_rollback name). Until
    the swap has happened, any failure drops the shadow and leaves the live database as it was.
    stage_aside does everything before the swap and hands back a StagedAside to swap in later, so a
    rollback can load the shadow while its pre-rollback dump is still being taken and verified.

    dump_verified: write to `<dest>.partial`, measuring bytes written against the expected size →
    verify → rename into place, durably. A dump that fails anywhere leaves no file behind.

Who implements the hooks: PostgresRestore (postgres_restore.py), MySQLRestore (mysql_restore.py) and
SQLiteRestore (sqlite_restore.py); the dump hooks are the backends themselves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, TypeVar

from bot import format as fmt
from bot.backends.base import DumpInfo, Progress, RestoreResult, no_progress
from bot.backends.dbtools import file_size, prepare_dest, publish
from bot.backends.reporter import Reporter
from bot.errors import DumpFailed, RestoreFailed
from bot.redact import redact


@dataclass(frozen=True)
class Loaded:
    """What checking the loaded shadow found."""

    entries: int | None = None  # set when only the loaded copy can say (SQLite verifies its staged copy)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Swapped:
    """The swap's outcome: where the previous live data is kept, and what the engine wants recorded."""

    kept: str
    details: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


class RestoreHooks(Protocol):
    """One engine's way of doing each step of one restore (an object per restore: it may keep state)."""

    live: str  # the live database as messages and the result name it
    source: Path  # the dump, absolute
    untouched: str  # how a failure before the swap ends its message
    noun: str  # what the dump's entries are, for the summary: "objects", "tables and views"
    shadow_kind: str  # what the shadow is, for messages: "shadow database", "staged copy"
    cancel: threading.Event  # set by whoever started the restore: stop loading (kill the tool), drop the shadow

    def refuse(self, shadow: str) -> None:
        """Raise RestoreFailed, changing nothing, unless `shadow` is a shadow name of the live database."""
        ...

    def prepare(self, say: Reporter) -> int | None:
        """Check the dump (DumpFailed if unusable) and the live database (RestoreFailed if missing).

        Returns how many entries the dump holds, when that is known before loading it.
        """
        ...

    def new_shadow(self) -> str:
        """A shadow name nobody uses, for a restore that was not given one."""
        ...

    def exists(self, shadow: str) -> bool: ...

    def drop_shadow(self, shadow: str) -> None:
        """Drop the shadow, stopping whatever still writes into it; no error if it is not there."""
        ...

    def create_shadow(self, shadow: str) -> list[str]:
        """Create the (empty, or for SQLite staged) shadow like the live database; return warnings."""
        ...

    def load(self, shadow: str, say: Reporter) -> None:
        """Load the dump into the shadow, reporting a measure; RestoreFailed saying where it stopped."""
        ...

    def verify_loaded(self, shadow: str, say: Reporter) -> Loaded:
        """Check and complete the loaded shadow (statistics, database properties) before the swap."""
        ...

    def swap(self, shadow: str, say: Reporter) -> Swapped:
        """Put the shadow's data in the live database's place; keep the previous data under a new name.

        Raises RestoreFailed saying what state things are in if it cannot.
        """
        ...


class Restore:
    """Where every engine's hooks start from: the live database, the dump, and their defaults."""

    noun = "objects"
    shadow_kind = "shadow database"

    def __init__(self, live: str, source: Path, *, cancel: threading.Event | None = None) -> None:
        self.live = live
        self.source = source
        self.untouched = f"the live database {live} was not touched"
        self.cancel = cancel if cancel is not None else threading.Event()  # set: stop loading, drop the shadow


class RestoresAside:
    """restore() and stage() of the Database protocol, for a backend that says which hooks it uses."""

    def restore_hooks(self, source: Path, *, cancel: threading.Event | None) -> RestoreHooks:
        raise NotImplementedError

    def restore(self, source: Path, *, progress: Progress = no_progress, shadow: str | None = None) -> RestoreResult:
        return self.stage(source, progress=progress, shadow=shadow).swap_in(progress=progress)

    def stage(
        self,
        source: Path,
        *,
        progress: Progress = no_progress,
        shadow: str | None = None,
        cancel: threading.Event | None = None,
    ) -> StagedAside:
        hooks = self.restore_hooks(Path(source).absolute(), cancel=cancel)
        return stage_aside(hooks, progress=progress, shadow=shadow)


def stage_aside(hooks: RestoreHooks, *, progress: Progress, shadow: str | None) -> StagedAside:
    """Everything of a restore before the swap: after it the shadow is loaded and checked, live untouched.

    Any failure (or `hooks.cancel` being set) drops the shadow and raises RestoreFailed.
    """
    say = Reporter(progress)
    started = time.monotonic()
    untouched = hooks.untouched
    if shadow is not None:
        hooks.refuse(shadow)
    say.say(f"checking {hooks.source.name}")
    entries = _dump_usable(lambda: hooks.prepare(say), untouched)
    if shadow is None:
        shadow = hooks.new_shadow()
    elif hooks.exists(shadow):  # left by an interrupted attempt of this same run
        say.say(f"dropping the {hooks.shadow_kind} {shadow} left by an interrupted attempt")
        hooks.drop_shadow(shadow)

    staged: StagedAside | None = None
    try:
        say.say(f"creating {hooks.shadow_kind} {shadow}")
        warnings = hooks.create_shadow(shadow)
        _stop_if_cancelled(hooks)
        hooks.load(shadow, say)
        _stop_if_cancelled(hooks)
        loaded = _dump_usable(lambda: hooks.verify_loaded(shadow, say), untouched)
        _stop_if_cancelled(hooks)
        entries = loaded.entries if loaded.entries is not None else entries
        staged = StagedAside(hooks, shadow, entries, warnings + loaded.warnings, started)
    finally:
        if staged is None:  # whatever failed, the shadow must not outlive the attempt
            _drop_quietly(hooks, shadow, say)
    return staged


class StagedAside:
    """A restore loaded into its shadow and checked, waiting for the swap: nothing live has changed yet.

    Exactly one of swap_in() and discard() is called; both leave no shadow behind.
    """

    def __init__(self, hooks: RestoreHooks, shadow: str, entries: int | None, warnings: list[str], started: float):
        self.hooks = hooks
        self.shadow = shadow
        self.entries = entries
        self.warnings = warnings
        self.started = started
        self.staged_s = time.monotonic() - started  # how long loading and checking took

    def swap_in(self, *, progress: Progress) -> RestoreResult:
        hooks, shadow, say = self.hooks, self.shadow, Reporter(progress)
        swap_started = time.monotonic()
        swapped: Swapped | None = None
        try:
            swapped = hooks.swap(shadow, say)
        finally:
            if swapped is None:
                _drop_quietly(hooks, shadow, say)
        swap_s = time.monotonic() - swap_started
        warnings = self.warnings + swapped.warnings
        count = f"{self.entries} {hooks.noun}" if self.entries is not None else hooks.noun
        summary = f"restored {count} from {hooks.source.name} into {hooks.live}; previous data kept as {swapped.kept}"
        say.say(summary)
        for warning in warnings:
            say.say(f"warning: {warning}")
        details = {
            "source": str(hooks.source),
            **({"objects": str(self.entries)} if self.entries is not None else {}),
            "kept": swapped.kept,
            "shadow": shadow,
            **swapped.details,
            "duration": fmt.duration(time.monotonic() - self.started, rough=True),
            "loaded_in": fmt.duration(self.staged_s, rough=True),
            "swapped_in": fmt.duration(swap_s, rough=True),
        }
        if warnings:
            details["warnings"] = redact("; ".join(warnings))
        return RestoreResult(database=hooks.live, previous=swapped.kept, summary=summary, details=details)

    def discard(self, *, progress: Progress) -> None:
        _drop_quietly(self.hooks, self.shadow, Reporter(progress))


T = TypeVar("T")


def _dump_usable(step: Callable[[], T], untouched: str) -> T:
    """Run a step that reads the dump; a dump found unusable becomes a restore that changed nothing."""
    try:
        return step()
    except DumpFailed as exc:
        raise RestoreFailed(f"cannot restore from {exc.message}; {untouched}", hint=exc.hint) from None


def _stop_if_cancelled(hooks: RestoreHooks) -> None:
    if hooks.cancel.is_set():
        raise RestoreFailed(f"the restore was stopped before the swap; {hooks.untouched}")


def _drop_quietly(hooks: RestoreHooks, shadow: str, say: Reporter) -> None:
    try:
        hooks.drop_shadow(shadow)
    except Exception as exc:  # the restore's own error is the one to raise; this one is reported
        say.say(f"could not drop the {hooks.shadow_kind} {shadow} ({redact(str(exc))}): drop it by hand")


# --- dumps ------------------------------------------------------------------------------------------


class Tick(Protocol):
    """Report the dump's progress: the bytes written if given, else the growing file's size."""

    def __call__(self, done: int | None = None) -> None: ...


class DumpHooks(Protocol):
    """One engine's way of writing and verifying a dump (the backends implement it themselves)."""

    name: str  # the database as progress sentences name it
    dump_noun: str  # what verify_dump counts: "objects", "tables and views"

    def describe(self) -> str: ...

    def expected_size(self) -> int | None:
        """About how many bytes the dump will take (None if unknown); DumpFailed if it cannot start."""
        ...

    def write_dump(self, partial: Path, say: Reporter, tick: Tick) -> None:
        """Write the dump to `partial`, calling `tick` every few tenths of a second (with the bytes
        written, when the engine knows better than the file's size); DumpFailed if it fails."""
        ...

    def verify_dump(self, path: Path, *, shown_as: str) -> DumpInfo:
        """The dump's entries and size; DumpFailed if it is incomplete or unreadable."""
        ...


def dump_verified(hooks: DumpHooks, dest: Path, *, progress: Progress) -> DumpInfo:
    say = Reporter(progress)
    dest = Path(dest).absolute()
    expected = hooks.expected_size()  # first: a database that cannot be dumped leaves no trace
    partial = prepare_dest(dest)
    written = 0

    def tick(done: int | None = None) -> None:
        nonlocal written
        written = max(written, file_size(partial) if done is None else done)  # never goes backwards
        # Past the estimate, the total is honestly unknown until the tool is done.
        total = expected if expected and written < expected else None
        about = f" of about {fmt.size(total)}" if total else ""
        say.measure(
            f"dumping {hooks.name}: {fmt.size(written)}{about} written", done=written, total=total, unit="bytes"
        )

    say.measure(
        f"dumping {hooks.describe()} to {dest.name}", done=0, total=expected or None, unit="bytes", at_once=True
    )
    try:
        hooks.write_dump(partial, say, tick)
        size = max(written, file_size(partial))
        say.measure(f"verifying {dest.name} ({fmt.size(size)})", done=size, total=size, unit="bytes", at_once=True)
        checked = hooks.verify_dump(partial, shown_as=dest.name)
        publish(partial, dest)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    say.say(f"dump {dest.name} verified: {checked.entries} {hooks.dump_noun}, {fmt.size(checked.size_bytes)}")
    return DumpInfo(path=dest, size_bytes=checked.size_bytes, entries=checked.entries, verified=True)
