"""The one place that masks secrets for every output: terminal, logs, the store and Slack.

Two kinds of secret are masked:
- passwords inside URLs (`postgresql://app:s3cret@db/app` → `postgresql://app:***@db/app`), wherever
  a URL appears in text, including in tool error output such as pg_restore's;
- exact values registered with `register_secret` (tokens, API keys, whole database URLs read from the
  environment), because an API key has no shape a pattern could recognise.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any
from urllib.parse import quote, unquote

MASK = "***"

# scheme://user:password@host — the password may contain anything but '@', '/' and whitespace.
_URL_PASSWORD = re.compile(r"(?P<prefix>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^:/@\s]*:)(?P<pw>[^@/\s]+)(?=@)")
# key=value forms libpq and tools echo back: password=..., PGPASSWORD=...
_KV_PASSWORD = re.compile(r"(?i)\b(?P<key>password|passwd|pgpassword|mysql_pwd)\s*=\s*(?P<pw>[^\s'\"]+)")
_SHORTEST_SECRET = 4  # shorter values would mask ordinary words

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Mask this value in everything from now on.

    For a URL only its password is secret (host and database name help people at 3 a.m.); any other
    value (a token, an API key) is masked whole, with its URL-encoded and decoded forms.
    """
    if not value:
        return
    if "://" in value and "@" in value:
        password = url_password(value)
        if password:
            register_secret(password)
        return
    if "://" in value or len(value) < _SHORTEST_SECRET:
        return  # a URL without a password holds no secret
    forms = {value, quote(value, safe=""), unquote(value)}
    with _lock:
        _secrets.update(f for f in forms if len(f) >= _SHORTEST_SECRET)


def url_password(url: str) -> str | None:
    match = _URL_PASSWORD.search(url)
    return unquote(match.group("pw")) if match else None


def redact(text: str) -> str:
    """Return `text` with every known secret and every URL password masked."""
    if not text:
        return text
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for secret in known:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL_PASSWORD.sub(lambda m: m.group("prefix") + MASK, text)
    return _KV_PASSWORD.sub(lambda m: f"{m.group('key')}={MASK}", text)


def redact_data(value: Any) -> Any:
    """Redact every string inside nested dicts, lists and tuples (for JSON headed to a store or Slack)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_data(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_data(item) for item in value]
    return value


class RedactingFilter(logging.Filter):
    """Logging filter that redacts the fully formatted message, arguments included."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            # Tracebacks are rendered later by the formatter; pre-render and redact them now.
            formatter = logging.Formatter()
            record.exc_text = redact(formatter.formatException(record.exc_info))
            record.exc_info = None
        return True


def install_logging_filter(logger: logging.Logger | None = None) -> None:
    """Attach the redacting filter to every handler of `logger` (the root logger by default)."""
    target = logger or logging.getLogger()
    for handler in target.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
