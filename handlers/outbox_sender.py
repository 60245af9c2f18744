"""The outbox sender: one thread per replica; the holder of the sender lease drains the outbox to Slack.

Rows go out in id order. When Slack cannot take one now (429, 5xx, no answer), the sender waits
(Retry-After, or a growing backoff) and the rows after it wait too, so each thread reads in order.
When Slack will never take one (unknown channel, invalid blocks), it is marked dead, logged, and the
rest go on. Every post carries the outbox row id in Slack message metadata, for the record.

The client used here has no retry handlers of its own: waiting is this loop's job, and it must never
hold the lease through a long sleep inside one call.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.outbox import Outbox, OutboxRow, SlackMessage
from handlers.outbox_render import render

log = logging.getLogger(__name__)

LEASE_TTL = timedelta(seconds=15)  # well above one call's timeout, so a live holder never loses it mid-send
MAX_BACKOFF_S = 30.0
# Slack's answers that no retry will change: the message is kept in the outbox as "dead", for the record.
PERMANENT = {
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "invalid_blocks",
    "invalid_blocks_format",
    "msg_too_long",
    "no_text",
    "message_not_found",
    "cant_update_message",
    "edit_window_closed",
    "invalid_metadata_format",
    "restricted_action",
}


class OutboxSender:
    def __init__(self, outbox: Outbox, client: WebClient, *, holder: str, idle_s: float = 0.2) -> None:
        self.outbox = outbox
        self.client = client
        self.holder = holder
        self.idle_s = idle_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._failures = 0
        self._sending = threading.Lock()

    def start(self) -> OutboxSender:
        self._thread = threading.Thread(target=self._loop, name="outbox-sender", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        try:
            self.outbox.release_lease(self.holder)
        except Exception:
            log.warning("could not release the outbox lease", exc_info=True)

    def wake(self) -> None:
        """Something was enqueued: look now rather than at the next idle tick."""
        self._wake.set()

    @property
    def busy(self) -> bool:
        return self._sending.locked()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                pause = self.drain_once()
            except Exception:  # the store is unreachable for a moment: keep the thread alive
                log.warning("outbox sender loop failed", exc_info=True)
                pause = 1.0
            self._wake.wait(pause)
            self._wake.clear()

    def drain_once(self) -> float:
        """Send what is due; return how long to wait before looking again."""
        with self._sending:
            if not self.outbox.hold_lease(self.holder, ttl=LEASE_TTL):
                return 1.0  # another replica sends; be ready to take over when its lease runs out
            rows = self.outbox.due()
            for row in rows:
                if self._stop.is_set():
                    return 0.0
                wait = self._send(row)
                if wait is not None:
                    return wait
                if not self.outbox.hold_lease(self.holder, ttl=LEASE_TTL):
                    return 1.0
            return 0.0 if rows else self.idle_s

    def _send(self, row: OutboxRow) -> float | None:
        """Send one row; None to go on with the next, or seconds to pause (the row stays first)."""
        notice = row.notice
        thread_ts = None
        if notice.thread_key:
            parent = self.outbox.message(notice.thread_key)
            if parent is None:
                if self.outbox.waiting_before(row, notice.thread_key):
                    return 0.5
                self.outbox.give_up(row, error=f"its thread ({notice.thread_key}) was never posted")
                return None
            thread_ts = parent.ts
        try:
            text, blocks = render(notice.kind, notice.payload)
        except Exception as error:  # a payload this release cannot render: keep it, marked, and go on
            log.exception("outbox row %s (%s) could not be rendered", row.id, notice.kind)
            self.outbox.give_up(row, error=f"render failed: {type(error).__name__}: {error}")
            return None
        existing = self.outbox.message(notice.message_key) if notice.message_key else None
        try:
            if existing is not None:
                self.client.chat_update(channel=existing.channel, ts=existing.ts, text=text, blocks=blocks)
            else:
                response = self.client.chat_postMessage(
                    channel=notice.channel,
                    thread_ts=thread_ts,
                    text=text,
                    blocks=blocks,
                    metadata={"event_type": "rollback_bot_outbox", "event_payload": {"outbox_id": row.id}},
                )
                if notice.message_key:
                    self.outbox.remember(
                        notice.message_key, SlackMessage(channel=str(response["channel"]), ts=str(response["ts"]))
                    )
        except SlackApiError as error:
            return self._failed(row, error.response.status_code, error.response.get("error"), error.response.headers)
        except Exception as error:  # no answer: connection refused, reset, timed out
            return self._failed(row, None, f"{type(error).__name__}: {error}", {})
        self._failures = 0
        self.outbox.mark_sent(row)
        return None

    def _failed(self, row: OutboxRow, status: int | None, error: Any, headers: Any) -> float | None:
        reason = str(error or f"HTTP {status}")
        if status not in (None, 429) and status < 500 and reason in PERMANENT:
            log.error("Slack refused outbox row %s (%s) for good: %s", row.id, row.notice.kind, reason)
            self.outbox.give_up(row, error=reason)
            return None
        self._failures += 1
        if status == 429:
            wait = _retry_after(headers) or 1.0
        else:
            wait = min(MAX_BACKOFF_S, 0.5 * 2 ** min(self._failures - 1, 6))
        log.warning("Slack could not take outbox row %s now (%s); retrying in %.1fs", row.id, reason, wait)
        self.outbox.retry_later(row, error=reason, delay=timedelta(seconds=wait))
        return wait


def _retry_after(headers: Any) -> float | None:
    for key, value in dict(headers or {}).items():
        if str(key).lower() == "retry-after":
            try:
                return float(value[0] if isinstance(value, list) else value)
            except (TypeError, ValueError):
                return None
    return None


def sender_client(token: str, *, base_url: str) -> WebClient:
    """A WebClient without retry handlers and with a short timeout: the sender does its own waiting."""
    return WebClient(token=token, base_url=base_url, timeout=5, retry_handlers=[])
