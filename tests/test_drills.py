"""Restore drills against the real servers: the restore point the bot's own `snapshot` took is restored into
a scratch database, counted, checked and dropped; a bad one fails and alerts the contacts at once.

The incident's restore point holds the good release: orders (3 rows) and audit_old (1 row).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa

from bot.artifacts import hash_file
from bot.backends.base import Database
from bot.backends.databases import open_database
from bot.backends.postgres import PostgresDatabase
from bot.backends.reporter import Reporter
from bot.backends.scratch import (
    drop_scratch,
    is_scratch_name,
    restore_scratch,
    row_counts,
    run_checks,
    scratch_name,
)
from bot.cli import main
from bot.config import load_config
from bot.engine.drill_schedule import DrillWorker, drill_timer_key, schedule_drills
from bot.engine.drill_story import DRILL_FAILED
from bot.engine.drills import run_drill
from bot.engine.readiness import environment_readiness
from bot.engine.restore_points import take_snapshot
from bot.engine.timed import timer_handlers
from bot.errors import DatabaseError, InvalidState
from bot.outbox import Outbox
from bot.services import Services, build_services
from bot.store import now
from bot.store.schema import outbox, readiness_checks
from bot.timers import TimerKind, TimerPoller, Timers
from handlers.outbox_render import render
from sandbox.scenario import Incident, database_contents
from sandbox.slack_harness import SlackWorkspace
from tests.fixtures.databases import (
    mysql_connect,
    mysql_database,
    mysql_databases,
    pg_databases,
    postgres_database,
    sqlite_database,
)
from tests.fixtures.drills import ALERTS, drill_table, drill_world
from tests.fixtures.runs import SLOW_INDEX, start_cli
from tests.fixtures.waiting import eventually
from tests.test_slack_app import text_of

GOOD_ROWS = {"public.audit_old": 1, "public.orders": 3}
CHECKS = drill_table("SELECT count(*) = 3 FROM orders", "SELECT bool_and(total > 0) FROM orders")
FALSE_CHECK = drill_table("SELECT count(*) = 3 FROM orders", "SELECT count(*) > 100 FROM orders")


def drill(services: Services, **kwargs: Any) -> Any:
    return run_drill(services, "prod", requested_by="U0DAVE", source="cli", **kwargs)


def on_the_server(incident: Incident) -> list[str]:
    """Every database named like the live one: the live one, and anything a drill or rollback left."""
    return pg_databases(incident.db_name)


def said_while(check: Callable[[str], bool], seen: list[str]) -> Callable[..., None]:
    """A progress callback recording the databases on the server when a sentence matches `check`."""

    def progress(message: str, /, **_: object) -> None:
        if check(message):
            seen.extend(pg_databases("rb_shop_"))

    return progress


# --- a good restore point ---------------------------------------------------------------------------------


@pytest.mark.incident_config(extra_env=CHECKS)
def test_a_good_restore_point_passes_with_its_row_counts_and_leaves_nothing(
    services: Services, incident: Incident
) -> None:
    point = services.store.latest_restore_point("prod")
    assert point is not None and point.dump_sha256
    live_before = database_contents(incident.db_url)
    during: list[str] = []

    check = drill(services, progress=said_while(lambda m: m.startswith("counting"), during))

    assert check.status == "passed", check.failure
    assert check.restore_point_id == point.id and check.dump_sha256 == point.dump_sha256
    d = check.details
    assert d["rows"] == GOOD_ROWS and d["total_rows"] == 4 and d["tables"] == 2
    assert [(c["passed"], c["value"]) for c in d["checks"]] == [(True, "true"), (True, "true")]
    assert d["sha256_verified"] is True and d["dump_size"] == point.dump_size
    assert 0 < d["restore_seconds"] <= check.seconds and check.seconds is not None
    # It restored into a scratch database of its own, never a rollback's shadow, and dropped it.
    scratch = check.scratch["database"]
    assert scratch in during and scratch.startswith(f"{incident.db_name}_rb_drill_") and "_rb_shadow_" not in scratch
    assert check.scratch["dropped"] is True
    assert on_the_server(incident) == [incident.db_name]
    assert database_contents(incident.db_url) == live_before  # production untouched
    assert Outbox(services.store).pending_count() == 0  # a passing drill alerts nobody
    actions = [e.action for e in services.store.audit_trail()]
    assert "drill.started" in actions and "drill.passed" in actions
    # What plans, App Home and `status` read back.
    said = " ".join(environment_readiness(services.store, "prod", has_database=True, at=now()))
    assert f"restore point #{point.id} restored cleanly" in said and "4 rows" in said


@pytest.mark.incident_config(extra_env=CHECKS)
def test_the_drill_command_prints_rows_checks_time_and_size(
    incident: Incident, services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["drill", "prod", "--config", str(incident.config_path), "--as", "U0DAVE"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASSED" in out and "public.orders" in out and "total" in out and "4 in 2 table(s)" in out
    assert "✅ check SELECT count(*) = 3 FROM orders" in out and "sha256 verified" in out
    assert "restored into" in out and "dropped the scratch database" in out
    assert services.store.last_check("prod", kind="drill").requested_by == "U0DAVE"  # type: ignore[union-attr]


# --- a bad one ------------------------------------------------------------------------------------------------


@pytest.fixture
def slack(services: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackWorkspace]:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test-token")
    with SlackWorkspace(services) as workspace:
        workspace.api.add_channel(ALERTS, "dba-alerts")
        yield workspace


@pytest.mark.incident_config(extra_env=CHECKS)
def test_a_corrupt_dump_fails_at_once_and_the_contacts_hear_of_it_in_the_channel(
    services: Services, incident: Incident, slack: SlackWorkspace
) -> None:
    point = services.store.latest_restore_point("prod")
    assert point is not None and point.dump_path
    dump = Path(point.dump_path)
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: storage rot the recorded sha256 must catch
    dump.write_bytes(bytes(data))

    check = drill(services)

    assert check.status == "failed" and check.details["stage"] == "fetch"
    assert "corrupt" in (check.failure or "") and "sha256" in (check.failure or "")
    assert "database" not in check.scratch  # refused before anything was made
    assert on_the_server(incident) == [incident.db_name]
    alert = eventually(lambda: slack.api.messages(ALERTS))[0]
    text = text_of(alert)
    assert "Restore drill FAILED" in text and f"restore point #{point.id}" in text
    assert "<!subteam^S0ONCALL>" in text and "<!subteam^S0DBA>" in text  # the contacts, mentioned
    assert "is not the one that was taken" in text and "rollback-bot snapshot prod" in text  # what to do
    assert alert.thread_ts is None  # top level, not buried in a thread
    assert check.details["alerted"] == [ALERTS]
    # Once: a second enqueue of the same drill's alert is the same row.
    from bot.engine.drill_story import alert as enqueue_alert

    enqueue_alert(services, check)
    time.sleep(0.5)
    assert len(slack.api.messages(ALERTS)) == 1


@pytest.mark.incident_config(extra_env=CHECKS)
def test_a_dump_whose_recorded_sha256_matches_but_that_does_not_restore_fails_and_drops_what_it_made(
    services: Services, incident: Incident
) -> None:
    point = services.store.latest_restore_point("prod")
    assert point is not None and point.dump_path
    # A dump cut short when it was taken, recorded with the sha256 of what was written: the sha256 says
    # nothing is wrong, only restoring it can tell. Its table of contents is whole: the restore starts.
    cut = Path(point.dump_path).with_name("cut-short.dump")
    cut.write_bytes(Path(point.dump_path).read_bytes()[:-24])
    listed = subprocess.run(["pg_restore", "--list", str(cut)], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    sha256, size = hash_file(cut)
    bad = services.store.add_restore_point(
        env="prod",
        commit_sha=point.commit_sha,
        commit_subject=point.commit_subject,
        dump_path=str(cut),
        dump_size=size,
        dump_sha256=sha256,
        created_by="deploy-pipeline",
    )
    made: list[str] = []

    check = drill(services, progress=said_while(lambda m: m.startswith("restoring "), made))

    assert check.status == "failed" and check.details["stage"] == "restore", check.failure
    assert check.restore_point_id == bad.id and check.details["sha256_verified"] is True
    assert "restore failed" in (check.failure or "")
    scratch = check.scratch["database"]
    assert scratch in made  # it got as far as creating its scratch database…
    assert on_the_server(incident) == [incident.db_name]  # …and dropped it
    # The alert: top level in the alert channel, the contacts mentioned, what to do.
    with services.store.transaction() as conn:
        rows = conn.execute(sa.select(outbox.c.channel, outbox.c.kind, outbox.c.payload, outbox.c.thread_key)).all()
    assert [(r.channel, r.kind, r.thread_key) for r in rows] == [(ALERTS, DRILL_FAILED, None)]
    fallback, blocks = render(DRILL_FAILED, Outbox(services.store).due()[0].notice.payload)
    shown = fallback + str(blocks)
    assert f"restore point #{bad.id}" in shown and "<!subteam^S0DBA>" in shown
    assert "does not restore" in shown and "rollback-bot drill prod" in shown


@pytest.mark.incident_config(extra_env=FALSE_CHECK)
def test_a_configured_check_returning_false_fails_the_drill(services: Services, incident: Incident) -> None:
    check = drill(services)
    assert check.status == "failed" and check.details["stage"] == "checks"
    assert "SELECT count(*) > 100 FROM orders` returned false" in (check.failure or "")
    assert [c["passed"] for c in check.details["checks"]] == [True, False]
    assert check.details["rows"] == GOOD_ROWS  # the restore itself went fine and was counted
    assert on_the_server(incident) == [incident.db_name]
    assert [n.notice.kind for n in Outbox(services.store).due()] == [DRILL_FAILED]


def test_without_a_restore_point_a_drill_fails_saying_why(services: Services) -> None:
    with services.store.transaction() as conn:
        conn.execute(sa.text("DELETE FROM restore_points"))
    check = drill(services)
    assert check.status == "failed" and check.details["stage"] == "setup"
    assert "has no restore point" in (check.failure or "")
    notice = Outbox(services.store).due()[0].notice  # no channel: the stakeholder channels
    assert notice.channel == "C0STATUS" and "rollback-bot snapshot prod" in notice.payload["what_to_do"]


# --- checks -------------------------------------------------------------------------------------------------


def test_checks_run_read_only_one_statement_each_with_a_timeout() -> None:
    with postgres_database() as pg:
        db = open_database(engine="postgres", url=pg.url)
        results = run_checks(
            db,
            pg.name,
            [
                "SELECT count(*) = 50 FROM customers",
                "SELECT count(*) = 49 FROM customers",
                "SELECT 1",  # one value, but not a boolean
                "SELECT true FROM customers",  # fifty rows
                "SELECT no_such_column FROM customers",
                "DELETE FROM customers RETURNING true",
                "SELECT true; DROP TABLE orders",
                "COMMIT",
                "SELECT pg_sleep(3) IS NULL",
                "SELECT '100%' = '100%'",
            ],
            timeout_s=0.5,
        )
        assert pg.contents()["customers"] and "orders" in pg.contents()  # nothing was written or dropped
    verdicts = [(r.passed, r.value, (r.error or "")[:40]) for r in results]
    assert [v[0] for v in verdicts] == [True, False, False, False, False, False, False, False, False, True]
    assert results[1].value == "false" and results[2].value == "1"
    assert "read-only transaction" in (results[5].error or "")
    assert "multiple commands" in (results[6].error or "") or "cannot insert multiple" in (results[6].error or "")
    assert "statement timeout" in (results[8].error or "")


# --- once per occurrence, across replicas -------------------------------------------------------------------------


@pytest.mark.incident_config(extra_env=CHECKS)
def test_a_scheduled_drill_fired_twice_for_one_occurrence_runs_once(services: Services, incident: Incident) -> None:
    key = drill_timer_key("prod")
    timers = Timers(services.store)
    due = now() - timedelta(seconds=1)
    timers.schedule(key, kind=TimerKind.DRILL, due_at=due, every=timedelta(hours=24), payload={"env": "prod"})
    other = build_services(config=load_config(incident.config_path))  # a second replica on the same store
    worker = DrillWorker()
    try:
        replicas = [
            TimerPoller(Timers(s.store), timer_handlers(s, drills=worker), holder=name)
            for s, name in ((services, "replica-a"), (other, "replica-b"))
        ]
        started = time.monotonic()
        fired = replicas[0].tick()
        ticked_s = time.monotonic() - started
        assert fired == 1 and replicas[1].tick() == 0  # claimed by one replica
        assert worker.wait_idle(120)
        first = services.store.checks("prod", kind="drill")
        assert len(first) == 1 and first[0].status == "passed", first
        assert first[0].seconds is not None and ticked_s < first[0].seconds  # the restore ran off the poller

        # Replica A died after firing it, before completing it: once its claim ran out, the same occurrence
        # is due again, and replica B fires it. Both handlers at once, even: still one drill.
        timers.schedule(key, kind=TimerKind.DRILL, due_at=due, every=timedelta(hours=24), payload={"env": "prod"})
        again = timers.due()[0]
        gate = threading.Barrier(2)

        def fire(services_: Services) -> None:
            gate.wait()
            timer_handlers(services_, drills=worker)[TimerKind.DRILL](again)

        threads = [threading.Thread(target=fire, args=(s,)) for s in (services, other)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert replicas[1].tick() == 1
        assert worker.wait_idle(120)
    finally:
        other.close()
    checks = services.store.checks("prod", kind="drill")
    assert [(c.id, c.status, c.source) for c in checks] == [(first[0].id, "passed", "schedule")]
    with services.store.transaction() as conn:
        occurrences = conn.execute(sa.select(readiness_checks.c.occurrence)).scalars().all()
    assert occurrences == [again.occurrence]
    assert timers.pending()[0].due_at > now() + timedelta(hours=23)  # on to the next day
    assert on_the_server(incident) == [incident.db_name]


@pytest.mark.incident_config(extra_env=CHECKS)
def test_serving_schedules_one_drill_timer_per_environment_and_follows_the_config(
    services: Services, incident: Incident, slack: SlackWorkspace
) -> None:
    timers = Timers(services.store)
    (timer,) = [t for t in timers.pending() if t.kind is TimerKind.DRILL]  # scheduled when the app started
    assert timer.key == "drill:prod" and timer.every == timedelta(hours=24)
    assert now() < timer.due_at <= now() + timedelta(minutes=5)  # the first one soon: proven the same day

    assert schedule_drills(services) == []  # a restart keeps the due time
    assert timers.pending()[0].due_at == timer.due_at

    def restarted_with(text: str) -> list[str]:
        path = incident.config_path.with_name("rollback-2.toml")  # beside it: the same store
        path.write_text(text)
        changed = build_services(config=load_config(path))
        try:
            return schedule_drills(changed)
        finally:
            changed.close()

    config = incident.config_path.read_text()
    assert restarted_with(config.replace('every = "24h"', 'every = "12h"'))
    (timer,) = timers.pending()
    assert timer.every == timedelta(hours=12) and timer.due_at <= now() + timedelta(minutes=5)
    assert restarted_with(config.replace('every = "24h"\n', ""))  # no schedule any more
    assert [t for t in timers.pending() if t.kind is TimerKind.DRILL] == []


@pytest.mark.incident_config(extra_env=CHECKS)
def test_a_drill_waits_while_a_rollback_of_its_environment_runs(services: Services) -> None:
    key = drill_timer_key("prod")
    timers = Timers(services.store)
    timers.schedule(key, kind=TimerKind.DRILL, due_at=now(), every=timedelta(hours=24), payload={"env": "prod"})
    services.store.acquire_lock("prod", run_id="prod-rollback", holder="U0ALICE")
    worker = DrillWorker()
    assert TimerPoller(timers, timer_handlers(services, drills=worker), holder="a").tick() == 1
    assert not worker.busy and services.store.checks("prod", kind="drill") == []
    assert timers.pending()[0].due_at > now() + timedelta(minutes=10)  # postponed, not skipped
    # A terminal's poller (no drill worker) leaves it to a serving replica.
    timers.schedule(key, kind=TimerKind.DRILL, due_at=now(), every=timedelta(hours=24), payload={"env": "prod"})
    services.store.release_lock("prod", run_id="prod-rollback")
    assert TimerPoller(timers, timer_handlers(services), holder="cli").tick() == 1
    assert services.store.checks("prod", kind="drill") == [] and timers.pending()[0].due_at > now()


# --- a crash mid-drill ------------------------------------------------------------------------------------------


@pytest.mark.incident_config(extra_env=CHECKS)
@pytest.mark.parametrize("cleaner", ["the next drill", "a replica starting to serve"])
def test_the_scratch_database_of_a_drill_killed_mid_restore_is_dropped_by_the_next_drill(
    services: Services, incident: Incident, cleaner: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(incident.db_url, autocommit=True) as conn:
        conn.execute(SLOW_INDEX.encode())  # its index takes seconds to build: the restore can be caught in it
    take_snapshot(services, "prod", actor="deploy-pipeline")
    proc = start_cli(incident, "drill", "prod")  # its pg_restore has its own session: it outlives the bot

    def restoring() -> str | None:
        running = services.store.unfinished_checks(kind="drill")
        name = running[0].scratch.get("database") if running else None
        return name if name and name in on_the_server(incident) else None

    try:
        scratch = eventually(restoring, seconds=60)
        time.sleep(1.0)  # into pg_restore
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert scratch in on_the_server(incident)  # left behind by the crash
    (crashed,) = services.store.unfinished_checks(kind="drill")
    assert crashed.pid == proc.pid

    if cleaner == "the next drill":
        check = drill(services)
        assert check.status == "passed", check.failure
        assert check.details["rows"] == {"public.orders": 3, "public.slow": 2500}  # taken after the bad release
    else:
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test-token")
        with SlackWorkspace(services):  # start-up cleans up after crashes, off the start-up path
            eventually(lambda: services.store.check(crashed.id).status == "interrupted" or None, seconds=60)
    cleaned = services.store.check(crashed.id)
    assert cleaned.status == "interrupted" and "process stopped" in (cleaned.failure or "")
    assert (
        cleaned.scratch["dropped"] is True and f"dropped the scratch database {scratch}" in cleaned.details["cleanup"]
    )
    assert on_the_server(incident) == [incident.db_name]


CRASHING_SCHEDULED_DRILL = """
import sys, time
from bot.config import load_config
from bot.engine.drills import start_drill
from bot.services import build_services
services = build_services(config=load_config(sys.argv[1]))
start_drill(services, "prod", requested_by="schedule", source="schedule", occurrence="drill:prod@crash")
print("started", flush=True)
time.sleep(600)
"""


def a_day_off(timers: Timers) -> None:
    key = drill_timer_key("prod")
    timers.schedule(key, kind=TimerKind.DRILL, due_at=now() + timedelta(hours=24), every=timedelta(hours=24))


@pytest.mark.incident_config(extra_env=CHECKS)
def test_a_scheduled_drill_cut_off_by_a_crash_is_tried_again_soon_not_a_period_later(
    services: Services, incident: Incident
) -> None:
    take_snapshot(services, "prod", actor="deploy-pipeline")
    timers = Timers(services.store)
    a_day_off(timers)
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHING_SCHEDULED_DRILL, str(incident.config_path)],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    (crashed,) = services.store.unfinished_checks(kind="drill")
    assert crashed.source == "schedule" and crashed.pid == proc.pid

    assert drill(services).status == "passed"  # a manual drill meanwhile cleans the crashed one up first
    assert services.store.check(crashed.id).status == "interrupted"
    (timer,) = timers.pending()
    assert now() < timer.due_at <= now() + timedelta(minutes=5)  # the schedule's proof comes the same day
    assert timer.every == timedelta(hours=24)  # and the period stays as configured
    assert any("tried again at" in e.detail for e in services.store.audit_trail() if e.action == "drill.retry")


@pytest.mark.incident_config(extra_env=CHECKS)
def test_a_scheduled_drill_stopped_by_a_shutdown_is_tried_again_soon(services: Services) -> None:
    take_snapshot(services, "prod", actor="deploy-pipeline")
    timers = Timers(services.store)
    key = drill_timer_key("prod")
    timers.schedule(key, kind=TimerKind.DRILL, due_at=now(), every=timedelta(hours=24), payload={"env": "prod"})
    worker = DrillWorker()
    worker.cancel.set()  # the bot is shutting down as the drill starts
    assert TimerPoller(timers, timer_handlers(services, drills=worker), holder="a").tick() == 1
    assert worker.wait_idle(120)
    (check,) = services.store.checks("prod", kind="drill")
    assert check.status == "interrupted"
    (timer,) = timers.pending()
    assert now() < timer.due_at <= now() + timedelta(minutes=5)


def test_a_second_drill_of_an_environment_waits_for_the_first(services: Services) -> None:
    first = services.store.start_check(kind="drill", env="prod", requested_by="schedule", source="schedule")
    assert first is not None  # alive: this very process, heartbeat fresh
    with pytest.raises(InvalidState, match="already running"):
        drill(services)


# --- names ------------------------------------------------------------------------------------------------------


def test_scratch_names_are_never_a_rollbacks_and_fit_the_server() -> None:
    long = "x" * 60
    db = PostgresDatabase(f"postgresql://app@127.0.0.1:5432/{long}")
    name = scratch_name(db, "drill", "42ab")
    assert name.endswith("_rb_drill_42ab") and len(name.encode()) == 63 and name.startswith("x" * 40)
    assert is_scratch_name(db, name) and not is_scratch_name(db, db.shadow_name("42ab"))
    for refused in (long, db.shadow_name("42ab"), f"{long}_before_rollback_202601010000", "postgres"):
        with pytest.raises(DatabaseError, match="not a scratch name"):
            drop_scratch(db, refused)
    for purpose in ("shadow", "restore", "standby", "Drill", "x"):
        with pytest.raises(DatabaseError):
            scratch_name(db, purpose, "42ab")


# --- the other engines ------------------------------------------------------------------------------------------


def test_a_sqlite_drill_passes_and_deletes_its_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    live = tmp_path / "app.db"
    url = sqlite_database(live, rows=300)
    world = drill_world(
        tmp_path, monkeypatch, engine="sqlite", url=url, drill=drill_table("SELECT count(*) = 300 FROM orders")
    )
    with world as services:
        before = live.read_bytes()
        check = drill(services)
    assert check.status == "passed", check.failure
    assert check.details["rows"] == {"customers": 50, "orders": 300} and check.details["total_rows"] == 350
    assert check.details["checks"][0]["value"] == "1"  # SQLite has no boolean: 1 is true
    assert Path(check.scratch["database"]).name.startswith("app.db.rb_drill_")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("app.db")) == ["app.db"]
    assert live.read_bytes() == before


def test_a_mariadb_drill_passes_with_its_row_counts_and_never_runs_the_apps_events(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with mysql_database() as my:
        world = drill_world(
            tmp_path, monkeypatch, engine="mysql", url=my.url, drill=drill_table("SELECT COUNT(*) = 500 FROM orders")
        )
        seen: list[tuple[str, str]] = []

        def progress(message: str, /, **_: object) -> None:
            if message.startswith("counting"):
                with mysql_connect() as conn, conn.cursor() as cur:
                    cur.execute("SELECT EVENT_SCHEMA, STATUS FROM information_schema.EVENTS")
                    seen.extend((str(s), str(t)) for s, t in cur.fetchall())

        with world as services:
            check = drill(services, progress=progress)
        assert check.status == "passed", check.failure
        assert check.details["rows"] == {"audit": 500, "customers": 50, "orders": 500}
        scratch = check.scratch["database"]
        assert (scratch, "DISABLED") in seen and (my.name, "ENABLED") in seen
        assert mysql_databases(my.name[:14]) == [my.name]


def test_restore_scratch_is_a_rollbacks_restore_without_the_swap(tmp_path: Path) -> None:
    with postgres_database() as pg:
        db: Database = open_database(engine="postgres", url=pg.url)
        dump = db.dump(tmp_path / "app.dump").path
        name = scratch_name(db, "rehearsal", "t1")
        copy = restore_scratch(db, dump, name=name, say=Reporter(lambda *_a, **_k: None))
        try:
            assert copy.size and copy.seconds > 0 and copy.url.endswith(f"/{name}")
            assert row_counts(db, name) == {"public.customers": 50, "public.orders": 20000}
            assert open_database(engine="postgres", url=copy.url).describe().endswith(f"/{name}")
            assert pg_databases(pg.name[:14]) == sorted([pg.name, name])
        finally:
            said = drop_scratch(db, name)
        assert said and said.startswith(f"dropped the scratch database {name}")
        assert drop_scratch(db, name) is None  # idempotent
        assert pg_databases(pg.name[:14]) == [pg.name]
