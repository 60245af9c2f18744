"""Durable timers: plan expiry, stakeholder updates, checklist reminders live in the store, not in memory.

Every serving replica runs a `TimerPoller`. A due timer is *claimed* with one conditional update (its
key, its due time, unclaimed or with an expired claim): exactly one replica wins each occurrence. The
winner fires it and then completes it (a one-shot is done; a periodic one moves to its next due time).

A replica that dies between claim and completion leaves a claim that runs out after `CLAIM_FOR`; the
occurrence is then fired again by another replica. Firing is therefore at-least-once, and every
handler makes it exactly-once in effect: state changes are conditional writes, and notices carry an
outbox dedupe key made of the timer's key and the occurrence's due time.

A restart fires what became due while the bot was down, once: a periodic timer that missed several
periods fires one occurrence and moves on to the next due time after now.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from bot.store import Store, iso, now, parse_iso
from bot.store.schema import timers

log = logging.getLogger(__name__)
CLAIM_FOR = timedelta(seconds=60)


class TimerKind(StrEnum):
    PLAN_EXPIRY = "plan_expiry"
    STAKEHOLDER_UPDATE = "stakeholder_update"
    CHECKLIST_REMINDER = "checklist_reminder"
    BREAK_GLASS_OPEN = "break_glass_open"  # no approver answered in time: offer break-glass on the plan
    BREAK_GLASS_REVIEW = "break_glass_review"  # periodic, until an approver signs the break-glass review off
    DRILL = "drill"  # periodic per environment with [drill] every: a restore drill (bot/engine/drill_schedule.py)


@dataclass(frozen=True)
class Timer:
    key: str
    kind: TimerKind
    run_id: str | None
    payload: dict[str, Any]
    due_at: datetime
    every: timedelta | None

    @property
    def occurrence(self) -> str:
        """Names this firing: the dedupe key of whatever it sends."""
        return f"timer:{self.key}@{iso(self.due_at)}"


class Timers:
    def __init__(self, store: Store) -> None:
        self.store = store

    def schedule(
        self,
        key: str,
        *,
        kind: TimerKind,
        due_at: datetime,
        run_id: str | None = None,
        payload: dict[str, Any] | None = None,
        every: timedelta | None = None,
        replace: bool = True,
    ) -> bool:
        """Add a timer, or (replace=True) reset a pending one with that key. False if kept as it was."""
        values = {
            "kind": kind.value,
            "run_id": run_id,
            "payload": json.dumps(payload or {}),
            "due_at": iso(due_at),
            "every_s": every.total_seconds() if every else None,
            "state": "pending",
            "claimed_by": None,
            "claimed_until": None,
        }
        try:
            with self.store.transaction() as conn:
                conn.execute(timers.insert().values(key=key, created_at=iso(), fired=0, **values))
            return True
        except IntegrityError:
            if not replace:
                return False
        with self.store.transaction() as conn:
            return bool(conn.execute(timers.update().where(timers.c.key == key).values(**values)).rowcount)

    def cancel(self, key: str) -> None:
        with self.store.transaction() as conn:
            conn.execute(
                timers.update()
                .where(timers.c.key == key, timers.c.state == "pending")
                .values(state="cancelled", done_at=iso())
            )

    def cancel_run(self, run_id: str, *, kind: TimerKind | None = None) -> None:
        query = timers.update().where(timers.c.run_id == run_id, timers.c.state == "pending")
        if kind is not None:
            query = query.where(timers.c.kind == kind.value)
        with self.store.transaction() as conn:
            conn.execute(query.values(state="cancelled", done_at=iso()))

    def due(self, *, limit: int = 50) -> list[Timer]:
        moment = iso()
        with self.store.transaction() as conn:
            rows = conn.execute(
                timers.select()
                .where(
                    timers.c.state == "pending",
                    timers.c.due_at <= moment,
                    sa.or_(timers.c.claimed_until.is_(None), timers.c.claimed_until < moment),
                )
                .order_by(timers.c.due_at)
                .limit(limit)
            ).mappings()
            return [_timer(row) for row in rows]

    def claim(self, timer: Timer, *, holder: str) -> bool:
        """One conditional update: True for exactly one claimant of this occurrence."""
        moment = now()
        with self.store.transaction() as conn:
            return bool(
                conn.execute(
                    timers.update()
                    .where(
                        timers.c.key == timer.key,
                        timers.c.due_at == iso(timer.due_at),
                        timers.c.state == "pending",
                        sa.or_(timers.c.claimed_until.is_(None), timers.c.claimed_until < iso(moment)),
                    )
                    .values(claimed_by=holder, claimed_until=iso(moment + CLAIM_FOR))
                ).rowcount
            )

    def complete(self, timer: Timer, *, holder: str) -> None:
        """Done (one-shot), or moved to its next due time after now (periodic)."""
        values: dict[str, Any] = {"claimed_by": None, "claimed_until": None, "fired": timers.c.fired + 1}
        if timer.every is None:
            values |= {"state": "done", "done_at": iso()}
        else:
            following = timer.due_at + timer.every
            while following <= now():  # missed periods while down: one firing, then the next one ahead
                following += timer.every
            values["due_at"] = iso(following)
        with self.store.transaction() as conn:
            conn.execute(
                timers.update()
                .where(timers.c.key == timer.key, timers.c.due_at == iso(timer.due_at), timers.c.claimed_by == holder)
                .values(**values)
            )

    def release(self, timer: Timer, *, holder: str, retry_in: timedelta) -> None:
        """The handler failed: try this occurrence again a little later (by any replica)."""
        with self.store.transaction() as conn:
            conn.execute(
                timers.update()
                .where(timers.c.key == timer.key, timers.c.claimed_by == holder)
                .values(claimed_by=None, claimed_until=iso(now() + retry_in))
            )

    def pending(self, *, run_id: str | None = None) -> list[Timer]:
        query = timers.select().where(timers.c.state == "pending").order_by(timers.c.due_at)
        if run_id is not None:
            query = query.where(timers.c.run_id == run_id)
        with self.store.transaction() as conn:
            return [_timer(row) for row in conn.execute(query).mappings()]

    def fired(self, key: str) -> int:
        with self.store.transaction() as conn:
            found = conn.execute(sa.select(timers.c.fired).where(timers.c.key == key)).first()
        return int(found[0]) if found else 0


Handler = Callable[[Timer], None]


class TimerPoller:
    """A thread that fires due timers through `handlers`, claimed so each fires once across replicas."""

    def __init__(
        self,
        timers_: Timers,
        handlers: Mapping[TimerKind, Handler],
        *,
        holder: str,
        every_s: float = 1.0,
        on_tick: Callable[[], None] | None = None,
    ) -> None:
        self.timers = timers_
        self.handlers = handlers
        self.holder = holder
        self.every_s = every_s
        self.on_tick = on_tick  # extra periodic work (the interrupted-run watch)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._busy = threading.Lock()
        self.ticks = 0

    def start(self) -> TimerPoller:
        self._thread = threading.Thread(target=self._loop, name="timer-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def busy(self) -> bool:
        """Ticking now, or not yet ticked once (what became due while the bot was down fires first)."""
        return self._busy.locked() or self.ticks == 0

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._stop.wait(self.every_s)

    def tick(self) -> int:
        """Fire what is due now; return how many this replica fired."""
        fired = 0
        with self._busy:
            try:
                if self.on_tick is not None:
                    self.on_tick()
                for timer in self.timers.due():
                    if self._stop.is_set():
                        break
                    if not self.timers.claim(timer, holder=self.holder):
                        continue  # another replica has it
                    try:
                        self.handlers[timer.kind](timer)
                    except Exception:
                        log.exception("timer %s failed; it will be tried again", timer.key)
                        self.timers.release(timer, holder=self.holder, retry_in=timedelta(seconds=10))
                        continue
                    self.timers.complete(timer, holder=self.holder)
                    fired += 1
            except Exception:  # the store is down for a moment: try again on the next tick
                log.warning("timer poller tick failed", exc_info=True)
            self.ticks += 1
        return fired


def _timer(row: Any) -> Timer:
    due = parse_iso(row["due_at"])
    assert due is not None
    return Timer(
        key=row["key"],
        kind=TimerKind(row["kind"]),
        run_id=row["run_id"],
        payload=json.loads(row["payload"] or "{}"),
        due_at=due,
        every=timedelta(seconds=row["every_s"]) if row["every_s"] else None,
    )
