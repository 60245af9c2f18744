"""Locks handed over: an approver takes over a run whose requester is gone, or breaks a lock whose holder is gone.

Through the real Slack app (signed requests, the Web API stand-in) and from the terminal. alice asked
for the rollback and is gone; carol (incident commander) and dave (in the on-call group) are approvers;
mallory is nobody.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bot.cli import main
from bot.engine import lifecycle
from bot.engine.plan import RollbackRequest
from bot.process_identity import current_process
from bot.services import Services
from bot.store import RunRecord, now
from sandbox.repo import add_reject_hook
from sandbox.scenario import Incident
from sandbox.slack_api import StoredMessage
from sandbox.slack_harness import INCIDENT, SlackWorkspace
from tests.fixtures.waiting import eventually
from tests.test_slack_app import ALICE, CAROL, DAVE, MALLORY, text_of

REASON = "alice went offline mid-incident and does not answer her phone"


def audit(services: Services, run_id: str) -> dict[str, str]:
    return {entry.action: entry.detail for entry in services.store.audit_trail(run_id=run_id)}


def stuck_in_the_code_step(services: Services, run_id: str, *, alive: bool) -> None:
    """The run was started, got past the dump, and is in the code step: its process alive, or dead long ago."""
    store = services.store
    store.acquire_lock("prod", run_id=run_id, holder=ALICE)
    assert store.transition(run_id, from_=["planned"], to="running", started_at=now(), approved_by=CAROL)
    store.init_steps(run_id, ["safety", "pre_dump", "code", "database", "flags", "health", "checklist"])
    for step in ("safety", "pre_dump"):
        store.claim_step(run_id, step)
        store.finish_step(run_id, step, status="ok", summary="done before the crash")
    store.claim_step(run_id, "code")
    if alive:  # this very process runs it, heartbeat fresh
        store.update_run(run_id, heartbeat_at=now(), **current_process().columns())
    else:  # no process on record, and no heartbeat for ten minutes: interrupted
        store.update_run(run_id, heartbeat_at=now() - timedelta(minutes=10))


# --- Slack ------------------------------------------------------------------------------------------------


def test_an_approver_takes_over_a_failed_run_and_retries_it(
    slack: SlackWorkspace, incident: Incident, services: Services
) -> None:
    hook = add_reject_hook(Path(incident.repo.remote_url), message="release branch is frozen")
    slack.slash(ALICE, "prod --db none")
    plan = slack.latest()
    slack.click(CAROL, "Confirm", message=plan)
    run = services.store.list_runs()[0]
    assert run.status == "failed" and services.store.lock_for("prod").holder == ALICE  # type: ignore[union-attr]
    failure = next(m for m in slack.thread(plan) if "Where things stand" in text_of(m))
    assert "Take over" in text_of(failure)

    slack.click(MALLORY, "Take over", message=failure)
    assert any("only approvers of prod can take over" in t for t in slack.ephemeral_texts(MALLORY))
    slack.click(CAROL, "Take over", message=failure)
    answer = slack.fill_modal(CAROL, "rollback_take_over", {"reason": "gone"})
    assert answer.json()["response_action"] == "errors" and "at least 10 characters" in answer.text
    slack.fill_modal(CAROL, "rollback_take_over", {"reason": REASON})

    assert services.store.lock_for("prod").holder == CAROL  # type: ignore[union-attr]
    assert audit(services, run.id)["run.taken_over"] == f"from {ALICE}: {REASON}"
    assert any("took this rollback over from" in text_of(m) and REASON in text_of(m) for m in slack.thread(plan))
    assert "Taken over by" in text_of(slack.api.message(INCIDENT, plan.ts))
    slack.click(CAROL, "Take over", message=failure)  # twice is once
    assert any("already yours" in t for t in slack.ephemeral_texts(CAROL))

    hook.unlink()
    slack.click(CAROL, "Retry", message=failure)
    assert services.store.get_run(run.id).status == "succeeded" and services.store.lock_for("prod") is None


def test_an_interrupted_run_is_taken_over_from_its_announcement(slack: SlackWorkspace, services: Services) -> None:
    slack.slash(ALICE, "prod --db none")
    plan = slack.latest()
    run = services.store.list_runs()[0]
    stuck_in_the_code_step(services, run.id, alive=False)
    notice = eventually(lambda: [m for m in slack.thread(plan) if "interrupted" in m.text])
    assert isinstance(notice, list)
    slack.click(DAVE, "Take over", message=notice[0])
    slack.fill_modal(DAVE, "rollback_take_over", {"reason": "alice's laptop died with the run on it"})
    assert services.store.lock_for("prod").holder == DAVE  # type: ignore[union-attr]
    slack.click(DAVE, "Retry", message=notice[0])
    assert services.store.get_run(run.id).status == "succeeded"


def refused_for_the_lock(slack: SlackWorkspace, services: Services) -> tuple[StoredMessage, RunRecord]:
    """alice's new plan, confirmed by carol, refused because the crashed run still holds prod's lock."""
    slack.slash(ALICE, "prod --db none")
    refused = slack.latest()
    slack.click(CAROL, "Confirm", message=refused)
    assert any("already in progress" in t for t in slack.ephemeral_texts(CAROL))
    header = slack.api.message(INCIDENT, refused.ts)
    assert "refused" in text_of(header).lower() and "Break lock" in text_of(header)
    return header, services.store.list_runs()[0]


def test_an_approver_breaks_the_lock_of_a_crashed_run_and_rolls_back(slack: SlackWorkspace, services: Services) -> None:
    slack.slash(ALICE, "prod --db none")
    crashed = services.store.list_runs()[0]
    stuck_in_the_code_step(services, crashed.id, alive=False)
    header, refused = refused_for_the_lock(slack, services)
    assert refused.status == "refused"

    slack.click(MALLORY, "Break lock", message=header)
    assert any("only approvers of prod can break its lock" in t for t in slack.ephemeral_texts(MALLORY))
    slack.click(CAROL, "Break lock", message=header)
    slack.fill_modal(CAROL, "rollback_break_lock", {"reason": REASON})

    assert services.store.lock_for("prod") is None
    assert services.store.get_run(crashed.id).status == "aborted"
    assert REASON in audit(services, crashed.id)["lock.broken"]
    assert "the process running it is gone" in audit(services, crashed.id)["lock.broken"]
    assert any("prod is free" in text_of(m) for m in slack.thread(header))
    assert any("run prod-" in t and "was aborted" in t for t in slack.ephemeral_texts(CAROL))

    slack.slash(ALICE, "prod --db none")
    slack.click(CAROL, "Confirm", message=slack.latest())
    assert services.store.list_runs()[0].status == "succeeded"


def test_the_lock_of_a_live_run_is_never_broken(slack: SlackWorkspace, services: Services) -> None:
    slack.slash(ALICE, "prod --db none")
    live = services.store.list_runs()[0]
    stuck_in_the_code_step(services, live.id, alive=True)
    header, _refused = refused_for_the_lock(slack, services)
    slack.click(CAROL, "Break lock", message=header)
    assert any("its holder is not gone" in t and "is running" in t for t in slack.ephemeral_texts(CAROL))
    assert slack.api.open_view_for(CAROL) is None
    assert services.store.lock_for("prod").run_id == live.id  # type: ignore[union-attr]
    assert services.store.get_run(live.id).status == "running"


# --- the terminal -----------------------------------------------------------------------------------------


def cli(incident: Incident, *args: str) -> int:
    return main([*args, "--config", str(incident.config_path)])


def test_takeover_from_the_terminal(incident: Incident, services: Services, capsys: pytest.CaptureFixture[str]) -> None:
    hook = add_reject_hook(Path(incident.repo.remote_url), message="release branch is frozen")
    assert cli(incident, "run", "prod", "--db", "none", "--force", "--as", ALICE) == 1
    run = services.store.list_runs()[0]
    assert run.status == "failed"
    assert cli(incident, "takeover", run.id, "--reason", "gone", "--as", CAROL) == 2
    assert "at least 10 characters" in capsys.readouterr().err
    assert cli(incident, "takeover", run.id, "--reason", REASON, "--as", CAROL) == 0
    assert f"is yours now (it was {ALICE}'s)" in capsys.readouterr().out
    assert services.store.lock_for("prod").holder == CAROL  # type: ignore[union-attr]
    assert audit(services, run.id)["run.taken_over"] == f"from {ALICE}: {REASON}"
    assert cli(incident, "takeover", run.id, "--reason", REASON, "--as", CAROL) == 2
    assert "already yours" in capsys.readouterr().err

    hook.unlink()
    assert cli(incident, "resume", run.id, "--retry") == 0
    assert cli(incident, "takeover", run.id, "--reason", REASON, "--as", DAVE) == 2  # succeeded: nothing to take
    assert "cannot be taken over" in capsys.readouterr().err


def test_break_lock_from_the_terminal(
    incident: Incident, services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(incident, "break-lock", "prod", "--reason", REASON) == 2
    assert "prod is not locked" in capsys.readouterr().err

    request = RollbackRequest(env="prod", requested_by=ALICE, db="none", source="cli")
    live, _plan = lifecycle.propose(services, request)
    stuck_in_the_code_step(services, live.id, alive=True)
    assert cli(incident, "break-lock", "prod", "--reason", REASON) == 2
    assert "its holder is not gone" in capsys.readouterr().err
    assert services.store.lock_for("prod").run_id == live.id  # type: ignore[union-attr]

    services.store.update_run(live.id, pid=None, heartbeat_at=now() - timedelta(minutes=10))  # now it died
    assert cli(incident, "break-lock", "prod", "--reason", "x") == 2  # a reason is needed
    assert cli(incident, "break-lock", "prod", "--reason", REASON) == 0
    out = capsys.readouterr().out
    assert "the process running it is gone" in out and "prod is free" in out
    assert services.store.get_run(live.id).status == "aborted" and services.store.lock_for("prod") is None
    assert REASON in audit(services, live.id)["lock.broken"]

    # A run that ended but died before releasing its lock (between the two writes) leaves an orphan lock.
    orphan, _plan = lifecycle.propose(services, request)
    services.store.acquire_lock("prod", run_id=orphan.id, holder=ALICE)
    assert services.store.transition(orphan.id, from_=["planned"], to="succeeded", finished_at=now())
    assert cli(incident, "run", "prod", "--db", "none", "--force") == 2  # refused: prod is locked
    assert "already in progress" in capsys.readouterr().err
    assert cli(incident, "break-lock", "prod", "--reason", REASON) == 0
    assert "ended (succeeded) without releasing it" in capsys.readouterr().out
    assert services.store.get_run(orphan.id).status == "succeeded"
    assert cli(incident, "run", "prod", "--db", "none", "--force") == 0
