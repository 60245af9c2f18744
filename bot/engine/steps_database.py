"""The database's part of a rollback: what the safety check verifies, the pre-rollback dump, the restore.

A dump restore is done aside and swapped in by the backend, so a failure leaves the live database
as it was. An RDS restore creates a NEW instance and never touches the old one: the app must be
pointed at the new endpoint, which the step reports and the checklist repeats.

Dumps live in the artifact store (a folder or S3): a restore point recorded with a sha256 is fetched
and checked against it (the safety check, and again by the restore step) before anything uses it, so a
corrupted or swapped object is refused while everything is still untouched. The pre-rollback dump is
written to local scratch, verified, then stored, with its location, size and sha256 in the journal.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bot import format as fmt
from bot.artifacts import fetched, is_s3
from bot.backends.base import DatabaseIdentities, DumpInfo, Progress, StagedRestore, Standby, StandbyDatabase
from bot.engine.outcomes import DatabaseOutcome, DumpOutcome
from bot.engine.plan import Plan
from bot.engine.restore_points import dump_and_put
from bot.engine.step_context import StepContext, StepOutcome
from bot.errors import NotSupported, RollbackError, StandbyUnusable
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
        _storage_checks(ctx, passed, failures)

    action = plan.database.action
    if action == "dump" and ctx.database is not None:
        _restore_source_check(ctx, passed, failures)
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


def dumps_after_swap(plan: Plan) -> bool:
    """Is the pre-rollback dump of this plan taken of the kept database, after the swap (prestage)?"""
    return plan.database.prestaged and not plan.dry_run


def pre_rollback_dump(ctx: StepContext) -> StepOutcome:
    database = ctx.database
    if database is None or ctx.plan.database.engine == "none":
        return StepOutcome("skipped", "no database configured")
    artifacts = ctx.artifact_store()
    name = f"{ctx.plan.env}/pre-rollback-{now():%Y%m%d%H%M}.dump"
    if ctx.plan.dry_run:
        where = artifacts.location_for(name)
        return StepOutcome("skipped", f"dry run: would dump {database.describe()} to {where}")
    kept = DatabaseOutcome.from_details(ctx.done.get("database")).previous if dumps_after_swap(ctx.plan) else None
    of = ""
    dump: Callable[[Path], DumpInfo] | None = None
    if kept and isinstance(database, StandbyDatabase):
        # The swap kept the live data whole under `kept`, closed: it IS the pre-rollback state (overlap.py).
        of = f" of {kept}, the database as it was before the swap"
        dump = partial(_dump_kept, database, kept, ctx.progress)
    # Verified by the backend in scratch before it is stored; stored (and checked there) before it counts.
    info, stored = dump_and_put(database, artifacts, ctx.scratch_dir(), name, ctx.progress, dump)
    summary = (
        f"{stored.location.rsplit('/', 1)[-1]}{of} ({fmt.size(stored.size)}, {info.entries} entries, verified, "
        f"sha256 {stored.sha256[:12]}…) in {stored.location.rsplit('/', 1)[0]}"
    )
    outcome = DumpOutcome(  # path and location: where it is kept, a path or s3://bucket/key
        path=stored.location,
        location=stored.location,
        size_bytes=stored.size,
        sha256=stored.sha256,
        entries=info.entries,
        kept_database=kept if of else None,
    )
    return StepOutcome("ok", summary, outcome.to_details())


def _dump_kept(database: StandbyDatabase, kept: str, progress: Progress, local: Path) -> DumpInfo:
    return database.dump_kept(kept, local, progress=progress)


def database_restore(ctx: StepContext) -> StepOutcome:
    plan = ctx.plan
    action = plan.database.action
    if action == "none":
        return StepOutcome("skipped", "no database restore planned")
    if action.startswith("rds-"):
        return _rds_restore(ctx)
    if plan.dry_run:
        name = (plan.database.source or "").rsplit("/", 1)[-1]
        where = ctx.database.describe() if ctx.database is not None else plan.database.engine
        return StepOutcome("skipped", f"dry run: would restore {where} from {name}")
    earlier = _swapped_by_an_earlier_attempt(ctx)
    if earlier is not None:
        return earlier
    staged = _standby(ctx) if plan.database.standby else None
    return swap_staged(ctx, staged or stage_restore(ctx))


def _swapped_by_an_earlier_attempt(ctx: StepContext) -> StepOutcome | None:
    """The process died after its swap committed and before it could journal it: the swap is done.

    Restoring again would move whatever the application wrote since into a second kept database.
    """
    database = ctx.database
    if not isinstance(database, DatabaseIdentities):
        return None
    step = next((s for s in ctx.store.steps(ctx.run_id) if s.name == "database"), None)
    noted = DatabaseOutcome.from_details(step.details if step else {})
    if not (noted.shadow_id and noted.live_id) or database.identity(database.name) != noted.shadow_id:
        return None
    kept = database.name_of(noted.live_id)
    summary = (
        f"the swap of an earlier attempt had completed before the bot stopped: {database.name} holds the"
        f" restored data; previous data kept as {kept}"
    )
    ctx.progress(summary)
    return StepOutcome(
        "ok",
        summary,
        noted.model_copy(
            update={"database": database.name, "previous": kept, "source": ctx.plan.database.source}
        ).to_details(),
    )


def _journal_identities(ctx: StepContext, shadow: str) -> None:
    """Just before the swap: which database is which, by identities a rename keeps (see above)."""
    database = ctx.database
    if isinstance(database, DatabaseIdentities):
        noted = DatabaseOutcome(
            shadow=shadow, shadow_id=database.identity(shadow), live_id=database.identity(database.name)
        )
        ctx.store.note_step(ctx.run_id, "database", noted.to_details())


def _standby(ctx: StepContext) -> StagedRestore | None:
    """The prestaged standby, checked and ready to swap; None (having said why) to restore from the dump."""
    plan, database, store = ctx.plan, ctx.database, ctx.store
    record = store.standby(plan.env)
    if (
        not isinstance(database, StandbyDatabase)
        or record is None
        or record.database != plan.database.standby
        or record.dump_sha256 != plan.database.source_sha256
    ):
        ctx.progress("the standby the plan counted on was replaced or removed since: restoring from the dump")
        return None
    # Journaled first, like any shadow: a crash before the swap drops it, and the next rollback restores.
    store.note_step(ctx.run_id, "database", DatabaseOutcome(shadow=record.database).to_details())
    store.clear_standby(plan.env, database=record.database)  # swapped in, or dropped: never used twice
    try:
        staged = database.stage_standby(Standby(record.database, record.oid, record.label), label=record.label)
    except StandbyUnusable as unusable:
        ctx.progress(f"{unusable.message}: dropping it and restoring from the dump instead")
        store.record(
            actor="rollback-bot", action="standby.unusable", run_id=ctx.run_id, env=plan.env, detail=unusable.message
        )
        database.drop_standby()
        return None
    _journal_identities(ctx, record.database)
    ctx.progress(f"standby {record.database} holds {record.label}, unchanged: swapping it in")
    return staged


def stages_aside(ctx: StepContext) -> bool:
    """Does this run's database step load a dump into a shadow first (so the load can start early)?"""
    plan = ctx.plan
    return plan.database.action == "dump" and not plan.dry_run and ctx.database is not None


def stage_restore(ctx: StepContext, cancel: threading.Event | None = None) -> StagedRestore:
    """The database step up to its swap: the restore point checked, loaded into the shadow, checked again.

    Changes nothing live, so it may run while the pre-rollback dump is still being taken; only the
    swap (swap_staged) waits for that dump to be verified.
    """
    plan, database = ctx.plan, ctx.database
    if plan.database.action != "dump" or database is None:
        raise NotSupported(
            f"database restore {plan.database.action!r} is not available for engine {plan.database.engine}"
        )
    source = plan.database.source or ""
    # The shadow's name is journaled before it exists, so a crash mid-restore can be cleaned up exactly.
    shadow = database.shadow_name(run_tag(ctx.run_id))
    ctx.store.note_step(ctx.run_id, "database", DatabaseOutcome(shadow=shadow).to_details())
    if not plan.database.source_sha256:
        staged = database.stage(Path(source), progress=ctx.progress, shadow=shadow, cancel=cancel)
    else:
        # Checked again here, not only in the safety check: the object could have changed since.
        with fetched(
            ctx.artifact_store(), source, plan.database.source_sha256, plan.database.source_size, _downloads(ctx)
        ) as local:
            staged = database.stage(local, progress=ctx.progress, shadow=shadow, cancel=cancel)
    _journal_identities(ctx, shadow)
    return staged


def swap_staged(ctx: StepContext, staged: StagedRestore) -> StepOutcome:
    source = ctx.plan.database.source or ""
    result = staged.swap_in(progress=ctx.progress)
    standby = staged.shadow if staged.shadow == ctx.plan.database.standby else None
    summary = (
        f"swapped in the standby {standby}, which held {source.rsplit('/', 1)[-1]}; previous data kept as"
        f" {result.previous}"
        if standby
        else result.summary
        or f"restored {result.database} from {source.rsplit('/', 1)[-1]}; previous data kept as {result.previous}"
    )
    if dumps_after_swap(ctx.plan):  # said where people look until the dump is verified (overlap.py)
        summary += "; it holds the pre-rollback data and is kept: the pre-rollback dump is taken of it now"
    return StepOutcome(
        "ok",
        summary,
        {  # the engine's own facts (timings, warnings) are shown with the step; the typed ones win
            "sha256": ctx.plan.database.source_sha256,
            **result.details,
            **DatabaseOutcome(
                database=result.database, previous=result.previous, source=source, shadow=staged.shadow, standby=standby
            ).to_details(),
        },
    )


def run_tag(run_id: str) -> str:
    """A short stable tag for names a run creates (shadow databases): 8 hex characters of its id's hash."""
    return hashlib.sha256(run_id.encode()).hexdigest()[:8]


def _rds_restore(ctx: StepContext) -> StepOutcome:
    plan, rds = ctx.plan, ctx.rds
    source, instance = plan.database.source or "", plan.database.new_instance or ""
    if rds is None:
        raise NotSupported(f"{plan.database.action} needs an [environments.{plan.env}.rds] table")
    if plan.dry_run:
        return StepOutcome(
            "skipped",
            f"dry run: would restore {source} into a NEW RDS instance {instance} (an Aurora source: a NEW cluster"
            f" {instance} and its instance)",
        )
    if plan.database.action == "rds-snapshot":
        result = rds.restore_snapshot(
            snapshot_id=source, instance_id=instance, run_id=ctx.run_id, progress=ctx.progress
        )
    else:
        result = rds.restore_point_in_time(
            source_instance_id=source, instance_id=instance, run_id=ctx.run_id, progress=ctx.progress
        )
    endpoint = f"{result.endpoint}:{result.port}"
    # An Aurora restore's result (bot.backends.rds_cluster.ClusterRestoreResult) also names the NEW cluster.
    cluster, reader = getattr(result, "cluster_id", "") or None, getattr(result, "reader_endpoint", "") or None
    created = f"cluster {cluster} (instance {result.instance_id})" if cluster else f"instance {result.instance_id}"
    return StepOutcome(
        "ok",
        result.summary or f"restored {result.source} into NEW {created} at {endpoint}",
        DatabaseOutcome(
            instance=result.instance_id,
            endpoint=endpoint,
            source=result.source,
            status=result.status,
            cluster=cluster,
            reader_endpoint=f"{reader}:{result.port}" if reader else None,
        ).to_details(),
    )


def _storage_checks(ctx: StepContext, passed: list[str], failures: list[str]) -> None:
    """Both places the pre-rollback dump passes through: local scratch, then the artifact store."""
    scratch = ctx.scratch_dir()
    try:
        scratch.mkdir(parents=True, exist_ok=True)
        probe = scratch / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        failures.append(f"cannot write the pre-rollback dump to the work folder {scratch}: {error.strerror}")
    try:
        passed.append(ctx.artifact_store().check_writable())
    except RollbackError as error:
        failures.append(error.message)


def _restore_source_check(ctx: StepContext, passed: list[str], failures: list[str]) -> None:
    assert ctx.database is not None
    db = ctx.plan.database
    source = db.source or ""
    name = source.rsplit("/", 1)[-1]
    if db.source_sha256 and not is_s3(source):
        # Read once, by the restore itself: it hashes the file as it loads it, beside the pre-rollback
        # dump, and a mismatch stops the run before anything changes (the code step waits for it).
        try:
            size = Path(source).stat().st_size
        except OSError as error:
            failures.append(f"the dump to restore from cannot be read: {source}: {error.strerror}")
            return
        if db.source_size is not None and size != db.source_size:
            failures.append(
                f"the dump to restore from is not usable: it has {size} bytes, the restore point recorded"
                f" {db.source_size}"
            )
            return
        passed.append(
            f"restore source present: {name} ({fmt.size(size)}); its sha256 is checked as the restore reads it"
        )
        return
    if db.source_sha256 and db.standby:
        passed.append(
            f"restore source {name}: the standby holds it; downloaded and checked only if the standby is unusable"
        )
        return
    if db.source_sha256:
        try:
            # For S3 this downloads (hashing as it streams); the copy is kept in work_dir/downloads for
            # the restore step, which checks it again before using it. A dry run leaves nothing behind.
            store, downloads = ctx.artifact_store(), _downloads(ctx)
            if ctx.plan.dry_run:
                with fetched(store, source, db.source_sha256, db.source_size, downloads) as path:
                    size = path.stat().st_size
            else:
                size = store.fetch(source, db.source_sha256, db.source_size, downloads).stat().st_size
            passed.append(f"restore source verified: {name} ({fmt.size(size)}, sha256 {db.source_sha256[:12]}…)")
        except RollbackError as error:
            failures.append(f"the dump to restore from is not usable: {error.message}")
        return
    if is_s3(source):
        failures.append(f"the dump to restore from, {source}, has no recorded sha256 to check it against")
        return
    path = Path(source)  # a restore point from before sha256 was recorded, or a configured dump
    if not path.is_file():
        failures.append(f"the dump to restore from does not exist: {path}")
        return
    try:
        info = ctx.database.verify(path)
        passed.append(f"restore source verified: {path.name} ({fmt.size(info.size_bytes)})")
    except RollbackError as error:
        failures.append(f"the dump to restore from is not usable: {error.message}")


def _downloads(ctx: StepContext) -> Path:
    return ctx.scratch_dir() / "downloads"
