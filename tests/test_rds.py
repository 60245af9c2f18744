"""RDS restores, through moto's server over HTTP with boto3 finding it from the environment.

`RdsRestore` is never given an endpoint: the tests set AWS_ENDPOINT_URL (or AWS_ENDPOINT_URL_RDS) and
dummy credentials exactly as an operator would, so the code path is the production one. moto makes
every instance "available" at once, so waiting (creating → backing-up → available, failures and the
timeout) is tested with a scripted client at the end of this file.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from bot.backends.base import RdsRestorer
from bot.backends.rds import RESTORE_TIME_TAG, RUN_TAG, SOURCE_TAG, RdsRestore
from bot.errors import RdsError
from sandbox.aws import CONFLICTING_ENV, MotoRds

REGION = "us-east-1"
SOURCE = "prod-db"
SNAPSHOT = "prod-snapshot-20231201"
TARGET = "prod-restore-new"


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoRds]:
    with MotoRds(region=REGION) as server:
        yield server


@pytest.fixture
def aws(moto_server: MotoRds, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> MotoRds:
    """A fresh fake AWS with production's instance and its snapshot; boto3 configured only by the environment."""
    moto_server.reset()
    _hermetic(monkeypatch, tmp_path)
    for name, value in moto_server.environment().items():
        monkeypatch.setenv(name, value)
    moto_server.create_source_instance(SOURCE)
    moto_server.create_snapshot(SNAPSHOT, SOURCE)
    return moto_server


def _hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No AWS setting of the developer's machine can reach these tests (profiles, tokens, endpoints)."""
    for name in (*CONFLICTING_ENV, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "aws-config").write_text("")
    (tmp_path / "aws-credentials").write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance-role lookup against 169.254.169.254


def _settled(instance: dict[str, Any] | None) -> dict[str, Any]:
    """An instance's description without LatestRestorableTime, which moves with the clock on its own."""
    assert instance is not None
    return {key: value for key, value in instance.items() if key != "LatestRestorableTime"}


def _tags(instance: dict[str, Any] | None) -> dict[str, str]:
    assert instance is not None
    return {tag["Key"]: tag["Value"] for tag in instance.get("TagList", [])}


def test_it_satisfies_the_protocol() -> None:
    restorer: RdsRestorer = RdsRestore(region=REGION)
    assert restorer is not None


def test_a_snapshot_restore_creates_a_new_tagged_instance_and_leaves_the_source_alone(aws: MotoRds) -> None:
    source_before = _settled(aws.instance(SOURCE))
    messages: list[str] = []
    restorer = RdsRestore(region=REGION, poll_interval_s=0)

    restorer.check(source=SNAPSHOT, instance_id=TARGET, point_in_time=False)
    result = restorer.restore_snapshot(
        snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1", progress=messages.append
    )

    assert aws.instance_ids() == [SOURCE, TARGET]
    created = aws.instance(TARGET)
    assert _tags(created) == {RUN_TAG: "run-1", SOURCE_TAG: SNAPSHOT}
    assert created is not None and created["Endpoint"]["Address"] == result.endpoint
    assert result.endpoint.startswith(f"{TARGET}.") and result.port == 5432
    assert (result.instance_id, result.status, result.source) == (TARGET, "available", SNAPSHOT)
    assert f"NEW instance {TARGET}: endpoint {result.endpoint}:5432" in result.summary
    assert "DATABASE_URL" in result.summary and "old instance is untouched" in result.summary
    assert any("available after" in message for message in messages)
    assert _settled(aws.instance(SOURCE)) == source_before


def test_the_instance_class_from_the_config_is_used(aws: MotoRds) -> None:
    RdsRestore(region=REGION, instance_class="db.r5.large", poll_interval_s=0).restore_snapshot(
        snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1"
    )
    created = aws.instance(TARGET)
    assert created is not None and created["DBInstanceClass"] == "db.r5.large"


def test_running_it_again_for_the_same_run_waits_for_the_same_instance(aws: MotoRds) -> None:
    restorer = RdsRestore(region=REGION, poll_interval_s=0)
    first = restorer.restore_snapshot(snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1")
    messages: list[str] = []

    restorer.check(source=SNAPSHOT, instance_id=TARGET, point_in_time=False, run_id="run-1")
    again = RdsRestore(region=REGION, poll_interval_s=0).restore_snapshot(
        snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1", progress=messages.append
    )

    assert again == first
    assert aws.instance_ids() == [SOURCE, TARGET]
    assert any("not creating it again" in message for message in messages)


def test_an_instance_made_for_another_run_is_refused(aws: MotoRds) -> None:
    restorer = RdsRestore(region=REGION, poll_interval_s=0)
    restorer.restore_snapshot(snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1")

    with pytest.raises(RdsError, match="another run \\(run-1\\)"):
        restorer.restore_snapshot(snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-2")
    with pytest.raises(RdsError, match="another run"):
        restorer.check(source=SNAPSHOT, instance_id=TARGET, point_in_time=False, run_id="run-2")


def test_an_instance_of_this_run_that_can_no_longer_become_available_is_refused(aws: MotoRds) -> None:
    restorer = RdsRestore(region=REGION, poll_interval_s=0)
    restorer.restore_snapshot(snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1")
    aws.client().stop_db_instance(DBInstanceIdentifier=TARGET)  # moto's only way to a state that is not "available"

    with pytest.raises(RdsError, match=f"RDS instance {TARGET} exists but is in state 'stopped'"):
        restorer.check(source=SNAPSHOT, instance_id=TARGET, point_in_time=False, run_id="run-1")
    with pytest.raises(RdsError) as raised:
        restorer.restore_snapshot(snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1")
    assert "delete-db-instance" in raised.value.hint and aws.instance_ids() == [SOURCE, TARGET]


def test_an_existing_instance_not_created_by_the_bot_is_refused_by_check(aws: MotoRds) -> None:
    aws.create_source_instance(TARGET)
    restorer = RdsRestore(region=REGION, poll_interval_s=0)

    with pytest.raises(RdsError) as raised:
        restorer.check(source=SNAPSHOT, instance_id=TARGET, point_in_time=False)
    assert f"an RDS instance named {TARGET} already exists" in raised.value.message
    assert "not created by rollback-bot" in raised.value.message
    assert "restore_instance_id" in raised.value.hint

    with pytest.raises(RdsError, match="not created by rollback-bot"):
        restorer.restore_snapshot(snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1")
    assert _tags(aws.instance(TARGET)) == {"service": "sandbox"}  # theirs, untouched


def test_an_unknown_snapshot_is_named(aws: MotoRds) -> None:
    restorer = RdsRestore(region=REGION, poll_interval_s=0)

    with pytest.raises(RdsError) as raised:
        restorer.check(source="no-such-snapshot", instance_id=TARGET, point_in_time=False)
    assert "no-such-snapshot" in raised.value.message and "not found" in raised.value.message
    assert "snapshot_id" in raised.value.hint

    with pytest.raises(RdsError, match="no-such-snapshot"):
        restorer.restore_snapshot(snapshot_id="no-such-snapshot", instance_id=TARGET, run_id="run-1")
    assert aws.instance_ids() == [SOURCE]


def test_an_unknown_source_instance_is_named(aws: MotoRds) -> None:
    with pytest.raises(RdsError, match="source instance no-such-db was not found"):
        RdsRestore(region=REGION).check(source="no-such-db", instance_id=TARGET, point_in_time=True)


def test_a_point_in_time_restore_uses_the_latest_restorable_time(aws: MotoRds) -> None:
    source_before = _settled(aws.instance(SOURCE))
    restorer = RdsRestore(region=REGION, poll_interval_s=0)

    restorer.check(source=SOURCE, instance_id=TARGET, point_in_time=True)
    result = restorer.restore_point_in_time(source_instance_id=SOURCE, instance_id=TARGET, run_id="run-7")

    assert result.source == f"{SOURCE} at its latest restorable time"
    assert result.endpoint.startswith(f"{TARGET}.") and result.status == "available"
    assert _tags(aws.instance(TARGET)) == {RUN_TAG: "run-7", SOURCE_TAG: SOURCE, RESTORE_TIME_TAG: "latest"}
    assert _settled(aws.instance(SOURCE)) == source_before
    again = restorer.restore_point_in_time(source_instance_id=SOURCE, instance_id=TARGET, run_id="run-7")
    assert again == result and aws.instance_ids() == [SOURCE, TARGET]


def test_a_point_in_time_restore_to_a_given_time(aws: MotoRds) -> None:
    when = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)
    restorer = RdsRestore(region=REGION, poll_interval_s=0)
    result = restorer.restore_point_in_time(
        source_instance_id=SOURCE, instance_id=TARGET, run_id="run-8", restore_time=when
    )
    assert result.source == f"{SOURCE} at 2024-05-01T03:00:00+00:00"
    assert _tags(aws.instance(TARGET))[RESTORE_TIME_TAG] == "2024-05-01T03:00:00+00:00"

    with pytest.raises(RdsError, match="restored by rollback-bot from restore-time"):
        restorer.restore_point_in_time(source_instance_id=SOURCE, instance_id=TARGET, run_id="run-8")
    with pytest.raises(RdsError, match="no time zone"):
        restorer.restore_point_in_time(
            source_instance_id=SOURCE, instance_id="other", run_id="run-9", restore_time=datetime(2024, 5, 1, 3, 0)
        )


def test_the_service_specific_endpoint_variable_is_honoured(
    moto_server: MotoRds, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    moto_server.reset()
    _hermetic(monkeypatch, tmp_path)
    for name, value in moto_server.environment(service_specific=True).items():
        monkeypatch.setenv(name, value)
    moto_server.create_source_instance(SOURCE)
    moto_server.create_snapshot(SNAPSHOT, SOURCE)

    result = RdsRestore(region=None, poll_interval_s=0).restore_snapshot(
        snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1"
    )
    assert result.status == "available" and moto_server.instance(TARGET) is not None


def test_missing_credentials_are_explained_without_a_stack_trace(
    moto_server: MotoRds, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _hermetic(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)  # reachable: only the credentials are missing

    with pytest.raises(RdsError) as raised:
        RdsRestore(region=REGION).check(source=SNAPSHOT, instance_id=TARGET, point_in_time=False)

    error = raised.value
    assert error.message.startswith("AWS credentials were not found or were refused")
    assert "AWS_PROFILE" in error.hint
    assert error.__cause__ is None and error.__suppress_context__
    assert "Traceback" not in str(error) and "botocore" not in str(error)


def test_an_unknown_profile_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _hermetic(monkeypatch, tmp_path)
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")

    with pytest.raises(RdsError, match=r"not found or were refused.*no-such-profile"):
        RdsRestore(region=REGION).check(source=SNAPSHOT, instance_id=TARGET, point_in_time=False)


class _Refusing:
    """AWS answering every call with one error: moto's server does not check credentials or permissions."""

    def __init__(self, code: str, message: str) -> None:
        self.error = ClientError({"Error": {"Code": code, "Message": message}}, "DescribeDBSnapshots")

    def describe_db_snapshots(self, **_: Any) -> dict[str, Any]:
        raise self.error


def test_refused_credentials_and_missing_permissions_are_told_apart() -> None:
    refused = RdsRestore(region=REGION, client=_Refusing("InvalidClientTokenId", "The security token is invalid."))
    with pytest.raises(RdsError) as raised:
        refused.check(source=SNAPSHOT, instance_id=TARGET, point_in_time=False)
    assert raised.value.message.startswith("AWS credentials were not found or were refused (InvalidClientTokenId")
    assert "AWS_PROFILE" in raised.value.hint

    denied = RdsRestore(
        region=REGION, client=_Refusing("AccessDenied", "User: arn:aws:iam::1:user/bot is not authorized")
    )
    with pytest.raises(RdsError) as raised:
        denied.check(source=SNAPSHOT, instance_id=TARGET, point_in_time=False)
    assert raised.value.message.startswith(f"AWS refused looking up RDS snapshot {SNAPSHOT}: not allowed")
    assert "rds:RestoreDBInstanceFromDBSnapshot" in raised.value.hint


# --- waiting: a scripted stand-in for AWS -------------------------------------------------------------
#
# moto cannot show an instance "creating" for a while and then "available", or one that ends "failed":
# its instances are available the moment they exist. This test double plays describe_db_instances,
# returning one scripted status per call, for an instance this run already created (the retry path, so
# no other API is needed but describe_db_snapshots, which finds an instance snapshot: no Aurora lookup);
# a fake clock makes the three-hour timeout instant.


class _ScriptedRds:
    def __init__(self, statuses: list[str | None], *, run_id: str = "run-1") -> None:
        self.statuses = statuses  # None: the instance no longer exists
        self.calls = 0
        self.run_id = run_id

    def describe_db_snapshots(self, *, DBSnapshotIdentifier: str) -> dict[str, Any]:
        return {"DBSnapshots": [{"DBSnapshotIdentifier": DBSnapshotIdentifier, "Status": "available"}]}

    def describe_db_instances(self, *, DBInstanceIdentifier: str) -> dict[str, Any]:
        status = self.statuses[min(self.calls, len(self.statuses) - 1)]
        self.calls += 1
        if status is None:
            return {"DBInstances": []}
        instance: dict[str, Any] = {
            "DBInstanceIdentifier": DBInstanceIdentifier,
            "DBInstanceStatus": status,
            "TagList": [{"Key": RUN_TAG, "Value": self.run_id}, {"Key": SOURCE_TAG, "Value": SNAPSHOT}],
        }
        if status == "available":
            instance["Endpoint"] = {"Address": f"{DBInstanceIdentifier}.example.rds.amazonaws.com", "Port": 5432}
        return {"DBInstances": [instance]}


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _scripted(statuses: list[str | None], *, timeout_s: float = 3 * 3600) -> tuple[RdsRestore, _ScriptedRds, _Clock]:
    client, clock = _ScriptedRds(statuses), _Clock()
    restorer = RdsRestore(
        region=REGION,
        poll_interval_s=15,
        timeout_s=timeout_s,
        client=client,
        sleep=clock.sleep,
        clock=lambda: clock.now,
    )
    return restorer, client, clock


def test_waiting_reports_each_poll_until_available() -> None:
    restorer, _, clock = _scripted(["creating", "creating", "creating", "backing-up", "available"])
    messages: list[str] = []

    result = restorer.restore_snapshot(
        snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1", progress=messages.append
    )

    assert result.endpoint == f"{TARGET}.example.rds.amazonaws.com" and result.port == 5432
    assert clock.sleeps == [15, 15, 15]
    assert messages[1:] == [
        f"{TARGET}: creating (0.0s elapsed)",
        f"{TARGET}: creating (15s elapsed)",
        f"{TARGET}: backing-up (30s elapsed)",
        f"{TARGET}: available after 45s",
    ]


def test_a_failed_restore_says_what_exists_and_what_to_do() -> None:
    restorer, _, _ = _scripted(["creating", "incompatible-restore"])

    with pytest.raises(RdsError) as raised:
        restorer.restore_snapshot(snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1")

    assert f"RDS instance {TARGET} exists but is in state 'incompatible-restore'" in raised.value.message
    assert "delete-db-instance" in raised.value.hint and "restore_instance_id" in raised.value.hint
    assert raised.value.details == {"instance_id": TARGET, "status": "incompatible-restore"}


def test_waiting_gives_up_at_the_timeout_and_says_the_instance_is_still_there() -> None:
    restorer, client, clock = _scripted(["creating"], timeout_s=40)

    with pytest.raises(RdsError) as raised:
        restorer.restore_snapshot(snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1")

    assert clock.sleeps == [15, 15, 10] and client.calls == 1 + 4  # the claim, then four polls
    assert f"{TARGET} is still 'creating' after 40s" in raised.value.message
    assert "retry this step to keep waiting" in raised.value.hint


def test_an_instance_that_disappears_while_waiting_is_reported() -> None:
    restorer, _, _ = _scripted(["creating", None])

    with pytest.raises(RdsError, match="disappeared"):
        restorer.restore_snapshot(snapshot_id=SNAPSHOT, instance_id=TARGET, run_id="run-1")
