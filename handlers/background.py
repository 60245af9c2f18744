"""Work the listeners hand to the bot's executor, after the ack: plan-and-post, approve-and-start, resume.

Each function here runs AFTER the ack, on the bot's own threads, through `ctx.hand_off(reply, …)`:
they call the engine (whose lifecycle decides) and let the run's story reach the channel through
the outbox. They raise what the engine raises; handlers.errors.answered tells the person who acted,
once. Only answers to that person (ephemeral, via `reply`) are sent directly: they belong to that act.
"""

from __future__ import annotations

import logging
import re

from slack_sdk.errors import SlackApiError

from bot.engine import lifecycle
from bot.engine.lifecycle import Decision
from bot.engine.outcomes import FlagsOutcome
from bot.engine.plan import RollbackRequest
from bot.engine.story import RunStory, checklist_notice, header_notice, plan_notice, undo_flags_notice
from bot.engine.timed import schedule_expiry
from bot.errors import NotAllowed, RollbackError
from handlers import blocks, grammar
from handlers.context import SlackContext
from handlers.errors import Reply

log = logging.getLogger(__name__)

# What a person is told to do when work after their ack fails unexpectedly (handlers.errors.answered).
PLAN_HINT = "nothing was changed; try again"
RUN_HINT = "see `/rollback status`; the run can be resumed"

# Slack puts these in `channel_name` when it will not say the name; conversations.info will.
UNNAMED_CHANNELS = ("", "privategroup", "directmessage", "mpdm")


def start_planning(
    ctx: SlackContext,
    command: grammar.Command,
    *,
    user: str,
    channel: str,
    channel_name: str,
    reply: Reply,
    supersedes: str | None = None,
) -> None:
    """What both ways of asking (typed, or picked in the modal) do after their ack: plan it, off Bolt's threads."""
    request = grammar.to_request(command, user=user)
    ctx.hand_off(
        reply,
        check_and_plan,
        ctx,
        request,
        channel=channel,
        channel_name=channel_name,
        supersedes=supersedes,
        hint=PLAN_HINT,
        planning=True,
    )


def check_may_plan_here(ctx: SlackContext, request: RollbackRequest, *, channel_name: str) -> None:
    """Raise why this person may not start a rollback of `env` in this channel."""
    pattern = ctx.services.config.settings.bot.incident_channels
    if pattern and not re.search(pattern, channel_name or ""):
        raise NotAllowed(
            f"/rollback only runs in incident channels (names matching `{pattern}`); "
            f"#{channel_name or 'this one'} is not one",
            hint="start or join the incident channel and run it there",
        )
    lifecycle.check_may_request(ctx.services, request, actor=ctx.actor(request.requested_by))


def check_and_plan(
    ctx: SlackContext, request: RollbackRequest, *, channel: str, channel_name: str, supersedes: str | None = None
) -> str:
    """May this person roll back here? Then plan and post."""
    if channel_name in UNNAMED_CHANNELS and ctx.services.config.settings.bot.incident_channels:
        try:
            channel_name = ctx.client.conversations_info(channel=channel)["channel"].get("name", "")
        except SlackApiError as error:  # unnamed then: the incident-channel check refuses, and says so
            log.warning("conversations.info %r failed: %s", channel, error.response.get("error"))
    check_may_plan_here(ctx, request, channel_name=channel_name)
    return plan_and_post(ctx, request, channel=channel, supersedes=supersedes)


def plan_and_post(ctx: SlackContext, request: RollbackRequest, *, channel: str, supersedes: str | None = None) -> str:
    """Make the plan (git fetch, migration scan), record it, and post it in the channel via the outbox."""
    record, plan = lifecycle.propose(ctx.services, request, meta={"channel": channel})
    expires = record.created_at + ctx.services.config.settings.bot.plan_expires_after
    ctx.notify(plan_notice(record, plan, channel=channel, expires_at=expires))
    schedule_expiry(ctx.services, record.id)
    if supersedes:
        try:
            lifecycle.cancel(ctx.services, supersedes, actor=ctx.actor(request.requested_by))
            mark_closed(ctx, supersedes, status="cancelled", detail=f"replaced by an edited plan ({record.id})")
        except RollbackError:
            pass  # deliberate: it was already started or cancelled, so there is nothing to replace
    return record.id


def approve_and_start(ctx: SlackContext, run_id: str, *, approver: str, plan_hash: str) -> None:
    """Record the approval (first click wins) and run the rollback with its story in the thread."""
    lifecycle.approve(ctx.services, run_id, actor=ctx.actor(approver), plan_hash=plan_hash)
    try:
        lifecycle.start(
            ctx.services, run_id, actor=ctx.actor(approver), reporters=[RunStory(ctx.services, run_id=run_id)]
        )
    except RollbackError as error:
        # Deliberate: besides telling the approver (the raise), the plan message must say it was refused.
        mark_closed(ctx, run_id, status="refused", detail=error.message)
        raise


def resume(ctx: SlackContext, run_id: str, *, decision: Decision, actor: str) -> None:
    lifecycle.resume(
        ctx.services,
        run_id,
        decision=decision,
        actor=ctx.actor(actor),
        reporters=[RunStory(ctx.services, run_id=run_id)],
    )


def put_flags_back(ctx: SlackContext, run_id: str, *, actor: str, reply: Reply) -> None:
    lines = lifecycle.undo_flags(ctx.services, run_id, actor=ctx.actor(actor))
    record = ctx.services.store.get_run(run_id)
    step = next((s for s in ctx.services.store.steps(run_id) if s.name == "flags"), None)
    turned_off = FlagsOutcome.from_details(step.details if step else {}).turned_off
    ctx.notify(undo_flags_notice(record, turned_off=turned_off, undone_by=actor))
    reply.say("Flags put back", blocks.ephemeral_text_blocks("\n".join(lines)))


def cancel_waiting(ctx: SlackContext, *, run_id: str | None, user: str, channel: str, reply: Reply) -> None:
    """`/rollback cancel [RUN_ID]`: the named plan, else the one waiting for approval in this channel."""
    if run_id is None:
        store = ctx.services.store
        planned = store.list_runs(limit=50, statuses=("planned",), dry_run=False)  # a dry run waits for nobody
        waiting = [r for r in planned if r.meta.get("channel") == channel]
        if not waiting:
            reply.say("There is no plan waiting for approval in this channel.")
            return
        run_id = waiting[0].id
    cancel_plan(ctx, run_id, user=user)
    reply.say(f"Cancelled {run_id}: nothing was changed.")


def cancel_plan(ctx: SlackContext, run_id: str, *, user: str) -> None:
    """The Cancel button and `/rollback cancel`: the engine cancels, the plan message says so."""
    lifecycle.cancel(ctx.services, run_id, actor=ctx.actor(user))
    mark_closed(ctx, run_id, status="cancelled", detail=f"cancelled by <@{user}>")


def mark_closed(ctx: SlackContext, run_id: str, *, status: str, detail: str = "") -> None:
    """Turn a plan message into a header with no buttons (cancelled, expired, refused)."""
    ctx.notify(header_notice(ctx.services.store.get_run(run_id), status=status, detail=detail))


def notify_checklist(ctx: SlackContext, run_id: str) -> None:
    ctx.notify(checklist_notice(ctx.services.store.get_run(run_id), ctx.services.store.checklist(run_id)))


__all__ = [
    "PLAN_HINT",
    "RUN_HINT",
    "approve_and_start",
    "cancel_plan",
    "cancel_waiting",
    "check_and_plan",
    "mark_closed",
    "notify_checklist",
    "plan_and_post",
    "put_flags_back",
    "resume",
    "start_planning",
]
