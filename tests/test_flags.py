"""The flag providers against local stand-ins of each vendor's admin API, over real HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests

from bot.backends.base import FlagProvider, FlagState
from bot.backends.flags import open_flag_provider
from bot.backends.flags_flagsmith import FlagsmithFlags
from bot.backends.flags_http import HttpPolicy, retry_after
from bot.backends.flags_launchdarkly import DEFAULT_BASE_URL as LD_DEFAULT_URL
from bot.backends.flags_launchdarkly import LaunchDarklyFlags
from bot.backends.flags_unleash import UnleashFlags
from bot.backends.flags_webhook import WebhookFlags
from bot.config import FlagSettings
from bot.errors import BadRequest, FlagError
from sandbox.flag_servers import FlagsmithServer, LaunchDarklyServer, UnleashServer, WebhookServer

VENDORS = ["launchdarkly", "flagsmith", "unleash", "webhook"]
WRONG_KEY = "wrong-key-5f9c2e71d0"
WRITES = ("PATCH", "POST")


@dataclass
class Kit:
    """One vendor's stand-in, started, with a provider for it; `make` builds another (e.g. a bad key)."""

    vendor: str
    server: Any
    make: Callable[..., FlagProvider]
    sleeps: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.provider = self.make()

    def writes(self) -> list[Any]:
        return [r for r in self.server.requests if r.method in WRITES]


def _kit(vendor: str, server: Any, base_url: str, **server_opts: Any) -> Kit:
    sleeps: list[float] = []
    common: dict[str, Any] = {"session": requests.Session(), "sleep": sleeps.append}

    def make(**overrides: Any) -> FlagProvider:
        if vendor == "launchdarkly":
            opts = {"api_key": server.api_key, "project": "default", "environment": "production"}
            return LaunchDarklyFlags(**{**opts, "base_url": base_url, **common, **overrides})
        if vendor == "flagsmith":
            opts = {"api_key": server.api_key, "project": "12", "environment": server.environment_key}
            return FlagsmithFlags(**{**opts, "base_url": base_url, **common, **overrides})
        if vendor == "unleash":
            opts = {"api_key": server.api_key, "project": "default", "environment": "production"}
            return UnleashFlags(**{**opts, "base_url": base_url, **common, **overrides})
        return WebhookFlags(
            **{"api_key": server.token, "environment": "production", "base_url": base_url, **common, **overrides}
        )

    return Kit(vendor, server, make, sleeps)


@pytest.fixture
def ld() -> Iterator[LaunchDarklyServer]:
    with LaunchDarklyServer() as server:
        yield server


def _server(vendor: str, **opts: Any) -> Any:
    return {"launchdarkly": LaunchDarklyServer, "flagsmith": FlagsmithServer, "unleash": UnleashServer}.get(
        vendor, WebhookServer
    )(**opts)


@pytest.fixture(params=VENDORS)
def kit(request: pytest.FixtureRequest) -> Iterator[Kit]:
    server = _server(request.param)
    base_url = server.start()
    try:
        server.set_flag("new-checkout", True)
        server.set_flag("dark-mode", False)
        yield _kit(request.param, server, base_url)
    finally:
        server.stop()


# --- the behaviour every vendor shares ---------------------------------------------------------------


def test_states_are_read_as_the_vendor_reports_them(kit: Kit) -> None:
    kit.provider.check()
    states = kit.provider.states(["new-checkout", "dark-mode"])
    assert [(s.key, s.on) for s in states] == [("new-checkout", True), ("dark-mode", False)]
    assert not kit.writes(), "reading must never change anything"


def test_turning_off_is_idempotent(kit: Kit) -> None:
    first = kit.provider.turn_off("new-checkout")
    assert first == FlagState("new-checkout", False, first.detail)
    assert kit.server.flag_on("new-checkout") is False
    second = kit.provider.turn_off("new-checkout")  # a retried step: off stays off, no error
    assert second.on is False and kit.server.flag_on("new-checkout") is False
    assert kit.provider.states(["new-checkout"])[0].on is False


def test_restore_puts_back_the_recorded_states(kit: Kit) -> None:
    before = kit.provider.states(["new-checkout", "dark-mode"])
    for state in before:
        kit.provider.turn_off(state.key)
    assert not kit.server.flag_on("new-checkout")
    restored = [kit.provider.restore(state) for state in before]
    assert [(s.key, s.on) for s in restored] == [("new-checkout", True), ("dark-mode", False)]
    assert kit.server.flag_on("new-checkout") is True and kit.server.flag_on("dark-mode") is False


def test_a_state_nobody_knew_is_left_alone(kit: Kit) -> None:
    state = kit.provider.restore(FlagState("new-checkout", None))
    assert state.on is True and not kit.writes()


def test_an_unknown_flag_is_named(kit: Kit) -> None:
    [state] = kit.provider.states(["no-such-flag"])
    assert state.on is None and "no-such-flag" in state.detail
    with pytest.raises(FlagError) as raised:
        kit.provider.turn_off("no-such-flag")
    assert "no-such-flag" in raised.value.message


def test_a_refused_key_is_reported_without_the_key(kit: Kit) -> None:
    provider = kit.make(api_key=WRONG_KEY)
    for attempt in (provider.check, lambda: provider.turn_off("new-checkout")):
        with pytest.raises(FlagError) as raised:
            attempt()
        text = f"{raised.value} {raised.value.details}"
        assert "credentials were refused" in raised.value.message and "401" in raised.value.message
        assert WRONG_KEY not in text
    assert kit.server.flag_on("new-checkout") is True


def test_a_rate_limit_is_waited_out_then_the_call_succeeds(kit: Kit) -> None:
    kit.server.rate_limit_next(1, retry_after=2)
    assert kit.provider.turn_off("new-checkout").on is False
    assert kit.sleeps == [2.0]  # exactly what Retry-After asked
    assert kit.server.flag_on("new-checkout") is False


def test_a_rate_limit_longer_than_we_wait_is_an_error_naming_the_flag(kit: Kit) -> None:
    kit.server.rate_limit_next(1, retry_after=600)
    with pytest.raises(FlagError) as raised:
        kit.provider.turn_off("new-checkout")
    assert "429" in raised.value.message and "new-checkout" in raised.value.message
    assert "600s" in raised.value.hint and kit.sleeps == []


def test_server_errors_are_retried_a_couple_of_times(kit: Kit) -> None:
    kit.server.fail_next(2, status=503)
    assert kit.provider.states(["new-checkout"])[0].on is True
    assert kit.sleeps == [0.5, 1.0]
    kit.server.fail_next(3, status=502)
    with pytest.raises(FlagError) as raised:
        kit.provider.turn_off("new-checkout")
    assert "server error (HTTP 502)" in raised.value.message and "new-checkout" in raised.value.message


def test_an_unreachable_vendor_is_named(kit: Kit) -> None:
    kit.server.stop()
    with pytest.raises(FlagError) as raised:
        kit.provider.turn_off("new-checkout")
    assert "could not reach 127.0.0.1" in raised.value.message and "new-checkout" in raised.value.message
    assert len(kit.sleeps) == 2


# --- what each vendor's API expects, exactly --------------------------------------------------------


def test_launchdarkly_uses_a_semantic_patch_with_the_raw_token(ld: LaunchDarklyServer) -> None:
    ld.set_flag("new-checkout", True)
    ld.set_flag("new-checkout", True, environment="test")
    provider = _kit("launchdarkly", ld, ld.base_url).provider
    assert provider.turn_off("new-checkout").detail == "version 2"
    patch = ld.requests[-1]  # the PATCH answer is the updated flag: no read-back needed
    assert patch.method == "PATCH" and patch.path == "/api/v2/flags/default/new-checkout"
    assert patch.headers["Authorization"] == ld.api_key  # no "Bearer"
    assert patch.headers["LD-API-Version"] == "20240415"
    assert patch.headers["Content-Type"] == "application/json; domain-model=launchdarkly.semanticpatch"
    body = patch.json()
    assert body["environmentKey"] == "production" and body["instructions"] == [{"kind": "turnFlagOff"}]
    assert body["comment"].startswith("rollback-bot")
    assert ld.flag_on("new-checkout", environment="test") is True  # other environments untouched
    provider.states(["new-checkout"])
    assert ld.requests[-1].query == {"env": ["production"]}


def test_launchdarkly_check_names_a_missing_environment(ld: LaunchDarklyServer) -> None:
    provider = _kit("launchdarkly", ld, ld.base_url).make(environment="prod")
    with pytest.raises(FlagError, match="no environment 'prod' in project 'default'"):
        provider.check()


def test_flagsmith_finds_the_feature_by_exact_name_across_pages() -> None:
    with FlagsmithServer(page_size=1) as server:
        for name in ("checkout-v2", "new-checkout-old", "new-checkout"):
            server.set_flag(name, True)
        provider = _kit("flagsmith", server, server.base_url).provider
        assert provider.turn_off("new-checkout").on is False
        assert server.flag_on("new-checkout-old") and server.flag_on("checkout-v2")
        patch = server.requests[-1]
        assert patch.method == "PATCH" and patch.json() == {"enabled": False}
        assert patch.path.endswith("/featurestates/503/") and patch.headers["Authorization"].startswith("Api-Key ")


def test_flagsmith_check_refuses_an_environment_of_another_project() -> None:
    with FlagsmithServer(project_id=99) as server:
        provider = _kit("flagsmith", server, server.base_url).provider
        with pytest.raises(FlagError, match="belongs to project 99, not 12"):
            provider.check()


def test_unleash_toggles_the_environment_under_a_path_prefix() -> None:
    with UnleashServer(path_prefix="/unleash") as server:
        server.set_flag("new-checkout", True)
        server.set_flag("new-checkout", True, environment="development")
        provider = _kit("unleash", server, server.base_url).provider
        assert provider.turn_off("new-checkout").on is False
        posts = [r for r in server.requests if r.method == "POST"]
        assert [r.path for r in posts] == [
            "/unleash/api/admin/projects/default/features/new-checkout/environments/production/off"
        ]
        assert posts[0].headers["Authorization"] == server.api_key
        assert server.flag_on("new-checkout", environment="development") is True


def test_the_webhook_contract_body_and_bearer_token() -> None:
    with WebhookServer() as server:
        server.set_flag("new-checkout", True)
        provider = _kit("webhook", server, server.base_url).provider
        assert provider.turn_off("new-checkout").on is False
        post = next(r for r in server.requests if r.method == "POST")
        assert post.json() == {
            "flag": "new-checkout",
            "enabled": False,
            "environment": "production",
            "source": "rollback-bot",
        }
        assert post.headers["Authorization"] == "Bearer whk-sandbox-bearer-token"


def test_a_webhook_without_a_read_api_still_turns_flags_off_but_knows_no_state() -> None:
    with WebhookServer(token=None, readable=False) as server:
        server.set_flag("new-checkout", True)
        provider = _kit("webhook", server, server.base_url).make(api_key=None)
        provider.check()
        [state] = provider.states(["new-checkout"])
        assert state.on is None and "no read API" in state.detail
        after = provider.turn_off("new-checkout")
        assert after.on is None and "accepted (HTTP 204)" in after.detail
        assert server.flag_on("new-checkout") is False
        assert all("Authorization" not in r.headers for r in server.requests)
        writes = len([r for r in server.requests if r.method == "POST"])
        provider.restore(state)  # unknown before, so left alone
        assert len([r for r in server.requests if r.method == "POST"]) == writes


def test_the_stand_ins_refuse_malformed_bodies_with_400(ld: LaunchDarklyServer) -> None:
    ld.set_flag("new-checkout", True)
    semantic = {
        "Authorization": ld.api_key,
        "Content-Type": "application/json; domain-model=launchdarkly.semanticpatch",
    }
    url = f"{ld.base_url}/api/v2/flags/default/new-checkout"
    assert requests.patch(url, data=b"{not json", headers=semantic, timeout=5).status_code == 400
    plain = {**semantic, "Content-Type": "application/json"}
    assert (
        requests.patch(url, json={"instructions": [{"kind": "turnFlagOff"}]}, headers=plain, timeout=5).status_code
        == 400
    )
    with WebhookServer() as hook:
        auth = {"Authorization": "Bearer whk-sandbox-bearer-token"}
        assert requests.post(hook.base_url, json={"flag": 1}, headers=auth, timeout=5).status_code == 400


def test_a_vendor_refusal_carries_its_own_words() -> None:
    with FlagsmithServer() as server:
        server.set_flag("new-checkout", True)
        provider = FlagsmithFlags(
            api_key=server.api_key, project="12", environment="envKeyProd123", base_url=server.base_url
        )
        server.fail_next(1, status=400)
        with pytest.raises(FlagError, match=r"refused the request \(HTTP 400\) while looking up flag 'new-checkout': "):
            provider.turn_off("new-checkout")


def test_a_vendor_echoing_the_key_back_has_it_masked(kit: Kit) -> None:
    provider = kit.make(api_key=WRONG_KEY)
    kit.server.answer_next(403, {"message": f"token {WRONG_KEY} may not write to production"})
    with pytest.raises(FlagError) as raised:
        provider.turn_off("new-checkout")
    assert "credentials were refused (HTTP 403" in raised.value.message
    assert "token *** may not write" in raised.value.message and WRONG_KEY not in str(raised.value)


def test_a_webhook_answering_plain_text_is_not_an_error_and_its_state_is_read_back() -> None:
    with WebhookServer() as server:
        server.set_flag("new-checkout", True)
        provider = _kit("webhook", server, server.base_url).provider
        server.answer_next(200, b"OK")  # this "OK" did not really change anything...
        after = provider.turn_off("new-checkout")
        assert after.on is True  # ...and the bot reports what the endpoint reads back, not what it asked for
        assert [r.method for r in server.requests] == ["POST", "GET"]


def test_retry_after_understands_seconds_dates_and_launchdarkly_resets() -> None:
    assert retry_after({"Retry-After": "3"}, default=1) == 3
    assert retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:05 GMT"}, default=1, now=lambda: 1445412480.0) == 5
    assert retry_after({"X-Ratelimit-Reset": "1445412485000"}, default=1, now=lambda: 1445412480.0) == 5
    assert retry_after({}, default=1.5) == 1.5
    assert HttpPolicy().max_wait_s <= 60  # a 3 a.m. rollback never sits silently for minutes


# --- the factory ------------------------------------------------------------------------------------


def _settings(**values: Any) -> FlagSettings:
    return FlagSettings.model_validate({"keys": ["new-checkout"], **values})


@pytest.mark.parametrize(
    ("values", "api_key", "problem"),
    [
        (
            {"provider": "launchdarkly", "environment": "production"},
            "k-123456",
            "flags[0].project is required for launchdarkly",
        ),
        (
            {"provider": "launchdarkly", "project": "default"},
            "k-123456",
            "flags[0].environment is required for launchdarkly",
        ),
        (
            {"provider": "launchdarkly", "project": "p", "environment": "e"},
            None,
            "flags[0].api_key_env is required for launchdarkly",
        ),
        ({"provider": "flagsmith", "environment": "envKey"}, "k-123456", "flags[0].project is required for flagsmith"),
        (
            {"provider": "flagsmith", "project": "web", "environment": "envKey"},
            "k-123456",
            "flags[0].project must be the numeric",
        ),
        ({"provider": "flagsmith", "project": "12"}, "k-123456", "flags[0].environment is required for flagsmith"),
        ({"provider": "unleash", "environment": "production"}, "k-123456", "flags[0].base_url is required for unleash"),
        (
            {"provider": "unleash", "base_url": "https://u.example.com"},
            "k-123456",
            "flags[0].environment is required for unleash",
        ),
        ({"provider": "webhook"}, None, "flags[0].base_url is required for webhook"),
        ({"provider": "webhook", "base_url": "ftp://flags.example.com"}, None, "flags[0].base_url must be an http"),
        ({"provider": "webhook", "base_url": "https://u:pw@flags.example.com"}, None, "must not hold credentials"),
    ],
)
def test_the_factory_names_what_is_missing(values: dict[str, Any], api_key: str | None, problem: str) -> None:
    with pytest.raises(BadRequest) as raised:
        open_flag_provider(_settings(**values), api_key=api_key, index=0)
    assert problem in raised.value.message
    assert "pw@" not in str(raised.value)


def test_the_factory_builds_each_vendor_with_its_defaults() -> None:
    ld = open_flag_provider(
        _settings(provider="launchdarkly", project="default", environment="production"), api_key="k-123456"
    )
    assert isinstance(ld, LaunchDarklyFlags) and ld.http.base_url == LD_DEFAULT_URL
    assert ld.describe() == "LaunchDarkly project default, environment production"
    fs = open_flag_provider(_settings(provider="flagsmith", project="12", environment="envKey"), api_key="k-123456")
    assert isinstance(fs, FlagsmithFlags) and fs.http.base_url == "https://api.flagsmith.com"
    un = open_flag_provider(
        _settings(provider="unleash", base_url="https://u.example.com/", environment="production"), api_key="k-123456"
    )
    assert isinstance(un, UnleashFlags) and un.project == "default" and un.http.base_url == "https://u.example.com"
    hook = open_flag_provider(_settings(provider="webhook", base_url="https://flags.example.com/toggle"), api_key=None)
    assert isinstance(hook, WebhookFlags) and hook.describe() == "flag webhook at flags.example.com"
    without_index = pytest.raises(BadRequest, match=r"^flags\.project is required")
    with without_index:
        open_flag_provider(_settings(provider="launchdarkly", environment="production"), api_key="k-123456")
