"""POST /hooks/deploy over real HTTP against `rollback-bot serve`: the pipeline asks, the bot snapshots.

The bot runs as its own process, exactly as deployed; the test is the deploy pipeline (requests with
a bearer token) and then reads the shared store for the restore point the bot took in the background.
"""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from bot.config import load_config
from bot.deploy_hook import DeployHook
from bot.services import build_services
from bot.store import AuditEntry, RestorePoint, Store
from sandbox.ports import free_port
from sandbox.scenario import Incident
from sandbox.serving import start_serving

TOKEN_ENV = "RB_TEST_DEPLOY_TOKEN"
TOKEN = "dpl-7f3c9a51e2b84d06a9c1-pipeline-token"


@dataclass
class Bot:
    url: str
    store: Store
    log: Path

    def post(self, body: Any = None, *, token: str | None = TOKEN, raw: bytes | None = None) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        if raw is not None:
            return requests.post(f"{self.url}/hooks/deploy", data=raw, headers=headers, timeout=10)
        return requests.post(f"{self.url}/hooks/deploy", json=body, headers=headers, timeout=10)

    def audit(self, job_id: str) -> list[AuditEntry]:
        return [entry for entry in self.store.audit_trail(limit=1000) if job_id in entry.detail]

    def wait_for(self, job_id: str, action: str, timeout: float = 60) -> AuditEntry:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [entry for entry in self.audit(job_id) if entry.action == action]
            if found:
                return found[0]
            time.sleep(0.2)
        raise AssertionError(f"no {action} for {job_id} within {timeout}s; seen: {self.audit(job_id)}")

    def point_by(self, job_id: str) -> RestorePoint | None:
        return next((p for p in self.store.restore_points("prod", limit=50) if job_id in p.created_by), None)


@pytest.fixture
def bot(incident: Incident, tmp_path: Path) -> Iterator[Bot]:
    config = incident.config_path.read_text()
    incident.config_path.write_text(
        config.replace('backup_dir = "backups"', f'backup_dir = "backups"\ndeploy_token_env = "{TOKEN_ENV}"')
    )
    env = {
        **os.environ,
        TOKEN_ENV: TOKEN,
        "SLACK_BOT_TOKEN": "xoxb-sandbox-token",
        "SLACK_SIGNING_SECRET": "sandbox-signing-secret",
        "SLACK_API_URL": f"http://127.0.0.1:{free_port()}/api/",  # nobody there: the hook needs no Slack
    }
    log = tmp_path / "serve.log"
    server, url = start_serving(incident.config_path, env=env, log=log)
    store = Store(load_config(incident.config_path).store_url)
    try:
        yield Bot(url=url, store=store, log=log)
    finally:
        server.terminate()
        server.wait(timeout=30)
        store.close()
    assert TOKEN not in log.read_text(), "the token reached the bot's log"


def test_the_pipeline_asks_and_the_bot_takes_the_restore_point_itself(bot: Bot, incident: Incident) -> None:
    head = incident.repo.bad  # what production runs now, as the pipeline knows it
    answer = bot.post({"env": "prod", "sha": head[:12].upper()})
    assert answer.status_code == 202, answer.text
    body = answer.json()
    assert body["ok"] and body["status"] == "accepted" and body["env"] == "prod" and body["sha"] == head[:12]
    job_id = body["id"]
    assert TOKEN not in answer.text

    done = bot.wait_for(job_id, "deploy_hook.done")
    point = bot.point_by(job_id)
    assert point is not None, bot.store.restore_points("prod")
    assert point.commit_sha == head and point.dump_path and point.dump_sha256
    dump = Path(point.dump_path).read_bytes()
    assert point.dump_sha256 == hashlib.sha256(dump).hexdigest() and point.dump_size == len(dump)
    assert dump.startswith(b"PGDMP")  # a real pg_dump of the live database
    assert f"restore point #{point.id}" in done.detail
    assert [e.action for e in bot.audit(job_id)] == ["deploy_hook.accepted", "deploy_hook.done"]
    assert all(TOKEN not in entry.detail for entry in bot.store.audit_trail(limit=1000))


def test_the_hook_refuses_what_it_must_and_names_what_was_wrong(bot: Bot, incident: Incident) -> None:
    good = {"env": "prod", "sha": incident.repo.bad}
    before = len(bot.store.restore_points("prod"))
    assert bot.post(good, token=None).status_code == 401
    assert bot.post(good, token="dpl-wrong-token").status_code == 401
    assert bot.post(good, token=TOKEN + "x").status_code == 401
    wrong_scheme = requests.post(
        f"{bot.url}/hooks/deploy", json=good, headers={"Authorization": f"Basic {TOKEN}"}, timeout=10
    )
    assert wrong_scheme.status_code == 401 and wrong_scheme.headers["WWW-Authenticate"].startswith("Bearer")
    assert requests.get(f"{bot.url}/hooks/deploy", timeout=10).status_code == 405

    malformed: list[tuple[Any, bytes | None, str]] = [
        (None, b"this is not json", "body"),
        (None, b"\xff\xfe{}", "body"),
        (["prod", "abc1234"], None, "body"),
        ({"sha": incident.repo.bad}, None, "env"),
        ({"env": 42, "sha": incident.repo.bad}, None, "env"),
        ({"env": "", "sha": incident.repo.bad}, None, "env"),
        ({"env": "prod"}, None, "sha"),
        ({"env": "prod", "sha": 1234567}, None, "sha"),
        ({"env": "prod", "sha": "abc12"}, None, "sha"),  # too short
        ({"env": "prod", "sha": "z" * 40}, None, "sha"),  # not hex
        ({"env": "prod", "sha": "a" * 41}, None, "sha"),  # too long
    ]
    for body, raw, field in malformed:
        answer = bot.post(body, raw=raw)
        assert answer.status_code == 400, (body, raw, answer.text)
        assert answer.json()["field"] == field and field in answer.json()["error"], (body, raw, answer.json())

    unknown = bot.post({"env": "staging", "sha": incident.repo.bad})
    assert unknown.status_code == 404 and "staging" in unknown.json()["error"] and "prod" in unknown.json()["hint"]
    assert requests.post(f"{bot.url}/hooks/nope", json=good, timeout=10).status_code == 404
    assert len(bot.store.restore_points("prod")) == before  # nothing refused was acted on


def test_a_sha_that_is_not_the_remote_head(bot: Bot, incident: Incident) -> None:
    # In the repository but not at the head (the branch moved ahead of what is deployed): recorded at that sha.
    behind = bot.post({"env": "prod", "sha": incident.repo.good}).json()["id"]
    bot.wait_for(behind, "deploy_hook.done")
    mismatch = bot.wait_for(behind, "deploy_hook.head_mismatch")
    assert incident.repo.bad[:7] in mismatch.detail and "on the branch" in mismatch.detail
    point = bot.point_by(behind)
    assert point is not None and point.commit_sha == incident.repo.good and point.dump_sha256

    # Not in the repository at all: nothing dumped or recorded, and the audit trail says why.
    before = len(bot.store.restore_points("prod"))
    unknown = bot.post({"env": "prod", "sha": "deadbeefcafe1234"})
    assert unknown.status_code == 202
    failed = bot.wait_for(unknown.json()["id"], "deploy_hook.failed")
    assert "deadbeefcafe1234 is not in the repository" in failed.detail
    assert len(bot.store.restore_points("prod")) == before


def test_the_hook_is_off_unless_the_config_names_a_token_variable(incident: Incident) -> None:
    services = build_services(config=load_config(incident.config_path))
    hook = DeployHook(services)
    seen: list[str] = []
    try:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/hooks/deploy",
            "HTTP_AUTHORIZATION": f"Bearer {TOKEN}",
            "CONTENT_LENGTH": "2",
            "wsgi.input": io.BytesIO(b"{}"),
        }
        body = b"".join(hook(environ, lambda status, _headers: seen.append(status)))
    finally:
        hook.shutdown()
        services.close()
    assert seen == ["404 Not Found"]
    assert b"not enabled" in body and b"deploy_token_env" in body
