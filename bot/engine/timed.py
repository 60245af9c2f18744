"""What each durable timer does when it fires, and the watch for runs whose process died.

Handlers may run more than once for one occurrence (a replica died after firing, before completing):
each is idempotent. State changes are conditional writes; notices carry the occurrence's dedupe key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.engine import break_glass, lifecycle
from bot.engine.checklist import PHASE_TITLES
from bot.engine.drill_schedule import DrillWorker, drill_timer_handler
from bot.engine.events import StepFailed
from bot.engine.plan import Plan
from bot.engine.run import state_of
from bot.engine.run_status import RunStatus, shown_status
from bot.engine.steps import STEP_BY_NAME
from bot.engine.story import (
    NoticeKind,
    checklist_row,
    failure_notice,
    header_notice,
    run_key,
    stakeholder_notices,
)
from bot.outbox import Notice, Outbox
from bot.timers import Handler, Timer, TimerKind, Timers

if TYPE_CHECKING:
    from bot.services import Services


def schedule_expiry(services: Services, run_id: str) -> None:
    """The timers of a plan waiting for approval, fired by whichever replica is up: it expires on its own, and
    where its requester may break glass, break-glass is offered once `break_glass_after` passes unanswered."""
    record = services.store.get_run(run_id)
    Timers(services.store).schedule(
        f"{run_key(run_id)}:expire",
        kind=TimerKind.PLAN_EXPIRY,
        due_at=record.created_at + services.config.settings.bot.plan_expires_after,
        run_id=run_id,
        replace=False,
    )
    break_glass.schedule_break_glass(services, record)


def timer_handlers(services: Services, *, drills: DrillWorker | None = None) -> dict[TimerKind, Handler]:
    """`drills`: where restore drills run; without one (a terminal's poller) they are left to a serving replica."""
    outbox = Outbox(services.store)

    def expire_plan(timer: Timer) -> None:
        assert timer.run_id is not None
        lifecycle.expire(services, timer.run_id)  # a second firing finds it expired already and does nothing

    def update_stakeholders(timer: Timer) -> None:
        assert timer.run_id is not None
        record = services.store.get_run(timer.run_id)
        if record.status != RunStatus.RUNNING:
            Timers(services.store).cancel(timer.key)  # the run ended; its last update was already sent
            return
        timeout = services.config.settings.bot.heartbeat_timeout
        if shown_status(record, heartbeat_timeout=timeout) is RunStatus.INTERRUPTED:
            return  # nothing is happening: "still working on it" would not be true; resume brings them back
        for notice in stakeholder_notices(services, record, phase="running", dedupe_key=timer.occurrence):
            outbox.enqueue(notice)

    def remind(timer: Timer) -> None:
        assert timer.run_id is not None
        record = services.store.get_run(timer.run_id)
        channel = record.meta.get("channel")
        earlier = tuple(timer.payload.get("earlier", ()))
        open_items = [i for i in services.store.checklist(timer.run_id) if i.phase in earlier and not i.done_at]
        if not channel or not open_items:
            return
        contacts = services.config.settings.contacts
        database_used = Plan.from_dict(record.plan).database.action != "none"
        who = [contacts[k] for k in ("oncall", "database") if k in contacts and (k != "database" or database_used)]
        outbox.enqueue(
            Notice(
                channel=channel,
                kind=NoticeKind.REMINDER,
                payload={
                    "phase_title": PHASE_TITLES[timer.payload.get("phase", "short_term")],
                    "open_items": [checklist_row(i) for i in open_items],
                    "contacts": who,
                },
                run_id=timer.run_id,
                thread_key=run_key(timer.run_id),
                dedupe_key=timer.occurrence,
            )
        )

    def offer_break_glass(timer: Timer) -> None:
        break_glass.offer_break_glass(services, timer)  # approved, cancelled or expired meanwhile: nothing to offer

    def remind_review(timer: Timer) -> None:
        break_glass.remind_review(services, timer)  # signed off meanwhile: the timer cancels itself

    return {
        TimerKind.PLAN_EXPIRY: expire_plan,
        TimerKind.STAKEHOLDER_UPDATE: update_stakeholders,
        TimerKind.CHECKLIST_REMINDER: remind,
        TimerKind.BREAK_GLASS_OPEN: offer_break_glass,
        TimerKind.BREAK_GLASS_REVIEW: remind_review,
        TimerKind.DRILL: drill_timer_handler(services, drills),  # once per occurrence; the restore on `drills`
    }


def announce_interrupted_runs(services: Services) -> int:
    """Say in each interrupted run's thread where it stopped, with Retry / Abort: once per run and heartbeat."""
    store, outbox = services.store, Outbox(services.store)
    timeout = services.config.settings.bot.heartbeat_timeout
    posted = 0
    for record in store.list_runs(limit=50, statuses=("running",)):
        if shown_status(record, heartbeat_timeout=timeout) is not RunStatus.INTERRUPTED:
            continue
        if not record.meta.get("channel"):
            continue
        steps = store.steps(record.id)
        stuck = next((s for s in steps if s.status == "running"), None)
        title = STEP_BY_NAME[stuck.name].title if stuck else "the run"
        event = StepFailed(
            run_id=record.id,
            step=stuck.name if stuck else "",
            title=title,
            error="interrupted: the bot stopped while this step was running, so its outcome is unknown",
            hint="Retry runs the step again (every step is safe to repeat; a half-done restore is cleaned up "
            "first); Abort ends the run and frees the lock",
            duration_s=0.0,
            state=state_of(steps, Plan.from_dict(record.plan)),
            next_moves=("retry", "skip", "abort")
            if stuck and STEP_BY_NAME[stuck.name].skippable
            else ("retry", "abort"),
        )
        notice = failure_notice(record, event, dedupe_key=f"interrupted:{record.id}:{record.heartbeat_at}")
        if notice is not None and outbox.enqueue(notice) is not None:
            header = header_notice(record, status="interrupted", detail=f"stopped during {title}")
            if header is not None:
                outbox.enqueue(header)
            posted += 1
    return posted
