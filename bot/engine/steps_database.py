"""The database's part of a rollback: what the safety check verifies, the pre-rollback dump, the restore.

A dump restore is done aside and swapped in by the backend, so a failure leaves the live database
as it was. An RDS restore creates a NEW instance and never touches the old one: the app must be
pointed at the new endpoint, which the step reports and the checklist repeats.
"""

from __future__ import annotations

from pathlib import Path

from bot.engine.step_context import StepContext, StepOutcome, human_size
from bot.errors import NotSupported, RollbackError
from bot.store import now


def database_checks(ctx: StepContext, passed: list[str], failures: list[str]) -> None:
    plan = ctx.plan
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
            ctx.backup_dir.mkdir(parents=True, exist_ok=True)
            probe = ctx.backup_dir / ".write-test"
            probe.write_text("ok")
            probe.unlink()
            passed.append(f"backup folder writable: {ctx.backup_dir}")
        except OSError as error:
            failures.append(f"cannot write the pre-rollback dump to {ctx.backup_dir}: {error.strerror}")

    action = plan.database.action
    if action == "dump" and ctx.database is not None:
        source = Path(plan.database.source or "")
        if not source.is_file():
            failures.append(f"the dump to restore from does not exist: {source}")
        else:
            try:
                info = ctx.database.verify(source)
                passed.append(f"restore source verified: {source.name} ({human_size(info.size_bytes)})")
            except RollbackError as error:
                failures.append(f"the dump to restore from is not usable: {error.message}")
    elif action.startswith("rds-"):
        if ctx.rds is None or not plan.database.source or not plan.database.new_instance:
            failures.append(f"{action} needs [environments.{plan.env}.rds] with the source and restore_instance_id")
        else:
            try:
                ctx.rds.check(
                    source=plan.database.source,
                    instance_id=plan.database.new_instance,
                    point_in_time=action == "rds-pitr",
                    run_id=ctx.run_id,
                )
                passed.append(
                    f"RDS source {plan.database.source} available; {plan.database.new_instance} can be created"
                )
            except RollbackError as error:
                failures.append(error.message)


def pre_rollback_dump(ctx: StepContext) -> StepOutcome:
    if ctx.database is None or ctx.plan.database.engine == "none":
        return StepOutcome("skipped", "no database configured")
    folder = ctx.backup_dir / ctx.plan.env
    path = _unique(folder / f"pre-rollback-{now():%Y%m%d%H%M}.dump")
    if ctx.plan.dry_run:
        return StepOutcome("skipped", f"dry run: would dump {ctx.database.describe()} to {path}")
    folder.mkdir(parents=True, exist_ok=True)
    info = ctx.database.dump(path, progress=ctx.progress)
    summary = f"{path.name} ({human_size(info.size_bytes)}, {info.entries} entries, verified) in {folder}"
    return StepOutcome("ok", summary, {"path": str(path), "size_bytes": info.size_bytes, "entries": info.entries})


def database_restore(ctx: StepContext) -> StepOutcome:
    plan = ctx.plan
    action = plan.database.action
    if action == "none":
        return StepOutcome("skipped", "no database restore planned")
    if action.startswith("rds-"):
        return _rds_restore(ctx)
    if action != "dump" or ctx.database is None:
        raise NotSupported(f"database restore {action!r} is not available for engine {plan.database.engine}")
    source = Path(plan.database.source or "")
    if plan.dry_run:
        return StepOutcome("skipped", f"dry run: would restore {ctx.database.describe()} from {source.name}")
    result = ctx.database.restore(source, progress=ctx.progress)
    return StepOutcome(
        "ok",
        result.summary or f"restored {result.database} from {source.name}; previous data kept as {result.previous}",
        {"database": result.database, "previous": result.previous, "source": str(source), **result.details},
    )


def _rds_restore(ctx: StepContext) -> StepOutcome:
    plan, rds = ctx.plan, ctx.rds
    source, instance = plan.database.source or "", plan.database.new_instance or ""
    if rds is None:
        raise NotSupported(f"{plan.database.action} needs an [environments.{plan.env}.rds] table")
    if plan.dry_run:
        return StepOutcome("skipped", f"dry run: would restore {source} into a NEW RDS instance {instance}")
    if plan.database.action == "rds-snapshot":
        result = rds.restore_snapshot(
            snapshot_id=source, instance_id=instance, run_id=ctx.run_id, progress=ctx.progress
        )
    else:
        result = rds.restore_point_in_time(
            source_instance_id=source, instance_id=instance, run_id=ctx.run_id, progress=ctx.progress
        )
    endpoint = f"{result.endpoint}:{result.port}"
    return StepOutcome(
        "ok",
        result.summary or f"restored {result.source} into NEW instance {result.instance_id} at {endpoint}",
        {"instance": result.instance_id, "endpoint": endpoint, "source": result.source, "status": result.status},
    )


def _unique(path: Path) -> Path:
    candidate, counter = path, 2
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{counter}{path.suffix}")
        counter += 1
    return candidate
