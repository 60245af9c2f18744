"""Faults that happen during incidents, made to happen for real during a terminal rollback: the database
server stopped in the middle of the pre-rollback dump and in the middle of the restore, the disk of the
dump full. Each must end with the run waiting for a decision, nothing of production changed, and a
retry finishing the rollback once the cause is gone. (README: "When things break".)
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import psycopg
import pytest

from bot.cli import main
from bot.config import load_config
from bot.engine.restore_points import take_snapshot
from bot.services import Services, build_services
from sandbox.repo import git
from sandbox.scenario import Incident, build_incident, database_contents
from tests.fixtures.private_postgres import PrivatePostgres, private_postgres
from tests.fixtures.runs import BULK, SLOW_INDEX, MonkeyEnv, start_rollback
from tests.fixtures.waiting import wait_for

URL_ENV = "RB_FAULT_DATABASE_URL"


@pytest.fixture
def server() -> Iterator[PrivatePostgres]:
    with private_postgres() as pg:
        yield pg


@pytest.fixture
def stage(server: PrivatePostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Incident]:
    monkeypatch.chdir(tmp_path)
    incident = build_incident(
        tmp_path / "stage", url_env=URL_ENV, environ=MonkeyEnv(monkeypatch), admin_url=server.admin_url
    )
    try:
        yield incident
    finally:
        with suppress(subprocess.CalledProcessError):
            server.start()  # a failed test may have left it stopped
        incident.close()


@pytest.fixture
def services(stage: Incident) -> Iterator[Services]:
    built = build_services(config=load_config(stage.config_path))
    try:
        yield built
    finally:
        built.close()


def test_the_database_server_stops_during_the_pre_rollback_dump(
    stage: Incident, server: PrivatePostgres, services: Services
) -> None:
    with psycopg.connect(stage.db_url, autocommit=True) as conn:
        conn.execute(BULK.format(rows=600_000).encode())  # a dump that takes a moment to catch
    bad, head = database_contents(stage.db_url), remote_head(stage)

    bot = start_rollback(stage, "--to", stage.repo.good)
    wait_for("pg_dump is reading", lambda: sessions(stage, "pg_dump") > 0)
    server.stop()
    assert bot.wait(timeout=60) == 1
    steps = steps_of(services)
    assert steps["pre_dump"][0] == "failed" and "pg_dump" in steps["pre_dump"][1]
    assert steps["database"][0] == "pending" and "stopped before the swap" in steps["database"][1]
    assert steps["code"][0] == "pending" and remote_head(stage) == head

    server.start()
    assert database_contents(stage.db_url) == bad  # live untouched
    assert resume(stage, services) == "succeeded"
    assert database_contents(stage.db_url) != bad and not shadows(stage)


def test_the_database_server_stops_during_the_restore(
    stage: Incident, server: PrivatePostgres, services: Services
) -> None:
    with psycopg.connect(stage.db_url, autocommit=True) as conn:
        conn.execute(SLOW_INDEX.encode())
    take_snapshot(services, "prod", actor="deploy-pipeline")  # the restore point now restores slowly
    wanted = database_contents(stage.db_url)
    with psycopg.connect(stage.db_url, autocommit=True) as conn:
        conn.execute("UPDATE orders SET total = 0")  # what went wrong after that restore point
    bad, head = database_contents(stage.db_url), remote_head(stage)

    bot = start_rollback(stage, "--to", stage.repo.good)
    wait_for("the restore builds its slow index", lambda: sessions(stage, "pg_restore", "CREATE INDEX") > 0)
    server.stop()
    assert bot.wait(timeout=60) == 1
    steps = steps_of(services)
    assert steps["database"][0] == "failed" and "restore failed" in steps["database"][1]
    assert steps["code"][0] == "pending" and remote_head(stage) == head  # the code step waits for the load

    server.start()
    assert database_contents(stage.db_url) == bad  # live untouched
    assert resume(stage, services) == "succeeded"  # the leftover shadow is dropped, the restore redone
    assert database_contents(stage.db_url) == wanted and not shadows(stage)


def test_the_disk_of_the_dump_fills_up(stage: Incident, services: Services) -> None:
    with psycopg.connect(stage.db_url, autocommit=True) as conn:
        conn.execute(BULK.format(rows=200_000).encode())  # about 10 MB compressed: more than the disk holds
    bad, head = database_contents(stage.db_url), remote_head(stage)
    scratch = stage.root / "work" / "scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(scratch)], check=True)
    try:
        assert start_rollback(stage, "--to", stage.repo.good).wait(timeout=120) == 1
        steps = steps_of(services)
        assert steps["pre_dump"][0] == "failed" and "No space left on device" in steps["pre_dump"][1]
        assert steps["database"][0] == "pending" and steps["code"][0] == "pending"
        assert database_contents(stage.db_url) == bad and remote_head(stage) == head
        assert not list(scratch.rglob("*.partial"))  # no half dump left to be mistaken for a backup

        subprocess.run(["mount", "-o", "remount,size=200m", str(scratch)], check=True)  # disk space freed
        assert resume(stage, services) == "succeeded"
    finally:
        subprocess.run(["umount", "--lazy", str(scratch)], check=False)
    assert database_contents(stage.db_url) != bad and not shadows(stage)


# --- helpers --------------------------------------------------------------------------------------


def resume(stage: Incident, services: Services) -> str:
    run = services.store.list_runs(limit=1)[0]
    main(["resume", run.id, "--retry", "--config", str(stage.config_path)])
    return services.store.get_run(run.id).status


def steps_of(services: Services) -> dict[str, tuple[str, str]]:
    run = services.store.list_runs(limit=1)[0]
    return {s.name: (s.status, s.summary) for s in services.store.steps(run.id)}


def remote_head(stage: Incident) -> str:
    return git(Path(stage.repo.remote_url), "rev-parse", f"refs/heads/{stage.repo.branch}")


def sessions(stage: Incident, application: str, query: str = "") -> int:
    try:
        with psycopg.connect(stage.admin_url, autocommit=True, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND query LIKE %s",
                (application, f"%{query}%"),
            ).fetchone()
            return int(row[0]) if row else 0
    except psycopg.OperationalError:
        return 0


def shadows(stage: Incident) -> list[str]:
    with psycopg.connect(stage.admin_url, autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{stage.db_name}_rb_shadow_%",))
        return [str(r[0]) for r in rows]
