"""The stages of one restore drill (bot/engine/drills.py runs them and records how it ended).

setup → fetch (size and sha256 against the restore point's record) → restore (into a scratch database
whose name is written down first) → rows → checks, and the scratch database dropped in a `finally`.
A stage that fails ends the drill with Failed(stage, message, hint); the stage says what to do next
(drill_story.what_to_do). `details` is written to the store at each stage and every HEARTBEAT_EVERY_S,
so a drill whose process died is seen (drills.clean_up_crashed_drills) and its copy dropped.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.artifacts import fetched, is_s3
from bot.backends.base import Database, Progress
from bot.backends.reporter import Reporter
from bot.backends.scratch import drop_scratch, restore_scratch, row_counts, run_checks, scratch_name
from bot.errors import RollbackError
from bot.redact import redact
from bot.store import ReadinessCheck, RestorePoint, iso

if TYPE_CHECKING:
    from bot.services import Services

HEARTBEAT_EVERY_S = 20.0


@dataclass(frozen=True)
class StartedDrill:
    check: ReadinessCheck
    point: RestorePoint | None  # the restore point it drills: the latest when it started


class Failed(Exception):
    """Why a drill failed, what to do, and at which stage: setup, fetch, restore, rows, checks or cleanup."""

    def __init__(self, stage: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.stage, self.message, self.hint = stage, message, hint


class DrillSteps:
    """One drill's stages, its record so far (`details`, `scratch`), and its heartbeat."""

    def __init__(
        self, services: Services, started: StartedDrill, progress: Progress, cancel: threading.Event | None
    ) -> None:
        self.services, self.check, self.point = services, started.check, started.point
        self.env = started.check.env
        self.say = Reporter(progress)
        self.cancel = cancel
        self.details: dict[str, Any] = {"stage": "setup", "restore_point": _point_facts(started.point)}
        self.scratch: dict[str, Any] = dict(started.check.scratch)  # the process it runs in, then what it makes
        self.done = threading.Event()
        self._lock = threading.Lock()

    def run(self) -> Failed | None:
        """None if it passed; else why it failed. The scratch database is dropped before it returns."""
        database: Database | None = None
        failed: Failed | None = None
        try:
            database = self._database()
            with self._dump(database) as dump:
                self._restore(database, dump)
            self._count(database)
            self._checks(database)
        except Failed as why:
            failed = why
        except RollbackError as error:
            failed = Failed(self.details["stage"], error.message, error.hint)
        except Exception as error:  # whatever it is, the drill failed and people must hear of it
            failed = Failed(self.details["stage"], redact(f"unexpected {type(error).__name__}: {error}"))
        finally:  # even when interrupted (Ctrl-C): the copy must not outlive the drill
            left = self._drop(database) if database is not None and self.scratch.get("database") else None
        return failed or left

    def note(self, **values: Any) -> None:
        with self._lock:
            self.details.update(values)
            self.details["heartbeat_at"] = iso()
            with suppress(Exception):  # the store down for a moment: the next beat writes it
                self.services.store.note_check(self.check.id, details=dict(self.details))

    def beat_until_done(self) -> None:
        while not self.done.wait(HEARTBEAT_EVERY_S):
            self.note()

    def _database(self) -> Database:
        env, point = self.env, self.point
        engine = self.services.config.environment(env).database.engine
        snapshot = f"take one now: `rollback-bot snapshot {env}` (the deploy pipeline runs it before each deploy)"
        if engine == "none":
            raise Failed(
                "setup",
                f'{env} has no database (engine = "none"): there is no backup to drill',
                hint=f"configure [environments.{env}.database], or remove [environments.{env}.drill] every",
            )
        if point is None:
            raise Failed("setup", f"{env} has no restore point: there is no backup a rollback could restore", snapshot)
        if not point.dump_path:
            raise Failed("setup", f"restore point #{point.id} of {env} has no database dump", snapshot)
        database = self.services.database(env)
        assert database is not None  # engine is not "none"
        self.note(engine=database.engine)
        return database

    @contextmanager
    def _dump(self, database: Database) -> Iterator[Path]:
        point = self.point
        assert point is not None and point.dump_path
        self.note(stage="fetch")
        where, started = point.dump_path, time.monotonic()
        self.say.say(f"fetching {where.rsplit('/', 1)[-1]} and checking its size and sha256")
        if point.dump_sha256:
            downloads = self.services.config.work_dir / "scratch" / "drills"
            downloads.mkdir(parents=True, exist_ok=True)
            with fetched(self.services.artifacts(), where, point.dump_sha256, point.dump_size, downloads) as local:
                self._fetched(local, started, verified=True)
                yield local
            return
        if is_s3(where) or not Path(where).is_file():
            raise Failed("fetch", f"restore point #{point.id}'s dump cannot be read: {where} (no sha256 recorded)")
        self._fetched(Path(where), started, verified=False)  # an old restore point: the restore's checks only
        yield Path(where)

    def _fetched(self, local: Path, started: float, *, verified: bool) -> None:
        self.note(dump_size=local.stat().st_size, fetch_seconds=time.monotonic() - started, sha256_verified=verified)

    def _restore(self, database: Database, dump: Path) -> None:
        name = scratch_name(database, "drill", f"{self.check.id}{secrets.token_hex(2)}")
        self.scratch.update(engine=database.engine, database=name)
        self.services.store.note_check(self.check.id, scratch=self.scratch)  # before it exists
        self.note(stage="restore", scratch_database=name)
        copy = restore_scratch(database, dump, name=name, say=self.say, cancel=self.cancel)
        self.note(restore_seconds=copy.seconds, scratch_size=copy.size, entries=copy.entries, warnings=copy.warnings)

    def _count(self, database: Database) -> None:
        self.note(stage="rows")
        self.say.say("counting the rows of every table")
        rows = row_counts(database, self.scratch["database"])
        self.note(rows=rows, tables=len(rows), total_rows=sum(rows.values()))

    def _checks(self, database: Database) -> None:
        sqls = self.services.config.environment(self.env).drill.checks
        self.note(stage="checks")
        if sqls:
            self.say.say(f"running {len(sqls)} check(s)")
        results = run_checks(database, self.scratch["database"], sqls)
        self.note(checks=[r.to_dict() for r in results])
        failed = [r for r in results if not r.passed]
        if failed:
            first = failed[0]
            said = f"failed: {first.error}" if first.error else f"returned {first.value}"
            more = f" ({len(failed)} of {len(results)} checks failed)" if len(results) > 1 else ""
            raise Failed("checks", f"the check `{first.sql}` {said}{more}")

    def _drop(self, database: Database) -> Failed | None:
        name = self.scratch["database"]
        try:
            said = drop_scratch(database, name) or f"{name} was already gone"
        except Exception as error:
            why = error.message if isinstance(error, RollbackError) else redact(str(error))
            self.scratch["dropped"] = False
            self.note(left_behind=name, drop_error=why)
            return Failed("cleanup", f"the scratch database {name} could not be dropped: {why}")
        self.scratch["dropped"] = True
        self.note(dropped=said)
        self.say.say(said)
        return None


def _point_facts(point: RestorePoint | None) -> dict[str, Any] | None:
    if point is None:
        return None
    return {
        "id": point.id,
        "commit": point.commit_sha,
        "subject": point.commit_subject,
        "created_at": iso(point.created_at),
        "dump": point.dump_path,
        "recorded_size": point.dump_size,
    }
