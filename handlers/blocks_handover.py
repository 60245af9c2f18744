"""Break-glass, take-over and broken locks in Block Kit: the buttons they add, their modals, their messages.

Pure builders, like every blocks_* module. The buttons are added to messages other builders made (the
plan, a failure, a refused plan's header) by finding the block they belong in, so those builders stay
as they are; a message without such a block gets a new actions block.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from bot import format as fmt
from bot.engine.approval import MAX_REASON, MIN_JUSTIFICATION, MIN_REASON
from handlers import ids
from handlers.blocks_kit import (
    MAX_ACTIONS_ELEMENTS,
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
    header,
    hhmm,
    join_fitting,
    mention,
    plain,
    section,
)
from handlers.blocks_run import contact_mention
from handlers.blocks_stakeholder import environment_words, plain_words


def _quote(text: str, *, limit: int = 1200) -> str:
    """Someone's own words, as a block quote: escaped (and redacted), never able to mention or link."""
    lines = cut(esc(text), limit).splitlines() or ["—"]
    return "\n".join(f"> {line}" for line in lines)


def _who(people: Sequence[str]) -> str:
    return " ".join(contact_mention(p) for p in people)


def _with_button(blocks: list[Block], *, block_id: str, new: Block, before: Block | None = None) -> list[Block]:
    """`blocks` with `new` added to the actions block `block_id` (or a new actions block at the end)."""
    out = [dict(b) for b in blocks]
    for index, block in enumerate(out):
        mine = block.get("type") == "actions" and block.get("block_id") == block_id
        if mine and len(block["elements"]) < MAX_ACTIONS_ELEMENTS:
            block["elements"] = [*block["elements"], new]
            if before is not None:
                out.insert(index, before)
            return cap_blocks(out, limit=MAX_MESSAGE_BLOCKS, keep_tail=len(out) - index)
    extra = [before] if before is not None else []
    return cap_blocks([*out, *extra, actions([new], block_id=block_id)], limit=MAX_MESSAGE_BLOCKS, keep_tail=2)


# --- buttons on other messages ------------------------------------------------------------------------------


def with_break_glass(blocks: list[Block], *, run_id: str, plan_hash: str, requester: str) -> list[Block]:
    """The plan message once break-glass is open: one more button, and a line saying who may press it."""
    note = context(
        f"🚨 No approver has confirmed this plan in time: {mention(requester)} may *break glass* and roll back "
        "alone, with a written justification. Approvers can still confirm."
    )
    glass = button(
        text="Break glass…",
        action_id=ids.Action.BREAK_GLASS,
        value=ids.run_value(run_id, plan_hash),
        style="danger",
    )
    return _with_button(blocks, block_id=ids.Block.PLAN_ACTIONS, new=glass, before=note)


def with_take_over(blocks: list[Block], *, run_id: str, plan_hash: str) -> list[Block]:
    """A failure (or interruption) notice: approvers may take the run over when its requester is gone."""
    take = button(text="Take over…", action_id=ids.Action.TAKE_OVER, value=ids.run_value(run_id, plan_hash))
    return _with_button(blocks, block_id=ids.Block.FAILURE_ACTIONS, new=take)


def with_break_lock(blocks: list[Block], *, run_id: str, plan_hash: str) -> list[Block]:
    """A plan refused because the environment is locked: an approver may break a lock whose holder is gone."""
    note = context("If the rollback holding the lock is gone (crashed, abandoned), an approver can break its lock.")
    lock = button(text="Break lock…", action_id=ids.Action.BREAK_LOCK, value=ids.run_value(run_id, plan_hash))
    return _with_button(blocks, block_id=ids.Block.LOCK_ACTIONS, new=lock, before=note)


def header_notes(
    blocks: list[Block], *, break_glass: dict[str, Any] | None, taken_over: dict[str, Any] | None
) -> list[Block]:
    """A status header's extra lines: run alone by break-glass; taken over from someone."""
    lines = []
    if break_glass:
        lines.append(f"🚨 *Break glass*: run by {mention(break_glass.get('by'))} without an approver")
    if taken_over:
        lines.append(
            f"🔁 Taken over by {mention(taken_over.get('by'))} from {mention(taken_over.get('from'))}: "
            f"{esc(cut(str(taken_over.get('reason', '')), 300))}"
        )
    return [*blocks, context(*lines)] if lines else blocks


# --- messages -----------------------------------------------------------------------------------------------


def break_glass_open_blocks(
    *, requester: str, approvers: Sequence[str], after: timedelta, expires_at: datetime
) -> list[Block]:
    """In the plan's thread when break-glass opens."""
    who = _who(approvers)
    return [
        section(
            f"⏰ No approver has confirmed this plan in {fmt.duration(after, rough=True)}. "
            f"{mention(requester)} may now *break glass* on the plan message and roll back alone, "
            "with a written justification: the channel, the stakeholders and the contacts are told, and an "
            "approver must review it afterwards."
        ),
        context(
            (f"Approvers ({who}) can still confirm. " if who else "Approvers can still confirm. ")
            + f"The plan expires at {hhmm(expires_at)}."
        ),
    ]


def break_glass_blocks(
    *,
    audience: str,
    env: str,
    by: str | None,
    justification: str,
    after: timedelta,
    remind_every: timedelta,
    contacts: Sequence[str],
    run_id: str,
    at: datetime,
) -> list[Block]:
    """Loud, top level: the team's channel gets the facts; stakeholder channels get plain words."""
    who = _who(contacts)
    if audience == "stakeholders":
        place = esc(environment_words(env))
        return [
            header(f"🚨 Emergency rollback of {environment_words(env)} without the usual approval"),
            section(
                f"An engineer ({mention(by)}) is rolling back {place} on their own, because no approver "
                "answered in time. The reason they gave:\n" + _quote(plain_words(justification), limit=800)
            ),
            section(
                "The team will review this rollback afterwards." + (f" Contacts: {who}" if who else ""),
            ),
            context(f"At {hhmm(at)}"),
        ]
    return [
        header(f"🚨 BREAK GLASS: rollback of {env} without an approver"),
        section(
            f"{mention(by)} broke the glass: no approver confirmed the plan in {fmt.duration(after, rough=True)}, "
            f"so they are rolling back *{esc(env)}* alone.\n*Justification*\n" + _quote(justification)
        ),
        section(
            (f"{who}: " if who else "")
            + "an approver must review this rollback. It is first on its checklist and reminded every "
            f"{fmt.duration(remind_every, rough=True)} until an approver signs it off."
        ),
        context(f"Run `{esc(run_id)}` · {hhmm(at)} · progress in the plan's thread"),
    ]


def review_reminder_blocks(
    *,
    run_id: str,
    item_id: str,
    env: str,
    by: str | None,
    justification: str,
    since: datetime | None,
    approvers: Sequence[str],
    contacts: Sequence[str],
) -> list[Block]:
    """In the run's thread, on schedule, until the review is signed off: with the Sign off button."""
    who = _who(list(dict.fromkeys([*approvers, *contacts])))
    when = f" at {hhmm(since)}" if since else ""
    text = f"🔔 The break-glass rollback of *{esc(env)}* by {mention(by)}{when} still needs an approver's review" + (
        f": {who}" if who else "."
    )
    sign = button(
        text="Sign off review",
        action_id=ids.checklist_action(item_id),
        value=ids.checklist_value(run_id, item_id),
        style="primary",
        confirm=confirm_dialog(
            title="Sign off the review?",
            text="You reviewed this break-glass rollback: what was done and why. This is recorded.",
            ok="Sign off",
        ),
    )
    return [
        section(cut(text, MAX_SECTION_TEXT)),
        section("*Justification*\n" + _quote(justification, limit=600)),
        actions([sign]),
    ]


def handover_note_blocks(payload: dict[str, Any]) -> tuple[str, list[Block]]:
    """A line in a run's thread: taken over, lock broken, environment freed, review signed off."""
    what = payload.get("what")
    by, reason = mention(payload.get("by")), esc(cut(str(payload.get("reason", "")), 1200))
    env = esc(payload.get("env", ""))
    if what == "taken_over":
        text = (
            f"🔁 {by} took this rollback over from {mention(payload.get('previous'))}: {reason}\n"
            f"The lock of {env} is held in their name now. Retry, skip or abort it from the failure message above."
        )
    elif what == "lock_broken":
        text = f"🔓 {by} broke the lock this rollback held on {env}: {reason}"
    elif what == "lock_freed":
        text = (
            f"🔓 {by} broke the lock of {env} held by run `{esc(payload.get('holder_run', ''))}`: {reason}\n"
            f"{env} is free: ask for a fresh plan with `/rollback {env}`."
        )
    elif what == "review_signed":
        broke = mention(payload.get("broke_glass"))
        text = f"✅ {by} signed off the review of this break-glass rollback (the glass was broken by {broke})."
    else:
        text = f"{by}: {esc(str(what))}"
    return text, [section(cut(text, MAX_SECTION_TEXT))]


# --- modals -------------------------------------------------------------------------------------------------


def _input(field: ids.Field, *, label: str, placeholder: str, multiline: bool, min_length: int = 0) -> Block:
    element: Block = {
        "type": "plain_text_input",
        "action_id": str(field),
        "multiline": multiline,
        "placeholder": plain(placeholder, limit=150),
        "max_length": MAX_REASON,
    }
    if min_length:
        element["min_length"] = min_length
    return {"type": "input", "block_id": str(field), "label": plain(label, limit=2000), "element": element}


def break_glass_modal(*, env: str, risks: Sequence[str], private_metadata: str) -> dict[str, Any]:
    """Run it alone: a justification (into the audit trail and the announcements) and the environment's name."""
    lines = [f"• {esc(r)}" for r in risks] or ["• it changes production systems"]
    intro = f"*You are about to roll back `{esc(env)}` without an approver.*"
    return {
        "type": "modal",
        "callback_id": str(ids.View.BREAK_GLASS),
        "title": plain("Break glass", limit=24),
        "submit": plain("Roll back alone", limit=24),
        "close": plain("Go back", limit=24),
        "private_metadata": private_metadata[:3000],
        "blocks": [
            section(intro + "\n" + join_fitting(lines, limit=MAX_SECTION_TEXT - len(intro) - 1)),
            context(
                "Your justification is posted in the channel and the stakeholder channels, the contacts are "
                "mentioned, and an approver must sign off a review of this rollback afterwards."
            ),
            _input(
                ids.Field.JUSTIFICATION,
                label="Justification: why this cannot wait for an approver",
                placeholder="What is broken, who is affected, and who you tried to reach",
                multiline=True,
                min_length=MIN_JUSTIFICATION,
            ),
            _input(
                ids.Field.TYPED_ENV,
                label=f"Type the environment name ({env}) to confirm",
                placeholder=env,
                multiline=False,
            ),
        ],
    }


def reason_modal(*, kind: str, text: str, private_metadata: str) -> dict[str, Any]:
    """Take over a run, or break a lock: what will happen, and the reason that goes into the audit trail."""
    take = kind == "take_over"
    return {
        "type": "modal",
        "callback_id": str(ids.View.TAKE_OVER if take else ids.View.BREAK_LOCK),
        "title": plain("Take over the run" if take else "Break the lock", limit=24),
        "submit": plain("Take over" if take else "Break lock", limit=24),
        "close": plain("Go back", limit=24),
        "private_metadata": private_metadata[:3000],
        "blocks": [
            section(cut(text, MAX_SECTION_TEXT)),
            _input(
                ids.Field.REASON,
                label="Reason (it goes into the audit trail)",
                placeholder="e.g. the requester is offline and not answering; their laptop died",
                multiline=True,
                min_length=MIN_REASON,
            ),
        ],
    }
