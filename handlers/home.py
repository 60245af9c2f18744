"""App Home: what is running now, recent runs, configured environments and their readiness."""

from __future__ import annotations

import logging
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.engine.readiness import environment_readiness
from bot.store import now
from handlers import blocks
from handlers.context import SlackContext

log = logging.getLogger(__name__)


def register(app: App, ctx: SlackContext) -> None:
    @app.event("app_home_opened")
    def home(event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") != "home":
            return
        store = ctx.services.store
        running = store.list_runs(limit=20, statuses=("approved", "running", "failed"))
        recent = store.list_runs(limit=15)
        at = now()
        environments = [
            (
                name,
                f"{env.remote}/{env.branch}, code {env.code}, database {env.database.restore}",
                environment_readiness(store, name, has_database=env.database.engine != "none", at=at),
            )
            for name, env in sorted(ctx.services.config.settings.environments.items())
        ]
        view = blocks.home_view(running=running, recent=recent, environments=environments, now=at)
        try:
            client.views_publish(user_id=event["user"], view=view)
        except SlackApiError as error:
            # Deliberate: the Home tab is a courtesy with nobody waiting on an answer; Slack refusing it
            # (an unknown user, a rate limit it would not lift) is one log line, not an error.
            log.warning("views.publish for %r failed: %s", event["user"], error.response.get("error"))
