"""`/rollback`: ack at once, parse, hand slow work to the executor, render. Nothing else."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.engine import lifecycle
from bot.engine.plan import RollbackRequest
from bot.errors import RollbackError
from handlers import blocks, grammar
from handlers.background import check_and_plan, mark_closed
from handlers.context import SlackContext


def register(app: App, ctx: SlackContext) -> None:
    @app.command("/rollback")
    def rollback(ack: Ack, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        user, channel = command["user_id"], command["channel_id"]
        try:
            parsed = grammar.parse(command.get("text", ""))
        except RollbackError as error:
            ack(
                response_type="ephemeral",
                text=error.message,
                blocks=blocks.error_blocks(message=error.message, hint=error.hint),
            )
            return
        envs = sorted(ctx.services.config.settings.environments)
        if parsed.kind == "help":
            ack(response_type="ephemeral", text=grammar.USAGE, blocks=blocks.help_blocks(environments=envs))
        elif parsed.kind in ("status", "history"):
            ack(response_type="ephemeral", text=_runs_text(ctx, parsed.kind))
        elif parsed.kind == "cancel":
            ack(response_type="ephemeral", text="Cancelling…")
            ctx.submit(_cancel, ctx, run_id=parsed.run_id, user=user, channel=channel, respond=respond)
        elif parsed.kind == "modal":
            ack()
            client.views_open(
                trigger_id=command["trigger_id"],
                view=blocks.options_modal(environments=envs, private_metadata=channel),
            )
        else:
            dry = " (dry run)" if parsed.dry_run else ""
            ack(response_type="ephemeral", text=f"Got it: checking and planning a rollback of {parsed.env}{dry}…")
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
                respond(response_type="ephemeral", replace_original=False, text=text, blocks=reply)

            ctx.submit(
                check_and_plan, ctx, request, channel=channel, channel_name=command.get("channel_name", ""), tell=tell
            )


def _cancel(ctx: SlackContext, *, run_id: str | None, user: str, channel: str, respond: Respond) -> None:
    store = ctx.services.store
    if run_id is None:
        waiting = [r for r in store.list_runs(limit=50, statuses=("planned",)) if r.meta.get("channel") == channel]
        if not waiting:
            respond(
                response_type="ephemeral",
                replace_original=False,
                text="There is no plan waiting for approval in this channel.",
            )
            return
        run_id = waiting[0].id
    try:
        lifecycle.cancel(ctx.services, run_id, actor=ctx.actor(user))
    except RollbackError as error:
        respond(
            response_type="ephemeral",
            replace_original=False,
            text=error.message,
            blocks=blocks.error_blocks(message=error.message, hint=error.hint),
        )
        return
    mark_closed(ctx, run_id, status="cancelled", detail=f"cancelled by <@{user}>")
    respond(response_type="ephemeral", replace_original=False, text=f"Cancelled {run_id}: nothing was changed.")


def _runs_text(ctx: SlackContext, kind: str) -> str:
    store = ctx.services.store
    if kind == "status":
        runs = store.list_runs(limit=20, statuses=("planned", "approved", "running", "failed"))
        if not runs:
            return "No rollback is running or waiting."
    else:
        runs = store.list_runs(limit=10)
        if not runs:
            return "No rollbacks yet."
    lines = []
    for record in runs:
        shown = lifecycle.view(ctx.services, record.id).status
        plan = record.plan
        lines.append(
            f"• `{record.id}` {record.env}: *{shown}*, "
            f"`{plan['deployed']['sha'][:7]}` → `{plan['target']['sha'][:7]}`, "
            f"asked by <@{record.requested_by}> at {record.created_at:%H:%M} UTC"
        )
    return "\n".join(lines)
