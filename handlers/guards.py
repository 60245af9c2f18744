"""Listener middleware: before a button's or a modal's listener runs, its run is loaded and the act allowed.

Every button on a run's messages carries the run (and the plan it was shown for, or the checklist
item) in its value; the typed-confirmation modal carries them in private_metadata. `on_click(ctx,
check)` and `on_submit(ctx, check, field=…)` parse that, load the run and let the engine decide
whether this person may do this act now (`lifecycle.check_can_approve` / `lifecycle.authorize`, and the
break-glass and hand-over checks of bot.engine.break_glass / bot.engine.handover).
The listener then finds a `Target` in `context["target"]` and only acts and renders. A refusal is
answered here, once, through handlers.errors: the click is acked and the person told ephemerally; a
modal gets Slack's `errors` response under `field`. The listener never runs.

Payload shapes were checked before (handlers.payloads), so `body["user"]["id"]` and friends exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, BoltContext, BoltResponse
from slack_sdk import WebClient

from bot.engine import break_glass, handover, lifecycle
from bot.engine.lifecycle import Act, Actor
from bot.errors import NotAllowed, RollbackError
from bot.store import RunRecord
from handlers.context import SlackContext
from handlers.errors import Reply, reply_in_channel, reply_to, view_error
from handlers.ids import parse_checklist_value, parse_run_value

Middleware = Callable[..., BoltResponse | None]
# (ctx, who acted, the button value or private_metadata) → (the run, its plan hash or checklist item)
Check = Callable[[SlackContext, Actor, str], tuple[RunRecord, str]]


@dataclass(frozen=True)
class Target:
    """What a click or a submission is about, checked: who, which run, and where to answer them."""

    user: str
    run: RunRecord
    key: str  # the plan hash the button or modal was shown for, or the checklist item it ticks
    reply: Reply


def target(context: BoltContext) -> Target:
    found = context["target"]
    assert isinstance(found, Target), "the listener was registered without a guard"
    return found


# --- the checks: parse the value, load the run, let the engine decide --------------------------------------


def approvable(ctx: SlackContext, actor: Actor, value: str) -> tuple[RunRecord, str]:
    """Confirm: an approver, not the requester under two_person, this exact plan, not expired."""
    run_id, plan_hash = parse_run_value(value)
    return lifecycle.check_can_approve(ctx.services, run_id, actor=actor, plan_hash=plan_hash), plan_hash


def allowed(act: Act) -> Check:
    """Cancel, retry, skip, abort, undo flags: the engine's `authorize` for `act`, on the plan the button shows."""

    def check(ctx: SlackContext, actor: Actor, value: str) -> tuple[RunRecord, str]:
        run_id, plan_hash = parse_run_value(value)
        record = ctx.services.store.get_run(run_id)
        if act is not Act.CANCEL and plan_hash != record.plan_hash:
            raise NotAllowed("this button belongs to another plan")
        lifecycle.authorize(ctx.services, record, actor=actor, act=act)
        return record, plan_hash

    return check


def editable(ctx: SlackContext, actor: Actor, value: str) -> tuple[RunRecord, str]:
    """Edit: anyone may propose a changed plan, while this one still waits for approval."""
    run_id, plan_hash = parse_run_value(value)
    record = ctx.services.store.get_run(run_id)
    if record.status != lifecycle.RunStatus.PLANNED:
        raise NotAllowed(f"this rollback is already {record.status}; it can no longer be edited")
    return record, plan_hash


def checklist_item(ctx: SlackContext, actor: Actor, value: str) -> tuple[RunRecord, str]:
    """Done: anyone in the channel may tick an item of a run that exists; the break-glass review only an
    approver other than the person who broke the glass (the engine's `check_can_tick`)."""
    run_id, item_id = parse_checklist_value(value)
    return break_glass.check_can_tick(ctx.services, run_id, item_id, actor=actor), item_id


def break_glassable(ctx: SlackContext, actor: Actor, value: str) -> tuple[RunRecord, str]:
    """Break glass: the requester, listed in break_glass, on this exact plan, once break_glass_after has passed."""
    run_id, plan_hash = parse_run_value(value)
    return break_glass.check_can_break_glass(ctx.services, run_id, actor=actor, plan_hash=plan_hash), plan_hash


def takeable(ctx: SlackContext, actor: Actor, value: str) -> tuple[RunRecord, str]:
    """Take over: an approver, on a failed or interrupted run held by someone else."""
    run_id, plan_hash = parse_run_value(value)
    record = ctx.services.store.get_run(run_id)
    if plan_hash != record.plan_hash:
        raise NotAllowed("this button belongs to another plan")
    handover.check_can_take_over(ctx.services, run_id, actor=actor)
    return record, plan_hash


def lock_breakable(ctx: SlackContext, actor: Actor, value: str) -> tuple[RunRecord, str]:
    """Break lock (the button, on a refused plan): an approver, and the lock's holder gone. Key: the holding run."""
    run_id, _plan_hash = parse_run_value(value)
    record = ctx.services.store.get_run(run_id)
    lock, _why = handover.check_can_break_lock(ctx.services, record.env, actor=actor)
    return record, lock.run_id


def lock_still_breakable(ctx: SlackContext, actor: Actor, value: str) -> tuple[RunRecord, str]:
    """Break lock (the modal): as the button, and the lock still held by the run the modal was opened for."""
    run_id, holder_run = parse_run_value(value)
    record = ctx.services.store.get_run(run_id)
    handover.check_can_break_lock(ctx.services, record.env, actor=actor, run_id=holder_run)
    return record, holder_run


# --- the middleware -----------------------------------------------------------------------------------------


def on_click(ctx: SlackContext, check: Check) -> Middleware:
    """For a button: its value names the run; a refusal acks the click and tells the clicker."""

    def guard_click(
        ack: Ack,
        body: dict[str, Any],
        context: BoltContext,
        respond: Any,
        client: WebClient,
        next: Callable[[], Any],
    ) -> BoltResponse | None:
        user = body["user"]["id"]
        reply = reply_to(body, respond=respond, client=client)
        try:
            run, key = check(ctx, ctx.actor(user), body["actions"][0].get("value") or "")
        except RollbackError as error:
            ctx.answer_soon(reply, error)
            return ack()
        context["target"] = Target(user=user, run=run, key=key, reply=reply)
        return next()  # type: ignore[no-any-return]

    return guard_click


def on_submit(ctx: SlackContext, check: Check, *, field: str) -> Middleware:
    """For a modal: private_metadata names the run; a refusal is shown in the modal under `field`."""

    def guard_submit(
        ack: Ack, body: dict[str, Any], context: BoltContext, client: WebClient, next: Callable[[], Any]
    ) -> BoltResponse | None:
        user = body["user"]["id"]
        try:
            run, key = check(ctx, ctx.actor(user), body["view"].get("private_metadata") or "")
        except RollbackError as error:
            return view_error(ack, error, field=field)
        reply = reply_in_channel(client, channel=run.meta.get("channel", ""), user=user)
        context["target"] = Target(user=user, run=run, key=key, reply=reply)
        return next()  # type: ignore[no-any-return]

    return guard_submit
