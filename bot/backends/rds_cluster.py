"""Aurora: a DB cluster snapshot, or a cluster's point in time, restored into a NEW cluster and its instance.

A restored Aurora cluster has no instance, so nothing can connect to it yet: once the cluster is
available this creates one instance in it, `<cluster>-instance-1` (the writer), waits for that too, and
reports the cluster's endpoint, which always follows the writer (and its reader endpoint). The source
cluster is only ever described: the restore calls create a NEW cluster, and the one instance created is
created in that new cluster, after it was claimed as this run's.

Which restore applies is decided by what the source is, so the configuration is the same as for an
instance: `snapshot_id` naming a DB cluster snapshot (when no DB snapshot has that name), or
`source_instance_id` naming a DB cluster, or an instance of one, restores the cluster. The NEW cluster is
named `restore_instance_id`; both it and its instance carry the run's tags, so a retry resumes (the
cluster, then the instance) instead of creating a second one, exactly as for instances.

Carried over from the source cluster (where the application already has a route and a rule): the
subnet group, VPC security groups, IAM database authentication and Serverless v2 capacity; and from its
writer instance: the instance class (unless `instance_class` is configured), public access and, with
the cluster parameter group, its parameter group when the engine version is the same.

What moto (5.x, server mode) does and does not do here, so the tests know what they prove: cluster
snapshots, both cluster restores, instances in a cluster, tags, endpoints and reader endpoints all work.
But a cluster answers "creating" only in the restore's own answer and is "available" at the next
describe, an instance is available at once, nothing ever fails by itself, a snapshot restore copies the
network the cluster had when the snapshot was taken (AWS uses the default VPC security group instead), and
restoring onto an existing cluster name replaces it rather than answering DBClusterAlreadyExistsFault.
The waits are therefore tested with a scripted client, and the carry-over with a source whose network
changed after its snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.backends.base import AURORA_WRITER_SUFFIX, Progress, RdsRestoreResult, aurora_writer_id, no_progress
from bot.backends.rds_aws import LATEST, RESTORE_TIME_TAG, RUN_TAG, SOURCE_TAG, RdsApi, Resource, is_code, tag_list
from bot.backends.rds_errors import ApiError, failed
from bot.backends.reporter import Reporter
from bot.errors import RdsError

MAX_ID = 63  # RDS's limit for a DB instance identifier


@dataclass(frozen=True)
class AuroraSource:
    """What an Aurora restore restores: a cluster snapshot, or a cluster at a point in time."""

    cluster: str | None  # point in time: the source; snapshot: the cluster it was taken of (its network)
    engine: str
    engine_version: str | None
    snapshot: str | None = None
    named: str = ""  # what the config named, when it is an instance of the cluster

    @property
    def tag(self) -> str:
        """SOURCE_TAG's value on what the restore creates."""
        return self.snapshot or self.cluster or ""


@dataclass(frozen=True)
class ClusterRestoreResult(RdsRestoreResult):
    """An instance restore's result, plus the cluster: `endpoint` is the NEW cluster's (writer) endpoint."""

    cluster_id: str = ""
    reader_endpoint: str = ""


@dataclass(frozen=True)
class _Layout:
    """What the NEW cluster and its instance copy from the source, as API parameters."""

    cluster: dict[str, Any] = field(default_factory=dict)
    instance: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def _aurora_only(raw: dict[str, Any], what: str) -> None:
    engine, mode = str(raw.get("Engine") or ""), str(raw.get("EngineMode") or "provisioned")
    if not engine.startswith("aurora"):
        raise RdsError(
            f"{what} is a Multi-AZ DB cluster ({engine}): rollback-bot restores RDS instances and Aurora clusters",
            hint="restore it from the RDS console or with `aws rds restore-db-cluster-…`, or choose --db dump",
        )
    if mode == "serverless":
        raise RdsError(
            f"{what} is Aurora Serverless v1, whose clusters have no instances: rollback-bot does not restore it",
            hint="restore it from the RDS console, or move the cluster to Serverless v2 or provisioned instances",
        )


def find_snapshot(api: RdsApi, snapshot_id: str) -> AuroraSource | None:
    """The DB cluster snapshot `snapshot_id` (asked only when no DB snapshot has that name), or None."""
    try:
        answer = api.call(
            "describe_db_cluster_snapshots",
            f"looking up {snapshot_id} as an Aurora cluster snapshot (no DB snapshot has that name)",
            DBClusterSnapshotIdentifier=snapshot_id,
        )
    except ApiError as error:
        if is_code(error, "DBClusterSnapshotNotFoundFault"):
            return None
        raise
    found = answer.get("DBClusterSnapshots") or []
    if not found:
        return None
    raw = dict(found[0])
    status = str(raw.get("Status", "unknown"))
    if status != "available":
        raise RdsError(
            f"the Aurora cluster snapshot {snapshot_id} is '{status}', not available: it cannot be restored now",
            hint="wait for it to become available, or choose another snapshot",
        )
    _aurora_only(raw, f"the cluster snapshot {snapshot_id}")
    return AuroraSource(
        cluster=str(raw["DBClusterIdentifier"]) if raw.get("DBClusterIdentifier") else None,
        engine=str(raw["Engine"]),
        engine_version=str(raw["EngineVersion"]) if raw.get("EngineVersion") else None,
        snapshot=snapshot_id,
    )


def find_cluster(api: RdsApi, source: str) -> AuroraSource | None:
    """The cluster named `source`, or the cluster the instance `source` belongs to; None for a lone instance."""
    instance = api.raw_instance(source)
    cluster_id = str((instance or {}).get("DBClusterIdentifier") or "")
    if instance is not None and not cluster_id:
        return None  # an RDS instance of its own: the instance restore
    raw = api.raw_cluster(cluster_id or source)
    if raw is None:
        if instance is None:
            return None  # neither: the instance restore names what is missing
        raise RdsError(f"RDS instance {source} belongs to cluster {cluster_id}, which was not found")
    _aurora_only(raw, f"cluster {raw['DBClusterIdentifier']}")
    return AuroraSource(
        cluster=str(raw["DBClusterIdentifier"]),
        engine=str(raw["Engine"]),
        engine_version=str(raw["EngineVersion"]) if raw.get("EngineVersion") else None,
        named=source if cluster_id else "",
    )


class AuroraRestore:
    """The Aurora half of `RdsRestore`, on the same AWS client, clock and timeout."""

    def __init__(self, api: RdsApi) -> None:
        self.api = api

    def check(self, source: AuroraSource, *, cluster_id: str, run_id: str | None) -> None:
        """The NEW cluster and its instance are free or this run's, and the instance can be given a class."""
        instance_id = aurora_writer_id(cluster_id)
        if len(instance_id) > MAX_ID:
            raise RdsError(
                f"restore_instance_id {cluster_id} is too long for an Aurora restore: its instance {instance_id} "
                f"would be over RDS's {MAX_ID} characters",
                hint=f"set restore_instance_id to at most {MAX_ID - len(AURORA_WRITER_SUFFIX)} characters",
            )
        expect = {SOURCE_TAG: source.tag}
        cluster = self.api.cluster(cluster_id)
        if cluster is not None:
            self.api.claim(cluster, run_id=run_id, expect=expect)
            if cluster.failed:
                raise failed("cluster", cluster.id, cluster.status)  # a retry would only wait for it to fail
        instance = self.api.instance(instance_id)
        if instance is not None:
            self._claim_instance(instance, cluster_id=cluster_id, run_id=run_id, expect=expect)
            if instance.failed:
                raise failed("instance", instance.id, instance.status)
        else:
            self._layout(source)  # raises if no instance class can be found for it

    def restore_snapshot(
        self, source: AuroraSource, *, cluster_id: str, run_id: str, progress: Progress = no_progress
    ) -> ClusterRestoreResult:
        snapshot = source.snapshot or ""
        params: dict[str, Any] = {
            "DBClusterIdentifier": cluster_id,
            "SnapshotIdentifier": snapshot,
            "Engine": source.engine,
        }
        if source.engine_version:
            # Without it RDS restores into the region's default version of the engine: an upgrade nobody asked for.
            params["EngineVersion"] = source.engine_version
        return self._restore(
            source,
            "restore_db_cluster_from_snapshot",
            params,
            cluster_id=cluster_id,
            tags={RUN_TAG: run_id, SOURCE_TAG: snapshot},
            what=f"restoring Aurora cluster snapshot {snapshot} into {cluster_id}",
            restored=f"cluster snapshot {snapshot}",
            progress=progress,
        )

    def restore_point_in_time(
        self,
        source: AuroraSource,
        *,
        cluster_id: str,
        run_id: str,
        restore_time: datetime | None = None,
        progress: Progress = no_progress,
    ) -> ClusterRestoreResult:
        origin = source.cluster or ""
        when = restore_time.isoformat() if restore_time is not None else LATEST
        # full-copy, not copy-on-write: a clone would share its storage with the live cluster.
        params: dict[str, Any] = {
            "DBClusterIdentifier": cluster_id,
            "SourceDBClusterIdentifier": origin,
            "RestoreType": "full-copy",
        }
        if restore_time is None:
            params["UseLatestRestorableTime"] = True
        else:
            params["RestoreToTime"] = restore_time
        at = "its latest restorable time" if restore_time is None else when
        return self._restore(
            source,
            "restore_db_cluster_to_point_in_time",
            params,
            cluster_id=cluster_id,
            tags={RUN_TAG: run_id, SOURCE_TAG: origin, RESTORE_TIME_TAG: when},
            what=f"restoring Aurora cluster {origin} at {at} into {cluster_id}",
            restored=f"{origin} at {at}",
            progress=progress,
        )

    # --- the steps ----------------------------------------------------------------------------------

    def _restore(
        self,
        source: AuroraSource,
        operation: str,
        params: dict[str, Any],
        *,
        cluster_id: str,
        tags: dict[str, str],
        what: str,
        restored: str,
        progress: Progress,
    ) -> ClusterRestoreResult:
        api, say, started = self.api, Reporter(progress), self.api.now()
        expect = {key: value for key, value in tags.items() if key != RUN_TAG}
        if source.named:
            say.say(f"{source.named} is an instance of Aurora cluster {source.cluster}: restoring the cluster")
        made: list[_Layout] = []  # the layout worked out to create the cluster, reused for its instance

        def create() -> None:
            made.append(layout := self._layout(source))
            api.call(operation, what, **params, **layout.cluster, Tags=tag_list(tags))
            say.say(f"{what}: RDS accepted the request; creating NEW Aurora cluster {cluster_id}")
            for note in layout.notes:
                say.say(note)

        existing = api.create_unless_there(
            lambda: api.cluster(cluster_id), create, exists="DBClusterAlreadyExistsFault"
        )
        layout = made[0] if made else None
        if existing is not None:
            api.claim(existing, run_id=tags[RUN_TAG], expect=expect)
            say.say(f"{cluster_id} exists from this run ({existing.status}): waiting for it, not creating it again")
        cluster = api.wait("cluster", cluster_id, say=say, started=started)
        self._instance(source, cluster, layout, tags=tags, expect=expect, say=say)
        instance = api.wait("instance", aurora_writer_id(cluster_id), say=say, started=started)
        final = api.cluster(cluster_id)
        if final is None or not final.ready:
            final = api.wait("cluster", cluster_id, say=say, started=started)
        return self._result(final, instance, source=restored)

    def _instance(
        self,
        source: AuroraSource,
        cluster: Resource,
        layout: _Layout | None,
        *,
        tags: dict[str, str],
        expect: dict[str, str],
        say: Reporter,
    ) -> None:
        """Create the NEW cluster's instance, or adopt this run's: a restored cluster has none."""
        instance_id = aurora_writer_id(cluster.id)

        def create() -> None:
            shape = layout or self._layout(source)
            self.api.call(
                "create_db_instance",
                f"creating instance {instance_id} in the NEW Aurora cluster {cluster.id}",
                DBInstanceIdentifier=instance_id,
                DBClusterIdentifier=cluster.id,
                Engine=cluster.engine or source.engine,
                Tags=tag_list(tags),
                **shape.instance,
            )
            say.say(
                f"{cluster.id} is available with no instance yet: creating its instance {instance_id} "
                f"({shape.instance['DBInstanceClass']})"
            )

        existing = self.api.create_unless_there(
            lambda: self.api.instance(instance_id), create, exists="DBInstanceAlreadyExists"
        )
        if existing is None:
            return
        self._claim_instance(existing, cluster_id=cluster.id, run_id=tags[RUN_TAG], expect=expect)
        say.say(f"{instance_id} exists from this run ({existing.status}): waiting for it, not creating it again")

    def _claim_instance(
        self, instance: Resource, *, cluster_id: str, run_id: str | None, expect: dict[str, str]
    ) -> None:
        self.api.claim(instance, run_id=run_id, expect=expect)
        if instance.cluster != cluster_id:
            where = f"cluster {instance.cluster}" if instance.cluster else "no cluster"
            raise RdsError(
                f"RDS instance {instance.id} already exists in {where}, not in the NEW cluster {cluster_id}",
                hint="set another restore_instance_id, or delete that instance if nothing uses it",
                details={"instance_id": instance.id, "cluster_id": instance.cluster or ""},
            )

    def _layout(self, source: AuroraSource) -> _Layout:
        """The source cluster's network and settings, so the app reaches the new cluster where it reached the old.

        RDS's defaults for a restored cluster are the default VPC security group and default parameter
        groups; a source cluster that is gone keeps them (and says so).
        """
        raw = self.api.raw_cluster(source.cluster) if source.cluster else None
        cluster: dict[str, Any] = {}
        instance: dict[str, Any] = {}
        notes: list[str] = []
        writer: dict[str, Any] = {}
        if raw is None:
            notes.append(
                f"the cluster the snapshot was taken of ({source.cluster or 'unknown'}) no longer exists: the NEW "
                "cluster gets RDS's default network (default VPC security group); check the app can reach it"
            )
        else:
            if raw.get("DBSubnetGroup"):  # a cluster's DBSubnetGroup is the group's name
                cluster["DBSubnetGroupName"] = str(raw["DBSubnetGroup"])
            groups = [
                g["VpcSecurityGroupId"] for g in raw.get("VpcSecurityGroups") or [] if g.get("VpcSecurityGroupId")
            ]
            if groups:
                cluster["VpcSecurityGroupIds"] = groups
            if isinstance(raw.get("IAMDatabaseAuthenticationEnabled"), bool):
                cluster["EnableIAMDatabaseAuthentication"] = raw["IAMDatabaseAuthenticationEnabled"]
            scaling = {k: v for k, v in (raw.get("ServerlessV2ScalingConfiguration") or {}).items() if v is not None}
            if {"MinCapacity", "MaxCapacity"} <= scaling.keys():
                cluster["ServerlessV2ScalingConfiguration"] = scaling
            members = raw.get("DBClusterMembers") or []
            first = next((m for m in members if m.get("IsClusterWriter")), members[0] if members else None)
            writer = (self.api.raw_instance(str(first["DBInstanceIdentifier"])) if first else None) or {}
            if len(members) > 1:
                notes.append(
                    f"{source.cluster} has {len(members)} instances: the NEW cluster gets one; add readers if needed"
                )
            same_version = source.snapshot is None or raw.get("EngineVersion") == source.engine_version
            group = str(raw.get("DBClusterParameterGroup") or "")
            if same_version and group and not group.startswith("default."):
                cluster["DBClusterParameterGroupName"] = group
            groups_of_writer = writer.get("DBParameterGroups") or [{}]
            group = str(groups_of_writer[0].get("DBParameterGroupName") or "")
            if same_version and group and not group.startswith("default."):
                instance["DBParameterGroupName"] = group
            if not same_version:
                notes.append(
                    f"the snapshot's engine version ({source.engine_version}) is not {source.cluster}'s now "
                    f"({raw.get('EngineVersion')}): the NEW cluster gets the default parameter groups"
                )
            if isinstance(writer.get("PubliclyAccessible"), bool):
                instance["PubliclyAccessible"] = writer["PubliclyAccessible"]
        instance_class = self.api.instance_class or writer.get("DBInstanceClass")
        if not instance_class:
            raise RdsError(
                f"no instance class for the NEW Aurora cluster's instance: {source.cluster or 'the source cluster'} "
                "has no instance to copy it from",
                hint='set instance_class in [environments.<env>.rds], e.g. instance_class = "db.r6g.large"',
            )
        instance["DBInstanceClass"] = str(instance_class)
        return _Layout(cluster=cluster, instance=instance, notes=tuple(notes))

    def _result(self, cluster: Resource, instance: Resource, *, source: str) -> ClusterRestoreResult:
        address, port, reader = cluster.address or "", cluster.port or 0, cluster.reader or ""
        readers = f" (reader endpoint {reader})" if reader else ""
        return ClusterRestoreResult(
            instance_id=instance.id,
            endpoint=address,
            port=port,
            status=cluster.status,
            source=source,
            summary=(
                f"restored {source} into NEW Aurora cluster {cluster.id} with instance {instance.id}: endpoint "
                f"{address}:{port}{readers} — update DATABASE_URL / DNS to point at it; the old cluster is untouched"
            ),
            cluster_id=cluster.id,
            reader_endpoint=reader,
        )
