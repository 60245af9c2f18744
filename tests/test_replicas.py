"""Two bot processes serving at once, sharing one PostgreSQL store; one of them killed with SIGKILL mid-run.

Every plan expiry, stakeholder update, reminder and message is sent exactly once, and none is lost.
Each Slack post carries its outbox row id in message metadata, so "once" is counted, not guessed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from bot.config import load_config
from bot.outbox import Outbox
from bot.services import Services, build_services
from sandbox.scenario import Incident, build_incident
from sandbox.serving import start_serving
from sandbox.slack_api import SlackApiStandIn, StoredMessage
from sandbox.slack_harness import INCIDENT, SIGNING_SECRET, STATUS, find_button, sandbox_slack_api
from sandbox.slack_signing import SlackRequestSender
from tests.conftest import TEST_URL_ENV
from tests.fixtures.databases import PG_ADMIN_URL
from tests.fixtures.runs import MonkeyEnv
from tests.fixtures.waiting import wait_for
from tests.test_slack_app import ALICE, CAROL


@dataclass
class Replica:
    name: str
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def start_replica(name: str, *, config: Path, api: SlackApiStandIn, root: Path) -> Replica:
    env = {
        **os.environ,
        "SLACK_BOT_TOKEN": api.token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": api.base_url,
    }
    log = root / f"{name}.log"
    process, url = start_serving(config, env=env, log=log)
    return Replica(name=name, process=process, url=url, log=log)


def posts_per_row(api: SlackApiStandIn) -> Counter[int]:
    counts: Counter[int] = Counter()
    for call in api.calls_to("chat.postMessage"):
        metadata = call.args.get("metadata")
        if call.ok and metadata:
            metadata = json.loads(metadata) if isinstance(metadata, str) else metadata
            counts[int(metadata["event_payload"]["outbox_id"])] += 1
    return counts


@dataclass
class Cluster:
    incident: Incident
    services: Services
    api: SlackApiStandIn
    a: Replica
    b: Replica

    def sender(self, replica: Replica) -> SlackRequestSender:
        return SlackRequestSender(app_url=f"{replica.url}/slack/events", signing_secret=SIGNING_SECRET, api=self.api)

    def click(self, replica: Replica, user: str, label: str, message: StoredMessage) -> None:
        action_id, value = find_button(message.blocks, label)
        self.sender(replica).block_action(
            user_id=user, action_id=action_id, value=value, channel_id=INCIDENT, message_ts=message.ts
        )


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    store_db = f"rbt_store_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(store_db)))
    monkeypatch.chdir(tmp_path)
    incident = build_incident(
        tmp_path / "stage",
        url_env=TEST_URL_ENV,
        environ=MonkeyEnv(monkeypatch),
        store=PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{store_db}",
        update_every="2s",
        remind_after=("3s", "5s"),
        plan_expires_after="4s",
        health_interval="1s",
    )
    services = build_services(config=load_config(incident.config_path))
    api = sandbox_slack_api()
    api.start()
    a = start_replica("a", config=incident.config_path, api=api, root=tmp_path)
    b = start_replica("b", config=incident.config_path, api=api, root=tmp_path)
    try:
        yield Cluster(incident=incident, services=services, api=api, a=a, b=b)
    finally:
        for replica in (a, b):
            replica.stop()
        api.stop()
        services.close()
        incident.close()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(store_db)))


def test_two_replicas_expire_a_plan_once(cluster: Cluster) -> None:
    cluster.sender(cluster.a).slash_command(user_id=ALICE, text="prod --db none", channel_id=INCIDENT)
    wait_for("the plan is posted", lambda: cluster.api.messages(INCIDENT), timeout=90)
    plan = cluster.api.messages(INCIDENT)[-1]
    run_id = cluster.services.store.list_runs()[0].id
    wait_for(
        "the plan expires",
        lambda: "expired" in json.dumps(cluster.api.message(INCIDENT, plan.ts).blocks),
        timeout=90,
    )
    time.sleep(3)  # both pollers had time to fire it again, had the claim let them
    expired = [e for e in cluster.services.store.audit_trail(run_id=run_id) if e.action == "run.expired"]
    assert len(expired) == 1
    updates = [c for c in cluster.api.calls_to("chat.update") if c.ok and c.args.get("ts") == plan.ts]
    assert len(updates) == 1 and "Confirm" not in json.dumps(cluster.api.message(INCIDENT, plan.ts).blocks)


def test_killing_the_replica_running_a_rollback_loses_no_update_reminder_or_message(cluster: Cluster) -> None:
    store = cluster.services.store
    cluster.incident.health.answer_next(503, 503, 503)  # the app takes a few seconds to come back
    cluster.sender(cluster.a).slash_command(user_id=ALICE, text="prod --db none", channel_id=INCIDENT)
    wait_for("the plan is posted", lambda: cluster.api.messages(INCIDENT), timeout=90)
    plan = cluster.api.messages(INCIDENT)[-1]
    run_id = store.list_runs()[0].id
    cluster.click(cluster.a, CAROL, "Confirm", plan)  # replica a runs it
    wait_for("the health step runs", lambda: store.get_run(run_id).current_step == "health", timeout=60)
    time.sleep(2.5)  # a stakeholder update or two went out meanwhile
    assert store.get_run(run_id).pid == cluster.a.process.pid
    cluster.a.kill()

    # Replica b sees at once that the process running it is gone, and says so in the thread.
    wait_for(
        "the interrupted notice",
        lambda: any("interrupted" in m.text for m in cluster.api.thread(INCIDENT, plan.ts)),
        timeout=60,
    )
    notice = next(m for m in cluster.api.thread(INCIDENT, plan.ts) if "interrupted" in m.text)
    cluster.click(cluster.b, CAROL, "Retry", notice)
    wait_for("the run succeeds on b", lambda: store.get_run(run_id).status == "succeeded", timeout=90)
    assert store.get_run(run_id).pid == cluster.b.process.pid
    wait_for(
        "both checklist reminders",
        lambda: len([m for m in cluster.api.thread(INCIDENT, plan.ts) if "still open" in m.text]) == 2,
        timeout=60,
    )
    wait_for("the outbox is drained", lambda: Outbox(store).pending_count() == 0, timeout=60)
    time.sleep(2)  # time for any duplicate to show up

    counts = posts_per_row(cluster.api)
    assert counts and set(counts.values()) == {1}, counts  # every message once
    rows = Outbox(store).rows(run_id=run_id)
    assert all(state == "sent" for _, _, state, _ in rows), rows  # and none lost
    thread = cluster.api.thread(INCIDENT, plan.ts)
    assert len([m for m in thread if "interrupted" in m.text]) == 1
    assert len([m for m in thread if "still open" in m.text]) == 2
    assert any("Rollback succeeded" in m.text for m in thread)
    # Stakeholders: the start, the periodic updates (fired by whichever replica claimed each), the end.
    updates = cluster.api.messages(STATUS)
    periodic = [r for r in rows if r[1] == "stakeholder"]
    assert len(updates) == len(periodic) >= 4
    assert "Update at" in json.dumps(updates[-1].blocks)
