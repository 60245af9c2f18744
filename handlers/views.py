"""Modals: the options picker (from `/rollback` alone, or Edit) and the typed confirmation."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App
from slack_sdk import WebClient

from bot.engine import lifecycle
from bot.engine.plan import RollbackRequest
from bot.errors import RollbackError
from handlers import grammar
from handlers.background import approve_and_start, check_and_plan
from handlers.context import SlackContext
from handlers.ids import DEFAULT_CHOICE, Choice, Field, View, parse_run_value


def _value(state: dict[str, Any], field: Field) -> Any:
    element = state.get(field.value, {}).get(field.value, {})
    if "selected_option" in element:
        return (element["selected_option"] or {}).get("value")
    if "selected_options" in element:
        return [o.get("value") for o in element["selected_options"] or []]
    return element.get("value")


def register(app: App, ctx: SlackContext) -> None:
    @app.view(View.OPTIONS.value)
    def options(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        user = body["user"]["id"]
        state = view.get("state", {}).get("values", {})
        channel, _, supersedes = (view.get("private_metadata") or "").partition("|")
        env = _value(state, Field.ENV) or ""
        target = (_value(state, Field.TARGET) or "").strip()
        words = [env] + (["to", target] if target else [])
        for option, field in (("--code", Field.CODE), ("--db", Field.DB)):
            chosen = _value(state, field)
            if chosen and chosen != DEFAULT_CHOICE:
                words += [option, chosen]
        checked = set(_value(state, Field.OPTIONS) or [])
        words += [
            flag
            for choice, flag in ((Choice.NO_FLAGS, "--no-flags"), (Choice.DRY_RUN, "--dry-run"))
            if choice in checked
        ]
        try:
            parsed = grammar.parse(" ".join(words))
        except RollbackError as error:
            field = Field.TARGET if target and "commit" in error.message else Field.ENV
            ack(response_action="errors", errors={field.value: error.message})
            return
        ack()
        request = RollbackRequest(
            env=parsed.env or "",
            requested_by=user,
            to=parsed.to,
            code=parsed.code,
            db=parsed.db,
            flags=parsed.flags,
            dry_run=parsed.dry_run,
            source="slack",
        )

        def tell(reply: list[dict[str, Any]], text: str) -> None:
            client.chat_postEphemeral(channel=channel, user=user, text=text, blocks=reply)

        ctx.submit(
            check_and_plan, ctx, request, channel=channel, channel_name="", tell=tell, supersedes=supersedes or None
        )

    @app.view(View.TYPED_CONFIRMATION.value)
    def typed_confirmation(ack: Ack, body: dict[str, Any], view: dict[str, Any], client: WebClient) -> None:
        user = body["user"]["id"]
        run_id, plan_hash = parse_run_value(view.get("private_metadata") or "")
        try:
            # The modal was opened for an approver, but check again: the plan may have expired meanwhile.
            record = lifecycle.check_can_approve(ctx.services, run_id, actor=ctx.actor(user), plan_hash=plan_hash)
        except RollbackError as error:
            ack(response_action="errors", errors={Field.TYPED_ENV.value: error.message[:150]})
            return
        typed = (_value(view.get("state", {}).get("values", {}), Field.TYPED_ENV) or "").strip()
        if typed != record.env:
            ack(
                response_action="errors",
                errors={Field.TYPED_ENV.value: f"Type {record.env} exactly to confirm."},
            )
            return
        ack()
        channel = record.meta.get("channel", "")

        def tell(reply: list[dict[str, Any]], text: str) -> None:
            client.chat_postEphemeral(channel=channel, user=user, text=text, blocks=reply)

        ctx.submit(approve_and_start, ctx, run_id, approver=user, plan_hash=plan_hash, tell=tell)
