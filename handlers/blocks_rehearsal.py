"""Block Kit for a rehearsal (bot.engine.rehearsal): its message in the channel and the result in its thread.

Pure: a notice's payload in, blocks out. Each step's own message in the thread is the run's step message
(blocks_run.step_blocks), so a rehearsal reads exactly as the rollback it rehearses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot import format as fmt
from handlers.blocks_kit import (
    MAX_MESSAGE_BLOCKS,
    MAX_SECTION_TEXT,
    Block,
    cap_blocks,
    context,
    esc,
    join_fitting,
    mention,
    one_line,
    section,
)

ICONS = {"passed": "✅", "failed": "❌", "interrupted": "⚠️", "running": "⏳", "refused": "🚫"}
WORDS = {
    "running": "running",
    "passed": "passed",
    "failed": "FAILED",
    "interrupted": "interrupted",
    "refused": "not started",
}
STEP_ICONS = {"ok": "✅", "skipped": "⏭", "failed": "❌", "running": "⏳", "pending": "·"}
CLEANUP_ICONS = {"removed": "🧹", "nothing left": "·", "kept": "📌", "FAILED": "❌"}


def rehearsal_text(payload: Mapping[str, Any]) -> str:
    """The fallback text (notifications, screen readers)."""
    status = str(payload.get("status", ""))
    return f"{ICONS.get(status, '•')} Rehearsal of {payload.get('env', '?')}: {WORDS.get(status, status)}"


def rehearsal_header_blocks(payload: Mapping[str, Any]) -> list[Block]:
    """The rehearsal's message in the channel, updated in place from asked to passed or failed."""
    status = str(payload.get("status", ""))
    env = esc(payload.get("env", "?"))
    line = f"{ICONS.get(status, '•')} *Rehearsal of {env}*: {WORDS.get(status, esc(status))}"
    line += f", asked by {mention(payload.get('requested_by'))}"
    blocks = [section(line)]
    shown = payload.get("summary")
    if isinstance(shown, Mapping):
        seconds = shown.get("seconds")
        took = f"{fmt.duration(seconds)} end to end" if isinstance(seconds, int | float) else "time not recorded"
        said = [f"*{took}*; each step's time, the stand-ins and the cleanup are in the thread."]
        if shown.get("failure"):
            said.append(f"What failed: {esc(shown['failure'])}")
        blocks.append(section("\n".join(said)))
    elif payload.get("progress"):
        blocks.append(context(f"_{esc(one_line(str(payload['progress'])))}_"))
    blocks.append(context("A rehearsal runs the whole plan against stand-ins: nothing of production changes."))
    return blocks


def rehearsal_result_blocks(shown: Mapping[str, Any]) -> list[Block]:
    """The result in the thread: each step's time, what stood in for production, what was skipped, cleanup."""
    status = str(shown.get("status", ""))
    seconds = shown.get("seconds")
    took = fmt.duration(seconds) if isinstance(seconds, int | float) else "?"
    blocks = [
        section(f"{ICONS.get(status, '•')} *Rehearsal #{shown.get('id')}: {WORDS.get(status, status)}* in {took}")
    ]
    if shown.get("failure"):
        blocks.append(section(f"*What failed:* {esc(shown['failure'])}"))
    steps = [*_rows(shown.get("preparation")), *_rows(shown.get("steps"))]
    if steps:
        blocks.append(
            section("*Each step*\n" + join_fitting([_step_line(s) for s in steps], limit=MAX_SECTION_TEXT - 20))
        )
    stand_ins = dict(shown.get("stand_ins") or {})
    skipped = stand_ins.pop("skipped", None) or {}
    if stand_ins:
        lines = [f"• *{esc(what)}*: {esc(words)}" for what, words in stand_ins.items()]
        blocks.append(section("*Stood in for production*\n" + join_fitting(lines, limit=MAX_SECTION_TEXT - 40)))
    if isinstance(skipped, Mapping) and skipped:
        lines = [f"• *{esc(what)}*: {esc(why)}" for what, why in skipped.items()]
        blocks.append(section("*Skipped*\n" + join_fitting(lines, limit=MAX_SECTION_TEXT - 20)))
    cleanup = _rows(shown.get("cleanup"))
    if cleanup:
        lines = [
            f"{CLEANUP_ICONS.get(str(c.get('result')), '•')} {esc(c.get('what', ''))}: "
            f"{esc(c.get('detail') or c.get('result', ''))}"
            for c in cleanup
        ]
        blocks.append(section("*Cleanup*\n" + join_fitting(lines, limit=MAX_SECTION_TEXT - 20)))
    return cap_blocks(blocks, limit=MAX_MESSAGE_BLOCKS)


def _rows(value: object) -> Sequence[Mapping[str, Any]]:
    return [row for row in value if isinstance(row, Mapping)] if isinstance(value, list) else []


def _step_line(step: Mapping[str, Any]) -> str:
    status = str(step.get("status", ""))
    seconds = step.get("seconds")
    took = fmt.duration(seconds) if isinstance(seconds, int | float) and status != "pending" else "not reached"
    title = step.get("title") or step.get("name") or "?"
    return f"{STEP_ICONS.get(status, '•')} {esc(title)}: {took}"
