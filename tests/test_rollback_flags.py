"""An incident where the bad release's feature flag must go off too (vendor stand-ins over HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from bot.cli import main
from bot.engine import lifecycle
from bot.engine.events import Event, StepProgress
from bot.engine.lifecycle import Actor
from bot.engine.plan import RollbackRequest
from bot.services import Services
from bot.store import now
from sandbox.flag_servers import LaunchDarklyServer, UnleashServer
from sandbox.scenario import Incident

LD_KEY = "api-0ld-sandbox-token"


@pytest.fixture
def launchdarkly(monkeypatch: pytest.MonkeyPatch) -> Iterator[LaunchDarklyServer]:
    with LaunchDarklyServer(api_key=LD_KEY) as server:
        server.set_flag("new-checkout", True)
        server.set_flag("new-pricing", True)
        monkeypatch.setenv("LD_API_KEY", LD_KEY)
        yield server


def flags_table(base_url: str) -> str:
    return f"""
[[environments.prod.flags]]
provider = "launchdarkly"
keys = ["new-checkout", "new-pricing"]
api_key_env = "LD_API_KEY"
project = "default"
environment = "production"
base_url = "{base_url}"
"""


def run(incident: Incident, *args: str) -> int:
    return main([*args, "--config", str(incident.config_path)])


@pytest.fixture
def flagged(launchdarkly: LaunchDarklyServer, incident: Incident) -> Incident:
    config = incident.config_path.read_text()
    incident.config_path.write_text(
        config.replace(
            "[environments.prod.database]", flags_table(launchdarkly.base_url) + "\n[environments.prod.database]"
        )
    )
    return incident


def test_flags_are_recorded_turned_off_and_can_be_put_back(
    launchdarkly: LaunchDarklyServer, flagged: Incident, services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(flagged, "plan", "prod") == 0
    assert "flags off      launchdarkly: new-checkout, new-pricing" in capsys.readouterr().out
    assert run(flagged, "run", "prod", "--force", "--db", "none") == 0
    out = capsys.readouterr().out
    assert "turned off 2 flag(s): new-checkout, new-pricing" in out
    assert not launchdarkly.flag_on("new-checkout") and not launchdarkly.flag_on("new-pricing")
    assert "Confirm the flags are off for users: new-checkout, new-pricing" in out
    assert LD_KEY not in out

    record = services.store.list_runs()[0]
    flags_step = next(s for s in services.store.steps(record.id) if s.name == "flags")
    before = next(iter(flags_step.details["before"].values()))
    assert [(row["key"], row["on"]) for row in before] == [("new-checkout", True), ("new-pricing", True)]

    assert run(flagged, "undo-flags", record.id) == 0
    assert "new-checkout is on again" in capsys.readouterr().out
    assert launchdarkly.flag_on("new-checkout") and launchdarkly.flag_on("new-pricing")


def test_no_flags_leaves_them_alone(launchdarkly: LaunchDarklyServer, flagged: Incident) -> None:
    assert run(flagged, "run", "prod", "--force", "--db", "none", "--no-flags") == 0
    assert launchdarkly.flag_on("new-checkout")


def test_a_missing_api_key_is_caught_before_anything_changes(
    launchdarkly: LaunchDarklyServer,
    flagged: Incident,
    services: Services,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("LD_API_KEY")
    assert run(flagged, "run", "prod", "--force", "--db", "none") == 1
    assert "LD_API_KEY is not set" in capsys.readouterr().out
    assert services.store.list_runs()[0].current_step == "safety"
    assert launchdarkly.flag_on("new-checkout")


def test_a_vendor_failure_half_way_says_which_flags_are_off_and_retry_finishes(
    launchdarkly: LaunchDarklyServer, flagged: Incident, services: Services
) -> None:
    def vendor_breaks_after_the_first_flag(event: Event) -> None:
        if isinstance(event, StepProgress) and event.step == "flags" and "new-checkout is off" in event.message:
            launchdarkly.fail_next(3, 503)  # every try (first + two retries) for the next flag fails

    record, _ = lifecycle.propose(services, RollbackRequest(env="prod", requested_by="alice", db="none"))
    done = lifecycle.start(
        services, record.id, actor=Actor("carol", "terminal"), reporters=[vendor_breaks_after_the_first_flag]
    )
    assert done.status == "failed" and done.current_step == "flags"
    assert "could not turn off new-pricing" in (done.error or "")
    failed = next(s for s in services.store.steps(record.id) if s.name == "flags")
    assert failed.details["before"]  # what to put back is in the journal
    assert not launchdarkly.flag_on("new-checkout") and launchdarkly.flag_on("new-pricing")

    assert (
        lifecycle.resume(services, record.id, decision="retry", actor=Actor("carol", "terminal")).status == "succeeded"
    )
    assert not launchdarkly.flag_on("new-pricing")
    checkout_writes = [r for r in launchdarkly.requests if r.method == "PATCH" and r.path.endswith("/new-checkout")]
    assert len(checkout_writes) == 1  # the retry did not write again a flag the first attempt turned off
    lines = lifecycle.undo_flags(services, record.id, actor=Actor("carol", "terminal"))
    assert len(lines) == 2 and launchdarkly.flag_on("new-checkout") and launchdarkly.flag_on("new-pricing")


def test_unleash_flags_too(incident: Incident, monkeypatch: pytest.MonkeyPatch) -> None:
    with UnleashServer() as unleash:
        unleash.set_flag("new-checkout", True)
        monkeypatch.setenv("UNLEASH_TOKEN", unleash.api_key)
        table = f"""
[[environments.prod.flags]]
provider = "unleash"
keys = ["new-checkout"]
api_key_env = "UNLEASH_TOKEN"
environment = "production"
base_url = "{unleash.base_url}"
"""
        config = incident.config_path.read_text()
        incident.config_path.write_text(
            config.replace("[environments.prod.database]", table + "\n[environments.prod.database]")
        )
        assert run(incident, "run", "prod", "--force", "--db", "none", "--code", "none") == 0
        assert not unleash.flag_on("new-checkout")


def test_a_flag_already_off_is_not_written_and_a_retry_after_a_crash_writes_nothing_twice(
    launchdarkly: LaunchDarklyServer, flagged: Incident, services: Services
) -> None:
    """kill -9 can land after the vendor took the write but before the journal took the outcome; the
    retry reads the flag off and must not write again, yet still count it as this run's (undo puts it back)."""

    def crash_after_the_writes(event: Event) -> None:
        if isinstance(event, StepProgress) and event.step == "flags" and "new-pricing is off" in event.message:
            raise KeyboardInterrupt  # the process dies here: flags written, outcome not journaled

    launchdarkly.set_flag("new-checkout", False)  # already off before the rollback
    record, _ = lifecycle.propose(services, RollbackRequest(env="prod", requested_by="alice", db="none"))
    with pytest.raises(KeyboardInterrupt):
        lifecycle.start(services, record.id, actor=Actor("carol", "terminal"), reporters=[crash_after_the_writes])
    services.store.update_run(record.id, pid=None, heartbeat_at=now() - timedelta(minutes=10))  # that process is gone
    assert [r.path for r in launchdarkly.requests if r.method == "PATCH"] == ["/api/v2/flags/default/new-pricing"]

    done = lifecycle.resume(services, record.id, decision="retry", actor=Actor("carol", "terminal"))
    assert done.status == "succeeded"
    assert len([r for r in launchdarkly.requests if r.method == "PATCH"]) == 1  # nothing written twice
    flags_step = next(s for s in services.store.steps(record.id) if s.name == "flags")
    assert flags_step.summary.startswith("turned off 1 flag(s): new-pricing; already off: new-checkout")
    lifecycle.undo_flags(services, record.id, actor=Actor("carol", "terminal"))
    assert launchdarkly.flag_on("new-pricing") and not launchdarkly.flag_on("new-checkout")
