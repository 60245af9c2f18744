"""Restore points: the known-good commit and a database dump beside it, taken before each deploy.

The deploy pipeline calls `rollback-bot snapshot ENV` (or POST /hooks/deploy); `/rollback prod` with no
target rolls back to the latest one. The dump is written to local scratch (work_dir), then put in the
artifact store (a folder or S3) with its size and sha256, so any machine can restore it and check it is
the very dump that was taken: a CI runner that is gone tomorrow can take it, the bot restore it.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot import format as fmt
from bot.backends.base import Commit, Progress, StandbyDatabase, no_progress
from bot.errors import RollbackError
from bot.store import RestorePoint, StandbyRecord, now

if TYPE_CHECKING:
    from bot.artifacts import ArtifactStore, StoredArtifact
    from bot.backends.base import Database, DumpInfo
    from bot.services import Services


@dataclass(frozen=True)
class SnapshotResult:
    point: RestorePoint
    summary: str


def take_snapshot(
    services: Services,
    env: str,
    *,
    actor: str,
    progress: Progress = no_progress,
    commit: str | None = None,
) -> SnapshotResult:
    """Record a known-good commit and dump the database beside it (run before each deploy).

    The commit is the remote branch's head, fetched now, unless `commit` names one (the deploy hook
    passes the commit the pipeline says is live; it must exist in the repository).
    """
    repo = services.repo(env)
    head = repo.fetch()
    known_good = head if commit is None or head.sha == commit else repo.resolve(commit)
    database = services.database(env)
    stored, standby_note = None, ""
    with ExitStack() as scratch:
        if database is not None:
            name = f"restore-point-{now():%Y%m%d%H%M%S}-{known_good.short}.dump"
            work_dir = services.config.work_dir
            _, stored, local = scratch.enter_context(
                dumped_and_put(database, services.artifacts(), work_dir, f"{env}/{name}", progress)
            )
        point = services.store.add_restore_point(
            env=env,
            commit_sha=known_good.sha,
            commit_subject=known_good.subject,
            dump_path=stored.location if stored else None,
            dump_size=stored.size if stored else None,
            dump_sha256=stored.sha256 if stored else None,
            created_by=actor,
        )
        services.store.record(
            actor=actor,
            action="restore_point.created",
            env=env,
            detail=f"#{point.id} at {known_good.short}"
            + (f", {stored.location} sha256 {stored.sha256}" if stored else ""),
        )
        if database is not None and stored is not None and services.config.environment(env).database.prestage:
            standby_note = prestage(services, env, database, point, local, actor=actor, progress=progress)
    summary = _summary(env, point, known_good, stored) + (f"; {standby_note}" if standby_note else "")
    return SnapshotResult(point=point, summary=summary)


def prestage(
    services: Services,
    env: str,
    database: Database,
    point: RestorePoint,
    local: Path,
    *,
    actor: str,
    progress: Progress,
) -> str:
    """Restore the new restore point into the standby, so a rollback's database step is only the swap.

    Never fails the snapshot: the restore point is recorded already, and without a standby a rollback
    takes the normal path (and its plan says so). Builds take turns (the backend's build lock), and a
    builder whose turn comes after a newer restore point was recorded leaves the standby to that one's
    snapshot: whatever order concurrent snapshots run in, the standby ends up holding the newest.
    """
    if not isinstance(database, StandbyDatabase):
        return "no standby: this database engine cannot prestage"
    label = f"restore point #{point.id}"
    try:
        with database.standby_build_lock(progress=progress):
            return _rebuild_standby(services, env, database, point, local, label=label, actor=actor, progress=progress)
    except RollbackError as error:
        services.store.record(actor=actor, action="standby.failed", env=env, detail=f"{label}: {error.message}")
        return f"standby not built ({error.message}): a rollback will restore from the dump"


def _rebuild_standby(
    services: Services,
    env: str,
    database: StandbyDatabase,
    point: RestorePoint,
    local: Path,
    *,
    label: str,
    actor: str,
    progress: Progress,
) -> str:
    store = services.store
    newest = store.latest_restore_point(env)
    if newest is not None and newest.id != point.id:
        return f"standby not rebuilt: restore point #{newest.id} is newer, and its snapshot stages the standby"
    lock = store.lock_for(env)
    if lock is not None:  # the running rollback may be swapping the standby in right now
        return f"standby not rebuilt: rollback {lock.run_id} of {env} is running"
    store.clear_standby(env)  # from here until it is recorded again, no plan may count on it
    standby = database.build_standby(local, label=label, progress=progress)
    store.set_standby(
        StandbyRecord(
            env=env,
            database=standby.database,
            restore_point_id=point.id,
            dump_sha256=point.dump_sha256,
            oid=standby.oid,
            label=label,
            created_at=now(),
        )
    )
    store.record(actor=actor, action="standby.built", env=env, detail=f"{standby.database} holds {label}")
    return f"standby {standby.database} holds it: a rollback to it swaps it in"


def dump_and_put(
    database: Database,
    artifacts: ArtifactStore,
    work_dir: Path,
    name: str,
    progress: Progress = no_progress,
    dump: Callable[[Path], DumpInfo] | None = None,
) -> tuple[DumpInfo, StoredArtifact]:
    with dumped_and_put(database, artifacts, work_dir, name, progress, dump) as (info, stored, _):
        return info, stored


@contextmanager
def dumped_and_put(
    database: Database,
    artifacts: ArtifactStore,
    work_dir: Path,
    name: str,
    progress: Progress = no_progress,
    dump: Callable[[Path], DumpInfo] | None = None,
) -> Iterator[tuple[DumpInfo, StoredArtifact, Path]]:
    """Dump (verified by the backend) to a scratch folder of its own, store it; the scratch copy is
    yielded too (a standby is restored from it) and deleted when the block ends.

    The scratch copy goes whatever happens: after an upload it is only a duplicate, and after a failed
    dump it is a partial file nobody should mistake for a backup. `dump` replaces database.dump
    (the pre-rollback dump of a kept database).
    """
    scratch_root = work_dir / "scratch"
    scratch_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="dump-", dir=scratch_root))
    try:
        local = scratch / name.rsplit("/", 1)[-1]
        info = dump(local) if dump is not None else database.dump(local, progress=progress)
        progress(f"storing {local.name} ({fmt.size(info.size_bytes)}) in {artifacts.describe()}")
        yield info, artifacts.put(local, name), local
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _summary(env: str, point: RestorePoint, commit: Commit, stored: StoredArtifact | None) -> str:
    where = f", database dump {stored.location} (sha256 {stored.sha256[:12]}…)" if stored else ""
    return f"restore point #{point.id} for {env}: commit {commit}{where}"
