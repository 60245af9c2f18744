"""Slack listeners and Block Kit. `register(app, ctx)` wires them all onto a Bolt app.

A request meets, in order: Bolt's signature check; `handlers.payloads.check_shape` (malformed → 400,
passed to the App as `before_authorize`); `ignore_slack_retries`; a listener's guard
(handlers.guards: its run loaded, the act allowed by the engine); the listener (ack → parse → engine
or hand-off → render). Expected refusals are answered through handlers.errors; `on_error` below is
the one path for what nobody expected.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import App, BoltResponse
from slack_bolt.middleware import Middleware
from slack_bolt.request import BoltRequest

from handlers.burst import freeze_startup_heap
from handlers.context import SlackContext
from handlers.errors import UNEXPECTED, reply_to
from handlers.payloads import check_shape

log = logging.getLogger(__name__)

__all__ = ["SlackContext", "check_shape", "register"]


class IgnoreSlackRetries(Middleware):
    """Global middleware: Slack retries an event it thinks we missed; our listeners ack at once, so a retry
    is a duplicate. Every verified request also tells `ctx.activity` it is being acked, so background
    planning lets a burst of acks pass first (handlers.burst).

    A `Middleware` subclass rather than a function: Bolt builds a function middleware's arguments from
    the body on every request, which is time taken from every ack.
    """

    def __init__(self, ctx: SlackContext) -> None:
        self.ctx = ctx

    def process(self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse | None:
        self.ctx.activity.touch()
        if req.headers.get("x-slack-retry-num") and req.body.get("type") == "event_callback":
            return BoltResponse(status=200, body="")
        return next()


def register(app: App, ctx: SlackContext) -> None:
    from handlers import actions, commands, home, views

    app.use(IgnoreSlackRetries(ctx))

    commands.register(app, ctx)
    actions.register(app, ctx)
    views.register(app, ctx)
    home.register(app, ctx)
    freeze_startup_heap()  # once per process: what the app is built from never dies (handlers.burst)

    @app.error
    def on_error(error: Exception, body: Any, response: BoltResponse | None, respond: Any) -> BoltResponse | None:
        # What nobody expected: logged in full once, a short answer to the person, never a 5xx.
        log.error("unhandled error in a Slack listener", exc_info=error)
        if response is None:  # the listener had acked already: the apology goes where its answers would
            if isinstance(body, dict):
                reply_to(body, respond=respond, client=ctx.client).error(error, hint="see `/rollback status`")
            return None
        return BoltResponse(status=200, body=UNEXPECTED)
