"""LaunchDarkly: read, turn off and put back flags through the REST API (v2).

What this follows, from LaunchDarkly's API documentation:
- "Get feature flag": `GET /api/v2/flags/{projectKey}/{featureFlagKey}`, with the documented `env` query
  parameter to return only our environment; the state is `environments.<envKey>.on` (and its `version`).
- "Update feature flag": `PATCH /api/v2/flags/{projectKey}/{featureFlagKey}` with a semantic patch:
  `Content-Type: application/json; domain-model=launchdarkly.semanticpatch` and the body
  `{"environmentKey": …, "instructions": [{"kind": "turnFlagOff"}], "comment": …}` (`turnFlagOn` to put a
  flag back). Semantic patch says what we mean ("off") instead of a JSON-patch path into the flag, and
  the comment lands in LaunchDarkly's audit log. The reply is the updated flag.
- "Get environment": `GET /api/v2/projects/{projectKey}/environments/{environmentKey}` for `check()`.
- API overview, "Authentication": the `Authorization` header holds the access token itself (no
  "Bearer" prefix); "Versioning": `LD-API-Version: 20240415` pins the API version we were written for;
  "Rate limiting": 429 with `Retry-After` (IP limits) or `X-Ratelimit-Reset` in epoch milliseconds
  (global and route limits), both honoured by `flags_http`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests

from bot.backends.base import FlagState
from bot.backends.flags_base import OnOffFlags
from bot.backends.flags_http import HttpPolicy, VendorHttp, segment
from bot.errors import FlagError
from bot.redact import register_secret

DEFAULT_BASE_URL = "https://app.launchdarkly.com"
API_VERSION = "20240415"
SEMANTIC_PATCH = "application/json; domain-model=launchdarkly.semanticpatch"
VENDOR = "LaunchDarkly"


class LaunchDarklyFlags(OnOffFlags):
    provider = "launchdarkly"

    def __init__(
        self,
        *,
        api_key: str,
        project: str,
        environment: str,
        base_url: str = DEFAULT_BASE_URL,
        session: requests.Session | None = None,
        policy: HttpPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        comment: str = "rollback-bot: emergency rollback",
    ) -> None:
        register_secret(api_key)
        self.project = project
        self.environment = environment
        self.base_url = base_url.rstrip("/")
        self.comment = comment
        self.http = VendorHttp(
            vendor=VENDOR,
            base_url=self.base_url,
            headers={"Authorization": api_key, "LD-API-Version": API_VERSION},
            session=session,
            policy=policy,
            sleep=sleep,
            idempotent_writes=("PATCH",),  # it sets a state: repeating it changes nothing more
        )

    def describe(self) -> str:
        where = "" if self.base_url == DEFAULT_BASE_URL else f" at {self.http.host}"
        return f"{VENDOR} project {self.project}, environment {self.environment}{where}"

    def check(self) -> None:
        reply = self.http.call(
            "GET",
            f"/api/v2/projects/{segment(self.project)}/environments/{segment(self.environment)}",
            doing=f"checking environment {self.environment!r}",
            missing_ok=True,
        )
        if reply.status == 404:
            raise FlagError(
                f"{VENDOR} has no environment {self.environment!r} in project {self.project!r} (HTTP 404)",
                hint="check project and environment in [[flags]]: they are keys, not display names",
            )

    # --- internals ----------------------------------------------------------------------------------

    def _flag_path(self, key: str) -> str:
        return f"/api/v2/flags/{segment(self.project)}/{segment(key)}"

    def _read(self, key: str) -> FlagState:
        reply = self.http.call(
            "GET", self._flag_path(key), doing="reading", flag=key, params={"env": self.environment}, missing_ok=True
        )
        if reply.status == 404:
            return FlagState(key, None, f"no flag {key!r} in {VENDOR} project {self.project!r}")
        return self._state(key, reply.data)

    def _switch(self, key: str, *, on: bool) -> FlagState:
        body = {
            "environmentKey": self.environment,
            "instructions": [{"kind": "turnFlagOn" if on else "turnFlagOff"}],
            "comment": self.comment,
        }
        reply = self.http.call(
            "PATCH",
            self._flag_path(key),
            doing="turning on" if on else "turning off",
            flag=key,
            body=body,
            content_type=SEMANTIC_PATCH,
            missing_ok=True,
        )
        if reply.status == 404:
            raise FlagError(
                f"{VENDOR} has no flag {key!r} in project {self.project!r} (HTTP 404)",
                hint="check the flag key in [[flags]].keys (the key, not the display name)",
                details={"vendor": VENDOR, "flag": key, "status": 404},
            )
        # The reply is the updated flag; read it back if an older API version left our environment out.
        if isinstance(reply.data, dict) and self.environment in (reply.data.get("environments") or {}):
            return self._state(key, reply.data)
        return self._read(key)

    def _state(self, key: str, data: Any) -> FlagState:
        environments = data.get("environments") if isinstance(data, dict) else None
        config = environments.get(self.environment) if isinstance(environments, dict) else None
        if not isinstance(config, dict):
            raise FlagError(
                f"{VENDOR} flag {key!r} has no environment {self.environment!r} in project {self.project!r}",
                hint="check environment in [[flags]]: it is the environment key (e.g. production)",
                details={"vendor": VENDOR, "flag": key},
            )
        on = config.get("on")
        if not isinstance(on, bool):
            raise FlagError(
                f"{VENDOR} answered without an on/off state for flag {key!r} in {self.environment!r}",
                details={"vendor": VENDOR, "flag": key},
            )
        facts = []
        if isinstance(config.get("version"), int):
            facts.append(f"version {config['version']}")
        if isinstance(data, dict) and data.get("archived"):
            facts.append("archived")
        return FlagState(key, on, ", ".join(facts))
