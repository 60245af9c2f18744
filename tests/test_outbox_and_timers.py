"""The outbox and the durable timers against real stores (SQLite and PostgreSQL): once, in order, latest state."""

from __future__ import annotations

import threading
from datetime import timedelta

from bot.outbox import Notice, Outbox, SlackMessage
from bot.store import Store, now
from bot.timers import Timer, TimerKind, TimerPoller, Timers


def step(state: str, key: str = "run:r1:step:code") -> Notice:
    return Notice(channel="C0INC", kind="step", payload={"status": state}, run_id="r1", message_key=key)


# --- the outbox -------------------------------------------------------------------------------------------


def test_updates_to_a_waiting_message_are_coalesced_into_its_latest_state(store: Store) -> None:
    outbox = Outbox(store)
    first = outbox.enqueue(step("running"))
    assert outbox.enqueue(step("running: 40%")) == first
    assert outbox.enqueue(step("ok")) == first
    other = outbox.enqueue(step("running", key="run:r1:step:database"))
    due = outbox.due()
    assert [(r.id, r.notice.payload["status"]) for r in due] == [(first, "ok"), (other, "running")]


def test_a_state_written_while_the_previous_one_was_being_sent_goes_out_next(store: Store) -> None:
    outbox = Outbox(store)
    outbox.enqueue(step("running"))
    [sending] = outbox.due()
    outbox.enqueue(step("ok"))  # the rollback moves on while the sender talks to Slack
    outbox.remember("run:r1:step:code", SlackMessage(channel="C0INC", ts="1.0001"))
    assert not outbox.mark_sent(sending)  # it sent "running": that is not the latest state
    [latest] = outbox.due()
    assert latest.notice.payload["status"] == "ok" and outbox.mark_sent(latest)
    assert outbox.pending_count() == 0


def test_a_notice_with_a_seen_dedupe_key_is_stored_once(store: Store) -> None:
    outbox = Outbox(store)
    notice = Notice(channel="C0STATUS", kind="stakeholder", payload={"n": 1}, dedupe_key="timer:x@1")
    assert outbox.enqueue(notice) is not None
    assert outbox.enqueue(notice) is None
    assert outbox.pending_count() == 1


def test_a_row_that_must_wait_holds_back_the_rows_after_it(store: Store) -> None:
    outbox = Outbox(store)
    for n in range(3):
        outbox.enqueue(Notice(channel="C0INC", kind="finished", payload={"n": n}))
    first = outbox.due()[0]
    outbox.retry_later(first, error="ratelimited", delay=timedelta(seconds=30))
    assert outbox.due() == []  # order per channel is kept: nothing overtakes the waiting row


def test_one_sender_lease_at_a_time_and_a_dead_holders_lease_runs_out(store: Store) -> None:
    outbox = Outbox(store)
    assert outbox.hold_lease("replica-a", ttl=timedelta(seconds=30))
    assert not outbox.hold_lease("replica-b", ttl=timedelta(seconds=30))
    assert outbox.hold_lease("replica-a", ttl=timedelta(milliseconds=1))  # a renews, then dies
    threading.Event().wait(0.05)
    assert outbox.hold_lease("replica-b", ttl=timedelta(seconds=30))
    assert not outbox.hold_lease("replica-a", ttl=timedelta(seconds=30))


# --- timers -----------------------------------------------------------------------------------------------


def test_each_due_occurrence_is_claimed_by_exactly_one_of_many_racers(store: Store) -> None:
    timers = Timers(store)
    for n in range(20):
        timers.schedule(f"t{n}", kind=TimerKind.PLAN_EXPIRY, due_at=now() - timedelta(seconds=1), run_id=f"r{n}")
    fired: list[str] = []
    lock = threading.Lock()

    def fire(timer: Timer) -> None:
        with lock:
            fired.append(timer.key)

    pollers = [TimerPoller(timers, {TimerKind.PLAN_EXPIRY: fire}, holder=f"replica-{i}") for i in range(4)]
    racers = [threading.Thread(target=p.tick) for p in pollers]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert sorted(fired) == sorted(f"t{n}" for n in range(20))  # all fired, none twice
    assert all(timers.fired(f"t{n}") == 1 for n in range(20)) and timers.pending() == []


def test_a_periodic_timer_that_missed_periods_while_down_fires_once_then_looks_ahead(store: Store) -> None:
    timers = Timers(store)
    every = timedelta(seconds=10)
    timers.schedule("updates", kind=TimerKind.STAKEHOLDER_UPDATE, due_at=now() - timedelta(minutes=5), every=every)
    fired: list[str] = []
    poller = TimerPoller(timers, {TimerKind.STAKEHOLDER_UPDATE: lambda t: fired.append(t.occurrence)}, holder="a")
    assert poller.tick() == 1 and poller.tick() == 0
    [pending] = timers.pending()
    assert now() < pending.due_at <= now() + every and len(fired) == 1


def test_a_claim_whose_holder_died_is_fired_again_by_another_replica(store: Store) -> None:
    timers = Timers(store)
    timers.schedule("remind", kind=TimerKind.CHECKLIST_REMINDER, due_at=now() - timedelta(seconds=1))
    [timer] = timers.due()
    assert timers.claim(timer, holder="replica-a")  # …and replica-a is killed before it completes
    assert timers.due() == [] and not timers.claim(timer, holder="replica-b")
    with store.engine.begin() as conn:  # time passes: the claim runs out
        from bot.store.schema import timers as table

        conn.execute(table.update().values(claimed_until=(now() - timedelta(seconds=1)).isoformat()))
    [again] = timers.due()
    assert again.occurrence == timer.occurrence  # same occurrence, so its notices dedupe
    assert timers.claim(again, holder="replica-b")


def test_a_failing_handler_leaves_the_timer_to_be_tried_again(store: Store) -> None:
    timers = Timers(store)
    timers.schedule("expire", kind=TimerKind.PLAN_EXPIRY, due_at=now() - timedelta(seconds=1))

    def broken(_timer: Timer) -> None:
        raise RuntimeError("the store blinked")

    assert TimerPoller(timers, {TimerKind.PLAN_EXPIRY: broken}, holder="a").tick() == 0
    assert [t.key for t in timers.pending()] == ["expire"] and timers.fired("expire") == 0
