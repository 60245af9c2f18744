"""THE run state machine: every change of a run's status happens here, audited, and nowhere else.

    planned ──approve──▶ approved ──start──▶ running ──▶ succeeded
       │                    │                  │  ▲
       ├─cancel─▶ cancelled  └─lock held─▶ refused   │  └─retry / skip─┐
       └─expire─▶ expired                       └──▶ failed ─────────┘
                                                      └─abort─▶ aborted
    running whose process is gone is *shown* as interrupted; it resumes or aborts like a failed run.

Both front ends (Slack, the terminal) call these verbs; they never write a status themselves. Who may
approve, cancel, retry, skip, abort or undo flags is decided here too (`authorize`), from the
environment's settings and the actor's identity. Each transition is one conditional write in the
store, so a double click, a Slack retry or a second replica changes a run once.

Size: past 400 lines on purpose: every verb that changes a run's status (rehearsals' approved-at-birth
runs, hand-over and break-glass call in here too) stays in this one module, so "who may change what,
when" is read in one place.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bot.backends.base import FlagState
from bot.engine import run as executor
from bot.engine.approval import check_approval, check_break_glass, check_requester, is_approver
from bot.engine.events import Reporter, RunStarted, StepProgress, emit
from bot.engine.outcomes import FlagsOutcome
from bot.engine.plan import Plan, RollbackRequest
from bot.engine.planning import make_request_plan
from bot.engine.run_status import Act, Actor, Decision, RunStatus, RunView, view
from bot.engine.steps import STEP_BY_NAME, STEPS
from bot.engine.story import header_notice
from bot.errors import InvalidState, LockHeld, NotAllowed, PlanExpired
from bot.outbox import Outbox
from bot.process_identity import current_process
from bot.store import RunRecord, now

if TYPE_CHECKING:
    from bot.services import Services

__all__ = [
    "Act",
    "Actor",
    "Decision",
    "RunStatus",
    "RunView",
    "abort",
    "approve",
    "authorize",
    "cancel",
    "check_can_approve",
    "complete_checklist_item",
    "expire",
    "make_request_plan",
    "propose",
    "propose_rehearsal",
    "resume",
    "start",
    "undo_flags",
    "view",
]

_WAITING = (RunStatus.PLANNED,)


def _move(
    services: Services,
    run_id: str,
    *,
    from_: Sequence[RunStatus],
    to: RunStatus,
    actor: str,
    detail: str = "",
    **values: Any,
) -> bool:
    """One audited, conditional transition; True if this call made it (first click wins)."""
    if not services.store.transition(run_id, from_=[s.value for s in from_], to=to.value, **values):
        return False
    action = "started" if to is RunStatus.RUNNING else to.value
    services.store.record(actor=actor, action=f"run.{action}", run_id=run_id, detail=detail)
    return True


# --- who may do what --------------------------------------------------------------------------------


def authorize(services: Services, record: RunRecord, *, actor: Actor, act: Act) -> None:
    """Raise NotAllowed naming why `actor` may not `act` on this run; return if they may.

    A terminal user is trusted: whoever can run the CLI against production already holds its
    credentials, and the terminal is the way in when Slack is down. The audit trail names them. Two rules
    hold for everyone: break-glass follows the environment's list and wait (bot.engine.break_glass), and
    whoever broke the glass never signs off its review.
    """
    if act is Act.BREAK_GLASS:  # the environment's own rules, whatever the front end (the terminal names a user)
        check_break_glass(services.config.environment(record.env), run=record, user=actor.id, now=now())
        return
    if act is Act.SIGN_OFF and actor.id == record.meta.get("break_glass", {}).get("by"):
        raise NotAllowed("whoever broke the glass cannot review their own rollback", hint="ask an approver")
    if actor.via in ("terminal", "bot"):
        return
    settings = services.config.environment(record.env)
    approver = is_approver(settings, actor.id, actor.members_of)
    if act is Act.CANCEL:
        if actor.id != record.requested_by and not approver:
            raise NotAllowed("only the requester or an approver can cancel this plan")
        return
    if not approver:
        doing = {
            Act.APPROVE: "approve it",
            Act.RETRY: "retry a failed rollback",
            Act.SKIP: "skip a failed step",
            Act.ABORT: "abort a failed rollback",
            Act.UNDO_FLAGS: "put flags back",
            Act.TAKE_OVER: "take over a rollback",
            Act.BREAK_LOCK: "break its lock",
            Act.SIGN_OFF: "sign off a break-glass rollback",
        }[act]
        raise NotAllowed(
            f"only approvers of {record.env} can {doing}",
            hint="approvers are listed in environments." + record.env + ".approvers",
        )


# --- planning -----------------------------------------------------------------------------------------


def check_may_request(services: Services, request: RollbackRequest, *, actor: Actor) -> None:
    if actor.via == "slack":
        settings = services.config.environment(request.env)
        check_requester(settings, env=request.env, user=actor.id, members_of=actor.members_of)


def propose(
    services: Services, request: RollbackRequest, *, meta: dict[str, Any] | None = None
) -> tuple[RunRecord, Plan]:
    """Plan and record a rollback waiting for approval (→ planned)."""
    plan = make_request_plan(services, request)
    record = services.store.create_run(
        env=request.env,
        requested_by=request.requested_by,
        source=request.source,
        plan=plan.to_dict(),
        plan_hash=plan.hash,
        dry_run=request.dry_run,
        status=RunStatus.PLANNED.value,
        meta=meta,
    )
    services.store.record(
        actor=request.requested_by,
        action="run.planned",
        run_id=record.id,
        env=request.env,
        detail=f"{plan.deployed.short} → {plan.target.short}, code {plan.code}, db {plan.database.action}"
        + (" (dry run)" if plan.dry_run else ""),
    )
    return record, plan


def propose_rehearsal(services: Services, plan: Plan, *, source: str) -> RunRecord:
    """A rehearsal's run (bot.engine.rehearsal), recorded approved: on stand-ins (an env holding '@', never a
    configured one) nothing of production changes, so no approver is asked; `start` takes the stand-in's lock."""
    if "@" not in plan.env or plan.dry_run:
        raise NotAllowed(f"{plan.env} is not a rehearsal's stand-in: its rollback needs an approver")
    record = services.store.create_run(
        env=plan.env,
        requested_by=plan.requested_by,
        source=source,
        plan=plan.to_dict(),
        plan_hash=plan.hash,
        dry_run=False,
        status=RunStatus.APPROVED.value,
        meta={"rehearsal": True},
    )
    what = f"a rehearsal on stand-ins, {plan.deployed.short} → {plan.target.short}: nothing of production changes"
    services.store.record(actor=plan.requested_by, action="run.approved", run_id=record.id, env=plan.env, detail=what)
    return record


# --- before the run -------------------------------------------------------------------------------------


def check_can_approve(services: Services, run_id: str, *, actor: Actor, plan_hash: str) -> RunRecord:
    """Raise why `actor` may not approve this exact plan now; an expired plan is expired on the way."""
    record = services.store.get_run(run_id)
    if actor.via != "terminal":
        try:
            check_approval(
                services.config.environment(record.env),
                run=record,
                approver=actor.id,
                plan_hash=plan_hash,
                members_of=actor.members_of,
                now=now(),
                expires_after=services.config.settings.bot.plan_expires_after,
            )
        except PlanExpired:
            expire(services, run_id)
            raise
    if record.status != RunStatus.PLANNED:
        by = f" by <@{record.approved_by}>" if record.approved_by else ""
        raise NotAllowed(f"this rollback is already {record.status}{by}")
    return record


def approve(services: Services, run_id: str, *, actor: Actor, plan_hash: str) -> RunRecord:
    """planned → approved, bound to `plan_hash`; raises if not allowed or somebody else was first."""
    record = check_can_approve(services, run_id, actor=actor, plan_hash=plan_hash)
    how = "typed the environment name in a terminal" if actor.via == "terminal" else "clicked Confirm"
    if not _move(
        services, run_id, from_=_WAITING, to=RunStatus.APPROVED, actor=actor.id, detail=how, approved_by=actor.id
    ):
        current = services.store.get_run(run_id)
        by = f" by <@{current.approved_by}>" if current.approved_by else ""
        raise InvalidState(f"this rollback is already {current.status}{by}")
    return services.store.get_run(record.id)


def expire(services: Services, run_id: str) -> bool:
    """planned → expired when nobody approved in time; the plan message says so. True if this call did it."""
    if not _move(services, run_id, from_=_WAITING, to=RunStatus.EXPIRED, actor="rollback-bot", finished_at=now()):
        return False
    notice = header_notice(
        services.store.get_run(run_id), status="expired", detail="nobody approved it in time: ask for a fresh plan"
    )
    if notice is not None:
        Outbox(services.store).enqueue(notice)
    return True


def cancel(services: Services, run_id: str, *, actor: Actor) -> RunRecord:
    """planned → cancelled; a started run is aborted instead."""
    record = services.store.get_run(run_id)
    authorize(services, record, actor=actor, act=Act.CANCEL)
    if not _move(services, run_id, from_=_WAITING, to=RunStatus.CANCELLED, actor=actor.id, finished_at=now()):
        current = services.store.get_run(run_id)
        raise InvalidState(
            f"run {run_id} is {current.status} and can no longer be cancelled",
            hint="a failed run can be aborted instead" if current.status == RunStatus.FAILED else "",
        )
    return services.store.get_run(run_id)


# --- the run ----------------------------------------------------------------------------------------------


def start(services: Services, run_id: str, *, actor: Actor, reporters: Sequence[Reporter] = ()) -> RunRecord:
    """approved → running: take the environment's lock and execute. A second call does nothing."""
    store = services.store
    record = store.get_run(run_id)
    try:
        store.acquire_lock(record.env, run_id=run_id, holder=record.requested_by)
    except LockHeld as held:
        _move(
            services,
            run_id,
            from_=(RunStatus.PLANNED, RunStatus.APPROVED),
            to=RunStatus.REFUSED,
            actor="rollback-bot",
            detail=held.message,
            error="another rollback holds the lock",
        )
        raise
    process = current_process()
    if not _move(
        services,
        run_id,
        from_=(RunStatus.PLANNED, RunStatus.APPROVED),
        to=RunStatus.RUNNING,
        actor=actor.id,
        started_at=now(),
        heartbeat_at=now(),
        **process.columns(),
    ):
        # Someone else started it, or it already ended. The lock is this run's only while it runs or
        # waits for a decision; otherwise we just took it for nothing.
        current = store.get_run(run_id)
        if current.status not in (RunStatus.RUNNING, RunStatus.FAILED):
            store.release_lock(record.env, run_id=run_id)
        return current
    plan = Plan.from_dict(record.plan)
    store.init_steps(run_id, [step.name for step in STEPS])
    emit(
        reporters,
        RunStarted(
            run_id=run_id,
            env=record.env,
            actor=actor.id,
            steps=tuple((s.name, s.title) for s in STEPS),
            dry_run=plan.dry_run,
        ),
    )
    return _execute(services, run_id, reporters)


def resume(
    services: Services,
    run_id: str,
    *,
    decision: Decision | str,
    actor: Actor,
    reporters: Sequence[Reporter] = (),
) -> RunRecord:
    """Act on a failed or interrupted run: retry the stuck step, skip it, or abort the run."""
    try:
        decision = Decision(decision)
    except ValueError:
        raise InvalidState(f"unknown decision {decision!r}", hint="retry, skip or abort") from None
    store = services.store
    current = view(services, run_id)
    authorize(services, current.record, actor=actor, act=Act(decision.value))
    if current.status not in (RunStatus.FAILED, RunStatus.INTERRUPTED):
        raise InvalidState(
            f"run {run_id} is {current.status}: only a failed or interrupted run can be resumed or aborted"
        )
    stuck = next((s for s in current.steps if s.status in ("failed", "running")), None)
    from_status = (RunStatus.RUNNING,) if current.status == RunStatus.INTERRUPTED else (RunStatus.FAILED,)
    cleanup = executor.clean_up_after_crash(services, current) if current.status == RunStatus.INTERRUPTED else []
    if decision is Decision.ABORT:
        cleanup += executor.discard_leftovers(services, current)
        detail = "; ".join(cleanup)
        if not _move(
            services, run_id, from_=from_status, to=RunStatus.ABORTED, actor=actor.id, detail=detail, finished_at=now()
        ):
            return store.get_run(run_id)
        store.release_lock(current.record.env, run_id=run_id)
        executor.finish_event(services, run_id, reporters, outcome=RunStatus.ABORTED.value, notes=tuple(cleanup))
        return store.get_run(run_id)
    if stuck is not None and decision is Decision.SKIP and not STEP_BY_NAME[stuck.name].skippable:
        raise InvalidState(
            f"the {STEP_BY_NAME[stuck.name].title.lower()} step cannot be skipped",
            hint="retry it or abort the run: nothing destructive happens before it succeeds",
        )
    if not store.transition(
        run_id,
        from_=[s.value for s in from_status],
        to=RunStatus.RUNNING.value,
        heartbeat_at=now(),
        error=None,
        **current_process().columns(),
    ):
        return store.get_run(run_id)  # someone else acted first
    if cleanup:  # said where people look: the terminal and the step's message in the thread
        words = "cleaned up after the crash: " + "; ".join(cleanup)
        emit(reporters, StepProgress(run_id=run_id, step=stuck.name if stuck else "database", message=words))
    detail = (stuck.name if stuck else "") + (f" ({'; '.join(cleanup)})" if cleanup else "")
    store.record(actor=actor.id, action=f"run.{decision.value}", run_id=run_id, env=current.record.env, detail=detail)
    for step in current.steps:  # interrupted mid-step (two may overlap): we cannot know it finished, so redo it
        if step.status == "running":
            # Its details stay: what it journaled before dying (a shadow's name, identities) guides the retry.
            store.finish_step(run_id, step.name, status="failed", summary="interrupted", details=step.details)
    if stuck is not None and decision is Decision.SKIP:
        store.skip_step(run_id, stuck.name, summary=f"skipped by {actor.id} after failure")
    return _execute(services, run_id, reporters)


def abort(services: Services, run_id: str, *, actor: Actor, reporters: Sequence[Reporter] = ()) -> RunRecord:
    return resume(services, run_id, decision=Decision.ABORT, actor=actor, reporters=reporters)


def _execute(services: Services, run_id: str, reporters: Sequence[Reporter]) -> RunRecord:
    """Run the remaining steps; the step that fails moves the run to failed, the last to succeeded (or to
    unhealthy: done, but the health checks failed; nothing is left to roll back, so it does not wait)."""
    record = services.store.get_run(run_id)
    failure = executor.execute_steps(services, record, reporters)
    if failure is not None:
        _move(
            services,
            run_id,
            from_=(RunStatus.RUNNING,),
            to=RunStatus.FAILED,
            actor="rollback-bot",
            detail=f"{failure.step}: {failure.error}",
            error=f"{failure.title}: {failure.error}",
        )
        emit(reporters, failure)
        return services.store.get_run(run_id)
    health = next((s for s in services.store.steps(run_id) if s.name == "health"), None)
    ended = RunStatus.UNHEALTHY if health is not None and health.status == "failed" else RunStatus.SUCCEEDED
    if _move(
        services,
        run_id,
        from_=(RunStatus.RUNNING,),
        to=ended,
        actor="rollback-bot",
        finished_at=now(),
        current_step=None,
        **({"error": f"done, unhealthy: {health.summary}"} if ended is RunStatus.UNHEALTHY and health else {}),
    ):
        services.store.release_lock(record.env, run_id=run_id)
        executor.finish_event(services, run_id, reporters, outcome=ended.value)
    return services.store.get_run(run_id)


# --- after the run -----------------------------------------------------------------------------------------


def complete_checklist_item(services: Services, run_id: str, item_id: str, *, actor: Actor) -> bool:
    """Tick an item; False if it was already done (the first person to tick it keeps the credit)."""
    if not services.store.mark_done(run_id, item_id, by=actor.id):
        return False
    services.store.record(actor=actor.id, action="checklist.done", run_id=run_id, detail=item_id)
    return True


def undo_flags(services: Services, run_id: str, *, actor: Actor) -> list[str]:
    """Put every flag a run turned off back to the state recorded before it changed; one line per flag."""
    record = services.store.get_run(run_id)
    authorize(services, record, actor=actor, act=Act.UNDO_FLAGS)
    step = next((s for s in services.store.steps(run_id) if s.name == "flags"), None)
    outcome = FlagsOutcome.from_details(step.details if step else {})
    if not outcome.before:
        raise InvalidState(f"run {run_id} recorded no flag states, so there is nothing to put back")
    lines = []
    for provider in services.flag_providers(record.env):
        for row in outcome.before.get(provider.describe(), []):
            state = provider.restore(FlagState(key=row.key, on=row.on, detail=row.detail))
            lines.append(f"{provider.describe()}: {state.key} is {'on' if state.on else 'off'} again")
    services.store.record(
        actor=actor.id, action="flags.restored", run_id=run_id, env=record.env, detail="; ".join(lines)
    )
    return lines
