"""Work the listeners hand to the bot's executor, after the ack: plan-and-post, approve-and-start, resume.

Each function here runs AFTER the ack, on the bot's own threads. They call the engine and render;
Slack errors are reported back to the person who clicked, in one way (ephemeral), via `tell`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import partial
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.engine import flows
from bot.engine.approval import check_approval, check_requester
from bot.engine.events import StepFailed
from bot.engine.plan import Plan, RollbackRequest
from bot.engine.run import state_of, view
from bot.engine.steps import STEP_BY_NAME
from bot.errors import NotAllowed, PlanExpired, RollbackError
from bot.store import RunRecord, now
from handlers import blocks
from handlers.context import SlackContext
from handlers.reporter import SlackReporter

log = logging.getLogger(__name__)
UNEXPECTED = "Something went wrong on the bot's side; it has been logged."
Tell = Callable[[list[dict[str, Any]], str], None]  # (blocks, fallback text) → an ephemeral reply


# Slack puts these in `channel_name` when it will not say the name; conversations.info will.
UNNAMED_CHANNELS = ("", "privategroup", "directmessage", "mpdm")


def refusal_for(ctx: SlackContext, *, env: str, user: str, channel_name: str) -> RollbackError | None:
    """Why this person may not start a rollback of `env` in this channel, or None."""
    pattern = ctx.services.config.settings.bot.incident_channels
    if pattern and not re.search(pattern, channel_name or ""):
        return NotAllowed(
            f"/rollback only runs in incident channels (names matching `{pattern}`); "
            f"#{channel_name or 'this one'} is not one",
            hint="start or join the incident channel and run it there",
        )
    try:
        check_requester(ctx.services.config.environment(env), env=env, user=user, members_of=ctx.members_of)
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
    refusal = refusal_for(ctx, env=request.env, user=request.requested_by, channel_name=channel_name)
    if refusal:
        tell(blocks.error_blocks(message=refusal.message, hint=refusal.hint), refusal.message)
        return None
    return plan_and_post(ctx, request, channel=channel, tell=tell, supersedes=supersedes)


def plan_and_post(
    ctx: SlackContext, request: RollbackRequest, *, channel: str, tell: Tell, supersedes: str | None = None
) -> str | None:
    """Make the plan (git fetch, migration scan), record it, and post it in the channel."""
    try:
        record, plan = flows.propose(ctx.services, request, meta={"channel": channel})
    except RollbackError as error:
        tell(blocks.error_blocks(message=error.message, hint=error.hint), error.message)
        return None
    except Exception:  # the person was told "Planning…": they must hear how it ended, whatever happened
        log.exception("planning a rollback of %s failed", request.env)
        tell(blocks.error_blocks(message=UNEXPECTED, hint="nothing was changed; try again"), UNEXPECTED)
        return None
    expires = record.created_at + ctx.services.config.settings.bot.plan_expires_after
    response = ctx.client.chat_postMessage(
        channel=channel,
        text=blocks.plan_text_fallback(plan),
        blocks=blocks.plan_blocks(run_id=record.id, plan=plan, now=now(), expires_at=expires),
    )
    ctx.services.store.merge_meta(record.id, {"channel": channel, "ts": response["ts"]})
    ctx.scheduler.at(f"{record.id}:expire", expires, partial(expire_if_waiting, ctx, record.id))
    if supersedes:
        try:
            flows.cancel(ctx.services, supersedes, actor=request.requested_by)
            mark_closed(ctx, supersedes, status="cancelled", detail=f"replaced by an edited plan ({record.id})")
        except RollbackError:
            pass  # it was already started or cancelled: nothing to replace
    return record.id


def expire_if_waiting(ctx: SlackContext, run_id: str) -> None:
    """When a plan's time is up and nobody approved it, say so on the message and drop its buttons."""
    if ctx.services.store.transition(run_id, from_=["planned"], to="expired"):
        ctx.services.store.record(actor="rollback-bot", action="run.expired", run_id=run_id)
        mark_closed(ctx, run_id, status="expired", detail="nobody approved it in time: ask for a fresh plan")


def ensure_can_approve(ctx: SlackContext, record: RunRecord, *, user: str, plan_hash: str) -> None:
    """Raise why `user` may not approve this exact plan now; an expired plan is closed on the way."""
    try:
        check_approval(
            ctx.services.config.environment(record.env),
            run=record,
            approver=user,
            plan_hash=plan_hash,
            members_of=ctx.members_of,
            now=now(),
            expires_after=ctx.services.config.settings.bot.plan_expires_after,
        )
    except PlanExpired:
        if ctx.services.store.transition(record.id, from_=["planned"], to="expired"):
            ctx.submit(mark_closed, ctx, record.id, status="expired")
        raise
    if record.status != "planned":
        raise NotAllowed(f"this rollback is already {record.status}")


def approve_and_start(ctx: SlackContext, run_id: str, *, approver: str, tell: Tell) -> None:
    """Record the approval (first click wins) and run the rollback with progress in the thread."""
    store = ctx.services.store
    if not store.transition(run_id, from_=["planned"], to="approved", approved_by=approver):
        current = store.get_run(run_id)
        by = f" by <@{current.approved_by}>" if current.approved_by else ""
        tell(blocks.ephemeral_text_blocks(f"This rollback is already {current.status}{by}."), "already handled")
        return
    store.record(actor=approver, action="run.approved", run_id=run_id, env=store.get_run(run_id).env)
    reporter = SlackReporter(ctx, run_id=run_id)
    try:
        flows.start(ctx.services, run_id, actor=approver, reporters=[reporter])
    except RollbackError as error:
        mark_closed(ctx, run_id, status="refused", detail=error.message)
        tell(blocks.error_blocks(message=error.message, hint=error.hint), error.message)
    except Exception:
        log.exception("run %s stopped unexpectedly", run_id)
        tell(blocks.error_blocks(message=UNEXPECTED, hint="see `/rollback status`; the run can be resumed"), UNEXPECTED)


def resume(ctx: SlackContext, run_id: str, *, decision: str, actor: str, tell: Tell) -> None:
    try:
        flows.resume(
            ctx.services,
            run_id,
            decision=decision,
            actor=actor,
            reporters=[SlackReporter(ctx, run_id=run_id)],
        )
    except RollbackError as error:
        tell(blocks.error_blocks(message=error.message, hint=error.hint), error.message)
    except Exception:
        log.exception("resuming run %s failed unexpectedly", run_id)
        tell(blocks.error_blocks(message=UNEXPECTED, hint="see `/rollback status`"), UNEXPECTED)


def put_flags_back(ctx: SlackContext, run_id: str, *, actor: str, channel: str, message_ts: str, tell: Tell) -> None:
    try:
        lines = flows.undo_flags(ctx.services, run_id, actor=actor)
    except RollbackError as error:
        tell(blocks.error_blocks(message=error.message, hint=error.hint), error.message)
        return
    record = ctx.services.store.get_run(run_id)
    step = next((s for s in ctx.services.store.steps(run_id) if s.name == "flags"), None)
    turned_off = list(step.details.get("turned_off", [])) if step else []
    if channel and message_ts:
        ctx.client.chat_update(
            channel=channel,
            ts=message_ts,
            text="Flags put back",
            blocks=blocks.undo_flags_blocks(
                run_id=run_id, plan_hash=record.plan_hash, turned_off=turned_off, undone_by=actor
            ),
        )
    tell(blocks.ephemeral_text_blocks("\n".join(lines)), "Flags put back")


def mark_closed(ctx: SlackContext, run_id: str, *, status: str, detail: str = "") -> None:
    """Turn a plan message into a header with no buttons (cancelled, expired, refused)."""
    record = ctx.services.store.get_run(run_id)
    if "ts" not in record.meta:
        return
    ctx.client.chat_update(
        channel=record.meta["channel"],
        ts=record.meta["ts"],
        text=f"Rollback of {record.env}: {status}",
        blocks=blocks.status_header_blocks(
            run_id=run_id,
            plan=Plan.from_dict(record.plan),
            status=status,
            approved_by=record.approved_by,
            requested_by=record.requested_by,
            detail=detail,
        ),
    )


def announce_interrupted_runs(ctx: SlackContext) -> int:
    """After a restart: say in each interrupted run's thread where it stopped, with Retry / Abort.

    Once per run and heartbeat, across replicas (the store's once-keys), so two replicas starting
    together post one notice.
    """
    posted = 0
    for record in ctx.services.store.list_runs(limit=50, statuses=("running",)):
        current = view(ctx.services, record.id)
        if current.status != "interrupted" or "ts" not in record.meta:
            continue
        if not ctx.services.store.first_time(f"interrupted:{record.id}:{record.heartbeat_at}"):
            continue
        stuck = next((s for s in current.steps if s.status == "running"), None)
        title = STEP_BY_NAME[stuck.name].title if stuck else "the run"
        event = StepFailed(
            run_id=record.id,
            step=stuck.name if stuck else "",
            title=title,
            error="interrupted: the bot stopped while this step was running, so its outcome is unknown",
            hint="Retry runs the step again (every step is safe to repeat); Abort ends the run and frees the lock",
            duration_s=0.0,
            state=state_of(current.steps, Plan.from_dict(record.plan)),
            next_moves=("retry", "skip", "abort")
            if stuck and STEP_BY_NAME[stuck.name].skippable
            else ("retry", "abort"),
        )
        ctx.client.chat_postMessage(
            channel=record.meta["channel"],
            thread_ts=record.meta["ts"],
            text=f"Rollback {record.id} was interrupted during {title}",
            blocks=blocks.failure_blocks(run_id=record.id, plan_hash=record.plan_hash, event=event),
        )
        posted += 1
    return posted
