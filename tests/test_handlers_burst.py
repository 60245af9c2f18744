"""Acks under a burst (handlers.burst): `/rollback status` reads shared but never stale, plans that let acks pass.

The unit tests drive `Coalesced` and `AckActivity` with threads and a fake clock; the others go through
the real app over HTTP, as Slack does.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.engine import lifecycle
from bot.engine.plan import RollbackRequest
from bot.services import Services
from bot.store import now
from handlers.burst import AckActivity, Coalesced, freeze_startup_heap
from sandbox.slack_harness import INCIDENT, SlackWorkspace
from tests.fixtures.waiting import wait_for

ALICE = "U0ALICE"


# --- Coalesced ------------------------------------------------------------------------------------------


def test_callers_at_once_share_a_read_and_none_gets_one_that_began_before_it_asked() -> None:
    reads = Coalesced[int]()
    first_running = threading.Event()
    release_first = threading.Event()
    calls: list[int] = []

    def work() -> int:
        calls.append(len(calls) + 1)
        if len(calls) == 1:
            first_running.set()
            release_first.wait(timeout=30)
        return len(calls)

    with ThreadPoolExecutor(4) as pool:
        a = pool.submit(reads.read, "status", work)
        assert first_running.wait(timeout=30)
        # b and c ask while a's read runs: they must not get it (it began before they asked).
        b = pool.submit(reads.read, "status", work)
        c = pool.submit(reads.read, "status", work)
        wait_for("b and c wait for the next read", lambda: reads.waiting("status") == 2, timeout=30)
        other = pool.submit(reads.read, "history", lambda: -1)  # another key does not wait for this one
        assert other.result(timeout=30) == -1
        release_first.set()
        assert a.result(timeout=30) == 1
        assert b.result(timeout=30) == c.result(timeout=30) == 2  # one read, begun after both asked
    assert calls == [1, 2]
    assert reads.read("status", work) == 3  # nothing is kept: a later caller reads again


def test_a_failed_read_is_every_joined_callers_error_and_the_next_read_is_fresh() -> None:
    reads = Coalesced[str]()
    running = threading.Event()
    release = threading.Event()

    def fails() -> str:
        running.set()
        release.wait(timeout=30)
        raise RuntimeError("store unreachable")

    with ThreadPoolExecutor(3) as pool:
        blocker = pool.submit(reads.read, "status", fails)
        assert running.wait(timeout=30)
        joined = [pool.submit(reads.read, "status", fails) for _ in range(2)]
        wait_for("both joined the next read", lambda: reads.waiting("status") == 2, timeout=30)
        release.set()
        for future in [blocker, *joined]:
            with pytest.raises(RuntimeError, match="store unreachable"):
                future.result(timeout=30)
    assert reads.read("status", lambda: "ok") == "ok"


# --- AckActivity ------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, start: float = 100.0) -> None:
        self.t = start
        self.on_sleep: Callable[[float], None] | None = None

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.t += seconds
        if self.on_sleep is not None:
            self.on_sleep(self.t)


def test_a_plan_starts_at_once_when_no_request_is_being_acked() -> None:
    clock = FakeClock()
    activity = AckActivity(quiet_s=0.05, max_delay_s=1.0, clock=clock)
    assert activity.wait_quiet(asked_at=clock(), sleep=clock.sleep) == 0
    activity.touch()
    clock.t += 0.2  # the last request was 0.2 s ago
    assert activity.wait_quiet(asked_at=clock(), sleep=clock.sleep) == 0


def test_a_plan_waits_for_a_burst_of_acks_to_pass() -> None:
    clock = FakeClock()
    activity = AckActivity(quiet_s=0.05, max_delay_s=1.0, clock=clock)
    pending = [100.02, 100.04, 100.06]  # requests that come while the plan waits
    touched = [clock()]

    def requests_come(t: float) -> None:
        while pending and pending[0] <= t:
            pending.pop(0)
            activity.touch()
            touched.append(t)

    activity.touch()
    clock.on_sleep = requests_come
    waited = activity.wait_quiet(asked_at=clock(), sleep=clock.sleep)
    assert not pending and waited == pytest.approx(0.15)
    assert clock() - touched[-1] == pytest.approx(0.05)  # one quiet period after the last request


def test_a_steady_stream_of_requests_delays_a_plan_by_at_most_max_delay() -> None:
    clock = FakeClock()
    activity = AckActivity(quiet_s=0.05, max_delay_s=1.0, clock=clock)
    asked = clock() - 0.3  # it was asked for 0.3 s ago, and waited in the planner's queue meanwhile
    activity.touch()
    clock.on_sleep = lambda _t: activity.touch()  # a request every time it looks
    activity.wait_quiet(asked_at=asked, sleep=clock.sleep)
    assert clock() == pytest.approx(asked + 1.0)


def test_the_heap_the_app_is_built_from_is_frozen_once_per_process(slack: SlackWorkspace) -> None:
    assert gc.get_freeze_count() > 0  # wiring the app froze what it is built from
    frozen = gc.get_freeze_count()
    assert freeze_startup_heap() is False  # and only the first app of the process does
    assert gc.get_freeze_count() <= frozen  # nothing more frozen (frozen objects may still be freed)


# --- over HTTP --------------------------------------------------------------------------------------------


def test_a_plan_asked_during_a_burst_is_made_after_it_and_posted_once(
    slack: SlackWorkspace, services: Services
) -> None:
    assert slack.ctx is not None
    slack.ctx.activity = AckActivity(quiet_s=0.3, max_delay_s=30.0)
    before = len(slack.api.messages(INCIDENT))
    slack.slash(ALICE, "prod --dry-run", settle=False)
    last_sent = datetime.now(UTC)
    for _ in range(5):  # help requests keep coming, 0.1 s apart: the plan waits for them to stop
        last_sent = datetime.now(UTC)
        assert slack.slash(ALICE, "help", settle=False).status_code == 200
        time.sleep(0.1)
    slack.settle()
    runs = services.store.list_runs()
    assert len(runs) == 1 and runs[0].dry_run
    assert runs[0].created_at >= last_sent  # planned after the last ack of the burst, not during it
    plans = [m for m in slack.api.messages(INCIDENT)[before:] if "Rollback plan" in m.text]
    assert len(plans) == 1


def test_status_is_one_read_of_the_store_and_shows_a_dead_run_as_interrupted(
    slack: SlackWorkspace, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    waiting = lifecycle.propose(services, RollbackRequest(env="prod", requested_by=ALICE))[0]
    dead = lifecycle.propose(services, RollbackRequest(env="prod", requested_by=ALICE))[0]
    assert services.store.transition(dead.id, from_=["planned"], to="running", started_at=now())
    services.store.update_run(dead.id, heartbeat_at=now() - timedelta(hours=1))  # its process stopped long ago

    reread = []

    def recording(read: Callable[..., Any]) -> Callable[..., Any]:
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            reread.append(threading.current_thread().name)
            return read(*args, **kwargs)

        return wrapped

    monkeypatch.setattr(services.store, "get_run", recording(services.store.get_run))
    monkeypatch.setattr(services.store, "steps", recording(services.store.steps))
    slack.slash(ALICE, "status")
    answer = slack.ephemeral_texts(ALICE)[-1]
    assert not [name for name in reread if name.startswith("bolt-listener")]  # the listing was enough
    assert f"`{waiting.id}` prod: *planned*" in answer
    assert f"`{dead.id}` prod: *interrupted*" in answer


def test_a_burst_of_status_requests_shares_reads_and_each_sees_what_was_there_before_it(
    slack: SlackWorkspace, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = lifecycle.propose(services, RollbackRequest(env="prod", requested_by=ALICE))[0]
    real = services.store.list_runs
    reads = []

    def slow_list_runs(**kwargs: Any) -> Any:
        if threading.current_thread().name.startswith("bolt-listener"):  # a status ack, not the bot's timers
            reads.append(kwargs)
            time.sleep(0.1)  # a slow store: requests pile up behind a read
        return real(**kwargs)

    monkeypatch.setattr(services.store, "list_runs", slow_list_runs)
    people = [f"U0PERSON{i}" for i in range(16)]
    gate = threading.Barrier(len(people))

    def ask(person: str) -> int:
        gate.wait(timeout=30)
        return slack.slash(person, "status", settle=False).status_code

    with ThreadPoolExecutor(len(people)) as pool:
        assert list(pool.map(ask, people)) == [200] * len(people)
    slack.settle()
    assert len(reads) < len(people) // 2  # shared: far fewer reads than requests
    for person in people:
        assert any(run.id in text for text in slack.ephemeral_texts(person)), person
