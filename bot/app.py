"""create_app(services) → Bolt App, and the two ways to serve it: HTTP (waitress) and Socket Mode.

This module is the composition root: the one place in `bot/` allowed to import Slack and `handlers`.
The engine (bot.engine, bot.backends, bot.store, …) never does; tests/test_architecture.py checks it.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi.http_request import WsgiHttpRequest
from slack_bolt.adapter.wsgi.http_response import WsgiHttpResponse
from slack_bolt.request import BoltRequest
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.deploy_hook import DEPLOY_PATH, DeployHook
from bot.engine.drill_schedule import DRILLS, schedule_drills
from bot.engine.timed import announce_interrupted_runs, timer_handlers
from bot.errors import PreconditionFailed
from bot.outbox import Outbox
from bot.process_identity import current_process
from bot.services import Services
from bot.timers import TimerPoller, Timers
from handlers import SlackContext, check_shape, register
from handlers.context import TrackedExecutor
from handlers.outbox_sender import OutboxSender, sender_client

log = logging.getLogger(__name__)
DEFAULT_API_URL = "https://slack.com/api/"
EVENTS_PATH = "/slack/events"
ROLLBACK_WORKERS = 4  # rollbacks and plans run here, never on Bolt's listener threads
LISTENER_WORKERS = 8  # Bolt's listeners: quick checks and Slack calls after the ack


def web_client(token: str, *, api_url: str | None = None) -> WebClient:
    """A WebClient that retries on 429 (honouring Retry-After), connection errors and 5xx."""
    return WebClient(
        token=token,
        base_url=api_url or os.environ.get("SLACK_API_URL") or DEFAULT_API_URL,
        timeout=15,
        retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=5),
            ConnectionErrorRetryHandler(max_retry_count=3),
            ServerErrorRetryHandler(max_retry_count=2),
        ],
    )


def create_app(
    services: Services,
    *,
    token: str | None = None,
    signing_secret: str | None = None,
    api_url: str | None = None,
    background: bool = True,
) -> tuple[App, SlackContext]:
    token = token or os.environ.get("SLACK_BOT_TOKEN", "")
    signing_secret = signing_secret or os.environ.get("SLACK_SIGNING_SECRET", "")
    missing = [
        name for name, value in (("SLACK_BOT_TOKEN", token), ("SLACK_SIGNING_SECRET", signing_secret)) if not value
    ]
    if missing:
        raise PreconditionFailed(
            f"{' and '.join(missing)} must be set to serve the Slack app",
            hint="see the README's 'Install the Slack app' section",
        )
    client = web_client(token, api_url=api_url)
    # Bolt reads SLACK_BOT_TOKEN itself and warns that our client wins; that is the intent, not news.
    logging.getLogger("slack_bolt.App").addFilter(lambda record: "will be unused" not in record.getMessage())
    listeners = TrackedExecutor(workers=LISTENER_WORKERS, name="bolt-listener")
    app = App(
        client=client,
        signing_secret=signing_secret,
        token_verification_enabled=False,
        raise_error_for_unhandled_request=False,
        listener_executor=listeners,
        before_authorize=check_shape,  # malformed payloads are answered 400 before anything reads them
    )
    ctx = SlackContext(
        services=services,
        client=client,
        executor=TrackedExecutor(workers=ROLLBACK_WORKERS, name="rollback"),
        listener_executor=listeners,
    )
    register(app, ctx)
    if background:
        start_background(ctx, token=token, api_url=str(client.base_url))
    return app, ctx


def start_background(ctx: SlackContext, *, token: str, api_url: str) -> None:
    """This replica's share of the service: the outbox sender and the durable-timer poller.

    Every replica runs both; the store decides who sends (a lease) and who fires each timer (a claim).
    """
    me = current_process()
    holder = f"{me.host}:{me.pid}:{secrets.token_hex(3)}"
    ctx.sender = OutboxSender(Outbox(ctx.services.store), sender_client(token, base_url=api_url), holder=holder).start()
    for change in schedule_drills(ctx.services):  # restore drills: kept across restarts, following the config
        log.info("restore drill timer %s", change)
    # A drill or rehearsal whose process died left a scratch database (and a rehearsal a scratch branch):
    # remove them now, off the start-up path, rather than only when the next one of its kind starts.
    threading.Thread(
        target=_clean_up_after_crashes, args=(ctx.services,), name="rb-scratch-cleanup", daemon=True
    ).start()
    ctx.poller = TimerPoller(
        Timers(ctx.services.store),
        timer_handlers(ctx.services, drills=DRILLS),
        holder=holder,
        on_tick=lambda: _announce(ctx),
    ).start()


def _clean_up_after_crashes(services: Services) -> None:
    from bot.engine.drills import clean_up_crashed_drills
    from bot.engine.rehearsal import clean_up_interrupted

    try:
        for line in clean_up_crashed_drills(services):
            log.warning("%s", line)
        for check_id in clean_up_interrupted(services):
            log.warning("rehearsal #%s was cut off by a crash: cleaned up and marked interrupted", check_id)
    except Exception:  # deliberate: logged; the next drill or rehearsal tries again
        log.exception("cleaning up after crashed drills or rehearsals failed")


def _announce(ctx: SlackContext) -> None:
    if announce_interrupted_runs(ctx.services):
        ctx.wake_sender()


WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def wsgi_app(app: App, *, deploy_hook: WSGIApp | None = None) -> WSGIApp:
    """Slack on POST /slack/events, liveness on GET /healthz, 404 elsewhere; never a 5xx for bad input.

    `deploy_hook` (a bot.deploy_hook.DeployHook) answers DEPLOY_PATH for the deploy pipeline.
    """

    def reply(start_response: Callable[..., Any], status: str, body: bytes, kind: str = "text/plain") -> list[bytes]:
        start_response(status, [("Content-Type", kind), ("Content-Length", str(len(body)))])
        return [body]

    def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "")
        if path == "/healthz" and method == "GET":
            return reply(start_response, "200 OK", json.dumps({"ok": True}).encode(), "application/json")
        if path == DEPLOY_PATH and deploy_hook is not None:
            return deploy_hook(environ, start_response)
        if path != EVENTS_PATH:
            return reply(start_response, "404 Not Found", b"Not Found")
        if method != "POST":
            return reply(start_response, "405 Method Not Allowed", b"POST only")
        request = WsgiHttpRequest(environ)
        try:
            # Bolt parses the body while building the request: a malformed one must be a 400, not a 500.
            bolt_request = BoltRequest(
                body=request.get_body(), query=request.query_string, headers=request.get_headers()
            )
        except Exception as error:  # whatever Bolt trips on while parsing it, the body is at fault
            # Bolt parses the body (and reads ids out of it) before it checks the signature, so this is
            # also what an unsigned body that is not a Slack payload at all gets; nothing of it is logged.
            log.warning("refused a malformed Slack request (400): Bolt could not read it (%s)", type(error).__name__)
            return reply(start_response, "400 Bad Request", b"malformed Slack request")
        response = app.dispatch(bolt_request)
        wsgi_response = WsgiHttpResponse(status=response.status, headers=response.headers, body=response.body)
        start_response(wsgi_response.status, wsgi_response.get_headers())
        return wsgi_response.get_body()

    return application


def http_server(app: App, *, host: str, port: int, deploy_hook: WSGIApp | None = None) -> Any:
    """A production WSGI server (waitress: threaded, pure Python), not Bolt's development server."""
    from waitress import create_server

    application = wsgi_app(app, deploy_hook=deploy_hook)
    return create_server(application, host=host, port=port, threads=8, ident="rollback-bot")


def serve_http(services: Services, *, host: str, port: int) -> int:
    app, ctx = create_app(services)
    hook = DeployHook(services)  # its own small pool: snapshots never run on waitress's threads
    server = http_server(app, host=host, port=port, deploy_hook=hook)
    print(f"rollback-bot: serving Slack on http://{host}:{port}{EVENTS_PATH} (GET /healthz for liveness)", flush=True)
    try:
        server.run()
    finally:
        server.close()
        hook.shutdown(wait=False)
        ctx.shutdown()
        DRILLS.stop()  # a running drill drops its scratch database and is recorded interrupted
    return 0


def serve_socket(services: Services) -> int:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    app_token = os.environ.get("SLACK_APP_TOKEN")
    if not app_token:
        raise PreconditionFailed(
            "SLACK_APP_TOKEN must be set for Socket Mode", hint="an xapp-… token with connections:write"
        )
    app, _ = create_app(services, signing_secret=os.environ.get("SLACK_SIGNING_SECRET") or "socket-mode-unused")
    print("rollback-bot: connecting to Slack over Socket Mode", flush=True)
    SocketModeHandler(app, app_token).start()  # type: ignore[no-untyped-call]
    return 0
