"""Unleash: read, turn off and put back flags through the Admin API.

What this follows, from Unleash's API reference (docs.getunleash.io, "Admin API"):
- "Get a feature": `GET /api/admin/projects/{projectId}/features/{featureName}`; the answer's
  `environments` is a list of `{"name", "enabled", …}`, one per environment the project uses.
- "Disable a feature flag": `POST /api/admin/projects/{projectId}/features/{featureName}/environments/{environment}/off`
  and "Enable a feature flag": the same path ending in `/on`; no body. Versions differ in what they answer
  (an empty 200 or the feature), so the state after is read back rather than taken from the reply.
- "Get the environment" (`GET /api/admin/environments/{name}`) for `check()`.
- Authentication: the `Authorization` header holds the API token itself (an admin token or a personal
  access token, e.g. `*:*.unleash-admin-token`), no prefix.
- Unleash is self-hosted (or a per-customer hosted URL), so there is no public default: `base_url` is the
  instance's root (the part before `/api/…`, including any path prefix). `project` defaults to "default",
  the project every Unleash instance starts with.

Unknown flag: Unleash answers 404 (`{"name": "NotFoundError", "message": …}`). With change requests
enabled for the environment, Unleash refuses direct toggles; its message is passed on in the error.
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

DEFAULT_PROJECT = "default"
VENDOR = "Unleash"


class UnleashFlags(OnOffFlags):
    provider = "unleash"

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        environment: str,
        project: str = DEFAULT_PROJECT,
        session: requests.Session | None = None,
        policy: HttpPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        register_secret(api_key)
        self.project = project
        self.environment = environment
        self.http = VendorHttp(
            vendor=VENDOR,
            base_url=base_url,
            headers={"Authorization": api_key},
            session=session,
            policy=policy,
            sleep=sleep,
            idempotent_writes=("POST",),  # it sets a state: repeating it changes nothing more
        )

    def describe(self) -> str:
        return f"{VENDOR} project {self.project}, environment {self.environment} at {self.http.host}"

    def check(self) -> None:
        reply = self.http.call(
            "GET",
            f"/api/admin/environments/{segment(self.environment)}",
            doing=f"checking environment {self.environment!r}",
            missing_ok=True,
        )
        if reply.status == 404:
            raise FlagError(
                f"{VENDOR} at {self.http.host} has no environment {self.environment!r} (HTTP 404)",
                hint="check environment in [[flags]] (the environment's name, e.g. production)",
            )

    # --- internals ----------------------------------------------------------------------------------

    def _feature_path(self, key: str) -> str:
        return f"/api/admin/projects/{segment(self.project)}/features/{segment(key)}"

    def _read(self, key: str) -> FlagState:
        reply = self.http.call("GET", self._feature_path(key), doing="reading", flag=key, missing_ok=True)
        if reply.status == 404:
            return FlagState(key, None, f"no flag {key!r} in {VENDOR} project {self.project!r}")
        return self._state(key, reply.data)

    def _switch(self, key: str, *, on: bool) -> FlagState:
        reply = self.http.call(
            "POST",
            f"{self._feature_path(key)}/environments/{segment(self.environment)}/{'on' if on else 'off'}",
            doing="turning on" if on else "turning off",
            flag=key,
            missing_ok=True,
        )
        if reply.status == 404:
            raise FlagError(
                f"{VENDOR} has no flag {key!r} in project {self.project!r} "
                f"(or no environment {self.environment!r}) (HTTP 404)",
                hint="check the flag name in [[flags]].keys, and project and environment",
                details={"vendor": VENDOR, "flag": key, "status": 404},
            )
        return self._read(key)

    def _state(self, key: str, data: Any) -> FlagState:
        environments = data.get("environments") if isinstance(data, dict) else None
        for row in environments if isinstance(environments, list) else []:
            if isinstance(row, dict) and row.get("name") == self.environment and isinstance(row.get("enabled"), bool):
                strategies = row.get("strategies")
                detail = f"{len(strategies)} strategies" if isinstance(strategies, list) else ""
                return FlagState(key, bool(row["enabled"]), detail)
        raise FlagError(
            f"{VENDOR} flag {key!r} has no environment {self.environment!r} (project {self.project!r} does not use it)",
            hint="check environment in [[flags]], and that the project has that environment enabled",
            details={"vendor": VENDOR, "flag": key},
        )
