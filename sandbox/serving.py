"""`rollback-bot serve` as a process of its own, for the tests and benchmarks that need the real server.

Starting it is easy; knowing it is up is the part each caller had written again: it is up once its
`/healthz` answers, and a server that exits or never answers is an error carrying its log's tail.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import requests

from sandbox.ports import free_port

BIN = Path(sys.executable).parent / "rollback-bot"


def serve_command(config: Path, port: int) -> list[str]:
    return [str(BIN), "serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)]


def answers(url: str) -> bool:
    """Does the bot at `url` answer its liveness check?"""
    try:
        return requests.get(f"{url}/healthz", timeout=1).ok
    except requests.RequestException:
        return False


def _wait_until_serving(url: str, process: subprocess.Popen[bytes], *, log: Path, timeout_s: float) -> None:
    """Return once `url` answers; kill the server and raise RuntimeError if it exits or stays silent."""
    deadline = time.monotonic() + timeout_s
    while not answers(url):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait(timeout=10)
            said = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"rollback-bot serve at {url} did not start: {said or 'no output'}")
        time.sleep(0.1)


def start_serving(
    config: Path, *, env: Mapping[str, str], log: Path, cwd: Path | None = None, timeout_s: float = 30.0
) -> tuple[subprocess.Popen[bytes], str]:
    """`rollback-bot serve` on a free port of 127.0.0.1, its output in `log`, up → (the process, its base URL)."""
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            serve_command(config, port), env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    _wait_until_serving(url, process, log=log, timeout_s=timeout_s)
    return process, url
