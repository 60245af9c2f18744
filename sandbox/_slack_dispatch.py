"""Routing the stand-in's HTTP requests: Web API methods (auth, rate limits, injected failures) and
response_url posts, each recorded for the tests."""

from __future__ import annotations

import copy
import time
from collections import deque
from collections.abc import Callable

from sandbox._slack_chat import (
    chat_delete,
    chat_post_ephemeral,
    chat_post_message,
    chat_update,
    post_response,
    reactions_add,
)
from sandbox._slack_http import Reply, Request, parse_call, parse_webhook_body
from sandbox._slack_models import JSON, ApiError, RecordedCall
from sandbox._slack_views import (
    auth_test,
    conversations_info,
    conversations_join,
    usergroups_users_list,
    users_info,
    views_open,
    views_publish,
    views_push,
    views_update,
)
from sandbox._slack_workspace import Workspace

Method = Callable[[Workspace, JSON], JSON]
METHODS: dict[str, Method] = {
    "auth.test": auth_test,
    "chat.postMessage": chat_post_message,
    "chat.update": chat_update,
    "chat.postEphemeral": chat_post_ephemeral,
    "chat.delete": chat_delete,
    "conversations.info": conversations_info,
    "conversations.join": conversations_join,
    "users.info": users_info,
    "usergroups.users.list": usergroups_users_list,
    "views.open": views_open,
    "views.update": views_update,
    "views.push": views_push,
    "views.publish": views_publish,
    "reactions.add": reactions_add,
}


class Dispatcher:
    """Answers each request as Slack would, after any rate limit or failure a test asked for."""

    def __init__(self, ws: Workspace) -> None:
        self._ws = ws
        self._rate_limits: dict[str, deque[int]] = {}
        self._failures: dict[str, deque[tuple[str, int, JSON]]] = {}
        self._outage: tuple[int, int] | None = None  # (HTTP status, Retry-After) while Slack is "down"

    def go_down(self, *, status: int, retry_after: int) -> None:
        with self._ws.lock:
            self._outage = (status, retry_after)

    def come_back(self) -> None:
        with self._ws.lock:
            self._outage = None

    def rate_limit(self, method: str, *, times: int, retry_after: int) -> None:
        with self._ws.lock:
            self._rate_limits.setdefault(method, deque()).extend([retry_after] * times)

    def fail_next(self, method: str, error: str, *, times: int, status: int, extra: JSON) -> None:
        with self._ws.lock:
            self._failures.setdefault(method, deque()).extend([(error, status, extra)] * times)

    def respond(self, request: Request) -> Reply:
        if request.path.startswith("/api/"):
            return self._web_api(request.path.removeprefix("/api/"), request)
        if request.path.startswith("/response/") and request.verb == "POST":
            try:
                body = parse_webhook_body(request)
            except ApiError as exc:
                return Reply(exc.status, {"ok": False, "error": exc.error})
            with self._ws.lock:
                status, payload = post_response(self._ws, request.path.removeprefix("/response/"), body)
            return Reply(status, payload)
        return Reply(404, {"ok": False, "error": "not_found"})

    def _web_api(self, method: str, request: Request) -> Reply:
        args: JSON = {}
        token: str | None = None
        try:
            args, token = parse_call(request)
            reply = self._checked_call(method, args, token)
        except ApiError as exc:
            reply = Reply(exc.status, {"ok": False, "error": exc.error, **exc.extra})
        with self._ws.lock:
            self._ws.calls.append(
                RecordedCall(method, copy.deepcopy(args), time.time(), token, reply.status, reply.payload)
            )
        return reply

    def _checked_call(self, method: str, args: JSON, token: str | None) -> Reply:
        implementation = METHODS.get(method)
        if implementation is None:
            raise ApiError("unknown_method")
        if not token:
            raise ApiError("not_authed")
        if token != self._ws.token:
            raise ApiError("invalid_auth")
        outage = self._outage
        if outage is not None and outage[0] == 0:  # "no answer": hold the request past any client's timeout
            time.sleep(outage[1])
            return Reply(503, {"ok": False, "error": "service_unavailable"})
        with self._ws.lock:
            if self._outage is not None:
                status, retry_after = self._outage
                error = "ratelimited" if status == 429 else "service_unavailable"
                return Reply(status, {"ok": False, "error": error}, {"Retry-After": str(retry_after)})
            limits = self._rate_limits.get(method)
            if limits:
                retry_after = limits.popleft()
                return Reply(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})
            failures = self._failures.get(method)
            if failures:
                error, status, extra = failures.popleft()
                return Reply(status, {"ok": False, "error": error, **extra})
            return Reply(200, implementation(self._ws, args))
