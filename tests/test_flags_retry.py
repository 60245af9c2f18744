"""The flag vendors' retries are urllib3's Retry on the requests Session: what each case does, over real HTTP."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from bot.backends.flags_http import HttpPolicy, VendorHttp, VendorRetry
from bot.backends.flags_launchdarkly import LaunchDarklyFlags
from bot.errors import FlagError
from sandbox.flag_servers import LaunchDarklyServer


@pytest.fixture
def ld() -> Iterator[LaunchDarklyServer]:
    with LaunchDarklyServer() as server:
        server.set_flag("new-checkout", True)
        yield server


def provider(server: LaunchDarklyServer, sleeps: list[float], **policy: Any) -> LaunchDarklyFlags:
    return LaunchDarklyFlags(
        api_key=server.api_key,
        project="default",
        environment="production",
        base_url=server.base_url,
        session=requests.Session(),
        sleep=sleeps.append,
        policy=HttpPolicy(**policy),
    )


def test_the_session_carries_urllib3_retry_for_the_vendor_host_only(ld: LaunchDarklyServer) -> None:
    flags = provider(ld, [])
    adapter = flags.http.session.get_adapter(ld.base_url + "/api/v2/flags/default/x")
    retry = adapter.max_retries  # type: ignore[attr-defined]
    assert isinstance(retry, VendorRetry)
    assert retry.allowed_methods == {"GET", "HEAD", "PATCH"}  # LaunchDarkly's semantic patch sets a state
    assert {429, 500, 502, 503, 504} <= set(retry.status_forcelist) and 501 not in retry.status_forcelist
    assert retry.respect_retry_after_header and retry.backoff_factor == 0.5
    other = flags.http.session.get_adapter("https://elsewhere.example.com/")
    assert not isinstance(other.max_retries, VendorRetry)  # type: ignore[attr-defined]


def test_launchdarkly_reset_header_is_waited_out(ld: LaunchDarklyServer) -> None:
    sleeps: list[float] = []
    reset_ms = int((time.time() + 3) * 1000)
    ld.answer_next(429, {"message": "slow down"}, {"X-Ratelimit-Reset": str(reset_ms)})
    assert provider(ld, sleeps).turn_off("new-checkout").on is False
    assert len(sleeps) == 1 and 1.5 < sleeps[0] <= 3.0


def test_rate_limits_have_their_own_budget(ld: LaunchDarklyServer) -> None:
    sleeps: list[float] = []
    ld.rate_limit_next(3, retry_after=1)
    ld.fail_next(2, status=503)  # then two server errors: a separate budget of two retries
    assert provider(ld, sleeps).states(["new-checkout"])[0].on is True
    assert sleeps == [1.0, 1.0, 1.0, 0.5, 1.0]
    ld.rate_limit_next(4, retry_after=1)
    with pytest.raises(FlagError, match=r"rate limited \(HTTP 429\)"):
        provider(ld, sleeps).states(["new-checkout"])


def test_not_implemented_is_not_retried(ld: LaunchDarklyServer) -> None:
    sleeps: list[float] = []
    ld.fail_next(1, status=501)
    with pytest.raises(FlagError, match=r"server error \(HTTP 501\)"):
        provider(ld, sleeps).turn_off("new-checkout")
    assert sleeps == [] and len(ld.requests) == 1


def test_a_write_not_declared_idempotent_is_not_repeated_after_a_5xx(ld: LaunchDarklyServer) -> None:
    sleeps: list[float] = []
    http = VendorHttp(
        vendor="Example", base_url=ld.base_url, headers={}, session=requests.Session(), sleep=sleeps.append
    )
    ld.fail_next(1, status=503)
    with pytest.raises(FlagError, match=r"server error \(HTTP 503\)"):
        http.call("POST", "/anything", doing="creating", body={"x": 1})
    assert sleeps == [] and [r.method for r in ld.requests] == ["POST"]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections (the kernel's backlog) and never answers: every read times out."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_a_read_timeout_is_retried_then_named(silent_server: str) -> None:
    sleeps: list[float] = []
    flags = LaunchDarklyFlags(
        api_key="k-123456",
        project="default",
        environment="production",
        base_url=silent_server,
        session=requests.Session(),
        sleep=sleeps.append,
        policy=HttpPolicy(timeout_s=0.2),
    )
    with pytest.raises(FlagError) as raised:
        flags.states(["new-checkout"])
    assert "timed out" in raised.value.message and "new-checkout" in raised.value.message
    assert sleeps == [0.5, 1.0]
