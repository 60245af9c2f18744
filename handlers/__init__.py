"""Slack listeners and Block Kit. `register(app, ctx)` wires them all onto a Bolt app."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App, BoltResponse

from handlers.context import SlackContext

log = logging.getLogger(__name__)

__all__ = ["SlackContext", "register"]


def register(app: App, ctx: SlackContext) -> None:
    from handlers import actions, commands, home, views

    @app.middleware
    def ignore_slack_retries(request: Any, next: Any) -> Any:
        # Slack retries an event it thinks we missed; our listeners ack at once, so a retry is a duplicate.
        if request.headers.get("x-slack-retry-num") and request.body.get("type") == "event_callback":
            return BoltResponse(status=200, body="")
        return next()

    commands.register(app, ctx)
    actions.register(app, ctx)
    views.register(app, ctx)
    home.register(app, ctx)

    @app.error
    def on_error(error: Exception, body: dict[str, Any]) -> BoltResponse:
        # The one place an unexpected error becomes an answer: logged in full, a short reply, never a 5xx.
        log.error("unhandled error in a Slack listener", exc_info=error)
        return BoltResponse(status=200, body="Sorry, something went wrong on our side; it has been logged.")
