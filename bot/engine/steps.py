"""The steps of a rollback, in order. Each takes a StepContext and returns a StepOutcome or raises.

A step is written so running it again after a failure is safe: the journal (store.steps) says what
already happened, and the backends refuse to act on a world that moved (push leases, restore-aside).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.backends.base import CodeRepo, Database, HealthChecker, Progress
from bot.config import EnvironmentSettings
from bot.engine.checklist import ChecklistFacts, build_checklist
from bot.engine.plan import Plan
from bot.errors import (
    GitError,
    HealthCheckFailed,
    NotSupported,
    PlanChanged,
    PreconditionFailed,
    RollbackError,
)
from bot.store import Store, now

# Flag vendors and RDS are later parts of the product: until their backends exist the safety check
# refuses such a plan up front, before anything is changed, rather than failing half-way.
SUPPORTED_FLAG_PROVIDERS: frozenset[str] = frozenset()
SUPPORTED_DB_ACTIONS = frozenset({"dump", "none"})


@dataclass
class StepContext:
    run_id: str
    plan: Plan
    env: EnvironmentSettings
    repo: CodeRepo
    database: Database | None
    database_error: RollbackError | None  # why `database` could not be opened, for the safety check
    health: HealthChecker
    store: Store
    backup_dir: Path
    progress: Progress
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # details of finished steps


@dataclass(frozen=True)
class StepOutcome:
    status: str  # "ok" | "skipped"
    summary: str
    details: dict[str, Any] = field(default_factory=dict)


StepFn = Callable[[StepContext], StepOutcome]


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

    if plan.database.engine != "none":
        if ctx.database is None:
            failures.append(ctx.database_error.message if ctx.database_error else "the database is not configured")
        else:
            try:
                ctx.database.check()
                passed.append(f"database answers: {ctx.database.describe()}")
            except RollbackError as error:
                failures.append(error.message)

    try:
        ctx.repo.check_remote()
        head = ctx.repo.fetch()
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

    if plan.database.action not in SUPPORTED_DB_ACTIONS:
        failures.append(f"database restore {plan.database.action!r} is not available in this build yet")
    if plan.database.action == "dump" and ctx.database is not None:
        source = Path(plan.database.source or "")
        if not source.is_file():
            failures.append(f"the dump to restore from does not exist: {source}")
        else:
            try:
                info = ctx.database.verify(source)
                passed.append(f"restore source verified: {source.name} ({_size(info.size_bytes)})")
            except RollbackError as error:
                failures.append(f"the dump to restore from is not usable: {error.message}")
    for flag in plan.flags:
        if flag.provider not in SUPPORTED_FLAG_PROVIDERS:
            failures.append(f"flag provider {flag.provider!r} is not available in this build yet")

    if plan.database.engine != "none":
        try:
            ctx.backup_dir.mkdir(parents=True, exist_ok=True)
            probe = ctx.backup_dir / ".write-test"
            probe.write_text("ok")
            probe.unlink()
            passed.append(f"backup folder writable: {ctx.backup_dir}")
        except OSError as error:
            failures.append(f"cannot write the pre-rollback dump to {ctx.backup_dir}: {error.strerror}")

    if failures:
        raise PreconditionFailed(
            "safety checks failed: " + "; ".join(failures),
            hint="nothing was changed; fix these and retry (or abort)",
            details={"failed": failures, "passed": passed},
        )
    return StepOutcome("ok", f"{len(passed)} checks passed", {"passed": passed})


def pre_rollback_dump(ctx: StepContext) -> StepOutcome:
    if ctx.database is None or ctx.plan.database.engine == "none":
        return StepOutcome("skipped", "no database configured")
    folder = ctx.backup_dir / ctx.plan.env
    path = _unique(folder / f"pre-rollback-{now():%Y%m%d%H%M}.dump")
    if ctx.plan.dry_run:
        return StepOutcome("skipped", f"dry run: would dump {ctx.database.describe()} to {path}")
    folder.mkdir(parents=True, exist_ok=True)
    info = ctx.database.dump(path, progress=ctx.progress)
    summary = f"{path.name} ({_size(info.size_bytes)}, {info.entries} entries, verified) in {folder}"
    return StepOutcome("ok", summary, {"path": str(path), "size_bytes": info.size_bytes, "entries": info.entries})


def code_rollback(ctx: StepContext) -> StepOutcome:
    plan = ctx.plan
    if plan.code == "none":
        return StepOutcome("skipped", "code strategy is none")
    if plan.dry_run:
        return StepOutcome(
            "skipped",
            f"dry run: would {plan.code} {plan.remote}/{plan.branch} from {plan.deployed.short} to {plan.target.short}",
        )
    if plan.code == "revert":
        undone = ", ".join(c.short for c in plan.undone[:10]) + (" …" if len(plan.undone) > 10 else "")
        message = (
            f"Rollback {plan.env} to {plan.target.short}: {plan.target.subject}\n\n"
            f"Reverts {plan.deployed.short}..{plan.target.short} ({len(plan.undone)} commits: {undone}).\n"
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
        {
            "strategy": result.strategy,
            "old_head": result.old_head,
            "new_head": result.new_head,
            "backup_ref": result.backup_ref,
        },
    )


def database_restore(ctx: StepContext) -> StepOutcome:
    plan = ctx.plan
    if plan.database.action == "none":
        return StepOutcome("skipped", "no database restore planned")
    if plan.database.action != "dump" or ctx.database is None:
        raise NotSupported(f"database restore {plan.database.action!r} is not available in this build yet")
    source = Path(plan.database.source or "")
    if plan.dry_run:
        return StepOutcome("skipped", f"dry run: would restore {ctx.database.describe()} from {source.name}")
    result = ctx.database.restore(source, progress=ctx.progress)
    return StepOutcome(
        "ok",
        result.summary or f"restored {result.database} from {source.name}; previous data kept as {result.previous}",
        {"database": result.database, "previous": result.previous, "source": str(source), **result.details},
    )


def feature_flags(ctx: StepContext) -> StepOutcome:
    if not ctx.plan.flags:
        return StepOutcome("skipped", "no feature flags to turn off")
    raise NotSupported("feature-flag providers are not available in this build yet", hint="turn the flags off by hand")


def health_checks(ctx: StepContext) -> StepOutcome:
    if not ctx.plan.health:
        return StepOutcome("skipped", "no health checks configured")
    results = [ctx.health.check(spec, progress=ctx.progress) for spec in ctx.plan.health]
    table = [
        {
            "url": r.url,
            "healthy": r.healthy,
            "status": r.last_status,
            "expected": r.expected_status,
            "attempts": r.attempts,
            "latency_ms": r.latency_ms,
            "error": r.last_error,
        }
        for r in results
    ]
    healthy = sum(r.healthy for r in results)
    summary = f"{healthy}/{len(results)} healthy"
    if healthy < len(results):
        bad = ", ".join(r.url for r in results if not r.healthy)
        raise HealthCheckFailed(
            f"health checks failed: {bad}",
            hint="look at the application; retry the checks, or skip if you accept the risk",
            details={"checks": table},
        )
    return StepOutcome("ok", summary, {"checks": table})


def post_rollback_checklist(ctx: StepContext) -> StepOutcome:
    plan, done = ctx.plan, ctx.done
    items = build_checklist(
        ChecklistFacts(
            env=plan.env,
            code_strategy=plan.code,
            db_action=plan.database.action if "database" in done else "none",
            pre_dump=done.get("pre_dump", {}).get("path"),
            previous_database=done.get("database", {}).get("previous"),
            new_endpoint=done.get("database", {}).get("endpoint"),
            backup_ref=done.get("code", {}).get("backup_ref") or None,
            health_urls=tuple(spec.url for spec in plan.health),
            flags_turned_off=tuple(k for f in plan.flags for k in f.keys) if "flags" in done else (),
        )
    )
    if plan.dry_run:
        return StepOutcome("skipped", f"dry run: {len(items)} checklist items", {"items": [i.id for i in items]})
    ctx.store.add_checklist(ctx.run_id, [(i.id, i.phase, i.text) for i in items])
    return StepOutcome("ok", f"{len(items)} items across 3 phases", {"items": [i.id for i in items]})


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


def _unique(path: Path) -> Path:
    candidate, counter = path, 2
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{counter}{path.suffix}")
        counter += 1
    return candidate


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
