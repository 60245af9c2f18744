"""HTTP health checks: expected status, per-try timeout, retries with an interval, N passes in a row.

The first try runs at once. After a failure the checker waits `interval` (the app may be restarting);
after a pass it waits only `pass_interval` before confirming, so a healthy app adds no seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import requests

from bot.backends.base import HealthResult, HealthSpec, Progress, no_progress
from bot.redact import redact


class HttpHealthChecker:
    def __init__(self, *, session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep) -> None:
        self.session = session or requests.Session()
        self.sleep = sleep

    def check(self, spec: HealthSpec, *, progress: Progress = no_progress) -> HealthResult:
        streak = 0
        status: int | None = None
        error = ""
        latency: float | None = None
        for attempt in range(1, spec.attempts + 1):
            started = time.monotonic()
            try:
                response = self.session.get(spec.url, timeout=spec.timeout_s, allow_redirects=False)
                status, error = response.status_code, ""
                response.close()
            except requests.RequestException as failure:
                status, error = None, redact(_short(failure))
            latency = (time.monotonic() - started) * 1000
            if status == spec.expect_status:
                streak += 1
            else:
                streak = 0
                if not error:
                    error = f"got {status}, expected {spec.expect_status}"
            progress(
                f"{spec.url}: try {attempt}/{spec.attempts}: {status or error} ({streak}/{spec.consecutive} in a row)"
            )
            if streak >= spec.consecutive:
                return HealthResult(spec.url, True, attempt, status, "", latency, spec.expect_status)
            if attempt < spec.attempts and spec.attempts - attempt >= spec.consecutive - streak:
                self.sleep(spec.pass_interval_s if streak else spec.interval_s)
            elif attempt < spec.attempts:
                break  # not enough tries left to reach the streak: fail now, not after waiting
        return HealthResult(spec.url, False, attempt, status, error, latency, spec.expect_status)


def _short(failure: requests.RequestException) -> str:
    if isinstance(failure, requests.Timeout):
        return "timed out"
    if isinstance(failure, requests.ConnectionError):
        return "connection refused or unreachable"
    return type(failure).__name__
