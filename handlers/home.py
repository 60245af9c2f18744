"""App Home: what is running now, recent runs, configured environments."""

from __future__ import annotations

from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.store import now
from handlers import blocks
from handlers.context import SlackContext


def register(app: App, ctx: SlackContext) -> None:
    @app.event("app_home_opened")
    def home(event: dict[str, Any], client: WebClient) -> None:
        if event.get("tab", "home") != "home":
            return
        store = ctx.services.store
        running = store.list_runs(limit=20, statuses=("approved", "running", "failed"))
        recent = store.list_runs(limit=15)
        environments = [
            (name, f"{env.remote}/{env.branch}, code {env.code}, database {env.database.restore}")
            for name, env in sorted(ctx.services.config.settings.environments.items())
        ]
        client.views_publish(
            user_id=event["user"],
            view=blocks.home_view(running=running, recent=recent, environments=environments, now=now()),
        )
