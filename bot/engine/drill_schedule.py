"""Scheduled restore drills: one periodic durable timer per environment with `[drill] every`, `drill:<env>`.

Serving replicas schedule them at start (schedule_drills): an existing timer keeps its due time across
restarts and follows a changed `every`; a removed `every` (or environment) cancels it. A new one first
falls due FIRST_DRILL_AFTER from now, so a new backup schedule is proven the same day.

Firing is at-least-once (bot/timers.py); a drill must run once. The handler, on the poller's thread, only
records the drill as started, keyed by the timer's occurrence: the store's unique occurrence lets one
firing of it, on one replica, win. The restore itself, which may outlive the timer's 60 s claim by
hours, runs on a DrillWorker thread. A rollback of the environment in progress postpones the drill:
it would load the same database server in the middle of an incident.

A scheduled drill cut off before it ended (a crash, found by the clean-up at start-up or by the next
drill; or the bot shutting down) proved nothing: its timer is brought forward to RETRY_AFTER from then
(retry_cut_off_drill), so the proof comes the same day, not one whole period later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from bot.errors import InvalidState
from bot.store import now
from bot.timers import Handler, Timer, TimerKind, Timers

if TYPE_CHECKING:
    from bot.engine.drill_steps import StartedDrill
    from bot.services import Services

log = logging.getLogger(__name__)
FIRST_DRILL_AFTER = timedelta(minutes=5)
POSTPONE_WHILE_ROLLING_BACK = timedelta(minutes=15)
HAND_OVER_AFTER = timedelta(minutes=1)  # a poller with no worker (the CLI's) leaves drills to a serving replica
RETRY_AFTER = FIRST_DRILL_AFTER  # a scheduled drill cut off before it ended is tried again this soon
SCHEDULE = "schedule"  # who requested a scheduled drill


def drill_timer_key(env: str) -> str:
    return f"drill:{env}"


def schedule_drills(services: Services) -> list[str]:
    """Make the drill timers match the configuration; say what changed (for the log)."""
    timers = Timers(services.store)
    pending = {t.key: t for t in timers.pending() if t.kind is TimerKind.DRILL}
    wanted = {
        drill_timer_key(env): (env, settings.drill.every)
        for env, settings in services.config.settings.environments.items()
        if settings.drill.every is not None
    }
    said = []
    for key in pending:
        if key not in wanted:
            timers.cancel(key)
            said.append(f"{key}: cancelled (no [drill] every any more)")
    for key, (env, every) in wanted.items():
        timer = pending.get(key)
        if timer is not None and timer.every == every:
            continue  # a restart keeps the due time
        due = now() + min(every, FIRST_DRILL_AFTER) if timer is None else min(timer.due_at, now() + every)
        timers.schedule(key, kind=TimerKind.DRILL, due_at=due, every=every, payload={"env": env}, replace=True)
        said.append(f"{key}: every {every}, next at {due:%Y-%m-%d %H:%M} UTC")
    return said


def retry_cut_off_drill(services: Services, env: str) -> str | None:
    """Bring the drill timer of `env` forward to RETRY_AFTER from now, if it is due later; say so."""
    timers = Timers(services.store)
    key = drill_timer_key(env)
    timer = next((t for t in timers.pending() if t.key == key), None)
    soon = now() + RETRY_AFTER
    if timer is None or timer.due_at <= soon:
        return None
    timers.schedule(key, kind=TimerKind.DRILL, due_at=soon, every=timer.every, payload=timer.payload)
    said = f"the scheduled drill of {env} was cut off: tried again at {soon:%H:%M} UTC"
    services.store.record(actor="rollback-bot", action="drill.retry", env=env, detail=said)
    return said


class DrillWorker:
    """Where scheduled drills run: a thread each, off the timer poller's thread (a restore takes hours).

    `cancel` stops them (the restore's tool is killed, the scratch database dropped, the drill recorded
    interrupted) when the bot shuts down.
    """

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, name: str, job: Callable[[threading.Event], object]) -> None:
        def run() -> None:
            try:
                job(self.cancel)
            except Exception:
                log.exception("%s failed", name)

        thread = threading.Thread(target=run, name=name, daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    @property
    def busy(self) -> bool:
        with self._lock:
            return any(t.is_alive() for t in self._threads)

    def wait_idle(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.05)
        return not self.busy

    def stop(self, timeout: float = 60.0) -> None:
        self.cancel.set()
        self.wait_idle(timeout)


DRILLS = DrillWorker()  # the serving process's (bot/app.py)


def drill_timer_handler(services: Services, worker: DrillWorker | None) -> Handler:
    """The DRILL timer: start the drill here (quick, once per occurrence), run it on `worker`.

    Without a worker (a terminal's poller, alive only while its rollback runs) the drill is left to a
    serving replica: the timer is put back a minute later, unclaimed.
    """

    def fire(timer: Timer) -> None:
        from bot.engine.drills import finish_drill, start_drill

        env = str(timer.payload.get("env") or timer.key.removeprefix("drill:"))
        settings = services.config.settings.environments.get(env)
        timers = Timers(services.store)
        if settings is None or settings.drill.every is None:
            timers.cancel(timer.key)
            return
        lock = services.store.lock_for(env)
        if worker is None or lock is not None:
            later = HAND_OVER_AFTER if worker is None else POSTPONE_WHILE_ROLLING_BACK
            if lock is not None:
                log.info("drill of %s postponed by %s: rollback %s is running", env, later, lock.run_id)
            timers.schedule(
                timer.key, kind=TimerKind.DRILL, due_at=now() + later, every=timer.every, payload=timer.payload
            )
            return
        try:
            started = start_drill(services, env, requested_by=SCHEDULE, source=SCHEDULE, occurrence=timer.occurrence)
        except InvalidState as busy:  # another drill of env is running now: it proves the same
            log.info("scheduled drill of %s skipped: %s", env, busy.message)
            return
        if started is None:
            return  # this occurrence was started already: by another replica, or by an earlier firing

        def job(cancel: threading.Event, started: StartedDrill = started) -> None:
            finish_drill(services, started, cancel=cancel)

        worker.submit(f"drill-{env}-{started.check.id}", job)

    return fire
