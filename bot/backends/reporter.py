"""How backends talk to a caller's progress callback: redacted sentences, measures, at a sensible rate.

Sentences ("restoring into app_rb_shadow_ab12: orders") go at most every couple of seconds unless they
mark a step; measures (`done` of `total` bytes, objects, tables, seconds) at most a few times a second,
except the one that reaches the total, which always goes so that a front end can draw 100%.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable

from bot.backends.base import Progress, ProgressUnit
from bot.redact import redact

log = logging.getLogger(__name__)

SENTENCE_EVERY_S = 2.0
MEASURE_EVERY_S = 0.4


class Reporter:
    """Wraps a caller's progress callback: redacts, throttles, and never lets the callback break us.

    A flaky Slack API must not abort a three-hour restore, so callback errors are logged and dropped.
    """

    def __init__(
        self, progress: Progress, *, every_s: float = SENTENCE_EVERY_S, measure_every_s: float = MEASURE_EVERY_S
    ) -> None:
        self._progress = progress
        self._measures = _takes_measures(progress)
        self._every_s = every_s
        self._measure_every_s = measure_every_s
        self._last = 0.0
        self._last_measure = 0.0
        self._last_final: tuple[float, float | None] | None = None

    def say(self, text: str) -> None:
        """Always sent: a step's sentence."""
        self._send(text)

    def maybe(self, text: str) -> None:
        """A sentence worth sending only if none went out lately (chatter from a long-running tool)."""
        if time.monotonic() - self._last >= self._every_s:
            self._send(text)

    def measure(
        self, text: str, *, done: float, total: float | None, unit: ProgressUnit, at_once: bool = False
    ) -> None:
        """How far along, with its sentence: throttled, unless `at_once` (a step's first or last measure)
        or it reaches `total` (sent once: a front end then draws 100%)."""
        if not self._measures:  # a sentence-only callback gets the words, at the sentences' rate
            (self.say if at_once else self.maybe)(text)
            return
        final = total is not None and done >= total
        if final and self._last_final == (done, total):
            return
        if at_once or final or time.monotonic() - self._last_measure >= self._measure_every_s:
            if final:
                self._last_final = (done, total)
            self._send(text, (done, total, unit))

    def _send(self, text: str, measure: tuple[float, float | None, ProgressUnit] | None = None) -> None:
        now = time.monotonic()
        self._last = now
        try:
            if measure is None:
                self._progress(redact(text))
            else:
                self._last_measure = now
                done, total, unit = measure
                self._progress(redact(text), done=done, total=total, unit=unit)
        except Exception:  # the callback is someone else's code: report, don't propagate
            log.warning("progress callback failed", exc_info=True)


def _takes_measures(progress: Callable[..., object]) -> bool:
    """Whether `progress` accepts done/total/unit.

    Callbacks written before measures existed (a list's append, a one-argument lambda in a script)
    get sentences only, rather than failing, and being logged, on every measure.
    """
    try:
        parameters = list(inspect.signature(progress).parameters.values())
    except (TypeError, ValueError):  # no signature to read: trust the Protocol
        return True
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return True
    keywords = {p.name for p in parameters if p.kind is not inspect.Parameter.POSITIONAL_ONLY}
    return {"done", "total", "unit"} <= keywords
