"""Work the listeners hand to the bot's executor, after the ack: plan-and-post, approve-and-start, resume.

Each function here runs AFTER the ack, on the bot's own threads. They call the engine (whose
lifecycle decides) and let the run's story reach the channel through the outbox. Only answers to the
person who clicked (ephemeral, via `tell`) are sent directly: they belong to that click.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.engine import lifecycle
from bot.engine.lifecycle import Actor, Decision
from bot.engine.outcomes import FlagsOutcome
from bot.engine.plan import RollbackRequest
from bot.engine.story import RunStory, checklist_notice, header_notice, plan_notice, undo_flags_notice
from bot.engine.timed import schedule_expiry
from bot.errors import NotAllowed, RollbackError
from handlers import blocks
from handlers.context import SlackContext

log = logging.getLogger(__name__)
UNEXPECTED = "Something went wrong on the bot's side; it has been logged."
Tell = Callable[[list[dict[str, Any]], str], None]  # (blocks, fallback text) → an ephemeral reply


# Slack puts these in `channel_name` when it will not say the name; conversations.info will.
UNNAMED_CHANNELS = ("", "privategroup", "directmessage", "mpdm")


def refusal_for(
    ctx: SlackContext, *, request: RollbackRequest, actor: Actor, channel_name: str
) -> RollbackError | None:
    """Why this person may not start a rollback of `env` in this channel, or None."""
    pattern = ctx.services.config.settings.bot.incident_channels
    if pattern and not re.search(pattern, channel_name or ""):
        return NotAllowed(
            f"/rollback only runs in incident channels (names matching `{pattern}`); "
            f"#{channel_name or 'this one'} is not one",
            hint="start or join the incident channel and run it there",
        )
    try:
        lifecycle.check_may_request(ctx.services, request, actor=actor)
    except RollbackError as error:
        return error
    return None


def check_and_plan(
    ctx: SlackContext,
    request: RollbackRequest,
    *,
    channel: str,
    channel_name: str,
    tell: Tell,
    supersedes: str | None = None,
) -> str | None:
    """After the ack: may this person roll back here? Then plan and post."""
    if channel_name in UNNAMED_CHANNELS and ctx.services.config.settings.bot.incident_channels:
        try:
            channel_name = ctx.client.conversations_info(channel=channel)["channel"].get("name", "")
        except SlackApiError as error:
            log.warning("conversations.info %s failed: %s", channel, error.response.get("error"))
    refusal = refusal_for(ctx, request=request, actor=ctx.actor(request.requested_by), channel_name=channel_name)
    if refusal:
        tell(blocks.error_blocks(message=refusal.message, hint=refusal.hint), refusal.message)
        return None
    return plan_and_post(ctx, request, channel=channel, tell=tell, supersedes=supersedes)


def plan_and_post(
    ctx: SlackContext, request: RollbackRequest, *, channel: str, tell: Tell, supersedes: str | None = None
) -> str | None:
    """Make the plan (git fetch, migration scan), record it, and post it in the channel via the outbox."""
    try:
        record, plan = lifecycle.propose(ctx.services, request, meta={"channel": channel})
    except RollbackError as error:
        tell(blocks.error_blocks(message=error.message, hint=error.hint), error.message)
        return None
    except Exception:  # the person was told "Planning…": they must hear how it ended, whatever happened
        log.exception("planning a rollback of %s failed", request.env)
        tell(blocks.error_blocks(message=UNEXPECTED, hint="nothing was changed; try again"), UNEXPECTED)
        return None
    expires = record.created_at + ctx.services.config.settings.bot.plan_expires_after
    ctx.notify(plan_notice(record, plan, channel=channel, expires_at=expires))
    schedule_expiry(ctx.services, record.id)
    if supersedes:
        try:
            lifecycle.cancel(ctx.services, supersedes, actor=ctx.actor(request.requested_by))
            mark_closed(ctx, supersedes, status="cancelled", detail=f"replaced by an edited plan ({record.id})")
        except RollbackError:
            pass  # it was already started or cancelled: nothing to replace
    return record.id


def approve_and_start(ctx: SlackContext, run_id: str, *, approver: str, plan_hash: str, tell: Tell) -> None:
    """Record the approval (first click wins) and run the rollback with its story in the thread."""
    try:
        lifecycle.approve(ctx.services, run_id, actor=ctx.actor(approver), plan_hash=plan_hash)
    except RollbackError as error:
        tell(blocks.ephemeral_text_blocks(error.message), error.message)
        return
    try:
        lifecycle.start(
            ctx.services, run_id, actor=ctx.actor(approver), reporters=[RunStory(ctx.services, run_id=run_id)]
        )
    except RollbackError as error:
        mark_closed(ctx, run_id, status="refused", detail=error.message)
        tell(blocks.error_blocks(message=error.message, hint=error.hint), error.message)
    except Exception:
        log.exception("run %s stopped unexpectedly", run_id)
        tell(blocks.error_blocks(message=UNEXPECTED, hint="see `/rollback status`; the run can be resumed"), UNEXPECTED)
    finally:
        ctx.wake_sender()


def resume(ctx: SlackContext, run_id: str, *, decision: Decision, actor: str, tell: Tell) -> None:
    try:
        lifecycle.resume(
            ctx.services,
            run_id,
            decision=decision,
            actor=ctx.actor(actor),
            reporters=[RunStory(ctx.services, run_id=run_id)],
        )
    except RollbackError as error:
        tell(blocks.error_blocks(message=error.message, hint=error.hint), error.message)
    except Exception:
        log.exception("resuming run %s failed unexpectedly", run_id)
        tell(blocks.error_blocks(message=UNEXPECTED, hint="see `/rollback status`"), UNEXPECTED)
    finally:
        ctx.wake_sender()


def put_flags_back(ctx: SlackContext, run_id: str, *, actor: str, tell: Tell) -> None:
    try:
        lines = lifecycle.undo_flags(ctx.services, run_id, actor=ctx.actor(actor))
    except RollbackError as error:
        tell(blocks.error_blocks(message=error.message, hint=error.hint), error.message)
        return
    record = ctx.services.store.get_run(run_id)
    step = next((s for s in ctx.services.store.steps(run_id) if s.name == "flags"), None)
    turned_off = FlagsOutcome.from_details(step.details if step else {}).turned_off
    ctx.notify(undo_flags_notice(record, turned_off=turned_off, undone_by=actor))
    tell(blocks.ephemeral_text_blocks("\n".join(lines)), "Flags put back")


def mark_closed(ctx: SlackContext, run_id: str, *, status: str, detail: str = "") -> None:
    """Turn a plan message into a header with no buttons (cancelled, expired, refused)."""
    ctx.notify(header_notice(ctx.services.store.get_run(run_id), status=status, detail=detail))


def notify_checklist(ctx: SlackContext, run_id: str) -> None:
    ctx.notify(checklist_notice(ctx.services.store.get_run(run_id), ctx.services.store.checklist(run_id)))


__all__ = [
    "approve_and_start",
    "check_and_plan",
    "mark_closed",
    "notify_checklist",
    "plan_and_post",
    "put_flags_back",
    "resume",
]
