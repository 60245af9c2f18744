"""Readiness: what rehearsals and restore drills say about an environment's rollback, read for every plan.

Every plan, App Home and `rollback-bot status` show it: the last rehearsal and the last drill (when,
passed or failed, how long), each step's expected time (from the last passed rehearsal; the database
restore from a drill of the plan's own restore point when that is newer knowledge), and, in plain words,
what has NOT been proven: a restore point that never passed a drill, a last rehearsal that failed, an
environment never rehearsed.

Readiness is shown with a plan, never part of what an approval binds to (Plan.hash leaves it out): a
drill finishing while a plan waits changes what people know, not what the rollback would do.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot import format as fmt
from bot.store import ReadinessCheck, RestorePoint, iso

if TYPE_CHECKING:
    from bot.store import Store

# The engine's step names a rehearsal records times for, in the words people read in a plan.
STEP_WORDS = {
    "safety": "safety checks",
    "pre_dump": "pre-rollback dump",
    "code": "code",
    "database": "database restore",
    "flags": "flags",
    "health": "health",
    "checklist": "checklist",
}


@dataclass(frozen=True)
class Proof:
    """One finished rehearsal or drill, as a plan shows it."""

    kind: str  # drill | rehearsal
    status: str  # passed | failed | interrupted
    finished_at: str  # ISO
    seconds: float | None
    restore_point_id: int | None
    rows: int | None = None  # a drill: rows restored, all tables together
    restore_seconds: float | None = None  # a drill: the restore alone
    failure: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def age(self, at: datetime) -> str:
        return fmt.duration(at - datetime.fromisoformat(self.finished_at), rough=True)

    def sentence(self, at: datetime) -> str:
        """'rehearsed 14h ago: passed, 48s end to end' / 'last drill 2h ago: restore point #3 restored cleanly …'."""
        took = f"{fmt.duration(self.seconds)}" if self.seconds is not None else "time not recorded"
        if self.kind == "rehearsal":
            if self.passed:
                return f"rehearsed {self.age(at)} ago: passed, {took} end to end"
            return (
                f"rehearsed {self.age(at)} ago: {self.status.upper()} after {took}: {self.failure or 'see its record'}"
            )
        point = f"restore point #{self.restore_point_id}" if self.restore_point_id is not None else "no restore point"
        if self.passed:
            rows = f", {fmt.count(self.rows)} rows" if self.rows is not None else ""
            restore = self.restore_seconds if self.restore_seconds is not None else self.seconds
            shown = fmt.duration(restore) if restore is not None else "time not recorded"
            return f"last drill {self.age(at)} ago: {point} restored cleanly ({shown}{rows})"
        return f"last drill {self.age(at)} ago: {point} {self.status.upper()}: {self.failure or 'see its record'}"


@dataclass(frozen=True)
class StepEstimate:
    step: str
    seconds: float
    source: str  # "rehearsal 3h ago" | "drill of restore point #3"


@dataclass(frozen=True)
class Readiness:
    rehearsal: Proof | None = None  # the newest finished rehearsal
    drill: Proof | None = None  # the newest finished drill, of any restore point
    restore_point_id: int | None = None  # the plan's restore point, when the plan restores one
    restore_point_drill: Proof | None = None  # the newest PASSED drill of that restore point
    expected: tuple[StepEstimate, ...] = field(default_factory=tuple)
    drills_apply: bool = True  # False: the plan restores no dump (none, RDS), so drills say nothing of it

    @property
    def expected_seconds(self) -> float | None:
        return sum(e.seconds for e in self.expected) if self.expected else None

    def warnings(self, at: datetime) -> list[str]:
        """What has not been proven, in plain words (a plan shows these as warnings)."""
        said: list[str] = []
        if self.rehearsal is None:
            said.append("never rehearsed: nobody has seen this rollback work end to end (`/rollback rehearse ENV`)")
        elif not self.rehearsal.passed:
            said.append(f"the last rehearsal, {self.rehearsal.age(at)} ago, {self.rehearsal.status}")
        if self.drills_apply and self.restore_point_id is not None and self.restore_point_drill is None:
            said.append(f"restore point #{self.restore_point_id} never passed a drill: nobody has seen it restore")
        return said

    def sentences(self, at: datetime) -> list[str]:
        lines = [self.rehearsal.sentence(at)] if self.rehearsal else ["never rehearsed"]
        if self.drills_apply:
            drill = self.restore_point_drill or self.drill
            lines.append(drill.sentence(at) if drill else "never drilled")
        if self.expected:
            parts = ", ".join(f"{STEP_WORDS.get(e.step, e.step)} {fmt.duration(e.seconds)}" for e in self.expected)
            lines.append(f"expected {fmt.duration(self.expected_seconds or 0)}: {parts}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Readiness | None:
        if not data:
            return None
        proof = {k: Proof(**data[k]) if data.get(k) else None for k in ("rehearsal", "drill", "restore_point_drill")}
        return cls(
            **proof,
            restore_point_id=data.get("restore_point_id"),
            expected=tuple(StepEstimate(**e) for e in data.get("expected", ())),
            drills_apply=data.get("drills_apply", True),
        )


def assess(store: Store, env: str, *, restore_point: RestorePoint | None, drills_apply: bool) -> Readiness:
    """What the store knows of env's rehearsals and drills, for a plan restoring `restore_point` (or none)."""
    rehearsal = store.last_check(env, kind="rehearsal")
    drill = store.last_check(env, kind="drill")
    point_id = restore_point.id if restore_point is not None and drills_apply else None
    point_drill = (
        store.last_check(env, kind="drill", statuses=("passed",), restore_point_id=point_id)
        if point_id is not None
        else None
    )
    passed_rehearsal = (
        rehearsal
        if rehearsal and rehearsal.status == "passed"
        else store.last_check(env, kind="rehearsal", statuses=("passed",))
    )
    return Readiness(
        rehearsal=_proof(rehearsal),
        drill=_proof(drill),
        restore_point_id=point_id,
        restore_point_drill=_proof(point_drill),
        expected=_estimates(passed_rehearsal, point_drill),
        drills_apply=drills_apply,
    )


def _proof(check: ReadinessCheck | None) -> Proof | None:
    if check is None:
        return None
    details = check.details
    return Proof(
        kind=check.kind,
        status=check.status,
        finished_at=iso(check.finished_at or check.started_at),
        seconds=check.seconds,
        restore_point_id=check.restore_point_id,
        rows=details.get("total_rows"),
        restore_seconds=details.get("restore_seconds"),
        failure=check.failure,
    )


def _estimates(rehearsal: ReadinessCheck | None, drill: ReadinessCheck | None) -> tuple[StepEstimate, ...]:
    """Each step's time from the last passed rehearsal; the restore from a newer drill of this very restore point."""
    estimates: dict[str, StepEstimate] = {}
    if rehearsal is not None:
        source = f"rehearsal of {rehearsal.started_at:%Y-%m-%d %H:%M} UTC"
        for step in rehearsal.details.get("steps", []):
            if step.get("status") == "ok" and isinstance(step.get("seconds"), int | float):
                estimates[step["name"]] = StepEstimate(step["name"], float(step["seconds"]), source)
    restore = drill.details.get("restore_seconds") if drill is not None else None
    newer = drill is not None and (rehearsal is None or drill.started_at > rehearsal.started_at)
    if drill is not None and isinstance(restore, int | float) and (newer or "database" not in estimates):
        estimates["database"] = StepEstimate(
            "database", float(restore), f"drill of restore point #{drill.restore_point_id}"
        )
    order = list(STEP_WORDS)
    return tuple(sorted(estimates.values(), key=lambda e: order.index(e.step) if e.step in order else len(order)))


def environment_readiness(store: Store, env: str, *, has_database: bool, at: datetime) -> list[str]:
    """App Home's and `status`'s lines for one environment: restore point age, last drill, last rehearsal."""
    point = store.latest_restore_point(env)
    if point is not None:
        first = f"restore point #{point.id}, {fmt.duration(at - point.created_at, rough=True)} old"
    else:
        first = f"no restore point yet (`rollback-bot snapshot {env}`)"
    drilled = has_database and point is not None and bool(point.dump_path)
    readiness = assess(store, env, restore_point=point if drilled else None, drills_apply=has_database)
    return [first, *readiness.sentences(at), *(f"not proven: {w}" for w in readiness.warnings(at))]
