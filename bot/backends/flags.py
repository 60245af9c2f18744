"""One `[[environments.<env>.flags]]` entry → the FlagProvider for its vendor.

Each vendor needs different fields (LaunchDarkly project and environment keys, a Flagsmith project ID and
environment key, an Unleash instance URL, a webhook URL); a missing one is refused here, naming the key,
before any request is made, rather than surfacing later as a confusing 404 mid-rollback.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import requests

from bot.backends.base import FlagProvider
from bot.backends.flags_flagsmith import DEFAULT_BASE_URL as FLAGSMITH_PUBLIC_API
from bot.backends.flags_flagsmith import FlagsmithFlags
from bot.backends.flags_launchdarkly import DEFAULT_BASE_URL as LD_PUBLIC_API
from bot.backends.flags_launchdarkly import LaunchDarklyFlags
from bot.backends.flags_unleash import DEFAULT_PROJECT as UNLEASH_DEFAULT_PROJECT
from bot.backends.flags_unleash import UnleashFlags
from bot.backends.flags_webhook import WebhookFlags
from bot.config import FlagSettings
from bot.errors import BadRequest
from bot.redact import redact, register_secret


def open_flag_provider(
    settings: FlagSettings,
    *,
    api_key: str | None,
    index: int | None = None,
    session: requests.Session | None = None,
) -> FlagProvider:
    """The provider for one flags entry; `index` (its position in the list) makes errors point at it."""
    register_secret(api_key)
    name = f"flags[{index}]" if index is not None else "flags"
    vendor = settings.provider

    def required(field: str, value: str | None, why: str = "") -> str:
        if value:
            return value
        raise BadRequest(f"{name}.{field} is required for {vendor}", hint=why or f"set {field} in this [[flags]] entry")

    base_url = _base_url(name, settings.base_url)
    if vendor == "launchdarkly":
        project = required("project", settings.project, "the LaunchDarkly project key, e.g. default")
        environment = required("environment", settings.environment, "the LaunchDarkly environment key, e.g. production")
        key = required("api_key_env", api_key, "the variable holding a LaunchDarkly API access token")
        url = base_url or LD_PUBLIC_API
        return LaunchDarklyFlags(api_key=key, project=project, environment=environment, base_url=url, session=session)
    if vendor == "flagsmith":
        project = required("project", settings.project, "the numeric Flagsmith project ID")
        if not project.isdigit():
            raise BadRequest(
                f"{name}.project must be the numeric Flagsmith project ID, not {project!r}",
                hint="find it in the dashboard URL: /project/<ID>/…",
            )
        environment = required("environment", settings.environment, "the environment's API key (its settings page)")
        key = required("api_key_env", api_key, "the variable holding a Flagsmith Organisation API key")
        url = base_url or FLAGSMITH_PUBLIC_API
        return FlagsmithFlags(api_key=key, project=project, environment=environment, base_url=url, session=session)
    if vendor == "unleash":
        url = required(
            "base_url",
            base_url,
            "Unleash has no public API: give your instance's URL, e.g. https://unleash.example.com",
        )
        environment = required("environment", settings.environment, "the Unleash environment name, e.g. production")
        key = required("api_key_env", api_key, "the variable holding an Unleash admin or personal access token")
        project = settings.project or UNLEASH_DEFAULT_PROJECT
        return UnleashFlags(api_key=key, base_url=url, project=project, environment=environment, session=session)
    if vendor == "webhook":
        url = required("base_url", base_url, "the URL of your flag endpoint (the seed's FEATURE_FLAG_TOGGLE_URL)")
        return WebhookFlags(base_url=url, api_key=api_key, environment=settings.environment, session=session)
    raise BadRequest(
        f"{name}.provider {vendor!r} is not supported", hint="one of: launchdarkly, flagsmith, unleash, webhook"
    )


def _base_url(name: str, value: str | None) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadRequest(redact(f"{name}.base_url must be an http:// or https:// URL, not {value!r}"))
    if parts.username or parts.password:
        # A password in the URL would travel in logs and Slack messages; keys belong in api_key_env.
        raise BadRequest(
            f"{name}.base_url must not hold credentials", hint="put the API key in the variable api_key_env names"
        )
    return value
