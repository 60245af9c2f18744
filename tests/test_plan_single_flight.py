"""A burst of identical plan requests makes one fetch and one scan; each requester gets a plan in their name."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bot.backends.base import Commit
from bot.engine import lifecycle
from bot.engine.plan import RollbackRequest
from bot.services import Services
from sandbox.scenario import Incident


class CountingRepo:
    """The environment's real git repository, counting (and slowing) fetches so the burst overlaps."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.fetches = 0
        self._lock = threading.Lock()

    def fetch(self) -> Commit:
        with self._lock:
            self.fetches += 1
        time.sleep(0.3)
        result: Commit = self.real.fetch()
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_identical_requests_at_once_share_one_plan_and_a_later_one_reads_fresh(
    incident: Incident, services: Services
) -> None:
    repo = CountingRepo(services.repo("prod"))
    services._repos["prod"] = repo  # type: ignore[assignment]
    people = [f"U0PERSON{i}" for i in range(8)]
    start = threading.Barrier(len(people))

    def ask(person: str) -> tuple[str, str]:
        start.wait()
        plan = lifecycle.make_request_plan(services, RollbackRequest(env="prod", requested_by=person, dry_run=True))
        return plan.requested_by, plan.hash

    with ThreadPoolExecutor(len(people)) as pool:
        answers = list(pool.map(ask, people))
    assert [who for who, _ in answers] == people  # each in their own name
    assert len({digest for _, digest in answers}) == 1  # the same plan
    assert repo.fetches == 1  # computed once

    lifecycle.make_request_plan(services, RollbackRequest(env="prod", requested_by="U0LATE", dry_run=True))
    assert repo.fetches == 2  # nothing cached after the burst: a later request reads the remote again
    different = RollbackRequest(env="prod", requested_by="U0OTHER", dry_run=True, db="none")
    assert lifecycle.make_request_plan(services, different).database.action == "none"
