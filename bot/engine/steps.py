"""The steps of a rollback, in order. Each takes a StepContext and returns a StepOutcome or raises.

A step is written so running it again after a failure is safe: the journal (store.steps) says what
already happened, and the backends refuse to act on a world that moved (push leases, restore-aside).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from bot.engine.checklist import ChecklistFacts, build_checklist
from bot.engine.outcomes import (
    ChecklistOutcome,
    CodeOutcome,
    DatabaseOutcome,
    DumpOutcome,
    HealthOutcome,
    HealthRow,
    SafetyOutcome,
)
from bot.engine.step_context import StepContext, StepFn, StepOutcome
from bot.engine.steps_database import database_checks, database_restore, pre_rollback_dump
from bot.engine.steps_flags import feature_flags, flag_checks
from bot.errors import GitError, HealthCheckFailed, NotSupported, PlanChanged, PreconditionFailed
from bot.store import now

__all__ = ["STEPS", "STEP_BY_NAME", "StepContext", "StepDef", "StepOutcome"]


def safety_checks(ctx: StepContext) -> StepOutcome:
    """Everything that can be known before touching anything; every failure named at once."""
    plan, failures, passed = ctx.plan, [], []
    tools = ["git"]
    if ctx.database is not None and plan.database.engine != "none":
        tools += ctx.database.required_tools()
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        failures.append(f"required tools not found on PATH: {', '.join(missing)}")
    else:
        passed.append(f"tools present: {', '.join(tools)}")

    try:
        head = ctx.repo.fetch()  # also proves the remote answers and has the branch: one round trip, not two
        passed.append(f"remote {plan.remote}/{plan.branch} answers")
        if head.sha != plan.deployed.sha:
            raise PlanChanged(
                f"{plan.remote}/{plan.branch} moved since the plan was made: it is now {head}, "
                f"the plan was for {plan.deployed}",
                hint="make a new plan and approve that one",
            )
        ctx.repo.resolve(plan.target.sha)
        passed.append(f"target {plan.target.short} exists")
    except PlanChanged:
        raise
    except GitError as error:
        failures.append(error.message)

    database_checks(ctx, passed, failures)
    flag_checks(ctx, passed, failures)

    if failures:
        raise PreconditionFailed(
            "safety checks failed: " + "; ".join(failures),
            hint="nothing was changed; fix these and retry (or abort)",
            details=SafetyOutcome(passed=passed, failed=failures).to_details(),
        )
    return StepOutcome("ok", f"{len(passed)} checks passed", SafetyOutcome(passed=passed).to_details())


def code_rollback(ctx: StepContext) -> StepOutcome:
    plan = ctx.plan
    if plan.code == "none":
        return StepOutcome("skipped", "code strategy is none")
    if plan.dry_run:
        return StepOutcome(
            "skipped",
            f"dry run: would {plan.code} {plan.remote}/{plan.branch} from {plan.deployed.short} to {plan.target.short}",
        )
    head = ctx.repo.fetch()
    if head.sha != plan.deployed.sha:
        if _already_rolled_back(ctx, head.sha):
            # An earlier attempt of this step pushed, then failed before it could record it (a lost
            # connection, a crash): pushing again would be refused by the lease, and is not needed.
            return StepOutcome(
                "ok",
                f"{plan.remote}/{plan.branch} already has the target's files at {head.short} "
                "(pushed by an earlier attempt of this step)",
                CodeOutcome(strategy=plan.code, old_head=plan.deployed.sha, new_head=head.sha).to_details(),
            )
        raise PlanChanged(
            f"{plan.remote}/{plan.branch} moved since the plan was made: it is now {head}, "
            f"the plan was for {plan.deployed}",
            hint="nothing was pushed; abort this run and make a new plan",
        )
    if not ctx.repo.changed_files(plan.target.sha, head.sha):
        # A deploy that changed only the database (or was itself reverted): the files are already right.
        return StepOutcome(
            "ok",
            f"{plan.remote}/{plan.branch} is already at the target's files ({head.short} has the files of"
            f" {plan.target.short}): nothing to push",
            CodeOutcome(strategy=plan.code, old_head=head.sha, new_head=head.sha).to_details(),
        )
    if plan.code == "revert":
        undone = ", ".join(c.short for c in plan.undone[:10]) + (" …" if len(plan.undone) > 10 else "")
        message = (
            f"Rollback {plan.env} to {plan.target.short}: {plan.target.subject}\n\n"
            f"Reverts {plan.target.short}..{plan.deployed.short} ({len(plan.undone)} commits: {undone}).\n"
            f"Requested by {plan.requested_by} via rollback-bot, run {ctx.run_id}."
        )
        result = ctx.repo.revert_to(deployed=plan.deployed.sha, target=plan.target.sha, message=message)
    elif plan.code == "force-push":
        backup_ref = f"refs/rollback-backup/{plan.branch}/{now():%Y%m%d%H%M%S}"
        result = ctx.repo.force_push(deployed=plan.deployed.sha, target=plan.target.sha, backup_ref=backup_ref)
    else:
        raise NotSupported(f"unknown code strategy {plan.code!r}")
    summary = result.summary or f"{plan.remote}/{plan.branch}: {result.old_head[:7]} → {result.new_head[:7]}"
    return StepOutcome(
        "ok",
        summary,
        CodeOutcome(
            strategy=result.strategy, old_head=result.old_head, new_head=result.new_head, backup_ref=result.backup_ref
        ).to_details(),
    )


def _already_rolled_back(ctx: StepContext, head: str) -> bool:
    """Is the remote head exactly what this plan's code step would have pushed?"""
    plan = ctx.plan
    if plan.code == "force-push":
        return head == plan.target.sha
    try:
        return ctx.repo.first_parent(head).sha == plan.deployed.sha and not ctx.repo.changed_files(
            plan.target.sha, head
        )
    except GitError:
        return False


def health_checks(ctx: StepContext) -> StepOutcome:
    if not ctx.plan.health:
        return StepOutcome("skipped", "no health checks configured")
    results = [ctx.health.check(spec, progress=ctx.progress) for spec in ctx.plan.health]
    table = HealthOutcome(checks=[HealthRow.of(r) for r in results]).to_details()
    healthy = sum(r.healthy for r in results)
    summary = f"{healthy}/{len(results)} healthy"
    if healthy < len(results):
        bad = ", ".join(r.url for r in results if not r.healthy)
        raise HealthCheckFailed(
            f"health checks failed: {bad}",
            hint="look at the application; retry the checks, or skip if you accept the risk",
            details=table,
        )
    return StepOutcome("ok", summary, table)


def post_rollback_checklist(ctx: StepContext) -> StepOutcome:
    plan, done = ctx.plan, ctx.done
    dump = DumpOutcome.from_details(done.get("pre_dump"))
    database = DatabaseOutcome.from_details(done.get("database"))
    items = build_checklist(
        ChecklistFacts(
            env=plan.env,
            code_strategy=plan.code,
            db_action=plan.database.action if "database" in done else "none",
            pre_dump=dump.location or dump.path,
            previous_database=database.previous,
            new_endpoint=database.endpoint,
            backup_ref=CodeOutcome.from_details(done.get("code")).backup_ref or None,
            health_urls=tuple(spec.url for spec in plan.health),
            flags_turned_off=tuple(k for f in plan.flags for k in f.keys) if "flags" in done else (),
        )
    )
    ids = ChecklistOutcome(items=[i.id for i in items]).to_details()
    if plan.dry_run:
        return StepOutcome("skipped", f"dry run: {len(items)} checklist items", ids)
    ctx.store.add_checklist(ctx.run_id, [(i.id, i.phase, i.text) for i in items])
    return StepOutcome("ok", f"{len(items)} items across 3 phases", ids)


@dataclass(frozen=True)
class StepDef:
    name: str
    title: str
    fn: StepFn
    skippable: bool  # may a person choose "skip" after it fails?


STEPS: tuple[StepDef, ...] = (
    StepDef("safety", "Safety checks", safety_checks, skippable=False),
    StepDef("pre_dump", "Pre-rollback dump", pre_rollback_dump, skippable=False),
    StepDef("code", "Code rollback", code_rollback, skippable=True),
    StepDef("database", "Database restore", database_restore, skippable=True),
    StepDef("flags", "Feature flags", feature_flags, skippable=True),
    StepDef("health", "Health checks", health_checks, skippable=True),
    StepDef("checklist", "Post-rollback checklist", post_rollback_checklist, skippable=True),
)
STEP_BY_NAME = {step.name: step for step in STEPS}
