"""The two places where a rollback's steps overlap, and why each keeps "nothing is lost".

The executor (bot.engine.run) runs the steps in order, except:

1. **The restore loads while the pre-rollback dump is taken.** The dump reads the live database; the
   load writes a new shadow database beside it: neither changes what the other sees. So the database
   step is begun (journaled running, its shadow's name noted) when the pre-rollback dump begins, and
   its load runs on a thread of its own. The code step waits for both, so a restore that fails changes
   nothing at all; only the swap, in the database step's turn, changes the live database, and it comes
   after the dump is verified and stored, as before. If the dump fails, the load is stopped, the
   shadow dropped and the database step goes back to waiting (StepStopped).

2. **Prestaged: the pre-rollback dump is taken of the kept database, after the swap.** The swap
   renames the live database aside, whole, closed to connections: from then on nothing writes to it,
   so it IS the pre-rollback state, byte for byte, and dumping it later loses nothing, provided it is
   never dropped before its dump is verified (the bot never drops a kept database: only shadow names
   can be dropped, see dbtools.refuse_unless_shadow) and a crash in between takes the dump again (the
   pre_dump step is still pending in the journal, so resume runs it). The dump runs on a thread beside
   the flags and health steps; the checklist, and the end of the run, wait for it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from bot.backends.base import StagedRestore
from bot.engine.events import Reporter, StepFailed, StepStopped, emit
from bot.engine.step_context import StepContext, StepOutcome
from bot.engine.steps import STEP_BY_NAME
from bot.engine.steps_database import dumps_after_swap, stage_restore, stages_aside, swap_staged

__all__ = ["Begun", "Beside", "Staging", "dumps_after_swap", "stage_during_dump"]
from bot.store import StepRecord, Store

T = TypeVar("T")
RunStep = Callable[[dict[str, Any]], "StepFailed | None"]  # the executor's _run_step, given begun= and work=


@dataclass(frozen=True)
class Begun:
    """A step claimed and announced, with its own context (its own progress)."""

    ctx: StepContext
    started: float  # time.monotonic() when it began


def stage_during_dump(ctx: StepContext, journal: Mapping[str, StepRecord]) -> bool:
    """Does the database step's load start with the pre-rollback dump? (1. above)"""
    waiting = ("pending", "failed")
    return (
        stages_aside(ctx)
        and journal["pre_dump"].status in waiting
        and journal["database"].status in waiting
        and journal["code"].status in (*waiting, "ok", "skipped")
    )


class Beside(Generic[T]):
    """A function run on a thread of its own; result() waits for it and returns or raises what it did."""

    def __init__(self, name: str, fn: Callable[[], T]) -> None:
        self._fn = fn
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as error:  # handed to whoever waits, on their thread
            self._error = error

    def result(self) -> T:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # set when no error


class Staging:
    """The database step's load into its shadow, begun with the pre-rollback dump (1. above)."""

    def __init__(self, ctx: StepContext, *, begun: Begun) -> None:
        self.run_id = ctx.run_id
        self.begun = begun
        self.cancel = threading.Event()
        self.settled = False  # the step was finished (failed or swapped) or stopped: nothing left to do
        self._staged: StagedRestore | None = None
        self._load: Beside[StagedRestore] = Beside(f"stage-{ctx.run_id}", lambda: stage_restore(begun.ctx, self.cancel))

    def loaded(self, run_step: RunStep) -> StepFailed | None:
        """Wait for the load; if it failed, the database step fails now, before any code is pushed."""
        try:
            self._staged = self._load.result()
        except Exception as error:
            self.settled = True
            return run_step({"begun": self.begun, "work": _raising(error)})
        return None

    def swap(self, run_step: RunStep) -> StepFailed | None:
        """The database step, in its turn: swap the loaded shadow in."""
        staged = self._staged
        assert staged is not None, "loaded() first"
        self.settled = True
        return run_step({"begun": self.begun, "work": lambda ctx: swap_staged(ctx, staged)})

    def stop(self, store: Store, reporters: Sequence[Reporter], *, why: str) -> None:
        """The run stopped before the swap: stop the load, drop the shadow, and let the step wait again."""
        if self.settled:
            return
        self.settled = True
        self.cancel.set()
        try:
            staged: StagedRestore | None = self._staged or self._load.result()
        except Exception:  # stopped (or failed) mid-load: stage_aside dropped the shadow itself
            staged = None
        if staged is not None:
            staged.discard(progress=self.begun.ctx.progress)
        reason = f"stopped before the swap ({why}); the live database was not touched"
        store.release_step(self.run_id, "database", summary=reason)
        title = STEP_BY_NAME["database"].title
        emit(reporters, StepStopped(run_id=self.run_id, step="database", title=title, reason=reason))


def _raising(error: Exception) -> Callable[[StepContext], StepOutcome]:
    def fail(_ctx: StepContext) -> StepOutcome:
        raise error

    return fail
