"""The words of a run's life: statuses, decisions, acts and actors, and the run as people see it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from bot.process_identity import is_gone
from bot.store import RunRecord, StepRecord, now

if TYPE_CHECKING:
    from bot.services import Services


class RunStatus(StrEnum):
    PLANNED = "planned"
    APPROVED = "approved"
    RUNNING = "running"
    FAILED = "failed"
    SUCCEEDED = "succeeded"
    UNHEALTHY = "unhealthy"  # done (code, data, flags rolled back), but the health checks failed
    ABORTED = "aborted"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    REFUSED = "refused"
    INTERRUPTED = "interrupted"  # shown, never stored: running, but the process running it is gone

    @property
    def ended(self) -> bool:
        return self in (
            RunStatus.SUCCEEDED,
            RunStatus.UNHEALTHY,
            RunStatus.ABORTED,
            RunStatus.CANCELLED,
            RunStatus.EXPIRED,
            RunStatus.REFUSED,
        )


class Decision(StrEnum):
    """What a person decides about a failed or interrupted run."""

    RETRY = "retry"
    SKIP = "skip"
    ABORT = "abort"


class Act(StrEnum):
    """Things a person does to a run, each authorised by the engine."""

    APPROVE = "approve"
    CANCEL = "cancel"
    RETRY = "retry"
    SKIP = "skip"
    ABORT = "abort"
    UNDO_FLAGS = "undo_flags"
    # When people are gone (bot/engine/handover.py, bot/engine/break_glass.py)
    BREAK_GLASS = "break_glass"  # run your own plan alone once no approver answered in time
    TAKE_OVER = "take_over"  # make a failed or interrupted run yours (its requester is gone)
    BREAK_LOCK = "break_lock"  # free an environment whose lock holder is gone
    SIGN_OFF = "sign_off"  # an approver's review of a break-glass rollback


def _no_groups(_group: str) -> set[str]:
    return set()


@dataclass(frozen=True)
class Actor:
    """Who acts, and through what: Slack users are checked against the config; a terminal user is trusted."""

    id: str
    via: Literal["slack", "terminal", "hook", "bot"]
    members_of: Callable[[str], set[str]] = field(default=_no_groups, compare=False)


BOT = Actor(id="rollback-bot", via="bot")

# A rehearsal runs on a stand-in environment, "prod@r" ('@' is never in a configured name; short, since
# a run id is its env + 25 characters): bot.engine._rehearsal_setup.
REHEARSAL_SUFFIX = "@r"


def shown_env(env: str) -> str:
    """An environment as people read it in lists of runs: a rehearsal's stand-in says what it is."""
    return f"{env.removesuffix(REHEARSAL_SUFFIX)} (rehearsal)" if env.endswith(REHEARSAL_SUFFIX) else env


@dataclass(frozen=True)
class RunView:
    """A run as people see it, with 'interrupted' derived from its process or a stale heartbeat."""

    record: RunRecord
    status: RunStatus
    steps: list[StepRecord]


def shown_status(record: RunRecord, *, heartbeat_timeout: timedelta) -> RunStatus:
    status = RunStatus(record.status)
    if status is not RunStatus.RUNNING:
        return status
    gone = is_gone(host=record.host, pid=record.pid, boot_id=record.boot_id)
    if gone:
        return RunStatus.INTERRUPTED
    stale = record.heartbeat_at is not None and now() - record.heartbeat_at > heartbeat_timeout
    return RunStatus.INTERRUPTED if gone is None and stale else status


def view(services: Services, run_id: str) -> RunView:
    record = services.store.get_run(run_id)
    status = shown_status(record, heartbeat_timeout=services.config.settings.bot.heartbeat_timeout)
    return RunView(record=record, status=status, steps=services.store.steps(run_id))
