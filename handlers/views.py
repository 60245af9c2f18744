"""Modals: the options picker (from `/rollback` alone, or Edit), the typed confirmation, and the three for
when people are gone: break glass (a justification), take over and break lock (a reason).

A submission is answered in its ack: either Slack's `errors` response (the modal stays open and says
what to fix, through handlers.errors.view_error) or an empty ack that closes it; the slow work is
handed off after.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot.engine import break_glass, handover, lifecycle
from bot.engine.approval import MIN_JUSTIFICATION, check_reason
from bot.engine.story import RunStory, header_notice
from bot.errors import RollbackError
from handlers import grammar
from handlers.background import RUN_HINT, approve_and_start, mark_closed, start_planning
from handlers.context import SlackContext
from handlers.errors import Reply, reply_in_channel, view_error
from handlers.guards import approvable, break_glassable, lock_still_breakable, on_submit, takeable, target
from handlers.ids import Field, View


def _element(state: dict[str, Any], field: Field) -> dict[str, Any]:
    found = state.get(field.value, {}).get(field.value, {})
    return found if isinstance(found, dict) else {}


def _text(state: dict[str, Any], field: Field) -> str:
    """What one input of a submitted modal holds: the selected option's value, or the typed text."""
    element = _element(state, field)
    chosen = element.get("selected_option") or {}
    value = chosen.get("value") if "selected_option" in element else element.get("value")
    return value.strip() if isinstance(value, str) else ""


def _env_typed(ack: Ack, state: dict[str, Any], env: str) -> bool:
    """True when the environment's name was typed exactly; otherwise the modal says so and stays open."""
    if _text(state, Field.TYPED_ENV) == env:
        return True
    view_error(ack, f"Type {env} exactly to confirm.", field=Field.TYPED_ENV.value)
    return False


def _ticked(state: dict[str, Any], field: Field) -> list[str]:
    """The values of the ticked checkboxes of one input."""
    return [option["value"] for option in _element(state, field).get("selected_options") or []]


def register(app: App, ctx: SlackContext) -> None:
    @app.view(View.OPTIONS.value)
    def options(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        state = view["state"]["values"]
        target_sha = _text(state, Field.TARGET)
        try:
            parsed = grammar.from_choices(
                env=_text(state, Field.ENV),
                target=target_sha,
                code=_text(state, Field.CODE),
                db=_text(state, Field.DB),
                checked=_ticked(state, Field.OPTIONS),
            )
        except RollbackError as error:
            field = Field.TARGET if target_sha and "commit" in error.message else Field.ENV
            view_error(ack, error, field=field.value)
            return
        ack()
        user = body["user"]["id"]
        channel, _, supersedes = (view.get("private_metadata") or "").partition("|")
        reply = reply_in_channel(client, channel=channel, user=user)
        start_planning(
            ctx, parsed, user=user, channel=channel, channel_name="", reply=reply, supersedes=supersedes or None
        )

    @app.view(View.TYPED_CONFIRMATION.value, middleware=[on_submit(ctx, approvable, field=Field.TYPED_ENV.value)])
    def typed_confirmation(ack: Ack, view: dict[str, Any], context: BoltContext) -> None:
        # The guard checked again that this person may approve this plan now: it may have expired meanwhile.
        submit = target(context)
        if not _env_typed(ack, view["state"]["values"], submit.run.env):
            return
        ack()
        ctx.hand_off(
            submit.reply,
            approve_and_start,
            ctx,
            submit.run.id,
            approver=submit.user,
            plan_hash=submit.key,
            hint=RUN_HINT,
        )

    @app.view(View.BREAK_GLASS.value, middleware=[on_submit(ctx, break_glassable, field=Field.JUSTIFICATION.value)])
    def break_glass_submitted(ack: Ack, view: dict[str, Any], context: BoltContext) -> None:
        # The guard checked again that this requester may run this plan alone now (listed, waited, not expired).
        submit = target(context)
        state = view["state"]["values"]
        try:
            justification = check_reason(
                _text(state, Field.JUSTIFICATION), what="justification", minimum=MIN_JUSTIFICATION
            )
        except RollbackError as error:
            view_error(ack, error, field=Field.JUSTIFICATION.value)
            return
        if not _env_typed(ack, state, submit.run.env):
            return
        ack()
        ctx.hand_off(
            submit.reply,
            break_glass_and_start,
            ctx,
            submit.run.id,
            user=submit.user,
            plan_hash=submit.key,
            justification=justification,
            hint=RUN_HINT,
        )

    @app.view(View.TAKE_OVER.value, middleware=[on_submit(ctx, takeable, field=Field.REASON.value)])
    def take_over_submitted(ack: Ack, view: dict[str, Any], context: BoltContext) -> None:
        submit = target(context)
        try:
            reason = check_reason(_text(view["state"]["values"], Field.REASON))
        except RollbackError as error:
            view_error(ack, error, field=Field.REASON.value)
            return
        ack()
        ctx.hand_off(submit.reply, take_over, ctx, submit.run.id, user=submit.user, reason=reason, reply=submit.reply)

    @app.view(View.BREAK_LOCK.value, middleware=[on_submit(ctx, lock_still_breakable, field=Field.REASON.value)])
    def break_lock_submitted(ack: Ack, view: dict[str, Any], context: BoltContext) -> None:
        submit = target(context)
        try:
            reason = check_reason(_text(view["state"]["values"], Field.REASON))
        except RollbackError as error:
            view_error(ack, error, field=Field.REASON.value)
            return
        ack()
        ctx.hand_off(
            submit.reply,
            break_lock,
            ctx,
            submit.run.id,
            holder_run=submit.key,
            user=submit.user,
            reason=reason,
            reply=submit.reply,
        )


# --- after the ack (on the bot's executor, through ctx.hand_off) ------------------------------------------------


def break_glass_and_start(ctx: SlackContext, run_id: str, *, user: str, plan_hash: str, justification: str) -> None:
    """Approve alone (the engine announces it loudly and adds the review), then run it with its story."""
    actor = ctx.actor(user)
    break_glass.break_glass(ctx.services, run_id, actor=actor, plan_hash=plan_hash, justification=justification)
    try:
        lifecycle.start(ctx.services, run_id, actor=actor, reporters=[RunStory(ctx.services, run_id=run_id)])
    except RollbackError as error:
        mark_closed(ctx, run_id, status="refused", detail=error.message)
        raise


def take_over(ctx: SlackContext, run_id: str, *, user: str, reason: str, reply: Reply) -> None:
    record = handover.take_over(ctx.services, run_id, actor=ctx.actor(user), reason=reason)
    reply.say(f"Run {record.id} of {record.env} is yours now: retry, skip or abort it from its failure message.")


def break_lock(ctx: SlackContext, run_id: str, *, holder_run: str, user: str, reason: str, reply: Reply) -> None:
    """Break the lock that refused this plan; its thread says the environment is free."""
    record = ctx.services.store.get_run(run_id)
    lines = handover.break_lock(ctx.services, record.env, actor=ctx.actor(user), reason=reason, run_id=holder_run)
    ctx.notify(handover.lock_broken_notice(record, by=user, reason=reason, holder_run=holder_run))
    closed = header_notice(
        record, status=record.status, detail=f"{record.error or 'refused'}; <@{user}> broke that lock"
    )
    if closed is not None:  # its Break lock button has done its work
        ctx.notify(replace(closed, payload={**closed.payload, "lock_broken": True}))
    reply.say("Lock broken: " + "\n".join(lines))
