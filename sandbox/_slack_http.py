"""The HTTP side of the Slack Web API stand-in: a threaded server and Slack's request conventions.

Slack's Web API takes arguments in the query string, a form-encoded body, or a JSON body; the token
in `Authorization: Bearer …` or, for form and query calls only, a `token` argument. Every answer is
HTTP 200 with `ok: false` on failure, except rate limiting (HTTP 429 with `Retry-After`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from sandbox._slack_models import JSON, ApiError


@dataclass(frozen=True)
class Request:
    verb: str
    path: str
    query: str
    headers: Message
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int
    payload: JSON
    headers: dict[str, str] = field(default_factory=dict)


Responder = Callable[[Request], Reply]


def parse_call(request: Request) -> tuple[JSON, str | None]:
    """A Web API call's arguments and token, from wherever Slack accepts them."""
    args: JSON = {k: v[0] for k, v in parse_qs(request.query, keep_blank_values=True).items()}
    content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    is_json = False
    if request.body:
        if content_type == "application/json":
            try:
                data = json.loads(request.body)
            except ValueError as exc:
                raise ApiError("invalid_json") from exc
            if not isinstance(data, dict):
                raise ApiError("json_not_object")
            args.update(data)
            is_json = True
        elif content_type in ("application/x-www-form-urlencoded", ""):
            form = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
            args.update({k: v[0] for k, v in form.items()})
        else:
            # File uploads (multipart) are the only other kind Slack takes; the bot sends none.
            raise ApiError("invalid_form_data")
    body_token = args.pop("token", None)
    authorization = request.headers.get("Authorization") or ""
    if authorization.lower().startswith("bearer "):
        return args, authorization[7:].strip()
    # Slack ignores a token inside a JSON body: JSON calls must use the Authorization header.
    return args, None if is_json else (str(body_token) if body_token else None)


def parse_webhook_body(request: Request) -> JSON:
    """A response_url body: JSON as Bolt's `respond()` sends it, or a form with a `payload` field."""
    content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    text = request.body.decode("utf-8", "replace")
    if content_type == "application/x-www-form-urlencoded":
        text = parse_qs(text).get("payload", ["{}"])[0]
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise ApiError("invalid_json", status=400) from exc
    if not isinstance(data, dict):
        raise ApiError("json_not_object", status=400)
    return data


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def log_message(self, format: str, *args: object) -> None:
        return  # tests and the demo print what matters; per-request lines would drown it

    def _serve(self, verb: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        request = Request(verb=verb, path=parts.path, query=parts.query, headers=self.headers, body=body)
        try:
            reply = self.server.responder(request)
        except Exception as exc:  # the stand-in must answer, even when a test drives it somewhere odd
            reply = Reply(500, {"ok": False, "error": "fatal_error", "detail": repr(exc)})
        data = json.dumps(reply.payload).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    responder: Responder


class BackgroundServer:
    """A ThreadingHTTPServer on 127.0.0.1 and a free port, served from a daemon thread."""

    def __init__(self, responder: Responder) -> None:
        self._responder = responder
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def root(self) -> str:
        if self._server is None:
            raise RuntimeError("the Slack API stand-in is not started: call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> str:
        if self._server is None:
            server = _Server(("127.0.0.1", 0), _Handler)
            server.responder = self._responder
            self._server = server
            # A short poll interval keeps stop() quick: tests start and stop a stand-in each.
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name="slack-api-standin",
                daemon=True,
            )
            self._thread.start()
        return self.root

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server, self._thread = None, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)
