"""AWS RDS restores: a snapshot or a point in time into a NEW instance (or Aurora cluster), tagged,
retry-safe, waited on.

RDS never restores in place: every restore creates another instance and the application has to be
pointed at its endpoint afterwards. This backend only ever describes and creates; it never modifies or
deletes an instance or a cluster, so the source (the live database) is left exactly as it was.

Retries are safe because every instance it creates carries the tag `rollback-bot:run=<run id>`: a
second attempt for the same run finds that instance and waits for it instead of creating another,
and an instance with the same name that rollback-bot did not create (or created for another run) is
refused rather than adopted.

A source that is Aurora (a DB cluster snapshot, or a DB cluster or one of its instances) is restored
into a NEW cluster with an instance in it, with the same guarantees: rds_cluster's business. Which one
applies is read from AWS, so the configuration is the same for both. What the two share (the client,
reading AWS, claiming by tags, waiting) is rds_aws'; what AWS's errors mean, in words a person can act
on, is rds_errors'.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot.backends.base import Progress, RdsRestoreResult, no_progress
from bot.backends.rds_aws import (
    CLUSTER_FAILED_STATES,
    FAILED_STATES,
    LATEST,
    RESTORE_TIME_TAG,
    RUN_TAG,
    SOURCE_TAG,
    RdsApi,
    Resource,
    is_code,
    tag_list,
)
from bot.backends.rds_cluster import AuroraRestore, AuroraSource, find_cluster, find_snapshot
from bot.backends.rds_errors import ApiError, failed
from bot.backends.reporter import Reporter
from bot.errors import RdsError

__all__ = [
    "CLUSTER_FAILED_STATES",
    "FAILED_STATES",
    "LATEST",
    "RESTORE_TIME_TAG",
    "RUN_TAG",
    "SOURCE_TAG",
    "RdsRestore",
]


class RdsRestore(RdsApi):
    """Implements `RdsRestorer` with boto3; `client` is for tests that need to play AWS's state changes."""

    # --- the RdsRestorer protocol -------------------------------------------------------------------

    def check(self, *, source: str, instance_id: str, point_in_time: bool, run_id: str | None = None) -> None:
        """Credentials work, the source can be restored, and `instance_id` is free or ours.

        `run_id` (an extension of the protocol) also refuses an instance rollback-bot made for another run.
        For an Aurora source `instance_id` names the NEW cluster, and its instance must be free or ours too.
        """
        aurora = self._aurora(source, point_in_time=point_in_time)
        if aurora is not None:
            AuroraRestore(self).check(aurora, cluster_id=instance_id, run_id=run_id)
            return
        if point_in_time:
            self._source_instance(source)
        else:
            self._snapshot(source)
        existing = self.instance(instance_id)
        if existing is not None:
            self.claim(existing, run_id=run_id, expect={SOURCE_TAG: source})
            if existing.failed:
                raise failed("instance", existing.id, existing.status)  # a retry would only wait for it to fail

    def restore_snapshot(
        self, *, snapshot_id: str, instance_id: str, run_id: str, progress: Progress = no_progress
    ) -> RdsRestoreResult:
        aurora = self._aurora(snapshot_id, point_in_time=False)
        if aurora is not None:
            return AuroraRestore(self).restore_snapshot(
                aurora, cluster_id=instance_id, run_id=run_id, progress=progress
            )
        tags = {RUN_TAG: run_id, SOURCE_TAG: snapshot_id}
        params: dict[str, Any] = {"DBInstanceIdentifier": instance_id, "DBSnapshotIdentifier": snapshot_id}

        def network() -> None:
            params.update(self._network_like(str(self._snapshot(snapshot_id).get("DBInstanceIdentifier") or "")))

        ready = self._restore(
            "restore_db_instance_from_db_snapshot",
            params,
            instance_id=instance_id,
            tags=tags,
            what=f"restoring snapshot {snapshot_id} into {instance_id}",
            before_create=network,
            progress=progress,
        )
        return self._result(ready, source=snapshot_id, restored=f"snapshot {snapshot_id}")

    def restore_point_in_time(
        self,
        *,
        source_instance_id: str,
        instance_id: str,
        run_id: str,
        restore_time: datetime | None = None,
        progress: Progress = no_progress,
    ) -> RdsRestoreResult:
        if restore_time is not None and restore_time.utcoffset() is None:
            # A time without a zone could be read as UTC or as local time: hours of data either way.
            raise RdsError(
                f"the restore time {restore_time.isoformat()} has no time zone",
                hint="give it with a zone, e.g. 2024-05-01T03:00:00Z",
            )
        aurora = self._aurora(source_instance_id, point_in_time=True)
        if aurora is not None:
            return AuroraRestore(self).restore_point_in_time(
                aurora, cluster_id=instance_id, run_id=run_id, restore_time=restore_time, progress=progress
            )
        when = restore_time.isoformat() if restore_time is not None else LATEST
        params: dict[str, Any] = {
            "SourceDBInstanceIdentifier": source_instance_id,
            "TargetDBInstanceIdentifier": instance_id,
        }
        if restore_time is None:
            params["UseLatestRestorableTime"] = True
        else:
            params["RestoreTime"] = restore_time
        tags = {RUN_TAG: run_id, SOURCE_TAG: source_instance_id, RESTORE_TIME_TAG: when}
        at = "its latest restorable time" if restore_time is None else when
        ready = self._restore(
            "restore_db_instance_to_point_in_time",
            params,
            instance_id=instance_id,
            tags=tags,
            what=f"restoring {source_instance_id} at {at} into {instance_id}",
            before_create=lambda: params.update(self._network_like(self._source_instance(source_instance_id).id)),
            progress=progress,
        )
        return self._result(ready, source=f"{source_instance_id} at {at}", restored=f"{source_instance_id} at {at}")

    # --- the steps ----------------------------------------------------------------------------------

    def _aurora(self, source: str, *, point_in_time: bool) -> AuroraSource | None:
        """The Aurora source `source` names, or None for an instance restore (or a source that is not there).

        A DB snapshot of that name wins over a DB cluster snapshot, and the cluster APIs are asked only when
        no DB snapshot or lone instance has that name: an instance-only setup needs no Aurora permission.
        """
        if point_in_time:
            return find_cluster(self, source)
        if self._instance_snapshot(source) is not None:
            return None
        return find_snapshot(self, source)

    def _restore(
        self,
        operation: str,
        params: dict[str, Any],
        *,
        instance_id: str,
        tags: dict[str, str],
        what: str,
        before_create: Any,
        progress: Progress,
    ) -> Resource:
        say = Reporter(progress)  # redacted, and a failing callback cannot abort a restore AWS has begun
        expect = {key: value for key, value in tags.items() if key != RUN_TAG}

        def create() -> None:
            before_create()
            if self.instance_class:
                params["DBInstanceClass"] = self.instance_class
            # Everything else (engine, storage, parameter and option groups, port) is RDS's default for a
            # restore: the source's settings, in the default VPC security group unless configured otherwise.
            params["Tags"] = tag_list(tags)
            self.call(operation, what, **params)
            say.say(f"{what}: RDS accepted the request; creating NEW instance {instance_id}")

        existing = self.create_unless_there(
            lambda: self.instance(instance_id), create, exists="DBInstanceAlreadyExists"
        )
        if existing is not None:
            self.claim(existing, run_id=tags[RUN_TAG], expect=expect)
            say.say(f"{instance_id} exists from this run ({existing.status}): waiting for it, not creating it again")
        return self.wait("instance", instance_id, say=say)

    def _result(self, ready: Resource, *, source: str, restored: str) -> RdsRestoreResult:
        address, port = ready.address or "", ready.port or 0
        return RdsRestoreResult(
            instance_id=ready.id,
            endpoint=address,
            port=port,
            status=ready.status,
            source=source,
            summary=(
                f"restored {restored} into NEW instance {ready.id}: endpoint {address}:{port} — update "
                "DATABASE_URL / DNS to point at it; the old instance is untouched"
            ),
        )

    # --- reading AWS --------------------------------------------------------------------------------

    def _source_instance(self, instance_id: str) -> Resource:
        raw = self.raw_instance(instance_id)
        if raw is None:
            raise RdsError(
                f"the RDS source instance {instance_id} was not found in {self.where()} (nor an Aurora cluster "
                "of that name)",
                hint="check [environments.<env>.rds] source_instance_id and region (or AWS_REGION / AWS_PROFILE)",
            )
        if raw.get("BackupRetentionPeriod") == 0:
            raise RdsError(
                f"RDS instance {instance_id} has automated backups turned off: it has no point in time to restore",
                hint="restore a snapshot instead (--db rds-snapshot, with snapshot_id in [environments.<env>.rds])",
            )
        return Resource.instance(raw)

    def _network_like(self, instance_id: str) -> dict[str, Any]:
        """The old instance's network placement, so the app can reach the new one where it reached the old.

        RDS's default for a restore is the default VPC security group and no Multi-AZ; copying the
        source's subnet group, security groups, public access and Multi-AZ keeps the new instance where
        the application already has a route and a rule. A source instance that is gone keeps the defaults.
        """
        raw = self.raw_instance(instance_id) if instance_id else None
        if raw is None:
            return {}
        params: dict[str, Any] = {}
        subnet_group = (raw.get("DBSubnetGroup") or {}).get("DBSubnetGroupName")
        if subnet_group:
            params["DBSubnetGroupName"] = subnet_group
        groups = [g["VpcSecurityGroupId"] for g in raw.get("VpcSecurityGroups") or [] if g.get("VpcSecurityGroupId")]
        if groups:
            params["VpcSecurityGroupIds"] = groups
        for key in ("PubliclyAccessible", "MultiAZ"):
            if isinstance(raw.get(key), bool):
                params[key] = raw[key]
        return params

    def _instance_snapshot(self, snapshot_id: str) -> dict[str, Any] | None:
        try:
            answer = self.call(
                "describe_db_snapshots", f"looking up RDS snapshot {snapshot_id}", DBSnapshotIdentifier=snapshot_id
            )
        except ApiError as error:
            if is_code(error, "DBSnapshotNotFound"):
                return None
            raise
        found = answer.get("DBSnapshots") or []
        return dict(found[0]) if found else None

    def _snapshot(self, snapshot_id: str) -> dict[str, Any]:
        """The snapshot, or RdsError unless it exists and is available."""
        found = self._instance_snapshot(snapshot_id)
        if found is None:
            raise RdsError(
                f"the RDS snapshot {snapshot_id} was not found in {self.where()} (neither a DB snapshot nor an "
                "Aurora cluster snapshot)",
                hint="check snapshot_id and region in [environments.<env>.rds] (aws rds describe-db-snapshots, "
                "aws rds describe-db-cluster-snapshots)",
            )
        status = str(found.get("Status", "unknown"))
        if status != "available":
            raise RdsError(
                f"the RDS snapshot {snapshot_id} is '{status}', not available: it cannot be restored now",
                hint="wait for it to become available, or choose another snapshot",
            )
        return found
