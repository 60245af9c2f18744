"""What every step receives and returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    backup_dir: Path
    progress: Progress
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # details of finished steps


@dataclass(frozen=True)
class StepOutcome:
    status: str  # "ok" | "skipped"
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


StepFn = Callable[[StepContext], StepOutcome]


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
