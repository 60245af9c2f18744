"""Timed work: stakeholder updates while a run is going, checklist reminders when each phase is due.

APScheduler 3 in the background, jobs keyed so scheduling twice replaces rather than doubles. Jobs
live in memory: after a restart the bot does not re-send old reminders (open items stay visible in
the checklist message and `rollback-bot timeline`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler

log = logging.getLogger(__name__)


class Scheduler:
    def __init__(self) -> None:
        self._scheduler = BackgroundScheduler(
            timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300}
        )
        self._lock = threading.Lock()
        self._started = False

    def _ensure_started(self) -> None:
        with self._lock:
            if not self._started:
                self._scheduler.start()
                self._started = True

    def every(self, key: str, interval: timedelta, fn: Callable[[], None]) -> None:
        """Call `fn` every `interval` (first call one interval from now) until `cancel(key)`."""
        self._ensure_started()
        self._scheduler.add_job(
            _guarded(key, fn), "interval", seconds=max(interval.total_seconds(), 1.0), id=key, replace_existing=True
        )

    def at(self, key: str, when: datetime, fn: Callable[[], None]) -> None:
        self._ensure_started()
        self._scheduler.add_job(_guarded(key, fn), "date", run_date=when, id=key, replace_existing=True)

    def cancel(self, key: str) -> None:
        if not self._started:
            return
        job = self._scheduler.get_job(key)
        if job is not None:
            job.remove()

    def job_keys(self) -> list[str]:
        return [job.id for job in self._scheduler.get_jobs()] if self._started else []

    def shutdown(self) -> None:
        with self._lock:
            if self._started:
                self._scheduler.shutdown(wait=False)
                self._started = False


def _guarded(key: str, fn: Callable[[], None]) -> Callable[[], None]:
    def run() -> None:
        try:
            fn()
        except Exception:
            log.exception("scheduled job %s failed", key)

    return run
