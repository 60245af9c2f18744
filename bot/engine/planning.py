"""Request → plan, reading the remote and the store and changing nothing; identical requests in flight share one.

The run's state machine (bot.engine.lifecycle) records the plan; this module only makes it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from bot.choices import CODE_CHOICES, DB_CHOICES
from bot.engine.plan import Plan, RollbackRequest, make_plan
from bot.engine.readiness import assess
from bot.engine.single_flight import SingleFlight
from bot.errors import BadRequest

if TYPE_CHECKING:
    from bot.services import Services


def validate_request(services: Services, request: RollbackRequest) -> None:
    services.config.environment(request.env)  # raises UnknownEnvironment naming the known ones
    if request.code is not None and request.code not in CODE_CHOICES:
        raise BadRequest(f"unknown code strategy {request.code!r}", hint=f"one of {', '.join(CODE_CHOICES)}")
    if request.db is not None and request.db not in DB_CHOICES:
        raise BadRequest(f"unknown database action {request.db!r}", hint=f"one of {', '.join(DB_CHOICES)}")


_PLANS: SingleFlight[Plan] = SingleFlight()


def make_request_plan(services: Services, request: RollbackRequest) -> Plan:
    """The plan for a request, reading the remote and the store; changes nothing.

    Identical requests in flight at the same moment share one computation (one fetch, one scan); each
    requester still gets a plan in their own name.
    """
    validate_request(services, request)
    key = (id(services), request.env, request.to, request.code, request.db, request.flags, request.dry_run)
    plan = _PLANS.do(key, lambda: _compute_plan(services, request))
    return plan if plan.requested_by == request.requested_by else replace(plan, requested_by=request.requested_by)


def _compute_plan(services: Services, request: RollbackRequest) -> Plan:
    settings = services.config.environment(request.env)
    database = None
    if settings.database.engine != "none":
        try:
            database = services.database(request.env)
        except Exception:  # no URL yet: the plan can still be shown; the safety check will name it
            database = None
    restore_point = services.store.latest_restore_point(request.env)
    plan = make_plan(
        request,
        settings=settings,
        repo=services.repo(request.env),
        database=database,
        restore_point=restore_point,
        dump_override=services.dump_override(request.env),
        backup_dir=services.config.artifact_location,
        standby=services.store.standby(request.env),
    )
    # Drills restore the restore point's dump: they say something of this plan only when it restores that dump.
    restores_it = (
        restore_point is not None
        and plan.database.action == "dump"
        and (plan.database.source == restore_point.dump_path)
    )
    readiness = assess(
        services.store,
        request.env,
        restore_point=restore_point if restores_it else None,
        drills_apply=settings.database.engine != "none" and plan.database.action in ("dump", "none"),
    )
    return replace(plan, readiness=readiness)
