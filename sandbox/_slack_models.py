"""What the Slack Web API stand-in records: calls, messages, ephemerals, responses and views.

Readers get deep copies (see `SlackApiStandIn`), so these can stay plain mutable dataclasses that
only the stand-in's request threads change, under its lock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]


class ApiError(Exception):
    """A Web API method refusing a call: becomes `{"ok": false, "error": code, **extra}`."""

    def __init__(self, error: str, *, extra: JSON | None = None, status: int = 200) -> None:
        super().__init__(error)
        self.error = error
        self.extra = extra or {}
        self.status = status


@dataclass(frozen=True)
class RecordedCall:
    """One request to the stand-in, as it arrived (token kept apart from the arguments)."""

    method: str
    args: JSON
    at: float
    token: str | None = None
    status: int = 200
    response: JSON = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))


@dataclass(frozen=True)
class MessageVersion:
    """A message as it was before a `chat.update` (or a `replace_original`) changed it."""

    text: str
    blocks: list[JSON]
    at: float


@dataclass
class StoredMessage:
    """A message in a channel or a thread, as a person in the channel sees it now."""

    channel: str
    ts: str
    text: str
    blocks: list[JSON]
    user: str
    bot_id: str | None = None
    thread_ts: str | None = None
    reply_broadcast: bool = False
    attachments: list[JSON] = field(default_factory=list)
    metadata: JSON | None = None
    unfurl_links: bool | None = None
    unfurl_media: bool | None = None
    replies: list[StoredMessage] = field(default_factory=list)
    history: list[MessageVersion] = field(default_factory=list)
    reactions: dict[str, list[str]] = field(default_factory=dict)
    deleted: bool = False
    posted_at: float = 0.0

    @property
    def edit_count(self) -> int:
        return len(self.history)

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    def as_payload(self) -> JSON:
        """The message object Slack puts in API answers and interaction payloads."""
        payload: JSON = {"type": "message", "ts": self.ts, "text": self.text, "user": self.user}
        if self.blocks:
            payload["blocks"] = self.blocks
        if self.bot_id:
            payload["bot_id"] = self.bot_id
            payload["app_id"] = "A0ROLLBACK"
        if self.thread_ts:
            payload["thread_ts"] = self.thread_ts
        if self.attachments:
            payload["attachments"] = self.attachments
        if self.metadata:
            payload["metadata"] = self.metadata
        if self.history:
            payload["edited"] = {"user": self.user, "ts": self.ts}
        if self.replies:
            payload["reply_count"] = len(self.replies)
            payload["latest_reply"] = self.replies[-1].ts
        return payload


@dataclass
class Ephemeral:
    """A message only one user sees: `chat.postEphemeral`, an ephemeral response_url post, or an ack."""

    channel: str
    user: str
    ts: str
    text: str
    blocks: list[JSON]
    source: str  # "chat.postEphemeral" | "response_url" | "command_ack"
    thread_ts: str | None = None
    history: list[MessageVersion] = field(default_factory=list)
    deleted: bool = False
    errors: list[str] = field(default_factory=list)
    posted_at: float = 0.0


@dataclass(frozen=True)
class ResponseRecord:
    """One POST to a response_url, with what Slack did with it (`effect`)."""

    response_id: str
    channel: str | None
    user: str | None
    message_ts: str | None
    response_type: str
    replace_original: bool
    delete_original: bool
    text: str
    blocks: list[JSON]
    thread_ts: str | None
    body: JSON
    status: int
    effect: str  # "ephemeral" | "in_channel" | "replaced" | "deleted" | "rejected: <why>"
    at: float


@dataclass
class OpenedView:
    """A modal opened or pushed for a user, with its current content and what happened to it."""

    id: str
    user_id: str
    view: JSON
    method: str  # "views.open" | "views.push"
    trigger_id: str
    hash: str
    root_view_id: str
    previous_view_id: str | None = None
    external_id: str | None = None
    history: list[JSON] = field(default_factory=list)
    closed: bool = False
    submission_errors: dict[str, str] = field(default_factory=dict)
    opened_at: float = 0.0

    @property
    def callback_id(self) -> str:
        return str(self.view.get("callback_id", ""))

    @property
    def title(self) -> str:
        title = self.view.get("title")
        return str(title.get("text", "")) if isinstance(title, dict) else ""


@dataclass
class PublishedHome:
    """The App Home tab a user sees: the last view published for them, and how many times."""

    user_id: str
    view: JSON
    view_id: str
    hash: str
    publish_count: int = 1
    history: list[JSON] = field(default_factory=list)
