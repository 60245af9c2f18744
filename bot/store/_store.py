"""Runs, the step journal, the audit trail, restore points, checklist items and per-environment locks.

One code path for SQLite (the embedded default) and PostgreSQL (several replicas sharing state),
through SQLAlchemy Core. Every state change that must happen once — taking a lock, starting a run,
claiming a step, ticking a checklist item — is a single conditional write whose row count says
whether this caller won, so a double click, a Slack retry or a second replica cannot do it twice.

Size: the Store class is the one place every conditional write lives (runs, steps, locks, checklist,
once-keys); keeping them side by side makes the "changed once" rule reviewable in one read. Timers and the
outbox have their own modules (bot/timers.py, bot/outbox.py).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from bot.errors import LockHeld, RunNotFound
from bot.redact import redact, redact_data
from bot.store._migrate import upgrade
from bot.store._readiness import ReadinessRecords
from bot.store.schema import (
    AuditEntry,
    ChecklistRecord,
    LockRecord,
    RestorePoint,
    RunRecord,
    StandbyRecord,
    StepRecord,
    audit,
    checklist,
    iso,
    locks,
    now,
    once_keys,
    parse_iso,
    restore_points,
    runs,
    standbys,
    steps,
)


def _engine_url(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url.removeprefix(prefix)
    return url


def new_run_id(env: str) -> str:
    # 32 random bits: bursts never collide. The environment's name is only a hint for people (runs.env is
    # the truth), cut to 15 characters so the id fits runs.id (40) whatever the name's length (up to 40).
    return f"{env[:15]}-{now():%Y%m%d-%H%M%S}-{secrets.token_hex(4)}"


class Store(ReadinessRecords):
    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.engine: Engine = sa.create_engine(_engine_url(url), future=True, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        upgrade(self.engine)  # the schema changes only through migrations: see _migrate

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction on the store, for the store's own modules (timers, outbox): committed on exit."""
        with self.engine.begin() as conn:
            yield conn

    # --- runs ---------------------------------------------------------------------------------------

    def create_run(
        self,
        *,
        env: str,
        requested_by: str,
        source: str,
        plan: dict[str, Any],
        plan_hash: str,
        dry_run: bool,
        status: str = "planned",
        meta: dict[str, Any] | None = None,
    ) -> RunRecord:
        run_id = new_run_id(env)
        with self.transaction() as conn:
            conn.execute(
                runs.insert().values(
                    id=run_id,
                    env=env,
                    status=status,
                    source=source,
                    requested_by=requested_by,
                    plan=json.dumps(redact_data(plan)),
                    plan_hash=plan_hash,
                    dry_run=dry_run,
                    created_at=iso(),
                    meta=json.dumps(meta or {}),
                )
            )
        return self.get_run(run_id)

    def get_run(self, run_id: str) -> RunRecord:
        with self.transaction() as conn:
            row = conn.execute(runs.select().where(runs.c.id == run_id)).mappings().first()
        if row is None:
            raise RunNotFound(f"no run {run_id!r}", hint="see `rollback-bot history` for run IDs")
        return _run(row)

    def list_runs(
        self, *, limit: int = 20, env: str | None = None, statuses: Sequence[str] = (), dry_run: bool | None = None
    ) -> list[RunRecord]:
        """The newest runs first; `dry_run` False leaves dry runs out (they wait for nobody), True keeps only them."""
        query = runs.select().order_by(runs.c.created_at.desc(), runs.c.id.desc()).limit(limit)
        if env:
            query = query.where(runs.c.env == env)
        if statuses:
            query = query.where(runs.c.status.in_(list(statuses)))
        if dry_run is not None:
            query = query.where(runs.c.dry_run == dry_run)
        with self.transaction() as conn:
            return [_run(row) for row in conn.execute(query).mappings()]

    def transition(self, run_id: str, *, from_: Sequence[str], to: str, **values: Any) -> bool:
        """Move a run to `to` only if it is in one of `from_`; True if this call made the change."""
        values = _run_values(values)
        with self.transaction() as conn:
            result = conn.execute(
                runs.update().where(runs.c.id == run_id, runs.c.status.in_(list(from_))).values(status=to, **values)
            )
        return result.rowcount == 1

    def update_run(self, run_id: str, **values: Any) -> None:
        with self.transaction() as conn:
            conn.execute(runs.update().where(runs.c.id == run_id).values(**_run_values(values)))

    def merge_meta(self, run_id: str, extra: dict[str, Any]) -> dict[str, Any]:
        with self.transaction() as conn:
            row = conn.execute(sa.select(runs.c.meta).where(runs.c.id == run_id)).first()
            meta = {**json.loads(row[0] if row else "{}"), **extra}
            conn.execute(runs.update().where(runs.c.id == run_id).values(meta=json.dumps(meta)))
        return meta

    # --- steps --------------------------------------------------------------------------------------

    def init_steps(self, run_id: str, names: Sequence[str]) -> None:
        with self.transaction() as conn:
            existing = {row[0] for row in conn.execute(sa.select(steps.c.name).where(steps.c.run_id == run_id))}
            for position, name in enumerate(names):
                if name not in existing:
                    conn.execute(
                        steps.insert().values(run_id=run_id, name=name, position=position, status="pending", attempts=0)
                    )

    def claim_step(self, run_id: str, name: str) -> bool:
        """Mark a pending (or failed, for a retry) step running; False if someone else already did."""
        with self.transaction() as conn:
            result = conn.execute(
                steps.update()
                .where(steps.c.run_id == run_id, steps.c.name == name, steps.c.status.in_(["pending", "failed"]))
                .values(status="running", started_at=iso(), finished_at=None, attempts=steps.c.attempts + 1)
            )
            if result.rowcount == 1:
                conn.execute(runs.update().where(runs.c.id == run_id).values(current_step=name, heartbeat_at=iso()))
        return result.rowcount == 1

    def release_step(self, run_id: str, name: str, *, summary: str) -> bool:
        """Put a running step back to pending: begun early beside another, it was stopped before changing
        anything (what it noted, like a shadow's name, stays in its details for a crash's cleanup)."""
        with self.transaction() as conn:
            result = conn.execute(
                steps.update()
                .where(steps.c.run_id == run_id, steps.c.name == name, steps.c.status == "running")
                .values(status="pending", finished_at=None, summary=redact(summary))
            )
        return result.rowcount == 1

    def finish_step(
        self, run_id: str, name: str, *, status: str, summary: str = "", details: dict[str, Any] | None = None
    ) -> None:
        with self.transaction() as conn:
            conn.execute(
                steps.update()
                .where(steps.c.run_id == run_id, steps.c.name == name)
                .values(
                    status=status,
                    finished_at=iso(),
                    summary=redact(summary),
                    details=json.dumps(redact_data(details or {})),
                )
            )
            conn.execute(runs.update().where(runs.c.id == run_id).values(heartbeat_at=iso()))

    def note_step(self, run_id: str, name: str, details: dict[str, Any]) -> None:
        """Journal what a running step learned before it changes anything (e.g. flag states)."""
        with self.transaction() as conn:
            conn.execute(
                steps.update()
                .where(steps.c.run_id == run_id, steps.c.name == name)
                .values(details=json.dumps(redact_data(details)))
            )

    def skip_step(self, run_id: str, name: str, *, summary: str) -> bool:
        with self.transaction() as conn:
            result = conn.execute(
                steps.update()
                .where(steps.c.run_id == run_id, steps.c.name == name, steps.c.status.in_(["pending", "failed"]))
                .values(status="skipped", finished_at=iso(), summary=redact(summary))
            )
        return result.rowcount == 1

    def steps(self, run_id: str) -> list[StepRecord]:
        with self.transaction() as conn:
            rows = conn.execute(steps.select().where(steps.c.run_id == run_id).order_by(steps.c.position))
            return [
                StepRecord(
                    run_id=row.run_id,
                    name=row.name,
                    position=row.position,
                    status=row.status,
                    attempts=row.attempts,
                    started_at=parse_iso(row.started_at),
                    finished_at=parse_iso(row.finished_at),
                    summary=row.summary,
                    details=json.loads(row.details),
                )
                for row in rows
            ]

    def heartbeat(self, run_id: str) -> None:
        self.update_run(run_id, heartbeat_at=iso())

    # --- audit --------------------------------------------------------------------------------------

    def record(
        self, *, actor: str, action: str, run_id: str | None = None, env: str | None = None, detail: str = ""
    ) -> None:
        with self.transaction() as conn:
            conn.execute(
                audit.insert().values(
                    at=iso(),
                    run_id=run_id,
                    env=env,
                    actor=redact(actor),
                    action=action,
                    detail=redact(detail),
                )
            )

    def audit_trail(self, *, run_id: str | None = None, limit: int = 200) -> list[AuditEntry]:
        query = audit.select().order_by(audit.c.id).limit(limit)
        if run_id:
            query = query.where(audit.c.run_id == run_id)
        with self.transaction() as conn:
            return [
                AuditEntry(
                    at=datetime.fromisoformat(row.at),
                    run_id=row.run_id,
                    env=row.env,
                    actor=row.actor,
                    action=row.action,
                    detail=row.detail,
                )
                for row in conn.execute(query)
            ]

    # --- locks --------------------------------------------------------------------------------------

    def acquire_lock(self, env: str, *, run_id: str, holder: str) -> None:
        """Take the environment's lock for `run_id`, or raise LockHeld naming who has it."""
        try:
            with self.transaction() as conn:
                conn.execute(locks.insert().values(env=env, run_id=run_id, holder=holder, acquired_at=iso()))
        except IntegrityError:
            current = self.lock_for(env)
            if current is None:  # released between our insert and our read: try once more
                return self.acquire_lock(env, run_id=run_id, holder=holder)
            if current.run_id == run_id:
                return None
            raise LockHeld(
                env,
                run_id=current.run_id,
                holder=current.holder,
                since=f"{current.acquired_at:%Y-%m-%d %H:%M} UTC",
            ) from None
        return None

    def release_lock(self, env: str, *, run_id: str) -> None:
        with self.transaction() as conn:
            conn.execute(locks.delete().where(locks.c.env == env, locks.c.run_id == run_id))

    def hand_over_lock(self, env: str, *, run_id: str, holder: str, from_holder: str) -> bool:
        """`run_id` keeps the lock, now held in `holder`'s name; False unless it was still `from_holder`'s."""
        with self.transaction() as conn:
            result = conn.execute(
                locks.update()
                .where(locks.c.env == env, locks.c.run_id == run_id, locks.c.holder == from_holder)
                .values(holder=holder)
            )
        return result.rowcount == 1

    def break_lock(self, env: str, *, run_id: str) -> bool:
        """Remove `run_id`'s lock on `env`; False if it was not (or no longer) that run's."""
        with self.transaction() as conn:
            result = conn.execute(locks.delete().where(locks.c.env == env, locks.c.run_id == run_id))
        return result.rowcount == 1

    def lock_for(self, env: str) -> LockRecord | None:
        with self.transaction() as conn:
            row = conn.execute(locks.select().where(locks.c.env == env)).first()
        if row is None:
            return None
        return LockRecord(
            env=row.env,
            run_id=row.run_id,
            holder=row.holder,
            acquired_at=datetime.fromisoformat(row.acquired_at),
        )

    # --- restore points -----------------------------------------------------------------------------

    def add_restore_point(
        self,
        *,
        env: str,
        commit_sha: str,
        commit_subject: str,
        dump_path: str | None,
        dump_size: int | None,
        created_by: str,
        dump_sha256: str | None = None,
    ) -> RestorePoint:
        with self.transaction() as conn:
            result = conn.execute(
                restore_points.insert().values(
                    env=env,
                    commit_sha=commit_sha,
                    commit_subject=commit_subject,
                    dump_path=dump_path,
                    dump_size=dump_size,
                    dump_sha256=dump_sha256,
                    created_at=iso(),
                    created_by=created_by,
                )
            )
            new_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
        points = [p for p in self.restore_points(env) if p.id == new_id]
        return points[0]

    def restore_points(self, env: str, *, limit: int = 20) -> list[RestorePoint]:
        query = (
            restore_points.select().where(restore_points.c.env == env).order_by(restore_points.c.id.desc()).limit(limit)
        )
        with self.transaction() as conn:
            return [
                RestorePoint(
                    id=row.id,
                    env=row.env,
                    commit_sha=row.commit_sha,
                    commit_subject=row.commit_subject,
                    dump_path=row.dump_path,
                    dump_size=row.dump_size,
                    created_at=datetime.fromisoformat(row.created_at),
                    created_by=row.created_by,
                    dump_sha256=row.dump_sha256,
                )
                for row in conn.execute(query)
            ]

    def latest_restore_point(self, env: str) -> RestorePoint | None:
        points = self.restore_points(env, limit=1)
        return points[0] if points else None

    # --- standbys (prestage = true) -------------------------------------------------------------------

    def set_standby(self, record: StandbyRecord) -> None:
        """Record the environment's standby (replacing the previous one, which the backend dropped)."""
        values = {**record.__dict__, "created_at": iso(record.created_at)}
        with self.transaction() as conn:
            conn.execute(standbys.delete().where(standbys.c.env == record.env))
            conn.execute(standbys.insert().values(**values))

    def standby(self, env: str) -> StandbyRecord | None:
        with self.transaction() as conn:
            row = conn.execute(standbys.select().where(standbys.c.env == env)).mappings().first()
        if row is None:
            return None
        return StandbyRecord(**{**row, "created_at": parse_iso(row["created_at"])})

    def clear_standby(self, env: str, *, database: str | None = None) -> None:
        """Forget the standby (swapped in, found unusable, or about to be rebuilt); only `database` if given."""
        query = standbys.delete().where(standbys.c.env == env)
        if database is not None:
            query = query.where(standbys.c.database == database)
        with self.transaction() as conn:
            conn.execute(query)

    # --- checklist ----------------------------------------------------------------------------------

    def add_checklist(self, run_id: str, items: Sequence[tuple[str, str, str]]) -> None:
        """Items as (item_id, phase, text), in order; adding twice is harmless."""
        with self.transaction() as conn:
            existing = {
                row[0] for row in conn.execute(sa.select(checklist.c.item_id).where(checklist.c.run_id == run_id))
            }
            for position, (item_id, phase, text) in enumerate(items):
                if item_id not in existing:
                    conn.execute(
                        checklist.insert().values(
                            run_id=run_id, item_id=item_id, phase=phase, position=position, text=text
                        )
                    )

    def add_checklist_item(self, run_id: str, *, item_id: str, phase: str, text: str, position: int) -> bool:
        """One item at an explicit position (e.g. before the run's own items); False if it exists already."""
        try:
            with self.transaction() as conn:
                conn.execute(
                    checklist.insert().values(run_id=run_id, item_id=item_id, phase=phase, position=position, text=text)
                )
        except IntegrityError:
            return False
        return True

    def checklist(self, run_id: str) -> list[ChecklistRecord]:
        with self.transaction() as conn:
            rows = conn.execute(checklist.select().where(checklist.c.run_id == run_id).order_by(checklist.c.position))
            return [
                ChecklistRecord(
                    run_id=row.run_id,
                    item_id=row.item_id,
                    phase=row.phase,
                    position=row.position,
                    text=row.text,
                    done_by=row.done_by,
                    done_at=parse_iso(row.done_at),
                )
                for row in rows
            ]

    def mark_done(self, run_id: str, item_id: str, *, by: str) -> bool:
        """Tick an item; False if it was already done (the first person to tick it keeps the credit)."""
        with self.transaction() as conn:
            result = conn.execute(
                checklist.update()
                .where(
                    checklist.c.run_id == run_id,
                    checklist.c.item_id == item_id,
                    checklist.c.done_at.is_(None),
                )
                .values(done_by=by, done_at=iso())
            )
        return result.rowcount == 1

    # --- idempotency ----------------------------------------------------------------------------------

    def first_time(self, key: str) -> bool:
        """True the first time a key is seen, False ever after (across threads and replicas)."""
        try:
            with self.transaction() as conn:
                conn.execute(once_keys.insert().values(key=key[:200], at=iso()))
        except IntegrityError:
            return False
        return True


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the CLI read while a run writes; busy_timeout waits out short writer overlaps.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _run_values(values: dict[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, datetime):
            converted[key] = iso(value)
        elif key == "error" and isinstance(value, str):
            converted[key] = redact(value)
        elif key == "meta":
            converted[key] = json.dumps(value)
        else:
            converted[key] = value
    return converted


def _run(row: Any) -> RunRecord:
    return RunRecord(
        id=row["id"],
        env=row["env"],
        status=row["status"],
        source=row["source"],
        requested_by=row["requested_by"],
        approved_by=row["approved_by"],
        plan=json.loads(row["plan"]),
        plan_hash=row["plan_hash"],
        dry_run=bool(row["dry_run"]),
        created_at=datetime.fromisoformat(row["created_at"]),
        started_at=parse_iso(row["started_at"]),
        finished_at=parse_iso(row["finished_at"]),
        heartbeat_at=parse_iso(row["heartbeat_at"]),
        current_step=row["current_step"],
        error=row["error"],
        meta=json.loads(row["meta"] or "{}"),
        host=row["host"],
        pid=row["pid"],
        boot_id=row["boot_id"],
    )
