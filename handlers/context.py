"""What every Slack listener needs, built once per app: the engine's services plus Slack-side helpers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.engine.run_status import Actor
from bot.errors import PreconditionFailed
from bot.outbox import Notice, Outbox
from bot.services import Services
from bot.timers import TimerPoller
from handlers.burst import AckActivity, Coalesced
from handlers.errors import Reply, answered
from handlers.outbox_sender import OutboxSender

log = logging.getLogger(__name__)

PLAN_WORKERS = 2
GROUP_CACHE_SECONDS = 60.0  # approver groups change rarely; a minute keeps a double check cheap


class TrackedExecutor(ThreadPoolExecutor):
    """A thread pool that knows whether it is busy, so tests and the demo can wait for quiet."""

    def __init__(self, *, workers: int, name: str) -> None:
        super().__init__(max_workers=workers, thread_name_prefix=name)
        self._pending: set[Future[Any]] = set()
        self._pending_lock = threading.Lock()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future = super().submit(fn, *args, **kwargs)
        with self._pending_lock:
            self._pending.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: Future[Any]) -> None:
        with self._pending_lock:
            self._pending.discard(future)

    @property
    def busy(self) -> bool:
        with self._pending_lock:
            return bool(self._pending)


@dataclass
class SlackContext:
    services: Services
    client: WebClient
    executor: TrackedExecutor  # the bot's own: plans and rollbacks
    listener_executor: TrackedExecutor  # Bolt's: listeners after their ack
    # Plans (git fetch, migration scan) have their own small pool: a burst of them never takes the
    # rollbacks' workers, and never more than this many run against the listeners' two cores at once.
    planner: TrackedExecutor = field(default_factory=lambda: TrackedExecutor(workers=PLAN_WORKERS, name="planner"))
    # Acks first under a burst (handlers.burst): reads answered before an ack (`/rollback status`) are
    # shared by requests asking at the same moment, and plans wait for a burst of acks to pass.
    reads: Coalesced[str] = field(default_factory=Coalesced)
    activity: AckActivity = field(default_factory=AckActivity)
    sender: OutboxSender | None = None  # drains the outbox to Slack (started by bot.app)
    poller: TimerPoller | None = None  # fires durable timers (started by bot.app)
    _groups: dict[str, tuple[float, set[str]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def members_of(self, group_id: str) -> set[str]:
        """User IDs in a Slack user group, via usergroups.users.list (cached briefly)."""
        with self._lock:
            cached = self._groups.get(group_id)
            if cached and time.monotonic() - cached[0] < GROUP_CACHE_SECONDS:
                return cached[1]
        try:
            users = set(self.client.usergroups_users_list(usergroup=group_id).get("users") or [])
        except SlackApiError as error:
            log.warning("could not resolve user group %s: %s", group_id, error.response.get("error"))
            users = set()
        with self._lock:
            self._groups[group_id] = (time.monotonic(), users)
        return users

    def actor(self, user: str) -> Actor:
        """A Slack user as the engine sees them, with their user groups resolved through Slack."""
        return Actor(id=user, via="slack", members_of=self.members_of)

    def notify(self, notice: Notice | None) -> None:
        """Put a notice in the outbox and nudge the sender; Slack hears of it when it can."""
        if notice is not None:
            Outbox(self.services.store).enqueue(notice)
            self.wake_sender()

    def wake_sender(self) -> None:
        if self.sender is not None:
            self.sender.wake()

    def shutdown(self) -> None:
        if self.poller is not None:
            self.poller.stop()
        if self.sender is not None:
            self.sender.stop()

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future[Any]:
        """Run slow work (git fetch, the rollback itself) on the bot's own executor, never Bolt's threads."""
        return self.executor.submit(_logged, fn, *args, **kwargs)

    def hand_off(
        self,
        reply: Reply,
        fn: Callable[..., Any],
        /,
        *args: Any,
        hint: str = "",
        planning: bool = False,
        **kwargs: Any,
    ) -> None:
        """After the ack: run `fn` on the bot's executor (the planner's for plans); whatever it raises is
        told to `reply`'s person. `hint` is what they are told to do if it fails unexpectedly.
        """
        if planning:  # plans let a burst of acks pass first (handlers.burst.AckActivity), then run
            self.planner.submit(self._answered, reply, fn, args, kwargs, hint, self.activity.now())
        else:
            self.executor.submit(self._answered, reply, fn, args, kwargs, hint)

    def _answered(
        self,
        reply: Reply,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        hint: str,
        after_acks_from: float | None = None,
    ) -> None:
        try:
            if after_acks_from is not None:
                self.activity.wait_quiet(asked_at=after_acks_from)
            answered(reply, fn, *args, hint=hint, **kwargs)
        finally:
            self.wake_sender()  # the work may have left notices in the outbox

    def answer_soon(self, reply: Reply, error: BaseException) -> None:
        """Tell `reply`'s person about `error` off the request thread, so the ack is not held up."""
        self.listener_executor.submit(reply.error, error)

    def open_modal(self, *, trigger_id: str, view: dict[str, Any], reply: Reply) -> None:
        """views.open for the person who clicked or typed; if Slack will not open it, they hear why."""
        try:
            self.client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as error:
            # A trigger_id lives 3 s and opens one view: Slack refusing it is the world, not a bug.
            code = error.response.get("error") if error.response is not None else "no answer"
            log.warning("views.open failed for %r: %s", reply.user or "someone", code)
            reply.error(PreconditionFailed(f"Slack would not open the form ({code})", hint="try again"))

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """For tests and the demo: wait until listeners, submitted work and the outbox are all done."""
        deadline = time.monotonic() + timeout
        quiet = 0
        while time.monotonic() < deadline:
            quiet = 0 if self._busy() else quiet + 1
            if quiet >= 3:  # quiet three looks in a row: a listener may hand work on just as it ends
                return True
            time.sleep(0.02)
        return False

    def _busy(self) -> bool:
        if self.executor.busy or self.listener_executor.busy or self.planner.busy:
            return True
        if self.poller is not None and self.poller.busy:
            return True
        if self.sender is not None:
            if self.sender.busy:
                return True
            self.wake_sender()
            return Outbox(self.services.store).pending_count() > 0
        return False


def _logged(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except Exception:
        log.exception("background work %s failed", getattr(fn, "__name__", fn))
        raise
