"""What the listeners hand to the bot's executor: plan-and-post, approve-and-start, resume.

Each function here runs AFTER the ack, on the bot's own threads. They call the engine and render;
Slack errors are reported back to the person who clicked, in one way (ephemeral), via `tell`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from bot.engine import flows
from bot.engine.plan import Plan, RollbackRequest
from bot.errors import RollbackError
from bot.store import now
from handlers import blocks
from handlers.context import SlackContext
from handlers.reporter import SlackReporter

log = logging.getLogger(__name__)
UNEXPECTED = "Something went wrong on the bot's side; it has been logged."
Tell = Callable[[list[dict[str, Any]], str], None]  # (blocks, fallback text) → an ephemeral reply


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
    if supersedes:
        try:
            flows.cancel(ctx.services, supersedes, actor=request.requested_by)
            mark_closed(ctx, supersedes, status="cancelled", detail=f"replaced by an edited plan ({record.id})")
        except RollbackError:
            pass  # it was already started or cancelled: nothing to replace
    return record.id


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
