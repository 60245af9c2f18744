"""The Slack Web API stand-in in a process of its own, as Slack is: its records stay out of the bot's heap.

In production the Web API is Slack's servers. In one process with the bot, the stand-in keeps every
message, Block Kit payload, response_url and call it was sent (about 10,000 objects a burst), and the
bot's garbage collector walks them all in its full collections: pauses of 20 to 70 ms measured in
the bot's process, which no real deployment has. So the benchmark serves the stand-in from a child
process (a `multiprocessing` manager) and reads it through a proxy; the bot reaches it over HTTP
exactly as before (`SLACK_API_URL`).
"""

from __future__ import annotations

import multiprocessing
from dataclasses import dataclass
from multiprocessing.managers import BaseManager
from typing import Any

from sandbox.slack_api import SlackApiStandIn, StoredMessage
from sandbox.slack_harness import sandbox_slack_api


@dataclass(frozen=True)
class _Facts:
    base_url: str
    token: str
    team_id: str
    team_domain: str
    app_id: str


class _Hosted:
    """Lives in the child process: the stand-in, with its properties read through one method."""

    def __init__(self) -> None:
        self._api = sandbox_slack_api()

    def start(self) -> _Facts:
        api = self._api
        return _Facts(api.start(), api.token, api.team_id, api.team_domain, api.app_id)

    def stop(self) -> None:
        self._api.stop()

    def messages(self, channel: str) -> list[StoredMessage]:
        return self._api.messages(channel)

    def channel_name(self, channel_id: str) -> str:
        return self._api.channel_name(channel_id)

    def user_name(self, user_id: str) -> str:
        return self._api.user_name(user_id)

    def make_response_url(self, *, channel: str, user: str, message_ts: str | None = None) -> str:
        return self._api.make_response_url(channel=channel, user=user, message_ts=message_ts)

    def make_trigger_id(self, *, user_id: str = "U0SOMEONE") -> str:
        return self._api.make_trigger_id(user_id=user_id)


class _Manager(BaseManager):
    pass


_Manager.register("Hosted", callable=_Hosted)


class SlackApiElsewhere:
    """The parts of SlackApiStandIn the benchmark and SlackWorkspace use, answered by the child process."""

    def __init__(self) -> None:
        self._manager = _Manager(ctx=multiprocessing.get_context("spawn"))
        self._hosted: Any = None
        self._facts: _Facts | None = None

    def start(self) -> SlackApiElsewhere:
        self._manager.start()
        self._hosted = self._manager.Hosted()  # type: ignore[attr-defined]  # registered above
        self._facts = self._hosted.start()
        return self

    def stop(self) -> None:
        if self._hosted is not None:
            self._hosted.stop()
        self._manager.shutdown()

    def __enter__(self) -> SlackApiElsewhere:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def facts(self) -> _Facts:
        assert self._facts is not None, "start() first"
        return self._facts

    @property
    def base_url(self) -> str:
        return self.facts.base_url

    @property
    def token(self) -> str:
        return self.facts.token

    @property
    def team_id(self) -> str:
        return self.facts.team_id

    @property
    def team_domain(self) -> str:
        return self.facts.team_domain

    @property
    def app_id(self) -> str:
        return self.facts.app_id

    def messages(self, channel: str) -> list[StoredMessage]:
        return list(self._hosted.messages(channel))

    def channel_name(self, channel_id: str) -> str:
        return str(self._hosted.channel_name(channel_id))

    def user_name(self, user_id: str) -> str:
        return str(self._hosted.user_name(user_id))

    def make_response_url(self, *, channel: str, user: str, message_ts: str | None = None) -> str:
        return str(self._hosted.make_response_url(channel=channel, user=user, message_ts=message_ts))

    def make_trigger_id(self, *, user_id: str = "U0SOMEONE") -> str:
        return str(self._hosted.make_trigger_id(user_id=user_id))

    def as_stand_in(self) -> SlackApiStandIn:
        """For SlackWorkspace(api=...) and Clients, which read only the members above (duck typing)."""
        return self  # type: ignore[return-value]
