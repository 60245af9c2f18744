"""The store's tables and the plain records it hands out: data, no behaviour."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

metadata = sa.MetaData()

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("env", sa.String(64), nullable=False, index=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("source", sa.String(20), nullable=False),  # cli | slack
    sa.Column("requested_by", sa.String(120), nullable=False),
    sa.Column("approved_by", sa.String(120)),
    sa.Column("plan", sa.Text, nullable=False),  # JSON, redacted
    sa.Column("plan_hash", sa.String(64), nullable=False),
    sa.Column("dry_run", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("started_at", sa.String(40)),
    sa.Column("finished_at", sa.String(40)),
    sa.Column("heartbeat_at", sa.String(40)),
    sa.Column("current_step", sa.String(40)),
    sa.Column("error", sa.Text),
    sa.Column("meta", sa.Text, nullable=False, default="{}"),  # JSON: where its messages live, etc.
    # The process executing the run: on the same host, a dead pid (or another boot) means interrupted at once.
    sa.Column("pid", sa.Integer),
    sa.Column("host", sa.String(255)),
    sa.Column("boot_id", sa.String(64)),
    # Every status, App Home and planning read asks for the newest runs first: without this index that is
    # a sort of the whole table under a burst of acks (migration 0004).
    sa.Index("ix_runs_created_at", "created_at", "id"),
)

steps = sa.Table(
    "steps",
    metadata,
    sa.Column("run_id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # pending running ok failed skipped
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("started_at", sa.String(40)),
    sa.Column("finished_at", sa.String(40)),
    sa.Column("summary", sa.Text, nullable=False, default=""),
    sa.Column("details", sa.Text, nullable=False, default="{}"),
)

audit = sa.Table(
    "audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("run_id", sa.String(40), index=True),
    sa.Column("env", sa.String(64)),
    sa.Column("actor", sa.String(120), nullable=False),
    sa.Column("action", sa.String(60), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
)

locks = sa.Table(
    "locks",
    metadata,
    sa.Column("env", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(40), nullable=False),
    sa.Column("holder", sa.String(120), nullable=False),
    sa.Column("acquired_at", sa.String(40), nullable=False),
)

restore_points = sa.Table(
    "restore_points",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("env", sa.String(64), nullable=False, index=True),
    sa.Column("commit_sha", sa.String(64), nullable=False),
    sa.Column("commit_subject", sa.Text, nullable=False, default=""),
    sa.Column("dump_path", sa.Text),
    sa.Column("dump_size", sa.BigInteger),
    sa.Column("dump_sha256", sa.String(64)),  # checked before every restore from this point
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("created_by", sa.String(120), nullable=False),
)

standbys = sa.Table(
    "standbys",  # prestage = true: the restore point already restored beside the live database
    metadata,
    sa.Column("env", sa.String(64), primary_key=True),
    sa.Column("database", sa.String(128), nullable=False),
    sa.Column("restore_point_id", sa.Integer, nullable=False),
    sa.Column("dump_sha256", sa.String(64)),
    sa.Column("oid", sa.BigInteger, nullable=False),
    sa.Column("label", sa.Text, nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
)

checklist = sa.Table(
    "checklist",
    metadata,
    sa.Column("run_id", sa.String(40), primary_key=True),
    sa.Column("item_id", sa.String(60), primary_key=True),
    sa.Column("phase", sa.String(20), nullable=False),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("done_by", sa.String(120)),
    sa.Column("done_at", sa.String(40)),
)

once_keys = sa.Table(
    "once_keys",  # idempotency keys: "this request was already handled"
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("at", sa.String(40), nullable=False),
)


timers = sa.Table(
    "timers",  # anything due later (plan expiry, stakeholder updates, reminders, drills): never only in memory
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("run_id", sa.String(40), index=True),
    sa.Column("payload", sa.Text, nullable=False, default="{}"),  # JSON
    sa.Column("due_at", sa.String(40), nullable=False, index=True),
    sa.Column("every_s", sa.Float),  # periodic when set
    sa.Column("state", sa.String(12), nullable=False),  # pending | done | cancelled
    sa.Column("claimed_by", sa.String(120)),
    sa.Column("claimed_until", sa.String(40)),  # a claim whose holder died is taken over after this
    sa.Column("fired", sa.Integer, nullable=False, default=0),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("done_at", sa.String(40)),
)

outbox = sa.Table(
    "outbox",  # every message a run produces, stored first, sent later by whichever replica holds the sender lease
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("run_id", sa.String(40), index=True),
    sa.Column("channel", sa.String(40), nullable=False),
    sa.Column("message_key", sa.String(200)),  # a message updated in place (a step, the header); None: a new post
    sa.Column("thread_key", sa.String(200)),  # the message whose thread this goes in
    sa.Column("kind", sa.String(40), nullable=False),  # what to render
    sa.Column("payload", sa.Text, nullable=False),  # JSON, redacted
    sa.Column("dedupe_key", sa.String(200), unique=True),  # the same notice enqueued twice is stored once
    sa.Column("state", sa.String(12), nullable=False, index=True),  # pending | sent | dead | superseded
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.String(40)),
    sa.Column("sent_at", sa.String(40)),
    sa.Column("last_error", sa.Text),
)

slack_messages = sa.Table(
    "slack_messages",  # where a keyed message landed, so later updates and thread replies can find it
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("channel", sa.String(40), nullable=False),
    sa.Column("ts", sa.String(40), nullable=False),
    sa.Column("posted_at", sa.String(40), nullable=False),
)

readiness_checks = sa.Table(
    "readiness_checks",  # restore drills and rehearsals: what every plan's "readiness" is read from
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(20), nullable=False),  # drill | rehearsal
    sa.Column("env", sa.String(64), nullable=False),
    # The timer occurrence (or a request's own key) that started it: a second replica's insert fails.
    sa.Column("occurrence", sa.String(200), unique=True),
    sa.Column("status", sa.String(20), nullable=False),  # running | passed | failed | interrupted
    sa.Column("requested_by", sa.String(120), nullable=False),
    sa.Column("source", sa.String(20), nullable=False),  # cli | slack | schedule
    sa.Column("restore_point_id", sa.Integer),
    sa.Column("dump_sha256", sa.String(64)),
    sa.Column("run_id", sa.String(40)),  # a rehearsal's run of the engine (on its stand-in environment)
    sa.Column("started_at", sa.String(40), nullable=False),
    sa.Column("finished_at", sa.String(40)),
    sa.Column("seconds", sa.Float),
    sa.Column("scratch", sa.Text, nullable=False, default="{}"),  # JSON: what it made, dropped before it ends
    sa.Column("details", sa.Text, nullable=False, default="{}"),  # JSON: step times, row counts, checks
    sa.Column("failure", sa.Text),
    sa.Column("host", sa.String(255)),
    sa.Column("pid", sa.Integer),
    sa.Index("ix_readiness_checks_env_kind", "env", "kind", "id"),
)

leases = sa.Table(
    "leases",  # one holder at a time across replicas (the outbox sender), taken over when it expires
    metadata,
    sa.Column("name", sa.String(60), primary_key=True),
    sa.Column("holder", sa.String(120), nullable=False),
    sa.Column("until", sa.String(40), nullable=False),
)


def now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime | None = None) -> str:
    return (moment or now()).astimezone(UTC).isoformat(timespec="microseconds")  # orders runs made in one second


def parse_iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@dataclass(frozen=True)
class RunRecord:
    id: str
    env: str
    status: str
    source: str
    requested_by: str
    approved_by: str | None
    plan: dict[str, Any]
    plan_hash: str
    dry_run: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    current_step: str | None
    error: str | None
    meta: dict[str, Any] = field(default_factory=dict)
    host: str | None = None  # the process executing it, while it runs
    pid: int | None = None
    boot_id: str | None = None


@dataclass(frozen=True)
class StepRecord:
    run_id: str
    name: str
    position: int
    status: str
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    summary: str
    details: dict[str, Any]


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    run_id: str | None
    env: str | None
    actor: str
    action: str
    detail: str


@dataclass(frozen=True)
class LockRecord:
    env: str
    run_id: str
    holder: str
    acquired_at: datetime


@dataclass(frozen=True)
class RestorePoint:
    id: int
    env: str
    commit_sha: str
    commit_subject: str
    dump_path: str | None
    dump_size: int | None
    created_at: datetime
    created_by: str
    dump_sha256: str | None = None


@dataclass(frozen=True)
class StandbyRecord:
    """A restore point restored into a standby database, ready to be swapped in."""

    env: str
    database: str
    restore_point_id: int
    dump_sha256: str | None
    oid: int
    label: str  # the database's comment: names the restore point, so a swapped or reused name is seen
    created_at: datetime


@dataclass(frozen=True)
class ChecklistRecord:
    run_id: str
    item_id: str
    phase: str
    position: int
    text: str
    done_by: str | None
    done_at: datetime | None


@dataclass(frozen=True)
class ReadinessCheck:
    """One restore drill or rehearsal: when, for which restore point, how it went, and what it left to drop."""

    id: int
    kind: str  # drill | rehearsal
    env: str
    status: str  # running | passed | failed | interrupted
    requested_by: str
    source: str
    restore_point_id: int | None
    dump_sha256: str | None
    run_id: str | None
    started_at: datetime
    finished_at: datetime | None
    seconds: float | None
    scratch: dict[str, Any]
    details: dict[str, Any]
    failure: str | None
    host: str | None
    pid: int | None
