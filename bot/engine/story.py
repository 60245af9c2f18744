"""What a run tells its Slack channel, as notices in the outbox: never a Slack call from here.

`RunStory` is a reporter: the rollback's events become notices (the plan header, one message per
step updated in place, the failure with next moves, the result, the checklist, the way back for
flags) and stakeholder updates. Writing a row is all the rollback waits for; the Slack side renders
and sends later (handlers/outbox_render.py, handlers/outbox_sender.py). The CLI uses the same story
with `--channel`, so a run made while Slack is down reaches the channel when Slack is back.

Message keys: `run:<id>` is the plan message (later its status header); replies go in its thread;
`run:<id>:step:<name>`, `run:<id>:checklist` and `run:<id>:undo-flags` are updated in place.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from bot.engine.events import (
    Event,
    RunFinished,
    RunStarted,
    StepFailed,
    StepFinished,
    StepProgress,
    StepStarted,
    StepStopped,
    event_payload,
)
from bot.engine.outcomes import FlagsOutcome
from bot.engine.plan import Plan
from bot.outbox import Notice, Outbox
from bot.progress import Estimate
from bot.store import ChecklistRecord, RunRecord, iso, now
from bot.timers import TimerKind, Timers

if TYPE_CHECKING:
    from bot.services import Services

UPDATE_EVERY_S = 1.0  # Slack's chat.update tier allows about one update per second per message


class NoticeKind(StrEnum):
    PLAN = "plan"
    HEADER = "header"
    STEP = "step"
    FAILURE = "failure"
    FINISHED = "finished"
    CHECKLIST = "checklist"
    UNDO_FLAGS = "undo_flags"
    STAKEHOLDER = "stakeholder"
    REMINDER = "reminder"
    SNAPSHOT = "snapshot"
    # bot/engine/break_glass.py and handover.py
    BREAK_GLASS_OPEN = "break_glass_open"  # in the thread: the requester may now run it alone
    BREAK_GLASS = "break_glass"  # loud, top level: in the run's channel and the stakeholder channels
    REVIEW_REMINDER = "break_glass_review"  # in the thread, until an approver signs the review off
    HANDOVER = "handover"  # in the thread: taken over, lock broken, review signed off


def run_key(run_id: str) -> str:
    return f"run:{run_id}"


def plan_notice(record: RunRecord, plan: Plan, *, channel: str, expires_at: datetime) -> Notice:
    return Notice(
        channel=channel,
        kind=NoticeKind.PLAN,
        payload={"run_id": record.id, "plan": plan.to_dict(), "expires_at": iso(expires_at), "at": iso()},
        run_id=record.id,
        message_key=run_key(record.id),
    )


def header_notice(record: RunRecord, *, status: str, detail: str = "") -> Notice | None:
    """The plan message turned into a status header (no buttons), or None if the run has no channel."""
    channel = record.meta.get("channel")
    if not channel:
        return None
    return Notice(
        channel=channel,
        kind=NoticeKind.HEADER,
        payload={
            "run_id": record.id,
            "plan": record.plan,
            "status": status,
            "approved_by": record.approved_by,
            "requested_by": record.requested_by,
            "detail": detail,
            "break_glass": record.meta.get("break_glass"),  # {"by", "justification", "at"}: break_glass
            "taken_over": record.meta.get("taken_over"),  # {"by", "from", "reason", "at"}: handover
        },
        run_id=record.id,
        message_key=run_key(record.id),
    )


def _in_thread(record: RunRecord, kind: NoticeKind, payload: dict[str, Any], **where: str | None) -> Notice | None:
    """A notice in the run's thread, or None when the run has no channel (a terminal run without --channel)."""
    channel = record.meta.get("channel")
    if not channel:
        return None
    return Notice(channel=channel, kind=kind, payload=payload, run_id=record.id, thread_key=run_key(record.id), **where)


def checklist_notice(record: RunRecord, items: Sequence[ChecklistRecord]) -> Notice | None:
    payload = {"run_id": record.id, "items": [checklist_row(i) for i in items], "at": iso()}
    return _in_thread(record, NoticeKind.CHECKLIST, payload, message_key=f"{run_key(record.id)}:checklist")


def undo_flags_notice(record: RunRecord, *, turned_off: list[str], undone_by: str | None = None) -> Notice | None:
    payload = {"run_id": record.id, "plan_hash": record.plan_hash, "turned_off": turned_off, "undone_by": undone_by}
    return _in_thread(record, NoticeKind.UNDO_FLAGS, payload, message_key=f"{run_key(record.id)}:undo-flags")


def failure_notice(record: RunRecord, event: StepFailed, *, dedupe_key: str | None = None) -> Notice | None:
    payload = {"run_id": record.id, "plan_hash": record.plan_hash, "event": event_payload(event)}
    return _in_thread(record, NoticeKind.FAILURE, payload, dedupe_key=dedupe_key)


def stakeholder_notices(
    services: Services, record: RunRecord, *, phase: str, dedupe_key: str | None = None
) -> list[Notice]:
    settings = services.config.settings.bot
    plan = Plan.from_dict(record.plan)
    payload = {
        "env": record.env,
        "phase": phase,
        "at": iso(),
        "started_at": iso(record.started_at) if record.started_at else None,
        "version_from": iso(plan.target.committed_at) if plan.target.committed_at else None,
        "data_as_of": plan.database.restore_point_at,
        "next_update_in_s": settings.stakeholder_update_every.total_seconds(),
        "dry_run": plan.dry_run,
    }
    return [
        Notice(
            channel=channel,
            kind=NoticeKind.STAKEHOLDER,
            payload=payload,
            run_id=record.id,
            dedupe_key=f"{dedupe_key}:{channel}" if dedupe_key else None,
        )
        for channel in settings.stakeholder_channels
    ]


def checklist_row(item: ChecklistRecord) -> dict[str, Any]:
    return {
        "run_id": item.run_id,
        "item_id": item.item_id,
        "phase": item.phase,
        "position": item.position,
        "text": item.text,
        "done_by": item.done_by,
        "done_at": iso(item.done_at) if item.done_at else None,
    }


def stakeholder_timer_key(run_id: str) -> str:
    return f"{run_key(run_id)}:stakeholders"


class RunStory:
    """A reporter that writes the run's story to the outbox (and its timed parts to the timers)."""

    def __init__(self, services: Services, *, run_id: str) -> None:
        record = services.store.get_run(run_id)
        self.services = services
        self.outbox = Outbox(services.store)
        self.timers = Timers(services.store)
        self.run_id = run_id
        self.channel: str = record.meta["channel"]
        self._titles: dict[str, str] = {}
        self._last_update: dict[str, float] = {}
        self._started: dict[str, float] = {}  # when each step started (monotonic), for the time left
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._header("running")
            self._stakeholders("started")
            self._keep_stakeholders_posted()
        elif isinstance(event, StepStarted):
            self._titles[event.step] = event.title
            self._started[event.step] = time.monotonic()
            self._step(event.step, title=event.title, status="running")
        elif isinstance(event, StepProgress):
            self._progress(event)
        elif isinstance(event, StepFinished):
            self._step(
                event.step,
                title=event.title,
                status=event.status,
                summary=event.summary,
                duration_s=event.duration_s,
                details=event.details,
            )
            if event.status == "ok" and event.step in ("code", "database", "health"):
                self._stakeholders(f"step:{event.step}")
        elif isinstance(event, StepStopped):
            self._step(event.step, title=event.title, status="pending", summary=event.reason)
        elif isinstance(event, StepFailed):
            self._step(event.step, title=event.title, status="failed", summary=event.error, duration_s=event.duration_s)
            self._enqueue(failure_notice(self._record(), event))
            self._header("failed", detail=event.error)
            self.timers.cancel(stakeholder_timer_key(self.run_id))
            self._stakeholders("failed")
        elif isinstance(event, RunFinished):
            self._finished(event)

    def _progress(self, event: StepProgress) -> None:
        """The step's message with what it is doing and, when measured, done/total/unit and the time left.

        The time left is estimated here, when it happens (bot.progress, as the terminal does): the
        message may be rendered minutes later, after a Slack outage.
        """
        moment = time.monotonic()
        with self._lock:
            last = self._last_update.get(event.step)
            if last is not None and moment - last < UPDATE_EVERY_S:
                return  # the final state always comes; interim ones within a second add nothing
            self._last_update[event.step] = moment
            started = self._started.setdefault(event.step, moment)
        measure: dict[str, Any] = {}
        if event.done is not None:
            left = Estimate(started=started, at=moment, done=event.done, total=event.total).left_s()
            measure = {
                "done": event.done,
                "total": event.total,
                "unit": event.unit,
                "left_s": round(left, 1) if left is not None else None,
            }
        title = self._titles.get(event.step, event.step)
        self._step(event.step, title=title, status="running", progress=event.message, **measure)

    def _finished(self, event: RunFinished) -> None:
        self.timers.cancel(stakeholder_timer_key(self.run_id))
        self._header(event.outcome)
        self._enqueue(
            Notice(
                channel=self.channel,
                kind=NoticeKind.FINISHED,
                payload={"event": event_payload(event)},
                run_id=self.run_id,
                thread_key=run_key(self.run_id),
            )
        )
        record = self._record()
        if event.checklist:
            self._enqueue(checklist_notice(record, self.services.store.checklist(self.run_id)))
            self._schedule_reminders()
        flags = next((s for s in self.services.store.steps(self.run_id) if s.name == "flags"), None)
        turned_off = FlagsOutcome.from_details(flags.details).turned_off if flags and flags.status == "ok" else []
        if turned_off:
            self._enqueue(undo_flags_notice(record, turned_off=turned_off))
        self._stakeholders({"succeeded": "finished", "unhealthy": "unhealthy"}.get(event.outcome, "aborted"))

    def _record(self) -> RunRecord:
        return self.services.store.get_run(self.run_id)

    def _enqueue(self, notice: Notice | None) -> None:
        if notice is not None:
            self.outbox.enqueue(notice)

    def _header(self, status: str, *, detail: str = "") -> None:
        self._enqueue(header_notice(self._record(), status=status, detail=detail))

    def _step(self, step: str, *, title: str, status: str, **rest: Any) -> None:
        self._enqueue(
            Notice(
                channel=self.channel,
                kind=NoticeKind.STEP,
                payload={"title": title, "status": status, **rest},
                run_id=self.run_id,
                message_key=f"{run_key(self.run_id)}:step:{step}",
                thread_key=run_key(self.run_id),
            )
        )

    def _stakeholders(self, phase: str) -> None:
        for notice in stakeholder_notices(self.services, self._record(), phase=phase):
            self.outbox.enqueue(notice)

    def _keep_stakeholders_posted(self) -> None:
        settings = self.services.config.settings.bot
        if settings.stakeholder_channels:
            every = settings.stakeholder_update_every
            self.timers.schedule(
                stakeholder_timer_key(self.run_id),
                kind=TimerKind.STAKEHOLDER_UPDATE,
                due_at=now() + every,
                run_id=self.run_id,
                every=every,
            )

    def _schedule_reminders(self) -> None:
        """When each later phase is due, remind the contacts of the items of earlier phases still open."""
        checklist = self.services.config.settings.bot.checklist
        finished = now()
        phases: tuple[tuple[str, timedelta, tuple[str, ...]], ...] = (
            ("short_term", checklist.short_term_after, ("immediate",)),
            ("medium_term", checklist.medium_term_after, ("immediate", "short_term")),
        )
        for phase, after, earlier in phases:
            self.timers.schedule(
                f"{run_key(self.run_id)}:remind:{phase}",
                kind=TimerKind.CHECKLIST_REMINDER,
                due_at=finished + after,
                run_id=self.run_id,
                payload={"phase": phase, "earlier": list(earlier)},
                replace=False,
            )


def snapshot_notice(channel: str, *, env: str, summary: str) -> Notice:
    """A restore point was recorded (told to a channel when `snapshot --channel` asks for it)."""
    return Notice(channel=channel, kind=NoticeKind.SNAPSHOT, payload={"env": env, "summary": summary, "at": iso()})
