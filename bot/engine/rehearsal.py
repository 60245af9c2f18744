"""Rehearsal: the environment's whole rollback, run by the engine against stand-ins for production.

`rollback-bot rehearse ENV` and `/rollback rehearse ENV` run the same steps a rollback runs (safety
checks, pre-rollback dump, code, database restore, flags, health, checklist), through the same lifecycle
and executor, on a stand-in environment ("prod@r", bot.engine._rehearsal_setup): a scratch branch at
the deployed commit (or a configured staging branch), a scratch database restored from the restore
point the rollback would restore (or a configured staging database), the vendor's staging flags and
staging health URLs when configured (skipped, and said so, when not). Nothing of production changes: the
stand-in has its own lock (so two rehearsals of one environment never run at once, and a rehearsal never
blocks a rollback), needs no approver, and tells no channel but the one that asked.

Every scratch artifact's name is written down (readiness_checks.scratch) before it is made, and cleanup
always runs (bot.engine._rehearsal_cleanup), each action recorded; one that fails fails the rehearsal,
loudly. A rehearsal whose process died is cleaned up by the next one started on this host (or when its
run's heartbeat has gone stale). The record keeps each step's time and result (details["steps"], the
engine's step names, read for every plan by bot.engine.readiness) and, when it failed, what failed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot import format as fmt
from bot.backends.base import DatabaseIdentities, Progress, no_progress
from bot.engine import lifecycle
from bot.engine._rehearsal_cleanup import Cleanup, clean_up
from bot.engine._rehearsal_setup import (
    Decided,
    decide,
    make_branch,
    make_database,
    scratch_database_name,
    staging_database_url,
    stand_in_name,
)
from bot.engine._rehearsal_story import REHEARSAL_HEADER, REHEARSAL_RESULT, RehearsalStory, summary, summary_lines
from bot.engine.approval import check_requester
from bot.engine.events import Event, Reporter, RunFinished
from bot.engine.plan import RollbackRequest, make_plan
from bot.engine.run_status import Actor, RunStatus, shown_status
from bot.errors import InvalidState, RollbackError
from bot.process_identity import current_process, is_gone
from bot.services import StandIn
from bot.store import ReadinessCheck

if TYPE_CHECKING:
    from bot.services import Services

__all__ = [
    "KIND",
    "REHEARSAL_HEADER",
    "REHEARSAL_RESULT",
    "RehearsalStory",
    "check_may_rehearse",
    "clean_up_interrupted",
    "rehearse",
    "stand_in_name",
    "summary",
    "summary_lines",
]

log = logging.getLogger(__name__)
KIND = "rehearsal"


def check_may_rehearse(services: Services, env: str, *, actor: Actor) -> None:
    """The same permission as asking for a rollback of `env` (its requesters); a terminal user is trusted."""
    settings = services.config.environment(env)  # UnknownEnvironment names the configured ones
    if actor.via == "slack":
        check_requester(settings, env=env, user=actor.id, members_of=actor.members_of)


def rehearse(
    services: Services,
    env: str,
    *,
    requested_by: str,
    source: str,
    reporters: Sequence[Reporter] = (),
    say: Progress = no_progress,
) -> ReadinessCheck:
    """Rehearse `env`'s rollback on stand-ins and return its record (passed or failed, with every step's time).

    Raises (nothing made, nothing recorded) only when it cannot start: an unknown environment, or another
    rehearsal of `env` running. Anything later is a failed rehearsal, cleaned up and recorded.
    """
    services.config.environment(env)
    clean_up_interrupted(services, say=say)
    check = _begin(services, env, requested_by=requested_by, source=source)
    started = time.monotonic()
    record: dict[str, Any] = {"stand_ins": {}, "preparation": [], "steps": []}
    views: list[Services] = []  # the stand-in's services, once made: cleanup needs them whatever happened
    failure: str | None = None
    ended_early = True  # an exception that is not an Exception (KeyboardInterrupt) is passing through
    try:
        try:
            failure = _rehearse(services, check, record, views, reporters=reporters, say=say)
        except RollbackError as error:
            failure = error.message + (f" ({error.hint})" if error.hint else "")
        except Exception as error:  # a rehearsal never ends without cleaning up and saying why
            log.exception("rehearsal of %s failed unexpectedly", env)
            failure = f"unexpected {type(error).__name__}: {error}"
        ended_early = False
    finally:
        check = services.store.check(check.id)
        say("cleaning up…")
        cleanup = clean_up(services, check, views[-1] if views else None)
        record["steps"] = _steps(services, check.run_id)
        _finish(services, check, record, cleanup, failure, time.monotonic() - started, early=ended_early)
    return services.store.check(check.id)


def clean_up_interrupted(services: Services, *, say: Progress = no_progress) -> list[int]:
    """Clean up and close every rehearsal whose process is gone (dead on this host, or its run's heartbeat
    stale); return their ids. Safe to call any time: a live rehearsal is left alone."""
    closed = []
    for check in services.store.unfinished_checks(kind=KIND):
        if not _gone(services, check):
            continue
        say(f"cleaning up rehearsal #{check.id} of {check.env}, cut off when its process stopped")
        cleanup = clean_up(services, check, _rebuilt_view(services, check))
        details = {**check.details, "steps": _steps(services, check.run_id), "cleanup": cleanup.lines}
        why = f"interrupted: its process (pid {check.pid} on {check.host}) stopped before it finished"
        if services.store.finish_check(
            check.id, status="interrupted", seconds=None, details=details, failure=_with_cleanup(why, cleanup)
        ):
            services.store.record(actor="rollback-bot", action="rehearsal.interrupted", env=check.env, detail=why)
            closed.append(check.id)
    return closed


# --- the rehearsal ---------------------------------------------------------------------------------------


def _begin(services: Services, env: str, *, requested_by: str, source: str) -> ReadinessCheck:
    """Record it as running, once: a rehearsal of `env` still running (or starting at this very moment,
    on any replica: the occurrence key is unique) refuses this one."""
    store = services.store
    latest = store.checks(env, kind=KIND, limit=1)
    if latest and latest[0].status == "running":
        running = latest[0]
        raise InvalidState(
            f"a rehearsal of {env} is already running (#{running.id}, asked by {running.requested_by} at"
            f" {running.started_at:%H:%M} UTC on {running.host})",
            hint="wait for it to finish: two rehearsals of one environment never run at once",
        )
    point = store.latest_restore_point(env)
    check = store.start_check(
        kind=KIND,
        env=env,
        requested_by=requested_by,
        source=source,
        occurrence=f"{KIND}:{env}:after:{latest[0].id if latest else 0}",
        restore_point_id=point.id if point else None,
        dump_sha256=point.dump_sha256 if point else None,
    )
    if check is None:
        raise InvalidState(f"another rehearsal of {env} started at this very moment", hint="wait for it to finish")
    store.note_check(check.id, scratch={"process": current_process().boot_id, "stand_in": stand_in_name(env)})
    store.record(actor=requested_by, action="rehearsal.started", env=env, detail=f"rehearsal #{check.id} ({source})")
    return store.check(check.id)


def _rehearse(
    services: Services,
    check: ReadinessCheck,
    record: dict[str, Any],
    views: list[Services],
    *,
    reporters: Sequence[Reporter],
    say: Progress,
) -> str | None:
    """Decide, write down, make the stand-ins, run the engine on them; what failed (None: every step passed).
    `views` gets the services seeing the stand-in as soon as they exist."""
    store = services.store
    decided = decide(services, check.env, check_id=check.id)
    record["stand_ins"] = decided.stand_ins()
    url = staging_database_url(services, decided) if decided.staging_url_env else None  # refused before anything
    scratch = {**check.scratch}
    if decided.scratch_branch:
        scratch.update(branch=decided.branch, remote=decided.remote)
    if decided.scratch_database:
        scratch["database"] = scratch_database_name(services, check.env, check.id)
    store.note_check(check.id, scratch=scratch, details=record)  # written down before anything is made
    view = services.with_stand_in(StandIn(decided.name, decided.settings))
    views.append(view)
    if decided.scratch_branch:
        say(f"making the scratch branch {decided.remote}/{decided.branch}")
        record["preparation"].append(
            _timed("scratch branch", lambda: make_branch(services, decided, view.repo(decided.name)))
        )
    if decided.scratch_database:
        say(f"restoring the scratch database {scratch['database']}")
        made: dict[str, Any] = {}

        def restore() -> str:
            made["url"], _seconds, size = make_database(services, decided, name=scratch["database"], say=say)
            return f"{scratch['database']} restored from {Path(decided.source or '').name}" + (
                f" ({fmt.size(size)})" if size is not None else ""
            )

        record["preparation"].append(_timed("scratch database", restore))
        url = made["url"]
    view = services.with_stand_in(StandIn(decided.name, decided.settings, database_url=url))
    views.append(view)
    database = view.database(decided.name) if url else None
    if isinstance(database, DatabaseIdentities):  # what proves, later, which kept copy the swap made of it
        scratch["database_id"] = database.identity(database.name)
    store.note_check(check.id, scratch=scratch, details=record)
    return _run(services, view, check, decided, reporters=reporters)


def _run(
    services: Services, view: Services, check: ReadinessCheck, decided: Decided, *, reporters: Sequence[Reporter]
) -> str | None:
    """The engine's plan and run on the stand-in; what failed, or None when every step passed."""
    request = RollbackRequest(env=decided.name, requested_by=check.requested_by, source=check.source)
    plan = make_plan(
        request,
        settings=decided.settings,
        repo=view.repo(decided.name),
        database=view.database(decided.name),
        restore_point=decided.restore_point,
        dump_override=services.dump_override(check.env),
        backup_dir=services.config.artifact_location,
        standby=None,  # production's standby is production's: the stand-in restores from the dump
    )
    run = lifecycle.propose_rehearsal(view, plan, source=check.source)
    services.store.note_check(check.id, run_id=run.id)
    actor = Actor(id=check.requested_by, via="bot")
    result = lifecycle.start(view, run.id, actor=actor, reporters=[_without_checklist(r) for r in reporters])
    if result.status == RunStatus.SUCCEEDED:
        return None
    return result.error or f"the rehearsal's run ended {result.status}"


def _finish(
    services: Services,
    check: ReadinessCheck,
    record: dict[str, Any],
    cleanup: Cleanup,
    failure: str | None,
    seconds: float,
    *,
    early: bool,
) -> str:
    status = "interrupted" if early else "passed" if failure is None and not cleanup.failed else "failed"
    if early:
        failure = "interrupted before it finished (the process was stopped)"
    words = _with_cleanup(failure, cleanup) if (failure or cleanup.failed) else None
    details = {**record, "cleanup": cleanup.lines, "run_id": check.run_id}
    services.store.finish_check(check.id, status=status, seconds=round(seconds, 3), details=details, failure=words)
    detail = f"rehearsal #{check.id} {status} in {seconds:.1f}s" + (f": {words}" if words else "")
    services.store.record(actor="rollback-bot", action=f"rehearsal.{status}", env=check.env, detail=detail)
    return status


def _with_cleanup(failure: str | None, cleanup: Cleanup) -> str:
    left = "; ".join(f"{line['what']}: {line['detail']}" for line in cleanup.failed)
    loud = f"CLEANUP INCOMPLETE, left behind: {left}" if left else ""
    return "; ".join(part for part in (failure, loud) if part)


def _steps(services: Services, run_id: str | None) -> list[dict[str, Any]]:
    """Each engine step's result and time, as readiness reads them: name, status, seconds (float), summary."""
    if not run_id:
        return []
    rows = []
    for step in services.store.steps(run_id):
        took = (step.finished_at - step.started_at).total_seconds() if step.started_at and step.finished_at else 0.0
        rows.append({"name": step.name, "status": step.status, "seconds": round(took, 3), "summary": step.summary})
    return rows


def _timed(name: str, make: Callable[[], str]) -> dict[str, Any]:
    began = time.monotonic()
    summary = make()
    return {"name": name, "status": "ok", "seconds": round(time.monotonic() - began, 3), "summary": summary}


def _without_checklist(reporter: Reporter) -> Reporter:
    """A rehearsal's checklist is not anyone's to do: its steps are told, its items are not."""

    def report(event: Event) -> None:
        reporter(replace(event, checklist=()) if isinstance(event, RunFinished) else event)

    return report


# --- after a crash ---------------------------------------------------------------------------------------


def _gone(services: Services, check: ReadinessCheck) -> bool:
    gone = is_gone(host=check.host, pid=check.pid, boot_id=check.scratch.get("process"))
    if gone is not None:
        return gone
    if check.host == current_process().host and check.pid is not None:
        return not Path(f"/proc/{check.pid}").exists()  # written down before its boot id was: the pid alone
    if check.run_id:  # another host: its run's heartbeat says whether it is still alive
        record = services.store.get_run(check.run_id)
        timeout = services.config.settings.bot.heartbeat_timeout
        return shown_status(record, heartbeat_timeout=timeout) is RunStatus.INTERRUPTED
    return False


def _rebuilt_view(services: Services, check: ReadinessCheck) -> Services | None:
    """The services seeing a cut-off rehearsal's stand-in again, with its database's URL; None if impossible."""
    try:
        decided = decide(services, check.env, check_id=check.id)
        url = None
        name = check.scratch.get("database")
        if isinstance(name, str) and name:
            from bot.backends.scratch_engines import engine_for

            production = services.database(check.env)
            url = engine_for(production).url(name) if production is not None else None
        elif decided.staging_url_env:
            url = staging_database_url(services, decided)
        return services.with_stand_in(StandIn(decided.name, decided.settings, database_url=url))
    except RollbackError as error:
        log.warning("rehearsal #%s: its stand-in cannot be rebuilt: %s", check.id, error.message)
        return None
