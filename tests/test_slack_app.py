"""The Slack app, driven over real HTTP with requests signed as Slack signs them.

Each test is an incident in #inc-checkout-500s: alice (on call) asks, carol (incident commander)
approves, mallory (not an approver) tries things she should not.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from bot.engine.steps import STEPS
from bot.services import Services
from sandbox.repo import add_reject_hook, git
from sandbox.scenario import Incident, database_contents
from sandbox.slack_harness import INCIDENT, STATUS, SlackWorkspace

ALICE, CAROL, DAVE, MALLORY = "U0ALICE", "U0CAROL", "U0DAVE", "U0MALLORY"


def remote_head(incident: Incident) -> str:
    return git(Path(incident.repo.remote_url), "rev-parse", f"refs/heads/{incident.repo.branch}")


def text_of(message: object) -> str:
    return json.dumps(getattr(message, "blocks", None) or []) + getattr(message, "text", "")


def test_request_plan_refused_self_approval_approval_thread_and_checklist(
    slack: SlackWorkspace, incident: Incident, services: Services
) -> None:
    response = slack.slash(ALICE, "prod --code revert")
    assert response.status_code == 200
    plan = slack.latest()
    shown = text_of(plan)
    assert incident.repo.bad[:7] in shown and incident.repo.good[:7] in shown
    assert "DROP COLUMN" in shown and "20261120_drop_legacy" in shown  # the migration risk, verbatim
    assert "pre-rollback" in shown and ALICE in shown
    head = remote_head(incident)

    slack.click(ALICE, "Confirm", message=plan)  # two-person rule: alice asked, so she cannot confirm
    assert any("two-person" in t for t in slack.ephemeral_texts(ALICE))
    slack.click(MALLORY, "Confirm", message=plan)
    assert any("not an approver" in t for t in slack.ephemeral_texts(MALLORY))
    assert remote_head(incident) == head and not slack.thread(plan)

    # The plan replaces the live database, so carol must type the environment's name.
    slack.click(CAROL, "Confirm", message=plan)
    slack.type_confirmation(CAROL, "staging")
    assert remote_head(incident) == head  # the wrong name confirms nothing
    slack.type_confirmation(CAROL, "prod")

    run = services.store.list_runs()[0]
    assert run.status == "succeeded", run.error
    assert run.approved_by == CAROL
    assert database_contents(incident.db_url)["orders"][0][-1] == "legacy_ref"  # the dropped column is back
    header = slack.api.message(INCIDENT, plan.ts)
    assert "Confirm" not in text_of(header) and CAROL in text_of(header)
    thread = slack.thread(plan)
    titles = [step.title for step in STEPS]
    steps = [m for m in thread if any(m.text.startswith((f"✅ {t}", f"⏭ {t}")) for t in titles)]
    # One message per step in its final state: a step's interim states are updated in place, or coalesced
    # into that one message when the outbox still held them (only the latest state of a message is sent).
    assert len(steps) == 7, [m.text[:40] for m in thread]
    thread_text = "\n".join(text_of(m) for m in thread)
    for done in ("Safety checks", "Pre-rollback dump", "Code rollback", "Database restore", "Health checks"):
        assert done in thread_text
    assert "✅" in thread_text and "⏭" in thread_text  # flags were skipped: none configured
    checklist = next(m for m in thread if '"text": "Done"' in text_of(m))
    assert "Post-rollback checklist" in text_of(checklist) or "Immediate" in text_of(checklist)

    slack.click(DAVE, "Done", message=checklist)
    done = [i for i in services.store.checklist(run.id) if i.done_by]
    assert [i.done_by for i in done] == [DAVE]
    assert DAVE in text_of(slack.api.message(INCIDENT, checklist.ts))

    updates = slack.api.messages(STATUS)
    assert updates and "roll" in updates[0].text.lower()
    assert not any(
        len(word) == 40 and all(c in "0123456789abcdef" for c in word) for u in updates for word in u.text.split()
    )


def test_a_double_click_starts_exactly_one_run(slack: SlackWorkspace, incident: Incident, services: Services) -> None:
    slack.slash(ALICE, "prod --db none")
    plan = slack.latest()
    first = slack.click(CAROL, "Confirm", message=plan, settle=False)
    second = slack.click(CAROL, "Confirm", message=plan, settle=False)
    assert first.status_code == second.status_code == 200
    slack.settle()
    runs = services.store.list_runs()
    assert len(runs) == 1 and runs[0].status == "succeeded"
    assert all(s.attempts <= 1 for s in services.store.steps(runs[0].id))
    assert (
        git(Path(incident.repo.remote_url), "rev-list", "--count", f"{incident.repo.bad}..{remote_head(incident)}")
        == "1"
    )


def test_a_failure_offers_retry_skip_abort_to_approvers(
    slack: SlackWorkspace, incident: Incident, services: Services
) -> None:
    hook = add_reject_hook(Path(incident.repo.remote_url), message="release branch is frozen by the change board")
    slack.slash(ALICE, "prod --db none")
    plan = slack.latest()
    slack.click(CAROL, "Confirm", message=plan)
    run = services.store.list_runs()[0]
    assert run.status == "failed" and run.current_step == "code"
    failure = next(m for m in slack.thread(plan) if "Where things stand" in text_of(m))
    assert "Retry" in text_of(failure) and "Abort" in text_of(failure)
    assert "frozen by the change board" in text_of(failure)

    slack.click(MALLORY, "Retry", message=failure)
    assert any("only approvers" in t for t in slack.ephemeral_texts(MALLORY))
    hook.unlink()  # the change board lifts the freeze
    slack.click(CAROL, "Retry", message=failure)
    assert services.store.get_run(run.id).status == "succeeded"
    assert services.store.lock_for("prod") is None


def test_an_app_still_unhealthy_after_the_rollback_ends_it_done_unhealthy(
    slack: SlackWorkspace, incident: Incident, services: Services
) -> None:
    incident.health.status = 503
    slack.slash(ALICE, "prod --db none")
    plan = slack.latest()
    slack.click(CAROL, "Confirm", message=plan)
    slack.settle()
    run = services.store.list_runs()[0]
    assert run.status == "unhealthy" and services.store.lock_for("prod") is None
    assert any("done, unhealthy" in text_of(m) for m in slack.thread(plan))
    assert any("not answering normally yet" in text_of(m) for m in slack.api.messages(STATUS))


def test_rollback_outside_an_incident_channel_is_refused(slack: SlackWorkspace, services: Services) -> None:
    slack.slash(ALICE, "prod", channel="C0GENERAL")
    assert any("incident channels" in t for t in slack.ephemeral_texts(ALICE, channel="C0GENERAL"))
    assert not services.store.list_runs() and not slack.api.messages("C0GENERAL")


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("prod --code yolo", "--code 'yolo' is not one of"),
        ("prod to not-a-sha", "not a commit SHA"),
        ("nosuchenv", "unknown environment"),
        ("prod --frobnicate", "I don't understand"),
        ('prod "unbalanced', "unbalanced quotes"),
    ],
)
def test_bad_input_gets_a_clear_answer(slack: SlackWorkspace, text: str, answer: str) -> None:
    response = slack.slash(ALICE, text)
    assert response.status_code == 200
    texts = slack.ephemeral_texts(ALICE)
    assert any(answer in t for t in texts), texts


def test_help_status_history_and_the_modal(slack: SlackWorkspace, services: Services) -> None:
    slack.slash(ALICE, "help")
    assert any("/rollback ENV" in t for t in slack.ephemeral_texts(ALICE))
    slack.slash(ALICE, "status")
    assert any("No rollback is running" in t for t in slack.ephemeral_texts(ALICE))
    slack.slash(ALICE, "")
    modal = slack.api.open_view_for(ALICE)
    assert modal is not None and modal.view["callback_id"] == "rollback_options"
    slack.slack.view_submission(
        user_id=ALICE,
        callback_id=modal.view["callback_id"],
        state_values={
            "env": {"env": {"type": "static_select", "selected_option": {"value": "prod"}}},
            "code": {"code": {"type": "static_select", "selected_option": {"value": "default"}}},
            "options": {"options": {"type": "checkboxes", "selected_options": [{"value": "dry_run"}]}},
        },
    )
    slack.settle()
    runs = services.store.list_runs()
    assert len(runs) == 1 and runs[0].dry_run and runs[0].requested_by == ALICE
    assert runs[0].plan["code"] == "revert"  # "the environment's default" picks the configured strategy
    slack.slash(ALICE, "history")
    assert any(runs[0].id in t for t in slack.ephemeral_texts(ALICE))
    slack.slash(ALICE, "status")  # a dry run is recorded "planned" but waits for no approver
    assert "No rollback is running" in slack.ephemeral_texts(ALICE)[-1]


def test_app_home_shows_runs_and_environments(slack: SlackWorkspace) -> None:
    slack.slash(ALICE, "prod --dry-run")
    slack.slack.app_home_opened(user_id=CAROL)
    slack.settle()
    home = slack.api.render_home(CAROL)
    assert "prod" in home and "production/release" in home


def test_forged_and_replayed_requests_get_401_and_malformed_ones_no_5xx(slack: SlackWorkspace) -> None:
    body = b"command=%2Frollback&text=prod&user_id=U0ALICE&channel_id=C0INC"
    form = "application/x-www-form-urlencoded"
    assert slack.slack.post(body, form, signature="v0=" + "0" * 64).status_code == 401
    assert slack.slack.post(body, form, timestamp=int(time.time()) - 6 * 60).status_code == 401
    for garbage in (b"payload=%7Bnot-json", b"payload=%7B%7D", b"\xff\xfe\x00", b"", b"command=%2Funknown"):
        assert slack.slack.post(garbage, form).status_code < 500
    assert slack.slack.post(b'{"type": "nonsense"}', "application/json").status_code < 500
    health = __import__("requests").get(slack.app_url.replace("/slack/events", "/healthz"), timeout=5)
    assert health.status_code == 200 and health.json() == {"ok": True}


def test_no_secret_reaches_slack(
    slack: SlackWorkspace, incident: Incident, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "Sup3r-s3cret-pw"
    monkeypatch.setenv("RB_TEST_DATABASE_URL", incident.db_url.replace("postgres@", f"postgres:{secret}@"))
    from bot.redact import register_secret

    register_secret(incident.db_url.replace("postgres@", f"postgres:{secret}@"))
    slack.slash(ALICE, "prod")
    plan = slack.latest()
    slack.click(CAROL, "Confirm", message=plan)
    slack.type_confirmation(CAROL, "prod")
    sent = json.dumps([c.args for c in slack.api.calls])
    assert secret not in sent and "xoxb-test-token" not in sent


@pytest.mark.incident_config(update_every="1s", remind_after=("1s", "2s"), health_interval="1s")
def test_stakeholders_hear_while_it_runs_and_open_items_are_reminded(
    slack: SlackWorkspace, incident: Incident, services: Services
) -> None:
    incident.health.answer_next(503, 503)  # the app takes a few seconds to come back after the rollback
    slack.slash(ALICE, "prod --db none")
    plan = slack.latest()
    slack.click(CAROL, "Confirm", message=plan)
    assert services.store.list_runs()[0].status == "succeeded"
    updates = [m.text for m in slack.api.messages(STATUS)]
    assert any("in progress" in u.lower() for u in updates), updates  # the periodic update while running
    assert "complete" in updates[-1].lower()

    deadline = time.monotonic() + 15
    reminders: list[str] = []
    while time.monotonic() < deadline and len(reminders) < 2:
        time.sleep(0.2)
        reminders = [text_of(m) for m in slack.thread(plan) if "still open" in m.text]
    assert len(reminders) == 2, reminders
    assert "<!subteam^S0ONCALL>" in reminders[0] and "Monitor application logs" in reminders[0]
    assert "Short-term" in reminders[0] and "Medium-term" in reminders[1]
    assert "S0DBA" not in reminders[0]  # no database restore in this run: the DBAs are not paged
