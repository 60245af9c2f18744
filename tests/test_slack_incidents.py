"""More incidents in Slack: stale and edited plans, group approvers, rate limits, restarts, retries."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import requests

from bot.cli import main
from bot.services import Services
from bot.store import now
from sandbox.scenario import Incident
from sandbox.serving import start_serving
from sandbox.slack_api import SlackApiStandIn
from sandbox.slack_harness import INCIDENT, SlackWorkspace, sandbox_slack_api
from sandbox.slack_signing import SlackRequestSender
from tests.test_slack_app import ALICE, CAROL, DAVE, MALLORY, text_of


@pytest.fixture
def slack(services: Services) -> Iterator[SlackWorkspace]:
    with SlackWorkspace(services) as workspace:
        yield workspace


def test_an_expired_plan_cannot_be_confirmed(slack: SlackWorkspace, services: Services) -> None:
    slack.slash(ALICE, "prod --db none")
    plan = slack.latest()
    run = services.store.list_runs()[0]
    services.store.update_run(run.id, created_at=now() - timedelta(minutes=20))  # plans live 15 minutes
    slack.click(CAROL, "Confirm", message=plan)
    assert any("expired" in t for t in slack.ephemeral_texts(CAROL))
    assert services.store.get_run(run.id).status == "expired"
    header = slack.api.message(INCIDENT, plan.ts)
    assert "expired" in text_of(header).lower() and '"Confirm' not in text_of(header)


def test_edit_replaces_the_plan_and_the_old_buttons_stop_working(slack: SlackWorkspace, services: Services) -> None:
    slack.slash(ALICE, "prod")
    old = slack.latest()
    slack.click(ALICE, "Edit", message=old)
    modal = slack.api.open_view_for(ALICE, callback_id="rollback_options")
    assert modal is not None
    slack.slack.view_submission(
        user_id=ALICE,
        callback_id="rollback_options",
        view_id=modal.id,
        state_values={
            "env": {"env": {"type": "static_select", "selected_option": {"value": "prod"}}},
            "db": {"db": {"type": "static_select", "selected_option": {"value": "none"}}},
        },
    )
    slack.settle()
    new = slack.latest()
    assert new.ts != old.ts
    runs = services.store.list_runs()
    assert [r.status for r in runs] == ["planned", "cancelled"]
    assert runs[0].plan["database"]["action"] == "none"
    slack.click(CAROL, "Confirm", message=old)  # a stale button cannot approve the edited plan
    assert services.store.get_run(runs[1].id).status == "cancelled"
    assert services.store.get_run(runs[0].id).status == "planned"
    slack.click(CAROL, "Confirm", message=new)
    assert services.store.get_run(runs[0].id).status == "succeeded"


def test_a_member_of_an_approver_group_may_confirm(slack: SlackWorkspace, services: Services) -> None:
    slack.slash(ALICE, "prod --db none")
    slack.click(DAVE, "Confirm", message=slack.latest())  # dave is in S0ONCALL, an approver group
    run = services.store.list_runs()[0]
    assert run.status == "succeeded" and run.approved_by == DAVE
    assert slack.api.calls_to("usergroups.users.list")


def test_rate_limited_slack_calls_are_retried_after_retry_after(slack: SlackWorkspace) -> None:
    slack.api.rate_limit("chat.postMessage", times=2, retry_after=1)
    slack.slash(ALICE, "prod --dry-run")
    posts = slack.api.calls_to("chat.postMessage")
    assert [c.status for c in posts[:3]] == [429, 429, 200]
    assert posts[2].at - posts[1].at >= 0.9  # waited as Retry-After asked
    assert "Rollback plan" in text_of(slack.latest())


def test_an_interrupted_run_is_announced_after_a_restart_and_can_be_aborted(
    services: Services, incident: Incident
) -> None:
    api = sandbox_slack_api()
    api.start()
    with SlackWorkspace(services, api=api) as slack:
        slack.slash(ALICE, "prod --db none")
        plan = slack.latest()
    run = services.store.list_runs()[0]
    # The bot died during the code step: the journal says "running", the heartbeat stopped long ago.
    services.store.acquire_lock("prod", run_id=run.id, holder=ALICE)
    assert services.store.transition(run.id, from_=["planned"], to="running", started_at=now())
    services.store.init_steps(run.id, ["safety", "pre_dump", "code", "database", "flags", "health", "checklist"])
    for step in ("safety", "pre_dump"):
        services.store.claim_step(run.id, step)
        services.store.finish_step(run.id, step, status="ok", summary="done before the crash")
    services.store.claim_step(run.id, "code")
    services.store.update_run(run.id, heartbeat_at=now() - timedelta(minutes=10))

    try:
        with SlackWorkspace(services, api=api) as restarted:  # a new process starts; Slack kept the thread
            restarted.settle()
            notices = [m for m in restarted.thread(plan) if "interrupted" in m.text]
            assert len(notices) == 1
            assert "Retry" in text_of(notices[0]) and "Abort" in text_of(notices[0])
            restarted.click(CAROL, "Abort", message=notices[0])
        with SlackWorkspace(services, api=api) as again:  # a second restart does not announce it again
            again.settle()
            assert len([m for m in again.thread(plan) if "interrupted" in m.text]) == 1
    finally:
        api.stop()
    assert services.store.get_run(run.id).status == "aborted"
    assert services.store.lock_for("prod") is None


def test_slack_event_retries_are_not_handled_twice(slack: SlackWorkspace) -> None:
    slack.slack.app_home_opened(user_id=CAROL)
    slack.slack.app_home_opened(user_id=CAROL, retry_num=1, retry_reason="http_timeout")
    slack.settle()
    assert len(slack.api.calls_to("views.publish")) == 1


def test_serve_answers_slack_over_http_as_its_own_process(incident: Incident, tmp_path: Path) -> None:
    with SlackApiStandIn(channels={INCIDENT: "inc-checkout-500s"}) as api:
        env = {
            **os.environ,
            "SLACK_BOT_TOKEN": api.token,
            "SLACK_SIGNING_SECRET": "process-secret",
            "SLACK_API_URL": api.base_url,
        }
        server, base = start_serving(incident.config_path, env=env, log=tmp_path / "serve.log", cwd=tmp_path)
        try:
            sender = SlackRequestSender(app_url=f"{base}/slack/events", signing_secret="process-secret", api=api)
            answer = sender.slash_command(user_id=ALICE, text="help", channel_id=INCIDENT)
            assert answer.status_code == 200 and "/rollback ENV" in answer.text
            forged = SlackRequestSender(app_url=f"{base}/slack/events", signing_secret="wrong", api=api)
            assert forged.slash_command(user_id=ALICE, text="help", channel_id=INCIDENT).status_code == 401
            assert requests.get(f"{base}/slack/events", timeout=5).status_code == 405
        finally:
            server.terminate()
            server.wait(timeout=10)


def test_socket_mode_without_an_app_token_is_a_clear_error(
    incident: Incident, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLACK_APP_TOKEN", raising=False)
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-x")
    assert main(["socket", "--config", str(incident.config_path)]) == 2
    assert "SLACK_APP_TOKEN must be set" in capsys.readouterr().err


def test_a_private_channel_name_slack_hides_is_looked_up(slack: SlackWorkspace, services: Services) -> None:
    slack.slack.slash_command(user_id=ALICE, text="prod --dry-run", channel_id=INCIDENT, channel_name="privategroup")
    slack.settle()
    assert slack.api.calls_to("conversations.info")
    assert services.store.list_runs()  # inc-checkout-500s is an incident channel: the plan was made
    slack.slack.slash_command(user_id=ALICE, text="prod", channel_id="C0GENERAL", channel_name="privategroup")
    slack.settle()
    assert any("incident channels" in t for t in slack.ephemeral_texts(ALICE, channel="C0GENERAL"))
    assert len(services.store.list_runs()) == 1


@pytest.mark.incident_config(with_flags=True)
def test_flags_go_off_in_slack_and_an_approver_can_put_them_back(
    slack: SlackWorkspace, incident: Incident, services: Services
) -> None:
    assert incident.flags is not None and incident.flags.flag_on("new-pricing")
    slack.slash(ALICE, "prod --db none")
    plan = slack.latest()
    assert "new-pricing" in text_of(plan)
    slack.click(CAROL, "Confirm", message=plan)
    assert services.store.list_runs()[0].status == "succeeded"
    assert not incident.flags.flag_on("new-pricing")
    undo = next(m for m in slack.thread(plan) if "Undo flags" in text_of(m))
    slack.click(MALLORY, "Undo flags", message=undo)
    assert any("only approvers" in t for t in slack.ephemeral_texts(MALLORY))
    assert not incident.flags.flag_on("new-pricing")
    slack.click(CAROL, "Undo flags", message=undo)
    assert incident.flags.flag_on("new-pricing")
    assert "put back" in text_of(slack.api.message(INCIDENT, undo.ts))


@pytest.mark.incident_config(plan_expires_after="1s")
def test_a_plan_nobody_approves_expires_on_its_own(slack: SlackWorkspace, services: Services) -> None:
    slack.slash(ALICE, "prod --dry-run")
    plan = slack.latest()
    run = services.store.list_runs()[0]
    deadline = time.monotonic() + 10
    header = text_of(plan)
    while time.monotonic() < deadline and "expired" not in header.lower():  # the scheduler's thread updates it
        time.sleep(0.1)
        header = text_of(slack.api.message(INCIDENT, plan.ts))
    assert services.store.get_run(run.id).status == "expired"
    assert "expired" in header.lower() and '"Confirm' not in header


def test_rollback_cancel_withdraws_the_waiting_plan(slack: SlackWorkspace, services: Services) -> None:
    slack.slash(ALICE, "prod --dry-run")
    slack.settle()
    slack.slash(ALICE, "cancel")  # a dry run waits for nobody: it is not the plan to cancel
    slack.settle()
    assert any("There is no plan waiting" in t for t in slack.ephemeral_texts(ALICE))
    assert services.store.list_runs()[0].status == "planned"
    slack.slash(ALICE, "prod")
    plan = slack.latest()
    slack.slash(ALICE, "cancel")
    run = services.store.list_runs()[0]
    assert run.status == "cancelled"
    assert any("nothing was changed" in t for t in slack.ephemeral_texts(ALICE))
    header = text_of(slack.api.message(INCIDENT, plan.ts))
    assert "cancel" in header.lower() and '"Confirm' not in header
    slack.click(CAROL, "Confirm", message=plan)  # a stale button on a cancelled plan does nothing
    assert services.store.get_run(run.id).status == "cancelled"
