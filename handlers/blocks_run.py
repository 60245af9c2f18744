"""The run's thread: one message per step (updated in place), the failure message, health, checklist, end."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from bot import format as fmt
from bot.backends.base import HealthResult
from bot.engine.checklist import PHASE_TITLES, PHASES
from bot.engine.events import RunFinished, StepFailed
from bot.progress import slack_line
from bot.redact import redact
from bot.store import ChecklistRecord
from handlers import ids
from handlers.blocks_kit import (
    MAX_ACTIONS_ELEMENTS,
    MAX_FIELD_TEXT,
    MAX_MESSAGE_BLOCKS,
    MAX_SECTION_TEXT,
    Block,
    actions,
    button,
    cap_blocks,
    confirm_dialog,
    context,
    cut,
    esc,
    fields_section,
    group_lines,
    header,
    hhmm,
    join_fitting,
    mention,
    one_line,
    section,
)

STEP_ICONS = {"running": "⏳", "ok": "✅", "skipped": "⏭", "failed": "❌", "pending": "·"}
STEP_WORDS = {
    "running": "running",
    "ok": "done",
    "skipped": "skipped",
    "failed": "failed",
    "pending": "waiting",
}
STATE_ORDER = ("code", "database", "flags", "backup")
STATE_LABELS = {"code": "Code", "database": "Database", "flags": "Flags", "backup": "Backup"}
MOVES = {
    # move → (button text, style, what it means for the person about to click it)
    "retry": ("Retry", "primary", ""),
    "skip": (
        "Skip this step",
        None,
        "The rollback goes on without this step. What it should have done stays undone.",
    ),
    "abort": (
        "Abort",
        "danger",
        "Nothing more runs. What already ran stays as it is (see Where things stand).",
    ),
}
MOVE_ACTIONS = {"retry": ids.Action.RETRY, "skip": ids.Action.SKIP, "abort": ids.Action.ABORT}
URL_CHARS = 60
_DETAIL_SKIP = {"checks", "items"}  # rendered elsewhere (health table) or not worth a line (item ids)


# --- health --------------------------------------------------------------------------------------------


def _health_row(row: Mapping[str, Any]) -> str:
    healthy = bool(row.get("healthy"))
    status = row.get("status")
    expected = row.get("expected")
    attempts = row.get("attempts")
    latency = row.get("latency_ms")
    parts = [
        "✅" if healthy else "❌",
        cut(redact(str(row.get("url", "?"))), URL_CHARS),
        f"{status if status is not None else '—'}/{expected if expected is not None else '?'}",
        f"{attempts} {'try' if attempts == 1 else 'tries'}",
        f"{latency:.0f} ms" if isinstance(latency, int | float) else "— ms",
    ]
    line = "  ".join(parts)
    error = row.get("error")
    if error and not healthy:
        line += f"\n    {cut(redact(one_line(str(error))), 200)}"
    return line


def _health_table(rows: Sequence[Mapping[str, Any]]) -> list[Block]:
    if not rows:
        return [section("*Health checks*: none configured")]
    healthy = sum(bool(row.get("healthy")) for row in rows)
    title = f"*Health checks*: {healthy}/{len(rows)} healthy (status got/expected, tries, last latency)"
    body = join_fitting(
        [esc(_health_row(row)).replace("```", "`\u200b``") for row in rows],
        limit=MAX_SECTION_TEXT - len(title) - 8,
    )
    return [section(f"{title}\n```{body}```")]


def health_rows(results: Sequence[HealthResult]) -> list[dict[str, Any]]:
    """The same row shape the engine's health step records in its details ("checks")."""
    return [
        {
            "url": r.url,
            "healthy": r.healthy,
            "status": r.last_status,
            "expected": r.expected_status,
            "attempts": r.attempts,
            "latency_ms": r.latency_ms,
            "error": r.last_error,
        }
        for r in results
    ]


def health_blocks(results: Sequence[HealthResult]) -> list[Block]:
    return _health_table(health_rows(results))


# --- one step ------------------------------------------------------------------------------------------


def _detail_lines(details: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Scalars become fields ("Previous: app_20240101"); lists of strings become bullet lines."""
    fields: list[str] = []
    bullets: list[str] = []
    for key, value in details.items():
        if key in _DETAIL_SKIP or value in (None, "", [], {}):
            continue
        label = esc(str(key).replace("_", " ").capitalize())
        if isinstance(value, str | int | float | bool):
            fields.append(cut(f"*{label}*\n{esc(value)}", MAX_FIELD_TEXT))
        elif isinstance(value, list | tuple) and all(isinstance(v, str | int | float) for v in value):
            bullets += [f"*{label}*:"] + [f"• {esc(one_line(str(v)))}" for v in value]
    return fields, bullets


def step_blocks(
    *,
    title: str,
    status: str,
    summary: str,
    duration_s: float | None,
    progress: str = "",
    details: dict[str, Any] | None = None,
    done: float | None = None,
    total: float | None = None,
    unit: str | None = None,
    left_s: float | None = None,
) -> list[Block]:
    """One step's message in the thread: ⏳ while it runs, then ✅ / ⏭ / ❌ with what it did.

    While it runs: what it is doing (`progress`) and, when the backend measures it, a compact bar
    ("▰▰▰▰▱▱▱▱▱▱ 42% · 120/268 objects · ~12s left"; `left_s` estimated when the measure was taken).
    """
    icon = STEP_ICONS.get(status, "•")
    took = f" · {fmt.duration(duration_s)}" if duration_s is not None else ""
    line = f"{icon} *{esc(one_line(title))}*: {STEP_WORDS.get(status, esc(status))}{took}"
    if summary:
        line += f"\n{esc(summary)}"
    blocks: list[Block] = [section(line)]
    if status == "running":
        bar = slack_line(done, total, unit, left_s=left_s) if done is not None else ""
        said = [text for text in (esc(bar), f"_{esc(one_line(progress))}_" if progress else "") if text]
        if said:
            blocks.append(context("\n".join(said)))
    details = details or {}
    fields, bullets = _detail_lines(details)
    if fields:
        blocks.append(fields_section(fields))
    if bullets:
        blocks.append(section(join_fitting(bullets, limit=MAX_SECTION_TEXT)))
    checks = details.get("checks")
    if isinstance(checks, list) and checks:
        blocks += _health_table([row for row in checks if isinstance(row, Mapping)])
    return blocks


# --- failure -------------------------------------------------------------------------------------------


def failure_blocks(*, run_id: str, plan_hash: str, event: StepFailed) -> list[Block]:
    """The step that failed, why, where everything stands, and only the next moves the engine offers."""
    title = esc(one_line(event.title))
    took = f" after {fmt.duration(event.duration_s)}" if event.duration_s else ""
    text = f"❌ *{title} failed*{took}\n*Error*: {esc(event.error)}"
    if event.hint:
        text += f"\n*What to try*: {esc(event.hint)}"
    blocks: list[Block] = [section(text)]
    keys = [k for k in STATE_ORDER if k in event.state] + [k for k in event.state if k not in STATE_ORDER]
    lines = [f"• *{esc(STATE_LABELS.get(k, k.capitalize()))}*: {esc(one_line(event.state[k]))}" for k in keys]
    blocks.append(section("*Where things stand*\n" + join_fitting(lines, limit=MAX_SECTION_TEXT - 22)))
    value = ids.run_value(run_id, plan_hash)
    buttons = []
    for move in ("retry", "skip", "abort"):  # a fixed order, whatever order the engine listed them in
        if move not in event.next_moves:
            continue
        label, style, warning = MOVES[move]
        confirm = None
        if warning:
            confirm = confirm_dialog(
                title="Abort the rollback?" if move == "abort" else f"Skip {one_line(event.title)}?",
                text=warning,
                ok=label,
            )
        buttons.append(button(text=label, action_id=MOVE_ACTIONS[move], value=value, style=style, confirm=confirm))
    if buttons:
        blocks.append(actions(buttons, block_id=ids.Block.FAILURE_ACTIONS))
    else:
        blocks.append(context(f"No next move can be offered here: see `rollback-bot status` for run `{esc(run_id)}`."))
    return blocks


# --- checklist -----------------------------------------------------------------------------------------


def _done_line(item: ChecklistRecord) -> str:
    when = f" at {hhmm(item.done_at)}" if item.done_at else ""
    return f"✅ ~{esc(one_line(item.text))}~ done by {mention(item.done_by)}{when}"


def _ordered(items: Sequence[ChecklistRecord]) -> list[tuple[str, list[ChecklistRecord]]]:
    phases = list(PHASES) + sorted({i.phase for i in items} - set(PHASES))
    grouped = [(p, sorted((i for i in items if i.phase == p), key=lambda i: i.position)) for p in phases]
    return [(phase, members) for phase, members in grouped if members]


def checklist_blocks(*, run_id: str, items: Sequence[ChecklistRecord], now: datetime) -> list[Block]:
    """The post-rollback checklist by phase, with a Done button per open item."""
    done = sum(1 for i in items if i.done_at)
    blocks: list[Block] = [
        header("Post-rollback checklist"),
        context(f"{done}/{len(items)} done · updated {hhmm(now)} · run `{esc(run_id)}`"),
    ]
    phases = _ordered(items)
    one_per_item = len(blocks) + len(phases) + len(items) <= MAX_MESSAGE_BLOCKS
    for phase, members in phases:
        title = f"*{esc(PHASE_TITLES.get(phase, phase))}*"
        if one_per_item:
            blocks.append(section(title))
            for item in members:
                if item.done_at or item.done_by:
                    blocks.append(section(_done_line(item)))
                else:
                    blocks.append(section(f"☐ {esc(item.text)}", accessory=_done_button(run_id, item)))
        else:
            blocks += _grouped_phase(run_id, title, members)
    return cap_blocks(
        blocks, limit=MAX_MESSAGE_BLOCKS, note="…more checklist items: `rollback-bot timeline` lists them all"
    )


def _done_button(run_id: str, item: ChecklistRecord, *, label: str = "Done") -> Block:
    return button(
        text=label,
        action_id=ids.checklist_action(item.item_id),
        value=ids.checklist_value(run_id, item.item_id),
    )


def _grouped_phase(run_id: str, title: str, members: Sequence[ChecklistRecord]) -> list[Block]:
    """Too many items for a block each: the phase as one list, then its Done buttons in rows of 25."""
    lines = [title]
    open_items = []
    for number, item in enumerate(members, start=1):
        if item.done_at or item.done_by:
            lines.append(f"{number}. {_done_line(item)}")
        else:
            lines.append(f"{number}. ☐ {esc(one_line(item.text))}")
            open_items.append((number, item))
    blocks = [section(text) for text in ("\n".join(g) for g in group_lines(lines, limit=MAX_SECTION_TEXT))]
    for start in range(0, len(open_items), MAX_ACTIONS_ELEMENTS):
        row = open_items[start : start + MAX_ACTIONS_ELEMENTS]
        blocks.append(
            actions([_done_button(run_id, item, label=f"Done {n}: {one_line(item.text)}") for n, item in row])
        )
    return blocks


# --- the end -------------------------------------------------------------------------------------------


def finished_blocks(*, event: RunFinished) -> list[Block]:
    """The run's last word in the thread: outcome, how long, health."""
    took = fmt.duration(event.duration_s)
    env = esc(event.env)
    if event.dry_run:
        text = f"🧪 *Dry run of {env} {esc(event.outcome)}* in {took}: nothing was changed."
    elif event.outcome == "succeeded":
        text = f"✅ *Rollback of {env} succeeded* in {took}."
    elif event.outcome == "unhealthy":
        text = (
            f"⚠️ *Rollback of {env} done, unhealthy* in {took}: code, data and flags are rolled back,"
            " but the health checks fail. Look at the application; the checklist follows."
        )
    elif event.outcome == "aborted":
        text = f"🛑 *Rollback of {env} aborted* after {took}. What already ran stays as it is."
    else:
        text = f"*Rollback of {env}: {esc(event.outcome)}* after {took}."
    blocks: list[Block] = [section(text)]
    if event.health:
        blocks += health_blocks(event.health)
    if event.checklist:
        blocks.append(
            context(
                f"The post-rollback checklist ({len(event.checklist)} items) follows: tick items off as they are done."
            )
        )
    if event.summary:
        blocks.append(context(f"Steps: {esc(event.summary)} · run `{esc(event.run_id)}`"))
    return blocks


def contact_mention(contact: str) -> str:
    """A user group (S…) is mentioned as `<!subteam^S…>`, a user as `<@U…>`."""
    return f"<!subteam^{contact}>" if contact.startswith("S") else mention(contact)


def reminder_blocks(*, phase_title: str, open_items: Sequence[ChecklistRecord], contacts: Sequence[str]) -> list[Block]:
    """A reminder in the run's thread: the checklist items still open when the next phase is due."""
    who = " ".join(contact_mention(c) for c in contacts)
    lines = [f"• {esc(one_line(item.text))}" for item in open_items]
    text = f"⏰ *{esc(phase_title)}* is due. {len(open_items)} checklist item(s) still open{': ' + who if who else ''}"
    body = [section("\n".join(group)) for group in group_lines(lines, limit=MAX_SECTION_TEXT)]
    return cap_blocks([section(cut(text, MAX_SECTION_TEXT)), *body], limit=MAX_MESSAGE_BLOCKS)


def undo_flags_blocks(
    *, run_id: str, plan_hash: str, turned_off: Sequence[str], undone_by: str | None = None
) -> list[Block]:
    """After a run that turned flags off: the way back, for when the flags were not the problem."""
    names = ", ".join(f"`{esc(key)}`" for key in turned_off) or "none"
    if undone_by:
        return [
            section(
                cut(
                    f"↩️ Flags put back as they were before the rollback by {mention(undone_by)}: {names}",
                    MAX_SECTION_TEXT,
                )
            )
        ]
    return [
        section(
            cut(f"🚩 Flags turned off by this rollback: {names}. Their earlier states are recorded.", MAX_SECTION_TEXT)
        ),
        actions(
            [
                button(
                    text="Undo flags",
                    action_id=ids.Action.UNDO_FLAGS,
                    value=ids.run_value(run_id, plan_hash),
                    confirm=confirm_dialog(
                        title="Put the flags back?",
                        text="Each flag goes back to the state recorded before the rollback changed it.",
                        ok="Put them back",
                    ),
                )
            ]
        ),
    ]
