"""The domain flows both front ends call: propose a rollback, start, resume, cancel, take a restore point.

The CLI and the Slack handlers differ only in how they ask and how they show; what happens is here.
"""

from __future__ import annotations

import getpass
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bot.backends.base import FlagState
from bot.engine.events import Reporter
from bot.engine.plan import Plan, RollbackRequest, make_plan
from bot.engine.run import Runner
from bot.errors import BadRequest, InvalidState
from bot.store import RunRecord, now

if TYPE_CHECKING:
    from bot.services import Services

CODE_CHOICES = ("revert", "force-push", "none")
DB_CHOICES = ("dump", "rds-snapshot", "rds-pitr", "none")


def terminal_user() -> str:
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except Exception:  # getuser raises on containers with no passwd entry
        return "terminal"


def validate_request(services: Services, request: RollbackRequest) -> None:
    services.config.environment(request.env)  # raises UnknownEnvironment naming the known ones
    if request.code is not None and request.code not in CODE_CHOICES:
        raise BadRequest(f"unknown code strategy {request.code!r}", hint=f"one of {', '.join(CODE_CHOICES)}")
    if request.db is not None and request.db not in DB_CHOICES:
        raise BadRequest(f"unknown database action {request.db!r}", hint=f"one of {', '.join(DB_CHOICES)}")


def make_request_plan(services: Services, request: RollbackRequest) -> Plan:
    """The plan for a request, reading the remote and the store; changes nothing."""
    validate_request(services, request)
    settings = services.config.environment(request.env)
    database = None
    if settings.database.engine != "none":
        try:
            database = services.database(request.env)
        except Exception:  # no URL yet: the plan can still be shown; the safety check will name it
            database = None
    return make_plan(
        request,
        settings=settings,
        repo=services.repo(request.env),
        database=database,
        restore_point=services.store.latest_restore_point(request.env),
        dump_override=services.dump_override(request.env),
        backup_dir=services.config.backup_dir,
    )


def propose(
    services: Services, request: RollbackRequest, *, meta: dict[str, Any] | None = None
) -> tuple[RunRecord, Plan]:
    """Plan and record a rollback waiting for approval."""
    plan = make_request_plan(services, request)
    record = services.store.create_run(
        env=request.env,
        requested_by=request.requested_by,
        source=request.source,
        plan=plan.to_dict(),
        plan_hash=plan.hash,
        dry_run=request.dry_run,
        meta=meta,
    )
    services.store.record(
        actor=request.requested_by,
        action="run.planned",
        run_id=record.id,
        env=request.env,
        detail=f"{plan.deployed.short} → {plan.target.short}, code {plan.code}, db {plan.database.action}"
        + (" (dry run)" if plan.dry_run else ""),
    )
    return record, plan


def start(services: Services, run_id: str, *, actor: str, reporters: Sequence[Reporter] = ()) -> RunRecord:
    return Runner(services).start(run_id, actor=actor, reporters=reporters)


def resume(
    services: Services, run_id: str, *, decision: str, actor: str, reporters: Sequence[Reporter] = ()
) -> RunRecord:
    return Runner(services).resume(run_id, decision=decision, actor=actor, reporters=reporters)


def cancel(services: Services, run_id: str, *, actor: str) -> RunRecord:
    """Cancel a plan that has not started; a started run is aborted through resume(…, 'abort')."""
    if not services.store.transition(run_id, from_=["planned"], to="cancelled", finished_at=now()):
        record = services.store.get_run(run_id)
        raise InvalidState(
            f"run {run_id} is {record.status} and can no longer be cancelled",
            hint="a failed run can be aborted instead" if record.status == "failed" else "",
        )
    record = services.store.get_run(run_id)
    services.store.record(actor=actor, action="run.cancelled", run_id=run_id, env=record.env)
    return record


def undo_flags(services: Services, run_id: str, *, actor: str) -> list[str]:
    """Put every flag a run turned off back to the state recorded before it changed; one line per flag."""
    record = services.store.get_run(run_id)
    step = next((s for s in services.store.steps(run_id) if s.name == "flags"), None)
    before: dict[str, list[dict[str, Any]]] = (step.details.get("before") if step else None) or {}
    if not before:
        raise InvalidState(f"run {run_id} recorded no flag states, so there is nothing to put back")
    lines = []
    for provider in services.flag_providers(record.env):
        for row in before.get(provider.describe(), []):
            state = provider.restore(FlagState(key=row["key"], on=row["on"], detail=row.get("detail", "")))
            lines.append(f"{provider.describe()}: {state.key} is {'on' if state.on else 'off'} again")
    services.store.record(actor=actor, action="flags.restored", run_id=run_id, env=record.env, detail="; ".join(lines))
    return lines
