"""The restore loads into its shadow while the pre-rollback dump is taken (bot.engine.overlap), on the real
PostgreSQL server and a real git remote: only the swap waits for the dump, and a failure of either leaves
production exactly as it was.
"""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from bot.backends.postgres import PostgresDatabase
from bot.backends.reporter import Reporter
from bot.cli import main
from bot.errors import DumpFailed
from bot.services import Services
from sandbox.repo import git
from sandbox.scenario import PG_ADMIN_URL, Incident, database_contents


def shadows(db_name: str) -> list[str]:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{db_name}_rb_shadow_%",))
        return [str(r[0]) for r in rows]


def remote_head(incident: Incident) -> str:
    return git(Path(incident.repo.remote_url), "rev-parse", f"refs/heads/{incident.repo.branch}")


def test_the_restore_loads_beside_the_dump_and_swaps_after_it(incident: Incident, services: Services) -> None:
    assert main(["run", "prod", "--force", "--config", str(incident.config_path)]) == 0
    run = services.store.list_runs(limit=1)[0]
    steps = {s.name: s for s in services.store.steps(run.id)}
    assert run.status == "succeeded"
    # Begun together; the database step (its load) started before the dump finished, swapped after it.
    assert steps["database"].started_at <= steps["pre_dump"].finished_at  # type: ignore[operator]
    assert steps["database"].finished_at >= steps["code"].finished_at  # type: ignore[operator]
    assert steps["code"].started_at >= steps["pre_dump"].finished_at  # type: ignore[operator]
    assert "loaded_in" in steps["database"].details and "swapped_in" in steps["database"].details
    assert shadows(incident.db_name) == []


def test_a_failed_pre_rollback_dump_stops_the_load_and_changes_nothing(
    incident: Incident, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = database_contents(incident.db_url)
    bad_head = remote_head(incident)
    real_write = PostgresDatabase.write_dump

    def write_then_fail(self: PostgresDatabase, partial: Path, say: Reporter, tick: object) -> None:
        # Stands in for pg_dump dying half-way (a full disk is #9's real fault); the load runs meanwhile.
        time.sleep(1.0)
        raise DumpFailed("pg_dump of the live database failed: No space left on device")

    monkeypatch.setattr(PostgresDatabase, "write_dump", write_then_fail)
    assert main(["run", "prod", "--force", "--config", str(incident.config_path)]) == 1
    run = services.store.list_runs(limit=1)[0]
    steps = {s.name: s for s in services.store.steps(run.id)}
    assert run.status == "failed"
    assert steps["pre_dump"].status == "failed"
    assert steps["database"].status == "pending"
    assert "stopped before the swap" in steps["database"].summary
    assert steps["code"].status == "pending"
    assert database_contents(incident.db_url) == bad and remote_head(incident) == bad_head
    assert shadows(incident.db_name) == []

    monkeypatch.setattr(PostgresDatabase, "write_dump", real_write)
    assert main(["resume", run.id, "--retry", "--config", str(incident.config_path)]) == 0
    assert services.store.get_run(run.id).status == "succeeded"
    assert database_contents(incident.db_url) != bad and shadows(incident.db_name) == []


def test_a_corrupt_restore_point_fails_the_load_before_any_code_is_pushed(
    incident: Incident, services: Services
) -> None:
    point = services.store.latest_restore_point("prod")
    assert point is not None and point.dump_path
    data = bytearray(Path(point.dump_path).read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, same size: only the sha256 can tell
    Path(point.dump_path).write_bytes(bytes(data))
    bad = database_contents(incident.db_url)
    bad_head = remote_head(incident)

    assert main(["run", "prod", "--force", "--config", str(incident.config_path)]) == 1
    run = services.store.list_runs(limit=1)[0]
    steps = {s.name: s for s in services.store.steps(run.id)}
    assert steps["safety"].status == "ok"  # it checks presence and size; the sha256 is read once, by the load
    assert steps["pre_dump"].status == "ok"
    assert steps["database"].status == "failed" and "sha256" in steps["database"].summary
    assert steps["code"].status == "pending"  # the code step waits for the load: nothing was pushed
    assert database_contents(incident.db_url) == bad and remote_head(incident) == bad_head
    assert shadows(incident.db_name) == []
