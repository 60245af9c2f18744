"""Identical work asked for at the same time is done once: the first caller computes, the others wait for it.

Used for plans: a burst of identical `/rollback prod --dry-run` (same environment and options) makes
one git fetch and one migration scan, not one per request. Nothing is cached once the work is done,
so a request that arrives later reads the remote fresh.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flying: dict[Hashable, Future[T]] = {}

    def do(self, key: Hashable, work: Callable[[], T]) -> T:
        with self._lock:
            future = self._flying.get(key)
            leader = future is None
            if future is None:
                future = self._flying[key] = Future()
        if not leader:
            return future.result()  # the leader's answer, or its exception
        try:
            future.set_result(work())
        except BaseException as error:
            future.set_exception(error)
        finally:
            with self._lock:
                del self._flying[key]
        return future.result()
