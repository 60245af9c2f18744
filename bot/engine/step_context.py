"""What every step receives and returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.artifacts import ArtifactStore, open_artifact_store
from bot.backends.base import CodeRepo, Database, FlagProvider, HealthChecker, Progress, RdsRestorer
from bot.config import EnvironmentSettings
from bot.engine.plan import Plan
from bot.errors import RollbackError
from bot.store import Store


@dataclass
class StepContext:
    run_id: str
    plan: Plan
    env: EnvironmentSettings
    repo: CodeRepo
    database: Database | None
    database_error: RollbackError | None  # why `database` could not be opened, for the safety check
    flags: list[FlagProvider]  # one per [[flags]] entry the plan turns off
    flags_error: RollbackError | None  # why a provider could not be opened (missing key, bad config)
    rds: RdsRestorer | None
    health: HealthChecker
    store: Store
    backup_dir: Path  # a local folder (the backups themselves, or work_dir when they are in S3)
    progress: Progress
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # details of finished steps
    artifacts: ArtifactStore | None = None  # where dumps are kept: [bot] backup_dir, a folder or S3
    work_dir: Path | None = None  # local scratch: the dump before it is stored, downloads before a restore

    def artifact_store(self) -> ArtifactStore:
        """The configured store; a context built without one keeps dumps in backup_dir, as before S3."""
        if self.artifacts is None:
            self.artifacts = open_artifact_store(str(self.backup_dir))
        return self.artifacts

    def scratch_dir(self) -> Path:
        return self.work_dir if self.work_dir is not None else self.backup_dir / ".work"


@dataclass(frozen=True)
class StepOutcome:
    status: str  # "ok" | "skipped"
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


StepFn = Callable[[StepContext], StepOutcome]
