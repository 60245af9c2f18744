"""The terminal reporter (progress on screen) and the one place errors become words for the terminal.

Measured progress (a backend's `done` of `total`) is drawn as a live bar with the percentage, done/total
and the time left when stdout is a terminal; `rich` is imported only then, so the CLI starts fast. When
stdout is not a terminal (CI, logs, pipes) it becomes plain lines, at most one every few seconds:

         restoring into app_rb_shadow_ab12 … 45% (120 of 268 objects), about 12s left
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from bot import format as fmt
from bot.backends.base import ProgressUnit
from bot.engine.checklist import PHASE_TITLES, PHASES
from bot.engine.events import (
    Event,
    RunFinished,
    RunStarted,
    StepFailed,
    StepFinished,
    StepProgress,
    StepStarted,
    StepStopped,
)
from bot.errors import ConfigError, RollbackError
from bot.progress import Estimate, left_text, measure_text, plain_line
from bot.redact import redact

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

PROGRESS_EVERY_S = 1.0  # at most one progress line a second per step: a restore can emit thousands
MEASURED_EVERY_S = 5.0  # measured progress when stdout is not a terminal: a line every few seconds at most
BAR_REFRESH_PER_S = 4
_SAY = "say"  # the key of progress told through `say` (the snapshot command's), which belongs to no step


def is_live_terminal(out: TextIO) -> bool:
    """A terminal that can redraw a bar in place (not a pipe, a file, CI's log, nor TERM=dumb)."""
    try:
        return out.isatty() and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


class TerminalReporter:
    def __init__(
        self, out: TextIO | None = None, *, live: bool | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.out = out or sys.stdout
        self.live = is_live_terminal(self.out) if live is None else live
        self._clock = clock
        self._last_progress: dict[str, float] = {}  # per step: when its last progress line was printed
        self._last_measured: dict[str, float] = {}  # per step: when its last measured plain line was printed
        self._started: dict[str, float] = {}  # per step (and `say`): when its measures started counting
        self._bar: _LiveBar | None = None
        self._lock = threading.RLock()

    def say(
        self,
        text: str,
        /,
        *,
        done: float | None = None,
        total: float | None = None,
        unit: ProgressUnit | None = None,
    ) -> None:
        """A line; with a measure (the snapshot command's progress), the live bar or a plain line."""
        if done is not None:
            self._measured(_SAY, text, done=done, total=total, unit=unit)
            return
        with self._lock:
            self._end_bar()
            self._started.pop(_SAY, None)  # the next measured phase (dump, then upload) counts afresh
            self._print(text)

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            dry = " (dry run)" if event.dry_run else ""
            self.say(f"\nRollback of {event.env} started{dry}: run {event.run_id}, by {event.actor}")
        elif isinstance(event, StepStarted):
            self.say(f"⏳ [{event.position + 1}/{event.total}] {event.title}…")
            self._started[event.step] = self._clock()
        elif isinstance(event, StepProgress):
            if event.done is not None:
                self._measured(event.step, event.message, done=event.done, total=event.total, unit=event.unit)
            else:
                self._unmeasured(event.step, event.message)
        elif isinstance(event, StepFinished):
            icon = {"ok": "✅", "failed": "❌"}.get(event.status, "⏭ ")
            self.say(f"{icon} {event.title}: {event.summary} ({fmt.duration(event.duration_s)})")
            for row in event.details.get("checks", []):
                self.say(
                    f"     {'✅' if row['healthy'] else '❌'} {row['url']}  {row['status']}  {row['attempts']} tries"
                )
        elif isinstance(event, StepStopped):
            self.say(f"↩  {event.title}: {event.reason}")
        elif isinstance(event, StepFailed):
            self.say(f"❌ {event.title} failed: {event.error}")
            if event.hint:
                self.say(f"     {event.hint}")
            self.say("   Where things stand:")
            for what, where in event.state.items():
                self.say(f"     {what:<9} {where}")
            self.say(f"   Next: {' | '.join(event.next_moves)}")
        elif isinstance(event, RunFinished):
            self._finished(event)

    # --- progress -------------------------------------------------------------------------------------

    def _unmeasured(self, step: str, message: str) -> None:
        with self._lock:
            if self._bar is not None and self._bar.key == step:
                self._bar.describe(message)  # the bar stays; its words change ("restoring table orders")
                return
            moment = self._clock()
            last = self._last_progress.get(step)
            if last is None or moment - last >= PROGRESS_EVERY_S:
                self._last_progress[step] = moment
                self._print(f"     {message}")

    def _measured(self, key: str, message: str, *, done: float, total: float | None, unit: str | None) -> None:
        with self._lock:
            moment = self._clock()
            started = self._started.setdefault(key, moment)
            estimate = Estimate(started=started, at=moment, done=done, total=total)
            # Two steps may measure at once (the restore loads beside the dump): the bar stays with the
            # step that has it until that step ends; the other one prints plain lines meanwhile.
            if self.live and (self._bar is None or self._bar.key == key):
                if self._bar is None:
                    self._bar = _LiveBar(self.out, key=key, started=started, clock=self._clock)
                self._bar.update(message, estimate, unit)
                return
            last = self._last_measured.get(key)
            if last is None or moment - last >= MEASURED_EVERY_S:
                self._last_measured[key] = moment
                self._print(f"     {plain_line(message, estimate, unit)}")

    def _end_bar(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def _print(self, text: str) -> None:
        print(redact(text), file=self.out, flush=True)

    def _finished(self, event: RunFinished) -> None:
        verdict = {
            "succeeded": "✅ Rollback complete",
            "unhealthy": "⚠️  Rollback done, unhealthy (code, data and flags are rolled back; health checks fail)",
            "aborted": "🛑 Rollback aborted",
        }.get(event.outcome, event.outcome)
        dry = " (dry run: nothing was changed)" if event.dry_run else ""
        self.say(f"\n{verdict} for {event.env} in {fmt.duration(event.duration_s)}{dry}. Run {event.run_id}.")
        if event.health:
            self.say("Health:")
            for result in event.health:
                mark = "✅" if result.healthy else "❌"
                self.say(f"  {mark} {result.url}  status {result.last_status} (expected {result.expected_status})")
        if event.checklist:
            self.say("\nPost-rollback checklist:")
            for phase in PHASES:
                items = [i for i in event.checklist if i.phase == phase]
                if items:
                    self.say(f"  {PHASE_TITLES[phase]}")
                    for item in items:
                        self.say(f"    [ ] {item.text}")


class _LiveBar:
    """One rich bar (steps run one after another): what is being done, the bar, %, done/total, time left.

    The time left is bot.progress's `Estimate` (the one Slack shows), counted down between measures.
    The bar is transient: when its step ends, the step's result line takes its place.
    """

    def __init__(self, out: TextIO, *, key: str, started: float, clock: Callable[[], float]) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn
        from rich.table import Column

        self.key = key
        self._clock = clock
        self._estimate = Estimate(started=started, at=started, done=None, total=None)
        self._unit: str | None = None
        self._progress: Progress = Progress(
            TextColumn("     {task.description}", markup=False, table_column=Column(no_wrap=True, max_width=48)),
            BarColumn(bar_width=30),
            _measure_column(self),
            console=Console(file=out),
            refresh_per_second=BAR_REFRESH_PER_S,
            transient=True,
        )
        self._task: TaskID = self._progress.add_task("", total=None)
        self._shown = False  # drawn from the first measure on, never empty

    def describe(self, message: str) -> None:
        self._progress.update(self._task, description=_short(redact(message)))

    def update(self, message: str, estimate: Estimate, unit: str | None) -> None:
        self._estimate, self._unit = estimate, unit
        self._progress.update(
            self._task, description=_short(redact(message)), total=estimate.total, completed=estimate.done or 0
        )
        if not self._shown:
            self._shown = True
            self._progress.start()

    def words(self) -> str:
        """ "45%  120/268 objects  about 12s left", the time left counting down between measures."""
        estimate = self._estimate
        parts = [f"{estimate.percent:>3}%"] if estimate.percent is not None else []
        parts.append(measure_text(estimate.done, estimate.total, self._unit, compact=True))
        parts.append(left_text(estimate.left_s(self._clock())))
        return "  ".join(part for part in parts if part)

    def stop(self) -> None:
        if self._shown:
            self._progress.stop()


def _measure_column(bar: _LiveBar) -> Any:
    from rich.progress import ProgressColumn, Task
    from rich.text import Text

    class MeasureColumn(ProgressColumn):
        def render(self, task: Task) -> Text:
            return Text(bar.words(), style="progress.remaining")

    return MeasureColumn()


def _short(text: str, limit: int = 46) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_text(error: RollbackError) -> str:
    """How every expected error is shown in a terminal: what was wrong, then what to do."""
    if isinstance(error, ConfigError):
        lines = [f"error: the configuration has {len(error.problems)} problem(s):"]
        lines += [f"  - {problem}" for problem in error.problems]
        return redact("\n".join(lines))
    text = f"error: {error.message}"
    if error.hint:
        text += f"\n  {error.hint}"
    return redact(text)
