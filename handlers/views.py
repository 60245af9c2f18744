"""Modals: the options picker (from `/rollback` alone, or Edit) and the typed confirmation.

A submission is answered in its ack: either Slack's `errors` response (the modal stays open and says
what to fix, through handlers.errors.view_error) or an empty ack that closes it; the slow work is
handed off after.
"""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, BoltContext
from slack_sdk import WebClient

from bot.errors import RollbackError
from handlers import grammar
from handlers.background import RUN_HINT, approve_and_start, start_planning
from handlers.context import SlackContext
from handlers.errors import reply_in_channel, view_error
from handlers.guards import approvable, on_submit, target
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
        typed = _text(view["state"]["values"], Field.TYPED_ENV)
        if typed != submit.run.env:
            view_error(ack, f"Type {submit.run.env} exactly to confirm.", field=Field.TYPED_ENV.value)
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
