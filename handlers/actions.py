"""Buttons: confirm, cancel, edit, retry / skip / abort, undo flags, checklist done, and the three that open
a modal for when people are gone: break glass, take over, break lock.

Each listener reads ack → parse → engine (or hand off) → render. The button's run was loaded and the
act allowed by the engine in its guard (handlers.guards) before the listener runs; a refusal was
answered there, so a listener only ever sees a click it may carry out.
"""

from __future__ import annotations

import re
from typing import Any

from slack_bolt import Ack, App, BoltContext

from bot.engine import break_glass, handover, lifecycle
from bot.engine.approval import risky_choices
from bot.engine.lifecycle import Act, Decision
from bot.engine.plan import Plan
from handlers import blocks, blocks_handover
from handlers.background import RUN_HINT, approve_and_start, cancel_plan, notify_checklist, put_flags_back, resume
from handlers.blocks_kit import esc, mention
from handlers.context import SlackContext
from handlers.guards import (
    allowed,
    approvable,
    break_glassable,
    checklist_item,
    editable,
    lock_breakable,
    on_click,
    takeable,
    target,
)
from handlers.ids import Action, run_value


def register(app: App, ctx: SlackContext) -> None:
    @app.action(Action.CONFIRM.value, middleware=[on_click(ctx, approvable)])
    def confirm(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        ack()
        click = target(context)
        risks = risky_choices(Plan.from_dict(click.run.plan))
        if risks:  # the approver types the environment's name first (handlers.views.typed_confirmation)
            modal = blocks.typed_confirmation_modal(
                env=click.run.env, risks=risks, private_metadata=run_value(click.run.id, click.key)
            )
            ctx.open_modal(trigger_id=body["trigger_id"], view=modal, reply=click.reply)
            return
        ctx.hand_off(
            click.reply, approve_and_start, ctx, click.run.id, approver=click.user, plan_hash=click.key, hint=RUN_HINT
        )

    @app.action(Action.CANCEL.value, middleware=[on_click(ctx, allowed(Act.CANCEL))])
    def cancel(ack: Ack, context: BoltContext) -> None:
        ack()
        click = target(context)
        ctx.hand_off(click.reply, cancel_plan, ctx, click.run.id, user=click.user)

    @app.action(Action.EDIT.value, middleware=[on_click(ctx, editable)])
    def edit(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        ack()
        click = target(context)
        record, plan = click.run, click.run.plan
        modal = blocks.options_modal(
            environments=sorted(ctx.services.config.settings.environments),
            initial_env=record.env,
            initial={
                "to": plan["target"]["sha"][:12],
                "code": plan["code"],
                "db": plan["database"]["action"],
                "no_flags": not plan["flags"],
                "dry_run": plan["dry_run"],
            },
            private_metadata=f"{record.meta.get('channel', '')}|{record.id}",  # the new plan replaces this one
        )
        ctx.open_modal(trigger_id=body["trigger_id"], view=modal, reply=click.reply)

    def decision(move: Decision) -> None:
        @app.action(MOVES[move].value, middleware=[on_click(ctx, allowed(Act(move.value)))])
        def decide(ack: Ack, context: BoltContext) -> None:
            ack()
            click = target(context)
            ctx.hand_off(click.reply, resume, ctx, click.run.id, decision=move, actor=click.user, hint=RUN_HINT)

    for move in MOVES:
        decision(move)

    @app.action(Action.UNDO_FLAGS.value, middleware=[on_click(ctx, allowed(Act.UNDO_FLAGS))])
    def undo_flags(ack: Ack, context: BoltContext) -> None:
        ack()
        click = target(context)
        ctx.hand_off(click.reply, put_flags_back, ctx, click.run.id, actor=click.user, reply=click.reply)

    @app.action(re.compile(rf"^{Action.CHECKLIST_DONE.value}:"), middleware=[on_click(ctx, checklist_item)])
    def checklist_done(ack: Ack, context: BoltContext) -> None:
        ack()
        click = target(context)
        # The break-glass review is signed off (audited, its reminders stop); any other item is ticked.
        if not break_glass.complete_checklist_item(ctx.services, click.run.id, click.key, actor=ctx.actor(click.user)):
            click.reply.say("That item was already done.")
            return
        ctx.submit(notify_checklist, ctx, click.run.id)

    @app.action(Action.BREAK_GLASS.value, middleware=[on_click(ctx, break_glassable)])
    def open_break_glass(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        ack()
        click = target(context)
        modal = blocks_handover.break_glass_modal(
            env=click.run.env,
            risks=risky_choices(Plan.from_dict(click.run.plan)),
            private_metadata=run_value(click.run.id, click.key),
        )
        ctx.open_modal(trigger_id=body["trigger_id"], view=modal, reply=click.reply)

    @app.action(Action.TAKE_OVER.value, middleware=[on_click(ctx, takeable)])
    def open_take_over(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        ack()
        click = target(context)
        status = lifecycle.view(ctx.services, click.run.id).status
        lock = ctx.services.store.lock_for(click.run.env)
        holder = mention(lock.holder if lock else click.run.requested_by)
        text = (
            f"Run `{esc(click.run.id)}` of *{esc(click.run.env)}* is *{status}* and waits for {holder}. "
            "Taking it over makes it yours: the lock is held in your name, and you retry, skip or abort it next."
        )
        modal = blocks_handover.reason_modal(
            kind="take_over", text=text, private_metadata=run_value(click.run.id, click.key)
        )
        ctx.open_modal(trigger_id=body["trigger_id"], view=modal, reply=click.reply)

    @app.action(Action.BREAK_LOCK.value, middleware=[on_click(ctx, lock_breakable)])
    def open_break_lock(ack: Ack, body: dict[str, Any], context: BoltContext) -> None:
        ack()
        click = target(context)
        lock = ctx.services.store.lock_for(click.run.env)
        why = handover.holder_gone(ctx.services, lock)[1] if lock else "it was released meanwhile"
        text = (
            f"The lock of *{esc(click.run.env)}* is held by run `{esc(click.key)}` "
            f"({mention(lock.holder if lock else None)}): {esc(why)}.\nBreaking it frees {esc(click.run.env)} for "
            "a new rollback. A failed or interrupted holder is aborted first (a half-done database swap is "
            "repaired, as an abort does); what it already did stays as it is."
        )
        modal = blocks_handover.reason_modal(
            kind="break_lock", text=text, private_metadata=run_value(click.run.id, click.key)
        )
        ctx.open_modal(trigger_id=body["trigger_id"], view=modal, reply=click.reply)


MOVES = {Decision.RETRY: Action.RETRY, Decision.SKIP: Action.SKIP, Decision.ABORT: Action.ABORT}
