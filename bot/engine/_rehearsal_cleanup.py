"""Removing everything a rehearsal made, from what was written down: in a `finally`, or after a crash.

What the rehearsal made itself is in its record (readiness_checks.scratch, written before each was made):
the scratch branch and the scratch database. What its run made is in the run's journal: the pre-rollback
dump, the database the swap kept aside (the stand-in's data before the restore), a shadow a failed or cut
off restore left, a force-push's backup ref, and the staging flags it turned off. Every action is safe to
repeat and says what it did; one that fails is said loudly (FAILED, what is left and how to remove it)
and never stops the others.

A kept copy is dropped only when it is provably the stand-in's: on PostgreSQL by its identity (the oid the
journal noted for the stand-in just before the swap: a rename keeps it), elsewhere only when its name
starts with the stand-in's whole name. Never production's database, never production's kept copies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING

from bot.artifacts import is_s3
from bot.backends.base import Database, DatabaseIdentities
from bot.engine import lifecycle
from bot.engine._rehearsal_setup import ScratchBranches
from bot.engine.outcomes import CodeOutcome, DatabaseOutcome, DumpOutcome, FlagsOutcome
from bot.engine.run_status import BOT, RunStatus
from bot.errors import DatabaseError, RollbackError
from bot.store import ReadinessCheck, StepRecord

if TYPE_CHECKING:
    from bot.services import Services

log = logging.getLogger(__name__)

DONE, NOTHING, FAILED = "removed", "nothing left", "FAILED"
KEPT_MARKS = ("_before_rollback_", ".before_rollback_")  # PostgreSQL/MySQL, SQLite (a file beside)

Line = dict[str, str]


class Cleanup:
    """The cleanup's lines, each {"what", "result", "detail"}, in the order done."""

    def __init__(self) -> None:
        self.lines: list[Line] = []

    def do(self, what: str, action: Callable[[], str | None], *, silent_if_nothing: bool = False) -> None:
        try:
            said = action()
        except Exception as error:  # every failure is said; none stops the rest of the cleanup
            words = (
                error.message + (f" ({error.hint})" if error.hint else "") if isinstance(error, RollbackError) else ""
            )
            if not isinstance(error, RollbackError):
                log.exception("rehearsal cleanup: %s failed", what)
                words = f"unexpected {type(error).__name__}: {error}"
            self.lines.append({"what": what, "result": FAILED, "detail": words})
            return
        if said or not silent_if_nothing:
            self.lines.append({"what": what, "result": DONE if said else NOTHING, "detail": said or ""})

    @property
    def failed(self) -> list[Line]:
        return [line for line in self.lines if line["result"] == FAILED]


def clean_up(services: Services, check: ReadinessCheck, view: Services | None) -> Cleanup:
    """Remove what `check` (a rehearsal) and its run made. `view`: the services seeing its stand-in (None:
    the stand-in could not be rebuilt, so only what needs no stand-in is removed, and the rest is said)."""
    done = Cleanup()
    scratch = check.scratch
    stand_in = str(scratch.get("stand_in") or "")
    steps = {s.name: s for s in services.store.steps(check.run_id)} if check.run_id else {}
    if check.run_id and view is not None:
        done.do("the rehearsal's run", lambda: _end_run(view, str(check.run_id)), silent_if_nothing=True)
        if _flags_changed(steps):
            done.do("staging flags", lambda: _flags_back(view, str(check.run_id)))
    elif check.run_id:
        done.do("the rehearsal's run", lambda: _no_view(f"run {check.run_id} of {stand_in}"))
    _databases(services, check, view, steps, done)
    branch = scratch.get("branch")
    if isinstance(branch, str) and branch:
        repo = view.repo(stand_in) if view is not None else None
        backup = CodeOutcome.from_details(steps["code"].details).backup_ref if "code" in steps else ""
        if backup:
            done.do(f"backup ref {backup}", lambda: _branches(repo).delete_backup_ref(backup))
        done.do(f"scratch branch {branch}", lambda: _branches(repo).delete_remote_branch(branch))
    dump = DumpOutcome.from_details(steps["pre_dump"].details if "pre_dump" in steps else {})
    location = dump.location or dump.path
    if location:
        done.do(f"pre-rollback dump {location.rsplit('/', 1)[-1]}", lambda: _delete_dump(services, location))
    return done


# --- the run and the flags ------------------------------------------------------------------------------


def _end_run(view: Services, run_id: str) -> str | None:
    """A run that failed or was cut off is aborted (which releases the stand-in's lock): it never waits."""
    shown = lifecycle.view(view, run_id).status
    if shown in (RunStatus.FAILED, RunStatus.INTERRUPTED):
        record = lifecycle.abort(view, run_id, actor=BOT)
        return f"aborted its run {run_id} ({record.status}), releasing the stand-in's lock"
    return None  # it ended (or never started: then it holds no lock and changed nothing)


def _flags_changed(steps: dict[str, StepRecord]) -> bool:
    step = steps.get("flags")
    return (
        step is not None
        and step.status in ("ok", "failed", "running")
        and bool(FlagsOutcome.from_details(step.details).before)
    )


def _flags_back(view: Services, run_id: str) -> str | None:
    return "; ".join(lifecycle.undo_flags(view, run_id, actor=BOT)) or None


def _no_view(what: str) -> str | None:
    raise RollbackError(f"{what} could not be reached: the stand-in could not be rebuilt from the configuration")


def _branches(repo: object) -> ScratchBranches:
    if not isinstance(repo, ScratchBranches):
        raise RollbackError("the stand-in's repository could not be opened to delete the scratch branch")
    return repo


# --- databases ------------------------------------------------------------------------------------------


def _databases(
    services: Services, check: ReadinessCheck, view: Services | None, steps: dict[str, StepRecord], done: Cleanup
) -> None:
    scratch_name = str(check.scratch.get("database") or "")
    stand_in = str(check.scratch.get("stand_in") or "")
    noted = DatabaseOutcome.from_details(steps["database"].details if "database" in steps else {})
    kept = (
        noted.previous
        or DumpOutcome.from_details(steps["pre_dump"].details if "pre_dump" in steps else {}).kept_database
    )
    if not (scratch_name or noted.shadow or kept or noted.live_id or check.scratch.get("database_id")):
        return
    try:
        stand_in_db = view.database(stand_in) if view is not None else None
    except RollbackError as error:
        stand_in_db = None
        log.warning("rehearsal cleanup: the stand-in's database cannot be opened: %s", error.message)
    live = scratch_name or str(getattr(stand_in_db, "name", "") or "")
    if noted.shadow and noted.shadow != live:
        shadow = noted.shadow
        drop_shadow = lambda: _needs(stand_in_db, "its shadow").discard_shadow(shadow)  # noqa: E731
        done.do(f"shadow {shadow}", drop_shadow, silent_if_nothing=True)  # swapped in, or dropped by the engine
    server = _production(services, check.env) if scratch_name else stand_in_db
    # The stand-in's identity, noted before the run (a rename keeps it): after the swap it is the kept copy's.
    identity = str(check.scratch.get("database_id") or noted.live_id or "") or None
    if kept or identity:
        done.do(f"kept copy {kept or '(found by identity)'}", lambda: _drop_kept(server, live, kept, identity))
    if scratch_name:

        def drop_scratch_copy() -> str | None:
            from bot.backends.scratch import drop_scratch

            return drop_scratch(_needs(server, "the scratch database"), scratch_name)

        done.do(f"scratch database {scratch_name}", drop_scratch_copy)


def _production(services: Services, env: str) -> Database | None:
    try:
        return services.database(env)
    except RollbackError as error:
        log.warning("rehearsal cleanup: %s's database cannot be opened: %s", env, error.message)
        return None


def _needs(database: Database | None, what: str) -> Database:
    if database is None:
        raise DatabaseError(f"the database server could not be reached to remove {what}")
    return database


def _drop_kept(server: Database | None, live: str, kept: str | None, identity: str | None) -> str | None:
    """Drop the copy the run's swap kept of the stand-in, once it is proven to be the stand-in's."""
    database = _needs(server, "the kept copy")
    if isinstance(database, DatabaseIdentities) and identity:
        found = database.name_of(identity)  # what the stand-in, as it was before the swap, is called now
        if found is None:
            return None
        if found == live:
            return None  # the swap never happened: the stand-in itself is still there under its name
        kept = found
    elif not kept or not live or not kept.startswith(tuple(live + mark for mark in KEPT_MARKS)):
        raise DatabaseError(
            f"the copy {kept or '?'} the rehearsal's swap kept cannot be proven to be the stand-in {live}: left alone",
            hint="drop it by hand if it is the rehearsal's",
        )
    from bot.backends.scratch_engines import engine_for

    return engine_for(database).drop(kept)


# --- the pre-rollback dump -------------------------------------------------------------------------------


def _delete_dump(services: Services, location: str) -> str | None:
    """Delete the rehearsal's pre-rollback dump from the artifact store (a folder or S3), and its folder."""
    if not services.artifacts().delete(location):
        return None
    if not is_s3(location):
        with suppress(OSError):
            Path(location).parent.rmdir()  # the stand-in's own folder, once empty
    return f"deleted {location}"
