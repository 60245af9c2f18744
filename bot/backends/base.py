"""The small Protocols every backend implements, and the plain data they return."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

ProgressUnit = Literal["bytes", "objects", "tables", "seconds"]


class Progress(Protocol):
    """How a backend reports progress: a short human sentence ("restoring into app_rb_shadow_ab12: orders"),
    and, when it can measure it, how far along it is (`done` of `total` `unit`s; `total` None when unknown).

    Front ends draw the measure: a bar with the time left in a terminal, a compact text bar in Slack.
    """

    def __call__(
        self,
        message: str,
        /,
        *,
        done: float | None = None,
        total: float | None = None,
        unit: ProgressUnit | None = None,
    ) -> None: ...


def no_progress(
    _message: str, /, *, done: float | None = None, total: float | None = None, unit: ProgressUnit | None = None
) -> None:
    return None


# --- code -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str
    author: str = ""
    committed_at: datetime | None = None

    @property
    def short(self) -> str:
        return self.sha[:7]

    def __str__(self) -> str:
        return f"{self.short} {self.subject}"


@dataclass(frozen=True)
class CodeResult:
    """What a code step did to the remote."""

    strategy: str  # "revert" | "force-push"
    old_head: str  # remote head before
    new_head: str  # remote head after
    backup_ref: str = ""  # force-push: the ref on the remote that keeps the old head
    summary: str = ""


class CodeRepo(Protocol):
    """A deployable git branch on a remote."""

    remote: str
    branch: str

    def fetch(self) -> Commit:
        """Fetch the remote branch fresh; return its head (the deployed commit)."""
        ...

    def resolve(self, ref: str) -> Commit:
        """A commit by SHA (full or abbreviated) or ref; raises GitError naming the ref if unknown."""
        ...

    def first_parent(self, sha: str) -> Commit: ...

    def commits_between(self, older: str, newer: str) -> list[Commit]:
        """Commits reachable from `newer` and not from `older`, newest first (what a rollback undoes)."""
        ...

    def is_ancestor(self, older: str, newer: str) -> bool: ...

    def changed_files(self, older: str, newer: str) -> list[str]: ...

    def read_file(self, sha: str, path: str) -> str | None:
        """File content at a commit, or None if the file does not exist there."""
        ...

    def revert_to(self, *, deployed: str, target: str, message: str) -> CodeResult:
        """Push one new commit on top of `deployed` whose tree is `target`'s; raise PushRejected if refused."""
        ...

    def force_push(self, *, deployed: str, target: str, backup_ref: str) -> CodeResult:
        """Save `deployed` as `backup_ref` on the remote, then move the branch to `target` with a lease."""
        ...


# --- database ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DumpInfo:
    path: Path
    size_bytes: int
    entries: int  # objects listed by the verifier (pg_restore --list entries, tables, …)
    verified: bool


@dataclass(frozen=True)
class RestoreResult:
    database: str  # the live database name, now holding the restored data
    previous: str  # where the pre-restore live data was kept (renamed database, file, instance)
    summary: str = ""
    details: dict[str, str] = field(default_factory=dict)


class StagedRestore(Protocol):
    """A restore loaded aside and checked, waiting for its swap; the live database is untouched so far."""

    shadow: str
    staged_s: float  # how long loading and checking took

    def swap_in(self, *, progress: Progress) -> RestoreResult:
        """Swap the shadow in (the live data kept under a new name); on failure the shadow is dropped."""
        ...

    def discard(self, *, progress: Progress) -> None:
        """Drop the shadow: the restore is not wanted any more."""
        ...


@runtime_checkable
class DatabaseIdentities(Protocol):
    """A server that names each database by an identity a rename keeps (PostgreSQL: its oid).

    With it a retried restore can tell that the swap of an earlier attempt completed (the live name
    now has the shadow's identity) even if the process died before it could journal that.
    """

    name: str  # the live database's name

    def identity(self, name: str) -> str | None:
        """The identity of the database called `name` now; None if there is none."""
        ...

    def name_of(self, identity: str) -> str | None:
        """What the database with that identity is called now; None if it is gone."""
        ...


@dataclass(frozen=True)
class Standby:
    """A restore point restored ahead of time into a standby database beside the live one (prestage)."""

    database: str
    oid: int  # a dropped and re-created database gets a new oid: the standby is this very database
    label: str  # which restore point it holds, for messages


@runtime_checkable
class StandbyDatabase(Protocol):
    """A database whose restores can be prestaged: restored into a standby ahead, swapped in later."""

    def build_standby(self, source: Path, *, label: str, progress: Progress = no_progress) -> Standby:
        """Restore `source` into the standby (replacing the previous one), check it, close it to connections."""
        ...

    def standby_build_lock(self, *, progress: Progress = no_progress) -> AbstractContextManager[None]:
        """Held around a build and its record: one builder at a time, the next waiting (and saying so)."""
        ...

    def stage_standby(self, standby: Standby, *, label: str) -> StagedRestore:
        """Check the standby is `standby`, unchanged; give it the live database's properties; ready to swap.

        Raises StandbyUnusable (nothing changed) when it is missing or may have changed.
        """
        ...

    def drop_standby(self) -> str | None:
        """Drop the standby, if there is one; say what was dropped."""
        ...

    def dump_kept(self, kept: str, dest: Path, *, progress: Progress = no_progress) -> DumpInfo:
        """Dump (verified) a database kept aside by a swap: the pre-rollback state, taken after the swap."""
        ...


class Database(Protocol):
    """A live database that can be dumped and restored from a dump file."""

    engine: str

    def required_tools(self) -> list[str]:
        """Executables this backend calls (pg_dump, pg_restore, …), for the safety check."""
        ...

    def describe(self) -> str:
        """Where it is, with no secret in it (host, port, database name)."""
        ...

    def check(self) -> None:
        """Connect once; raise DatabaseError naming what failed."""
        ...

    def dump(self, dest: Path, *, progress: Progress = no_progress) -> DumpInfo:
        """Write a full dump to `dest` and verify it is readable; raise DumpFailed otherwise.

        Measures bytes written against the expected size (unit "bytes"), ending at the dump's size.
        """
        ...

    def verify(self, path: Path) -> DumpInfo:
        """Check a dump file is complete and readable; raise DumpFailed otherwise."""
        ...

    def shadow_name(self, tag: str) -> str:
        """The name restore(…, shadow=…) will restore aside into, derived only from `tag`.

        `tag` is 1 to 32 letters or digits (the engine uses 8 hex characters of the run id); the
        result fits the server's name limit. Pure: it touches nothing, so the engine can journal it
        before the restore starts and find the leftover after a crash.
        """
        ...

    def restore(self, source: Path, *, progress: Progress = no_progress, shadow: str | None = None) -> RestoreResult:
        """Make the live database equal to `source`.

        Must leave the live database untouched if the restore fails (restore aside, then swap).
        With `shadow` (a shadow_name()), restores aside into exactly that name, dropping first a
        leftover of an interrupted attempt; any other name is refused with a DatabaseError.
        Measures the load ("objects", "tables" or "bytes" done of a known total), ending at the total.
        """
        ...

    def stage(
        self,
        source: Path,
        *,
        progress: Progress = no_progress,
        shadow: str | None = None,
        cancel: threading.Event | None = None,
    ) -> StagedRestore:
        """restore() up to, not including, the swap: the shadow is loaded and checked, nothing live changed.

        Setting `cancel` stops the load (killing the tool) and drops the shadow (RestoreFailed).
        """
        ...

    def discard_shadow(self, shadow: str) -> str | None:
        """Drop a leftover shadow (stopping whatever still writes into it); say what was dropped.

        Returns one sentence ("dropped the leftover shadow database app_rb_shadow_ab12cd34 (1.2 GB)"),
        or None if there was nothing to drop. Refuses (DatabaseError, nothing changed) any name that
        is not a shadow name of this database: never the live database, never a kept copy.
        """
        ...

    def repair_interrupted_swap(self) -> list[str]:
        """Make the live database usable again after a crash at any moment of a restore's swap.

        Returns one sentence per repair made ([] if nothing needed one). Safe to call at any time and
        more than once; it never drops data (leftover shadows are discard_shadow's business).
        """
        ...


# --- health -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class HealthSpec:
    url: str
    expect_status: int = 200
    timeout_s: float = 5.0
    attempts: int = 10
    interval_s: float = 3.0  # after a failed try
    consecutive: int = 2
    pass_interval_s: float = 0.25  # after a passing try, before the next of the streak


@dataclass(frozen=True)
class HealthResult:
    url: str
    healthy: bool
    attempts: int  # tries made
    last_status: int | None
    last_error: str
    latency_ms: float | None  # of the last try
    expected_status: int


class HealthChecker(Protocol):
    def check(self, spec: HealthSpec, *, progress: Progress = no_progress) -> HealthResult: ...


# --- feature flags ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FlagState:
    """One flag in one environment, as the vendor reports it."""

    key: str
    on: bool | None  # None: the vendor did not say (unknown flag, or a webhook with no read API)
    detail: str = ""  # e.g. "served variation: true", "version 12"


class FlagProvider(Protocol):
    """A flag vendor's admin API for one project/environment."""

    provider: str

    def describe(self) -> str:
        """Vendor, project and environment, with no secret in it."""
        ...

    def check(self) -> None:
        """Credentials work and the environment exists; raise FlagError naming what failed."""
        ...

    def states(self, keys: Sequence[str]) -> list[FlagState]:
        """Current state of each flag, read before anything changes (so it can be put back)."""
        ...

    def turn_off(self, key: str) -> FlagState:
        """Turn the flag off (idempotent: off stays off); return the state the vendor reports after."""
        ...

    def restore(self, state: FlagState) -> FlagState:
        """Put a flag back to a recorded state (undo); a state with on=None is left alone."""
        ...


# --- AWS RDS ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RdsRestoreResult:
    instance_id: str
    endpoint: str  # host name of the NEW instance
    port: int
    status: str  # "available" when done
    source: str  # the snapshot ID, or "<instance> at <time>" for point-in-time
    summary: str = ""


class RdsRestorer(Protocol):
    """Restores into a NEW RDS instance (RDS never restores in place) and waits until it is available."""

    def check(self, *, source: str, instance_id: str, point_in_time: bool, run_id: str | None = None) -> None:
        """Credentials work, the snapshot (or source instance) exists, and `instance_id` is free or this run's."""
        ...

    def restore_snapshot(
        self, *, snapshot_id: str, instance_id: str, run_id: str, progress: Progress = no_progress
    ) -> RdsRestoreResult: ...

    def restore_point_in_time(
        self,
        *,
        source_instance_id: str,
        instance_id: str,
        run_id: str,
        restore_time: datetime | None = None,  # None: the latest restorable time
        progress: Progress = no_progress,
    ) -> RdsRestoreResult: ...


AURORA_WRITER_SUFFIX = "-instance-1"  # the console's name for a cluster's first instance


def aurora_writer_id(cluster_id: str) -> str:
    """The one instance of a NEW Aurora cluster the bot restores (bot/backends/rds_cluster.py); here,
    with no AWS import, so that plans can name it."""
    return f"{cluster_id}{AURORA_WRITER_SUFFIX}"
