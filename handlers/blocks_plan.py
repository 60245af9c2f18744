"""The plan message, and what it turns into once someone has acted on it.

The plan is what an approver reads at 3 a.m. before clicking Confirm, so every decision in it is shown
(with the same words as the terminal's `rollback-bot plan`), and the message stays valid Block Kit
however big the plan gets: 500 undone commits or 200 migration risks are summarised, never dropped
silently, and the buttons always survive.
"""

from __future__ import annotations

from datetime import datetime

from bot.backends.base import aurora_writer_id
from bot.engine.approval import risky_choices
from bot.engine.plan import Plan
from bot.render_text import CODE_WORDS, DB_WORDS
from handlers import ids
from handlers.blocks_kit import (
    MAX_FIELD_TEXT,
    MAX_MESSAGE_BLOCKS,
    MAX_SECTION_TEXT,
    Block,
    actions,
    button,
    cap_blocks,
    code,
    context,
    cut,
    esc,
    esc_keep_mentions,
    fields_section,
    group_lines,
    header,
    hhmm,
    join_fitting,
    mention,
    one_line,
    section,
)

SHOWN_UNDONE = 10
RISK_SECTIONS = 8  # at most this many blocks of migration risks; the rest are counted
RISK_STATEMENT_CHARS = 600
SUBJECT_CHARS = 200
RISK_ADVICE = "A code rollback does not undo these; a database restore is the way back."

PLAN_ACTIONS_BLOCK = ids.Block.PLAN_ACTIONS

STATUS_LOOK = {
    "planned": ("📝", "Rollback plan"),
    "running": ("⏳", "Rollback running"),
    "succeeded": ("✅", "Rollback succeeded"),
    "unhealthy": ("⚠️", "Rollback done, unhealthy"),
    "failed": ("❌", "Rollback failed"),
    "aborted": ("🛑", "Rollback aborted"),
    "cancelled": ("🚫", "Rollback cancelled"),
    "expired": ("⌛", "Rollback plan expired"),
    "interrupted": ("⚠️", "Rollback interrupted"),
    "refused": ("⛔", "Rollback refused"),
}
STATUS_NOTE = {
    "running": "Progress is in the thread below.",
    "failed": "The rollback stopped. What state things are in and the next moves are in the thread.",
    "interrupted": "The bot stopped mid-run (restart or crash). Resume or abort from the thread.",
    "expired": "Nothing was changed. Run `/rollback` again for a fresh plan.",
    "cancelled": "Nothing was changed.",
    "aborted": "The rollback was stopped. What already ran stays as it is; see the thread.",
    "unhealthy": "Code, data and flags are rolled back, but the health checks fail: look at the application.",
}


def _commit(sha: str, subject: str) -> str:
    return f"`{esc(sha[:7])}` {cut(esc(one_line(subject)), SUBJECT_CHARS)}"


def _title(plan: Plan, prefix: str = "Rollback plan") -> str:
    return ("[DRY RUN] " if plan.dry_run else "") + f"{prefix}: {plan.env}"


def _facts(plan: Plan) -> Block:
    target = _commit(plan.target.sha, plan.target.subject)
    return fields_section(
        [
            f"*Requested by*\n{mention(plan.requested_by)}",
            f"*Branch*\n`{esc(plan.remote)}/{esc(plan.branch)}`",
            f"*Deployed now*\n{_commit(plan.deployed.sha, plan.deployed.subject)}",
            cut(f"*Roll back to*\n{target}\n_{esc(plan.target_source)}_", MAX_FIELD_TEXT),
        ]
    )


def _undone(plan: Plan) -> str:
    count = len(plan.undone)
    if not count:
        return "*Undoes*: no linear history between the two commits (see the warnings)"
    title = f"*Undoes {count} commit{'s' if count != 1 else ''}* (newest first)"
    lines = [f"• {_commit(c.sha, c.subject)}" for c in plan.undone[:SHOWN_UNDONE]]
    if count > SHOWN_UNDONE:
        lines.append(f"…and {count - SHOWN_UNDONE} more")
    return title + "\n" + join_fitting(lines, limit=MAX_SECTION_TEXT - len(title) - 1)


def _code_and_database(plan: Plan, now: datetime) -> str:
    db = plan.database
    lines = [f"*Code*: {esc(CODE_WORDS.get(plan.code, plan.code))}"]
    where = f" on {esc(db.where)}" if db.where else ""
    lines.append(f"*Database*: {esc(DB_WORDS.get(db.action, db.action))}{where}")
    if db.source:
        age = plan.restore_point_age(now)
        label = ", ".join(part for part in (esc(db.source_label), f"*{age} old*" if age else "") if part)
        lines.append(f"*Restore from*: {code(db.source, limit=300)}" + (f" ({label})" if label else ""))
    if db.new_instance:
        lines.append(
            f"*New RDS instance*: {code(db.new_instance, limit=100)} (Aurora: a new cluster of that name, with its"
            f" writer {code(aurora_writer_id(db.new_instance), limit=120)}): the old one is not touched; "
            "the app must be pointed at the new endpoint"
        )
    if db.prestaged:
        lines.append(f"*Prestaged*: {esc(db.standby_note)}")
    if db.pre_dump and db.prestaged:
        lines.append(
            f"*Pre-rollback dump*: of the kept database, right after the swap, to {code(db.pre_dump, limit=300)},"
            " verified, and kept; the kept database is never dropped before it is"
        )
    elif db.pre_dump:
        lines.append(
            f"*Before anything changes*: a pre-rollback dump to {code(db.pre_dump, limit=300)}, verified, and kept"
        )
    elif db.engine == "none":
        lines.append("*Before anything changes*: no database, so no pre-rollback dump")
    return join_fitting(lines, limit=MAX_SECTION_TEXT)


def _flags_and_health(plan: Plan) -> str:
    lines = []
    if plan.flags:
        for flag in plan.flags:
            scope = "/".join(esc(part) for part in (flag.project, flag.environment) if part)
            keys = ", ".join(f"`{esc(key)}`" for key in flag.keys) or "no keys"
            lines.append(f"*Flags off* ({esc(flag.provider)}{', ' + scope if scope else ''}): {keys}")
    else:
        lines.append("*Flags*: none")
    if plan.health:
        for spec in plan.health:
            lines.append(
                f"*Health*: {esc(spec.url)} expects {spec.expect_status}, "
                f"{spec.consecutive} in a row within {spec.attempts} tries"
            )
    else:
        lines.append("*Health*: none configured")
    return join_fitting(lines, limit=MAX_SECTION_TEXT)


def _readiness(plan: Plan, now: datetime) -> list[Block]:
    """Rehearsal, drill and expected times; what is not proven, said plainly (bot.engine.readiness)."""
    if plan.readiness is None:
        return []
    lines = [
        f"*Readiness*: {esc(line)}" if i == 0 else esc(line) for i, line in enumerate(plan.readiness.sentences(now))
    ]
    lines += [f"⚠️ *Not proven*: {esc(one_line(w))}" for w in plan.readiness.warnings(now)]
    return [section(join_fitting(lines, limit=MAX_SECTION_TEXT))]


def _risks(plan: Plan) -> list[Block]:
    risks = plan.migration_risks
    if not risks:
        return [section("*Migration risks*: none found between the two commits")]
    intro = (
        f"*⚠️ MIGRATION RISKS*: {len(risks)} destructive statement{'s' if len(risks) != 1 else ''} "
        f"between the two commits. {RISK_ADVICE}"
    )
    entries = [
        f"• {code(f'{risk.file}:{risk.line}', limit=300)} *{esc(risk.kind)}*\n"
        f"{code(risk.statement, limit=RISK_STATEMENT_CHARS)}"
        for risk in risks
    ]
    groups = group_lines(entries, limit=MAX_SECTION_TEXT)
    blocks = [section(intro)]
    blocks += [section("\n".join(group)) for group in groups[:RISK_SECTIONS]]
    if len(groups) > RISK_SECTIONS:
        shown = sum(len(group) for group in groups[:RISK_SECTIONS])
        blocks.append(context(f"…and {len(risks) - shown} more: `rollback-bot plan {esc(plan.env)}` lists every one"))
    return blocks


def plan_blocks(*, run_id: str, plan: Plan, now: datetime, expires_at: datetime) -> list[Block]:
    """The plan message for the whole channel: every decision, then Confirm / Edit / Cancel."""
    blocks: list[Block] = [header(_title(plan))]
    if plan.dry_run:
        blocks.append(context("*Dry run*: every step is rehearsed and nothing is changed."))
    blocks += [
        _facts(plan),
        section(_undone(plan)),
        section(_code_and_database(plan, now)),
        section(_flags_and_health(plan)),
        *_readiness(plan, now),
        *_risks(plan),
    ]
    if plan.warnings:
        lines = [f"⚠️ {esc(one_line(w))}" for w in plan.warnings]
        blocks.append(section(join_fitting(lines, limit=MAX_SECTION_TEXT)))
    left = max(int((expires_at - now).total_seconds() // 60), 0)
    blocks.append(
        context(
            f"Plan `{plan.hash[:12]}` expires at {hhmm(expires_at)} (in {left} min). "
            "An approval binds to exactly this plan. Run `" + esc(run_id) + "`."
        )
    )
    value = ids.run_value(run_id, plan.hash)
    risky = bool(risky_choices(plan))  # the rule the Confirm handler applies
    verb = "Confirm dry run" if plan.dry_run else "Confirm"
    buttons = [
        # A risky plan's Confirm opens a modal where the approver types the environment name: a Block
        # Kit `confirm` dialog is one click, which is not enough for a force-push or a database restore.
        button(text=verb + ("…" if risky else ""), action_id=ids.Action.CONFIRM, value=value, style="primary"),
        button(text="Edit…", action_id=ids.Action.EDIT, value=value),
        button(text="Cancel", action_id=ids.Action.CANCEL, value=value, style="danger"),
    ]
    blocks.append(actions(buttons, block_id=PLAN_ACTIONS_BLOCK))
    return cap_blocks(blocks, limit=MAX_MESSAGE_BLOCKS, keep_tail=2)


def plan_text_fallback(plan: Plan) -> str:
    """The message's `text`: what a notification or a screen reader shows."""
    dry = "[DRY RUN] " if plan.dry_run else ""
    db = plan.database.action
    text = (
        f"{dry}Rollback plan for {esc(plan.env)}: {esc(plan.deployed.short)} → {esc(plan.target.short)} "
        f"(code: {esc(plan.code)}, database: {esc(db)}), requested by {mention(plan.requested_by)}"
    )
    if plan.migration_risks:
        text += f"; {len(plan.migration_risks)} migration risk(s)"
    return cut(text, 3000)


def status_header_blocks(
    *,
    run_id: str,
    plan: Plan,
    status: str,
    approved_by: str | None,
    requested_by: str,
    detail: str = "",
) -> list[Block]:
    """The plan message once acted on: its status and who approved; no buttons (they live in the thread)."""
    icon, words = STATUS_LOOK.get(status, ("•", f"Rollback {status}"))
    blocks: list[Block] = [header(f"{icon} " + _title(plan, words))]
    people = f"Requested by {mention(requested_by)}"
    if approved_by:
        people += f" · approved by {mention(approved_by)}"
    db = plan.database
    where = f" on {esc(db.where)}" if db.where else ""
    deployed, target = (
        _commit(plan.deployed.sha, plan.deployed.subject),
        _commit(plan.target.sha, plan.target.subject),
    )
    summary = [
        f"{deployed} → {target}",
        f"*Code*: {esc(CODE_WORDS.get(plan.code, plan.code))}",
        f"*Database*: {esc(DB_WORDS.get(db.action, db.action))}{where}",
    ]
    flag_keys = [key for flag in plan.flags for key in flag.keys]
    summary.append("*Flags off*: " + (", ".join(f"`{esc(k)}`" for k in flag_keys) if flag_keys else "none"))
    if plan.migration_risks:
        summary.append(f"*Migration risks*: {len(plan.migration_risks)} ({RISK_ADVICE})")
    blocks.append(section(join_fitting(summary, limit=MAX_SECTION_TEXT)))
    notes = [people]
    if detail:
        notes.append(esc_keep_mentions(detail))  # "cancelled by <@U…>"
    elif status in STATUS_NOTE:
        notes.append(STATUS_NOTE[status])
    notes.append(f"Run `{esc(run_id)}` · plan `{plan.hash[:12]}`")
    blocks.append(context(*notes))
    return blocks
