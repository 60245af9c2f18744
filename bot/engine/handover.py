"""When the people a rollback waits for are gone: take a run over, or break a lock.

- **Take over**: a failed or interrupted run whose requester is gone (asleep, offline, their terminal or
  laptop dead) becomes an approver's: the environment's lock is held in their name from then on, and
  they retry, skip or abort it. A running run is never taken over: somebody is at it.
- **Break a lock**: the lock of an environment whose holder is gone is freed. "Gone" is decided here,
  from the store: the holding run is interrupted (its process died: `shown_status`), failed and left
  waiting, never started long after it took the lock, or already ended without releasing it (a crash
  between the two writes). A failed or interrupted holder is aborted on the way, with the crash
  cleanup an abort does; a live run's lock is never broken.

Break-glass (no approver answers) is its sibling, bot/engine/break_glass.py. Every act is authorised by
`lifecycle.authorize` (Act.TAKE_OVER, Act.BREAK_LOCK), is a conditional write (two people acting at
once change it once), and is audited with the reason typed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bot.engine import lifecycle
from bot.engine.approval import check_reason, is_approver
from bot.engine.events import Reporter
from bot.engine.run_status import Act, Actor, Decision, RunStatus, RunView, shown_status
from bot.engine.story import NoticeKind, RunStory, header_notice, run_key
from bot.errors import InvalidState, NotAllowed, RunNotFound
from bot.format import duration
from bot.outbox import Notice, Outbox
from bot.store import LockRecord, RunRecord, iso, now

if TYPE_CHECKING:
    from bot.services import Services


def thread_note(record: RunRecord, what: str, **payload: Any) -> Notice | None:
    """A line in the run's thread about who did what (taken over, lock broken, review signed off)."""
    channel = record.meta.get("channel")
    if not channel:
        return None
    body = {"what": what, "run_id": record.id, "env": record.env, "at": iso(), **payload}
    return Notice(
        channel=channel, kind=NoticeKind.HANDOVER, payload=body, run_id=record.id, thread_key=run_key(record.id)
    )


def enqueue(services: Services, *notices: Notice | None) -> None:
    outbox = Outbox(services.store)
    for notice in notices:
        if notice is not None:
            outbox.enqueue(notice)


# --- take over --------------------------------------------------------------------------------------------


def check_can_take_over(services: Services, run_id: str, *, actor: Actor) -> RunView:
    """Raise why `actor` may not take this run over now; return it as people see it if they may."""
    current = lifecycle.view(services, run_id)
    lifecycle.authorize(services, current.record, actor=actor, act=Act.TAKE_OVER)
    if current.status not in (RunStatus.FAILED, RunStatus.INTERRUPTED):
        why = {
            RunStatus.RUNNING: "it is running, so whoever runs it is still at it",
            RunStatus.PLANNED: "it is a plan waiting for approval: confirm or cancel it instead",
            RunStatus.APPROVED: "it is being started",
        }.get(current.status, f"it is {current.status}")
        raise InvalidState(
            f"run {run_id} cannot be taken over: {why}",
            hint="a failed or interrupted run can be taken over",
        )
    lock = services.store.lock_for(current.record.env)
    if lock is None or lock.run_id != run_id:
        raise InvalidState(
            f"run {run_id} no longer holds the lock of {current.record.env}", hint="see rollback-bot status"
        )
    if lock.holder == actor.id:
        raise InvalidState("this rollback is already yours", hint="retry, skip or abort it")
    return current


def take_over(services: Services, run_id: str, *, actor: Actor, reason: str) -> RunRecord:
    """The run (and its lock) become `actor`'s; its status is unchanged: they retry, skip or abort it next."""
    current = check_can_take_over(services, run_id, actor=actor)
    words = check_reason(reason)
    record, store = current.record, services.store
    lock = store.lock_for(record.env)
    previous = lock.holder if lock else record.requested_by
    if not store.hand_over_lock(record.env, run_id=run_id, holder=actor.id, from_holder=previous):
        raise InvalidState(f"run {run_id} was taken over or released meanwhile", hint="see rollback-bot status")
    store.record(
        actor=actor.id, action="run.taken_over", run_id=run_id, env=record.env, detail=f"from {previous}: {words}"
    )
    store.merge_meta(run_id, {"taken_over": {"by": actor.id, "from": previous, "reason": words, "at": iso()}})
    updated = store.get_run(run_id)
    enqueue(
        services,
        thread_note(updated, "taken_over", by=actor.id, previous=previous, reason=words, status=current.status),
        header_notice(updated, status=current.status, detail=updated.error or ""),
    )
    return updated


# --- break a lock -----------------------------------------------------------------------------------------


def holder_gone(services: Services, lock: LockRecord) -> tuple[bool, str]:
    """Is the holder of this lock gone, and why (or why not), from the store's point of view."""
    try:
        record = services.store.get_run(lock.run_id)
    except RunNotFound:
        return True, f"its run {lock.run_id} does not exist"
    timeout = services.config.settings.bot.heartbeat_timeout
    status = shown_status(record, heartbeat_timeout=timeout)
    if status.ended:
        return True, f"its run ended ({status}) without releasing it"
    if status is RunStatus.INTERRUPTED:
        beat = (
            f", last heartbeat {duration(now() - record.heartbeat_at, rough=True)} ago" if record.heartbeat_at else ""
        )
        return True, f"the process running it is gone{beat}"
    if status is RunStatus.FAILED:
        return True, "its run failed and is waiting for a decision from its holder"
    if status in (RunStatus.PLANNED, RunStatus.APPROVED):
        age = now() - lock.acquired_at
        if age > timeout:
            return True, f"its run took the lock {duration(age, rough=True)} ago and never started"
        return False, "its run is being started right now"
    beat = f", last heartbeat {duration(now() - record.heartbeat_at, rough=True)} ago" if record.heartbeat_at else ""
    return False, f"its run is running (pid {record.pid} on {record.host}{beat})"


def check_can_break_lock(
    services: Services, env: str, *, actor: Actor, run_id: str | None = None
) -> tuple[LockRecord, str]:
    """Raise why `actor` may not break `env`'s lock now (held by `run_id`, if given); else (the lock, why gone)."""
    settings = services.config.environment(env)
    lock = services.store.lock_for(env)
    if lock is None:
        raise InvalidState(f"{env} is not locked: no rollback holds it", hint=f"ask for a plan with /rollback {env}")
    if run_id is not None and lock.run_id != run_id:
        raise InvalidState(f"the lock of {env} changed hands: it is now held by run {lock.run_id}", hint="look again")
    try:
        lifecycle.authorize(services, services.store.get_run(lock.run_id), actor=actor, act=Act.BREAK_LOCK)
    except RunNotFound:  # a lock with no run: only an approver may still clear it
        if actor.via == "slack" and not is_approver(settings, actor.id, actor.members_of):
            raise NotAllowed(f"only approvers of {env} can break its lock") from None
    gone, why = holder_gone(services, lock)
    if not gone:
        raise InvalidState(
            f"the lock of {env} is held by run {lock.run_id} ({lock.holder}) and its holder is not gone: {why}",
            hint="wait for it; a run whose process dies shows as interrupted, and its lock can be broken then",
        )
    return lock, why


def break_lock(
    services: Services,
    env: str,
    *,
    actor: Actor,
    reason: str,
    run_id: str | None = None,
    reporters: Sequence[Reporter] = (),
) -> list[str]:
    """Free `env` whose lock holder is gone; a failed or interrupted holder is aborted (with its cleanup) first.

    Returns what was done, one line each, for the person who did it.
    """
    lock, why = check_can_break_lock(services, env, actor=actor, run_id=run_id)
    words = check_reason(reason)
    store = services.store
    try:
        holder: RunRecord | None = store.get_run(lock.run_id)
    except RunNotFound:
        holder = None
    lines = [f"the lock of {env} was held by run {lock.run_id} ({lock.holder}): {why}"]
    status = shown_status(holder, heartbeat_timeout=services.config.settings.bot.heartbeat_timeout) if holder else None
    if holder is not None and status in (RunStatus.FAILED, RunStatus.INTERRUPTED):
        story: list[Reporter] = [RunStory(services, run_id=holder.id)] if holder.meta.get("channel") else []
        ended = lifecycle.resume(
            services, holder.id, decision=Decision.ABORT, actor=actor, reporters=[*reporters, *story]
        )
        if ended.status != RunStatus.ABORTED:
            raise InvalidState(f"run {holder.id} was resumed meanwhile ({ended.status}): its lock was not broken")
        lines.append(f"run {holder.id} was aborted: what it already did stays as it is")
    elif holder is not None and status in (RunStatus.PLANNED, RunStatus.APPROVED):
        lines += _abort_unstarted(services, holder, actor=actor)
    store.break_lock(env, run_id=lock.run_id)
    store.record(
        actor=actor.id,
        action="lock.broken",
        run_id=lock.run_id,
        env=env,
        detail=f"held by {lock.holder} since {lock.acquired_at:%Y-%m-%d %H:%M} UTC, {why}; reason: {words}",
    )
    lines.append(f"{env} is free: a new rollback can take its lock")
    if holder is not None:
        updated = store.get_run(holder.id)
        closed = header_notice(updated, status=updated.status, detail=f"its lock was broken by <@{actor.id}>")
        enqueue(
            services,
            thread_note(updated, "lock_broken", by=actor.id, previous=lock.holder, reason=words),
            closed if status in (RunStatus.PLANNED, RunStatus.APPROVED) else None,
        )
    return lines


def _abort_unstarted(services: Services, holder: RunRecord, *, actor: Actor) -> list[str]:
    """A run that took the lock and died before it started: aborted, so it can never start later."""
    moved = services.store.transition(
        holder.id,
        from_=[RunStatus.PLANNED.value, RunStatus.APPROVED.value],
        to=RunStatus.ABORTED.value,
        finished_at=now(),
        error="its lock was broken before it started",
    )
    if not moved:
        return []
    services.store.record(
        actor=actor.id, action="run.aborted", run_id=holder.id, env=holder.env, detail="its lock was broken"
    )
    return [f"run {holder.id} never started: it is aborted"]


def lock_broken_notice(record: RunRecord, *, by: str, reason: str, holder_run: str) -> Notice | None:
    """In the thread of the plan that was refused for the lock: the environment is free now."""
    return thread_note(record, "lock_freed", by=by, reason=reason, holder_run=holder_run)
