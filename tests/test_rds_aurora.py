"""Aurora restores: a cluster snapshot or a cluster's point in time into a NEW cluster and its instance.

Through moto's server over HTTP, configured only by the environment (as tests/test_rds.py does for
instances). moto answers "creating" for a cluster only in the restore's own answer and never fails by
itself, so the waits, a cluster that fails and the timeout are played by a scripted client at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.backends.rds import RESTORE_TIME_TAG, RUN_TAG, SOURCE_TAG, RdsRestore
from bot.backends.rds_cluster import ClusterRestoreResult
from bot.errors import RdsError
from sandbox.aws import MotoRds
from tests.test_rds import _Clock, _hermetic

REGION = "us-east-1"
SOURCE = "prod-aurora"
SNAPSHOT = "prod-aurora-20231201"
TARGET = "prod-restore-new"
WRITER = f"{TARGET}-instance-1"
MOVING = ("LatestRestorableTime", "EarliestRestorableTime", "Status")  # change with the clock or moto's polling


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoRds]:
    with MotoRds(region=REGION) as server:
        yield server


@pytest.fixture
def aws(moto_server: MotoRds, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MotoRds:
    """A fresh fake AWS with production's Aurora cluster (two instances) and a snapshot of it."""
    moto_server.reset()
    _hermetic(monkeypatch, tmp_path)
    for name, value in moto_server.environment().items():
        monkeypatch.setenv(name, value)
    moto_server.create_source_cluster(SOURCE, instances=2)
    moto_server.create_cluster_snapshot(SNAPSHOT, SOURCE)
    return moto_server


def _settled(item: dict[str, Any] | None) -> dict[str, Any]:
    assert item is not None
    return {key: value for key, value in item.items() if key not in MOVING}


def _tags(item: dict[str, Any] | None) -> dict[str, str]:
    assert item is not None
    return {tag["Key"]: tag["Value"] for tag in item.get("TagList", [])}


def _restorer(**options: Any) -> RdsRestore:
    return RdsRestore(region=REGION, poll_interval_s=0, **options)


def test_a_cluster_snapshot_restores_a_new_cluster_with_an_instance_and_reports_its_endpoint(aws: MotoRds) -> None:
    source_before = _settled(aws.cluster(SOURCE))
    instances_before = [_settled(aws.instance(f"{SOURCE}-{n}")) for n in (1, 2)]
    messages: list[str] = []
    restorer = _restorer()

    restorer.check(source=SNAPSHOT, instance_id=TARGET, point_in_time=False)
    result = restorer.restore_snapshot(
        snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1", progress=messages.append
    )

    assert aws.cluster_ids() == [SOURCE, TARGET]
    cluster, instance = aws.cluster(TARGET), aws.instance(WRITER)
    assert cluster is not None and instance is not None
    assert [m["DBInstanceIdentifier"] for m in cluster["DBClusterMembers"]] == [WRITER]  # one, the writer
    assert instance["DBClusterIdentifier"] == TARGET and instance["Engine"] == "aurora-postgresql"
    assert instance["DBInstanceClass"] == "db.r6g.large"  # the source writer's class
    assert cluster["EngineVersion"] == "15.4"  # the snapshot's, not the region's default
    assert _tags(cluster) == _tags(instance) == {RUN_TAG: "run-1", SOURCE_TAG: SNAPSHOT}
    assert isinstance(result, ClusterRestoreResult)
    assert result.endpoint == cluster["Endpoint"] and result.endpoint.startswith(f"{TARGET}.cluster-")
    assert result.reader_endpoint == cluster["ReaderEndpoint"] and result.port == 5432
    assert (result.cluster_id, result.instance_id, result.status) == (TARGET, WRITER, "available")
    assert result.source == f"cluster snapshot {SNAPSHOT}"
    assert f"NEW Aurora cluster {TARGET} with instance {WRITER}: endpoint {result.endpoint}:5432" in result.summary
    assert "DATABASE_URL" in result.summary and "old cluster is untouched" in result.summary
    assert any(f"creating NEW Aurora cluster {TARGET}" in m for m in messages)
    assert any(f"creating its instance {WRITER} (db.r6g.large)" in m for m in messages)
    assert any(f"{SOURCE} has 2 instances" in m for m in messages)
    assert any(f"{WRITER}: available after" in m for m in messages)
    assert _settled(aws.cluster(SOURCE)) == source_before
    assert [_settled(aws.instance(f"{SOURCE}-{n}")) for n in (1, 2)] == instances_before


def test_the_new_cluster_lands_in_the_source_clusters_network_as_it_is_now(aws: MotoRds) -> None:
    # moto restores a snapshot into the network its cluster had when the snapshot was taken; AWS into the
    # default VPC security group. Either way the app's rule is on the group the live cluster has NOW.
    aws.client().modify_db_cluster(
        DBClusterIdentifier=SOURCE, VpcSecurityGroupIds=["sg-0app1234"], ApplyImmediately=True
    )
    aws.client().create_db_parameter_group(
        DBParameterGroupName="app-pg15", DBParameterGroupFamily="aurora-postgresql15", Description="app"
    )
    aws.client().modify_db_instance(
        DBInstanceIdentifier=f"{SOURCE}-1", DBParameterGroupName="app-pg15", ApplyImmediately=True
    )

    _restorer().restore_snapshot(snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1")

    cluster, instance = aws.cluster(TARGET), aws.instance(WRITER)
    assert cluster is not None and instance is not None
    assert [g["VpcSecurityGroupId"] for g in cluster["VpcSecurityGroups"]] == ["sg-0app1234"]
    assert cluster["DBSubnetGroup"] == "app-subnets"
    assert [g["DBParameterGroupName"] for g in instance["DBParameterGroups"]] == ["app-pg15"]
    assert instance["PubliclyAccessible"] is False


def test_a_point_in_time_restore_of_a_cluster_carries_its_network(aws: MotoRds) -> None:
    # moto's cluster point-in-time restore drops the subnet group and security groups: what the new
    # cluster has here, it has because the restore asked for it.
    source_before = _settled(aws.cluster(SOURCE))
    restorer = _restorer(instance_class="db.r6g.xlarge")

    restorer.check(source=SOURCE, instance_id=TARGET, point_in_time=True)
    result = restorer.restore_point_in_time(source_instance_id=SOURCE, instance_id=TARGET, run_id="run-7")

    cluster, instance = aws.cluster(TARGET), aws.instance(WRITER)
    assert cluster is not None and instance is not None
    assert result.source == f"{SOURCE} at its latest restorable time"
    assert result.endpoint == cluster["Endpoint"]
    assert _tags(cluster) == {RUN_TAG: "run-7", SOURCE_TAG: SOURCE, RESTORE_TIME_TAG: "latest"}
    assert cluster["DBSubnetGroup"] == "app-subnets"
    assert [g["VpcSecurityGroupId"] for g in cluster["VpcSecurityGroups"]] == ["sg-0aurora1"]
    assert instance["DBInstanceClass"] == "db.r6g.xlarge"  # the configured class wins
    assert _settled(aws.cluster(SOURCE)) == source_before

    again = restorer.restore_point_in_time(source_instance_id=SOURCE, instance_id=TARGET, run_id="run-7")
    assert again == result and aws.cluster_ids() == [SOURCE, TARGET]


def test_naming_an_instance_of_the_cluster_restores_the_cluster(aws: MotoRds) -> None:
    messages: list[str] = []
    restorer = _restorer()

    restorer.check(source=f"{SOURCE}-2", instance_id=TARGET, point_in_time=True)
    result = restorer.restore_point_in_time(
        source_instance_id=f"{SOURCE}-2", instance_id=TARGET, run_id="run-1", progress=messages.append
    )

    assert result.source == f"{SOURCE} at its latest restorable time"
    assert messages[0] == f"{SOURCE}-2 is an instance of Aurora cluster {SOURCE}: restoring the cluster"
    assert _tags(aws.cluster(TARGET))[SOURCE_TAG] == SOURCE


def test_running_it_again_for_the_same_run_waits_for_the_same_cluster_and_instance(aws: MotoRds) -> None:
    restorer = _restorer()
    first = restorer.restore_snapshot(snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1")
    arn = aws.cluster(TARGET)["DBClusterArn"]  # type: ignore[index]
    messages: list[str] = []

    restorer.check(source=SNAPSHOT, instance_id=TARGET, point_in_time=False, run_id="run-1")
    again = _restorer().restore_snapshot(
        snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1", progress=messages.append
    )

    assert again == first
    assert aws.cluster_ids() == [SOURCE, TARGET] and aws.cluster(TARGET)["DBClusterArn"] == arn  # type: ignore[index]
    assert [m for m in messages if "not creating it again" in m] == [
        f"{TARGET} exists from this run (available): waiting for it, not creating it again",
        f"{WRITER} exists from this run (available): waiting for it, not creating it again",
    ]


def test_a_retry_after_the_cluster_was_made_creates_only_its_instance(aws: MotoRds) -> None:
    # The process died after the cluster restore was accepted and before the instance was asked for.
    _restorer().restore_snapshot(snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1")
    aws.client().delete_db_instance(DBInstanceIdentifier=WRITER, SkipFinalSnapshot=True)
    arn = aws.cluster(TARGET)["DBClusterArn"]  # type: ignore[index]
    messages: list[str] = []

    result = _restorer().restore_snapshot(
        snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1", progress=messages.append
    )

    assert aws.cluster(TARGET)["DBClusterArn"] == arn  # type: ignore[index]
    assert result.instance_id == WRITER and aws.instance(WRITER) is not None
    assert any(f"{TARGET} exists from this run" in m for m in messages)
    assert any(f"creating its instance {WRITER}" in m for m in messages)


def test_a_cluster_made_for_another_run_or_not_by_the_bot_is_refused(aws: MotoRds) -> None:
    restorer = _restorer()
    restorer.restore_snapshot(snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1")

    with pytest.raises(RdsError, match=f"Aurora cluster {TARGET} already exists: .*another run \\(run-1\\)"):
        restorer.restore_snapshot(snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-2")
    with pytest.raises(RdsError, match="another run"):
        restorer.check(source=SNAPSHOT, instance_id=TARGET, point_in_time=False, run_id="run-2")
    with pytest.raises(RdsError, match="restored by rollback-bot from source prod-aurora-20231201, not prod-aurora"):
        restorer.restore_point_in_time(source_instance_id=SOURCE, instance_id=TARGET, run_id="run-1")

    with pytest.raises(RdsError) as raised:
        restorer.check(source=SNAPSHOT, instance_id=SOURCE, point_in_time=False)
    assert raised.value.message.startswith(f"an Aurora cluster named {SOURCE} already exists")
    assert "not created by rollback-bot" in raised.value.message and "restore_instance_id" in raised.value.hint
    with pytest.raises(RdsError, match="not created by rollback-bot"):
        restorer.restore_snapshot(snapshot_id=SNAPSHOT, instance_id=SOURCE, run_id="run-3")
    assert aws.cluster_ids() == [SOURCE, TARGET]


def test_an_instance_name_in_use_is_refused_before_anything_is_created(aws: MotoRds) -> None:
    aws.create_source_instance(WRITER)  # someone's instance already has the name the new one would take

    with pytest.raises(RdsError, match=f"an RDS instance named {WRITER} already exists"):
        _restorer().check(source=SNAPSHOT, instance_id=TARGET, point_in_time=False)
    assert aws.cluster_ids() == [SOURCE]


def test_a_cluster_of_this_run_that_can_no_longer_become_available_is_refused(aws: MotoRds) -> None:
    restorer = _restorer()
    restorer.restore_snapshot(snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1")
    aws.client().stop_db_cluster(DBClusterIdentifier=TARGET)  # moto's only way to a state that is not "available"

    with pytest.raises(RdsError, match=f"Aurora cluster {TARGET} exists but is in state 'stopped'") as raised:
        restorer.check(source=SNAPSHOT, instance_id=TARGET, point_in_time=False, run_id="run-1")
    assert "delete-db-cluster" in raised.value.hint and "live database cluster was not touched" in raised.value.message
    with pytest.raises(RdsError, match="'stopped'"):
        restorer.restore_snapshot(snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1")


def test_a_snapshot_whose_cluster_is_gone_needs_an_instance_class_and_says_the_network_is_the_default(
    aws: MotoRds,
) -> None:
    for number in (1, 2):
        aws.client().delete_db_instance(DBInstanceIdentifier=f"{SOURCE}-{number}", SkipFinalSnapshot=True)
    aws.client().delete_db_cluster(DBClusterIdentifier=SOURCE, SkipFinalSnapshot=True)

    with pytest.raises(RdsError) as raised:
        _restorer().check(source=SNAPSHOT, instance_id=TARGET, point_in_time=False)
    assert "no instance class for the NEW Aurora cluster's instance" in raised.value.message
    assert "instance_class" in raised.value.hint
    with pytest.raises(RdsError, match="no instance class"):
        _restorer().restore_snapshot(snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1")
    assert aws.cluster_ids() == []  # refused before anything was created

    messages: list[str] = []
    result = _restorer(instance_class="db.r6g.large").restore_snapshot(
        snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1", progress=messages.append
    )
    assert result.status == "available"
    assert any("no longer exists: the NEW cluster gets RDS's default network" in m for m in messages)


def test_what_cannot_be_restored_as_aurora_is_named(aws: MotoRds) -> None:
    aws.client().create_db_cluster(
        DBClusterIdentifier="multi-az",
        Engine="postgres",
        MasterUsername="app",
        MasterUserPassword="sandbox-password",
        DBClusterInstanceClass="db.r6gd.large",
        AllocatedStorage=100,
        StorageType="io1",
        Iops=1000,
    )
    with pytest.raises(RdsError, match="cluster multi-az is a Multi-AZ DB cluster \\(postgres\\)"):
        _restorer().check(source="multi-az", instance_id=TARGET, point_in_time=True)

    with pytest.raises(RdsError, match="too long for an Aurora restore") as raised:
        _restorer().check(source=SNAPSHOT, instance_id="x" * 60, point_in_time=False)
    assert "at most 52 characters" in raised.value.hint

    with pytest.raises(RdsError) as raised:
        _restorer().check(source="no-such-snapshot", instance_id=TARGET, point_in_time=False)
    assert "neither a DB snapshot nor an Aurora cluster snapshot" in raised.value.message
    with pytest.raises(RdsError, match=r"source instance no-such-db was not found .*nor an Aurora cluster"):
        _restorer().check(source="no-such-db", instance_id=TARGET, point_in_time=True)


# --- waiting: a scripted stand-in for AWS -------------------------------------------------------------
#
# moto's clusters are "available" at the first describe and never fail: this double plays the cluster
# snapshot, the cluster restore and the instance creation, and answers each describe of the NEW cluster
# and of its instance with the next scripted status (None: it does not exist).


SOURCE_CLUSTER = {
    "DBClusterIdentifier": SOURCE,
    "Engine": "aurora-mysql",
    "EngineVersion": "8.0.mysql_aurora.3.05.2",
    "Status": "available",
    "DBSubnetGroup": "app-subnets",
    "VpcSecurityGroups": [{"VpcSecurityGroupId": "sg-0app1234", "Status": "active"}],
    "DBClusterParameterGroup": "app-cluster-params",
    "IAMDatabaseAuthenticationEnabled": True,
    "ServerlessV2ScalingConfiguration": {"MinCapacity": 0.5, "MaxCapacity": 16.0},
    "DBClusterMembers": [{"DBInstanceIdentifier": f"{SOURCE}-1", "IsClusterWriter": True}],
}
SOURCE_WRITER = {
    "DBInstanceIdentifier": f"{SOURCE}-1",
    "DBInstanceStatus": "available",
    "DBClusterIdentifier": SOURCE,
    "DBInstanceClass": "db.serverless",
    "PubliclyAccessible": True,
    "DBParameterGroups": [{"DBParameterGroupName": "app-params"}],
}


class _ScriptedAurora:
    def __init__(self, clusters: list[str | None], instances: list[str | None]) -> None:
        self.clusters, self.instances = clusters, instances
        self.snapshot_version = SOURCE_CLUSTER["EngineVersion"]
        self.calls: list[str] = []
        self.sent: dict[str, dict[str, Any]] = {}  # the last parameters of each creating call

    def _next(self, statuses: list[str | None]) -> str | None:
        return statuses.pop(0) if len(statuses) > 1 else statuses[0]

    def describe_db_snapshots(self, **_: Any) -> dict[str, Any]:
        return {"DBSnapshots": []}

    def describe_db_cluster_snapshots(self, *, DBClusterSnapshotIdentifier: str) -> dict[str, Any]:
        snapshot = {"DBClusterSnapshotIdentifier": DBClusterSnapshotIdentifier, "DBClusterIdentifier": SOURCE}
        version = {"Engine": "aurora-mysql", "EngineVersion": self.snapshot_version}
        return {"DBClusterSnapshots": [{**snapshot, "Status": "available", **version}]}

    def describe_db_clusters(self, *, DBClusterIdentifier: str) -> dict[str, Any]:
        if DBClusterIdentifier == SOURCE:
            return {"DBClusters": [SOURCE_CLUSTER]}
        status = self._next(self.clusters)
        if status is None:
            return {"DBClusters": []}
        cluster = {"DBClusterIdentifier": DBClusterIdentifier, "Status": status, "Engine": "aurora-mysql"}
        tags = [{"Key": RUN_TAG, "Value": "run-1"}, {"Key": SOURCE_TAG, "Value": SNAPSHOT}]
        return {"DBClusters": [{**cluster, "Endpoint": f"{TARGET}.cluster-x.example", "Port": 3306, "TagList": tags}]}

    def describe_db_instances(self, *, DBInstanceIdentifier: str) -> dict[str, Any]:
        if DBInstanceIdentifier == f"{SOURCE}-1":
            return {"DBInstances": [SOURCE_WRITER]}
        status = self._next(self.instances)
        if status is None:
            return {"DBInstances": []}
        instance = {"DBInstanceIdentifier": DBInstanceIdentifier, "DBInstanceStatus": status}
        tags = [{"Key": RUN_TAG, "Value": "run-1"}, {"Key": SOURCE_TAG, "Value": SNAPSHOT}]
        endpoint = {"Address": f"{WRITER}.example", "Port": 3306}
        return {"DBInstances": [{**instance, "DBClusterIdentifier": TARGET, "TagList": tags, "Endpoint": endpoint}]}

    def restore_db_cluster_from_snapshot(self, **params: Any) -> dict[str, Any]:
        self.calls.append(f"restore {params['DBClusterIdentifier']} ({params['Engine']})")
        self.sent["restore"] = params
        return {}

    def create_db_instance(self, **params: Any) -> dict[str, Any]:
        self.calls.append(f"create {params['DBInstanceIdentifier']} in {params['DBClusterIdentifier']}")
        self.sent["create"] = params
        return {}


def _scripted(
    clusters: list[str | None], instances: list[str | None], *, timeout_s: float = 3 * 3600
) -> tuple[RdsRestore, _ScriptedAurora, _Clock]:
    client, clock = _ScriptedAurora(clusters, instances), _Clock()
    restorer = RdsRestore(
        region=REGION,
        instance_class="db.r6g.large",
        poll_interval_s=15,
        timeout_s=timeout_s,
        client=client,
        sleep=clock.sleep,
        clock=lambda: clock.now,
    )
    return restorer, client, clock


def test_waiting_follows_the_cluster_then_its_instance() -> None:
    # cluster: absent (before the restore), then creating, creating, backing-up, available (twice: the
    # wait, then the endpoint read); instance: absent, then creating, available.
    restorer, client, clock = _scripted(
        [None, "creating", "creating", "backing-up", "available"], [None, "creating", "available"]
    )
    messages: list[str] = []

    result = restorer.restore_snapshot(
        snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1", progress=messages.append
    )

    assert client.calls == [f"restore {TARGET} (aurora-mysql)", f"create {WRITER} in {TARGET}"]
    assert (result.endpoint, result.port, result.instance_id) == (f"{TARGET}.cluster-x.example", 3306, WRITER)
    assert clock.sleeps == [15, 15, 15, 15]
    assert [m for m in messages if "elapsed" in m or "available after" in m] == [
        f"{TARGET}: creating (0.0s elapsed)",
        f"{TARGET}: creating (15s elapsed)",
        f"{TARGET}: backing-up (30s elapsed)",
        f"{TARGET}: available after 45s",
        f"{WRITER}: creating (45s elapsed)",  # one timeout for the whole restore
        f"{WRITER}: available after 1m 00s",
    ]


def test_a_cluster_that_fails_says_what_exists_and_what_to_do() -> None:
    restorer, client, _ = _scripted([None, "creating", "incompatible-restore"], [None])

    with pytest.raises(RdsError) as raised:
        restorer.restore_snapshot(snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1")

    assert f"Aurora cluster {TARGET} exists but is in state 'incompatible-restore'" in raised.value.message
    assert "delete-db-cluster" in raised.value.hint and "restore_instance_id" in raised.value.hint
    assert raised.value.details == {"cluster_id": TARGET, "status": "incompatible-restore"}
    assert client.calls == [f"restore {TARGET} (aurora-mysql)"]  # no instance in a cluster that failed


def test_waiting_gives_up_at_the_timeout_and_says_the_cluster_is_still_there() -> None:
    restorer, _, clock = _scripted([None, "creating"], [None], timeout_s=40)

    with pytest.raises(RdsError) as raised:
        restorer.restore_snapshot(snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1")

    assert clock.sleeps == [15, 15, 10]
    assert f"Aurora cluster {TARGET} is still 'creating' after 40s" in raised.value.message
    assert "it will not create a second cluster" in raised.value.hint


def test_what_the_new_cluster_and_instance_copy_from_the_source_is_asked_of_aws() -> None:
    restorer, client, _ = _scripted([None, "available"], [None, "available"])
    restorer.instance_class = None  # the source writer's class, then

    restorer.restore_snapshot(snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1")

    tags = [{"Key": RUN_TAG, "Value": "run-1"}, {"Key": SOURCE_TAG, "Value": SNAPSHOT}]
    assert client.sent["restore"] == {
        "DBClusterIdentifier": TARGET,
        "SnapshotIdentifier": SNAPSHOT,
        "Engine": "aurora-mysql",
        "EngineVersion": "8.0.mysql_aurora.3.05.2",
        "DBSubnetGroupName": "app-subnets",
        "VpcSecurityGroupIds": ["sg-0app1234"],
        "EnableIAMDatabaseAuthentication": True,
        "ServerlessV2ScalingConfiguration": {"MinCapacity": 0.5, "MaxCapacity": 16.0},
        "DBClusterParameterGroupName": "app-cluster-params",
        "Tags": tags,
    }
    assert client.sent["create"] == {
        "DBInstanceIdentifier": WRITER,
        "DBClusterIdentifier": TARGET,
        "Engine": "aurora-mysql",
        "DBInstanceClass": "db.serverless",
        "DBParameterGroupName": "app-params",
        "PubliclyAccessible": True,
        "Tags": tags,
    }


def test_a_snapshot_of_another_engine_version_keeps_the_default_parameter_groups() -> None:
    restorer, client, _ = _scripted([None, "available"], [None, "available"])
    client.snapshot_version = "8.0.mysql_aurora.3.04.0"  # the live cluster was upgraded since the snapshot
    messages: list[str] = []

    restorer.restore_snapshot(snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1", progress=messages.append)

    assert client.sent["restore"]["EngineVersion"] == "8.0.mysql_aurora.3.04.0"
    assert "DBClusterParameterGroupName" not in client.sent["restore"]
    assert "DBParameterGroupName" not in client.sent["create"]
    assert client.sent["restore"]["VpcSecurityGroupIds"] == ["sg-0app1234"]  # the network is copied all the same
    assert any("gets the default parameter groups" in m for m in messages)
