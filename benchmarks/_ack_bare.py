"""The yardstick: a bare Bolt app that only acks `/rollback`, served exactly as the bot is.

It is a `slack_bolt.App` with the sandbox's signing secret and one `/rollback` command listener that
calls `ack()` and nothing else, behind the same WSGI entry point and waitress server the bot uses
(`bot.app.http_server`: 8 threads) on another port of 127.0.0.1. It runs in a process of its own, as
an app would, so neither the bot's threads nor the clients share its GIL. Its token and Web API URL
are the sandbox stand-in's: Bolt's single-team authorization calls `auth.test` once, on the first
request (a warm-up request), as it does for the bot.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import threading
from multiprocessing.connection import Connection
from typing import Any

from sandbox.slack_harness import SIGNING_SECRET

START_TIMEOUT_S = 60.0


def _serve(token: str, api_url: str, conn: Connection) -> None:
    """In the bare app's process: serve until the parent says stop (or goes away)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s bare %(name)s: %(message)s")
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # as in the bot's process: see run.py
    from slack_bolt import Ack, App
    from slack_sdk import WebClient

    from bot.app import http_server

    app = App(
        client=WebClient(token=token, base_url=api_url),
        signing_secret=SIGNING_SECRET,
        token_verification_enabled=False,
    )

    @app.command("/rollback")
    def rollback(ack: Ack) -> None:
        ack()

    server = http_server(app, host="127.0.0.1", port=0)
    threading.Thread(target=server.run, name="bare-app-http", daemon=True).start()
    conn.send(int(server.effective_port))
    try:
        conn.recv()  # "stop", or EOFError when the parent is gone
    except EOFError:
        pass
    finally:
        server.close()
        server.task_dispatcher.shutdown()


class BareApp:
    """`with BareApp(token, api_url) as bare:` … `bare.url` is its /slack/events."""

    def __init__(self, *, token: str, api_url: str) -> None:
        self.token = token
        self.api_url = api_url
        self.url = ""
        self._process: Any = None
        self._conn: Connection | None = None

    def __enter__(self) -> BareApp:
        spawn = multiprocessing.get_context("spawn")  # no fork of a process full of threads
        parent, child = spawn.Pipe()
        self._process = spawn.Process(
            target=_serve, args=(self.token, self.api_url, child), name="bare-bolt-app", daemon=True
        )
        self._process.start()
        child.close()
        self._conn = parent
        if not parent.poll(START_TIMEOUT_S):
            self.__exit__()
            raise TimeoutError("the bare Bolt app did not start")
        self.url = f"http://127.0.0.1:{parent.recv()}/slack/events"
        return self

    def __exit__(self, *_: object) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):  # the process is gone already
                self._conn.send("stop")
            self._conn.close()
            self._conn = None
        if self._process is not None:
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(timeout=5)
            self._process = None
