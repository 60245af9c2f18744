"""The git remote cut off in the middle of a rollback, for real: the remote is a test host in a network
namespace (git daemon over a veth pair), and the link is deleted while the pre-rollback dump runs, so the
code step's push cannot reach it. Nothing of production changes; a retry once the network is back
finishes the rollback. (README: "When things break".)
"""

from __future__ import annotations

import psycopg

from bot.cli import main
from bot.services import Services
from sandbox.repo import git
from sandbox.scenario import Incident, database_contents
from tests.fixtures.netns_remote import netns_remote
from tests.fixtures.runs import start_rollback, step_status
from tests.fixtures.waiting import wait_for


def test_the_remote_becomes_unreachable_before_the_push(incident: Incident, services: Services) -> None:
    repo = incident.repo
    with psycopg.connect(incident.db_url, autocommit=True) as conn:  # a dump that takes a moment to catch
        conn.execute(
            "CREATE TABLE bulk AS SELECT g AS id, repeat(md5(g::text), 8) AS body FROM generate_series(1, 600000) g"
        )
    bad = database_contents(incident.db_url)
    with netns_remote(repo.bare) as remote:
        git(repo.clone, "remote", "set-url", repo.remote_name, remote.url)
        bot = start_rollback(incident)
        wait_for("the pre-rollback dump is under way", lambda: step_status(services, "pre_dump") == "running")
        remote.cut()
        assert bot.wait(timeout=120) == 1
        run = services.store.list_runs(limit=1)[0]
        steps = {s.name: s for s in services.store.steps(run.id)}
        assert steps["pre_dump"].status == "ok"
        assert steps["code"].status == "failed" and remote.address in steps["code"].summary
        assert steps["database"].status == "pending"  # its load was stopped before the swap
        assert git(repo.bare, "rev-parse", f"refs/heads/{repo.branch}") == repo.bad  # nothing was pushed
        assert database_contents(incident.db_url) == bad

    git(repo.clone, "remote", "set-url", repo.remote_name, repo.remote_url)  # the network is back
    assert main(["resume", run.id, "--retry", "--config", str(incident.config_path)]) == 0
    assert services.store.get_run(run.id).status == "succeeded"
    assert git(repo.bare, "rev-list", "--count", f"{repo.bad}..refs/heads/{repo.branch}") == "1"
