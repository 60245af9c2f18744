"""Break-glass: when no approver answers in time, a listed requester runs their own rollback alone.

Through the real Slack app (signed requests, the Web API stand-in) and from the terminal. alice is on
call and listed in `break_glass`; carol (incident commander) and dave are approvers; mallory is nobody.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import load_config
from bot.engine import lifecycle
from bot.engine.break_glass import REVIEW_ITEM, review_timer_key
from bot.engine.plan import RollbackRequest
from bot.engine.story import NoticeKind
from bot.engine.timed import schedule_expiry
from bot.errors import ConfigError
from bot.outbox import Outbox
from bot.services import Services
from bot.timers import TimerKind, Timers
from sandbox.scenario import Incident
from sandbox.slack_api import StoredMessage
from sandbox.slack_harness import INCIDENT, STATUS, SlackWorkspace, find_button
from tests.fixtures.waiting import eventually
from tests.test_slack_app import ALICE, CAROL, DAVE, MALLORY, text_of

BREAK_GLASS = 'break_glass = ["U0ALICE"]\nbreak_glass_after = "{after}"\nbreak_glass_remind_every = "{every}"\n'
OPEN_SOON = BREAK_GLASS.format(after="1s", every="1s")
JUSTIFICATION = "checkout is down for every customer; paged carol and the on-call group twice, no answer"


def has_button(message: StoredMessage, label: str) -> bool:
    try:
        find_button(message.blocks, label)
    except LookupError:
        return False
    return True


def actions(services: Services, run_id: str) -> dict[str, str]:
    return {entry.action: entry.detail for entry in services.store.audit_trail(run_id=run_id)}


@pytest.mark.incident_config(extra_env=OPEN_SOON)
def test_nobody_answers_so_alice_breaks_glass_and_an_approver_signs_the_review_off(
    slack: SlackWorkspace, services: Services
) -> None:
    slack.slash(ALICE, "prod --db none")
    plan = slack.latest()
    assert not has_button(plan, "Break glass")  # not before break_glass_after has passed
    slack.click(ALICE, "Confirm", message=plan)
    assert any("two-person" in t for t in slack.ephemeral_texts(ALICE))

    # Nobody confirms. After break_glass_after, the plan offers break-glass and the thread says who may.
    plan = eventually(lambda: (m := slack.api.message(INCIDENT, plan.ts)) and has_button(m, "Break glass") and m)
    assert isinstance(plan, StoredMessage)
    # The thread's notice is the outbox's next message after the plan's update: it may land a moment later.
    eventually(lambda: any("may now *break glass*" in text_of(m) for m in slack.thread(plan)))
    run = services.store.list_runs()[0]

    slack.click(MALLORY, "Break glass", message=plan)  # only the requester, and only if listed
    assert any("only the person who asked" in t for t in slack.ephemeral_texts(MALLORY))
    assert slack.api.open_view_for(MALLORY) is None

    slack.click(ALICE, "Break glass", message=plan)
    answer = slack.fill_modal(ALICE, "rollback_break_glass", {"justification": "urgent", "typed_env": "prod"})
    assert answer.json()["response_action"] == "errors" and "at least 20 characters" in answer.text
    answer = slack.fill_modal(ALICE, "rollback_break_glass", {"justification": JUSTIFICATION, "typed_env": "stg"})
    assert answer.json()["errors"] == {"typed_env": "Type prod exactly to confirm."}
    assert services.store.get_run(run.id).status == "planned"
    slack.fill_modal(ALICE, "rollback_break_glass", {"justification": JUSTIFICATION, "typed_env": "prod"})

    run = services.store.get_run(run.id)
    assert run.status == "succeeded" and run.approved_by == ALICE
    assert JUSTIFICATION in actions(services, run.id)["run.break_glass"]
    # Loud: top level in the incident channel and in the stakeholder channel, the contacts mentioned.
    loud = next(m for m in slack.api.messages(INCIDENT) if "BREAK GLASS" in text_of(m))
    assert (
        JUSTIFICATION in text_of(loud)
        and "<!subteam^S0ONCALL>" in text_of(loud)
        and "<!subteam^S0DBA>" in text_of(loud)
    )
    told = next(m for m in slack.api.messages(STATUS) if "without the usual approval" in text_of(m))
    assert "no approver answered in time" in text_of(told) and "<!subteam^S0ONCALL>" in text_of(told)
    header = slack.api.message(INCIDENT, plan.ts)
    assert "Break glass" in text_of(header) and not has_button(header, "Break glass")

    # The review is first on the checklist and reminded until an approver signs it off.
    checklist = next(m for m in slack.thread(plan) if '"text": "Done"' in text_of(m))
    assert text_of(checklist).index("Review this break-glass rollback") < text_of(checklist).index("Monitor")
    reminder = eventually(lambda: [m for m in slack.thread(plan) if "still needs an approver's review" in m.text])
    assert isinstance(reminder, list)
    slack.click(ALICE, "Sign off review", message=reminder[0])
    assert any("cannot review their own" in t for t in slack.ephemeral_texts(ALICE))
    slack.click(MALLORY, "Sign off review", message=reminder[0])
    assert any("only approvers of prod" in t for t in slack.ephemeral_texts(MALLORY))
    assert not next(i for i in services.store.checklist(run.id) if i.item_id == REVIEW_ITEM).done_at

    slack.click(CAROL, "Sign off review", message=reminder[0])
    review = next(i for i in services.store.checklist(run.id) if i.item_id == REVIEW_ITEM)
    assert review.done_by == CAROL and "break_glass.reviewed" in actions(services, run.id)
    assert any("signed off the review" in text_of(m) for m in slack.thread(plan))
    assert not [t for t in Timers(services.store).pending(run_id=run.id) if t.key == review_timer_key(run.id)]
    reminded = len([m for m in slack.thread(plan) if "still needs an approver's review" in m.text])
    time.sleep(2.5)
    assert len([m for m in slack.thread(plan) if "still needs an approver's review" in m.text]) == reminded


def test_break_glass_is_never_offered_where_the_environment_does_not_configure_it(
    slack: SlackWorkspace, services: Services
) -> None:
    slack.slash(ALICE, "prod --db none")
    plan = slack.latest()
    run = services.store.list_runs()[0]
    assert not [t for t in Timers(services.store).pending(run_id=run.id) if t.kind is TimerKind.BREAK_GLASS_OPEN]
    # A forged click (the button is never shown) is refused by the engine all the same.
    value = f"{run.id}|{run.plan_hash}"
    slack.slack.block_action(
        user_id=ALICE, action_id="rollback_break_glass", value=value, channel_id=INCIDENT, message_ts=plan.ts
    )
    slack.settle()
    assert any("break-glass is not available for prod" in t for t in slack.ephemeral_texts(ALICE))
    assert services.store.get_run(run.id).status == "planned" and not has_button(slack.latest(), "Break glass")


@pytest.mark.incident_config(extra_env=BREAK_GLASS.format(after="10m", every="15m"))
def test_break_glass_is_refused_before_its_time_and_to_requesters_not_listed(
    slack: SlackWorkspace, services: Services
) -> None:
    slack.slash(ALICE, "prod --db none")
    mine = services.store.list_runs()[0]
    slack.slack.block_action(
        user_id=ALICE,
        action_id="rollback_break_glass",
        value=f"{mine.id}|{mine.plan_hash}",
        channel_id=INCIDENT,
        message_ts=slack.latest().ts,
    )
    slack.settle()
    assert any("break-glass opens at" in t for t in slack.ephemeral_texts(ALICE))

    slack.slash(MALLORY, "prod --db none")  # anyone may ask; only the people listed may break glass
    theirs = services.store.list_runs()[0]
    assert theirs.requested_by == MALLORY
    assert not [t for t in Timers(services.store).pending(run_id=theirs.id) if t.kind is TimerKind.BREAK_GLASS_OPEN]
    slack.slack.block_action(
        user_id=MALLORY,
        action_id="rollback_break_glass",
        value=f"{theirs.id}|{theirs.plan_hash}",
        channel_id=INCIDENT,
        message_ts=slack.latest().ts,
    )
    slack.settle()
    assert any("not among the people who may break glass" in t for t in slack.ephemeral_texts(MALLORY))
    assert {r.status for r in services.store.list_runs()} == {"planned"}


# --- from the terminal --------------------------------------------------------------------------------------


def cli(incident: Incident, *args: str) -> int:
    return main([*args, "--config", str(incident.config_path)])


def slack_plan(services: Services, requested_by: str = ALICE) -> str:
    """A plan asked for in the incident channel, waiting for approval (as /rollback leaves it)."""
    request = RollbackRequest(env="prod", requested_by=requested_by, db="none", source="slack")
    record, _plan = lifecycle.propose(services, request, meta={"channel": INCIDENT})
    schedule_expiry(services, record.id)
    return record.id


@pytest.mark.incident_config(extra_env=BREAK_GLASS.format(after="2s", every="10m"))
def test_break_glass_from_the_terminal_follows_the_same_rules(
    incident: Incident, services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = slack_plan(services)
    assert cli(incident, "break-glass", run_id, "--justification", JUSTIFICATION, "--as", ALICE) == 2
    assert "break-glass opens at" in capsys.readouterr().err
    time.sleep(2.2)
    assert cli(incident, "break-glass", run_id, "--justification", JUSTIFICATION, "--as", DAVE) == 2
    assert "only the person who asked" in capsys.readouterr().err
    assert cli(incident, "break-glass", run_id, "--justification", "it is on fire", "--as", ALICE) == 2
    assert "at least 20 characters" in capsys.readouterr().err
    assert services.store.get_run(run_id).status == "planned"

    assert cli(incident, "break-glass", run_id, "--justification", JUSTIFICATION, "--as", ALICE) == 0
    run = services.store.get_run(run_id)
    assert run.status == "succeeded" and run.approved_by == ALICE
    assert JUSTIFICATION in actions(services, run_id)["run.break_glass"]
    loud = [row.notice for row in Outbox(services.store).due(limit=500) if row.notice.kind == NoticeKind.BREAK_GLASS]
    assert {n.channel for n in loud} == {INCIDENT, STATUS}
    assert all(n.payload["justification"] == JUSTIFICATION and "S0DBA" in n.payload["contacts"] for n in loud)
    kinds = [t.kind for t in Timers(services.store).pending(run_id=run_id)]
    assert TimerKind.BREAK_GLASS_REVIEW in kinds and TimerKind.BREAK_GLASS_OPEN not in kinds
    capsys.readouterr()

    assert cli(incident, "sign-off", run_id, "--as", ALICE) == 2
    assert "cannot review their own" in capsys.readouterr().err
    assert cli(incident, "sign-off", run_id, "--as", CAROL) == 0
    assert next(i for i in services.store.checklist(run_id) if i.item_id == REVIEW_ITEM).done_by == CAROL
    assert TimerKind.BREAK_GLASS_REVIEW not in [t.kind for t in Timers(services.store).pending(run_id=run_id)]


def test_break_glass_from_the_terminal_is_refused_where_it_is_not_configured(
    incident: Incident, services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = slack_plan(services)
    assert cli(incident, "break-glass", run_id, "--justification", JUSTIFICATION, "--as", ALICE) == 2
    assert "break-glass is not available for prod" in capsys.readouterr().err
    assert services.store.get_run(run_id).status == "planned"


# --- configuration ------------------------------------------------------------------------------------------

CONFIG = """
[bot]
plan_expires_after = "15m"

[environments.prod]
repo = "app"
approvers = ["S0ONCALL"]
{extra}
"""


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ('break_glass = ["S0ONCALL"]', "environments.prod.break_glass: 'S0ONCALL' is not a Slack user ID"),
        ('break_glass = ["U0ALICE"]\nbreak_glass_after = "15m"', "environments.prod.break_glass_after (15m 00s)"),
        ('break_glass_after = "soon"', "environments.prod.break_glass_after"),
    ],
)
def test_break_glass_settings_are_checked(tmp_path: Path, extra: str, problem: str) -> None:
    path = tmp_path / "rollback.toml"
    path.write_text(CONFIG.format(extra=extra))
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert problem in str(refused.value)


def test_break_glass_is_off_unless_configured(tmp_path: Path) -> None:
    path = tmp_path / "rollback.toml"
    path.write_text(CONFIG.format(extra=""))
    prod = load_config(path).settings.environments["prod"]
    assert prod.break_glass == [] and prod.break_glass_after == timedelta(minutes=10)
