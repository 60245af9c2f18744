"""execute(run): the steps in order, the journal written after each, events to reporters, lock held.

A run's life: planned → running → succeeded | failed → (retry | skip → running) | aborted.
A run whose process died mid-step is found with a stale heartbeat and shown as interrupted; it can
be resumed (the interrupted step is retried: every step is safe to run again) or aborted.
The environment's lock is taken when a run starts and released only when it ends (succeeded or
aborted), so a failed run waiting for a decision still keeps everyone else out.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from bot.backends.base import HealthResult
from bot.engine.checklist import ChecklistItem
from bot.engine.events import (
    Reporter,
    RunFinished,
    RunStarted,
    StepFailed,
    StepFinished,
    StepProgress,
    StepStarted,
    emit,
)
from bot.engine.plan import Plan
from bot.engine.steps import STEP_BY_NAME, STEPS, StepContext, StepDef
from bot.errors import InvalidState, LockHeld, RollbackError
from bot.redact import redact
from bot.store import RunRecord, StepRecord, now

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

HEARTBEAT_EVERY = timedelta(seconds=20)
INTERRUPTED_AFTER = timedelta(minutes=2)
DECISIONS = ("retry", "skip", "abort")


@dataclass(frozen=True)
class RunView:
    """A run as people see it, with 'interrupted' derived from a stale heartbeat."""

    record: RunRecord
    status: str
    steps: list[StepRecord]


def view(services: Services, run_id: str) -> RunView:
    record = services.store.get_run(run_id)
    status = record.status
    if status == "running" and record.heartbeat_at and now() - record.heartbeat_at > INTERRUPTED_AFTER:
        status = "interrupted"
    return RunView(record=record, status=status, steps=services.store.steps(run_id))


class Runner:
    """Executes approved plans. Safe to call from several threads or replicas: the store arbitrates."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.store = services.store

    def start(self, run_id: str, *, actor: str, reporters: Sequence[Reporter] = ()) -> RunRecord:
        """Start a planned run. A second call for the same run (double click, retry) does nothing."""
        record = self.store.get_run(run_id)
        try:
            self.store.acquire_lock(record.env, run_id=run_id, holder=record.requested_by)
        except LockHeld:
            self.store.transition(
                run_id, from_=["planned", "approved"], to="refused", error="another rollback holds the lock"
            )
            raise
        if not self.store.transition(
            run_id, from_=["planned", "approved"], to="running", started_at=now(), heartbeat_at=now()
        ):
            # Someone else started it, or it already ended. The lock is this run's to keep only while
            # it runs or waits for a decision; otherwise we just took it for nothing.
            current = self.store.get_run(run_id)
            if current.status not in ("running", "failed"):
                self.store.release_lock(record.env, run_id=run_id)
            return current
        self.store.record(actor=actor, action="run.started", run_id=run_id, env=record.env)
        plan = Plan.from_dict(record.plan)
        self.store.init_steps(run_id, [step.name for step in STEPS])
        emit(
            reporters,
            RunStarted(
                run_id=run_id,
                env=record.env,
                actor=actor,
                steps=tuple((s.name, s.title) for s in STEPS),
                dry_run=plan.dry_run,
            ),
        )
        return self._continue(run_id, reporters)

    def resume(self, run_id: str, *, decision: str, actor: str, reporters: Sequence[Reporter] = ()) -> RunRecord:
        """Act on a failed or interrupted run: retry the failed step, skip it, or abort the run."""
        if decision not in DECISIONS:
            raise InvalidState(f"unknown decision {decision!r}", hint="retry, skip or abort")
        current = view(self.services, run_id)
        if current.status not in ("failed", "interrupted"):
            raise InvalidState(
                f"run {run_id} is {current.status}: only a failed or interrupted run can be resumed or aborted"
            )
        stuck = next((s for s in current.steps if s.status in ("failed", "running")), None)
        from_status = ["running"] if current.status == "interrupted" else ["failed"]
        if decision == "abort":
            if not self.store.transition(run_id, from_=from_status, to="aborted", finished_at=now()):
                return self.store.get_run(run_id)
            self.store.release_lock(current.record.env, run_id=run_id)
            self.store.record(actor=actor, action="run.aborted", run_id=run_id, env=current.record.env)
            self._finish_event(run_id, reporters, outcome="aborted")
            return self.store.get_run(run_id)
        if stuck is not None and decision == "skip" and not STEP_BY_NAME[stuck.name].skippable:
            raise InvalidState(
                f"the {STEP_BY_NAME[stuck.name].title.lower()} step cannot be skipped",
                hint="retry it or abort the run: nothing destructive happens before it succeeds",
            )
        if not self.store.transition(run_id, from_=from_status, to="running", heartbeat_at=now(), error=None):
            return self.store.get_run(run_id)  # someone else acted first
        if stuck is not None:
            if stuck.status == "running":  # interrupted mid-step: we cannot know it finished, so redo it
                self.store.finish_step(run_id, stuck.name, status="failed", summary="interrupted")
            if decision == "skip":
                self.store.skip_step(run_id, stuck.name, summary=f"skipped by {actor} after failure")
        self.store.record(
            actor=actor,
            action=f"run.{decision}",
            run_id=run_id,
            env=current.record.env,
            detail=stuck.name if stuck else "",
        )
        return self._continue(run_id, reporters)

    def _continue(self, run_id: str, reporters: Sequence[Reporter]) -> RunRecord:
        record = self.store.get_run(run_id)
        plan = Plan.from_dict(record.plan)
        ctx = self._context(record, plan, reporters)
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(run_id, stop), name=f"heartbeat-{run_id}", daemon=True)
        beat.start()
        try:
            journal = {s.name: s for s in self.store.steps(run_id)}
            for position, step in enumerate(STEPS):
                entry = journal[step.name]
                if entry.status in ("ok", "skipped"):
                    if entry.status == "ok":
                        ctx.done[step.name] = entry.details
                    continue
                if not self._run_step(ctx, step, position, reporters):
                    return self.store.get_run(run_id)
        finally:
            stop.set()
            beat.join(timeout=5)
        if self.store.transition(run_id, from_=["running"], to="succeeded", finished_at=now(), current_step=None):
            self.store.release_lock(record.env, run_id=run_id)
            self.store.record(actor="rollback-bot", action="run.succeeded", run_id=run_id, env=record.env)
            self._finish_event(run_id, reporters, outcome="succeeded")
        return self.store.get_run(run_id)

    def _run_step(self, ctx: StepContext, step: StepDef, position: int, reporters: Sequence[Reporter]) -> bool:
        run_id = ctx.run_id
        if not self.store.claim_step(run_id, step.name):
            raise InvalidState(f"step {step.name} of run {run_id} is already being run elsewhere")
        emit(
            reporters,
            StepStarted(run_id=run_id, step=step.name, title=step.title, position=position, total=len(STEPS)),
        )
        started = time.monotonic()
        ctx.progress = lambda message: emit(
            reporters, StepProgress(run_id=run_id, step=step.name, message=redact(message))
        )
        try:
            outcome = step.fn(ctx)
        except Exception as error:  # every failure is journaled; unexpected ones are logged in full
            known = isinstance(error, RollbackError)
            if not known:
                log.exception("step %s of run %s failed unexpectedly", step.name, run_id)
            message = (
                error.message
                if isinstance(error, RollbackError)
                else f"unexpected error: {type(error).__name__}: {error}"
            )
            hint = error.hint if isinstance(error, RollbackError) else "see the bot's log; retry or abort"
            details: dict[str, Any] = error.details if isinstance(error, RollbackError) else {}
            message, hint = redact(message), redact(hint)
            self.store.finish_step(run_id, step.name, status="failed", summary=message, details=details)
            self.store.transition(run_id, from_=["running"], to="failed", error=f"{step.title}: {message}")
            self.store.record(
                actor="rollback-bot",
                action="step.failed",
                run_id=run_id,
                env=ctx.plan.env,
                detail=f"{step.name}: {message}",
            )
            moves = ("retry", "skip", "abort") if step.skippable else ("retry", "abort")
            emit(
                reporters,
                StepFailed(
                    run_id=run_id,
                    step=step.name,
                    title=step.title,
                    error=message,
                    hint=hint,
                    duration_s=time.monotonic() - started,
                    state=state_of(self.store.steps(run_id), ctx.plan),
                    next_moves=moves,
                ),
            )
            return False
        self.store.finish_step(
            run_id, step.name, status=outcome.status, summary=outcome.summary, details=outcome.details
        )
        self.store.record(
            actor="rollback-bot",
            action=f"step.{outcome.status}",
            run_id=run_id,
            env=ctx.plan.env,
            detail=f"{step.name}: {outcome.summary}",
        )
        if outcome.status == "ok":
            ctx.done[step.name] = outcome.details
        emit(
            reporters,
            StepFinished(
                run_id=run_id,
                step=step.name,
                title=step.title,
                status=outcome.status,
                summary=redact(outcome.summary),
                duration_s=time.monotonic() - started,
                details=outcome.details,
            ),
        )
        return True

    def _context(self, record: RunRecord, plan: Plan, reporters: Sequence[Reporter]) -> StepContext:
        services = self.services
        database, database_error = None, None
        try:
            database = services.database(record.env)
        except RollbackError as error:
            database_error = error
        flags, flags_error = [], None
        if plan.flags:
            try:
                flags = services.flag_providers(record.env)
            except RollbackError as error:
                flags_error = error
        return StepContext(
            run_id=record.id,
            plan=plan,
            env=services.config.environment(record.env),
            repo=services.repo(record.env),
            database=database,
            database_error=database_error,
            flags=flags,
            flags_error=flags_error,
            rds=services.rds(record.env) if plan.database.action.startswith("rds-") else None,
            health=services.health,
            store=self.store,
            backup_dir=services.config.backup_dir,
            progress=lambda _m: None,
        )

    def _heartbeat(self, run_id: str, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_EVERY.total_seconds()):
            try:
                self.store.heartbeat(run_id)
            except Exception:
                log.warning("heartbeat for run %s failed", run_id, exc_info=True)

    def _finish_event(self, run_id: str, reporters: Sequence[Reporter], *, outcome: str) -> None:
        record = self.store.get_run(run_id)
        steps = {s.name: s for s in self.store.steps(run_id)}
        started = record.started_at or record.created_at
        health_rows = steps["health"].details.get("checks", []) if "health" in steps else []
        health = tuple(
            HealthResult(
                url=row["url"],
                healthy=row["healthy"],
                attempts=row["attempts"],
                last_status=row["status"],
                last_error=row["error"],
                latency_ms=row["latency_ms"],
                expected_status=row["expected"],
            )
            for row in health_rows
        )
        items = tuple(
            ChecklistItem(id=item.item_id, phase=item.phase, text=item.text) for item in self.store.checklist(run_id)
        )
        emit(
            reporters,
            RunFinished(
                run_id=run_id,
                env=record.env,
                outcome=outcome,
                duration_s=((record.finished_at or now()) - started).total_seconds(),
                dry_run=record.dry_run,
                health=health,
                checklist=items,
                summary=summary_of(list(steps.values())),
            ),
        )


def state_of(steps: list[StepRecord], plan: Plan) -> dict[str, str]:
    """Where code, database and flags stand now, in words, from the journal."""
    by_name = {s.name: s for s in steps}

    def describe(name: str, untouched: str) -> str:
        step = by_name.get(name)
        if step is None or step.status == "pending":
            return f"{untouched} (step not reached)"
        if step.status == "ok":
            return step.summary
        if step.status == "skipped":
            return f"{untouched} (skipped: {step.summary})"
        if step.status == "failed":
            return f"failed: {step.summary}"
        return f"in progress: {step.summary or 'no result recorded'}"

    code_untouched = f"unchanged: {plan.remote}/{plan.branch} still at {plan.deployed.short}"
    state = {
        "code": describe("code", code_untouched),
        "database": describe("database", "live database unchanged"),
        "flags": describe("flags", "flags unchanged"),
    }
    dump = by_name.get("pre_dump")
    if dump is not None and dump.status == "ok":
        state["backup"] = f"pre-rollback dump kept: {dump.details.get('path', dump.summary)}"
    return state


def summary_of(steps: list[StepRecord]) -> str:
    return "; ".join(f"{s.name}: {s.status}" for s in steps)
