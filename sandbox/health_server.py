"""A health endpoint for the sandbox and the tests: answers GET /health with a status you can change."""

from __future__ import annotations

import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class HealthServer:
    def __init__(self, *, status: int = 200) -> None:
        self.status = status
        self.hits = 0
        self._queue: deque[int] = deque()  # statuses to answer first, in order
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def start(self) -> str:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                code = owner._next_status()
                body = b'{"status":"ok"}' if code < 400 else b'{"status":"unhealthy"}'
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="health-server", daemon=True).start()
        return f"http://127.0.0.1:{self._server.server_address[1]}/health"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def answer_next(self, *statuses: int) -> None:
        """Answer these statuses first (e.g. 503, 503 while the app restarts), then `status`."""
        with self._lock:
            self._queue.extend(statuses)

    def _next_status(self) -> int:
        with self._lock:
            self.hits += 1
            return self._queue.popleft() if self._queue else self.status

    def __enter__(self) -> HealthServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
