"""Rehearsals (issue #10): the whole plan run by the engine against stand-ins, with a real git remote and the
real PostgreSQL server, and production left exactly as it was, with nothing left behind.

"Exactly as it was" is measured everywhere a rehearsal could leave a trace: production's branch on the
remote, every ref of the remote and of the bot's clone, production's rows, every database named after
production's (scratch, kept, shadow), the backup folder and the work folder (tests.fixtures.rehearsal.World).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from bot.backends.git import GitRepo
from bot.cli import main
from bot.engine import lifecycle
from bot.engine.plan import RollbackRequest
from bot.engine.rehearsal import rehearse
from bot.engine.steps import STEPS
from bot.errors import BadRequest, GitError, InvalidState, NotAllowed, PreconditionFailed
from bot.render_text import run_line
from bot.services import Services, StandIn
from sandbox.health_server import HealthServer
from sandbox.repo import build_sandbox_repo, git
from sandbox.scenario import Incident, create_database, database_contents, deploy_bad_release, deploy_good_release
from sandbox.slack_harness import INCIDENT, STATUS, SlackWorkspace
from tests.conftest import TEST_URL_ENV
from tests.fixtures.rehearsal import (
    SilentServer,
    World,
    databases,
    refs,
    refuse_scratch_deletes,
    refuse_scratch_updates,
    with_rehearsal,
)
from tests.fixtures.runs import good_contents, start_cli
from tests.fixtures.waiting import wait_for

ALICE, CAROL, MALLORY = "U0ALICE", "U0CAROL", "U0MALLORY"
STEP_NAMES = [step.name for step in STEPS]


def statuses(details: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["status"] for s in details["steps"]}


def cleanup_results(details: dict[str, Any]) -> dict[str, str]:
    """Each cleanup line's result by the first two words of what it removed ("scratch branch", "kept copy")."""
    return {" ".join(line["what"].split(" ")[:2]): line["result"] for line in details["cleanup"]}


def scratch_on_remote(incident: Incident) -> list[str]:
    return [ref for ref in refs(incident.repo.bare) if "rollback-bot" in ref]


# --- the whole rehearsal ---------------------------------------------------------------------------------


def test_a_rehearsal_runs_every_step_on_stand_ins_and_leaves_production_and_nothing_behind(
    incident: Incident, services: Services
) -> None:
    before = World.of(incident)

    check = rehearse(services, "prod", requested_by=ALICE, source="cli")

    assert check.status == "passed", check.failure
    assert World.of(incident) == before  # branch, rows, databases, refs (remote and clone), backups, work files
    steps = check.details["steps"]
    assert [s["name"] for s in steps] == STEP_NAMES
    assert all(isinstance(s["seconds"], float) and s["seconds"] >= 0 for s in steps)
    assert statuses(check.details) == {
        "safety": "ok",
        "pre_dump": "ok",
        "code": "ok",
        "database": "ok",
        "flags": "skipped",
        "health": "skipped",
        "checklist": "ok",
    }
    assert check.seconds is not None and check.seconds > max(s["seconds"] for s in steps)
    assert [p["name"] for p in check.details["preparation"]] == ["scratch branch", "scratch database"]
    # It really rolled the stand-ins back: a revert pushed onto the scratch branch, the restore point swapped in.
    by_name = {s["name"]: s for s in steps}
    assert "pushed" in by_name["code"]["summary"] and "rollback-bot/rehearsal-prod-" in by_name["code"]["summary"]
    assert "previous data kept as" in by_name["database"]["summary"]
    run = services.store.get_run(check.details["run_id"])
    assert run.env == "prod@r" and run.status == "succeeded" and run.id == check.run_id
    # What stood in, and what was skipped and why.
    stand_ins = check.details["stand_ins"]
    assert "scratch branch production/rollback-bot/rehearsal-prod-" in stand_ins["code"]
    assert "scratch copy" in stand_ins["database"] and "restore point #1" in stand_ins["database"]
    assert "no feature flags" in stand_ins["skipped"]["flags"]
    assert "no rehearsal.health" in stand_ins["skipped"]["health"]
    # Every scratch artifact removed, each said.
    cleaned = cleanup_results(check.details)
    assert cleaned["scratch branch"] == cleaned["scratch database"] == "removed", check.details["cleanup"]
    assert cleaned["kept copy"] == cleaned["pre-rollback dump"] == "removed", check.details["cleanup"]
    assert not [line for line in check.details["cleanup"] if line["result"] == "FAILED"]
    # Production's own records: no run of prod, no lock held, and the rehearsal is what readiness reads.
    assert [r.env for r in services.store.list_runs()] == ["prod@r"]
    assert services.store.lock_for("prod") is None and services.store.lock_for("prod@r") is None
    assert "  prod (rehearsal) succeeded " in run_line(run)  # `history` says what it was, not "prod@r"
    last = services.store.last_check("prod", kind="rehearsal")
    assert last is not None and last.id == check.id and last.status == "passed"


def test_a_staging_health_url_answering_500_fails_the_rehearsal_says_what_failed_and_still_cleans_up(
    incident: Incident,
) -> None:
    staging = HealthServer(status=500)
    url = staging.start()
    services = with_rehearsal(incident, f'health = ["{url}"]')
    try:
        before = World.of(incident)
        check = rehearse(services, "prod", requested_by=ALICE, source="cli")
        assert check.status == "failed"
        assert check.failure is not None and url in check.failure and "health" in check.failure
        assert statuses(check.details)["health"] == "failed"
        # Checked as prod's own [[health]] entry is (5 attempts, 2 passes in a row): tried until it could not pass.
        assert staging.hits == 4
        assert check.details["stand_ins"]["health"] == f"staging URLs: {url}"
        assert World.of(incident) == before
        assert not [line for line in check.details["cleanup"] if line["result"] == "FAILED"]
        assert services.store.get_run(check.run_id or "").status == "unhealthy"
    finally:
        services.close()
        staging.stop()


def test_a_push_refused_by_a_hook_fails_the_rehearsal_and_everything_is_still_removed(
    incident: Incident, services: Services
) -> None:
    refuse_scratch_updates(incident.repo.bare, message="pushes to rollback-bot/* are frozen by the change board")
    before = World.of(incident)

    check = rehearse(services, "prod", requested_by=ALICE, source="cli")

    assert check.status == "failed"
    assert check.failure is not None and "Code rollback" in check.failure
    assert "frozen by the change board" in check.failure
    shown = statuses(check.details)
    assert shown["code"] == "failed" and shown["safety"] == shown["pre_dump"] == "ok"
    assert shown["health"] == shown["checklist"] == "pending"
    assert World.of(incident) == before  # the restore loading beside the dump was stopped and dropped too
    assert services.store.get_run(check.run_id or "").status == "aborted"  # a failed run never waits
    assert services.store.lock_for("prod@r") is None
    assert cleanup_results(check.details)["scratch branch"] == "removed"


def test_a_configured_staging_branch_is_rolled_back_and_kept(incident: Incident) -> None:
    bare = incident.repo.bare
    git(incident.repo.clone, "push", "--quiet", incident.repo.remote_name, f"{incident.repo.bad}:refs/heads/staging")
    services = with_rehearsal(incident, 'branch = "staging"')
    try:
        before = World.of(incident)
        check = rehearse(services, "prod", requested_by=ALICE, source="cli")
        assert check.status == "passed", check.failure
        staging = git(bare, "rev-parse", "refs/heads/staging")
        assert git(bare, "rev-parse", f"{staging}^") == incident.repo.bad  # one revert commit on top
        assert git(bare, "rev-parse", f"{staging}^{{tree}}") == git(bare, "rev-parse", f"{incident.repo.good}^{{tree}}")
        assert git(bare, "rev-parse", f"refs/heads/{incident.repo.branch}") == before.head
        assert scratch_on_remote(incident) == []
        assert "staging branch production/staging" in check.details["stand_ins"]["code"]
        assert not any(line["what"].startswith("scratch branch") for line in check.details["cleanup"])
        assert World.of(incident).contents == before.contents
        assert World.of(incident).databases == before.databases
    finally:
        services.close()


def test_a_configured_staging_database_is_restored_over_and_kept_with_nothing_beside_it(
    incident: Incident, monkeypatch: pytest.MonkeyPatch
) -> None:
    staging_url = create_database(incident.db_name + "_staging")
    deploy_good_release(staging_url)
    deploy_bad_release(staging_url)  # staging runs the bad release too
    monkeypatch.setenv("RB_TEST_STAGING_URL", staging_url)
    services = with_rehearsal(incident, 'database_url_env = "RB_TEST_STAGING_URL"')
    try:
        before = World.of(incident)  # the staging database is in it: it must still be there afterwards
        check = rehearse(services, "prod", requested_by=ALICE, source="cli")
        assert check.status == "passed", check.failure
        assert database_contents(staging_url) == good_contents()  # staging holds the restore point now
        assert World.of(incident) == before  # production's rows, and no kept copy or shadow of staging left
        assert "staging database in $RB_TEST_STAGING_URL" in check.details["stand_ins"]["database"]
        assert cleanup_results(check.details)["kept copy"] == "removed"
        assert "scratch database" not in cleanup_results(check.details)
    finally:
        services.close()


def test_a_staging_database_that_is_productions_own_is_refused(
    incident: Incident, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RB_TEST_STAGING_URL", incident.db_url)
    services = with_rehearsal(incident, 'database_url_env = "RB_TEST_STAGING_URL"')
    try:
        before = World.of(incident)
        check = rehearse(services, "prod", requested_by=ALICE, source="cli")
        assert check.status == "failed" and check.run_id is None
        assert check.failure is not None and "is prod's own database" in check.failure
        assert World.of(incident) == before
    finally:
        services.close()


@pytest.mark.incident_config(with_flags=True)
def test_flags_are_rehearsed_in_the_vendors_staging_environment_and_put_back(incident: Incident) -> None:
    vendor = incident.flags
    assert vendor is not None
    vendor.set_flag("new-pricing", True, environment="test")
    services = with_rehearsal(incident, 'flags_environment = "test"')
    try:
        check = rehearse(services, "prod", requested_by=ALICE, source="cli")
        assert check.status == "passed", check.failure
        assert statuses(check.details)["flags"] == "ok"
        patches = [r.json() for r in vendor.requests if r.method == "PATCH"]
        assert [p["environmentKey"] for p in patches] == ["test", "test"]  # turned off, then put back
        assert [p["instructions"][0]["kind"] for p in patches] == ["turnFlagOff", "turnFlagOn"]
        assert vendor.flag_on("new-pricing", environment="production")  # production's flag never touched
        assert vendor.flag_on("new-pricing", environment="test")  # and staging's is as it was
        assert cleanup_results(check.details)["staging flags"] == "removed"
        assert "'test' environment" in check.details["stand_ins"]["flags"]
    finally:
        services.close()


@pytest.mark.incident_config(with_flags=True)
def test_without_a_staging_flag_environment_flags_are_skipped_and_said_so(
    incident: Incident, services: Services
) -> None:
    vendor = incident.flags
    assert vendor is not None
    check = rehearse(services, "prod", requested_by=ALICE, source="cli")
    assert check.status == "passed", check.failure
    assert statuses(check.details)["flags"] == "skipped"
    assert "production's flags are never touched" in check.details["stand_ins"]["skipped"]["flags"]
    assert not [r for r in vendor.requests if r.method == "PATCH"]


def test_without_a_restore_point_the_rehearsal_fails_before_making_anything(incident: Incident) -> None:
    qa = (
        f'[environments.qa]\nrepo = "{incident.repo.clone}"\nremote = "production"\nbranch = "release"\n'
        f'[environments.qa.database]\nengine = "postgres"\nurl_env = "{TEST_URL_ENV}"\nrestore = "dump"\n'
    )
    services = with_rehearsal(incident, "", more=qa)
    try:
        before = World.of(incident)
        check = rehearse(services, "qa", requested_by=ALICE, source="cli")
        assert check.status == "failed"
        assert check.failure is not None and "no restore point" in check.failure
        assert "rollback-bot snapshot qa" in check.failure
        assert check.details["steps"] == [] and check.details["cleanup"] == [] and check.run_id is None
        assert World.of(incident) == before
    finally:
        services.close()


def test_a_failed_cleanup_fails_the_rehearsal_loudly_naming_what_was_left(
    incident: Incident, services: Services
) -> None:
    hook = refuse_scratch_deletes(incident.repo.bare, message="branch deletion is disabled on this remote")
    try:
        check = rehearse(services, "prod", requested_by=ALICE, source="cli")
        assert check.status == "failed"  # every step passed, but something was left behind
        assert all(s in ("ok", "skipped") for s in statuses(check.details).values())
        assert check.failure is not None and "CLEANUP INCOMPLETE" in check.failure
        left = scratch_on_remote(incident)
        assert len(left) == 1 and left[0].removeprefix("refs/heads/") in check.failure
        assert "branch deletion is disabled" in check.failure
        assert cleanup_results(check.details)["scratch branch"] == "FAILED"
        assert cleanup_results(check.details)["scratch database"] == "removed"  # the rest was still cleaned
    finally:
        hook.unlink()
        for ref in scratch_on_remote(incident):
            git(incident.repo.bare, "update-ref", "-d", ref)


# --- one at a time, and after a crash ---------------------------------------------------------------------


def test_two_rehearsals_of_one_environment_never_run_at_once(incident: Incident, services: Services) -> None:
    running = services.store.start_check(
        kind="rehearsal", env="prod", requested_by=CAROL, source="slack", occurrence="rehearsal:prod:after:0"
    )
    assert running is not None  # one of this very process: alive
    with pytest.raises(InvalidState, match="already running"):
        rehearse(services, "prod", requested_by=ALICE, source="cli")
    assert len(services.store.checks("prod", kind="rehearsal")) == 1
    assert services.store.list_runs() == []


def test_a_rehearsal_killed_mid_run_is_cleaned_up_by_the_next_one(incident: Incident) -> None:
    original = incident.config_path.read_text()
    silent = SilentServer()  # the staging health check hangs: the process is killed while it waits
    services = with_rehearsal(incident, f'health = ["{silent.url}"]')
    before = World.of(incident)
    bot = start_cli(incident, "rehearse", "prod")
    try:

        def checking_health() -> bool:
            found = services.store.unfinished_checks(kind="rehearsal")
            run_id = found[0].run_id if found else None
            return bool(run_id) and any(
                s.name == "health" and s.status == "running" for s in services.store.steps(run_id or "")
            )

        wait_for("the rehearsal's health step is running", checking_health, timeout=120)
        bot.send_signal(signal.SIGKILL)
        bot.wait(timeout=10)
    finally:
        if bot.poll() is None:
            bot.kill()
        silent.close()
    killed = services.store.unfinished_checks(kind="rehearsal")[0]
    assert scratch_on_remote(incident) and databases(incident.db_name) != before.databases  # left mid-run
    services.close()
    incident.config_path.write_text(original)  # the next rehearsal checks no health
    services = with_rehearsal(incident, "")
    try:
        check = rehearse(services, "prod", requested_by=ALICE, source="cli")
        assert check.status == "passed", check.failure
        cut_off = services.store.check(killed.id)
        assert cut_off.status == "interrupted" and cut_off.failure is not None and "stopped" in cut_off.failure
        results = cleanup_results(cut_off.details)
        assert results["the rehearsal's"] == "removed"  # its run aborted, the stand-in's lock released
        for what in ("scratch branch", "scratch database", "kept copy", "pre-rollback dump"):
            assert results[what] == "removed", cut_off.details["cleanup"]
        assert services.store.get_run(killed.run_id or "").status == "aborted"
        assert World.of(incident) == before
    finally:
        services.close()


# --- the terminal and Slack --------------------------------------------------------------------------------


def test_the_cli_verb_prints_each_step_and_the_summary_and_exits_0_or_1(
    incident: Incident, capsys: pytest.CaptureFixture[str]
) -> None:
    config = str(incident.config_path)
    assert main(["rehearse", "prod", "--config", config]) == 0
    out = capsys.readouterr().out
    assert "Safety checks" in out and "Database restore" in out  # each step as it went
    assert "Rehearsal #1 of prod passed" in out and "end to end" in out
    assert "Stood in for production:" in out and "Skipped:" in out and "Cleanup:" in out
    assert "scratch branch rollback-bot/rehearsal-prod-1" in out

    staging = HealthServer(status=500)
    url = staging.start()
    try:
        with_rehearsal(incident, f'health = ["{url}"]').close()
        assert main(["rehearse", "prod", "--config", config]) == 1
        out = capsys.readouterr().out
        assert "Rehearsal #2 of prod FAILED" in out and url in out
    finally:
        staging.stop()
    assert main(["rehearse", "nope", "--config", config]) == 2
    assert "unknown environment 'nope'" in capsys.readouterr().err


def test_slash_rehearse_acks_at_once_and_posts_the_result_with_each_step_in_its_thread(
    slack: SlackWorkspace, incident: Incident, services: Services
) -> None:
    before = World.of(incident)
    response = slack.slash(ALICE, "rehearse prod")
    assert response.status_code == 200 and "rehearsing the rollback of prod" in response.text

    header = slack.latest()
    shown = json.dumps(header.blocks) + header.text
    assert "Rehearsal of prod" in shown and "passed" in shown and ALICE in shown
    thread = slack.thread(header)
    titles = [step.title for step in STEPS]
    steps = [m for m in thread if any(m.text.startswith((f"✅ {t}", f"⏭ {t}")) for t in titles)]
    assert len(steps) == len(STEPS), [m.text[:40] for m in thread]
    result = json.dumps(thread[-1].blocks)
    assert "Each step" in result and "Stood in for production" in result and "Cleanup" in result
    assert slack.api.messages(STATUS) == []  # a rehearsal tells no stakeholder
    check = services.store.last_check("prod", kind="rehearsal")
    assert check is not None and check.status == "passed" and check.source == "slack"
    assert check.requested_by == ALICE
    assert World.of(incident) == before


@pytest.mark.incident_config(extra_env='requesters = ["S0ONCALL"]\n')
def test_slash_rehearse_needs_the_permission_to_ask_for_a_rollback(slack: SlackWorkspace, services: Services) -> None:
    slack.slash(MALLORY, "rehearse prod")
    assert any("not among the people who may request a rollback of prod" in t for t in slack.ephemeral_texts(MALLORY))
    assert services.store.checks("prod", kind="rehearsal") == []
    assert slack.api.messages(INCIDENT) == []

    response = slack.slash(MALLORY, "rehearse")
    assert "takes one environment name" in response.text
    slack.slash(ALICE, "rehearse prod")  # alice is on call (S0ONCALL)
    check = services.store.last_check("prod", kind="rehearsal")
    assert check is not None and check.status == "passed", check and check.failure


# --- the parts -------------------------------------------------------------------------------------------


def test_scratch_branches_are_made_and_removed_with_leases_and_only_under_rollback_bot(tmp_path: Path) -> None:
    sandbox = build_sandbox_repo(tmp_path / "sandbox")
    repo = GitRepo(repo=str(sandbox.clone), remote="production", branch="release", work_dir=tmp_path / "work")
    bad, good = sandbox.bad, sandbox.good
    with pytest.raises(BadRequest, match="not a scratch branch"):
        repo.create_branch_at(bad, "release")
    with pytest.raises(BadRequest, match="not a scratch branch"):
        repo.delete_remote_branch("release")
    assert "created production/rollback-bot/x" in repo.create_branch_at(bad, "rollback-bot/x")
    assert "already existed" in repo.create_branch_at(bad, "rollback-bot/x")  # a retry
    with pytest.raises(GitError, match="already exists"):
        repo.create_branch_at(good, "rollback-bot/x")  # somebody's: never taken over
    said = repo.delete_remote_branch("rollback-bot/x")
    assert said is not None and "deleted production/rollback-bot/x" in said
    assert repo.delete_remote_branch("rollback-bot/x") is None  # idempotent
    # A remote-tracking ref left in the clone (a bare clone's fetch, a crash) goes even once the branch is gone.
    git(sandbox.clone, "update-ref", "refs/remotes/production/rollback-bot/y", bad)
    assert repo.delete_remote_branch("rollback-bot/y") == "removed the local ref refs/remotes/production/rollback-bot/y"
    assert not [r for r in {**refs(sandbox.bare), **refs(sandbox.clone)} if "rollback-bot" in r]
    with pytest.raises(BadRequest, match="backups of deployable branches are kept"):
        repo.delete_backup_ref("refs/rollback-backup/release/20261203")


def test_a_stand_in_never_falls_back_to_the_environments_own_database(services: Services) -> None:
    settings = services.config.environment("prod")
    with pytest.raises(ValueError):
        services.with_stand_in(StandIn("prod", settings))
    view = services.with_stand_in(StandIn("prod@r", settings))  # same url_env as prod, and it is set
    assert os.environ.get(TEST_URL_ENV)
    with pytest.raises(PreconditionFailed, match="no database stands in for prod@r"):
        view.database("prod@r")
    assert "prod@r" not in services.config.settings.environments  # the services it came from do not see it
    view.close()
    assert services.store.list_runs() == []  # the store is still open: a view closes nothing


def test_only_a_stand_ins_plan_skips_approval(services: Services) -> None:
    plan = lifecycle.make_request_plan(services, RollbackRequest(env="prod", requested_by=ALICE, db="none"))
    with pytest.raises(NotAllowed, match="needs an approver"):
        lifecycle.propose_rehearsal(services, plan, source="cli")
    assert services.store.list_runs() == []
