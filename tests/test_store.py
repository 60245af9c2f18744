"""The state store: one code path for SQLite and PostgreSQL; every once-only write wins exactly once."""

from __future__ import annotations

import threading

import pytest

from bot.errors import LockHeld
from bot.store import Store


def _run(store: Store, env: str = "prod") -> str:
    plan = {
        "deployed": {"sha": "b" * 40},
        "target": {"sha": "a" * 40},
        "url": "postgresql://app:hunter22@db/app",
    }
    return store.create_run(env=env, requested_by="U1", source="cli", plan=plan, plan_hash="h", dry_run=False).id


def test_runs_are_recorded_with_secrets_masked(store: Store) -> None:
    run_id = _run(store)
    record = store.get_run(run_id)
    assert record.status == "planned" and record.env == "prod"
    assert record.plan["url"] == "postgresql://app:***@db/app"
    assert [r.id for r in store.list_runs()] == [run_id]


def test_an_environment_with_the_longest_name_allowed_gets_runs_too(store: Store) -> None:
    env = "e" + "x" * 39  # config.py allows 40 characters; runs.id holds 40 on PostgreSQL
    run_id = _run(store, env)
    assert len(run_id) <= 40 and store.get_run(run_id).env == env


def test_a_second_run_of_the_same_environment_is_refused_naming_the_holder(store: Store) -> None:
    first, second, other_env = _run(store), _run(store), _run(store, "staging")
    store.acquire_lock("prod", run_id=first, holder="alice")
    with pytest.raises(LockHeld) as caught:
        store.acquire_lock("prod", run_id=second, holder="bob")
    assert "alice" in caught.value.message and first in caught.value.message
    store.acquire_lock("staging", run_id=other_env, holder="bob")  # other environments are independent
    store.acquire_lock("prod", run_id=first, holder="alice")  # re-entrant for the holder
    store.release_lock("prod", run_id=second)  # not the holder: no effect
    assert store.lock_for("prod") is not None
    store.release_lock("prod", run_id=first)
    store.acquire_lock("prod", run_id=second, holder="bob")


def test_racing_threads_start_a_run_exactly_once(store: Store) -> None:
    run_id = _run(store)
    wins: list[bool] = []
    barrier = threading.Barrier(8)

    def click() -> None:
        barrier.wait()
        wins.append(store.transition(run_id, from_=["planned"], to="running"))

    threads = [threading.Thread(target=click) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wins.count(True) == 1 and store.get_run(run_id).status == "running"


def test_racing_threads_take_a_lock_exactly_once(store: Store) -> None:
    runs = [_run(store) for _ in range(6)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(runs))

    def take(run_id: str) -> None:
        barrier.wait()
        try:
            store.acquire_lock("prod", run_id=run_id, holder=run_id)
            outcomes.append("won")
        except LockHeld:
            outcomes.append("refused")

    threads = [threading.Thread(target=take, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["refused"] * 5 + ["won"]


def test_step_journal_claims_once_and_allows_retry_after_failure(store: Store) -> None:
    run_id = _run(store)
    store.init_steps(run_id, ["safety", "code"])
    assert store.claim_step(run_id, "safety")
    assert not store.claim_step(run_id, "safety")  # already running
    store.finish_step(run_id, "safety", status="failed", summary="remote down", details={"x": "mysql://u:pw1234@h/d"})
    assert store.claim_step(run_id, "safety")  # retry
    store.finish_step(run_id, "safety", status="ok", summary="fine")
    assert not store.claim_step(run_id, "safety")
    steps = store.steps(run_id)
    assert [(s.name, s.status, s.attempts) for s in steps] == [("safety", "ok", 2), ("code", "pending", 0)]


def test_audit_restore_points_checklist_and_once_keys(store: Store) -> None:
    run_id = _run(store)
    store.record(
        actor="U1",
        action="run.planned",
        run_id=run_id,
        env="prod",
        detail="token xoxb-123 is not masked by shape",
    )
    assert [e.action for e in store.audit_trail(run_id=run_id)] == ["run.planned"]
    assert store.latest_restore_point("prod") is None
    store.add_restore_point(
        env="prod",
        commit_sha="a" * 40,
        commit_subject="good",
        dump_path="/b/1.dump",
        dump_size=10,
        created_by="ci",
    )
    newest = store.add_restore_point(
        env="prod",
        commit_sha="c" * 40,
        commit_subject="better",
        dump_path=None,
        dump_size=None,
        created_by="ci",
    )
    assert store.latest_restore_point("prod") == newest
    store.add_checklist(run_id, [("logs", "immediate", "Monitor logs"), ("review", "medium_term", "Review")])
    store.add_checklist(run_id, [("logs", "immediate", "Monitor logs")])
    assert store.mark_done(run_id, "logs", by="U2") and not store.mark_done(run_id, "logs", by="U3")
    items = store.checklist(run_id)
    assert [(i.item_id, i.done_by) for i in items] == [("logs", "U2"), ("review", None)]
    assert store.first_time("slack:retry:abc") and not store.first_time("slack:retry:abc")
