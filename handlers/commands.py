"""`/rollback`: parse, ack (the ack carries quick answers and refusals), hand slow work off, render."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk import WebClient

from bot.engine import rehearsal
from bot.engine.run_status import shown_env, shown_status
from bot.errors import RollbackError
from handlers import blocks, grammar
from handlers.background import cancel_waiting, start_planning
from handlers.context import SlackContext
from handlers.errors import ack_error, reply_to


def register(app: App, ctx: SlackContext) -> None:
    @app.command("/rollback")
    def rollback(ack: Ack, command: dict[str, Any], respond: Respond, client: WebClient) -> None:
        user, channel = command["user_id"], command["channel_id"]
        try:
            parsed = grammar.parse(command.get("text", ""))
        except RollbackError as error:
            ack_error(ack, error)  # a slash command's ack is its first answer: the refusal rides on it
            return
        reply = reply_to(command, respond=respond, client=client)
        envs = sorted(ctx.services.config.settings.environments)
        if parsed.kind == "help":
            ack(response_type="ephemeral", text=grammar.USAGE, blocks=blocks.help_blocks(environments=envs))
        elif parsed.kind in ("status", "history"):
            kind = parsed.kind
            ack(response_type="ephemeral", text=ctx.reads.read(("runs", kind), lambda: _runs_text(ctx, kind)))
        elif parsed.kind == "cancel":
            ack(response_type="ephemeral", text="Cancelling…")
            ctx.hand_off(reply, cancel_waiting, ctx, run_id=parsed.run_id, user=user, channel=channel, reply=reply)
        elif parsed.kind == "rehearse":
            env = parsed.env or ""
            ack(response_type="ephemeral", text=f"Got it: rehearsing the rollback of {env} against stand-ins…")
            ctx.hand_off(reply, rehearse_and_post, ctx, env=env, user=user, channel=channel, hint=REHEARSAL_HINT)
        elif parsed.kind == "modal":
            ack()
            modal = blocks.options_modal(environments=envs, private_metadata=channel)
            ctx.open_modal(trigger_id=command["trigger_id"], view=modal, reply=reply)
        else:
            dry = " (dry run)" if parsed.dry_run else ""
            ack(response_type="ephemeral", text=f"Got it: checking and planning a rollback of {parsed.env}{dry}…")
            channel_name = command.get("channel_name", "")
            start_planning(ctx, parsed, user=user, channel=channel, channel_name=channel_name, reply=reply)


REHEARSAL_HINT = "nothing of production was changed; try again"


def rehearse_and_post(ctx: SlackContext, *, env: str, user: str, channel: str) -> None:
    """After the ack: may this person rehearse `env` (as they may ask for its rollback)? Then rehearse it, its
    story told in this channel through the outbox: a message, and each step in its thread, then the result."""
    services = ctx.services
    rehearsal.check_may_rehearse(services, env, actor=ctx.actor(user))
    story = rehearsal.RehearsalStory(services, channel=channel, env=env, requested_by=user)
    ctx.wake_sender()
    try:
        check = rehearsal.rehearse(services, env, requested_by=user, source="slack", reporters=[story], say=story.say)
    except RollbackError as error:
        story.refused(error.message)  # the message in the channel says so; the raise tells the person who asked
        raise
    story.finished(check)


def _runs_text(ctx: SlackContext, kind: str) -> str:
    """Answered before the ack, so one read of the store: the status shown (with 'interrupted' derived)
    comes from the records just listed, not from a second read of each run and its steps.
    """
    store = ctx.services.store
    heartbeat_timeout = ctx.services.config.settings.bot.heartbeat_timeout
    if kind == "status":
        # A dry run is recorded "planned" but waits for nobody: it is not running or waiting.
        runs = store.list_runs(limit=20, statuses=("planned", "approved", "running", "failed"), dry_run=False)
        if not runs:
            return "No rollback is running or waiting."
    else:
        runs = store.list_runs(limit=10)
        if not runs:
            return "No rollbacks yet."
    lines = []
    for record in runs:
        shown = shown_status(record, heartbeat_timeout=heartbeat_timeout)
        plan = record.plan
        lines.append(
            f"• `{record.id}` {shown_env(record.env)}: *{shown}*, "
            f"`{plan['deployed']['sha'][:7]}` → `{plan['target']['sha'][:7]}`, "
            f"asked by <@{record.requested_by}> at {record.created_at:%H:%M} UTC"
        )
    return "\n".join(lines)
