"""plan(request) → Plan: what a rollback would do, decided before anything changes.

Making a plan reads (it fetches the remote branch fresh and reads files at two commits) but changes
nothing anywhere. The plan hash covers every decision in it, so an approval given for one plan can
never start a different one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from bot import format as fmt
from bot.artifacts import join_location
from bot.backends.base import CodeRepo, Commit, Database, HealthSpec
from bot.config import EnvironmentSettings
from bot.engine.migrations import MigrationRisk, scan_between
from bot.engine.readiness import Readiness
from bot.errors import BadRequest
from bot.store import RestorePoint, StandbyRecord, iso, now


@dataclass(frozen=True)
class RollbackRequest:
    """What someone asked for, from Slack or the terminal, before any checking."""

    env: str
    requested_by: str
    to: str | None = None
    code: str | None = None  # overrides the environment's strategy
    db: str | None = None  # overrides the environment's restore
    flags: bool = True
    dry_run: bool = False
    source: str = "cli"


@dataclass(frozen=True)
class DatabasePlan:
    engine: str
    action: str  # dump | rds-snapshot | rds-pitr | none
    where: str = ""  # host/port/name, no secret
    source: str | None = None  # the dump (or snapshot) to restore from
    source_label: str = ""  # how it was chosen, for people
    restore_point_at: str | None = None  # ISO time the restore point was taken
    pre_dump: str | None = None  # the pre-rollback dump this run will take (path or s3:// pattern)
    new_instance: str | None = None  # RDS: the NEW instance the restore creates
    source_sha256: str | None = None  # the restore point's recorded sha256: checked before it is used
    source_size: int | None = None
    # prestage = true: the standby database holding the restore point, swapped in by the database step,
    # and the pre-rollback dump taken of the kept database after the swap (bot.engine.overlap)
    prestaged: bool = False
    standby: str | None = None  # the standby's name; None: no usable standby, the normal path is taken
    standby_note: str = ""  # for people: which path, and why


@dataclass(frozen=True)
class FlagPlan:
    provider: str
    keys: tuple[str, ...]
    environment: str | None = None
    project: str | None = None


@dataclass(frozen=True)
class Plan:
    env: str
    requested_by: str
    created_at: str
    remote: str
    branch: str
    deployed: Commit
    target: Commit
    target_source: str  # "--to", "restore point #3", "first parent of the deployed commit"
    undone: tuple[Commit, ...]
    code: str
    database: DatabasePlan
    flags: tuple[FlagPlan, ...]
    health: tuple[HealthSpec, ...]
    migration_risks: tuple[MigrationRisk, ...]
    dry_run: bool
    warnings: tuple[str, ...] = field(default_factory=tuple)
    # What rehearsals and drills have shown (bot.engine.readiness): shown with the plan, not bound by approval.
    readiness: Readiness | None = None

    @property
    def hash(self) -> str:
        """Covers every decision; not who asked or when (those don't change what would run)."""
        decided = self.to_dict()
        for volatile in ("requested_by", "created_at", "warnings", "readiness"):
            decided.pop(volatile)
        decided["database"].pop("pre_dump", None)  # its name carries the minute it is taken
        for unset in ("source_sha256", "source_size"):  # absent before S3 backups: keep older plans' hashes
            if decided["database"].get(unset) is None:
                decided["database"].pop(unset, None)
        encoded = json.dumps(decided, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(encoded.encode()).hexdigest()

    def restore_point_age(self, at: datetime | None = None) -> str | None:
        taken = self.database.restore_point_at
        if not taken:
            return None
        return fmt.duration((at or now()) - datetime.fromisoformat(taken))

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=_json_default))  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Plan:
        return cls(
            env=data["env"],
            requested_by=data["requested_by"],
            created_at=data["created_at"],
            remote=data["remote"],
            branch=data["branch"],
            deployed=_commit(data["deployed"]),
            target=_commit(data["target"]),
            target_source=data["target_source"],
            undone=tuple(_commit(c) for c in data["undone"]),
            code=data["code"],
            database=DatabasePlan(**data["database"]),
            flags=tuple(FlagPlan(**{**f, "keys": tuple(f["keys"])}) for f in data["flags"]),
            health=tuple(HealthSpec(**h) for h in data["health"]),
            migration_risks=tuple(MigrationRisk(**r) for r in data["migration_risks"]),
            dry_run=data["dry_run"],
            warnings=tuple(data.get("warnings", ())),
            readiness=Readiness.from_dict(data.get("readiness")),
        )


def make_plan(
    request: RollbackRequest,
    *,
    settings: EnvironmentSettings,
    repo: CodeRepo,
    database: Database | None,
    restore_point: RestorePoint | None,
    dump_override: Path | None,
    backup_dir: Path | str,
    standby: StandbyRecord | None = None,
) -> Plan:
    """Decide everything a rollback of `request.env` would do. Reads; never writes."""
    warnings: list[str] = []
    deployed = repo.fetch()
    code = request.code or settings.code
    db_action = request.db or settings.database.restore
    if db_action == "dump" and settings.database.engine == "none":
        raise BadRequest(
            f"--db dump needs a database for {request.env}",
            hint=f"set [environments.{request.env}.database] engine and url_env",
        )

    if request.to:
        target = repo.resolve(request.to)
        target_source = "--to"
    elif restore_point is not None:
        target = repo.resolve(restore_point.commit_sha)
        target_source = f"restore point #{restore_point.id} taken {restore_point.created_at:%Y-%m-%d %H:%M} UTC"
    else:
        target = repo.first_parent(deployed.sha)
        target_source = "first parent of the deployed commit (no restore point recorded)"
    if target.sha == deployed.sha:
        raise BadRequest(
            f"nothing to roll back: {request.env} is already at {target}",
            hint="name another commit with `to SHA` / --to",
        )
    if repo.is_ancestor(target.sha, deployed.sha):
        undone = tuple(repo.commits_between(target.sha, deployed.sha))
    else:
        undone = ()
        warnings.append(
            f"target {target.short} is not an ancestor of the deployed commit {deployed.short}: "
            "the rollback will replace the tree, not undo a linear history"
        )

    risks = tuple(scan_between(repo, older=target.sha, newer=deployed.sha))
    if risks and db_action == "none":
        warnings.append(
            "destructive migrations ran between the two commits and no database restore is planned: "
            "reverting code will not bring that data or schema back (a database restore is the way back)"
        )

    database_plan = _database_plan(
        request, settings, database, db_action, restore_point, dump_override, backup_dir, target, warnings, standby
    )
    flags = (
        ()
        if not request.flags
        else tuple(
            FlagPlan(provider=f.provider, keys=tuple(f.keys), environment=f.environment, project=f.project)
            for f in settings.flags
        )
    )
    health = tuple(
        HealthSpec(
            url=h.url,
            expect_status=h.expect_status,
            timeout_s=h.timeout.total_seconds(),
            attempts=h.attempts,
            interval_s=h.interval.total_seconds(),
            consecutive=h.consecutive,
            pass_interval_s=h.pass_interval.total_seconds(),
        )
        for h in settings.health
    )
    if not health:
        warnings.append("no health checks are configured: the bot cannot confirm the rollback worked")
    return Plan(
        env=request.env,
        requested_by=request.requested_by,
        created_at=iso(),
        remote=repo.remote,
        branch=repo.branch,
        deployed=deployed,
        target=target,
        target_source=target_source,
        undone=undone,
        code=code,
        database=database_plan,
        flags=flags,
        health=health,
        migration_risks=risks,
        dry_run=request.dry_run,
        warnings=tuple(warnings),
    )


def _database_plan(
    request: RollbackRequest,
    settings: EnvironmentSettings,
    database: Database | None,
    action: str,
    restore_point: RestorePoint | None,
    dump_override: Path | None,
    backup_dir: Path | str,
    target: Commit,
    warnings: list[str],
    standby: StandbyRecord | None,
) -> DatabasePlan:
    engine = settings.database.engine
    where = database.describe() if database is not None else ""
    # where the artifact store will keep it: a folder, or s3://bucket/prefix
    pre_dump = join_location(backup_dir, request.env, "pre-rollback-YYYYMMDDHHMM.dump") if engine != "none" else None
    if action == "none":
        return DatabasePlan(engine=engine, action="none", where=where, pre_dump=pre_dump)
    if action.startswith("rds-"):
        rds = settings.rds
        source = (rds.snapshot_id if action == "rds-snapshot" else rds.source_instance_id) if rds else None
        if not source or rds is None or not rds.restore_instance_id:
            needed = "snapshot_id" if action == "rds-snapshot" else "source_instance_id"
            raise BadRequest(
                f"--db {action} needs [environments.{request.env}.rds] {needed} and restore_instance_id",
                hint="add them to rollback.toml, or choose another --db",
            )
        return DatabasePlan(
            engine=engine,
            action=action,
            where=where,
            source=source,
            source_label="snapshot" if action == "rds-snapshot" else "latest restorable time of the instance",
            pre_dump=pre_dump,
            new_instance=rds.restore_instance_id,
        )
    sha256, size = None, None
    prestaged = _prestaged(settings, restore_point if dump_override is None else None, standby)
    if dump_override is not None:
        source, label, taken = str(dump_override), "configured dump", None
    elif restore_point is not None and restore_point.dump_path:
        source = restore_point.dump_path
        label = f"restore point #{restore_point.id} (commit {restore_point.commit_sha[:7]})"
        taken = iso(restore_point.created_at)
        if restore_point.dump_sha256:  # restore points from before sha256 was recorded are verified instead
            sha256, size = restore_point.dump_sha256, restore_point.dump_size
            label = f"restore point #{restore_point.id} (commit {restore_point.commit_sha[:7]}, sha256 {sha256[:12]}…)"
    else:
        raise BadRequest(
            f"no dump to restore {request.env} from",
            hint=f"record one with `rollback-bot snapshot {request.env}`, set database.dump, or use --db none",
        )
    if dump_override is None and restore_point is not None and restore_point.commit_sha != target.sha:
        warnings.append(
            f"the database restore point was taken at commit {restore_point.commit_sha[:7]}, "
            f"not at the target {target.short}: code and data may not match"
        )
    return DatabasePlan(
        engine=engine,
        action="dump",
        where=where,
        source=source,
        source_label=label,
        restore_point_at=taken,
        pre_dump=pre_dump,
        source_sha256=sha256,
        source_size=size,
        **prestaged,
    )


def _prestaged(
    settings: EnvironmentSettings, restore_point: RestorePoint | None, standby: StandbyRecord | None
) -> dict[str, Any]:
    """With prestage = true: whether the standby holds the very restore point this plan restores."""
    if not settings.database.prestage:
        return {}
    after = "; the pre-rollback dump is taken of the kept database after the swap"
    if restore_point is None:
        return {
            "prestaged": True,
            "standby_note": "restoring a configured dump, not a restore point: restore, then swap" + after,
        }
    if standby is None:
        note = f"no standby is ready (`rollback-bot snapshot` builds one): restore, then swap{after}"
        return {"prestaged": True, "standby_note": note}
    if standby.restore_point_id != restore_point.id or standby.dump_sha256 != restore_point.dump_sha256:
        note = (
            f"the standby holds restore point #{standby.restore_point_id}, not #{restore_point.id}:"
            f" restore, then swap{after}"
        )
        return {"prestaged": True, "standby_note": note}
    note = f"standby {standby.database} holds restore point #{restore_point.id}: the database step is the swap{after}"
    return {"prestaged": True, "standby": standby.database, "standby_note": note}


def _commit(data: dict[str, Any]) -> Commit:
    when = data.get("committed_at")
    return Commit(
        sha=data["sha"],
        subject=data["subject"],
        author=data.get("author", ""),
        committed_at=datetime.fromisoformat(when) if when else None,
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")
