"""Acks stay fast under a burst of requests: reads shared by requests that ask at once, planning that lets
a burst of acks pass first, and a heap the garbage collector does not walk whole.

All three exist because Python threads share one interpreter lock and this machine's cores: whatever
else the process does while Slack waits for acks (the same store read made by many listener threads at
once, plans computed in the background, a full garbage collection) slows every ack down.

`Coalesced`: `/rollback status` reads the store before its ack (the answer rides on it). A caller
joins the read that has not started yet, or opens it; a read starts once the one before it for the
same key is over, so it starts after every caller that joined it arrived. No answer is older than its
request, and nothing is kept: a request that comes later makes a new read. (Unlike
bot.engine.single_flight, which joins work already running, a caller never gets a result that was
being computed before it asked.)

`freeze_startup_heap`: a full collection of the cyclic garbage collector walks every object the
process holds, and holds the interpreter lock while it does: in the benchmark's bot process (Bolt, SQLAlchemy,
pydantic, GitPython, the config: about 120,000 objects), 70 to 120 ms during which no ack moves. The
objects the app is built from live as long as the process, so they are moved out of the collector's
sight once, when the app is wired (`gc.freeze()`, after a collection so that no garbage is kept);
later collections walk only what came after. They are still freed by reference counting.

`AckActivity`: every verified request touches it (a Bolt middleware, after the signature check, so a
forged request cannot hold anything up); background planning waits until no request has come for
`quiet_s`, but never longer than `max_delay_s` after it was asked for, so a steady stream of requests
delays a plan by at most that, and never starves it.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")

QUIET_S = 0.05  # no request for this long: the burst of acks is over
MAX_DELAY_S = 1.0  # a plan starts at most this long after it was asked for, burst or not


class _Batch(Generic[T]):
    def __init__(self) -> None:
        self.result: Future[T] = Future()
        self.callers = 1


_frozen = threading.Lock()
_froze = False


def freeze_startup_heap() -> bool:
    """Once per process: collect, then exempt every object alive now from later full collections."""
    global _froze
    with _frozen:
        if _froze:
            return False
        gc.collect()
        gc.freeze()
        _froze = True
        return True


class Coalesced(Generic[T]):
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._open: dict[Hashable, _Batch[T]] = {}  # per key: the read not started yet, open to joiners
        self._running: set[Hashable] = set()  # keys whose read is running now

    def read(self, key: Hashable, work: Callable[[], T]) -> T:
        """`work()`'s result, from a call that started after this one was made; shared with concurrent callers."""
        with self._lock:
            batch = self._open.get(key)
            leader = batch is None
            if batch is None:
                batch = self._open[key] = _Batch()
            else:
                batch.callers += 1
        if not leader:
            return batch.result.result()  # the leader's answer, or its exception
        with self._lock:
            while key in self._running:  # one read per key at a time: the next waits, gathering callers
                self._lock.wait()
            self._running.add(key)
            del self._open[key]  # closed: whoever comes now opens the next read
        try:
            batch.result.set_result(work())
        except BaseException as error:
            batch.result.set_exception(error)
        finally:
            with self._lock:
                self._running.discard(key)
                self._lock.notify_all()
        return batch.result.result()

    def waiting(self, key: Hashable) -> int:
        """How many callers the next read of `key` (not started yet) will answer."""
        with self._lock:
            batch = self._open.get(key)
            return batch.callers if batch else 0


class AckActivity:
    def __init__(
        self, *, quiet_s: float = QUIET_S, max_delay_s: float = MAX_DELAY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.quiet_s = quiet_s
        self.max_delay_s = max_delay_s
        self._clock = clock
        self._last = float("-inf")  # when a request last came (one float: assigned atomically, no lock)

    def touch(self) -> None:
        """A verified request is being answered."""
        self._last = self._clock()

    def now(self) -> float:
        return self._clock()

    def wait_quiet(self, *, asked_at: float, sleep: Callable[[float], object] = time.sleep) -> float:
        """Wait until no request came for `quiet_s`, or until `max_delay_s` after `asked_at`; return how long."""
        started = self._clock()
        deadline = asked_at + self.max_delay_s
        while True:
            now = self._clock()
            quiet_at = self._last + self.quiet_s
            if now >= quiet_at or now >= deadline:
                return now - started
            sleep(min(quiet_at, deadline) - now)
