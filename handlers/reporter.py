"""The Slack reporter: one threaded message per step, updated in place, at most about once a second.

Every call to Slack goes through `_call`, which logs and swallows Slack errors: a Slack outage must
never stop a rollback (the engine also guards reporters, this is the second belt).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime
from functools import partial
from typing import Any

from slack_sdk.errors import SlackApiError

from bot.engine.checklist import PHASE_TITLES
from bot.engine.events import (
    Event,
    RunFinished,
    RunStarted,
    StepFailed,
    StepFinished,
    StepProgress,
    StepStarted,
)
from bot.engine.plan import Plan
from bot.store import now
from handlers import blocks
from handlers.context import SlackContext

log = logging.getLogger(__name__)
UPDATE_EVERY_S = 1.0  # Slack's chat.update tier allows ~1 per second per message in practice


class SlackReporter:
    def __init__(self, ctx: SlackContext, *, run_id: str) -> None:
        record = ctx.services.store.get_run(run_id)
        self.ctx = ctx
        self.run_id = run_id
        self.plan = Plan.from_dict(record.plan)
        self.plan_hash = record.plan_hash
        self.channel: str = record.meta["channel"]
        self.thread_ts: str = record.meta["ts"]
        self.step_ts: dict[str, str] = dict(record.meta.get("step_ts", {}))
        self._last_update: dict[str, float] = {}
        self._titles: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            self._header("running")
            self._stakeholders("started")
        elif isinstance(event, StepStarted):
            self._keep_stakeholders_posted()
            self._titles[event.step] = event.title
            self._step(
                event.step,
                blocks.step_blocks(title=event.title, status="running", summary="", duration_s=None),
                text=f"⏳ {event.title}",
            )
        elif isinstance(event, StepProgress):
            moment = time.monotonic()
            with self._lock:
                if moment - self._last_update.get(event.step, 0.0) < UPDATE_EVERY_S:
                    return  # the final update always comes; dropping interim ones keeps us under the rate limit
                self._last_update[event.step] = moment
            title = self._titles.get(event.step, event.step)
            self._step(
                event.step,
                blocks.step_blocks(title=title, status="running", summary="", duration_s=None, progress=event.message),
                text=f"⏳ {title}",
            )
        elif isinstance(event, StepFinished):
            icon = "✅" if event.status == "ok" else "⏭"
            self._step(
                event.step,
                blocks.step_blocks(
                    title=event.title,
                    status=event.status,
                    summary=event.summary,
                    duration_s=event.duration_s,
                    details=event.details,
                ),
                text=f"{icon} {event.title}: {event.summary}",
            )
            if event.status == "ok" and event.step in ("code", "database", "health"):
                self._stakeholders(f"step:{event.step}")
        elif isinstance(event, StepFailed):
            self._step(
                event.step,
                blocks.step_blocks(
                    title=event.title, status="failed", summary=event.error, duration_s=event.duration_s
                ),
                text=f"❌ {event.title}: {event.error}",
            )
            self._post(
                blocks.failure_blocks(run_id=self.run_id, plan_hash=self.plan_hash, event=event),
                text=f"❌ {event.title} failed: {event.error}",
            )
            self._header("failed", detail=event.error)
            self.ctx.scheduler.cancel(self._updates_key)
            self._stakeholders("failed")
        elif isinstance(event, RunFinished):
            self.ctx.scheduler.cancel(self._updates_key)
            self._header(event.outcome)
            self._post(blocks.finished_blocks(event=event), text=f"Rollback {event.outcome}")
            if event.checklist:
                items = self.ctx.services.store.checklist(self.run_id)
                self._post(
                    blocks.checklist_blocks(run_id=self.run_id, items=items, now=now()),
                    text="Post-rollback checklist",
                )
                self._schedule_reminders()
            turned_off = self._flags_turned_off()
            if turned_off:
                self._post(
                    blocks.undo_flags_blocks(run_id=self.run_id, plan_hash=self.plan_hash, turned_off=turned_off),
                    text=f"Flags turned off: {', '.join(turned_off)}",
                )
            self._stakeholders("finished" if event.outcome == "succeeded" else "aborted")

    def _flags_turned_off(self) -> list[str]:
        step = next((s for s in self.ctx.services.store.steps(self.run_id) if s.name == "flags"), None)
        return list(step.details.get("turned_off", [])) if step is not None and step.status == "ok" else []

    # --- timed updates ------------------------------------------------------------------------------

    @property
    def _updates_key(self) -> str:
        return f"{self.run_id}:stakeholder-updates"

    def _keep_stakeholders_posted(self) -> None:
        every = self.ctx.services.config.settings.bot.stakeholder_update_every
        if (
            self.ctx.services.config.settings.bot.stakeholder_channels
            and self._updates_key not in self.ctx.scheduler.job_keys()
        ):
            self.ctx.scheduler.every(self._updates_key, every, lambda: self._stakeholders("running"))

    def _schedule_reminders(self) -> None:
        """When each later phase is due, remind the contacts of the items of earlier phases still open."""
        settings = self.ctx.services.config.settings
        finished = now()
        for phase, after, earlier in (
            ("short_term", settings.bot.checklist.short_term_after, ("immediate",)),
            ("medium_term", settings.bot.checklist.medium_term_after, ("immediate", "short_term")),
        ):
            self.ctx.scheduler.at(
                f"{self.run_id}:remind:{phase}", finished + after, partial(self._remind, phase, earlier)
            )

    def _remind(self, phase: str, earlier: tuple[str, ...]) -> None:
        open_items = [i for i in self.ctx.services.store.checklist(self.run_id) if i.phase in earlier and not i.done_at]
        if not open_items:
            return
        contacts = self.ctx.services.config.settings.contacts
        who = [
            contacts[k]
            for k in ("oncall", "database")
            if k in contacts and (k != "database" or self.plan.database.action != "none")
        ]
        self._post(
            blocks.reminder_blocks(phase_title=PHASE_TITLES[phase], open_items=open_items, contacts=who),
            text=f"Reminder: {len(open_items)} checklist item(s) still open",
        )

    # --- Slack calls --------------------------------------------------------------------------------

    def _header(self, status: str, *, detail: str = "") -> None:
        record = self.ctx.services.store.get_run(self.run_id)
        self._call(
            "chat_update",
            channel=self.channel,
            ts=self.thread_ts,
            text=f"Rollback of {self.plan.env}: {status}",
            blocks=blocks.status_header_blocks(
                run_id=self.run_id,
                plan=self.plan,
                status=status,
                approved_by=record.approved_by,
                requested_by=record.requested_by,
                detail=detail,
            ),
        )

    def _step(self, step: str, step_blocks: list[dict[str, Any]], *, text: str) -> None:
        ts = self.step_ts.get(step)
        if ts:
            self._call("chat_update", channel=self.channel, ts=ts, text=text, blocks=step_blocks)
            return
        response = self._post(step_blocks, text=text)
        if response is not None:
            self.step_ts[step] = response["ts"]
            self.ctx.services.store.merge_meta(self.run_id, {"step_ts": self.step_ts})

    def _post(self, message_blocks: list[dict[str, Any]], *, text: str) -> Any:
        return self._call(
            "chat_postMessage",
            channel=self.channel,
            thread_ts=self.thread_ts,
            text=text,
            blocks=message_blocks,
        )

    def _stakeholders(self, phase: str) -> None:
        settings = self.ctx.services.config.settings.bot
        if not settings.stakeholder_channels:
            return
        record = self.ctx.services.store.get_run(self.run_id)
        taken = self.plan.database.restore_point_at
        text = blocks.stakeholder_text(
            env=self.plan.env,
            phase=phase,
            now=now(),
            started_at=record.started_at,
            version_from=self.plan.target.committed_at,
            data_as_of=datetime.fromisoformat(taken) if taken else None,
            next_update_in=settings.stakeholder_update_every,
            dry_run=self.plan.dry_run,
        )
        for channel in settings.stakeholder_channels:
            self._call(
                "chat_postMessage",
                channel=channel,
                text=text,
                blocks=blocks.stakeholder_update_blocks(env=self.plan.env, phase=phase, text=text, now=now()),
            )

    def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.ctx.client, method)(**kwargs)
        except SlackApiError as error:
            log.warning("Slack %s failed for run %s: %s", method, self.run_id, error.response.get("error"))
        except Exception:
            log.warning("Slack %s failed for run %s", method, self.run_id, exc_info=True)
        return None
