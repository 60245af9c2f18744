"""The executor: runs a run's remaining steps in order, journals each, keeps a heartbeat, emits events.

It never changes a run's status: `bot.engine.lifecycle` does that, from what `execute_steps` returns.
Every step is safe to run again (the journal says what happened; backends refuse a world that moved),
so an interrupted step is simply retried. After a crash, `clean_up_after_crash` repairs what a killed
process can leave behind (a half-done database swap); `discard_leftovers` drops a restore's orphan
shadow database on abort.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from bot.backends.base import ProgressUnit, no_progress
from bot.engine import overlap
from bot.engine.checklist import ChecklistItem
from bot.engine.events import (
    Reporter,
    RunFinished,
    StepFailed,
    StepFinished,
    StepProgress,
    StepStarted,
    emit,
)
from bot.engine.outcomes import DatabaseOutcome, DumpOutcome, HealthOutcome
from bot.engine.overlap import Begun
from bot.engine.plan import Plan
from bot.engine.run_status import RunView
from bot.engine.step_context import StepFn
from bot.engine.steps import STEP_BY_NAME, STEPS, StepContext, StepDef
from bot.errors import InvalidState, RollbackError
from bot.redact import redact
from bot.store import RunRecord, StepRecord, now

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

FINISHED = ("ok", "skipped")
DATABASE = STEP_BY_NAME["database"]
DATABASE_AT = STEPS.index(DATABASE)
PRE_DUMP = STEP_BY_NAME["pre_dump"]


def execute_steps(services: Services, record: RunRecord, reporters: Sequence[Reporter]) -> StepFailed | None:
    """Run every step not yet done; return the failure that stopped the run, or None when all are done."""
    return _Executor(services).run(record, reporters)


class _Executor:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.store = services.store

    def run(self, record: RunRecord, reporters: Sequence[Reporter]) -> StepFailed | None:
        plan = Plan.from_dict(record.plan)
        ctx = self._context(record, plan, reporters)
        stop = threading.Event()
        every = self.services.config.settings.bot.heartbeat_timeout.total_seconds() / 4
        beat = threading.Thread(
            target=self._heartbeat, args=(record.id, stop, every), name=f"heartbeat-{record.id}", daemon=True
        )
        beat.start()
        try:
            return self._walk(ctx, reporters)
        finally:
            stop.set()
            beat.join(timeout=5)

    def _walk(self, ctx: StepContext, reporters: Sequence[Reporter]) -> StepFailed | None:
        """Every step not yet done, in order, but for two overlaps (bot.engine.overlap says why each is safe)."""
        journal = {s.name: s for s in self.store.steps(ctx.run_id)}
        for name, entry in journal.items():
            if entry.status == "ok":
                ctx.done[name] = entry.details
        todo = [(position, step) for position, step in enumerate(STEPS) if journal[step.name].status not in FINISHED]
        dump_due = overlap.dumps_after_swap(ctx.plan) and journal["pre_dump"].status not in FINISHED
        staging: overlap.Staging | None = None
        dump: overlap.Beside[StepFailed | None] | None = None
        failure: StepFailed | None = None
        try:
            for position, step in todo:
                if dump_due and position > DATABASE_AT:  # the database step has ended: the kept data can be read
                    dump_due = False
                    dump = overlap.Beside(f"pre-dump-{ctx.run_id}", partial(self._run_step, ctx, PRE_DUMP, reporters))
                if step.name == "pre_dump" and overlap.dumps_after_swap(ctx.plan):
                    continue  # taken of the kept database, beside flags and health, once the database step ends
                if step.name == "checklist" and dump is not None:
                    failure, dump = dump.result(), None  # the checklist is written once the dump is verified
                if failure is None and step.name == "pre_dump" and overlap.stage_during_dump(ctx, journal):
                    dumping = self._begin(ctx, step, reporters)  # announced first: the thread reads in order
                    staging = overlap.Staging(ctx, begun=self._begin(ctx, DATABASE, reporters))
                    failure = self._run_step(ctx, step, reporters, begun=dumping)
                    if failure is None:  # the code step waits for both: a restore that fails changes nothing
                        failure = staging.loaded(partial(self._run_begun, ctx, DATABASE, reporters))
                elif failure is None and step.name == "database" and staging is not None:
                    failure, staging = staging.swap(partial(self._run_begun, ctx, DATABASE, reporters)), None
                elif failure is None:
                    failure = self._run_step(ctx, step, reporters)
                    if failure is not None and step.name == "health":
                        self._unhealthy(failure, reporters)  # the rollback itself is done: go on
                        failure = None
                if failure is not None:
                    break
            if dump_due and failure is None:  # nothing after the database step was left to run beside it
                failure = self._run_step(ctx, PRE_DUMP, reporters)
        finally:
            if staging is not None:  # the run stopped before the swap: the shadow goes, the step waits again
                staging.stop(self.store, reporters, why=f"{failure.title.lower()} failed" if failure else "stopped")
            if dump is not None:  # never leave the pre-rollback dump behind: a failure waits for it
                late = dump.result()
                failure = failure or late
        return failure

    def _unhealthy(self, failure: StepFailed, reporters: Sequence[Reporter]) -> None:
        """Health failed after everything else was done: there is nothing left to roll back, so the run
        goes on to its checklist and ends "done, unhealthy" (lifecycle reads it from the journal)."""
        step = next(s for s in self.store.steps(failure.run_id) if s.name == "health")
        emit(
            reporters,
            StepFinished(
                run_id=failure.run_id,
                step=failure.step,
                title=failure.title,
                status="failed",
                summary=failure.error,
                duration_s=failure.duration_s,
                details=step.details,
            ),
        )

    def _run_begun(
        self, ctx: StepContext, step: StepDef, reporters: Sequence[Reporter], work: dict[str, Any]
    ) -> StepFailed | None:
        return self._run_step(ctx, step, reporters, **work)

    def _begin(self, ctx: StepContext, step: StepDef, reporters: Sequence[Reporter]) -> Begun:
        """Claim a step, say it started, and give it a context whose progress is its own."""
        run_id = ctx.run_id
        if not self.store.claim_step(run_id, step.name):
            raise InvalidState(f"step {step.name} of run {run_id} is already being run elsewhere")
        position = STEPS.index(step)
        emit(
            reporters,
            StepStarted(run_id=run_id, step=step.name, title=step.title, position=position, total=len(STEPS)),
        )

        def progress(
            message: str,
            /,
            *,
            done: float | None = None,
            total: float | None = None,
            unit: ProgressUnit | None = None,
        ) -> None:
            event = StepProgress(
                run_id=run_id, step=step.name, message=redact(message), done=done, total=total, unit=unit
            )
            emit(reporters, event)

        # Its own copy: two steps may run at once, each reporting its own progress (`done` is shared).
        return Begun(ctx=dataclasses.replace(ctx, progress=progress), started=time.monotonic())

    def _run_step(
        self,
        ctx: StepContext,
        step: StepDef,
        reporters: Sequence[Reporter],
        *,
        work: StepFn | None = None,
        begun: Begun | None = None,
    ) -> StepFailed | None:
        """Run one step (or `work` in its place, for a step begun earlier) and journal how it ended."""
        run_id = ctx.run_id
        begun = begun or self._begin(ctx, step, reporters)
        started = begun.started
        try:
            outcome = (work or step.fn)(begun.ctx)
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
            earlier = next((s.details for s in self.store.steps(run_id) if s.name == step.name), {})
            details = {**earlier, **(error.details if isinstance(error, RollbackError) else {})}
            message, hint = redact(message), redact(hint)
            self.store.finish_step(run_id, step.name, status="failed", summary=message, details=details)
            self.store.record(
                actor="rollback-bot",
                action="step.failed",
                run_id=run_id,
                env=ctx.plan.env,
                detail=f"{step.name}: {message}",
            )
            return StepFailed(
                run_id=run_id,
                step=step.name,
                title=step.title,
                error=message,
                hint=hint,
                duration_s=time.monotonic() - started,
                state=state_of(self.store.steps(run_id), ctx.plan),
                next_moves=("retry", "skip", "abort") if step.skippable else ("retry", "abort"),
            )
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
        return None

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
            progress=no_progress,
            artifacts=services.artifacts(),  # the configured folder or S3 bucket for every dump
            work_dir=services.config.work_dir,
        )

    def _heartbeat(self, run_id: str, stop: threading.Event, every_s: float) -> None:
        while not stop.wait(every_s):
            try:
                self.store.heartbeat(run_id)
            except Exception:
                log.warning("heartbeat for run %s failed", run_id, exc_info=True)


def finish_event(
    services: Services, run_id: str, reporters: Sequence[Reporter], *, outcome: str, notes: tuple[str, ...] = ()
) -> None:
    """Tell the reporters how the run ended: health table, checklist, summary."""
    store = services.store
    record = store.get_run(run_id)
    steps = {s.name: s for s in store.steps(run_id)}
    started = record.started_at or record.created_at
    health = HealthOutcome.from_details(steps["health"].details if "health" in steps else {})
    items = tuple(ChecklistItem(id=item.item_id, phase=item.phase, text=item.text) for item in store.checklist(run_id))
    emit(
        reporters,
        RunFinished(
            run_id=run_id,
            env=record.env,
            outcome=outcome,
            duration_s=((record.finished_at or now()) - started).total_seconds(),
            dry_run=record.dry_run,
            health=tuple(row.result() for row in health.checks),
            checklist=items,
            summary="; ".join([summary_of(list(steps.values())), *notes]),
        ),
    )


def clean_up_after_crash(services: Services, current: RunView) -> list[str]:
    """After the process running `current` died: repair a half-done swap and drop the orphan shadow."""
    return _database_leftovers(services, current, repair=True)


def discard_leftovers(services: Services, current: RunView) -> list[str]:
    """On abort: drop what a failed restore left beside the live database (never the live or kept data)."""
    return _database_leftovers(services, current, repair=False)


def _database_leftovers(services: Services, current: RunView, *, repair: bool) -> list[str]:
    step = next((s for s in current.steps if s.name == "database"), None)
    if step is None or step.status not in ("running", "failed"):
        return []
    shadow = DatabaseOutcome.from_details(step.details).shadow
    try:
        database = services.database(current.record.env)
    except RollbackError as error:
        return [f"could not open the database to clean up: {error.message}"]
    if database is None:
        return []
    done: list[str] = []
    try:
        if repair:
            done += database.repair_interrupted_swap()
        if shadow:
            dropped = database.discard_shadow(shadow)
            if dropped:
                done.append(dropped)
    except RollbackError as error:
        done.append(f"cleanup incomplete: {error.message}")
    for line in done:
        services.store.record(actor="rollback-bot", action="database.cleaned", run_id=current.record.id, detail=line)
    return done


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
    database = by_name.get("database")
    if dump is not None and dump.status == "ok":
        kept = DumpOutcome.from_details(dump.details)
        state["backup"] = f"pre-rollback dump kept: {kept.location or kept.path or dump.summary}"
    elif (
        database is not None
        and database.status == "ok"
        and (previous := DatabaseOutcome.from_details(database.details).previous)
    ):
        state["backup"] = (
            f"the pre-rollback dump is not taken yet: {previous} holds the pre-rollback data and is kept until it is"
        )
    return state


def summary_of(steps: list[StepRecord]) -> str:
    return "; ".join(f"{s.name}: {s.status}" for s in steps)
