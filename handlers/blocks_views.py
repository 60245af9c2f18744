"""Views and the small messages: App Home, the options and typed-confirmation modals, help, errors."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.engine.run_status import shown_env
from bot.store import RunRecord
from handlers import ids
from handlers.blocks_kit import (
    MAX_MESSAGE_BLOCKS,
    MAX_OPTIONS,
    MAX_SECTION_TEXT,
    MAX_VIEW_BLOCKS,
    Block,
    ago,
    cap_blocks,
    chunk_lines,
    context,
    day_hhmm,
    divider,
    esc,
    esc_keep_mentions,
    header,
    hhmm,
    join_fitting,
    mention,
    one_line,
    option,
    plain,
    section,
)

RUN_ICONS = {
    "planned": "📝",
    "running": "⏳",
    "succeeded": "✅",
    "unhealthy": "⚠️",
    "failed": "❌",
    "aborted": "🛑",
    "cancelled": "🚫",
    "expired": "⌛",
    "interrupted": "⚠️",
    "refused": "⛔",
}
HOME_RECENT = 40  # beyond this the Home tab points at `rollback-bot history`
HOME_ENVIRONMENTS = 20  # one section each; more are listed by `rollback-bot status`
CODE_CHOICES = (
    (ids.DEFAULT_CHOICE, "The environment's default", ""),
    ("revert", "revert", "one new commit restoring the target's tree; history kept"),
    ("force-push", "force-push", "rewrites history; the old head is saved first"),
    ("none", "none", "leave the code as it is"),
)
DB_CHOICES = (
    (ids.DEFAULT_CHOICE, "The environment's default", ""),
    ("dump", "dump", "restore from a dump (restored aside, then swapped in)"),
    ("rds-snapshot", "rds-snapshot", "restore an RDS snapshot (a NEW instance)"),
    ("rds-pitr", "rds-pitr", "RDS point-in-time restore (a NEW instance)"),
    ("none", "none", "leave the database as it is"),
)
CHECKBOXES = (
    (ids.Choice.NO_FLAGS, "Leave feature flags as they are (--no-flags)"),
    (ids.Choice.DRY_RUN, "Dry run: rehearse every step, change nothing (--dry-run)"),
)
GRAMMAR = (
    "/rollback ENV [to SHA] [--code revert|force-push|none] [--db dump|rds-snapshot|rds-pitr|none] "
    "[--no-flags] [--dry-run]"
)


# --- App Home ------------------------------------------------------------------------------------------


def _sha(plan: dict[str, Any], key: str) -> str:
    commit = plan.get(key)
    sha = commit.get("sha") if isinstance(commit, dict) else None
    return f"`{esc(str(sha)[:7])}`" if sha else "`?`"


def _run_line(run: RunRecord) -> str:
    icon = RUN_ICONS.get(run.status, "•")
    parts = [f"{icon} *{esc(shown_env(run.env))}*", day_hhmm(run.created_at), esc(run.status)]
    parts.append(f"{_sha(run.plan, 'deployed')} → {_sha(run.plan, 'target')}")
    parts.append(f"by {mention(run.requested_by)}")
    if run.dry_run:
        parts.append("dry run")
    parts.append(f"`{esc(run.id)}`")
    return " · ".join(parts)


def _running_line(run: RunRecord, now: datetime) -> str:
    icon = RUN_ICONS.get(run.status, "•")
    began = run.started_at or run.created_at
    parts = [f"{icon} *{esc(shown_env(run.env))}* {esc(run.status)}"]
    if run.current_step:
        parts.append(f"step {esc(run.current_step)}")
    parts.append(f"started {hhmm(began)} ({ago(now - began)} ago)")
    parts.append(f"by {mention(run.requested_by)}")
    if run.approved_by:
        parts.append(f"approved by {mention(run.approved_by)}")
    if run.dry_run:
        parts.append("dry run")
    parts.append(f"`{esc(run.id)}`")
    return " · ".join(parts)


def home_view(
    *,
    running: Sequence[RunRecord],
    recent: Sequence[RunRecord],
    environments: Sequence[tuple[str, str, Sequence[str]]],
    now: datetime,
) -> dict[str, Any]:
    """The App Home tab: what is running now, recent runs with their outcome, environments and their readiness."""
    blocks: list[Block] = [header("Rollback bot"), section("*Running now*")]
    if running:
        blocks += [section(t) for t in chunk_lines([_running_line(r, now) for r in running], limit=MAX_SECTION_TEXT)][
            :20
        ]
    else:
        blocks.append(context("No rollback in progress."))
    blocks += [divider(), section("*Recent runs*")]
    if recent:
        lines = [_run_line(r) for r in recent[:HOME_RECENT]]
        blocks += [section(t) for t in chunk_lines(lines, limit=MAX_SECTION_TEXT)][:20]
        if len(recent) > HOME_RECENT:
            blocks.append(context(f"…and {len(recent) - HOME_RECENT} older: `rollback-bot history` lists them."))
    else:
        blocks.append(context("No rollbacks yet."))
    blocks += [divider(), section("*Environments*")]
    if environments:
        # One section per environment: its setup, then its readiness (restore point, last drill, last rehearsal).
        for name, about, readiness in environments[:HOME_ENVIRONMENTS]:
            lines = [f"• *{esc(name)}*" + (f": {esc(one_line(about))}" if about else "")]
            lines += [f"    {esc(one_line(line))}" for line in readiness]
            blocks.append(section(join_fitting(lines, limit=MAX_SECTION_TEXT)))
        if len(environments) > HOME_ENVIRONMENTS:
            blocks.append(
                context(f"…and {len(environments) - HOME_ENVIRONMENTS} more: `rollback-bot status` lists all.")
            )
    else:
        blocks.append(context("No environments configured: see `rollback-bot check-config`."))
    blocks.append(
        context(f"Start with `/rollback ENV` in an incident channel; `/rollback help` for more. Updated {hhmm(now)}.")
    )
    return {"type": "home", "blocks": cap_blocks(blocks, limit=MAX_VIEW_BLOCKS, keep_tail=1)}


# --- modals --------------------------------------------------------------------------------------------


def _select(
    *,
    field: ids.Field,
    label: str,
    choices: Sequence[tuple[str, str, str]],
    initial: str | None,
    optional: bool,
) -> Block:
    options = [option(text=text, value=value, description=about) for value, text, about in choices][:MAX_OPTIONS]
    element: Block = {
        "type": "static_select",
        "action_id": str(field),
        "placeholder": plain("Choose…", limit=150),
        "options": options,
    }
    chosen = next((o for o in options if o["value"] == initial), None)
    if chosen is not None:
        element["initial_option"] = chosen
    return {
        "type": "input",
        "block_id": str(field),
        "optional": optional,
        "label": plain(label),
        "element": element,
    }


def options_modal(
    *,
    environments: Sequence[str],
    initial_env: str | None = None,
    initial: dict[str, Any] | None = None,
    private_metadata: str = "",
) -> dict[str, Any]:
    """Pick the environment and options (from `/rollback` alone, or the plan's Edit button).

    `initial` may hold "target" (or "to": a SHA or ref), "code" and "db" (choice values), and
    "no_flags" and "dry_run" (bools). The code/db selects offer ids.DEFAULT_CHOICE ("the environment's
    default") because a Slack select cannot be cleared once something is picked.
    """
    initial = initial or {}
    target = initial.get("target") or initial.get("to")
    view: dict[str, Any] = {
        "type": "modal",
        "callback_id": str(ids.View.OPTIONS),
        "title": plain("Rollback", limit=24),
        "close": plain("Cancel", limit=24),
        "private_metadata": private_metadata[:3000],
    }
    if not environments:
        view["blocks"] = [section("No environments are configured: see `rollback-bot check-config`.")]
        return view
    env_choices = [(env, env, "") for env in environments]
    blocks: list[Block] = [
        _select(field=ids.Field.ENV, label="Environment", choices=env_choices, initial=initial_env, optional=False),
        {
            "type": "input",
            "block_id": str(ids.Field.TARGET),
            "optional": True,
            "label": plain("Roll back to (commit SHA or ref)"),
            "hint": plain("Empty: the last restore point, or the deployed commit's parent."),
            "element": _text_input(
                action_id=ids.Field.TARGET,
                placeholder="e.g. 3f2a9c1",
                initial=target,
            ),
        },
        _select(
            field=ids.Field.CODE,
            label="Code strategy",
            choices=CODE_CHOICES,
            initial=initial.get("code") or ids.DEFAULT_CHOICE,
            optional=True,
        ),
        _select(
            field=ids.Field.DB,
            label="Database action",
            choices=DB_CHOICES,
            initial=initial.get("db") or ids.DEFAULT_CHOICE,
            optional=True,
        ),
    ]
    boxes = [option(text=text, value=value) for value, text in CHECKBOXES]
    element: Block = {"type": "checkboxes", "action_id": str(ids.Field.OPTIONS), "options": boxes}
    ticked = [box for box in boxes if initial.get(box["value"])]
    if ticked:  # Slack refuses an empty initial_options
        element["initial_options"] = ticked
    blocks.append(
        {
            "type": "input",
            "block_id": str(ids.Field.OPTIONS),
            "optional": True,
            "label": plain("Options"),
            "element": element,
        }
    )
    view["submit"] = plain("Show plan", limit=24)
    view["blocks"] = blocks
    return view


def _text_input(*, action_id: str, placeholder: str, initial: object = None) -> Block:
    element: Block = {
        "type": "plain_text_input",
        "action_id": str(action_id),
        "placeholder": plain(placeholder, limit=150),
        "max_length": 200,
    }
    if isinstance(initial, str) and initial:
        element["initial_value"] = initial[:200]
    return element


def typed_confirmation_modal(*, env: str, risks: Sequence[str], private_metadata: str) -> dict[str, Any]:
    """For risky plans: the approver types the environment's name, as the seed script asked."""
    lines = [f"• {esc(one_line(risk))}" for risk in risks] or ["• it changes production systems"]
    intro = f"*This rollback of `{esc(env)}`:*"
    return {
        "type": "modal",
        "callback_id": str(ids.View.TYPED_CONFIRMATION),
        "title": plain("Confirm rollback", limit=24),
        "submit": plain("Roll back", limit=24),
        "close": plain("Go back", limit=24),
        "private_metadata": private_metadata[:3000],
        "blocks": [
            section(intro + "\n" + join_fitting(lines, limit=MAX_SECTION_TEXT - len(intro) - 1)),
            context("The pre-rollback dump is taken and verified before anything changes, and kept."),
            {
                "type": "input",
                "block_id": str(ids.Field.TYPED_ENV),
                "label": plain(f"Type the environment name ({env}) to confirm", limit=2000),
                "element": _text_input(action_id=ids.Field.TYPED_ENV, placeholder=env),
            },
        ],
    }


# --- help, ephemeral answers, errors -------------------------------------------------------------------


def help_blocks(*, environments: Sequence[str]) -> list[Block]:
    envs = ", ".join(f"`{esc(e)}`" for e in environments) or "none configured (see `rollback-bot check-config`)"
    usage = [
        f"`{esc(GRAMMAR)}`",
        "• `/rollback prod`: a plan to roll `prod` back to its last restore point; nothing changes until "
        "an approver clicks *Confirm*.",
        "• `to SHA`: roll back to that commit instead.",
        "• `--code revert|force-push|none`, `--db dump|rds-snapshot|rds-pitr|none`: "
        "override the environment's defaults.",
        "• `--no-flags`: leave feature flags alone. `--dry-run`: rehearse every step, change nothing.",
    ]
    other = [
        "• `/rollback` alone: pick the environment and options in a form.",
        "• `/rollback help`: this message.",
        "• `/rollback status`: what is running now.",
        "• `/rollback history`: recent rollbacks.",
        "• `/rollback cancel`: cancel a plan nobody has confirmed yet.",
        "• `/rollback rehearse ENV`: the whole plan against stand-ins for production (a scratch branch and "
        "database, staging flags and health); production is not touched and nothing is left behind.",
    ]
    return [
        section("*Rolling back with `/rollback`*\n" + "\n".join(usage)),
        section("*Other commands*\n" + "\n".join(other)),
        context(f"Environments: {envs}"),
    ]


def ephemeral_text_blocks(text: str) -> list[Block]:
    """A short answer only the asker sees; long text is split, never refused."""
    # The bot's own sentences may mention a user ("already approved by <@U…>"); nothing else gets through.
    chunks = chunk_lines(esc_keep_mentions(text).splitlines() or ["—"], limit=MAX_SECTION_TEXT)
    return cap_blocks([section(chunk) for chunk in chunks], limit=MAX_MESSAGE_BLOCKS)


def error_blocks(*, message: str, hint: str = "") -> list[Block]:
    """How every RollbackError looks in Slack: what was wrong, then what to do about it."""
    blocks: list[Block] = [section(f"❌ {esc(message)}")]
    if hint:
        blocks.append(context(f"💡 {esc(hint)}"))
    return blocks
