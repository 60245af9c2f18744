"""Health checks against a real HTTP endpoint: the first try at once, no waiting for nothing on a healthy app."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.backends.base import HealthSpec
from bot.backends.health import HttpHealthChecker
from sandbox.health_server import HealthServer


@pytest.fixture
def app() -> Iterator[tuple[HealthServer, str]]:
    server = HealthServer()
    url = server.start()
    try:
        yield server, url
    finally:
        server.stop()


def checker(waits: list[float]) -> HttpHealthChecker:
    return HttpHealthChecker(sleep=waits.append)  # the waits are recorded, not slept: what is checked is the plan


def test_a_healthy_app_is_confirmed_with_only_the_short_pass_interval(app: tuple[HealthServer, str]) -> None:
    _, url = app
    waits: list[float] = []
    spec = HealthSpec(url=url, attempts=10, interval_s=3.0, consecutive=2, pass_interval_s=0.25)
    result = checker(waits).check(spec)
    assert result.healthy and result.attempts == 2
    assert waits == [0.25]  # first try at once; the 3 s retry interval is never paid by a healthy app


def test_failures_wait_the_retry_interval_and_passes_the_pass_interval(app: tuple[HealthServer, str]) -> None:
    server, url = app
    server.answer_next(503, 503)
    waits: list[float] = []
    spec = HealthSpec(url=url, attempts=10, interval_s=3.0, consecutive=3, pass_interval_s=0.5)
    result = checker(waits).check(spec)
    assert result.healthy and result.attempts == 5
    assert waits == [3.0, 3.0, 0.5, 0.5]


def test_it_fails_at_once_when_too_few_tries_are_left_for_the_streak(app: tuple[HealthServer, str]) -> None:
    server, url = app
    server.answer_next(503, 503, 503)
    waits: list[float] = []
    result = checker(waits).check(HealthSpec(url=url, attempts=4, interval_s=3.0, consecutive=2))
    assert not result.healthy and result.attempts == 3 and waits == [3.0, 3.0]
