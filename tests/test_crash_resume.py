"""kill -9 of a terminal rollback in the middle of its database restore, then `resume --retry`.

The run shows as interrupted at once (same host: its pid is gone), and the retry finishes with exactly
one rollback commit on the remote and no shadow database left beside the live one.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psycopg
import pytest

from bot.cli import main
from bot.engine.restore_points import take_snapshot
from bot.services import Services
from sandbox.repo import git
from sandbox.scenario import PG_ADMIN_URL, Incident, database_contents
from tests.fixtures.runs import SLOW_INDEX, start_rollback
from tests.fixtures.waiting import wait_for


def shadows(db_name: str) -> list[str]:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (f"{db_name}_rb_shadow_%",))
        return [r[0] for r in rows]


def test_kill_9_mid_restore_then_resume_retry_finishes_with_one_commit_and_no_leftover(
    incident: Incident, services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    with psycopg.connect(incident.db_url, autocommit=True) as conn:
        conn.execute(SLOW_INDEX.encode())
    take_snapshot(services, "prod", actor="deploy-pipeline")  # the restore point now holds the slow index
    bad_head = git(Path(incident.repo.remote_url), "rev-parse", f"refs/heads/{incident.repo.branch}")
    wanted = database_contents(incident.db_url)

    bot = start_rollback(incident, "--to", incident.repo.good)  # its pg_restore child is orphaned, not killed with it
    try:
        wait_for(
            "the restore is under way", lambda: shadows(incident.db_name) and _database_step(services) == "running"
        )
        time.sleep(0.5)
        bot.send_signal(signal.SIGKILL)
        bot.wait(timeout=10)
    finally:
        if bot.poll() is None:
            bot.kill()
    run = services.store.list_runs()[0]

    killed_at = time.monotonic()
    assert main(["status", "--config", str(incident.config_path)]) == 0
    assert "interrupted" in capsys.readouterr().out
    assert time.monotonic() - killed_at < 5  # at once: no heartbeat timeout to wait for on the same host

    assert main(["resume", run.id, "--retry", "--config", str(incident.config_path)]) == 0
    out = capsys.readouterr().out
    assert services.store.get_run(run.id).status == "succeeded"
    cleaned = [e.detail for e in services.store.audit_trail(run_id=run.id) if e.action == "database.cleaned"]
    assert any("dropped the leftover shadow database" in line for line in cleaned), (cleaned, out)
    assert "cleaned up after the crash: dropped the leftover shadow database" in out
    assert shadows(incident.db_name) == []
    head = git(Path(incident.repo.remote_url), "rev-parse", f"refs/heads/{incident.repo.branch}")
    commits = git(Path(incident.repo.remote_url), "rev-list", f"{bad_head}..{head}").split()
    assert len(commits) == 1  # exactly one rollback commit
    assert database_contents(incident.db_url) == wanted


def _database_step(services: Services) -> str | None:
    """The database step's status: it runs (loading its shadow) beside the pre-rollback dump."""
    runs = services.store.list_runs(limit=1)
    if not runs:
        return None
    return next(s.status for s in services.store.steps(runs[0].id) if s.name == "database")
