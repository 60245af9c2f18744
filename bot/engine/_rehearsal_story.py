"""How a rehearsal is told: to the Slack channel that asked (notices in the outbox, never a Slack call) and
in the terminal's summary, both read from the same record.

In the channel: one message, updated in place (asked, preparing the stand-ins, running, passed or failed),
and in its thread one message per engine step (the run's own step notices, ⏳ → ✅ / ❌ / ⏭), then the
result: each step's time, end to end, what stood in for production, what was skipped and why, and the
cleanup. Nobody else is told: a rehearsal changes nothing of production, so stakeholders hear nothing.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

from bot import format as fmt
from bot.backends.base import ProgressUnit
from bot.engine.events import Event, StepFailed, StepFinished, StepProgress, StepStarted
from bot.engine.steps import STEP_BY_NAME
from bot.engine.story import UPDATE_EVERY_S, NoticeKind
from bot.outbox import Notice, Outbox
from bot.store import ReadinessCheck, iso

if TYPE_CHECKING:
    from bot.services import Services

REHEARSAL_HEADER = "rehearsal"  # the message in the channel, updated in place
REHEARSAL_RESULT = "rehearsal_result"  # in its thread, at the end
ICONS = {"passed": "✅", "failed": "❌", "interrupted": "⚠️", "running": "⏳", "refused": "🚫"}
STEP_ICONS = {"ok": "✅", "skipped": "⏭", "failed": "❌", "running": "⏳", "pending": "·"}


def summary(check: ReadinessCheck) -> dict[str, Any]:
    """What people are shown of a finished rehearsal, as JSON (the outbox stores it as is)."""
    details = check.details
    return {
        "id": check.id,
        "env": check.env,
        "status": check.status,
        "seconds": check.seconds,
        "failure": check.failure,
        "requested_by": check.requested_by,
        "run_id": check.run_id,
        "restore_point_id": check.restore_point_id,
        "steps": [{**step, "title": _title(step.get("name", ""))} for step in details.get("steps", [])],
        "preparation": details.get("preparation", []),
        "stand_ins": details.get("stand_ins", {}),
        "cleanup": details.get("cleanup", []),
        "at": iso(check.finished_at or check.started_at),
    }


def summary_lines(check: ReadinessCheck) -> list[str]:
    """The terminal's summary of a finished rehearsal."""
    shown = summary(check)
    took = fmt.duration(shown["seconds"]) if shown["seconds"] is not None else "?"
    verdict = {"passed": "passed", "failed": "FAILED", "interrupted": "was INTERRUPTED"}.get(check.status, check.status)
    lines = [f"\n{ICONS.get(check.status, '•')} Rehearsal #{check.id} of {check.env} {verdict}: {took} end to end."]
    if check.failure:
        lines.append(f"   What failed: {check.failure}")
    lines.append("Steps:")
    for step in shown["preparation"]:
        lines.append(f"  {STEP_ICONS.get(step['status'], '•')} {step['name']:<24} {_secs(step):>7}  {step['summary']}")
    for step in shown["steps"]:
        icon = STEP_ICONS.get(step["status"], "•")
        lines.append(f"  {icon} {step['title']:<24} {_secs(step):>7}  {step.get('summary') or step['status']}")
    stand_ins = dict(shown["stand_ins"])
    skipped = stand_ins.pop("skipped", {}) or {}
    if stand_ins:
        lines.append("Stood in for production:")
        lines += [f"  {what:<9} {words}" for what, words in stand_ins.items()]
    if skipped:
        lines.append("Skipped:")
        lines += [f"  {what:<9} {why}" for what, why in skipped.items()]
    if shown["cleanup"]:
        lines.append("Cleanup:")
        for line in shown["cleanup"]:
            mark = {"removed": "🧹", "nothing left": "·", "kept": "📌", "FAILED": "❌"}.get(line["result"], "•")
            lines.append(f"  {mark} {line['what']}: {line['detail'] or line['result']}")
    return lines


def _title(name: str) -> str:
    step = STEP_BY_NAME.get(name)
    return step.title if step else name


def _secs(step: dict[str, Any]) -> str:
    seconds = step.get("seconds")
    return fmt.duration(seconds) if isinstance(seconds, int | float) and step.get("status") != "pending" else "-"


class RehearsalStory:
    """A reporter for a rehearsal's run, and its `say`, writing its story to the outbox for one channel."""

    def __init__(self, services: Services, *, channel: str, env: str, requested_by: str) -> None:
        self.outbox = Outbox(services.store)
        self.channel = channel
        self.env = env
        self.requested_by = requested_by
        self.key = f"rehearsal:{env}:{secrets.token_hex(6)}"
        self.started_at = iso()
        self._titles: dict[str, str] = {}
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()
        self._header("running", progress="preparing the stand-ins…")

    # --- the rehearsal's own sentences (preparing, cleaning up) --------------------------------------

    def say(
        self,
        message: str,
        /,
        *,
        done: float | None = None,
        total: float | None = None,
        unit: ProgressUnit | None = None,
    ) -> None:
        if self._due("header"):
            self._header("running", progress=message)

    # --- the run's events -----------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        if isinstance(event, StepStarted):
            self._titles[event.step] = event.title
            self._step(event.step, status="running")
        elif isinstance(event, StepProgress):
            if self._due(event.step):
                self._step(event.step, status="running", progress=event.message)
        elif isinstance(event, StepFinished):
            self._step(event.step, status=event.status, summary=event.summary, duration_s=event.duration_s)
        elif isinstance(event, StepFailed):
            self._step(event.step, status="failed", summary=event.error, duration_s=event.duration_s)

    # --- the end --------------------------------------------------------------------------------------

    def finished(self, check: ReadinessCheck) -> None:
        shown = summary(check)
        self._header(check.status, summary=shown)
        self.outbox.enqueue(
            Notice(
                channel=self.channel,
                kind=REHEARSAL_RESULT,
                payload=shown,
                message_key=f"{self.key}:result",
                thread_key=self.key,
            )
        )

    def refused(self, why: str) -> None:
        self._header("refused", progress=why)

    def _header(self, status: str, **rest: Any) -> None:
        payload = {
            "env": self.env,
            "requested_by": self.requested_by,
            "status": status,
            "started_at": self.started_at,
            "at": iso(),
            **rest,
        }
        self.outbox.enqueue(Notice(channel=self.channel, kind=REHEARSAL_HEADER, payload=payload, message_key=self.key))

    def _step(self, step: str, *, status: str, **rest: Any) -> None:
        payload = {"title": self._titles.get(step) or _title(step), "status": status, **rest}
        self.outbox.enqueue(
            Notice(
                channel=self.channel,
                kind=NoticeKind.STEP,  # the run's own step message: one renderer for both
                payload=payload,
                message_key=f"{self.key}:step:{step}",
                thread_key=self.key,
            )
        )

    def _due(self, what: str) -> bool:
        """At most one interim update a second per message (Slack's chat.update pace); finals always go."""
        moment = time.monotonic()
        with self._lock:
            last = self._last.get(what)
            if last is not None and moment - last < UPDATE_EVERY_S:
                return False
            self._last[what] = moment
            return True
