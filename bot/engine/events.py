"""What reporters receive while a rollback runs.

Data flows one way: the engine emits these; reporters (terminal, Slack thread, stakeholder updates)
render them. A reporter never calls back into the engine.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from bot.backends.base import HealthResult
from bot.engine.checklist import ChecklistItem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunStarted:
    run_id: str
    env: str
    actor: str
    steps: tuple[tuple[str, str], ...]  # (name, title) in order
    dry_run: bool


@dataclass(frozen=True)
class StepStarted:
    run_id: str
    step: str
    title: str
    position: int
    total: int


@dataclass(frozen=True)
class StepProgress:
    run_id: str
    step: str
    message: str
    done: float | None = None  # measured progress, when the backend can tell: `done` of `total` `unit`s
    total: float | None = None
    unit: str | None = None


@dataclass(frozen=True)
class StepFinished:
    run_id: str
    step: str
    title: str
    status: str  # "ok" | "skipped"
    summary: str
    duration_s: float
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class StepStopped:
    """A step begun early (beside another) was stopped before it changed anything, and waits again."""

    run_id: str
    step: str
    title: str
    reason: str


@dataclass(frozen=True)
class StepFailed:
    run_id: str
    step: str
    title: str
    error: str
    hint: str
    duration_s: float
    state: dict[str, str]  # "code" / "database" / "flags" → where each stands now
    next_moves: tuple[str, ...]  # "retry", "skip", "abort"


@dataclass(frozen=True)
class RunFinished:
    run_id: str
    env: str
    outcome: str  # "succeeded" | "unhealthy" (done, but the health checks failed) | "aborted"
    duration_s: float
    dry_run: bool
    health: tuple[HealthResult, ...] = ()
    checklist: tuple[ChecklistItem, ...] = ()
    summary: str = ""


Event = RunStarted | StepStarted | StepProgress | StepFinished | StepStopped | StepFailed | RunFinished
Reporter = Callable[[Event], None]


def emit(reporters: Sequence[Reporter], event: Event) -> None:
    """Deliver to every reporter; a broken reporter (Slack down) never stops a rollback."""
    for reporter in reporters:
        try:
            reporter(event)
        except Exception:
            log.exception("reporter %r failed on %s", reporter, type(event).__name__)


# --- events as JSON, for the outbox: a failure or an ending is told as it was when it happened ----------


def event_payload(event: StepFailed | RunFinished) -> dict[str, Any]:
    return asdict(event)


def failed_from_payload(data: dict[str, Any]) -> StepFailed:
    return StepFailed(**{**data, "next_moves": tuple(data.get("next_moves", ()))})


def finished_from_payload(data: dict[str, Any]) -> RunFinished:
    return RunFinished(
        **{
            **data,
            "health": tuple(HealthResult(**row) for row in data.get("health", ())),
            "checklist": tuple(ChecklistItem(**item) for item in data.get("checklist", ())),
        }
    )
