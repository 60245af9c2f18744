"""The state behind the Slack Web API stand-in: the workspace's directory, channels and their messages.

Every method implementation runs under `Workspace.lock`, so the stand-in's HTTP threads and a test
reading the store never see half a change.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from sandbox._blockkit_limits import MAX_MESSAGE_TEXT, ActionIdScope, message_block_errors
from sandbox._slack_models import (
    JSON,
    ApiError,
    Ephemeral,
    OpenedView,
    PublishedHome,
    RecordedCall,
    ResponseRecord,
    StoredMessage,
)

# When no directory is given, any well-formed ID is taken to exist, so tests that only care about
# messages need not declare their channels; an explicit directory makes everything else not found.
_CHANNEL_ID = re.compile(r"^[CGD][A-Z0-9]{2,}$")
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,}$")
_FIRST_TS_MICROS = 1_700_000_000_000_100
_TS_STEP_MICROS = 100
RESPONSE_URL_MAX_USES = 5
RESPONSE_URL_TTL_SECONDS = 30 * 60


@dataclass
class Trigger:
    user_id: str
    issued: float  # time.monotonic(): the 3-second window must not depend on the wall clock
    exchanged: bool = False


@dataclass
class ResponseTarget:
    """What a response_url was handed out for: the conversation, the user and the original message."""

    channel: str | None
    user: str | None
    message_ts: str | None
    issued: float
    uses: int = 0


class Workspace:
    """One Slack workspace with one installed bot, as the stand-in's methods see it."""

    def __init__(
        self,
        *,
        token: str,
        team_id: str,
        team_domain: str,
        bot_user_id: str,
        bot_id: str,
        app_id: str,
        channels: dict[str, str] | None,
        users: dict[str, str] | None,
        usergroups: dict[str, list[str]] | None,
        trigger_ttl: float,
        action_id_scope: ActionIdScope,
    ) -> None:
        self.lock = threading.RLock()
        self.token = token
        self.team_id = team_id
        self.team_domain = team_domain
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.trigger_ttl = trigger_ttl
        self.action_id_scope: ActionIdScope = action_id_scope
        self.strict_channels = channels is not None
        self.strict_users = users is not None
        self.channels: dict[str, str] = dict(channels or {})
        self.users: dict[str, str] = dict(users or {})
        self.users.setdefault(bot_user_id, "rollback-bot")
        self.usergroups: dict[str, list[str]] = {k: list(v) for k, v in (usergroups or {}).items()}
        self.joined: set[str] = set()
        self.timelines: dict[str, list[StoredMessage]] = {}
        self.index: dict[tuple[str, str], StoredMessage] = {}
        self.ephemerals: list[Ephemeral] = []
        self.responses: list[ResponseRecord] = []
        self.views: dict[str, OpenedView] = {}
        self.homes: dict[str, PublishedHome] = {}
        self.triggers: dict[str, Trigger] = {}
        self.response_targets: dict[str, ResponseTarget] = {}
        self.calls: list[RecordedCall] = []
        self._ts_micros = _FIRST_TS_MICROS - _TS_STEP_MICROS
        self._view_counter = 0
        self._trigger_counter = 0

    # -- identifiers ------------------------------------------------------------------------------

    def next_ts(self) -> str:
        self._ts_micros += _TS_STEP_MICROS
        return f"{self._ts_micros // 1_000_000}.{self._ts_micros % 1_000_000:06d}"

    def next_view_id(self) -> str:
        self._view_counter += 1
        return f"V0VIEW{self._view_counter:04d}"

    @staticmethod
    def new_hash() -> str:
        return f"{int(time.time())}.{secrets.token_hex(4)}"

    def issue_trigger(self, *, user_id: str, age: float) -> str:
        self._trigger_counter += 1
        trigger_id = f"{int(time.time())}.{self._trigger_counter}.{secrets.token_hex(10)}"
        self.triggers[trigger_id] = Trigger(user_id=user_id, issued=time.monotonic() - age)
        return trigger_id

    def exchange_trigger(self, trigger_id: Any) -> Trigger:
        """Spend a trigger as Slack does: once, and only within its few seconds."""
        if not isinstance(trigger_id, str) or not trigger_id:
            raise ApiError("invalid_arguments", extra=_messages(["trigger_id is required"]))
        trigger = self.triggers.get(trigger_id)
        if trigger is None:
            raise ApiError("invalid_trigger_id")
        if time.monotonic() - trigger.issued > self.trigger_ttl:
            raise ApiError("expired_trigger_id")
        if trigger.exchanged:
            raise ApiError("exchanged_trigger_id")
        trigger.exchanged = True
        return trigger

    def issue_response_target(self, *, channel: str | None, user: str | None, message_ts: str | None) -> str:
        response_id = secrets.token_hex(8)
        self.response_targets[response_id] = ResponseTarget(channel, user, message_ts, time.monotonic())
        return response_id

    # -- directory --------------------------------------------------------------------------------

    def resolve_channel(self, value: Any) -> str:
        """A channel ID from an ID, a `#name`, or a user ID (a DM), as chat.postMessage accepts."""
        if not isinstance(value, str) or not value:
            raise ApiError("channel_not_found")
        if value in self.channels:
            return value
        name = value.removeprefix("#")
        for channel_id, channel_name in self.channels.items():
            if channel_name == name:
                return channel_id
        if self.is_known_user(value):
            dm = "D" + value[1:]
            self.channels.setdefault(dm, f"@{self.display_name(value)}")
            return dm
        if not self.strict_channels and _CHANNEL_ID.fullmatch(value):
            self.channels[value] = value.lower()
            return value
        raise ApiError("channel_not_found")

    def channel_name(self, channel_id: str) -> str:
        return self.channels.get(channel_id, channel_id)

    def is_known_user(self, user_id: Any) -> bool:
        if not isinstance(user_id, str):
            return False
        return user_id in self.users or (not self.strict_users and bool(_USER_ID.fullmatch(user_id)))

    def display_name(self, user_id: str) -> str:
        return self.users.get(user_id, user_id)

    # -- messages ---------------------------------------------------------------------------------

    def timeline(self, channel: str) -> list[StoredMessage]:
        return self.timelines.setdefault(channel, [])

    def find_message(self, channel: str, ts: Any) -> StoredMessage | None:
        return self.index.get((channel, ts)) if isinstance(ts, str) else None

    def find_ephemeral(self, ts: Any) -> Ephemeral | None:
        return next((e for e in self.ephemerals if e.ts == ts), None)

    def store_message(self, message: StoredMessage, parent: StoredMessage | None) -> None:
        if parent is not None:
            parent.replies.append(message)
        if parent is None or message.reply_broadcast:
            self.timeline(message.channel).append(message)
        self.index[(message.channel, message.ts)] = message

    def post_as_bot(self, *, channel: str, text: str, blocks: list[JSON], thread_ts: str | None) -> StoredMessage:
        parent = self.thread_parent(channel, thread_ts)
        message = StoredMessage(
            channel=channel,
            ts=self.next_ts(),
            text=text,
            blocks=blocks,
            user=self.bot_user_id,
            bot_id=self.bot_id,
            thread_ts=parent.ts if parent else None,
            posted_at=time.time(),
        )
        self.store_message(message, parent)
        return message

    def thread_parent(self, channel: str, thread_ts: Any) -> StoredMessage | None:
        if thread_ts in (None, ""):
            return None
        parent = self.find_message(channel, thread_ts)
        if parent is None:
            raise ApiError("thread_not_found")
        if parent.is_reply and parent.thread_ts is not None:
            # A reply to a reply lands in the thread it belongs to, as in Slack's clients.
            return self.find_message(channel, parent.thread_ts)
        return parent

    # -- content ----------------------------------------------------------------------------------

    def message_content(self, args: JSON, *, need_content: bool) -> tuple[str | None, list[JSON] | None]:
        """`text` and `blocks` from a call, refused as Slack refuses them."""
        text = args.get("text")
        if text is not None and not isinstance(text, str):
            text = str(text)
        blocks = decode_json_arg(args.get("blocks"), error="invalid_blocks_format")
        if blocks is not None:
            if not isinstance(blocks, list):
                raise ApiError("invalid_blocks_format")
            errors = message_block_errors(blocks, action_id_scope=self.action_id_scope)
            if errors:
                raise ApiError("invalid_blocks", extra={"errors": errors, **_messages(errors)})
        attachments = decode_json_arg(args.get("attachments"), error="invalid_attachments")
        if need_content and not text and not blocks and not attachments:
            raise ApiError("no_text")
        if text is not None and len(text) > MAX_MESSAGE_TEXT:
            raise ApiError("msg_too_long")
        return text, blocks


def decode_json_arg(value: Any, *, error: str) -> Any:
    """Form-encoded calls carry blocks/view/attachments as JSON strings; JSON calls as values."""
    if not isinstance(value, str):
        return value
    if not value.strip():
        return None
    try:
        return json.loads(value)
    except ValueError as exc:
        raise ApiError(error) from exc


def truthy(value: Any) -> bool:
    """Slack's booleans: JSON true, or "true"/"1" in a form field."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _messages(errors: list[str]) -> JSON:
    return {"response_metadata": {"messages": [f"[ERROR] {e}" for e in errors]}}


def error_metadata(errors: list[str]) -> JSON:
    return {"errors": errors, **_messages(errors)}
