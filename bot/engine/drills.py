"""Restore drills: the latest restore point restored into a scratch database, counted, checked and dropped.

A backup that does not restore must be found today, not during the incident. A drill:
1. cleans up drills a crash cut off (their process is dead on this host, or elsewhere their heartbeat
   stopped STALE_AFTER ago): each scratch database is dropped by the name it wrote down, the drill marked
   interrupted, and a scheduled one tried again soon (drill_schedule.retry_cut_off_drill);
2. is recorded as running, once per timer occurrence across replicas (the store's unique occurrence);
3. fetches the restore point's dump from the artifact store and checks its recorded size and sha256;
4. restores it into `<live>_rb_drill_<tag>` with a rollback's own restore (bot/backends/scratch.py), the
   name written down before the database exists;
5. counts every table's rows and runs the environment's `[drill] checks`, read-only;
6. drops the scratch database whatever happened (a `finally`);
7. records its time, the restore's time, the dump's size, rows per table and in all, each check. It passed
   only if all of that did; a failure alerts the contacts at once (drill_story.py).

Scheduled drills come from the durable timers (drill_schedule.py); `rollback-bot drill ENV` runs one now.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from bot.backends.base import Progress, no_progress
from bot.backends.scratch import drop_scratch
from bot.engine.drill_schedule import SCHEDULE, retry_cut_off_drill
from bot.engine.drill_steps import DrillSteps, StartedDrill
from bot.engine.drill_story import alert
from bot.errors import InvalidState, RollbackError
from bot.process_identity import current_process, is_gone
from bot.store import ReadinessCheck, now, parse_iso

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)
STALE_AFTER = timedelta(minutes=5)  # no heartbeat for this long: the drill's process is gone


def run_drill(
    services: Services,
    env: str,
    *,
    requested_by: str,
    source: str,
    occurrence: str | None = None,
    progress: Progress = no_progress,
    cancel: threading.Event | None = None,
) -> ReadinessCheck:
    """One drill from start to end (its failure alerted); InvalidState if it cannot start now."""
    started = start_drill(
        services, env, requested_by=requested_by, source=source, occurrence=occurrence, progress=progress
    )
    if started is None:
        raise InvalidState(f"this drill of {env} was already started ({occurrence})")
    return finish_drill(services, started, progress=progress, cancel=cancel)


def start_drill(
    services: Services,
    env: str,
    *,
    requested_by: str,
    source: str,
    occurrence: str | None = None,
    progress: Progress = no_progress,
) -> StartedDrill | None:
    """Clean up crashed drills, then record this one as running; None if `occurrence` was already started.

    Quick (no restore): the timer's handler calls it on the poller's thread. InvalidState while another
    drill of `env` is alive.
    """
    services.config.environment(env)  # an unknown environment is refused before anything is recorded
    for said in clean_up_crashed_drills(services):
        progress(said)
    store = services.store
    alive = [c for c in store.unfinished_checks(kind="drill") if c.env == env]
    if alive:
        other = alive[0]
        raise InvalidState(
            f"a drill of {env} is already running: #{other.id}, started {other.started_at:%Y-%m-%d %H:%M} UTC"
            f" by {other.requested_by} on {other.host or 'another host'}",
            hint="wait for it to end: `rollback-bot status` shows its result",
        )
    point = store.latest_restore_point(env)
    check = store.start_check(
        kind="drill",
        env=env,
        requested_by=requested_by,
        source=source,
        occurrence=occurrence,
        restore_point_id=point.id if point else None,
        dump_sha256=point.dump_sha256 if point else None,
    )
    if check is None:
        return None
    store.note_check(check.id, scratch={"process": current_process().boot_id})  # a reused pid is not this one
    check = store.check(check.id)
    what = f"restore point #{point.id}" if point else "no restore point"
    store.record(actor=requested_by, action="drill.started", env=env, detail=f"drill #{check.id} of {what}")
    return StartedDrill(check, point)


def finish_drill(
    services: Services,
    started: StartedDrill,
    *,
    progress: Progress = no_progress,
    cancel: threading.Event | None = None,
) -> ReadinessCheck:
    """The drill itself (minutes to hours); records how it ended, alerts if it failed, returns the record."""
    check, store = started.check, services.store
    clock = time.monotonic()
    drill = DrillSteps(services, started, progress, cancel)
    heartbeat = threading.Thread(target=drill.beat_until_done, name=f"drill-{check.id}-heartbeat", daemon=True)
    heartbeat.start()
    failed = None
    interrupted = True  # until it returns: KeyboardInterrupt, SystemExit
    try:
        failed = drill.run()
        interrupted = failed is not None and cancel is not None and cancel.is_set()
    finally:
        drill.done.set()
        heartbeat.join(timeout=30)
        status = "interrupted" if interrupted else "failed" if failed else "passed"
        details = drill.details | ({"stage": failed.stage, "hint": failed.hint} if failed else {})
        details.pop("heartbeat_at", None)
        reason = (failed.message if failed else "stopped before it ended") if status != "passed" else None
        seconds = time.monotonic() - clock
        if status == "failed":  # told before it is recorded: a crash in between loses no alert
            details["alerted"] = alert_targets(services, check.env)
            ended = replace(check, status=status, details=details, failure=reason, seconds=seconds, finished_at=now())
            alert(services, ended)
        store.finish_check(
            check.id, status=status, seconds=seconds, details=details, failure=reason, scratch=drill.scratch
        )
        store.record(
            actor=check.requested_by,
            action=f"drill.{status}",
            env=check.env,
            detail=f"drill #{check.id}" + (f": {reason}" if reason else f", {details.get('total_rows', 0)} rows"),
        )
        if status == "interrupted" and check.source == SCHEDULE:  # e.g. the bot shut down: it proved nothing
            _retry(services, check.env)
    return store.check(check.id)


def alert_targets(services: Services, env: str) -> list[str]:
    """Where a failed drill of `env` is announced: its [drill] channel, else the stakeholder channels."""
    channel = services.config.environment(env).drill.channel
    return [channel] if channel else list(services.config.settings.bot.stakeholder_channels)


def clean_up_crashed_drills(services: Services) -> list[str]:
    """Drop the scratch databases of drills whose process is gone, and mark them interrupted; say what was done."""
    said = []
    for check in services.store.unfinished_checks(kind="drill"):
        if _is_gone(check, at=now()):
            said.append(_clean_up(services, check))
    return said


# --- crashed drills --------------------------------------------------------------------------------------


def _is_gone(check: ReadinessCheck, *, at: datetime) -> bool:
    """Its process is dead on this host (pid and start time, process_identity), else its heartbeat stopped."""
    gone = is_gone(host=check.host, pid=check.pid, boot_id=check.scratch.get("process"))
    if gone is not None:
        return gone
    beat = parse_iso(check.details.get("heartbeat_at")) or check.started_at
    return at - beat > STALE_AFTER


def _clean_up(services: Services, check: ReadinessCheck) -> str:
    name = check.scratch.get("database")
    note, dropped = "", True
    if name:
        try:
            database = services.database(check.env)
            if database is None:
                raise InvalidState(f"{check.env} has no database configured any more")
            note = drop_scratch(database, name) or f"its scratch database {name} was already gone"
        except RollbackError as error:
            note, dropped = (
                f"its scratch database {name} could not be dropped ({error.message}): drop it by hand",
                False,
            )
    failure = "interrupted: the drill's process stopped before it ended" + (f"; {note}" if note else "")
    scratch = check.scratch | ({"dropped": dropped} if name else {})
    details = check.details | {"cleanup": note or "nothing to drop"}
    retried = None
    if services.store.finish_check(
        check.id, status="interrupted", seconds=None, details=details, failure=failure, scratch=scratch
    ):
        services.store.record(
            actor="rollback-bot", action="drill.interrupted", env=check.env, detail=f"drill #{check.id}: {failure}"
        )
        retried = _retry(services, check.env) if check.source == SCHEDULE else None
    said = f"drill #{check.id} of {check.env} had been cut off by a crash: {note or 'it had made nothing yet'}"
    return said + (f"; {retried}" if retried else "")


def _retry(services: Services, env: str) -> str | None:
    """A scheduled drill that did not end proved nothing: its timer is brought forward (never fails the caller)."""
    try:
        return retry_cut_off_drill(services, env)
    except Exception:  # the store is down: the drill runs at its next period, as before
        log.warning("could not bring the drill of %s forward", env, exc_info=True)
        return None
