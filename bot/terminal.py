"""The terminal reporter (progress on screen) and the one place errors become words for the terminal."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

from bot.backends.base import ProgressUnit
from bot.durations import format_duration
from bot.engine.checklist import PHASE_TITLES, PHASES
from bot.engine.events import (
    Event,
    RunFinished,
    RunStarted,
    StepFailed,
    StepFinished,
    StepProgress,
    StepStarted,
)
from bot.errors import ConfigError, RollbackError
from bot.redact import redact

PROGRESS_EVERY_S = 1.0  # at most one progress line a second per step: a restore can emit thousands


class TerminalReporter:
    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self._last_progress: dict[str, float] = {}
        self._lock = threading.Lock()

    def say(
        self,
        text: str,
        /,
        *,
        done: float | None = None,
        total: float | None = None,
        unit: ProgressUnit | None = None,
    ) -> None:
        with self._lock:
            print(redact(text), file=self.out, flush=True)

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            dry = " (dry run)" if event.dry_run else ""
            self.say(f"\nRollback of {event.env} started{dry}: run {event.run_id}, by {event.actor}")
        elif isinstance(event, StepStarted):
            self.say(f"⏳ [{event.position + 1}/{event.total}] {event.title}…")
        elif isinstance(event, StepProgress):
            moment = time.monotonic()
            if moment - self._last_progress.get(event.step, 0.0) >= PROGRESS_EVERY_S:
                self._last_progress[event.step] = moment
                self.say(f"     {event.message}")
        elif isinstance(event, StepFinished):
            icon = "✅" if event.status == "ok" else "⏭ "
            self.say(f"{icon} {event.title}: {event.summary} ({format_duration(event.duration_s)})")
            for row in event.details.get("checks", []):
                self.say(
                    f"     {'✅' if row['healthy'] else '❌'} {row['url']}  {row['status']}  {row['attempts']} tries"
                )
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

    def _finished(self, event: RunFinished) -> None:
        verdict = {"succeeded": "✅ Rollback complete", "aborted": "🛑 Rollback aborted"}.get(
            event.outcome, event.outcome
        )
        dry = " (dry run: nothing was changed)" if event.dry_run else ""
        self.say(f"\n{verdict} for {event.env} in {format_duration(event.duration_s)}{dry}. Run {event.run_id}.")
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
