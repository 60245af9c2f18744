"""Measured progress as people read it, the same in the terminal and in Slack. Pure: numbers in, words out.

A backend reports `done` of `total` `unit`s (bot/backends/base.py `Progress`); `Estimate` turns that and
the time the step started into a fraction and a time left (linear: the pace so far holds), and the
helpers below word it:

    measure_text(120, 268, "objects")            → "120 of 268 objects"
    measure_text(120, 268, "objects", compact=True) → "120/268 objects"
    text_bar(0.42)                                 → "▰▰▰▰▱▱▱▱▱▱"
    plain_line("restoring into x", estimate, "objects") → "restoring into x … 45% (120 of 268 objects), about 12s left"
    slack_line(estimate, "objects", left_s=12)     → "▰▰▰▰▱▱▱▱▱▱ 45% · 120/268 objects · ~12s left"
"""

from __future__ import annotations

from dataclasses import dataclass

from bot import format as fmt

MIN_ELAPSED_S = 2.0  # before this, a time left is a guess from too little
MIN_FRACTION = 0.01  # nor below 1%: the first percent often includes the slow start
BAR_WIDTH = 10


@dataclass(frozen=True)
class Estimate:
    """Where a measured step stands at `at`, and how long it has to go if the pace so far holds."""

    started: float  # when the step started (any clock, seconds; the same one as `at`)
    at: float  # when `done` was measured
    done: float | None
    total: float | None

    @property
    def fraction(self) -> float | None:
        if self.done is None or not self.total or self.total <= 0:
            return None
        return min(max(self.done / self.total, 0.0), 1.0)

    @property
    def percent(self) -> int | None:
        fraction = self.fraction
        return None if fraction is None else int(fraction * 100)

    def left_s(self, now: float | None = None) -> float | None:
        """Seconds left: the pace from `started` to `at`, counted down from `at` to `now` (default `at`)."""
        fraction = self.fraction
        elapsed = self.at - self.started
        if fraction is None or fraction < MIN_FRACTION or elapsed < MIN_ELAPSED_S:
            return None
        if fraction >= 1.0:
            return 0.0
        left = elapsed * (1.0 - fraction) / fraction
        if now is not None:
            left -= max(0.0, now - self.at)
        return max(0.0, left)


def amount(value: float, unit: str | None) -> str:
    """One quantity in its unit: sizes humanised for bytes, durations for seconds, counts as whole numbers."""
    if unit == "bytes":
        return fmt.size(value)
    if unit == "seconds":
        return fmt.duration(value, rough=True)
    return f"{value:,.0f}"


def measure_text(done: float | None, total: float | None, unit: str | None, *, compact: bool = False) -> str:
    """ "120 of 268 objects", "1.2 GiB of 3.4 GiB", "120 objects so far" (no total); compact: "120/268 objects"."""
    if done is None:
        return ""
    counted = unit not in ("bytes", "seconds", None)
    noun = f" {unit}" if counted else ""
    if total is None or total <= 0:
        return f"{amount(done, unit)}{noun} so far"
    between = "/" if compact else " of "
    return f"{amount(done, unit)}{between}{amount(total, unit)}{noun}"


def text_bar(fraction: float, *, width: int = BAR_WIDTH) -> str:
    filled = min(width, max(0, round(fraction * width)))
    return "▰" * filled + "▱" * (width - filled)


def left_text(left_s: float | None, *, compact: bool = False) -> str:
    if left_s is None:
        return ""
    if left_s < 1:
        return "almost done"
    return f"~{fmt.duration(left_s, rough=True)} left" if compact else f"about {fmt.duration(left_s, rough=True)} left"


def plain_line(message: str, estimate: Estimate, unit: str | None, *, now: float | None = None) -> str:
    """One line for logs and pipes: "restoring into x … 45% (120 of 268 objects), about 12s left"."""
    measure = measure_text(estimate.done, estimate.total, unit)
    percent = estimate.percent
    said = f"{percent}% ({measure})" if percent is not None else measure
    left = left_text(estimate.left_s(now))
    tail = ", ".join(part for part in (said, left) if part)
    return f"{message} … {tail}" if tail else message


def slack_line(done: float | None, total: float | None, unit: str | None, *, left_s: float | None = None) -> str:
    """The compact bar for a Slack step message: "▰▰▰▰▱▱▱▱▱▱ 42% · 120/268 objects · ~12s left"."""
    estimate = Estimate(started=0.0, at=0.0, done=done, total=total)
    fraction = estimate.fraction
    parts = []
    if fraction is not None:
        parts.append(f"{text_bar(fraction)} {estimate.percent}%")
    measure = measure_text(done, total, unit, compact=True)
    if measure:
        parts.append(measure)
    left = left_text(left_s, compact=True)
    if left:
        parts.append(left)
    return " · ".join(parts)
