"""Slack down: the rollback never waits for it, and the story arrives whole, once, in order, when it is back."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from bot.cli import main
from bot.engine.steps import STEPS
from bot.outbox import Outbox
from bot.services import Services
from sandbox.scenario import Incident
from sandbox.slack_harness import INCIDENT, STATUS, SlackWorkspace
from tests.fixtures.waiting import wait_for
from tests.test_slack_app import ALICE, CAROL, remote_head

STEP_TITLES = tuple(step.title for step in STEPS)


@pytest.fixture
def slack(services: Services) -> Iterator[SlackWorkspace]:
    with SlackWorkspace(services) as workspace:
        yield workspace


def posts_by_outbox_row(slack: SlackWorkspace) -> Counter[int]:
    """How many successful chat.postMessage calls carried each outbox row: exactly once is the rule."""
    counts: Counter[int] = Counter()
    for call in slack.api.calls_to("chat.postMessage"):
        if call.status != 200 or not call.ok:
            continue
        metadata = call.args.get("metadata")
        if isinstance(metadata, str):
            metadata = json.loads(metadata)
        if isinstance(metadata, dict):
            counts[int(metadata["event_payload"]["outbox_id"])] += 1
    return counts


@pytest.mark.parametrize("outage", [503, 429, 0], ids=["5xx", "429", "no answer"])
def test_a_rollback_runs_on_while_slack_refuses_everything_and_every_message_arrives_once(
    slack: SlackWorkspace, services: Services, incident: Incident, outage: int
) -> None:
    slack.slash(ALICE, "prod --db none")  # no typed confirmation: the click needs no views.open
    plan = slack.latest()
    head_before = remote_head(incident)
    slack.api.go_down(status=outage, retry_after=7 if outage == 0 else 1)  # 7 s: past the sender's 5 s timeout
    calls_before = len(slack.api.calls)
    started = time.monotonic()
    slack.click(CAROL, "Confirm", message=plan, settle=False)
    run_id = services.store.list_runs()[0].id
    wait_for("the run succeeds", lambda: services.store.get_run(run_id).status == "succeeded")
    took = time.monotonic() - started
    # The rollback finished while Slack answered nothing but errors: nothing it did waited for Slack.
    assert remote_head(incident) != head_before and Outbox(services.store).pending_count() > 10
    if outage:
        during = slack.api.calls[calls_before:]
        assert during and all(c.status == outage for c in during)  # Slack was tried, and took nothing
    else:  # no answer at all: the sender's calls timed out, and it kept the messages for later
        wait_for(
            "a send times out",
            lambda: any("timed out" in (error or "") for _, _, _, error in Outbox(services.store).rows(run_id=run_id)),
        )
    assert took < 60

    slack.api.come_back()
    slack.settle(timeout=120)
    thread = slack.thread(plan)
    step_messages = [m for m in thread if m.text.startswith(("✅", "⏭", "❌", "⏳"))]
    assert [next(t for t in STEP_TITLES if t in m.text) for m in step_messages] == list(STEP_TITLES)  # in order
    assert all(not m.text.startswith("⏳") for m in step_messages)  # each shows its latest state
    assert any("Rollback succeeded" in m.text for m in thread)
    assert any(m.text == "Post-rollback checklist" for m in thread)
    assert [m.text for m in slack.api.messages(STATUS)]  # stakeholders heard too
    counts = posts_by_outbox_row(slack)
    assert counts and set(counts.values()) == {1}
    assert Outbox(services.store).pending_count() == 0
    assert all(state == "sent" for _, _, state, _ in Outbox(services.store).rows(run_id=run_id))


def test_a_terminal_run_while_slack_is_down_reaches_the_channel_when_a_bot_serves_again(
    incident: Incident, services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    # Slack is down and so is the bot's service: the on-call engineer rolls back from a terminal.
    code = main(
        ["run", "prod", "--db", "none", "--force", "--channel", INCIDENT, "--config", str(incident.config_path)]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "waits in the outbox" in out
    run = services.store.list_runs()[0]
    assert run.status == "succeeded" and Outbox(services.store).pending_count() > 0

    with SlackWorkspace(services) as slack:  # later, a replica starts and Slack answers again
        slack.settle(timeout=120)
        header = next(m for m in slack.api.messages(INCIDENT) if run.env in m.text)
        thread = slack.thread(header)
        assert [m for m in thread if "Code rollback" in m.text]
        assert any("Rollback succeeded" in m.text for m in thread)
        assert any(m.text == "Post-rollback checklist" for m in thread)
        assert slack.api.messages(STATUS)
        assert set(posts_by_outbox_row(slack).values()) == {1}
