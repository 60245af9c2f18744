"""Readiness in every plan, App Home and `status`: the last rehearsal and drill, expected step times, and
what has not been proven, said plainly.

The drills and rehearsals themselves are tested in test_drills.py and test_rehearsal.py; here their
records are written the way they write them, and read back where people look.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from bot.engine.drills import run_drill
from bot.engine.plan import Plan, RollbackRequest
from bot.engine.planning import make_request_plan
from bot.engine.readiness import Readiness, assess
from bot.engine.rehearsal import rehearse
from bot.render_text import plan_text
from bot.services import Services
from bot.store import Store, now
from sandbox.scenario import Incident
from sandbox.slack_harness import SlackWorkspace
from tests.fixtures.runs import BIN
from tests.test_slack_app import ALICE, CAROL, text_of

STEP_TIMES = {
    "safety": 1.2,
    "pre_dump": 4.0,
    "code": 2.5,
    "database": 6.1,
    "flags": 0.4,
    "health": 0.6,
    "checklist": 0.1,
}


def rehearsed(store: Store, env: str, *, passed: bool, seconds: float = 15.0, failure: str | None = None) -> None:
    check = store.start_check(kind="rehearsal", env=env, requested_by="U0CAROL", source="cli")
    assert check is not None
    steps = [{"name": n, "status": "ok", "seconds": s, "summary": ""} for n, s in STEP_TIMES.items()]
    if not passed:
        steps[-3]["status"] = "failed"
    store.finish_check(
        check.id,
        status="passed" if passed else "failed",
        seconds=seconds,
        details={"steps": steps},
        failure=failure,
    )


def drilled(store: Store, env: str, *, restore_point_id: int, passed: bool, restore_seconds: float = 6.4) -> None:
    check = store.start_check(
        kind="drill", env=env, requested_by="schedule", source="schedule", restore_point_id=restore_point_id
    )
    assert check is not None
    store.finish_check(
        check.id,
        status="passed" if passed else "failed",
        seconds=restore_seconds + 1,
        details={"restore_seconds": restore_seconds, "total_rows": 1_234_567},
        failure=None if passed else "pg_restore: error: could not read input file",
    )


def aged(text: str) -> str:
    """Ages as N seconds: a record written a moment ago may be 0s or, on a busy machine, 1s old by the plan."""
    return re.sub(r"\b\d+s ago", "Ns ago", text)


def plan_of(services: Services, *, db: str | None = None) -> Plan:
    return make_request_plan(services, RollbackRequest(env="prod", requested_by="U0ALICE", db=db))


@pytest.fixture
def point(services: Services) -> Iterator[int]:
    restore_point = services.store.latest_restore_point("prod")
    assert restore_point is not None and restore_point.dump_path  # the incident took one at the good release
    yield restore_point.id


def test_a_plan_with_nothing_proven_says_so_plainly(services: Services, point: int) -> None:
    plan = plan_of(services)
    assert plan.readiness is not None
    warnings = plan.readiness.warnings(now())
    assert any("never rehearsed" in w for w in warnings)
    assert any(f"restore point #{point} never passed a drill" in w for w in warnings)
    text = aged(plan_text(plan))
    assert "readiness      never rehearsed" in text and "never drilled" in text
    assert f"NOT PROVEN: restore point #{point} never passed a drill" in text


def test_a_plan_shows_the_last_rehearsal_the_drill_of_its_restore_point_and_each_steps_expected_time(
    services: Services, point: int
) -> None:
    rehearsed(services.store, "prod", passed=True, seconds=15.0)
    drilled(services.store, "prod", restore_point_id=point, passed=True, restore_seconds=6.4)
    plan = plan_of(services)
    text = aged(plan_text(plan))
    assert "rehearsed Ns ago: passed, 15s end to end" in text
    assert f"last drill Ns ago: restore point #{point} restored cleanly (6.4s, 1.2 M rows)" in text
    # The drill is newer than the rehearsal, so the database step is expected to take the drill's restore.
    assert "expected 15s: safety checks 1.2s, pre-rollback dump 4.0s, code 2.5s, database restore 6.4s" in text
    assert "NOT PROVEN" not in text
    assert plan.readiness is not None and plan.readiness.expected_seconds == pytest.approx(15.2)


def test_after_a_real_drill_and_rehearsal_the_plan_shows_both_and_nothing_unproven(
    services: Services, point: int
) -> None:
    drill = run_drill(services, "prod", requested_by="schedule", source="schedule")
    rehearsal = rehearse(services, "prod", requested_by="U0CAROL", source="cli")
    assert drill.status == "passed" and rehearsal.status == "passed", (drill.failure, rehearsal.failure)
    text = aged(plan_text(plan_of(services)))
    assert "readiness      rehearsed Ns ago: passed" in text
    assert f"last drill Ns ago: restore point #{point} restored cleanly" in text
    assert "expected " in text and "database restore" in text and "NOT PROVEN" not in text


def test_a_drill_of_another_restore_point_does_not_prove_this_one(services: Services, point: int) -> None:
    drilled(services.store, "prod", restore_point_id=point + 1000, passed=True)
    text = aged(plan_text(plan_of(services)))
    assert f"restore point #{point + 1000} restored cleanly" in text  # the last drill is still shown
    assert f"NOT PROVEN: restore point #{point} never passed a drill" in text


def test_a_failed_last_rehearsal_and_a_failed_drill_are_said_plainly(services: Services, point: int) -> None:
    rehearsed(services.store, "prod", passed=True, seconds=20.0)
    rehearsed(services.store, "prod", passed=False, seconds=9.0, failure="health: 500 from the staging URL")
    drilled(services.store, "prod", restore_point_id=point, passed=False)
    plan = plan_of(services)
    text = aged(plan_text(plan))
    assert "rehearsed Ns ago: FAILED after 9.0s: health: 500 from the staging URL" in text
    assert "NOT PROVEN: the last rehearsal, Ns ago, failed" in text
    assert f"restore point #{point} FAILED: pg_restore: error: could not read input file" in text
    assert f"NOT PROVEN: restore point #{point} never passed a drill" in text
    # Expected times come from the last rehearsal that passed, not from the failed one.
    assert plan.readiness is not None and plan.readiness.expected and "expected 15s" in text


def test_readiness_is_shown_with_a_plan_but_an_approval_does_not_bind_to_it(services: Services, point: int) -> None:
    before = plan_of(services)
    drilled(services.store, "prod", restore_point_id=point, passed=True)
    after = plan_of(services)
    assert before.readiness != after.readiness and before.hash == after.hash
    assert Plan.from_dict(after.to_dict()) == after  # stored with the run, read back whole


def test_drills_say_nothing_of_a_plan_that_restores_no_dump(services: Services, point: int) -> None:
    plan = plan_of(services, db="none")
    assert plan.readiness is not None and plan.readiness.restore_point_id is None
    assert not any("drill" in w for w in plan.readiness.warnings(now()))


def test_expected_times_ignore_steps_that_did_not_run_and_order_by_the_engine(store: Store) -> None:
    check = store.start_check(kind="rehearsal", env="prod", requested_by="x", source="cli")
    assert check is not None
    steps: list[dict[str, Any]] = [
        {"name": "health", "status": "ok", "seconds": 0.5},
        {"name": "flags", "status": "skipped", "seconds": 0.0},
        {"name": "code", "status": "ok", "seconds": 2},
    ]
    store.finish_check(check.id, status="passed", seconds=3.0, details={"steps": steps})
    readiness = assess(store, "prod", restore_point=None, drills_apply=False)
    assert [(e.step, e.seconds) for e in readiness.expected] == [("code", 2.0), ("health", 0.5)]
    assert readiness.sentences(now() + timedelta(hours=14))[0] == "rehearsed 14h 00m ago: passed, 3.0s end to end"
    assert Readiness.from_dict(readiness.to_dict()) == readiness


def test_the_slack_plan_shows_readiness_and_what_is_not_proven(
    slack: SlackWorkspace, services: Services, point: int
) -> None:
    rehearsed(services.store, "prod", passed=True, seconds=15.0)
    slack.slash(ALICE, "prod --dry-run")
    shown = text_of(slack.latest())
    assert "Readiness" in shown and "rehearsed" in shown and "passed, 15s end to end" in shown
    assert f"restore point #{point} never passed a drill" in shown


def test_app_home_and_status_show_each_environments_readiness(
    slack: SlackWorkspace, services: Services, incident: Incident, point: int
) -> None:
    drilled(services.store, "prod", restore_point_id=point, passed=True)
    slack.slack.app_home_opened(user_id=CAROL)
    slack.settle()
    home = slack.api.render_home(CAROL)
    assert f"restore point #{point}" in home and "old" in home
    assert "restored cleanly" in home and "never rehearsed" in home

    status = subprocess.run(
        [str(BIN), "status", "--config", str(incident.config_path)], capture_output=True, text=True, check=True
    ).stdout
    assert "Readiness:" in status and f"prod: restore point #{point}," in status
    assert "restored cleanly (6.4s, 1.2 M rows)" in status and "never rehearsed" in status
