"""The rollback engine from the terminal, against a real git remote and a real PostgreSQL server.

Each test is an incident: production runs a bad release whose migration dropped a column and a
table; the deploy pipeline took a restore point while the good release was live.
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import pytest

from bot.cli import main
from bot.engine import lifecycle
from bot.engine.events import Event, StepStarted
from bot.engine.lifecycle import Actor
from bot.engine.plan import RollbackRequest
from bot.errors import LockHeld
from bot.outbox import Outbox
from bot.services import Services
from bot.store import now
from handlers import blocks
from sandbox.repo import add_reject_hook, git, push_commit_elsewhere
from sandbox.scenario import (
    Incident,
    create_database,
    database_contents,
    drop_databases,
)
from tests.fixtures.runs import good_contents


def remote_head(incident: Incident) -> str:
    return git(Path(incident.repo.remote_url), "rev-parse", f"refs/heads/{incident.repo.branch}")


def tree(incident: Incident, ref: str) -> str:
    return git(Path(incident.repo.remote_url), "rev-parse", f"{ref}^{{tree}}")


def run_cli(incident: Incident, *args: str) -> int:
    return main([*args, "--config", str(incident.config_path)])


def test_plan_shows_everything_and_changes_nothing(incident: Incident, capsys: pytest.CaptureFixture[str]) -> None:
    head_before, data_before = remote_head(incident), database_contents(incident.db_url)
    assert run_cli(incident, "plan", "prod") == 0
    out = capsys.readouterr().out
    repo = incident.repo
    assert f"deployed       {repo.bad[:7]}" in out
    assert f"target         {repo.good[:7]}  Release 1.4.0: order totals" in out and "restore point #1" in out
    assert "Release 1.5.0: new pricing, drop legacy columns" in out  # among the commits undone
    assert "MIGRATION RISKS" in out
    assert "prisma/migrations/20261120_drop_legacy/migration.sql" in out
    assert 'ALTER TABLE "orders" DROP COLUMN "legacy_ref"' in out and 'DROP TABLE "audit_old"' in out
    assert "CREATE INDEX" not in out  # harmless statements are not risks
    assert "a database restore is the way back" in out
    assert "old)" in out  # the restore point's age
    assert "pre-rollback-YYYYMMDDHHMM.dump" in out
    assert remote_head(incident) == head_before
    assert database_contents(incident.db_url) == data_before
    assert not list((incident.root / "backups" / "prod").glob("pre-rollback-*"))


def test_run_rolls_code_and_database_back_and_checks_health(
    incident: Incident, services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    bad_data = database_contents(incident.db_url)
    assert run_cli(incident, "run", "prod", "--force") == 0
    out = capsys.readouterr().out
    repo = incident.repo

    # code: one new commit whose tree is the good release's, the bad deploy still in history
    head = remote_head(incident)
    assert tree(incident, head) == tree(incident, repo.good)
    assert git(Path(repo.remote_url), "rev-parse", f"{head}^") == repo.bad
    assert git(Path(repo.remote_url), "merge-base", "--is-ancestor", repo.bad, head) == ""

    # database: exactly the restore point, under the same name; the bad data kept aside
    assert database_contents(incident.db_url) == good_contents()
    assert "legacy_ref" in database_contents(incident.db_url)["orders"][0]

    # the pre-rollback dump: present, kept, and restorable to the pre-rollback state
    dumps = list((incident.root / "backups" / "prod").glob("pre-rollback-*.dump"))
    assert len(dumps) == 1, dumps
    scratch = incident.db_name + "_verify"
    url = create_database(scratch)
    try:
        subprocess.run(["pg_restore", "--no-owner", "--exit-on-error", "-d", url, str(dumps[0])], check=True)
        assert database_contents(url) == bad_data
    finally:
        drop_databases(scratch)

    assert "✅ Health checks: 1/1 healthy" in out and "✅ Rollback complete for prod" in out
    assert "Post-rollback checklist" in out and "Keep the pre-rollback dump" in out
    assert "Update the DATABASE_URL" not in out  # RDS items only when RDS restored
    run = services.store.list_runs()[0]
    assert run.status == "succeeded" and services.store.lock_for("prod") is None
    assert [s.status for s in services.store.steps(run.id)] == ["ok", "ok", "ok", "ok", "skipped", "ok", "ok"]
    assert services.store.checklist(run.id)

    assert run_cli(incident, "timeline", run.id) == 0
    timeline = capsys.readouterr().out
    assert (
        timeline.startswith(f"# Rollback {run.id}")
        and "| run.started |" in timeline
        and "## Post-rollback checklist" in timeline
    )
    assert run_cli(incident, "history") == 0
    assert run.id in capsys.readouterr().out


def test_force_push_saves_the_old_head_on_the_remote_first(
    incident: Incident, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli(incident, "run", "prod", "--force", "--code", "force-push", "--db", "none") == 0
    repo = incident.repo
    assert remote_head(incident) == repo.good
    refs = git(Path(repo.remote_url), "for-each-ref", "--format=%(refname) %(objectname)", "refs/rollback-backup/")
    assert refs.endswith(f" {repo.bad}") and refs.startswith(f"refs/rollback-backup/{repo.branch}/")
    assert "refs/rollback-backup/" in capsys.readouterr().out


def test_a_corrupt_restore_source_fails_before_anything_changes(incident: Incident, services: Services) -> None:
    point = services.store.latest_restore_point("prod")
    assert point is not None and point.dump_path
    Path(point.dump_path).write_bytes(b"PGDMP this is not a dump at all" * 10)
    head, data = remote_head(incident), database_contents(incident.db_url)
    assert run_cli(incident, "run", "prod", "--force") == 1
    run = services.store.list_runs()[0]
    assert run.status == "failed" and run.current_step == "safety"
    assert "restore from is not usable" in (run.error or "")
    assert remote_head(incident) == head and database_contents(incident.db_url) == data


def test_a_dump_that_breaks_mid_restore_leaves_the_live_database_untouched(
    incident: Incident, services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    point = services.store.latest_restore_point("prod")
    assert point is not None and point.dump_path
    dump = Path(point.dump_path)
    dump.write_bytes(dump.read_bytes()[: int(dump.stat().st_size * 0.8)])  # table of contents intact, data cut
    data = database_contents(incident.db_url)
    assert run_cli(incident, "run", "prod", "--force", "--code", "none") == 1
    out = capsys.readouterr().out
    run = services.store.list_runs()[0]
    assert run.status == "failed", run
    failed = [s for s in services.store.steps(run.id) if s.status == "failed"]
    assert [s.name for s in failed] in (["database"], ["safety"])  # a cut may also be caught up front
    assert database_contents(incident.db_url) == data
    assert "Where things stand" in out and "Next: retry" in out
    assert services.store.lock_for("prod") is not None  # still held: the run waits for a decision


def test_a_rejected_push_is_a_failure_not_a_success(
    incident: Incident, services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    add_reject_hook(Path(incident.repo.remote_url), message="release branch is frozen by the change board")
    head, data = remote_head(incident), database_contents(incident.db_url)
    assert run_cli(incident, "run", "prod", "--force") == 1
    out = capsys.readouterr().out
    assert "❌ Code rollback failed" in out and "frozen by the change board" in out
    assert remote_head(incident) == head
    assert database_contents(incident.db_url) == data  # the database step was not reached
    steps = {s.name: s.status for s in services.store.steps(services.store.list_runs()[0].id)}
    assert steps["code"] == "failed" and steps["database"] == "pending"


def test_a_second_rollback_of_the_same_environment_is_refused(
    incident: Incident, services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    first, _ = lifecycle.propose(services, RollbackRequest(env="prod", requested_by="alice"))
    services.store.acquire_lock("prod", run_id=first.id, holder="alice")
    head = remote_head(incident)
    assert run_cli(incident, "run", "prod", "--force") == 2
    err = capsys.readouterr().err
    assert "already in progress" in err and "alice" in err and first.id in err
    assert remote_head(incident) == head
    second, _ = lifecycle.propose(services, RollbackRequest(env="prod", requested_by="bob"))
    with pytest.raises(LockHeld):
        lifecycle.start(services, second.id, actor=Actor("bob", "terminal"))


def test_two_starts_of_one_run_run_it_once(incident: Incident, services: Services) -> None:
    record, _ = lifecycle.propose(services, RollbackRequest(env="prod", requested_by="alice", db="none"))
    results: list[str] = []
    barrier = threading.Barrier(2)

    def click() -> None:
        barrier.wait()
        results.append(lifecycle.start(services, record.id, actor=Actor("carol", "terminal")).status)

    threads = [threading.Thread(target=click) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert "succeeded" in results
    assert [s.attempts for s in services.store.steps(record.id)] == [1] * 7
    assert (
        lifecycle.start(services, record.id, actor=Actor("carol", "terminal")).status == "succeeded"
    )  # a late third click
    assert services.store.lock_for("prod") is None  # …does not leave the environment locked
    assert (
        git(
            Path(incident.repo.remote_url),
            "rev-list",
            "--count",
            f"{incident.repo.bad}..{remote_head(incident)}",
        )
        == "1"
    )


def test_health_failing_after_everything_else_ends_done_unhealthy_and_says_so_plainly(
    incident: Incident, services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    incident.health.status = 503  # the app stays broken after the rollback
    assert run_cli(incident, "run", "prod", "--force", "--channel", "C0INCIDENT") == 3
    out = capsys.readouterr().out
    run = services.store.list_runs()[0]
    steps = {s.name: s.status for s in services.store.steps(run.id)}
    assert run.status == "unhealthy" and "done, unhealthy" in (run.error or "")
    assert steps == {
        "safety": "ok",
        "pre_dump": "ok",
        "code": "ok",
        "database": "ok",
        "flags": "skipped",
        "health": "failed",
        "checklist": "ok",  # nothing is left to roll back: the run ends, with its checklist
    }
    assert "Rollback done, unhealthy" in out and "❌ Health checks" in out
    assert services.store.lock_for("prod") is None  # ended: the environment is free
    assert database_contents(incident.db_url) == good_contents()
    stakeholder = [row.notice for row in Outbox(services.store).due(limit=200) if row.notice.channel == "C0STATUS"]
    assert stakeholder[-1].payload["phase"] == "unhealthy"
    words = blocks.stakeholder_text(env="prod", phase="unhealthy", now=now(), started_at=run.started_at)
    assert "the previous version and its data are back" in words and "not answering normally" in words


def test_dry_run_checks_everything_and_changes_nothing(incident: Incident, capsys: pytest.CaptureFixture[str]) -> None:
    head, data = remote_head(incident), database_contents(incident.db_url)
    assert run_cli(incident, "run", "prod", "--force", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "dry run: would revert" in out and "dry run: nothing was changed" in out
    assert remote_head(incident) == head and database_contents(incident.db_url) == data


def test_no_secret_reaches_the_terminal_or_the_store(
    incident: Incident,
    services: Services,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    secret = "s3cr3t-Pa55word"
    monkeypatch.setenv("RB_TEST_DATABASE_URL", incident.db_url.replace("postgres@", f"postgres:{secret}@"))
    assert run_cli(incident, "run", "prod", "--force") == 0
    run = services.store.list_runs()[0]
    assert run_cli(incident, "timeline", run.id) == 0
    assert run_cli(incident, "status") == 0
    captured = capsys.readouterr()
    assert secret not in captured.out + captured.err
    dump_of_store = (incident.root / "state" / "rollback-bot.db").read_bytes()
    assert secret.encode() not in dump_of_store
    assert f"postgres@127.0.0.1:5432/{incident.db_name}" in captured.out  # where, without the password


def test_a_run_without_a_terminal_or_force_asks_for_confirmation_and_changes_nothing(
    incident: Incident, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    head = remote_head(incident)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert run_cli(incident, "run", "prod") == 2
    assert "typed confirmation" in capsys.readouterr().err
    assert remote_head(incident) == head


def test_the_store_can_be_postgresql_for_replicas(incident: Incident, capsys: pytest.CaptureFixture[str]) -> None:
    name = incident.db_name + "_state"
    url = create_database(name)
    try:
        config = incident.config_path.read_text().replace(
            'store = "sqlite:///state/rollback-bot.db"', f'store = "{url}"'
        )
        incident.config_path.write_text(config)
        assert run_cli(incident, "snapshot", "prod") == 0  # a restore point at the deployed (bad) head…
        assert run_cli(incident, "run", "prod", "--force", "--to", incident.repo.good, "--db", "none") == 0
        assert run_cli(incident, "history") == 0
        out = capsys.readouterr().out
        assert "restore point #1 for prod" in out and "succeeded" in out
        assert tree(incident, remote_head(incident)) == tree(incident, incident.repo.good)
        from bot.store import Store

        store = Store(url)
        try:
            assert store.list_runs()[0].status == "succeeded" and store.lock_for("prod") is None
        finally:
            store.close()
    finally:
        drop_databases(name)


@pytest.mark.parametrize(
    ("answers", "code", "changed"),
    [
        (["prod", "ROLLBACK"], 0, True),  # the seed's confirmations: the environment's name, then ROLLBACK
        (["prod", "yes"], 1, False),
        (["staging"], 1, False),
    ],
)
def test_the_terminal_asks_before_it_rolls_back(
    incident: Incident,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    answers: list[str],
    code: int,
    changed: bool,
) -> None:
    head = remote_head(incident)
    replies = iter(answers)
    asked: list[str] = []
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt="": asked.append(prompt) or next(replies))
    assert run_cli(incident, "run", "prod") == code
    assert "Type the environment name (prod)" in asked[0]
    assert (remote_head(incident) != head) is changed
    if not changed:
        assert "Cancelled: nothing was changed." in capsys.readouterr().out


def test_a_push_that_landed_before_a_crash_is_not_pushed_again(incident: Incident, services: Services) -> None:
    record, plan = lifecycle.propose(services, RollbackRequest(env="prod", requested_by="alice", db="none"))

    def earlier_attempt_pushed(event: Event) -> None:
        # The code step's first attempt pushed the revert, then died before the journal said so.
        if isinstance(event, StepStarted) and event.step == "code":
            services.repo("prod").revert_to(deployed=plan.deployed.sha, target=plan.target.sha, message="rollback")

    assert (
        lifecycle.start(
            services, record.id, actor=Actor("carol", "terminal"), reporters=[earlier_attempt_pushed]
        ).status
        == "succeeded"
    )
    code = next(s for s in services.store.steps(record.id) if s.name == "code")
    assert "pushed by an earlier attempt" in code.summary
    head = remote_head(incident)
    assert tree(incident, head) == tree(incident, incident.repo.good)
    assert git(Path(incident.repo.remote_url), "rev-list", "--count", f"{incident.repo.bad}..{head}") == "1"


def test_a_remote_that_moved_under_the_code_step_is_not_overwritten(incident: Incident, services: Services) -> None:
    record, _ = lifecycle.propose(services, RollbackRequest(env="prod", requested_by="alice", db="none"))
    pushed: list[str] = []

    def colleague_pushes(event: Event) -> None:
        if isinstance(event, StepStarted) and event.step == "code":
            pushed.append(
                push_commit_elsewhere(
                    incident.repo.remote_url,
                    work=incident.root / "colleague",
                    branch=incident.repo.branch,
                    files={"HOTFIX": "x"},
                    message="hotfix",
                )
            )

    assert (
        lifecycle.start(services, record.id, actor=Actor("carol", "terminal"), reporters=[colleague_pushes]).status
        == "failed"
    )
    assert remote_head(incident) == pushed[0]
    assert "moved since the plan was made" in (services.store.get_run(record.id).error or "")


@pytest.mark.parametrize("strategy", ["revert", "force-push"])
def test_a_deploy_that_changed_no_files_rolls_back_with_nothing_to_push(
    incident: Incident, services: Services, strategy: str
) -> None:
    # The deployed head has exactly the good release's files (a deploy that changed only the database).
    repo = incident.repo
    git(repo.clone, "checkout", "--quiet", "--detach", repo.good)
    git(repo.clone, "commit", "--quiet", "--allow-empty", "-m", "Deploy: run the data migration")
    deployed = git(repo.clone, "rev-parse", "HEAD")
    git(repo.clone, "push", "--quiet", "--force", repo.remote_name, f"{deployed}:refs/heads/{repo.branch}")

    assert run_cli(incident, "run", "prod", "--to", repo.good, "--code", strategy, "--force") == 0
    run = services.store.list_runs()[0]
    code = next(s for s in services.store.steps(run.id) if s.name == "code")
    assert run.status == "succeeded"
    assert code.status == "ok" and "nothing to push" in code.summary
    assert remote_head(incident) == deployed  # nothing was pushed
    assert database_contents(incident.db_url) == good_contents()  # and the rest of the rollback went on


def test_status_leaves_out_dry_runs_and_history_keeps_them(
    incident: Incident, services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    request = RollbackRequest(env="prod", requested_by="U0ALICE", dry_run=True, source="slack")
    dry, _ = lifecycle.propose(services, request)  # as a Slack dry run leaves it: recorded "planned"
    assert dry.dry_run and dry.status == "planned"
    assert run_cli(incident, "status") == 0
    status = capsys.readouterr().out
    assert "No rollback in progress." in status and dry.id not in status  # it waits for no approver
    assert run_cli(incident, "history") == 0
    assert dry.id in capsys.readouterr().out
