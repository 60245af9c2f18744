"""Flagsmith: read, turn off and put back flags through the Admin API (v1).

What this follows, from Flagsmith's documentation ("Admin API", "Authentication" under Admin API, and
the Admin API's own OpenAPI/Swagger at /api/v1/docs/):
- Authentication: `Authorization: Api-Key <Organisation API key>`, the form the current docs give for
  organisation API keys (`Token <key>` is the older form for a user's own account token). SaaS base URL
  https://api.flagsmith.com; self-hosted instances give their own `base_url`.
- `project` is the numeric project ID; `environment` is the environment's API key (the client-side
  "Environment Key" shown on the environment's settings page), which is how the Admin API addresses
  environments: `/api/v1/environments/{environment_api_key}/…`.
- Find the feature: `GET /api/v1/projects/{project_id}/features/?search=<name>` (paginated
  `{"count", "next", "previous", "results": [{"id", "name", …}]}`; `search` is a contains-match, so the
  exact name is picked from the results).
- Find its environment-default feature state: `GET /api/v1/environments/{env_key}/featurestates/?feature=<id>`
  (this endpoint returns only states without identity or segment, i.e. the environment default).
- Change it: `PATCH /api/v1/environments/{env_key}/featurestates/{featurestate_id}/` with `{"enabled": false}`
  (`true` to put it back); the reply is the feature state.
- `check()`: `GET /api/v1/environments/{env_key}/` (its `project` must be ours).
- Rate limits: the Admin API is rate limited ("System limits"); a 429 carries `Retry-After`.

Not covered, by choice: environments with Feature Versioning (v2) or change requests enabled refuse direct
feature-state edits; Flagsmith's answer is passed on in the error (turn the flag off in the dashboard).
The experimental `/api/experiments/…/update-flag-v1/` endpoint would handle versioning, but Flagsmith marks
it as changing without notice, which is the wrong thing to depend on in an emergency tool.
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

DEFAULT_BASE_URL = "https://api.flagsmith.com"
VENDOR = "Flagsmith"
_MOST_PAGES = 20  # a search for one name never needs more; stops a misbehaving server looping us


class FlagsmithFlags(OnOffFlags):
    provider = "flagsmith"

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
    ) -> None:
        register_secret(api_key)
        self.project = project
        self.environment = environment
        self.base_url = base_url.rstrip("/")
        self.http = VendorHttp(
            vendor=VENDOR,
            base_url=self.base_url,
            headers={"Authorization": f"Api-Key {api_key}"},
            session=session,
            policy=policy,
            sleep=sleep,
            idempotent_writes=("PATCH",),  # it sets a state: repeating it changes nothing more
        )
        self._feature_ids: dict[str, int] = {}  # flag name -> feature id, stable for a feature's life

    def describe(self) -> str:
        where = "" if self.base_url == DEFAULT_BASE_URL else f" at {self.http.host}"
        return f"{VENDOR} project {self.project}, environment {self.environment}{where}"

    def check(self) -> None:
        reply = self.http.call(
            "GET",
            f"/api/v1/environments/{segment(self.environment)}/",
            doing=f"checking environment {self.environment!r}",
            missing_ok=True,
        )
        if reply.status == 404:
            raise FlagError(
                f"{VENDOR} has no environment with key {self.environment!r} (HTTP 404)",
                hint="environment in [[flags]] is the environment's API key, from its settings page",
            )
        project = reply.data.get("project") if isinstance(reply.data, dict) else None
        if project is not None and str(project) != self.project:
            raise FlagError(
                f"{VENDOR} environment {self.environment!r} belongs to project {project}, not {self.project}",
                hint="check project (the numeric project ID) and environment in [[flags]]",
            )

    # --- internals ----------------------------------------------------------------------------------

    def _read(self, key: str) -> FlagState:
        found = self._feature_state(key)
        return self._state(key, found) if found else FlagState(key, None, self._missing(key))

    def _missing(self, key: str) -> str:
        return f"no feature {key!r} in {VENDOR} project {self.project}"

    def _switch(self, key: str, *, on: bool) -> FlagState:
        found = self._feature_state(key)
        if found is None:
            raise FlagError(
                f"{VENDOR}: {self._missing(key)} (or it has no state in environment {self.environment!r})",
                hint="check the feature name in [[flags]].keys and the project ID",
                details={"vendor": VENDOR, "flag": key, "status": 404},
            )
        reply = self.http.call(
            "PATCH",
            f"/api/v1/environments/{segment(self.environment)}/featurestates/{found['id']}/",
            doing="turning on" if on else "turning off",
            flag=key,
            body={"enabled": on},
        )
        return self._state(key, reply.data if isinstance(reply.data, dict) else found)

    def _feature_state(self, key: str) -> dict[str, Any] | None:
        """The environment-default feature state of `key`, or None if there is no such feature."""
        feature_id = self._feature_id(key)
        if feature_id is None:
            return None
        reply = self.http.call(
            "GET",
            f"/api/v1/environments/{segment(self.environment)}/featurestates/",
            doing="reading",
            flag=key,
            params={"feature": str(feature_id)},
            missing_ok=True,
        )
        if reply.status == 404:
            raise FlagError(
                f"{VENDOR} has no environment with key {self.environment!r} (HTTP 404) while reading flag {key!r}",
                hint="environment in [[flags]] is the environment's API key, from its settings page",
                details={"vendor": VENDOR, "flag": key, "status": 404},
            )
        for row in _rows(reply.data):
            if row.get("feature") == feature_id and row.get("identity") is None and row.get("feature_segment") is None:
                return row
        return None

    def _feature_id(self, key: str) -> int | None:
        if key in self._feature_ids:
            return self._feature_ids[key]
        path: str | None = f"/api/v1/projects/{segment(self.project)}/features/"
        params: dict[str, str] | None = {"search": key}
        for _ in range(_MOST_PAGES):
            if path is None:
                break
            reply = self.http.call("GET", path, doing="looking up", flag=key, params=params, missing_ok=True)
            if reply.status == 404:
                raise FlagError(
                    f"{VENDOR}: no project {self.project} visible to this API key (HTTP 404) "
                    f"while looking up flag {key!r}",
                    hint="project in [[flags]] is the numeric project ID; the key must belong to its organisation",
                    details={"vendor": VENDOR, "flag": key, "status": 404},
                )
            for row in _rows(reply.data):
                if row.get("name") == key and isinstance(row.get("id"), int):
                    self._feature_ids[key] = row["id"]
                    return int(row["id"])
            path, params = self._next_page(reply.data), None
        return None

    def _next_page(self, data: Any) -> str | None:
        following = data.get("next") if isinstance(data, dict) else None
        # Only follow pages on the host we were configured for: the API key goes with every request.
        if isinstance(following, str) and following.startswith(self.base_url + "/"):
            return following
        return None

    def _state(self, key: str, row: dict[str, Any]) -> FlagState:
        enabled = row.get("enabled")
        if not isinstance(enabled, bool):
            raise FlagError(
                f"{VENDOR} answered without an enabled state for flag {key!r}", details={"vendor": VENDOR, "flag": key}
            )
        return FlagState(key, enabled, f"feature state {row.get('id')}")


def _rows(data: Any) -> list[dict[str, Any]]:
    """Results from a paginated (`{"results": [...]}`) or plain list answer."""
    rows = data.get("results") if isinstance(data, dict) else data
    return [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []
