"""A local stand-in for the Slack Web API, over real HTTP, for tests and `rollback-bot demo`.

Point a real `slack_sdk.WebClient` (or the Bolt app's client) at `start()`'s URL through
`SLACK_API_URL`. The stand-in answers the methods the bot uses as Slack documents them, refuses what
Slack refuses (bad tokens, unknown channels, Block Kit over its limits, stale trigger_ids), can be
told to rate-limit or fail, and keeps every channel, thread, ephemeral message, response_url post,
modal and Home tab so a test can read the conversation as a person in the channel would.
"""

from __future__ import annotations

import copy
import json
import time
from types import TracebackType
from typing import Any

from sandbox._blockkit_limits import ActionIdScope
from sandbox._slack_chat import record_command_ack
from sandbox._slack_dispatch import Dispatcher
from sandbox._slack_http import BackgroundServer
from sandbox._slack_models import (
    JSON,
    ApiError,
    Ephemeral,
    MessageVersion,
    OpenedView,
    PublishedHome,
    RecordedCall,
    ResponseRecord,
    StoredMessage,
)
from sandbox._slack_render import render_channel, render_view
from sandbox._slack_views import apply_view_response, view_payload
from sandbox._slack_workspace import Workspace

__all__ = [
    "Ephemeral",
    "MessageVersion",
    "OpenedView",
    "PublishedHome",
    "RecordedCall",
    "ResponseRecord",
    "SlackApiStandIn",
    "StoredMessage",
]


class SlackApiStandIn:
    """The Slack Web API for one workspace with one bot installed, on 127.0.0.1.

    `channels`, `users` (ID → name) and `usergroups` (ID → member IDs) make the directory. Left as
    None, any well-formed channel ID (C…/G…/D…) or user ID (U…/W…) is taken to exist; given, only
    those exist and everything else is `channel_not_found` / `user_not_found`.
    """

    def __init__(
        self,
        *,
        token: str = "xoxb-test-token",
        channels: dict[str, str] | None = None,
        users: dict[str, str] | None = None,
        usergroups: dict[str, list[str]] | None = None,
        team_id: str = "T0TEAM",
        team_domain: str = "sandbox",
        bot_user_id: str = "U0ROLLBOT",
        bot_id: str = "B0ROLLBOT",
        app_id: str = "A0ROLLBACK",
        trigger_ttl: float = 3.0,
        action_id_scope: ActionIdScope = "surface",
    ) -> None:
        self._ws = Workspace(
            token=token,
            team_id=team_id,
            team_domain=team_domain,
            bot_user_id=bot_user_id,
            bot_id=bot_id,
            app_id=app_id,
            channels=channels,
            users=users,
            usergroups=usergroups,
            trigger_ttl=trigger_ttl,
            action_id_scope=action_id_scope,
        )
        self._dispatcher = Dispatcher(self._ws)
        self._server = BackgroundServer(self._dispatcher.respond)

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> str:
        """Serve on 127.0.0.1 and a free port; the Web API base URL (ends in "/api/")."""
        return self._server.start() + "api/"

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> SlackApiStandIn:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return self._server.root + "api/"

    @property
    def token(self) -> str:
        return self._ws.token

    @property
    def team_id(self) -> str:
        return self._ws.team_id

    @property
    def team_domain(self) -> str:
        return self._ws.team_domain

    @property
    def bot_user_id(self) -> str:
        return self._ws.bot_user_id

    @property
    def bot_id(self) -> str:
        return self._ws.bot_id

    @property
    def app_id(self) -> str:
        return self._ws.app_id

    # -- shaping the workspace --------------------------------------------------------------------

    def add_channel(self, channel_id: str, name: str) -> None:
        with self._ws.lock:
            self._ws.channels[channel_id] = name

    def add_user(self, user_id: str, name: str) -> None:
        with self._ws.lock:
            self._ws.users[user_id] = name

    def add_usergroup(self, usergroup_id: str, members: list[str]) -> None:
        with self._ws.lock:
            self._ws.usergroups[usergroup_id] = list(members)

    def add_user_message(self, *, channel: str, user: str, text: str, thread_ts: str | None = None) -> str:
        """A message a person posted (the stand-in only sees the bot's own otherwise); its ts."""
        with self._ws.lock:
            channel_id = self._ws.resolve_channel(channel)
            parent = self._ws.thread_parent(channel_id, thread_ts)
            message = StoredMessage(
                channel=channel_id,
                ts=self._ws.next_ts(),
                text=text,
                blocks=[],
                user=user,
                thread_ts=parent.ts if parent else None,
                posted_at=time.time(),
            )
            self._ws.store_message(message, parent)
            return message.ts

    # -- steering ---------------------------------------------------------------------------------

    def rate_limit(self, method: str, *, times: int = 1, retry_after: int = 1) -> None:
        """The next `times` calls to `method` get HTTP 429, `Retry-After`, and `ratelimited`."""
        self._dispatcher.rate_limit(method, times=times, retry_after=retry_after)

    def go_down(self, *, status: int = 503, retry_after: int = 1) -> None:
        """Every Web API call fails (503, or 429 with Retry-After) until `come_back()`: Slack's outage.

        `status=0`: Slack does not answer; each call is held `retry_after` seconds (past a client's timeout).
        """
        self._dispatcher.go_down(status=status, retry_after=retry_after)

    def come_back(self) -> None:
        self._dispatcher.come_back()

    def fail_next(
        self, method: str, error: str, *, times: int = 1, status: int = 200, extra: JSON | None = None
    ) -> None:
        """The next `times` calls to `method` answer `{"ok": false, "error": error, **extra}`."""
        self._dispatcher.fail_next(method, error, times=times, status=status, extra=dict(extra or {}))

    def make_trigger_id(self, *, user_id: str = "U0SOMEONE", age: float = 0.0) -> str:
        """A trigger_id as Slack puts in an interaction; `age` seconds old (to test expiry fast)."""
        with self._ws.lock:
            return self._ws.issue_trigger(user_id=user_id, age=age)

    def make_response_url(
        self, *, channel: str | None = None, user: str | None = None, message_ts: str | None = None
    ) -> str:
        """A response_url for an interaction by `user` in `channel` (on the message at `message_ts`)."""
        with self._ws.lock:
            response_id = self._ws.issue_response_target(channel=channel, user=user, message_ts=message_ts)
        return f"{self._server.root}response/{response_id}"

    def deliver_command_ack(self, *, channel: str, user: str, body: str) -> None:
        """Show a slash command's HTTP answer as Slack does (used by `SlackRequestSender`)."""
        if not body.strip():
            return
        try:
            parsed = _json_object(body)
        except ValueError:
            parsed = {"text": body}
        with self._ws.lock:
            record_command_ack(self._ws, channel=channel, user=user, body=parsed)

    def deliver_view_submission_ack(self, *, view_id: str, status: int, body: str) -> None:
        """Close, update, push or flag the modal as Slack does with a view_submission's answer."""
        with self._ws.lock:
            apply_view_response(self._ws, view_id, status, body)

    # -- reading ----------------------------------------------------------------------------------

    @property
    def calls(self) -> list[RecordedCall]:
        with self._ws.lock:
            return list(self._ws.calls)

    def calls_to(self, method: str) -> list[RecordedCall]:
        with self._ws.lock:
            return [c for c in self._ws.calls if c.method == method]

    def _channel_id(self, channel: str) -> str:
        try:
            return self._ws.resolve_channel(channel)
        except ApiError:
            return channel

    def messages(self, channel: str) -> list[StoredMessage]:
        """The channel's messages, oldest first: top level, plus replies also sent to the channel.

        A deleted message shows only while it still has replies (`deleted=True`), as in Slack.
        """
        with self._ws.lock:
            timeline = self._ws.timelines.get(self._channel_id(channel), [])
            return copy.deepcopy([m for m in timeline if not m.deleted or m.replies])

    def message(self, channel: str, ts: str) -> StoredMessage:
        with self._ws.lock:
            found = self._ws.find_message(self._channel_id(channel), ts)
            if found is None:
                raise KeyError(f"no message {ts} in {channel}")
            return copy.deepcopy(found)

    def message_payload(self, channel: str, ts: str) -> JSON | None:
        """The stored message as Slack puts it in payloads (None if there is no such message)."""
        with self._ws.lock:
            found = self._ws.find_message(self._channel_id(channel), ts)
            return copy.deepcopy(found.as_payload()) if found is not None and not found.deleted else None

    def is_ephemeral(self, ts: str) -> bool:
        with self._ws.lock:
            return self._ws.find_ephemeral(ts) is not None

    def channel_name(self, channel_id: str) -> str:
        with self._ws.lock:
            return self._ws.channel_name(channel_id).removeprefix("@")

    def user_name(self, user_id: str) -> str:
        with self._ws.lock:
            return self._ws.display_name(user_id)

    def thread(self, channel: str, ts: str) -> list[StoredMessage]:
        """The replies in the thread under the message at `ts`, oldest first."""
        return [r for r in self.message(channel, ts).replies if not r.deleted]

    def ephemerals(self, channel: str | None = None, user: str | None = None) -> list[Ephemeral]:
        with self._ws.lock:
            channel_id = self._channel_id(channel) if channel else None
            found = [
                e
                for e in self._ws.ephemerals
                if (channel_id is None or e.channel == channel_id) and (user is None or e.user == user)
            ]
            return copy.deepcopy(found)

    def responses(self) -> list[ResponseRecord]:
        with self._ws.lock:
            return list(self._ws.responses)

    def published_home(self, user_id: str) -> PublishedHome | None:
        with self._ws.lock:
            return copy.deepcopy(self._ws.homes.get(user_id))

    def opened_views(self) -> list[OpenedView]:
        """Every modal opened or pushed, oldest first, each with its current content."""
        with self._ws.lock:
            return copy.deepcopy(list(self._ws.views.values()))

    def view(self, view_id: str) -> OpenedView:
        with self._ws.lock:
            return copy.deepcopy(self._ws.views[view_id])

    def open_view_for(self, user_id: str, *, callback_id: str | None = None) -> OpenedView | None:
        """The modal `user_id` has open now (the top of its stack), optionally with `callback_id`."""
        with self._ws.lock:
            open_views = [
                v
                for v in self._ws.views.values()
                if v.user_id == user_id and not v.closed and callback_id in (None, v.callback_id)
            ]
            return copy.deepcopy(open_views[-1]) if open_views else None

    def view_payload(self, view_id: str) -> JSON | None:
        """The full view object Slack sends back in interaction payloads, for a modal or Home tab."""
        with self._ws.lock:
            opened = self._ws.views.get(view_id)
            if opened is not None:
                ids = {"root_view_id": opened.root_view_id, "previous_view_id": opened.previous_view_id}
                return copy.deepcopy(view_payload(self._ws, opened.id, opened.view, opened.hash, **ids))
            for home in self._ws.homes.values():
                if home.view_id == view_id:
                    return copy.deepcopy(view_payload(self._ws, home.view_id, home.view, home.hash))
            return None

    def render_channel(self, channel: str, *, for_user: str | None = None) -> str:
        """The channel and its threads in plain text; with `for_user`, their ephemerals too."""
        with self._ws.lock:
            return render_channel(self._ws, self._channel_id(channel), for_user=for_user)

    def render_view(self, view_id: str) -> str:
        with self._ws.lock:
            return render_view(self._ws.views[view_id].view, self._ws)

    def render_home(self, user_id: str) -> str:
        with self._ws.lock:
            home = self._ws.homes.get(user_id)
            return render_view(home.view, self._ws) if home else "(no Home tab published)\n"


def _json_object(text: str) -> JSON:
    data: Any = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data
