"""prestage = true, on the real PostgreSQL server: the snapshot restores the restore point into a standby,
the rollback's database step is the swap, and the pre-rollback dump is taken of the kept database after it.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
from pathlib import Path

import psycopg
import pytest

from bot.backends.base import StandbyDatabase
from bot.backends.postgres import PostgresDatabase
from bot.cli import main
from bot.engine.outcomes import DatabaseOutcome, DumpOutcome
from bot.engine.plan import RollbackRequest
from bot.engine.planning import make_request_plan
from bot.errors import RestoreFailed
from bot.services import Services
from sandbox.scenario import (
    PG_ADMIN_URL,
    Incident,
    database_contents,
)
from tests.fixtures.runs import BIN, SLOW_INDEX, good_contents, start_cli, start_rollback, step_status
from tests.fixtures.waiting import eventually, wait_for

pytestmark = pytest.mark.incident_config(prestage=True)


def databases(prefix: str) -> dict[str, bool]:
    """Name → accepts connections, for every database whose name starts with `prefix`."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        rows = conn.execute("SELECT datname, datallowconn FROM pg_database WHERE datname LIKE %s", (prefix + "%",))
        return {str(name): bool(allowed) for name, allowed in rows}


def database_oid(name: str) -> int | None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        row = conn.execute("SELECT oid::bigint FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return int(row[0]) if row else None


def steps_of(services: Services, run_id: str) -> dict[str, tuple[str, str, dict[str, object]]]:
    return {s.name: (s.status, s.summary, s.details) for s in services.store.steps(run_id)}


def test_the_snapshot_builds_a_closed_standby_and_the_rollback_swaps_it_in(
    incident: Incident, services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    standby = services.store.standby("prod")
    assert standby is not None and standby.database == f"{incident.db_name}_rb_shadow_standby"
    assert databases(standby.database) == {standby.database: False}  # closed: nothing can write to it

    plan = make_request_plan(services, RollbackRequest(env="prod", requested_by="U0ALICE"))
    assert plan.database.prestaged and plan.database.standby == standby.database
    assert "the database step is the swap" in plan.database.standby_note
    assert main(["plan", "prod", "--config", str(incident.config_path)]) == 0
    assert "the database step is the swap" in capsys.readouterr().out

    assert main(["run", "prod", "--force", "--config", str(incident.config_path)]) == 0
    out = capsys.readouterr().out
    run = services.store.list_runs(limit=1)[0]
    assert run.status == "succeeded", out
    steps = steps_of(services, run.id)
    database = DatabaseOutcome.from_details(steps["database"][2])
    assert database.standby == standby.database and database.previous
    assert database_contents(incident.db_url) == good_contents()

    # The pre-rollback dump: of the kept database, after the swap, verified and stored with its sha256.
    by_name = {s.name: s for s in services.store.steps(run.id)}
    assert by_name["pre_dump"].started_at >= by_name["database"].finished_at  # type: ignore[operator]
    dump = DumpOutcome.from_details(steps["pre_dump"][2])
    assert dump.kept_database == database.previous
    assert dump.path and hashlib.sha256(Path(dump.path).read_bytes()).hexdigest() == dump.sha256
    # The kept database is still there, closed again; the standby is used up and forgotten.
    assert databases(database.previous) == {database.previous: False}
    assert services.store.standby("prod") is None
    assert databases(f"{incident.db_name}_rb_shadow_") == {}
    # The kept database's dump restores to the bad release's data: the pre-rollback state, whole.
    assert "pre-rollback" in out and database.previous in out


def test_a_standby_opened_since_the_snapshot_is_not_trusted(incident: Incident, services: Services) -> None:
    standby = services.store.standby("prod")
    assert standby is not None
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{standby.database}" WITH ALLOW_CONNECTIONS true')
    tampered = incident.db_url.rsplit("/", 1)[0] + "/" + standby.database
    with psycopg.connect(tampered, autocommit=True) as conn:
        conn.execute("DELETE FROM orders")  # somebody "fixed" the standby by hand

    assert main(["run", "prod", "--force", "--config", str(incident.config_path)]) == 0
    run = services.store.list_runs(limit=1)[0]
    assert run.status == "succeeded"
    database = DatabaseOutcome.from_details(steps_of(services, run.id)["database"][2])
    assert database.standby is None  # restored from the dump instead
    assert database_contents(incident.db_url) == good_contents()
    unusable = [e.detail for e in services.store.audit_trail(run_id=run.id) if e.action == "standby.unusable"]
    assert unusable and "opened to connections" in unusable[0]
    assert databases(f"{incident.db_name}_rb_shadow_") == {}  # the untrusted standby was dropped


def test_a_crash_between_the_swap_and_the_dump_takes_the_dump_on_resume(
    incident: Incident, services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    # Enough data in the bad release that dumping the kept database takes a moment to catch.
    with psycopg.connect(incident.db_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE bulk AS SELECT g AS id, repeat(md5(g::text), 8) AS body FROM generate_series(1, 400000) g"
        )
    bot = start_rollback(incident)
    try:
        wait_for("the dump of the kept database is under way", lambda: step_status(services, "pre_dump") == "running")
        bot.send_signal(signal.SIGKILL)
        bot.wait(timeout=10)
    finally:
        if bot.poll() is None:
            bot.kill()
    run = services.store.list_runs(limit=1)[0]
    steps = steps_of(services, run.id)
    assert steps["database"][0] == "ok"  # swapped: the live database holds the restored data
    kept = DatabaseOutcome.from_details(steps["database"][2]).previous
    assert kept and kept in databases(kept)

    assert main(["status", "--config", str(incident.config_path)]) == 0
    assert "interrupted" in capsys.readouterr().out
    assert main(["resume", run.id, "--retry", "--config", str(incident.config_path)]) == 0
    assert services.store.get_run(run.id).status == "succeeded"
    dump = DumpOutcome.from_details(steps_of(services, run.id)["pre_dump"][2])
    assert dump.kept_database == kept and dump.sha256
    assert kept in databases(kept)  # still kept: dropping it is a person's decision, on the checklist
    checklist = " ".join(item.text for item in services.store.checklist(run.id))
    assert f"kept as {kept} (the verified pre-rollback dump" in checklist


def test_concurrent_snapshots_take_turns_and_the_standby_ends_up_holding_the_newest_restore_point(
    incident: Incident, services: Services, tmp_path: Path
) -> None:
    database = services.database("prod")
    assert isinstance(database, StandbyDatabase)
    built = services.store.standby("prod")
    assert built is not None and built.restore_point_id == 1
    logs = [tmp_path / "first-snapshot.log", tmp_path / "second-snapshot.log"]
    snapshots: list[subprocess.Popen[bytes]] = []
    try:
        # A builder is mid-build (as another replica or CI runner would be): both deploys' snapshots wait.
        with database.standby_build_lock():
            for log in logs:
                with log.open("wb") as out:
                    snapshots.append(
                        subprocess.Popen(
                            [str(BIN), "snapshot", "prod", "--config", str(incident.config_path)],
                            env=dict(os.environ),
                            stdout=out,
                            stderr=subprocess.STDOUT,
                        )
                    )
                wait_for(
                    f"{log.name} waits for the build under way",
                    lambda log=log: "another snapshot is building the standby" in log.read_text(),
                )
            assert [s.poll() for s in snapshots] == [None, None]
            assert services.store.standby("prod") == built  # nothing touched while they wait
            assert databases(built.database) == {built.database: False}
        assert [s.wait(timeout=120) for s in snapshots] == [0, 0]
    finally:
        for snapshot in snapshots:
            if snapshot.poll() is None:
                snapshot.kill()
    first, second = (log.read_text() for log in logs)
    # Whichever got the lock first, the older restore point's snapshot left the standby to the newer one's.
    assert "standby not rebuilt: restore point #3 is newer" in first, first
    assert "holds it: a rollback to it swaps it in" in second, second
    standby = services.store.standby("prod")
    assert standby is not None and standby.restore_point_id == 3
    assert databases(standby.database) == {standby.database: False}
    newest = services.store.latest_restore_point("prod")
    assert newest is not None and newest.id == 3 and standby.dump_sha256 == newest.dump_sha256
    assert database_oid(standby.database) == standby.oid  # the database the record names is the one built last
    built_events = [e.detail for e in services.store.audit_trail() if e.action == "standby.built"]
    # The incident's snapshot and the newest one's: the older one's snapshot built nothing.
    assert built_events == [f"{standby.database} holds restore point #1", f"{standby.database} holds restore point #3"]


def restores_into(database: str, *, running: str = "%") -> int:
    """How many of pg_restore's sessions are on `database` (running a statement LIKE `running`)."""
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = %s AND application_name = 'pg_restore' AND query LIKE %s",
            (database, running),
        ).fetchone()
    return int(row[0]) if row else 0


def test_a_snapshot_killed_mid_build_frees_its_turn_and_the_next_one_builds_the_standby(
    incident: Incident, services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(incident.db_url, autocommit=True) as conn:
        conn.execute(SLOW_INDEX.encode())  # its index takes seconds to build: the build can be caught in it
    before = services.store.standby("prod")
    assert before is not None
    killed = start_cli(incident, "snapshot", "prod")  # its pg_restore has its own session: it outlives the bot
    try:
        wait_for(
            "the killed snapshot's pg_restore builds the slow index in the standby",
            lambda: restores_into(before.database, running="%slow_by_key%") > 0,
        )
    finally:
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait()
    # Its pg_restore may go on building the index (its own process group; the server notices a gone
    # client only when it next writes to it), or have cancelled it on the way out: the next build copes.
    assert services.store.standby("prod") is None  # cleared when its build began: no plan counts on it

    # The dead builder's session went with it, and its lock: the next snapshot's turn comes at once.
    assert main(["snapshot", "prod", "--config", str(incident.config_path)]) == 0
    out = capsys.readouterr().out
    assert "holds it: a rollback to it swaps it in" in out and "waiting for it to finish" not in out
    standby = services.store.standby("prod")
    newest = services.store.latest_restore_point("prod")
    assert standby is not None and newest is not None and standby.restore_point_id == newest.id
    eventually(lambda: restores_into(standby.database) == 0)  # the orphan's sessions were ended with its standby
    assert databases(standby.database) == {standby.database: False}
    assert database_oid(standby.database) == standby.oid  # what the record names is what the second build made


def test_a_builder_that_never_gets_its_turn_gives_up_and_touches_nothing(
    incident: Incident, services: Services
) -> None:
    database = services.database("prod")
    assert isinstance(database, StandbyDatabase)
    impatient = PostgresDatabase(incident.db_url, tool_timeout_s=1.5)  # waits as long as its pg_restore may take
    said: list[str] = []
    with (
        database.standby_build_lock(),  # another builder, stuck
        pytest.raises(RestoreFailed) as caught,
        impatient.standby_build_lock(progress=said.append),
    ):
        raise AssertionError("the turn came while another builder held it")
    assert caught.value.message.startswith("another snapshot was still building the standby")
    assert caught.value.message.endswith("it was not touched")
    assert len([m for m in said if "waiting for it to finish" in m]) == 1  # said once, not once a second
    with impatient.standby_build_lock():  # freed with the other builder's block: the next turn comes at once
        pass
