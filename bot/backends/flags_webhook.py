"""A custom flag API: the seed script's `FEATURE_FLAG_TOGGLE_URL`, as a contract your endpoint implements.

Configure it as `provider = "webhook"` with `base_url` (the endpoint, required), optionally `api_key_env`
(a bearer token) and `environment` (passed through to you). The contract:

Turn a flag off (or back on, for "undo flags"):

    POST {base_url}
    Authorization: Bearer <token>            (only when api_key_env is configured)
    Content-Type: application/json

    {"flag": "new-checkout", "enabled": false, "environment": "production", "source": "rollback-bot"}

- any 2xx means done, whatever the body says. It MUST be idempotent: off stays off, and the bot repeats
  the same request after a timeout, a connection error or a 5xx (twice at most);
- it MAY answer `{"enabled": <bool>}`: the state after, which the bot reports and checks;
- 404 means "no such flag" (the error names it); 401/403 mean the token was refused;
- 429 with `Retry-After: <seconds>` is honoured (up to 30 s, a few times).

Read a flag (optional, but without it the bot cannot record what to put back):

    GET {base_url}?flag=new-checkout&environment=production
    Authorization: Bearer <token>

- 200 `{"enabled": <bool>}`: the flag's state;
- 405 or 501: this endpoint has no read API. The bot then records each flag's state as unknown (`on=None`),
  still turns flags off, and "undo flags" leaves them alone, since it cannot know what they were;
- 404: no such flag (recorded as unknown).

`environment` is null in the body and absent from the query when it is not configured. Before a rollback
the bot's safety check reads a made-up flag, `rollback-bot-connectivity-check`: any answer but 401/403, a
5xx or no answer at all counts as "the endpoint is there and takes the token".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import requests

from bot.backends.base import FlagState
from bot.backends.flags_base import OnOffFlags
from bot.backends.flags_http import HttpPolicy, VendorHttp
from bot.errors import FlagError
from bot.redact import register_secret

VENDOR = "flag webhook"
SOURCE = "rollback-bot"
_NO_READ_API = (405, 501)


class WebhookFlags(OnOffFlags):
    provider = "webhook"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None = None,
        environment: str | None = None,
        session: requests.Session | None = None,
        policy: HttpPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        register_secret(api_key)
        self.url = base_url
        self.environment = environment
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = VendorHttp(
            vendor=VENDOR,
            base_url=base_url,
            headers=headers,
            session=session,
            policy=policy,
            sleep=sleep,
            idempotent_writes=("POST",),  # the contract above: the endpoint MUST be idempotent
        )
        self._readable: bool | None = None  # unknown until the endpoint answers a GET

    def describe(self) -> str:
        where = f", environment {self.environment}" if self.environment else ""
        return f"flag webhook at {self.http.host}{where}"

    def check(self) -> None:
        # There is no side-effect-free call in the contract besides the optional read; a read of a
        # made-up flag proves the endpoint answers and the token is accepted (404 and 405 are fine).
        self._get("rollback-bot-connectivity-check")

    # --- internals ----------------------------------------------------------------------------------

    def _get(self, key: str) -> tuple[int, Any]:
        params = {"flag": key, **({"environment": self.environment} if self.environment else {})}
        try:
            reply = self.http.call(
                "GET", self.url, doing="reading", flag=key, params=params, missing_ok=True, lenient=True
            )
        except FlagError as error:
            if error.details.get("status") in _NO_READ_API:
                self._readable = False
                return int(error.details["status"]), None
            raise
        self._readable = True
        return reply.status, reply.data

    def _read(self, key: str) -> FlagState:
        if self._readable is False:
            return FlagState(key, None, "the endpoint has no read API")
        status, data = self._get(key)
        if status in _NO_READ_API:
            return FlagState(key, None, "the endpoint has no read API")
        if status == 404:
            return FlagState(key, None, f"the endpoint does not know flag {key!r}")
        enabled = data.get("enabled") if isinstance(data, dict) else None
        if isinstance(enabled, bool):
            return FlagState(key, enabled, "")
        return FlagState(key, None, "the endpoint answered without an enabled state")

    def _switch(self, key: str, *, on: bool) -> FlagState:
        body = {"flag": key, "enabled": on, "environment": self.environment, "source": SOURCE}
        reply = self.http.call(
            "POST",
            self.url,
            doing="turning on" if on else "turning off",
            flag=key,
            body=body,
            missing_ok=True,
            lenient=True,
        )
        if reply.status == 404:
            raise FlagError(
                f"{VENDOR} at {self.http.host} does not know flag {key!r} (HTTP 404)",
                hint="check the flag name in [[flags]].keys",
                details={"vendor": VENDOR, "flag": key, "status": 404},
            )
        enabled = reply.data.get("enabled") if isinstance(reply.data, dict) else None
        if isinstance(enabled, bool):
            return FlagState(key, enabled, f"reported by the endpoint (HTTP {reply.status})")
        after = self._read(key)
        if after.on is not None:
            return after
        return FlagState(key, None, f"accepted (HTTP {reply.status}); the endpoint does not report flag state")
