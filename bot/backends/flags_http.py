"""The one HTTP path every flag vendor goes through: timeouts, bounded retries, errors people can act on.

Why one place: a rollback at 3 a.m. meets exactly the failures this handles (a vendor rate limit while
several flags are turned off in a row, a blip on the network, a 502 from a load balancer), and four
vendors each handling them slightly differently would mean four ways to be wrong.

Retries are urllib3's `Retry`, mounted on the vendor's requests.Session for its host (`VendorRetry`):
- every request has a timeout (`HttpPolicy.timeout_s`);
- 429: wait what `Retry-After` asks (seconds or an HTTP date, parsed by urllib3; LaunchDarkly's
  `X-Ratelimit-Reset`, epoch milliseconds, when there is no `Retry-After`), a bounded number of times,
  and never longer than `max_wait_s`: a vendor asking for more gets a clear error instead of a bot that
  hangs;
- connection errors, read timeouts and 500/502/503/504: a couple of retries with a short doubling
  backoff (0.5 s, 1 s). 501 is not retried: it means "not implemented" (a webhook with no read API);
- which methods are retried after the request may have reached the vendor (a read timeout, a 5xx) is
  `allowed_methods`: GET and HEAD, plus the one write verb each vendor's call is idempotent for
  (`idempotent_writes`, named by each provider: LaunchDarkly's and Flagsmith's PATCH set a state,
  Unleash's POST …/on|off and the webhook's POST {"enabled": …} too). A write not listed there is
  still retried after a connection error (it never left) and a 429 (the vendor did not run it);
- redirects are not followed: a base_url that redirects is a configuration mistake worth naming, and an
  API key should never travel to a host nobody configured;
- every error names the vendor, what was being done (and to which flag) and the HTTP status, and is run
  through `redact` so the API key (registered by each provider) never reaches a person or a log.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import InvalidHeader, MaxRetryError, ResponseError
from urllib3.exceptions import TimeoutError as Urllib3Timeout
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

from bot.errors import FlagError
from bot.redact import redact

USER_AGENT = "rollback-bot (+feature flag rollback)"
_MESSAGE_KEYS = ("message", "detail", "error", "error_description", "title")
_LONGEST_MESSAGE = 200
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
SAFE_METHODS = frozenset({"GET", "HEAD"})


@dataclass(frozen=True)
class HttpPolicy:
    timeout_s: float = 10.0
    retries: int = 2  # extra tries after a connection error, a read timeout or a 5xx
    rate_limit_retries: int = 3  # extra tries after a 429
    backoff_s: float = 0.5  # first wait after a connection error or 5xx; doubles each time
    max_wait_s: float = 30.0  # the longest Retry-After we sit through before giving up with an error


class VendorRetry(Retry):
    """urllib3's Retry with what a flag vendor needs on top, each through a documented hook of Retry:

    - `get_retry_after`: also LaunchDarkly's `X-Ratelimit-Reset`;
    - `increment`: separate budgets for 429s and for 5xx, and no retry when the wait asked is over
      `max_wait_s` (the response is then returned, and VendorHttp names the wait in its error);
    - `get_backoff_time`: blips and rate limits counted apart, and the first retry after a blip waits
      `backoff_factor` too (urllib3 retries it at once);
    - `sleep`: through an injected function (tests record the waits instead of sitting through them).
    """

    def __init__(
        self,
        *args: Any,
        policy: HttpPolicy | None = None,
        sleeper: Callable[[float], None] = time.sleep,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.policy = policy or HttpPolicy()
        self.sleeper = sleeper

    @classmethod
    def for_vendor(
        cls, policy: HttpPolicy, *, idempotent_writes: Collection[str] = (), sleeper: Callable[[float], None]
    ) -> VendorRetry:
        return cls(
            total=None,
            connect=policy.retries,
            read=policy.retries,
            status=policy.retries + policy.rate_limit_retries,  # a backstop: `increment` keeps the two apart
            other=0,
            redirect=0,
            allowed_methods=SAFE_METHODS | {m.upper() for m in idempotent_writes},
            status_forcelist=RETRIED_STATUSES,
            backoff_factor=policy.backoff_s,
            backoff_max=policy.max_wait_s,
            raise_on_status=False,  # the last answer comes back, and VendorHttp says what it was
            raise_on_redirect=False,
            respect_retry_after_header=True,
            retry_after_max=int(policy.max_wait_s) + 1,  # never used: `increment` stops first
            policy=policy,
            sleeper=sleeper,
        )

    def new(self, **kw: Any) -> Self:
        fresh = super().new(**kw)
        fresh.policy, fresh.sleeper = self.policy, self.sleeper
        return fresh

    def get_retry_after(self, response: BaseHTTPResponse) -> float | None:
        if response.headers.get("Retry-After"):
            try:
                return super().get_retry_after(response)
            except InvalidHeader:  # not whole seconds nor an HTTP date (e.g. "1.5"): ours reads it below
                pass
        return retry_after(response.headers, default=None)

    def get_backoff_time(self) -> float:
        """0.5 s, 1 s, … counting blips (network errors, 5xx) only: waiting out a rate limit is not one.

        A 429 that did not say how long to wait gets at least a second, doubling with each 429.
        """
        if not self.history:
            return 0.0
        limited = self.history[-1].status == 429
        tries = sum(1 for h in self.history if (h.status == 429) == limited)
        wait = self.backoff_factor * 2 ** (tries - 1)
        return float(min(self.backoff_max, max(1.0, wait) if limited else wait))

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        if response is not None and error is None and response.status in RETRIED_STATUSES:
            limited = response.status == 429
            seen = sum(1 for h in self.history if h.status is not None and (h.status == 429) == limited)
            budget = self.policy.rate_limit_retries if limited else self.policy.retries
            wait = self.get_retry_after(response)
            if seen >= budget or (wait is not None and wait > self.policy.max_wait_s):
                raise MaxRetryError(_pool, url, ResponseError(f"gave up on HTTP {response.status}"))  # type: ignore[arg-type]
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def sleep(self, response: BaseHTTPResponse | None = None) -> None:
        wait = self.get_retry_after(response) if response is not None else None
        if wait is None:
            wait = self.get_backoff_time()
        if wait > 0:
            self.sleeper(wait)


@dataclass(frozen=True)
class Reply:
    status: int
    data: Any  # parsed JSON, or None for an empty body
    headers: Mapping[str, str] = field(default_factory=dict)


def segment(value: str) -> str:
    """One URL path segment: flag keys and project names may hold characters a path cannot."""
    return quote(value, safe="")


class VendorHttp:
    """A requests.Session bound to one vendor's base URL and auth headers (the session is the test seam).

    The session gets an HTTPAdapter with the vendor's `VendorRetry`, mounted for the vendor's host only,
    so a session shared with other code keeps its own behaviour for other hosts.
    """

    def __init__(
        self,
        *,
        vendor: str,
        base_url: str,
        headers: Mapping[str, str],
        session: requests.Session | None = None,
        policy: HttpPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        idempotent_writes: Collection[str] = (),
    ) -> None:
        self.vendor = vendor
        self.base_url = base_url.rstrip("/")
        parts = urlsplit(self.base_url)
        self.host = parts.netloc or self.base_url
        self.session = session or requests.Session()
        self.policy = policy or HttpPolicy()
        self.retry = VendorRetry.for_vendor(self.policy, idempotent_writes=idempotent_writes, sleeper=sleep)
        prefix = f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else self.base_url
        self.session.mount(prefix, HTTPAdapter(max_retries=self.retry))
        self._headers = {"Accept": "application/json", "User-Agent": USER_AGENT, **headers}

    def call(
        self,
        method: str,
        path: str,
        *,
        doing: str,
        flag: str | None = None,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        missing_ok: bool = False,
        lenient: bool = False,
    ) -> Reply:
        """One request (retried by the session's VendorRetry); the reply for 2xx (and 404 when `missing_ok`).

        `doing` is a short phrase for messages ("reading", "turning off"); `flag` is named in every error.
        `lenient`: a body that is not JSON reads as None instead of an error (endpoints we do not own).
        """
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"
        headers = dict(self._headers)
        data: bytes | None = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body).encode()
        where = f"{doing} flag {flag!r}" if flag else doing
        try:
            response = self.session.request(
                method,
                url,
                params=dict(params) if params else None,
                data=data,
                headers=headers,
                timeout=self.policy.timeout_s,
                allow_redirects=False,
            )
        except (requests.ConnectionError, requests.Timeout) as failure:
            raise self._error(
                f"could not reach {self.host} while {where} ({_network_words(failure)})",
                hint=f"check the network and the base_url for {self.vendor}; nothing was changed by this call",
                flag=flag,
                status=None,
            ) from None
        except requests.RequestException as failure:
            raise self._error(
                f"request failed while {where} ({type(failure).__name__})", hint="", flag=flag, status=None
            ) from None
        status = response.status_code
        if status == 429:
            wait = retry_after(response.headers, default=None)
            asked = f"asks to wait {wait:.0f}s; retry then" if wait is not None else "asks to slow down; retry shortly"
            raise self._error(
                f"rate limited (HTTP 429) while {where}", hint=f"{self.vendor} {asked}", flag=flag, status=status
            )
        if 200 <= status < 300 or (status == 404 and missing_ok):
            return Reply(status, self._json(response, where=where, flag=flag, lenient=lenient), dict(response.headers))
        raise self._refusal(response, where=where, flag=flag)

    # --- errors -------------------------------------------------------------------------------------

    def _error(self, text: str, *, hint: str, flag: str | None, status: int | None) -> FlagError:
        details = {"vendor": self.vendor, "flag": flag, "status": status}
        return FlagError(redact(f"{self.vendor}: {text}"), hint=redact(hint), details=details)

    def _refusal(self, response: requests.Response, *, where: str, flag: str | None) -> FlagError:
        status = response.status_code
        said = vendor_message(response)
        said = f": {said}" if said else ""
        if status in (401, 403):
            reason = "not allowed" if status == 403 else "not accepted"
            return self._error(
                f"credentials were refused (HTTP {status}, {reason}) while {where}{said}",
                hint=f"check the API key named by api_key_env: it must be a {self.vendor} admin/API token "
                "with write access to this project and environment",
                flag=flag,
                status=status,
            )
        if 300 <= status < 400:
            target = response.headers.get("Location", "elsewhere")
            return self._error(
                f"answered with a redirect (HTTP {status}) to {target} while {where}",
                hint="set base_url to the API's final address (redirects are not followed with an API key)",
                flag=flag,
                status=status,
            )
        if status == 404:
            return self._error(f"not found (HTTP 404) while {where}{said}", hint="", flag=flag, status=status)
        if status >= 500:
            return self._error(
                f"server error (HTTP {status}) while {where}{said}",
                hint=f"{self.vendor} is failing; retry shortly, or change the flag in its console",
                flag=flag,
                status=status,
            )
        return self._error(
            f"refused the request (HTTP {status}) while {where}{said}", hint="", flag=flag, status=status
        )

    def _json(self, response: requests.Response, *, where: str, flag: str | None, lenient: bool) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            if lenient:
                return None
            raise self._error(
                f"answered HTTP {response.status_code} with a body that is not JSON while {where}",
                hint="check base_url points at the API, not at a web page",
                flag=flag,
                status=response.status_code,
            ) from None


def vendor_message(response: requests.Response) -> str:
    """The vendor's own words for an error (LaunchDarkly `message`, Flagsmith `detail`, Unleash `message`)."""
    try:
        data = response.json()
    except ValueError:
        text = response.text.strip()
        return redact(text[:_LONGEST_MESSAGE]) if text and not text.startswith("<") else ""
    return redact(_message_in(data)[:_LONGEST_MESSAGE])


def _message_in(data: Any) -> str:
    if isinstance(data, str):
        return data
    if isinstance(data, list) and data:
        return _message_in(data[0])
    if isinstance(data, dict):
        for key in _MESSAGE_KEYS:
            if isinstance(data.get(key), str) and data[key]:
                return str(data[key])
        for value in data.values():  # DRF field errors: {"enabled": ["Must be a valid boolean."]}
            found = _message_in(value)
            if found:
                return found
    return ""


def retry_after(
    headers: Mapping[str, str], *, default: float | None, now: Callable[[], float] = time.time
) -> float | None:
    """Seconds to wait before the next try, as the vendor asks (`default` when it does not say)."""
    value = (headers.get("Retry-After") or "").strip()
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            pass
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            return max(0.0, when.timestamp() - now())
    reset = (headers.get("X-Ratelimit-Reset") or "").strip()
    if reset:
        try:
            stamp = float(reset)
        except ValueError:
            return default
        # LaunchDarkly documents epoch milliseconds; some APIs use epoch seconds or a delay in seconds.
        if stamp > 1e11:
            return max(0.0, stamp / 1000 - now())
        if stamp > 1e9:
            return max(0.0, stamp - now())
        return max(0.0, stamp)
    return default


def _network_words(failure: requests.RequestException) -> str:
    """A timeout stays a timeout once urllib3 gave up retrying it (requests then says ConnectionError)."""
    reason = getattr(failure.args[0], "reason", None) if failure.args else None
    if isinstance(failure, requests.Timeout) or isinstance(reason, Urllib3Timeout):
        return "timed out"
    return "connection refused or unreachable"
