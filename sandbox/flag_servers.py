"""Local stand-ins for the flag vendors' admin APIs, for the sandbox, the demo and the tests.

Each speaks the same paths, methods, headers and JSON shapes as the vendor's documented admin API (see
the docstrings of bot/backends/flags_*.py for the pages followed), holds flag state in memory, and can be
told to misbehave the way real services do:
- a wrong or missing key → 401, an unknown flag, project or environment → 404, a malformed body → 400;
- `rate_limit_next(n, retry_after)`: the next n requests get 429 with `Retry-After`;
- `fail_next(n, status)`: the next n requests get a 5xx; `answer_next(...)`: any answer at all.
Every request is recorded (`requests`) so tests can check exactly what the bot sent.

Four servers of ~80 lines each share one module (a little over the house's ~400 lines) so the sandbox,
the demo and the tests have one place to import them from, next to the machinery they share.

Size: four vendors' stand-ins (LaunchDarkly, Flagsmith, Unleash, webhook) over one small HTTP base, each
about eighty lines; test world only, never shipped.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

_UNSET = object()


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str  # decoded path segments joined by "/", without the query
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Answer:
    status: int
    body: Any = None  # JSON-serialisable, bytes sent as they are, or None for an empty body
    headers: dict[str, str] = field(default_factory=dict)


class _FlagServer:
    """The shared machinery: a ThreadingHTTPServer on 127.0.0.1:0, recording, and injected failures."""

    name = "flag-server"
    path_prefix = ""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._recorded: list[RecordedRequest] = []
        self._injected: deque[Answer] = deque()
        self._server: ThreadingHTTPServer | None = None
        self.base_url = ""

    # --- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> str:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                request = RecordedRequest(
                    method=self.command,
                    path=split.path,
                    query=parse_qs(split.query),
                    headers={k: v for k, v in self.headers.items()},
                    body=body,
                )
                answer = owner._answer(request)
                raw = isinstance(answer.body, bytes)  # bytes go out as they are: a plain-text answer
                payload = answer.body if raw else b"" if answer.body is None else json.dumps(answer.body).encode()
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if payload:
                    self.send_header("Content-Type", "text/plain" if raw else "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll keeps stop() quick: tests start and stop dozens of these.
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name=self.name, daemon=True).start()
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}{self.path_prefix}"
        return self.base_url

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # --- knobs for tests ----------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._recorded)

    def answer_next(self, status: int, body: Any = None, headers: dict[str, str] | None = None, *, n: int = 1) -> None:
        """Answer the next n requests with this, whatever they ask (a vendor having a bad day)."""
        with self._lock:
            self._injected.extend(Answer(status, body, dict(headers or {})) for _ in range(n))

    def rate_limit_next(self, n: int = 1, retry_after: int = 1) -> None:
        self.answer_next(429, {"message": "Too many requests"}, {"Retry-After": str(retry_after)}, n=n)

    def fail_next(self, n: int = 1, status: int = 503) -> None:
        self.answer_next(status, {"message": "Service unavailable"}, n=n)

    # --- dispatch -----------------------------------------------------------------------------------

    def _answer(self, request: RecordedRequest) -> Answer:
        with self._lock:
            self._recorded.append(request)
            if self._injected:
                return self._injected.popleft()
            if not request.path.startswith(self.path_prefix):
                return Answer(404, {"message": "not found"})
            path = request.path.removeprefix(self.path_prefix)
            parts = [unquote(p) for p in path.split("/")[1:]]
            return self._route(request, parts)

    def _route(self, request: RecordedRequest, parts: list[str]) -> Answer:
        raise NotImplementedError


def _json_body(request: RecordedRequest) -> Any:
    try:
        return json.loads(request.body) if request.body else _UNSET
    except ValueError:
        return _UNSET


# --- LaunchDarkly ---------------------------------------------------------------------------------------


class LaunchDarklyServer(_FlagServer):
    """LaunchDarkly REST API v2: get flag, update flag (semantic patch), get environment."""

    name = "launchdarkly-server"

    def __init__(
        self,
        *,
        api_key: str = "api-0ld-sandbox-token",
        project: str = "default",
        environments: tuple[str, ...] = ("production", "test"),
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.project = project
        self.environments = environments
        self._flags: dict[str, dict[str, dict[str, Any]]] = {}

    def set_flag(self, key: str, on: bool, *, environment: str | None = None) -> None:
        with self._lock:
            envs = self._flags.setdefault(key, {e: {"on": False, "version": 1} for e in self.environments})
            envs[environment or self.environments[0]]["on"] = on

    def flag_on(self, key: str, *, environment: str | None = None) -> bool:
        with self._lock:
            return bool(self._flags[key][environment or self.environments[0]]["on"])

    def _route(self, request: RecordedRequest, parts: list[str]) -> Answer:
        if request.headers.get("Authorization") != self.api_key:
            return Answer(401, {"code": "unauthorized", "message": "Invalid access token"})
        match (request.method, parts):
            case ("GET", ["api", "v2", "projects", project, "environments", env]):
                if project != self.project or env not in self.environments:
                    return _ld_not_found()
                return Answer(200, {"key": env, "name": env.title(), "_id": f"env-{env}"})
            case ("GET", ["api", "v2", "flags", project, key]):
                if project != self.project or key not in self._flags:
                    return _ld_not_found()
                wanted = request.query.get("env")
                return Answer(200, self._flag(key, wanted[0].split(",") if wanted else None))
            case ("PATCH", ["api", "v2", "flags", project, key]):
                if project != self.project or key not in self._flags:
                    return _ld_not_found()
                return self._patch(request, key)
        return _ld_not_found()

    def _patch(self, request: RecordedRequest, key: str) -> Answer:
        if "domain-model=launchdarkly.semanticpatch" not in request.headers.get("Content-Type", ""):
            return Answer(400, {"code": "invalid_request", "message": "expected a JSON patch or merge patch"})
        body = _json_body(request)
        instructions = body.get("instructions") if isinstance(body, dict) else None
        env = body.get("environmentKey") if isinstance(body, dict) else None
        kinds = [i.get("kind") for i in instructions or [] if isinstance(i, dict)]
        if not instructions or not isinstance(env, str) or not set(kinds) <= {"turnFlagOn", "turnFlagOff"}:
            return Answer(400, {"code": "invalid_request", "message": "invalid semantic patch"})
        if env not in self.environments:
            return _ld_not_found()
        config = self._flags[key][env]
        for kind in kinds:
            on = kind == "turnFlagOn"
            if config["on"] != on:
                config["on"] = on
                config["version"] += 1
        return Answer(200, self._flag(key, None))

    def _flag(self, key: str, envs: list[str] | None) -> dict[str, Any]:
        shown = {e: {**c, "archived": False} for e, c in self._flags[key].items() if envs is None or e in envs}
        return {"key": key, "name": key, "kind": "boolean", "archived": False, "environments": shown}


def _ld_not_found() -> Answer:
    return Answer(404, {"code": "not_found", "message": "Unknown resource"})


# --- Flagsmith ------------------------------------------------------------------------------------------


class FlagsmithServer(_FlagServer):
    """Flagsmith Admin API v1: environment, project features (search), environment feature states."""

    name = "flagsmith-server"

    def __init__(
        self,
        *,
        api_key: str = "fsorg-sandbox-api-key",
        project_id: int = 12,
        environment_key: str = "envKeyProd123",
        page_size: int = 100,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.project_id = project_id
        self.environment_key = environment_key
        self.page_size = page_size
        self._features: dict[str, dict[str, Any]] = {}  # name -> {"id", "fs_id", "enabled"}

    def set_flag(self, key: str, on: bool) -> None:
        with self._lock:
            n = len(self._features) + 1
            feature = self._features.setdefault(key, {"id": 100 + n, "fs_id": 500 + n, "enabled": False})
            feature["enabled"] = on

    def flag_on(self, key: str) -> bool:
        with self._lock:
            return bool(self._features[key]["enabled"])

    def _route(self, request: RecordedRequest, parts: list[str]) -> Answer:
        auth = request.headers.get("Authorization")
        if auth is None:
            return Answer(401, {"detail": "Authentication credentials were not provided."})
        if auth != f"Api-Key {self.api_key}":
            return Answer(401, {"detail": "Invalid API Key"})
        match (request.method, parts):
            case ("GET", ["api", "v1", "environments", env, ""]) if env == self.environment_key:
                return Answer(200, {"id": 1, "name": "Production", "api_key": env, "project": self.project_id})
            case ("GET", ["api", "v1", "projects", project, "features", ""]) if project == str(self.project_id):
                search = (request.query.get("search") or [""])[0]
                rows = [{"id": f["id"], "name": n, "project": self.project_id} for n, f in self._features.items()]
                return self._page(request, [r for r in rows if search.lower() in str(r["name"]).lower()])
            case ("GET", ["api", "v1", "environments", env, "featurestates", ""]) if env == self.environment_key:
                wanted = (request.query.get("feature") or [""])[0]
                rows = [self._state(f) for f in self._features.values() if not wanted or str(f["id"]) == wanted]
                return self._page(request, rows)
            case ("PATCH", ["api", "v1", "environments", env, "featurestates", fs_id, ""]) if (
                env == self.environment_key
            ):
                feature = next((f for f in self._features.values() if str(f["fs_id"]) == fs_id), None)
                if feature is None:
                    return Answer(404, {"detail": "Not found."})
                body = _json_body(request)
                if not isinstance(body, dict) or not isinstance(body.get("enabled", False), bool):
                    return Answer(400, {"enabled": ["Must be a valid boolean."]})
                feature["enabled"] = body.get("enabled", feature["enabled"])
                return Answer(200, self._state(feature))
        return Answer(404, {"detail": "Not found."})

    def _state(self, feature: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": feature["fs_id"],
            "feature": feature["id"],
            "enabled": feature["enabled"],
            "environment": 1,
            "identity": None,
            "feature_segment": None,
            "feature_state_value": None,
        }

    def _page(self, request: RecordedRequest, rows: list[dict[str, Any]]) -> Answer:
        page = int((request.query.get("page") or ["1"])[0])
        start = (page - 1) * self.page_size
        following = None
        if start + self.page_size < len(rows):
            query = urlencode({"page": page + 1, **{k: v[0] for k, v in request.query.items() if k != "page"}})
            following = f"{self.base_url}{request.path}?{query}"
        return Answer(
            200,
            {"count": len(rows), "next": following, "previous": None, "results": rows[start : start + self.page_size]},
        )


# --- Unleash --------------------------------------------------------------------------------------------


class UnleashServer(_FlagServer):
    """Unleash Admin API: get environment, get feature, toggle a feature's environment on/off."""

    name = "unleash-server"

    def __init__(
        self,
        *,
        api_key: str = "*:*.unleash-sandbox-admin-token",
        project: str = "default",
        environments: tuple[str, ...] = ("production", "development"),
        path_prefix: str = "",
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.project = project
        self.environments = environments
        self.path_prefix = path_prefix  # Unleash is often served under a prefix, e.g. /unleash
        self._flags: dict[str, dict[str, bool]] = {}

    def set_flag(self, key: str, on: bool, *, environment: str | None = None) -> None:
        with self._lock:
            self._flags.setdefault(key, dict.fromkeys(self.environments, False))[
                environment or self.environments[0]
            ] = on

    def flag_on(self, key: str, *, environment: str | None = None) -> bool:
        with self._lock:
            return self._flags[key][environment or self.environments[0]]

    def _route(self, request: RecordedRequest, parts: list[str]) -> Answer:
        if request.headers.get("Authorization") != self.api_key:
            return Answer(401, {"name": "AuthenticationRequired", "message": "You must log in to use Unleash."})
        if request.body and _json_body(request) is _UNSET:
            return Answer(400, {"name": "BadDataError", "message": "Request body is not valid JSON"})
        match (request.method, parts):
            case ("GET", ["api", "admin", "environments", env]) if env in self.environments:
                return Answer(200, {"name": env, "type": env, "enabled": True, "protected": False, "sortOrder": 1})
            case ("GET", ["api", "admin", "projects", project, "features", key]) if self._known(project, key):
                envs = [
                    {"name": e, "type": e, "enabled": on, "sortOrder": i, "strategies": []}
                    for i, (e, on) in enumerate(self._flags[key].items())
                ]
                return Answer(
                    200, {"name": key, "project": project, "type": "release", "archived": False, "environments": envs}
                )
            case (
                "POST",
                ["api", "admin", "projects", project, "features", key, "environments", env, ("on" | "off") as switch],
            ):
                if self._known(project, key) and env in self.environments:
                    self._flags[key][env] = switch == "on"
                    return Answer(200)
        return Answer(404, {"name": "NotFoundError", "message": "Could not find the requested resource"})

    def _known(self, project: str, key: str) -> bool:
        return project == self.project and key in self._flags


# --- a custom webhook -----------------------------------------------------------------------------------


class WebhookServer(_FlagServer):
    """The webhook contract in bot/backends/flags_webhook.py, with or without the optional read API."""

    name = "webhook-server"
    path_prefix = "/flags"

    def __init__(self, *, token: str | None = "whk-sandbox-bearer-token", readable: bool = True) -> None:
        super().__init__()
        self.token = token
        self.readable = readable
        self._flags: dict[str, bool] = {}

    def set_flag(self, key: str, on: bool) -> None:
        with self._lock:
            self._flags[key] = on

    def flag_on(self, key: str) -> bool:
        with self._lock:
            return self._flags[key]

    def _route(self, request: RecordedRequest, parts: list[str]) -> Answer:
        if parts not in ([], [""]):
            return Answer(404, {"error": "no such endpoint"})
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return Answer(401, {"error": "bad token"})
        if request.method == "GET":
            if not self.readable:
                return Answer(405, {"error": "method not allowed"}, {"Allow": "POST"})
            key = (request.query.get("flag") or [""])[0]
            if key not in self._flags:
                return Answer(404, {"error": f"unknown flag {key}"})
            return Answer(200, {"flag": key, "enabled": self._flags[key]})
        if request.method != "POST":
            return Answer(405, {"error": "method not allowed"}, {"Allow": "GET, POST"})
        body = _json_body(request)
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("flag"), str)
            or not isinstance(body.get("enabled"), bool)
            or not isinstance(body.get("environment"), (str, type(None)))
        ):
            return Answer(400, {"error": "expected {flag: string, enabled: boolean, environment: string|null}"})
        if body["flag"] not in self._flags:
            return Answer(404, {"error": f"unknown flag {body['flag']}"})
        self._flags[body["flag"]] = body["enabled"]
        if not self.readable:
            return Answer(204)
        return Answer(200, {"flag": body["flag"], "enabled": body["enabled"]})
