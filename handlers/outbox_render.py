"""Notices from the outbox → (fallback text, Block Kit). Pure: a notice's payload in, a message out.

A notice is rendered when it is sent, which may be minutes after it happened (Slack was down): the
times shown are the payload's, never the sender's clock.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from bot.engine.drill_story import DRILL_FAILED
from bot.engine.events import failed_from_payload, finished_from_payload
from bot.engine.plan import Plan
from bot.engine.rehearsal import REHEARSAL_HEADER, REHEARSAL_RESULT
from bot.engine.story import NoticeKind
from bot.store import ChecklistRecord, now, parse_iso
from handlers import blocks
from handlers import blocks_handover as handover
from handlers import blocks_rehearsal as rehearsal
from handlers.blocks_drill import render_drill_failed
from handlers.blocks_kit import Block

Rendered = tuple[str, list[Block]]


def _at(payload: dict[str, Any], key: str = "at") -> datetime:
    return parse_iso(payload.get(key)) or now()


def _items(rows: list[dict[str, Any]]) -> list[ChecklistRecord]:
    return [ChecklistRecord(**{**row, "done_at": parse_iso(row.get("done_at"))}) for row in rows]


def _plan(p: dict[str, Any]) -> Rendered:
    plan = Plan.from_dict(p["plan"])
    expires = parse_iso(p["expires_at"]) or now()
    shown = blocks.plan_blocks(run_id=p["run_id"], plan=plan, now=_at(p), expires_at=expires)
    if p.get("break_glass_open"):  # no approver answered in time (bot.engine.break_glass)
        shown = handover.with_break_glass(shown, run_id=p["run_id"], plan_hash=plan.hash, requester=plan.requested_by)
    return blocks.plan_text_fallback(plan), shown


def _header(p: dict[str, Any]) -> Rendered:
    plan = Plan.from_dict(p["plan"])
    shown = blocks.status_header_blocks(
        run_id=p["run_id"],
        plan=plan,
        status=p["status"],
        approved_by=p.get("approved_by"),
        requested_by=p["requested_by"],
        detail=p.get("detail", ""),
    )
    shown = handover.header_notes(shown, break_glass=p.get("break_glass"), taken_over=p.get("taken_over"))
    if p["status"] == "refused" and not p.get("lock_broken"):  # refused only because another run held the lock
        shown = handover.with_break_lock(shown, run_id=p["run_id"], plan_hash=plan.hash)
    return f"Rollback of {plan.env}: {p['status']}", shown


def _step(p: dict[str, Any]) -> Rendered:
    icon = {"running": "⏳", "ok": "✅", "skipped": "⏭", "failed": "❌"}.get(p["status"], "•")
    text = f"{icon} {p['title']}" + (f": {p['summary']}" if p.get("summary") else "")
    return text, blocks.step_blocks(
        title=p["title"],
        status=p["status"],
        summary=p.get("summary", ""),
        duration_s=p.get("duration_s"),
        progress=p.get("progress", ""),
        details=p.get("details"),
        done=p.get("done"),
        total=p.get("total"),
        unit=p.get("unit"),
        left_s=p.get("left_s"),
    )


def _failure(p: dict[str, Any]) -> Rendered:
    event = failed_from_payload(p["event"])
    shown = blocks.failure_blocks(run_id=p["run_id"], plan_hash=p["plan_hash"], event=event)
    if event.next_moves:  # the run waits for a decision: if its requester is gone, an approver takes it over
        shown = handover.with_take_over(shown, run_id=p["run_id"], plan_hash=p["plan_hash"])
    return f"❌ {event.title} failed: {event.error}", shown


def _finished(p: dict[str, Any]) -> Rendered:
    event = finished_from_payload(p["event"])
    return f"Rollback {event.outcome}", blocks.finished_blocks(event=event)


def _checklist(p: dict[str, Any]) -> Rendered:
    return "Post-rollback checklist", blocks.checklist_blocks(run_id=p["run_id"], items=_items(p["items"]), now=_at(p))


def _undo_flags(p: dict[str, Any]) -> Rendered:
    turned_off = list(p["turned_off"])
    text = "Flags put back" if p.get("undone_by") else f"Flags turned off: {', '.join(turned_off)}"
    return text, blocks.undo_flags_blocks(
        run_id=p["run_id"], plan_hash=p["plan_hash"], turned_off=turned_off, undone_by=p.get("undone_by")
    )


def _stakeholder(p: dict[str, Any]) -> Rendered:
    at = _at(p)
    text = blocks.stakeholder_text(
        env=p["env"],
        phase=p["phase"],
        now=at,
        started_at=parse_iso(p.get("started_at")),
        version_from=parse_iso(p.get("version_from")),
        data_as_of=parse_iso(p.get("data_as_of")),
        next_update_in=timedelta(seconds=p.get("next_update_in_s") or 600),
        dry_run=bool(p.get("dry_run")),
    )
    return text, blocks.stakeholder_update_blocks(env=p["env"], phase=p["phase"], text=text, now=at)


def _reminder(p: dict[str, Any]) -> Rendered:
    items = _items(p["open_items"])
    return f"Reminder: {len(items)} checklist item(s) still open", blocks.reminder_blocks(
        phase_title=p["phase_title"], open_items=items, contacts=p.get("contacts", [])
    )


def _snapshot(p: dict[str, Any]) -> Rendered:
    text = f"📸 {p['summary']}"
    return text, blocks.ephemeral_text_blocks(text)


def _break_glass_open(p: dict[str, Any]) -> Rendered:
    shown = handover.break_glass_open_blocks(
        requester=p["requested_by"],
        approvers=p.get("approvers", []),
        after=timedelta(seconds=p.get("after_s") or 0),
        expires_at=_at(p, "expires_at"),
    )
    return "No approver has confirmed the plan: break-glass is open", shown


def _break_glass(p: dict[str, Any]) -> Rendered:
    shown = handover.break_glass_blocks(
        audience=p.get("audience", "team"),
        env=p["env"],
        by=p.get("by"),
        justification=p.get("justification", ""),
        after=timedelta(seconds=p.get("after_s") or 0),
        remind_every=timedelta(seconds=p.get("remind_every_s") or 0),
        contacts=p.get("contacts", []),
        run_id=p["run_id"],
        at=_at(p),
    )
    return f"🚨 Break glass: rollback of {p['env']} without an approver", shown


def _review_reminder(p: dict[str, Any]) -> Rendered:
    shown = handover.review_reminder_blocks(
        run_id=p["run_id"],
        item_id=p["item_id"],
        env=p["env"],
        by=p.get("by"),
        justification=p.get("justification", ""),
        since=parse_iso(p.get("since")),
        approvers=p.get("approvers", []),
        contacts=p.get("contacts", []),
    )
    return f"🔔 The break-glass rollback of {p['env']} still needs an approver's review", shown


RENDERERS: dict[str, Callable[[dict[str, Any]], Rendered]] = {
    NoticeKind.PLAN: _plan,
    NoticeKind.HEADER: _header,
    NoticeKind.STEP: _step,
    NoticeKind.FAILURE: _failure,
    NoticeKind.FINISHED: _finished,
    NoticeKind.CHECKLIST: _checklist,
    NoticeKind.UNDO_FLAGS: _undo_flags,
    NoticeKind.STAKEHOLDER: _stakeholder,
    NoticeKind.REMINDER: _reminder,
    NoticeKind.SNAPSHOT: _snapshot,
    NoticeKind.BREAK_GLASS_OPEN: _break_glass_open,
    NoticeKind.BREAK_GLASS: _break_glass,
    NoticeKind.REVIEW_REMINDER: _review_reminder,
    NoticeKind.HANDOVER: handover.handover_note_blocks,
    REHEARSAL_HEADER: lambda p: (rehearsal.rehearsal_text(p), rehearsal.rehearsal_header_blocks(p)),  # rehearsal.py
    REHEARSAL_RESULT: lambda p: (rehearsal.rehearsal_text(p), rehearsal.rehearsal_result_blocks(p)),
    DRILL_FAILED: render_drill_failed,  # bot/engine/drill_story.py
}


def render(kind: str, payload: dict[str, Any]) -> Rendered:
    return RENDERERS[kind](payload)
