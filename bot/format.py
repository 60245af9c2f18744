"""Sizes and durations as people read them: the one place they are formatted (terminal, Slack, logs).

size(1536)        → "1.5 KiB"     binary units, as `ls -h` and `du -h` count
duration(74)      → "1m 14s"      short, for "took" and "time left"
duration(4.25)    → "4.2s"        a tenth of a second below 10 s (steps that took a moment)
duration(4.25, rough=True) → "4s" whole seconds, for estimates that are not that precise
count(1234567)    → "1.2 M"       row counts in a sentence
"""

from __future__ import annotations

from datetime import timedelta

_SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def size(n: float) -> str:
    """Bytes in binary units: "512 B", "1.5 KiB", "12.3 MiB", "1.2 GiB"."""
    value = float(n)
    for unit in _SIZE_UNITS:
        if abs(value) < 1024 or unit == _SIZE_UNITS[-1]:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover - the loop always returns


def duration(seconds: timedelta | float, *, rough: bool = False) -> str:
    """Short human form: 4.2s, 45s, 2m 05s, 3h 12m, 2d 4h (`rough`: whole seconds under a minute)."""
    total = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
    total = max(total, 0.0)
    if total < 10 and not rough:
        return f"{total:.1f}s"
    whole = round(total)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def count(n: int) -> str:
    """A count people read at a glance: 950, 12.3 k, 1.2 M, 3.4 G."""
    for limit, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= limit:
            return f"{n / limit:.1f} {unit}"
    return str(n)


def in_words(seconds: timedelta | float) -> str:
    """Plain words for people outside the incident: "a few minutes", "12 minutes", "2 hours", "3 days"."""
    total = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
    total = max(total, 0.0)
    if total < 180:
        return "a few minutes"
    minutes = round(total / 60)
    if minutes < 90:
        return f"{minutes} minutes"
    hours = round(total / 3600)
    if hours < 36:
        return f"{hours} hours"
    return f"{round(total / 86400)} days"
