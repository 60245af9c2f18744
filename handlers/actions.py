"""Buttons: confirm, cancel, edit, retry / skip / abort, checklist done. Ack, check, hand off, render."""

from __future__ import annotations

import re
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.engine import lifecycle
from bot.engine.approval import risky_choices
from bot.engine.lifecycle import Decision
from bot.engine.plan import Plan
from bot.errors import NotAllowed, RollbackError
from handlers import blocks
from handlers.background import approve_and_start, mark_closed, notify_checklist, put_flags_back, resume
from handlers.context import SlackContext
from handlers.ids import Action, parse_run_value


def register(app: App, ctx: SlackContext) -> None:
    store = ctx.services.store

    def tell_via(respond: Respond) -> Any:
        def tell(reply: list[dict[str, Any]], text: str) -> None:
            respond(response_type="ephemeral", replace_original=False, text=text, blocks=reply)

        return tell

    def refuse(respond: Respond, error: RollbackError) -> None:
        tell_via(respond)(blocks.error_blocks(message=error.message, hint=error.hint), error.message)

    @app.action(Action.CONFIRM.value)
    def confirm(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, client: WebClient) -> None:
        ack()
        user = body["user"]["id"]
        try:
            run_id, plan_hash = parse_run_value(action.get("value", ""))
            record = lifecycle.check_can_approve(ctx.services, run_id, actor=ctx.actor(user), plan_hash=plan_hash)
        except RollbackError as error:
            refuse(respond, error)
            return
        risks = risky_choices(Plan.from_dict(record.plan))
        if risks:
            client.views_open(
                trigger_id=body["trigger_id"],
                view=blocks.typed_confirmation_modal(env=record.env, risks=risks, private_metadata=action["value"]),
            )
            return
        ctx.submit(approve_and_start, ctx, run_id, approver=user, plan_hash=plan_hash, tell=tell_via(respond))

    @app.action(Action.CANCEL.value)
    def cancel(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        user = body["user"]["id"]
        try:
            run_id, _ = parse_run_value(action.get("value", ""))
            lifecycle.cancel(ctx.services, run_id, actor=ctx.actor(user))
        except RollbackError as error:
            refuse(respond, error)
            return
        ctx.submit(mark_closed, ctx, run_id, status="cancelled", detail=f"cancelled by <@{user}>")

    @app.action(Action.EDIT.value)
    def edit(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, client: WebClient) -> None:
        ack()
        try:
            run_id, _ = parse_run_value(action.get("value", ""))
            record = store.get_run(run_id)
            if record.status != "planned":
                raise NotAllowed(f"this rollback is already {record.status}; it can no longer be edited")
        except RollbackError as error:
            refuse(respond, error)
            return
        plan = record.plan
        client.views_open(
            trigger_id=body["trigger_id"],
            view=blocks.options_modal(
                environments=sorted(ctx.services.config.settings.environments),
                initial_env=record.env,
                initial={
                    "to": plan["target"]["sha"][:12],
                    "code": plan["code"],
                    "db": plan["database"]["action"],
                    "no_flags": not plan["flags"],
                    "dry_run": plan["dry_run"],
                },
                private_metadata=f"{record.meta.get('channel', '')}|{run_id}",
            ),
        )

    def approver_run(action: dict[str, Any], *, user: str, act: lifecycle.Act) -> str:
        """The run a button belongs to, if the button is current and the engine lets this person act."""
        run_id, plan_hash = parse_run_value(action.get("value", ""))
        record = store.get_run(run_id)
        if plan_hash != record.plan_hash:
            raise NotAllowed("this button belongs to another plan")
        lifecycle.authorize(ctx.services, record, actor=ctx.actor(user), act=act)
        return run_id

    def decision_handler(decision: Decision) -> Any:
        def handle(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
            ack()
            user = body["user"]["id"]
            try:
                run_id = approver_run(action, user=user, act=lifecycle.Act(decision.value))
            except RollbackError as error:
                refuse(respond, error)
                return
            ctx.submit(resume, ctx, run_id, decision=decision, actor=user, tell=tell_via(respond))

        return handle

    app.action(Action.RETRY.value)(decision_handler(Decision.RETRY))
    app.action(Action.SKIP.value)(decision_handler(Decision.SKIP))
    app.action(Action.ABORT.value)(decision_handler(Decision.ABORT))

    @app.action(Action.UNDO_FLAGS.value)
    def undo_flags(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        user = body["user"]["id"]
        try:
            run_id = approver_run(action, user=user, act=lifecycle.Act.UNDO_FLAGS)
        except RollbackError as error:
            refuse(respond, error)
            return
        ctx.submit(put_flags_back, ctx, run_id, actor=user, tell=tell_via(respond))

    @app.action(re.compile(rf"^{Action.CHECKLIST_DONE.value}:"))
    def checklist_done(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        user = body["user"]["id"]
        run_id, _, item_id = action.get("value", "").partition("|")
        if not lifecycle.complete_checklist_item(ctx.services, run_id, item_id, actor=ctx.actor(user)):
            respond(response_type="ephemeral", replace_original=False, text="That item was already done.")
            return
        ctx.submit(notify_checklist, ctx, run_id)
