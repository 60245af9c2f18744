"""Restore drills and rehearsals in the store: started once, finished once, read back for every plan.

A check is started by one conditional insert keyed by its occurrence (a timer's firing, or a request's own
key), so two replicas firing the same scheduled drill cannot both run it. What it creates for itself (a
scratch branch, a scratch database) is written down before it is created, so a check cut off by a crash
can be cleaned up later by whoever finds it (`unfinished_checks`).
"""

from __future__ import annotations

import json
import os
import socket
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError

from bot.redact import redact, redact_data
from bot.store.schema import ReadinessCheck, iso, parse_iso, readiness_checks

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from sqlalchemy.engine import Connection

KINDS = ("drill", "rehearsal")
FINISHED = ("passed", "failed", "interrupted")


class ReadinessRecords:
    """The Store's part for drills and rehearsals (mixed into Store: one engine, one transaction helper)."""

    def transaction(self) -> AbstractContextManager[Connection]:  # provided by Store
        raise NotImplementedError

    def start_check(
        self,
        *,
        kind: str,
        env: str,
        requested_by: str,
        source: str,
        occurrence: str | None = None,
        restore_point_id: int | None = None,
        dump_sha256: str | None = None,
    ) -> ReadinessCheck | None:
        """Record a drill or rehearsal as running; None if this occurrence was already started (by anyone)."""
        if kind not in KINDS:
            raise ValueError(f"unknown readiness check kind {kind!r}")
        try:
            with self.transaction() as conn:
                result = conn.execute(
                    readiness_checks.insert().values(
                        kind=kind,
                        env=env,
                        occurrence=occurrence,
                        status="running",
                        requested_by=requested_by,
                        source=source,
                        restore_point_id=restore_point_id,
                        dump_sha256=dump_sha256,
                        started_at=iso(),
                        scratch="{}",
                        details="{}",
                        host=socket.gethostname(),
                        pid=os.getpid(),
                    )
                )
                new_id = int(result.inserted_primary_key[0])  # type: ignore[index]
        except IntegrityError:
            return None
        return self.check(new_id)

    def check(self, check_id: int) -> ReadinessCheck:
        with self.transaction() as conn:
            row = conn.execute(readiness_checks.select().where(readiness_checks.c.id == check_id)).mappings().one()
        return _check(row)

    def note_check(
        self,
        check_id: int,
        *,
        scratch: dict[str, Any] | None = None,
        details: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> None:
        """Write down what a running check made (before making it) or measured so far."""
        values: dict[str, Any] = {}
        if scratch is not None:
            values["scratch"] = json.dumps(redact_data(scratch))
        if details is not None:
            values["details"] = json.dumps(redact_data(details))
        if run_id is not None:
            values["run_id"] = run_id
        if values:
            with self.transaction() as conn:
                conn.execute(readiness_checks.update().where(readiness_checks.c.id == check_id).values(**values))

    def finish_check(
        self,
        check_id: int,
        *,
        status: str,
        seconds: float | None,
        details: dict[str, Any],
        failure: str | None = None,
        scratch: dict[str, Any] | None = None,
    ) -> bool:
        """Record how it ended; only a running check can end, so a late second finish changes nothing."""
        if status not in FINISHED:
            raise ValueError(f"a check ends passed, failed or interrupted, not {status!r}")
        values: dict[str, Any] = {
            "status": status,
            "finished_at": iso(),
            "seconds": seconds,
            "details": json.dumps(redact_data(details)),
            "failure": redact(failure) if failure else None,
        }
        if scratch is not None:
            values["scratch"] = json.dumps(redact_data(scratch))
        with self.transaction() as conn:
            result = conn.execute(
                readiness_checks.update()
                .where(readiness_checks.c.id == check_id, readiness_checks.c.status == "running")
                .values(**values)
            )
        return result.rowcount == 1

    def checks(
        self,
        env: str,
        *,
        kind: str,
        statuses: tuple[str, ...] = (),
        restore_point_id: int | None = None,
        limit: int = 20,
    ) -> list[ReadinessCheck]:
        """The newest first."""
        query = (
            readiness_checks.select()
            .where(readiness_checks.c.env == env, readiness_checks.c.kind == kind)
            .order_by(readiness_checks.c.id.desc())
            .limit(limit)
        )
        if statuses:
            query = query.where(readiness_checks.c.status.in_(list(statuses)))
        if restore_point_id is not None:
            query = query.where(readiness_checks.c.restore_point_id == restore_point_id)
        with self.transaction() as conn:
            return [_check(row) for row in conn.execute(query).mappings()]

    def last_check(self, env: str, *, kind: str, **filters: Any) -> ReadinessCheck | None:
        """The newest finished one (a running check has no result yet)."""
        found = self.checks(env, kind=kind, statuses=filters.pop("statuses", FINISHED), limit=1, **filters)
        return found[0] if found else None

    def unfinished_checks(self, *, kind: str | None = None) -> list[ReadinessCheck]:
        """Every check still marked running, oldest first: live ones, and ones a crash cut off."""
        query = readiness_checks.select().where(readiness_checks.c.status == "running")
        if kind is not None:
            query = query.where(readiness_checks.c.kind == kind)
        with self.transaction() as conn:
            return [_check(row) for row in conn.execute(query.order_by(readiness_checks.c.id)).mappings()]


def _check(row: Any) -> ReadinessCheck:
    return ReadinessCheck(
        id=row["id"],
        kind=row["kind"],
        env=row["env"],
        status=row["status"],
        requested_by=row["requested_by"],
        source=row["source"],
        restore_point_id=row["restore_point_id"],
        dump_sha256=row["dump_sha256"],
        run_id=row["run_id"],
        started_at=datetime.fromisoformat(row["started_at"]),
        finished_at=parse_iso(row["finished_at"]),
        seconds=row["seconds"],
        scratch=json.loads(row["scratch"] or "{}"),
        details=json.loads(row["details"] or "{}"),
        failure=row["failure"],
        host=row["host"],
        pid=row["pid"],
    )
