"""Rehearsals on SQLite and MySQL/MariaDB: the same stand-ins and the same promise as on PostgreSQL (test_rehearsal.py):
production unchanged, every step run and timed, nothing left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.engine.rehearsal import rehearse
from bot.services import Services
from sandbox.repo import git
from tests.fixtures.databases import mysql_database, mysql_databases, sqlite_database
from tests.fixtures.drills import drill_world


def remote_branches(services: Services) -> str:
    env = services.config.environment("prod")
    return git(Path(env.repo), "ls-remote", "--heads", env.remote)


def test_a_sqlite_rehearsal_runs_every_step_and_leaves_only_the_live_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = tmp_path / "app.db"
    url = sqlite_database(live, rows=300)
    with drill_world(tmp_path, monkeypatch, engine="sqlite", url=url) as services:
        before, branches = live.read_bytes(), remote_branches(services)
        check = rehearse(services, "prod", requested_by="U0CAROL", source="cli")
        assert remote_branches(services) == branches  # production's branch where it was, no scratch branch
    assert check.status == "passed", check.failure
    ran = {step["name"]: step["status"] for step in check.details["steps"]}
    assert ran["database"] == "ok" and ran["pre_dump"] == "ok" and ran["code"] == "ok"
    # Production runs the restore point's own commit here (no deploy since the snapshot): the scratch branch
    # got one commit standing in for a deploy, and the rehearsal's code step reverted and pushed it for real.
    assert "standing in for a deploy" in check.details["preparation"][0]["summary"]
    assert "undoing 1 commit" in next(s["summary"] for s in check.details["steps"] if s["name"] == "code")
    assert all(isinstance(step["seconds"], float) for step in check.details["steps"])
    assert live.read_bytes() == before  # production's file is untouched
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("app.db")) == ["app.db"]


def test_a_mariadb_rehearsal_runs_every_step_and_leaves_no_database_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with mysql_database() as my:
        with drill_world(tmp_path, monkeypatch, engine="mysql", url=my.url) as services:
            check = rehearse(services, "prod", requested_by="U0CAROL", source="cli")
        assert check.status == "passed", check.failure
        ran = {step["name"]: step["status"] for step in check.details["steps"]}
        assert ran["database"] == "ok" and ran["pre_dump"] == "ok"
        assert mysql_databases(my.name[:14]) == [my.name]  # no scratch, shadow or kept database
