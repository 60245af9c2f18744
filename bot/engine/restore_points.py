"""Restore points: the known-good commit and a database dump beside it, taken before each deploy.

The deploy pipeline calls `rollback-bot snapshot ENV` (or POST /hooks/deploy); `/rollback prod` with no
target rolls back to the latest one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.backends.base import Progress, no_progress
from bot.store import RestorePoint, now

if TYPE_CHECKING:
    from bot.services import Services


@dataclass(frozen=True)
class SnapshotResult:
    point: RestorePoint
    summary: str


def take_snapshot(services: Services, env: str, *, actor: str, progress: Progress = no_progress) -> SnapshotResult:
    """Record the remote head as known-good and dump the database beside it (run before each deploy)."""
    repo = services.repo(env)
    head = repo.fetch()
    database = services.database(env)
    dump_path, dump_size = None, None
    if database is not None:
        folder = services.config.backup_dir / env
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"restore-point-{now():%Y%m%d%H%M%S}-{head.short}.dump"
        info = database.dump(path, progress=progress)
        dump_path, dump_size = str(path), info.size_bytes
    point = services.store.add_restore_point(
        env=env,
        commit_sha=head.sha,
        commit_subject=head.subject,
        dump_path=dump_path,
        dump_size=dump_size,
        created_by=actor,
    )
    services.store.record(actor=actor, action="restore_point.created", env=env, detail=f"#{point.id} at {head.short}")
    where = f", database dump {dump_path}" if dump_path else ""
    return SnapshotResult(point=point, summary=f"restore point #{point.id} for {env}: commit {head}{where}")
