"""Buttons: confirm, cancel, edit, retry / skip / abort, undo flags, checklist done.

Each listener reads ack → parse → engine (or hand off) → render. The button's run was loaded and the
act allowed by the engine in its guard (handlers.guards) before the listener runs; a refusal was
answered there, so a listener only ever sees a click it may carry out.
"""

from __future__ import annotations

import re
from typing import Any

from slack_bolt import Ack, App, BoltContext

from bot.engine import lifecycle
from bot.engine.approval import risky_choices
from bot.engine.lifecycle import Act, Decision
from bot.engine.plan import Plan
from handlers import blocks
from handlers.background import RUN_HINT, approve_and_start, cancel_plan, notify_checklist, put_flags_back, resume
from handlers.context import SlackContext
from handlers.guards import allowed, approvable, checklist_item, editable, on_click, target
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
        if not lifecycle.complete_checklist_item(ctx.services, click.run.id, click.key, actor=ctx.actor(click.user)):
            click.reply.say("That item was already done.")
            return
        ctx.submit(notify_checklist, ctx, click.run.id)


MOVES = {Decision.RETRY: Action.RETRY, Decision.SKIP: Action.SKIP, Decision.ABORT: Action.ABORT}
