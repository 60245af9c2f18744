"""Requests to a Bolt app made exactly as Slack makes them: same bodies, same headers, same signature.

Slack signs each request with `v0=` + HMAC-SHA256(signing secret, "v0:{timestamp}:{raw body}") in
`X-Slack-Signature` and the Unix time in `X-Slack-Request-Timestamp`; Bolt refuses anything unsigned
or older than five minutes. `post()` lets a test forge either, or add the `X-Slack-Retry-*` headers
Slack sends when it retries an event. Given the API stand-in, the sender also hands out response
URLs and trigger_ids the stand-in will honour, fills interaction payloads from the stored message or
view, and shows a slash command's answer to the user as Slack would.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

import requests

from sandbox.slack_api import SlackApiStandIn

JSON = dict[str, Any]
FORM = "application/x-www-form-urlencoded"
JSON_TYPE = "application/json"


def compute_signature(*, signing_secret: str, timestamp: int, body: bytes) -> str:
    """Slack's v0 request signature for `body` sent at `timestamp`."""
    base = f"v0:{timestamp}:".encode() + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


def _find_element(blocks: Any, action_id: str) -> tuple[str | None, JSON | None]:
    """The block_id and element of the interactive element `action_id` in a message or view."""
    for block in blocks if isinstance(blocks, list) else []:
        if not isinstance(block, dict):
            continue
        elements = [block.get("accessory"), block.get("element"), *(block.get("elements") or [])]
        for element in elements:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return block.get("block_id"), element
    return None, None


class SlackRequestSender:
    """Sends slash commands, button clicks, modal submissions and events to a Bolt app, signed."""

    def __init__(
        self,
        *,
        app_url: str,
        signing_secret: str,
        api: SlackApiStandIn | None = None,
        team_id: str | None = None,
        team_domain: str | None = None,
        api_app_id: str | None = None,
        verification_token: str = "legacy-verification-token",
        timeout: float = 10.0,
    ) -> None:
        self.app_url = app_url
        self.signing_secret = signing_secret
        self.api = api
        # Left out, the workspace is the stand-in's (or Slack-looking defaults without one).
        self.team_id = team_id or (api.team_id if api else "T0TEAM")
        self.team_domain = team_domain or (api.team_domain if api else "sandbox")
        self.api_app_id = api_app_id or (api.app_id if api else "A0ROLLBACK")
        self.verification_token = verification_token
        self.timeout = timeout

    # -- the wire ---------------------------------------------------------------------------------

    def post(
        self,
        body: bytes,
        content_type: str,
        *,
        timestamp: int | None = None,
        signature: str | None = None,
        retry_num: int | None = None,
        retry_reason: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> requests.Response:
        """POST `body` to the app, signed for `timestamp` (now) unless `signature` is forced."""
        sent_at = int(time.time()) if timestamp is None else timestamp
        all_headers = {
            "Content-Type": content_type,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "X-Slack-Request-Timestamp": str(sent_at),
            "X-Slack-Signature": signature
            or compute_signature(signing_secret=self.signing_secret, timestamp=sent_at, body=body),
        }
        if retry_num is not None:
            all_headers["X-Slack-Retry-Num"] = str(retry_num)
        if retry_reason is not None:
            all_headers["X-Slack-Retry-Reason"] = retry_reason
        all_headers.update(headers or {})
        return requests.post(self.app_url, data=body, headers=all_headers, timeout=self.timeout)

    def _post_form(self, fields: dict[str, str], **options: Any) -> requests.Response:
        return self.post(urlencode(fields).encode(), FORM, **options)

    def _post_payload(self, payload: JSON, **options: Any) -> requests.Response:
        # Interactivity payloads arrive as one form field holding JSON, exactly like Slack's.
        return self._post_form({"payload": json.dumps(payload)}, **options)

    def _post_json(self, payload: JSON, **options: Any) -> requests.Response:
        return self.post(json.dumps(payload).encode(), JSON_TYPE, **options)

    # -- what Slack sends -------------------------------------------------------------------------

    def _trigger(self, user_id: str, trigger_id: str | None) -> str:
        if trigger_id is not None:
            return trigger_id
        if self.api is not None:
            return self.api.make_trigger_id(user_id=user_id)
        return f"{int(time.time())}.1.{secrets.token_hex(10)}"

    def _response_url(self, *, channel: str | None, user: str, message_ts: str | None) -> str:
        if self.api is not None:
            return self.api.make_response_url(channel=channel, user=user, message_ts=message_ts)
        return f"https://hooks.slack.com/actions/{self.team_id}/1/{secrets.token_hex(12)}"

    def _user(self, user_id: str) -> JSON:
        name = user_id
        if self.api is not None:
            info = self.api.user_name(user_id)
            name = info or user_id
        return {"id": user_id, "username": name, "name": name, "team_id": self.team_id}

    def _team(self) -> JSON:
        return {"id": self.team_id, "domain": self.team_domain}

    def slash_command(
        self,
        *,
        user_id: str,
        text: str,
        channel_id: str,
        command: str = "/rollback",
        channel_name: str = "",
        trigger_id: str | None = None,
        **options: Any,
    ) -> requests.Response:
        """`command text` typed by `user_id` in `channel_id`; the ack is shown to them via the stand-in."""
        if not channel_name and self.api is not None:
            channel_name = self.api.channel_name(channel_id)
        fields = {
            "token": self.verification_token,
            "team_id": self.team_id,
            "team_domain": self.team_domain,
            "channel_id": channel_id,
            "channel_name": channel_name or channel_id.lower(),
            "user_id": user_id,
            "user_name": str(self._user(user_id)["name"]),
            "command": command,
            "text": text,
            "api_app_id": self.api_app_id,
            "is_enterprise_install": "false",
            "response_url": self._response_url(channel=channel_id, user=user_id, message_ts=None),
            "trigger_id": self._trigger(user_id, trigger_id),
        }
        response = self._post_form(fields, **options)
        if self.api is not None and response.status_code == 200:
            self.api.deliver_command_ack(channel=channel_id, user=user_id, body=response.text)
        return response

    def block_action(
        self,
        *,
        user_id: str,
        action_id: str,
        value: str,
        channel_id: str,
        message_ts: str,
        block_id: str | None = None,
        message: JSON | None = None,
        trigger_id: str | None = None,
        **options: Any,
    ) -> requests.Response:
        """`user_id` clicks the button `action_id` on the message at `message_ts` in `channel_id`.

        With the stand-in, `message` defaults to the stored message (or marks the click as on an
        ephemeral one), and the button's block_id and label come from it.
        """
        is_ephemeral = False
        thread_ts: str | None = None
        if message is None and self.api is not None:
            found = self.api.message_payload(channel_id, message_ts)
            is_ephemeral = found is None and self.api.is_ephemeral(message_ts)
            message = found
        if message is not None:
            thread_ts = message.get("thread_ts")
        found_block_id, element = _find_element((message or {}).get("blocks"), action_id)
        action: JSON = {
            "action_id": action_id,
            "block_id": block_id or found_block_id or "b",
            "value": value,
            "type": (element or {}).get("type", "button"),
            "action_ts": f"{time.time():.6f}",
        }
        if element is not None and isinstance(element.get("text"), dict):
            action["text"] = element["text"]
        container: JSON = {
            "type": "message",
            "message_ts": message_ts,
            "channel_id": channel_id,
            "is_ephemeral": is_ephemeral,
        }
        if thread_ts:
            container["thread_ts"] = thread_ts
        channel_name = self.api.channel_name(channel_id) if self.api is not None else channel_id.lower()
        payload: JSON = {
            "type": "block_actions",
            "user": self._user(user_id),
            "api_app_id": self.api_app_id,
            "token": self.verification_token,
            "container": container,
            "trigger_id": self._trigger(user_id, trigger_id),
            "team": self._team(),
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel_id, "name": channel_name},
            "state": {"values": {}},
            "response_url": self._response_url(channel=channel_id, user=user_id, message_ts=message_ts),
            "actions": [action],
        }
        if message is not None:
            payload["message"] = message  # Slack leaves it out for clicks on ephemeral messages
        return self._post_payload(payload, **options)

    def view_block_action(
        self,
        *,
        user_id: str,
        action_id: str,
        value: str = "",
        view_id: str | None = None,
        block_id: str | None = None,
        trigger_id: str | None = None,
        **options: Any,
    ) -> requests.Response:
        """A click inside a modal (`view_id`), or in `user_id`'s Home tab when `view_id` is None."""
        view: JSON | None = None
        if self.api is not None:
            if view_id is None:
                home = self.api.published_home(user_id)
                view_id = home.view_id if home else None
            view = self.api.view_payload(view_id) if view_id else None
        view_id = view_id or "V0UNKNOWN"
        found_block_id, element = _find_element((view or {}).get("blocks"), action_id)
        action: JSON = {
            "action_id": action_id,
            "block_id": block_id or found_block_id or "b",
            "value": value,
            "type": (element or {}).get("type", "button"),
            "action_ts": f"{time.time():.6f}",
        }
        if element is not None and isinstance(element.get("text"), dict):
            action["text"] = element["text"]
        payload: JSON = {
            "type": "block_actions",
            "user": self._user(user_id),
            "api_app_id": self.api_app_id,
            "token": self.verification_token,
            "container": {"type": "view", "view_id": view_id},
            "trigger_id": self._trigger(user_id, trigger_id),
            "team": self._team(),
            "enterprise": None,
            "is_enterprise_install": False,
            "view": view or {"id": view_id, "type": "modal", "blocks": [], "state": {"values": {}}},
            "actions": [action],
        }
        return self._post_payload(payload, **options)

    def view_submission(
        self,
        *,
        user_id: str,
        callback_id: str,
        private_metadata: str = "",
        state_values: JSON | None = None,
        view_id: str | None = None,
        trigger_id: str | None = None,
        **options: Any,
    ) -> requests.Response:
        """`user_id` submits the modal `callback_id` with `state_values` (Slack's state.values shape).

        With the stand-in, the modal defaults to the one the user has open with that callback_id,
        and the app's answer (close, errors, update, push, clear) is applied to it as Slack would.
        """
        view: JSON | None = None
        if self.api is not None:
            if view_id is None:
                opened = self.api.open_view_for(user_id, callback_id=callback_id)
                view_id = opened.id if opened else None
            view = self.api.view_payload(view_id) if view_id else None
        view_id = view_id or "V1"
        view = dict(view or {"type": "modal", "blocks": [], "title": {"type": "plain_text", "text": "Modal"}})
        view.update(
            {
                "id": view_id,
                "team_id": self.team_id,
                "callback_id": callback_id,
                "private_metadata": private_metadata or view.get("private_metadata", ""),
                "state": {"values": state_values or {}},
            }
        )
        payload: JSON = {
            "type": "view_submission",
            "team": self._team(),
            "user": self._user(user_id),
            "api_app_id": self.api_app_id,
            "token": self.verification_token,
            "trigger_id": self._trigger(user_id, trigger_id),
            "view": view,
            "response_urls": [],
            "enterprise": None,
            "is_enterprise_install": False,
        }
        response = self._post_payload(payload, **options)
        if self.api is not None:
            self.api.deliver_view_submission_ack(view_id=view_id, status=response.status_code, body=response.text)
        return response

    def event(
        self, *, event: JSON, event_id: str | None = None, event_time: int | None = None, **options: Any
    ) -> requests.Response:
        """An Events API `event_callback` envelope around `event` (e.g. app_home_opened)."""
        envelope: JSON = {
            "token": self.verification_token,
            "team_id": self.team_id,
            "api_app_id": self.api_app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{secrets.token_hex(5).upper()}",
            "event_time": event_time or int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.api.bot_user_id if self.api is not None else "U0ROLLBOT",
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
        }
        return self._post_json(envelope, **options)

    def app_home_opened(self, *, user_id: str, **options: Any) -> requests.Response:
        event = {
            "type": "app_home_opened",
            "user": user_id,
            "channel": "D" + user_id[1:],
            "tab": "home",
            "event_ts": f"{time.time():.6f}",
        }
        return self.event(event=event, **options)

    def url_verification(self, challenge: str, **options: Any) -> requests.Response:
        return self._post_json(
            {"token": self.verification_token, "challenge": challenge, "type": "url_verification"}, **options
        )
