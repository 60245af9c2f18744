"""Break-glass: the requester runs their own rollback alone when no approver answers in time.

Where an environment lists people in `break_glass`, such a person who asked for a rollback may run it
alone, with a typed justification, once no approver has confirmed it for `break_glass_after`. It is
never available where `break_glass` is empty, before that wait, to anyone else, or on a dry run. The bot
then:
- says so loudly, top level, in the run's channel and in every stakeholder channel, mentioning the contacts;
- puts "review this break-glass rollback" first on the run's checklist, which only an approver (never
  the one who broke the glass) can sign off;
- reminds that review in the run's thread every `break_glass_remind_every` until it is signed off.

Two durable timers carry it (bot/engine/timed.py): BREAK_GLASS_OPEN offers the button on the waiting
plan; BREAK_GLASS_REVIEW is the repeated reminder. Both fire once across replicas. Who may is decided by
`lifecycle.authorize` (Act.BREAK_GLASS, Act.SIGN_OFF) through bot.engine.approval.check_break_glass.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from bot.engine import lifecycle
from bot.engine.approval import MIN_JUSTIFICATION, check_reason
from bot.engine.handover import enqueue, thread_note
from bot.engine.plan import Plan
from bot.engine.run_status import Act, Actor, RunStatus
from bot.engine.story import NoticeKind, header_notice, plan_notice, run_key
from bot.errors import InvalidState, NotAllowed, PlanChanged, PlanExpired
from bot.format import duration
from bot.outbox import Notice
from bot.store import RunRecord, iso, now
from bot.timers import Timer, TimerKind, Timers

if TYPE_CHECKING:
    from bot.services import Services

REVIEW_ITEM = "break-glass-review"  # the checklist item an approver signs off


def break_glass_timer_key(run_id: str) -> str:
    return f"{run_key(run_id)}:break-glass"


def review_timer_key(run_id: str) -> str:
    return f"{run_key(run_id)}:break-glass-review"


def _contacts(services: Services) -> list[str]:
    return list(dict.fromkeys(services.config.settings.contacts.values()))


def schedule_break_glass(services: Services, record: RunRecord) -> None:
    """A plan whose requester may break glass: offer it when `break_glass_after` has passed unanswered."""
    settings = services.config.environment(record.env)
    if record.dry_run or record.requested_by not in settings.break_glass:
        return
    Timers(services.store).schedule(
        break_glass_timer_key(record.id),
        kind=TimerKind.BREAK_GLASS_OPEN,
        due_at=record.created_at + settings.break_glass_after,
        run_id=record.id,
        replace=False,
    )


def offer_break_glass(services: Services, timer: Timer) -> bool:
    """The timer: the plan still waits, so its message gains a Break glass button and the thread says so."""
    assert timer.run_id is not None
    store = services.store
    record = store.get_run(timer.run_id)
    channel = record.meta.get("channel")
    expires = record.created_at + services.config.settings.bot.plan_expires_after
    if record.status != RunStatus.PLANNED or not channel or now() >= expires:
        return False
    settings = services.config.environment(record.env)
    plan = plan_notice(record, Plan.from_dict(record.plan), channel=channel, expires_at=expires)
    offered = {
        "run_id": record.id,
        "env": record.env,
        "requested_by": record.requested_by,
        "approvers": settings.approvers,
        "after_s": settings.break_glass_after.total_seconds(),
        "expires_at": iso(expires),
    }
    enqueue(
        services,
        replace(plan, payload={**plan.payload, "break_glass_open": True}),
        Notice(
            channel=channel,
            kind=NoticeKind.BREAK_GLASS_OPEN,
            payload=offered,
            run_id=record.id,
            thread_key=run_key(record.id),
            dedupe_key=timer.occurrence,
        ),
    )
    current = store.get_run(record.id)
    if current.status != RunStatus.PLANNED:  # approved or cancelled meanwhile: no buttons on its message again
        enqueue(services, header_notice(current, status=current.status, detail=current.error or ""))
    return True


def check_can_break_glass(services: Services, run_id: str, *, actor: Actor, plan_hash: str) -> RunRecord:
    """Raise why `actor` may not run this exact plan alone now; an expired plan is expired on the way."""
    record = services.store.get_run(run_id)
    if plan_hash != record.plan_hash:
        raise PlanChanged("this button belongs to an older version of the plan", hint="use the newest plan message")
    if record.status != RunStatus.PLANNED:
        by = f" by <@{record.approved_by}>" if record.approved_by else ""
        raise NotAllowed(f"this rollback is already {record.status}{by}")
    if now() - record.created_at > services.config.settings.bot.plan_expires_after:
        lifecycle.expire(services, run_id)
        raise PlanExpired("this plan has expired", hint=f"ask for a fresh plan with /rollback {record.env}")
    lifecycle.authorize(services, record, actor=actor, act=Act.BREAK_GLASS)
    return record


def break_glass(services: Services, run_id: str, *, actor: Actor, plan_hash: str, justification: str) -> RunRecord:
    """planned → approved by the requester alone; the caller then starts it (`lifecycle.start`).

    The justification goes into the audit trail, the loud announcements and the review item.
    """
    record = check_can_break_glass(services, run_id, actor=actor, plan_hash=plan_hash)
    words = check_reason(justification, what="justification", minimum=MIN_JUSTIFICATION)
    store = services.store
    if not store.transition(run_id, from_=[RunStatus.PLANNED.value], to=RunStatus.APPROVED.value, approved_by=actor.id):
        current = store.get_run(run_id)
        by = f" by <@{current.approved_by}>" if current.approved_by else ""
        raise InvalidState(f"this rollback is already {current.status}{by}")
    settings = services.config.environment(record.env)
    waited = duration(now() - record.created_at, rough=True)
    store.record(
        actor=actor.id,
        action="run.break_glass",
        run_id=run_id,
        env=record.env,
        detail=f"approved alone: no approver confirmed in {waited}; justification: {words}",
    )
    at = now()
    store.merge_meta(run_id, {"break_glass": {"by": actor.id, "justification": words, "at": iso(at)}})
    short = words if len(words) <= 300 else words[:299] + "…"
    store.add_checklist_item(
        run_id,
        item_id=REVIEW_ITEM,
        phase="immediate",
        text=f"Review this break-glass rollback, run without an approver (justification: “{short}”): "
        "an approver other than the person who broke the glass signs it off",
        position=-1,
    )
    timers = Timers(store)
    timers.cancel(break_glass_timer_key(run_id))
    every = settings.break_glass_remind_every
    timers.schedule(
        review_timer_key(run_id), kind=TimerKind.BREAK_GLASS_REVIEW, due_at=at + every, run_id=run_id, every=every
    )
    current = store.get_run(run_id)
    enqueue(services, *break_glass_notices(services, current))
    return current


def break_glass_notices(services: Services, record: RunRecord) -> list[Notice]:
    """Loud, top level: in the run's channel and every stakeholder channel, the contacts mentioned."""
    settings = services.config.environment(record.env)
    glass = record.meta.get("break_glass") or {}
    payload = {
        "run_id": record.id,
        "env": record.env,
        "by": glass.get("by"),
        "justification": glass.get("justification", ""),
        "after_s": settings.break_glass_after.total_seconds(),
        "remind_every_s": settings.break_glass_remind_every.total_seconds(),
        "contacts": _contacts(services),
        "approvers": settings.approvers,
        "at": glass.get("at") or iso(),
    }
    team = record.meta.get("channel")
    audiences = ([(team, "team")] if team else []) + [
        (channel, "stakeholders") for channel in services.config.settings.bot.stakeholder_channels if channel != team
    ]
    return [
        Notice(
            channel=channel,
            kind=NoticeKind.BREAK_GLASS,
            payload={**payload, "audience": audience},
            run_id=record.id,
            dedupe_key=f"break-glass:{record.id}:{channel}",
        )
        for channel, audience in audiences
    ]


def remind_review(services: Services, timer: Timer) -> None:
    """The periodic timer: until an approver signs the review off, say so again in the run's thread."""
    assert timer.run_id is not None
    store = services.store
    record = store.get_run(timer.run_id)
    item = next((i for i in store.checklist(record.id) if i.item_id == REVIEW_ITEM), None)
    if item is None or item.done_at is not None:
        Timers(store).cancel(timer.key)
        return
    channel = record.meta.get("channel")
    if not channel:
        return
    glass = record.meta.get("break_glass") or {}
    settings = services.config.environment(record.env)
    payload = {
        "run_id": record.id,
        "env": record.env,
        "item_id": REVIEW_ITEM,
        "by": glass.get("by"),
        "justification": glass.get("justification", ""),
        "since": glass.get("at"),
        "status": record.status,
        "approvers": settings.approvers,
        "contacts": _contacts(services),
        "at": iso(),
    }
    enqueue(
        services,
        Notice(
            channel=channel,
            kind=NoticeKind.REVIEW_REMINDER,
            payload=payload,
            run_id=record.id,
            thread_key=run_key(record.id),
            dedupe_key=timer.occurrence,
        ),
    )


def check_can_tick(services: Services, run_id: str, item_id: str, *, actor: Actor) -> RunRecord:
    """Anyone may tick a checklist item, except the break-glass review: an approver, not who broke the glass."""
    record = services.store.get_run(run_id)
    if item_id == REVIEW_ITEM:
        lifecycle.authorize(services, record, actor=actor, act=Act.SIGN_OFF)
    return record


def complete_checklist_item(services: Services, run_id: str, item_id: str, *, actor: Actor) -> bool:
    """Tick an item (False if already done); the break-glass review is signed off, audited, and stops reminding."""
    if item_id != REVIEW_ITEM:
        return lifecycle.complete_checklist_item(services, run_id, item_id, actor=actor)
    record = check_can_tick(services, run_id, item_id, actor=actor)
    if not services.store.mark_done(run_id, item_id, by=actor.id):
        return False
    glass = record.meta.get("break_glass") or {}
    services.store.record(
        actor=actor.id,
        action="break_glass.reviewed",
        run_id=run_id,
        env=record.env,
        detail=f"signed off the review of the break-glass rollback by {glass.get('by', '?')}",
    )
    Timers(services.store).cancel(review_timer_key(run_id))
    enqueue(services, thread_note(record, "review_signed", by=actor.id, broke_glass=glass.get("by")))
    return True
