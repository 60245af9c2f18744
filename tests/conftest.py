"""Fixtures that set the stage for tests that read like incidents."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from bot.config import load_config
from bot.services import Services, build_services
from bot.store import Store
from sandbox.scenario import Incident, build_incident
from sandbox.slack_harness import SlackWorkspace
from tests.fixtures.runs import MonkeyEnv

TEST_URL_ENV = "RB_TEST_DATABASE_URL"


@pytest.fixture
def incident(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Incident]:
    """Production is on a bad release (its migration dropped a column and a table); a restore point exists.

    `@pytest.mark.incident_config(update_every="1s", …)` changes the sandbox's rollback.toml.
    """
    monkeypatch.chdir(tmp_path)
    marker = request.node.get_closest_marker("incident_config")
    options = dict(marker.kwargs) if marker else {}
    stage = build_incident(tmp_path / "stage", url_env=TEST_URL_ENV, environ=MonkeyEnv(monkeypatch), **options)
    try:
        yield stage
    finally:
        stage.close()


@pytest.fixture
def slack(services: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[SlackWorkspace]:
    """The real Bolt app over HTTP on the incident's services, with the Slack Web API stand-in."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test-token")
    with SlackWorkspace(services) as workspace:
        yield workspace


@pytest.fixture
def services(incident: Incident) -> Iterator[Services]:
    built = build_services(config=load_config(incident.config_path))
    try:
        yield built
    finally:
        built.close()


PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty store on SQLite, then on a fresh PostgreSQL database (dropped after)."""
    if request.param == "sqlite":
        s = Store(f"sqlite:///{tmp_path / 'state.db'}")
        yield s
        s.close()
        return
    name = f"rb_store_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    s = Store(f"postgresql://postgres@127.0.0.1:5432/{name}")
    try:
        yield s
    finally:
        s.close()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
