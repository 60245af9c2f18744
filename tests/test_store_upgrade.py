"""The store outlives releases: a store made by release 0.1 opens with today's Store, every row intact.

Each test runs on SQLite and on a fresh PostgreSQL database. "Made by release 0.1" means its frozen
tables (tests/fixtures/store_release_0_1.py) created with `create_all`, as that release did, and filled
the way its Store wrote rows.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy.exc import IntegrityError

from bot.store import Store, _migrate, schema
from tests.fixtures import store_release_0_1 as release_0_1
from tests.fixtures.databases import postgres_database

T0 = datetime(2026, 11, 20, 10, 15, 0, 123456, tzinfo=UTC)
RUN_ID = "prod-20261120-101500-1a2b3c4d"
PLAN = {
    "deployed": {"sha": "b" * 40, "subject": "Release 42: drop legacy_orders"},
    "target": {"sha": "a" * 40, "why": "latest restore point"},
    "commits": [{"sha": "b" * 40, "subject": "Release 42"}],
    "destructive": ["DROP TABLE legacy_orders"],
}
META = {"thread": {"channel": "C0INCIDENT", "ts": "1763633700.000100"}, "stakeholders": ["C0EXEC"]}
STEPS = [
    ("safety_checks", "ok", 1, "all checks passed", {"checks": 6}),
    ("pre_dump", "ok", 2, "pre-rollback-202611201015.dump", {"bytes": 5_000_000_000}),
    ("code", "failed", 1, "push refused", {"remote": "origin"}),
]
AUDIT = [
    (RUN_ID, "prod", "U0ONCALL", "plan", "revert to aaaaaaa"),
    (RUN_ID, "prod", "U0APPROVER", "approve", ""),
    (None, None, "cli:ops", "restore_point", "prod at aaaaaaa"),
]
CHECKLIST = [
    ("announce", "immediate", "Tell the stakeholders", "U0ONCALL"),
    ("verify-data", "short-term", "Check the orders written since the dump", None),
    ("postmortem", "medium-term", "Write the postmortem", None),
]
ONCE_KEY = "slack:event:Ev0INCIDENT1"
BIG_DUMP = 5_000_000_000  # past 2**31: restore_points.dump_size is BIGINT


def at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat(timespec="microseconds")  # as release 0.1's iso() wrote


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state.db'}"
        return
    with postgres_database(seed=False) as db:
        yield db.url


@pytest.fixture
def old_store(url: str) -> str:
    """A store made and used by release 0.1: its tables, one row or more in each."""
    engine = connect(url)
    try:
        release_0_1.metadata.create_all(engine)
        with engine.begin() as conn:
            fill_release_0_1(conn)
    finally:
        engine.dispose()
    return url


def connect(url: str) -> sa.Engine:
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))


def fill_release_0_1(conn: sa.Connection) -> None:
    conn.execute(
        release_0_1.runs.insert(),
        [
            {
                "id": RUN_ID,
                "env": "prod",
                "status": "failed",
                "source": "slack",
                "requested_by": "U0ONCALL",
                "approved_by": "U0APPROVER",
                "plan": json.dumps(PLAN),
                "plan_hash": "f" * 64,
                "dry_run": False,
                "created_at": at(0),
                "started_at": at(1),
                "finished_at": at(9),
                "heartbeat_at": at(8),
                "current_step": "code",
                "error": "push refused: stale info",
                "meta": json.dumps(META),
            },
            {
                "id": "staging-20261120-090000-00000000",
                "env": "staging",
                "status": "succeeded",
                "source": "cli",
                "requested_by": "cli:ops",
                "approved_by": None,
                "plan": json.dumps({"deployed": {"sha": "c" * 40}}),
                "plan_hash": "e" * 64,
                "dry_run": True,
                "created_at": at(-75),
                "started_at": None,
                "finished_at": None,
                "heartbeat_at": None,
                "current_step": None,
                "error": None,
                "meta": "{}",
            },
        ],
    )
    conn.execute(
        release_0_1.steps.insert(),
        [
            {
                "run_id": RUN_ID,
                "name": name,
                "position": position,
                "status": status,
                "attempts": attempts,
                "started_at": at(position + 1),
                "finished_at": at(position + 2),
                "summary": summary,
                "details": json.dumps(details),
            }
            for position, (name, status, attempts, summary, details) in enumerate(STEPS)
        ],
    )
    conn.execute(
        release_0_1.audit.insert(),
        [
            {"at": at(i), "run_id": run_id, "env": env, "actor": actor, "action": action, "detail": detail}
            for i, (run_id, env, actor, action, detail) in enumerate(AUDIT)
        ],
    )
    conn.execute(release_0_1.locks.insert().values(env="prod", run_id=RUN_ID, holder="U0ONCALL", acquired_at=at(1)))
    conn.execute(
        release_0_1.restore_points.insert(),
        [
            {
                "env": "prod",
                "commit_sha": sha * 40,
                "commit_subject": f"Release {n}",
                "dump_path": f"/backups/prod/deploy-{n}.dump",
                "dump_size": BIG_DUMP + n,
                "created_at": at(-60 + n),
                "created_by": "deploy-bot",
            }
            for n, sha in ((40, "9"), (41, "a"))
        ],
    )
    conn.execute(
        release_0_1.checklist.insert(),
        [
            {
                "run_id": RUN_ID,
                "item_id": item_id,
                "phase": phase,
                "position": position,
                "text": text,
                "done_by": done_by,
                "done_at": at(10) if done_by else None,
            }
            for position, (item_id, phase, text, done_by) in enumerate(CHECKLIST)
        ],
    )
    conn.execute(release_0_1.once_keys.insert().values(key=ONCE_KEY, at=at(0)))


def revision(url: str) -> str | None:
    engine = connect(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()


def schema_differences(url: str, expected: sa.MetaData) -> list[Any]:
    engine = connect(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn), expected))
    finally:
        engine.dispose()


# --- the previous release's store opens, and nothing is lost ----------------------------------------------


def test_head_is_the_newest_migration_in_the_folder() -> None:
    # A new migration with HEAD left behind would never run: opening a store trusts HEAD.
    assert ScriptDirectory(str(_migrate.MIGRATIONS)).get_current_head() == _migrate.HEAD


def test_a_release_0_1_store_opens_with_every_row_intact(old_store: str) -> None:
    assert revision(old_store) is None  # release 0.1 recorded none
    store = Store(old_store)
    try:
        assert revision(old_store) == _migrate.HEAD
        run = store.get_run(RUN_ID)
        assert (run.env, run.status, run.source, run.requested_by, run.approved_by) == (
            "prod",
            "failed",
            "slack",
            "U0ONCALL",
            "U0APPROVER",
        )
        assert run.plan == PLAN
        assert run.meta == META
        assert run.plan_hash == "f" * 64
        assert run.dry_run is False
        assert (run.created_at, run.finished_at) == (T0, T0 + timedelta(minutes=9))
        assert (run.current_step, run.error) == ("code", "push refused: stale info")
        assert store.get_run("staging-20261120-090000-00000000").dry_run is True
        assert [r.id for r in store.list_runs()] == [RUN_ID, "staging-20261120-090000-00000000"]

        assert [(s.name, s.position, s.status, s.attempts, s.summary, s.details) for s in store.steps(RUN_ID)] == [
            (name, position, status, attempts, summary, details)
            for position, (name, status, attempts, summary, details) in enumerate(STEPS)
        ]
        assert [(e.run_id, e.env, e.actor, e.action, e.detail) for e in store.audit_trail()] == AUDIT
        assert [e.action for e in store.audit_trail(run_id=RUN_ID)] == ["plan", "approve"]

        lock = store.lock_for("prod")
        assert lock is not None
        assert (lock.run_id, lock.holder, lock.acquired_at) == (RUN_ID, "U0ONCALL", T0 + timedelta(minutes=1))

        points = store.restore_points("prod")
        assert [(p.commit_subject, p.dump_size, p.dump_sha256) for p in points] == [
            ("Release 41", BIG_DUMP + 41, None),
            ("Release 40", BIG_DUMP + 40, None),
        ]

        items = store.checklist(RUN_ID)
        assert [(i.item_id, i.phase, i.text, i.done_by) for i in items] == CHECKLIST
        assert items[0].done_at == T0 + timedelta(minutes=10)
        assert store.mark_done(RUN_ID, "announce", by="U0OTHER") is False  # ticked under release 0.1
        assert store.mark_done(RUN_ID, "verify-data", by="U0OTHER") is True

        assert store.first_time(ONCE_KEY) is False
        assert store.first_time("slack:event:Ev0NEW") is True
    finally:
        store.close()


def test_the_upgraded_store_takes_new_rows_in_old_and_new_tables(old_store: str) -> None:
    store = Store(old_store)
    try:
        # Keys carry on after release 0.1's rows (PostgreSQL's sequences survived the upgrade).
        point = store.add_restore_point(
            env="prod",
            commit_sha="d" * 40,
            commit_subject="Release 43",
            dump_path=None,
            dump_size=None,
            created_by="deploy-bot",
        )
        assert point.id == 3
        store.record(actor="U0ONCALL", action="resume", run_id=RUN_ID)
        assert len(store.audit_trail()) == len(AUDIT) + 1

        store.update_run(RUN_ID, pid=4242, host="bot-1", boot_id="boot-a")
        with store.engine.begin() as conn:
            conn.execute(
                schema.restore_points.update().where(schema.restore_points.c.id == 1).values(dump_sha256="0" * 64)
            )
            run = conn.execute(sa.select(schema.runs.c.pid, schema.runs.c.host, schema.runs.c.boot_id)).all()
            hashes = conn.execute(sa.select(schema.restore_points.c.dump_sha256).order_by("id")).scalars().all()
            conn.execute(schema.timers.insert().values(**timer()))
            conn.execute(schema.slack_messages.insert().values(key="header", channel="C1", ts="1.2", posted_at=at(0)))
            conn.execute(schema.leases.insert().values(name="outbox-sender", holder="bot-1", until=at(1)))
            conn.execute(schema.outbox.insert().values(**message("once")))
        assert (4242, "bot-1", "boot-a") in run
        assert hashes == ["0" * 64, None, None]
        with pytest.raises(IntegrityError), store.engine.begin() as conn:
            conn.execute(schema.outbox.insert().values(**message("once")))  # dedupe_key is unique
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(schema.outbox)).scalar() == 1
            assert conn.execute(sa.select(schema.timers.c.kind)).scalar() == "plan_expiry"
    finally:
        store.close()


def timer() -> dict[str, Any]:
    return {"key": "expire:1", "kind": "plan_expiry", "due_at": at(5), "state": "pending", "created_at": at(0)}


def message(dedupe_key: str) -> dict[str, Any]:
    return {
        "created_at": at(0),
        "run_id": RUN_ID,
        "channel": "C0INCIDENT",
        "kind": "step",
        "payload": "{}",
        "dedupe_key": dedupe_key,
        "state": "pending",
        "attempts": 0,
    }


# --- the migrations make exactly the schema the code expects ----------------------------------------------


def test_an_upgraded_release_0_1_store_has_exactly_schema_py(old_store: str) -> None:
    Store(old_store).close()
    assert schema_differences(old_store, schema.metadata) == []


def test_a_new_store_has_exactly_schema_py(url: str) -> None:
    Store(url).close()
    assert revision(url) == _migrate.HEAD
    assert schema_differences(url, schema.metadata) == []


def test_the_baseline_is_exactly_release_0_1(url: str) -> None:
    Store(url).close()
    engine = connect(url)
    try:
        _migrate.downgrade(engine, _migrate.BASELINE)
    finally:
        engine.dispose()
    assert revision(url) == _migrate.BASELINE
    assert schema_differences(url, release_0_1.metadata) == []


# --- opening again, together, and going back ----------------------------------------------------------------


def test_opening_an_upgraded_store_again_changes_nothing(old_store: str) -> None:
    Store(old_store).close()
    before = schema_differences(old_store, schema.metadata)
    for _ in range(2):
        store = Store(old_store)
        assert store.get_run(RUN_ID).plan == PLAN
        store.close()
    assert schema_differences(old_store, schema.metadata) == before == []
    engine = connect(old_store)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all() == [_migrate.HEAD]
    finally:
        engine.dispose()


def test_an_up_to_date_store_opens_without_waiting_for_a_migration_lock(url: str) -> None:
    # Every CLI command opens the store: while another opener holds the migration lock (or SQLite's
    # writer lock), an up-to-date store must still open at once, having only read its revision.
    Store(url).close()
    engine = connect(url)
    try:
        with engine.connect() as holder:
            if engine.dialect.name == "postgresql":
                holder.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _migrate._PG_LOCK_KEY})
            else:
                holder.execution_options(isolation_level="AUTOCOMMIT")
                holder.exec_driver_sql("BEGIN IMMEDIATE")
            done = in_thread(lambda: Store(url).close(), timeout=5)
            if engine.dialect.name == "postgresql":
                holder.execute(sa.text("SELECT pg_advisory_unlock_all()"))
            else:
                holder.exec_driver_sql("ROLLBACK")
        assert done == ["ok"]
    finally:
        engine.dispose()


def in_thread(action: Callable[[], None], *, timeout: float) -> list[str]:
    outcome: list[str] = []

    def run() -> None:
        action()
        outcome.append("ok")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    return list(outcome)  # a copy: the thread may still finish once the lock is let go


@pytest.fixture(params=["new", "made by release 0.1"])
def any_store(request: pytest.FixtureRequest, url: str) -> str:
    if request.param == "made by release 0.1":
        engine = connect(url)
        release_0_1.metadata.create_all(engine)
        with engine.begin() as conn:
            fill_release_0_1(conn)
        engine.dispose()
    return url


def test_replicas_starting_at_once_on_one_store_all_succeed(any_store: str) -> None:
    # Replicas are processes: only the database's own lock stands between their schema changes.
    spawn = multiprocessing.get_context("spawn")
    replicas = 3
    start = spawn.Barrier(replicas)
    processes = [spawn.Process(target=open_store_at, args=(any_store, start), daemon=True) for _ in range(replicas)]
    for process in processes:
        process.start()
    deadline = time.monotonic() + 90
    for process in processes:
        process.join(max(0.0, deadline - time.monotonic()))
    assert [p.exitcode for p in processes] == [0] * replicas  # None: stuck behind another's schema change
    assert_upgraded(any_store)


def open_store_at(url: str, start: threading.Barrier) -> None:
    start.wait(60)  # every replica has imported everything: they open the store together
    Store(url).close()


def test_threads_opening_one_store_at_once_all_succeed(any_store: str) -> None:
    assert in_threads([any_store] * 4) == []
    assert_upgraded(any_store)


def test_threads_opening_different_stores_at_once_all_succeed(tmp_path: Path) -> None:
    # No database lock is shared here: Alembic's module-level state is, and must not be run by two at once.
    urls = [f"sqlite:///{tmp_path / f'store-{n}.db'}" for n in range(6)]
    assert in_threads(urls) == []
    for url in urls:
        assert_upgraded(url)


def in_threads(urls: list[str]) -> list[BaseException]:
    """Open each store in its own thread, all at once; the errors raised."""
    start = threading.Barrier(len(urls))
    errors: list[BaseException] = []

    def open_store(url: str) -> None:
        start.wait()
        try:
            Store(url).close()
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=open_store, args=(url,), daemon=True) for url in urls]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 60
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    assert [w for w in workers if w.is_alive()] == []
    return errors


def assert_upgraded(url: str) -> None:
    assert revision(url) == _migrate.HEAD
    assert schema_differences(url, schema.metadata) == []
    store = Store(url)
    try:
        runs = {run.id: run for run in store.list_runs()}
        if runs:  # made by release 0.1: its rows survived every replica's attempt
            assert runs[RUN_ID].meta == META
            assert len(store.audit_trail()) == len(AUDIT)
    finally:
        store.close()


def test_downgrade_to_release_0_1_and_back_keeps_the_rows(old_store: str) -> None:
    store = Store(old_store)
    store.update_run(RUN_ID, pid=4242)
    store.close()
    engine = connect(old_store)
    try:
        _migrate.downgrade(engine, _migrate.BASELINE)
        with engine.connect() as conn:
            tables = sorted(sa.inspect(conn).get_table_names())
            assert tables == sorted(["alembic_version", *release_0_1.metadata.tables])
            # Release 0.1's own tables read its rows back, so that release could run on this store again.
            rows = conn.execute(sa.select(release_0_1.runs.c.id, release_0_1.runs.c.meta).order_by("id")).all()
            assert rows[0] == (RUN_ID, json.dumps(META))
    finally:
        engine.dispose()
    assert revision(old_store) == _migrate.BASELINE

    store = Store(old_store)
    try:
        assert revision(old_store) == _migrate.HEAD
        assert store.get_run(RUN_ID).plan == PLAN
        assert [p.dump_size for p in store.restore_points("prod")] == [BIG_DUMP + 41, BIG_DUMP + 40]
        assert store.first_time(ONCE_KEY) is False
    finally:
        store.close()
    assert schema_differences(old_store, schema.metadata) == []


def test_a_failed_upgrade_changes_nothing(old_store: str) -> None:
    # A table in the way of 0002 (made by hand, say): the upgrade fails part-way and must leave the
    # store as release 0.1 left it, not stamped and not half-altered, so fixing the cause and reopening works.
    engine = connect(old_store)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE leases (name VARCHAR(60) PRIMARY KEY)"))
        with pytest.raises(sa.exc.DatabaseError):
            Store(old_store)
        with engine.connect() as conn:
            tables = sorted(sa.inspect(conn).get_table_names())
            assert tables == sorted([*release_0_1.metadata.tables, "leases"])  # not even stamped
            assert "pid" not in {c["name"] for c in sa.inspect(conn).get_columns("runs")}
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE leases"))
    finally:
        engine.dispose()
    store = Store(old_store)
    try:
        assert store.get_run(RUN_ID).plan == PLAN
        assert revision(old_store) == _migrate.HEAD
    finally:
        store.close()


def test_a_store_from_a_newer_release_is_refused_and_left_alone(url: str) -> None:
    Store(url).close()
    engine = connect(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '0099'"))
        with pytest.raises(CommandError, match="0099"):
            Store(url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0099"
    finally:
        engine.dispose()
