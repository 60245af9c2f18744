"""Buttons: confirm, cancel, edit, retry / skip / abort, checklist done. Ack, check, hand off, render."""

from __future__ import annotations

import re
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.engine import flows
from bot.engine.approval import is_listed, risky_choices
from bot.engine.plan import Plan
from bot.errors import NotAllowed, RollbackError
from bot.store import now
from handlers import blocks
from handlers.context import SlackContext
from handlers.background import approve_and_start, ensure_can_approve, mark_closed, put_flags_back, resume
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
            record = store.get_run(run_id)
            ensure_can_approve(ctx, record, user=user, plan_hash=plan_hash)
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
        ctx.submit(approve_and_start, ctx, run_id, approver=user, tell=tell_via(respond))

    @app.action(Action.CANCEL.value)
    def cancel(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        user = body["user"]["id"]
        try:
            run_id, _ = parse_run_value(action.get("value", ""))
            record = store.get_run(run_id)
            settings = ctx.services.config.environment(record.env)
            if (
                user != record.requested_by
                and settings.approvers
                and not is_listed(user, settings.approvers, ctx.members_of)
            ):
                raise NotAllowed("only the requester or an approver can cancel this plan")
            flows.cancel(ctx.services, run_id, actor=user)
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

    def approver_run(action: dict[str, Any], *, user: str, doing: str) -> str:
        """The run a button belongs to, if this person is an approver and the button is current."""
        run_id, plan_hash = parse_run_value(action.get("value", ""))
        record = store.get_run(run_id)
        settings = ctx.services.config.environment(record.env)
        if plan_hash != record.plan_hash:
            raise NotAllowed("this button belongs to another plan")
        if settings.approvers and not is_listed(user, settings.approvers, ctx.members_of):
            raise NotAllowed(f"only approvers of {record.env} can {doing}")
        return run_id

    def decision_handler(decision: str) -> Any:
        def handle(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
            ack()
            user = body["user"]["id"]
            try:
                run_id = approver_run(action, user=user, doing=f"{decision} a failed rollback")
            except RollbackError as error:
                refuse(respond, error)
                return
            ctx.submit(resume, ctx, run_id, decision=decision, actor=user, tell=tell_via(respond))

        return handle

    app.action(Action.RETRY.value)(decision_handler("retry"))
    app.action(Action.SKIP.value)(decision_handler("skip"))
    app.action(Action.ABORT.value)(decision_handler("abort"))

    @app.action(Action.UNDO_FLAGS.value)
    def undo_flags(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond) -> None:
        ack()
        user = body["user"]["id"]
        try:
            run_id = approver_run(action, user=user, doing="put flags back")
        except RollbackError as error:
            refuse(respond, error)
            return
        channel = body.get("channel", {}).get("id") or body.get("container", {}).get("channel_id", "")
        message_ts = body.get("container", {}).get("message_ts", "")
        ctx.submit(
            put_flags_back, ctx, run_id, actor=user, channel=channel, message_ts=message_ts, tell=tell_via(respond)
        )

    @app.action(re.compile(rf"^{Action.CHECKLIST_DONE.value}:"))
    def checklist_done(
        ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond, client: WebClient
    ) -> None:
        ack()
        user = body["user"]["id"]
        run_id, _, item_id = action.get("value", "").partition("|")
        if not store.mark_done(run_id, item_id, by=user):
            respond(response_type="ephemeral", replace_original=False, text="That item was already done.")
            return
        store.record(actor=user, action="checklist.done", run_id=run_id, detail=item_id)
        channel = body.get("channel", {}).get("id") or body.get("container", {}).get("channel_id")
        message_ts = body.get("container", {}).get("message_ts") or body.get("message", {}).get("ts")
        if channel and message_ts:
            items = store.checklist(run_id)
            client.chat_update(
                channel=channel,
                ts=message_ts,
                text="Post-rollback checklist",
                blocks=blocks.checklist_blocks(run_id=run_id, items=items, now=now()),
            )
