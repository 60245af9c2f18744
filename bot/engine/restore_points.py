"""Restore points: the known-good commit and a database dump beside it, taken before each deploy.

The deploy pipeline calls `rollback-bot snapshot ENV` (or POST /hooks/deploy); `/rollback prod` with no
target rolls back to the latest one. The dump is written to local scratch (work_dir), then put in the
artifact store (a folder or S3) with its size and sha256, so any machine can restore it and check it is
the very dump that was taken: a CI runner that is gone tomorrow can take it, the bot restore it.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bot import format as fmt
from bot.backends.base import Commit, Progress, no_progress
from bot.store import RestorePoint, now

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
    stored = None
    if database is not None:
        name = f"restore-point-{now():%Y%m%d%H%M%S}-{known_good.short}.dump"
        _, stored = dump_and_put(database, services.artifacts(), services.config.work_dir, f"{env}/{name}", progress)
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
        detail=f"#{point.id} at {known_good.short}" + (f", {stored.location} sha256 {stored.sha256}" if stored else ""),
    )
    return SnapshotResult(point=point, summary=_summary(env, point, known_good, stored))


def dump_and_put(
    database: Database, artifacts: ArtifactStore, work_dir: Path, name: str, progress: Progress = no_progress
) -> tuple[DumpInfo, StoredArtifact]:
    """Dump (verified by the backend) to a scratch folder of its own, store it, and delete the scratch copy.

    The scratch copy goes whatever happens: after an upload it is only a duplicate, and after a failed
    dump it is a partial file nobody should mistake for a backup.
    """
    scratch_root = work_dir / "scratch"
    scratch_root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="dump-", dir=scratch_root))
    try:
        local = scratch / name.rsplit("/", 1)[-1]
        info = database.dump(local, progress=progress)
        progress(f"storing {local.name} ({fmt.size(info.size_bytes)}) in {artifacts.describe()}")
        return info, artifacts.put(local, name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _summary(env: str, point: RestorePoint, commit: Commit, stored: StoredArtifact | None) -> str:
    where = f", database dump {stored.location} (sha256 {stored.sha256[:12]}…)" if stored else ""
    return f"restore point #{point.id} for {env}: commit {commit}{where}"
