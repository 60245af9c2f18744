"""A Slack workspace on this machine: the real app over real HTTP, the Web API stand-in, signed requests.

Tests and `make demo` use it to hold conversations with the bot ("alice types /rollback prod",
"carol clicks Confirm") and to read the channel the way a person would.
"""

from __future__ import annotations

import threading
from typing import Any

import requests

from bot.app import create_app, http_server
from bot.services import Services
from handlers import ids
from handlers.context import SlackContext
from sandbox.slack_api import SlackApiStandIn, StoredMessage
from sandbox.slack_signing import SlackRequestSender

SIGNING_SECRET = "sandbox-signing-secret"
INCIDENT = "C0INC"
GENERAL = "C0GENERAL"
STATUS = "C0STATUS"
CHANNELS = {INCIDENT: "inc-checkout-500s", GENERAL: "general", STATUS: "status"}
USERS = {
    "U0ALICE": "alice (on call)",
    "U0CAROL": "carol (incident commander)",
    "U0DAVE": "dave (DBA)",
    "U0MALLORY": "mallory",
}
USERGROUPS = {"S0ONCALL": ["U0ALICE", "U0DAVE"], "S0DBA": ["U0DAVE"]}


def sandbox_slack_api() -> SlackApiStandIn:
    """The stand-in with the sandbox's channels, people and user groups."""
    return SlackApiStandIn(channels=dict(CHANNELS), users=dict(USERS), usergroups=dict(USERGROUPS))


class SlackWorkspace:
    def __init__(self, services: Services, *, api: SlackApiStandIn | None = None) -> None:
        """`api`: a running stand-in to reuse (Slack outlives the bot across a restart); else one of our own."""
        self.services = services
        self._owns_api = api is None
        self.api = api or sandbox_slack_api()
        self.ctx: SlackContext | None = None
        self._server: Any = None
        self.sender: SlackRequestSender | None = None
        self.app_url = ""

    def start(self) -> SlackWorkspace:
        api_url = self.api.start() if self._owns_api else self.api.base_url
        app, self.ctx = create_app(self.services, token=self.api.token, signing_secret=SIGNING_SECRET, api_url=api_url)
        self._server = http_server(app, host="127.0.0.1", port=0)
        threading.Thread(target=self._server.run, name="slack-app-http", daemon=True).start()
        base = f"http://127.0.0.1:{self._server.effective_port}"
        self.app_url = f"{base}/slack/events"
        self.sender = SlackRequestSender(app_url=self.app_url, signing_secret=SIGNING_SECRET, api=self.api)
        return self

    def stop(self) -> None:
        if self.ctx is not None:
            self.ctx.wait_idle(timeout=60)
            self.ctx.shutdown()
        if self._server is not None:
            self._server.close()
            self._server.task_dispatcher.shutdown()  # close() leaves waitress's worker threads running
        if self._owns_api:
            self.api.stop()

    def __enter__(self) -> SlackWorkspace:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- a conversation -----------------------------------------------------------------------------

    @property
    def slack(self) -> SlackRequestSender:
        assert self.sender is not None, "start() first"
        return self.sender

    def settle(self, timeout: float = 120.0) -> None:
        """Wait until the bot has finished the work it handed to its executor."""
        assert self.ctx is not None
        if not self.ctx.wait_idle(timeout=timeout):
            raise TimeoutError(f"the bot was still busy after {timeout:.0f}s")

    def slash(self, user: str, text: str, *, channel: str = INCIDENT, settle: bool = True) -> requests.Response:
        response = self.slack.slash_command(user_id=user, text=text, channel_id=channel)
        if settle:
            self.settle()
        return response

    def click(
        self, user: str, label: str, *, message: StoredMessage, channel: str = INCIDENT, settle: bool = True
    ) -> requests.Response:
        """`user` clicks the button whose text is `label` on `message`."""
        action_id, value = find_button(message.blocks, label)
        response = self.slack.block_action(
            user_id=user, action_id=action_id, value=value, channel_id=channel, message_ts=message.ts
        )
        if settle:
            self.settle()
        return response

    def type_confirmation(self, user: str, typed: str, *, settle: bool = True) -> requests.Response:
        """`user` types `typed` into the typed-confirmation modal the bot opened for them, and submits."""
        response = type_confirmation(self.slack, self.api, user, typed)
        if settle:
            self.settle()
        return response

    def fill_modal(
        self, user: str, callback_id: str, fields: dict[str, str], *, settle: bool = True
    ) -> requests.Response:
        """`user` types `fields` (block_id = action_id → text) into the modal `callback_id` they have open, and
        submits. The response is the app's answer: `{"response_action": "errors", …}` keeps the modal open."""
        modal = self.api.open_view_for(user, callback_id=callback_id)
        if modal is None:
            raise LookupError(f"no {callback_id} modal is open for {user}")
        state = {field: {field: {"type": "plain_text_input", "value": text}} for field, text in fields.items()}
        response = self.slack.view_submission(
            user_id=user, callback_id=callback_id, view_id=modal.id, state_values=state
        )
        if settle:
            self.settle()
        return response

    def latest(self, channel: str = INCIDENT) -> StoredMessage:
        return self.api.messages(channel)[-1]

    def thread(self, message: StoredMessage, channel: str = INCIDENT) -> list[StoredMessage]:
        return self.api.thread(channel, message.ts)

    def ephemeral_texts(self, user: str, channel: str = INCIDENT) -> list[str]:
        return [e.text for e in self.api.ephemerals(channel=channel, user=user)]

    def transcript(self, channel: str = INCIDENT) -> str:
        return self.api.render_channel(channel)


TYPED_CONFIRMATION = ids.View.TYPED_CONFIRMATION.value  # the modal's callback_id


def type_confirmation(sender: SlackRequestSender, api: SlackApiStandIn, user: str, typed: str) -> requests.Response:
    """`user` types `typed` into the typed-confirmation modal the bot opened for them, and submits."""
    modal = api.open_view_for(user, callback_id=TYPED_CONFIRMATION)
    if modal is None:
        raise LookupError(f"no confirmation modal is open for {user}")
    field = ids.Field.TYPED_ENV.value
    return sender.view_submission(
        user_id=user,
        callback_id=TYPED_CONFIRMATION,
        view_id=modal.id,
        state_values={field: {field: {"type": "plain_text_input", "value": typed}}},  # block_id, action_id
    )


def find_button(blocks: list[dict[str, Any]] | None, label: str) -> tuple[str, str]:
    """(action_id, value) of the button labelled `label` (exact, or ignoring a trailing '…')."""
    for block in blocks or []:
        elements = list(block.get("elements", []))
        if isinstance(block.get("accessory"), dict):
            elements.append(block["accessory"])
        for element in elements:
            if element.get("type") != "button":
                continue
            text = element.get("text", {}).get("text", "")
            if text == label or text.rstrip("…").strip() == label:
                return element["action_id"], element.get("value", "")
    labels = [
        e.get("text", {}).get("text")
        for b in blocks or []
        for e in [*b.get("elements", []), b.get("accessory") or {}]
        if isinstance(e, dict) and e.get("type") == "button"
    ]
    raise LookupError(f"no button {label!r}; the message has {labels}")
