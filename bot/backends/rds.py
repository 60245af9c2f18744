"""AWS RDS restores: a snapshot or a point in time into a NEW instance, tagged, retry-safe, waited on.

RDS never restores in place: every restore creates another instance and the application has to be
pointed at its endpoint afterwards. This backend only ever describes and creates; it never modifies or
deletes an instance, so the source instance (the live database) is left exactly as it was.

Retries are safe because every instance it creates carries the tag `rollback-bot:run=<run id>`: a
second attempt for the same run finds that instance and waits for it instead of creating another,
and an instance with the same name that rollback-bot did not create (or created for another run) is
refused rather than adopted.

The boto3 client is built from the standard AWS environment (AWS_PROFILE, AWS_ENDPOINT_URL,
AWS_ENDPOINT_URL_RDS, AWS_ACCESS_KEY_ID, …): no endpoint or credentials are ever passed in here.

What AWS's errors mean, in words a person can act on, is rds_errors' business.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from bot import format as fmt
from bot.backends.base import Progress, RdsRestoreResult, no_progress
from bot.backends.rds_errors import ApiError, translate
from bot.backends.reporter import Reporter
from bot.errors import RdsError

RUN_TAG = "rollback-bot:run"
SOURCE_TAG = "rollback-bot:source"
RESTORE_TIME_TAG = "rollback-bot:restore-time"
LATEST = "latest"  # RESTORE_TIME_TAG's value for "the latest restorable time"

# DBInstanceStatus values a restoring instance does not leave by itself: those boto3's own
# `db_instance_available` waiter gives up on, and others that need a person just as much.
_WAITER_FAILURES = ("deleted", "deleting", "failed", "incompatible-restore", "incompatible-parameters")
_INCOMPATIBLE = ("incompatible-network", "incompatible-option-group", "incompatible-credentials")
_STUCK = ("inaccessible-encryption-credentials", "inaccessible-encryption-credentials-recoverable", "restore-error")
FAILED_STATES = frozenset((*_WAITER_FAILURES, *_INCOMPATIBLE, *_STUCK, "storage-full", "stopped", "stopping"))


@dataclass(frozen=True)
class _Instance:
    """The few fields of a DBInstance this backend reads."""

    id: str
    status: str
    address: str | None
    port: int | None
    tags: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> _Instance:
        endpoint = raw.get("Endpoint") or {}
        port = endpoint.get("Port")
        return cls(
            id=str(raw["DBInstanceIdentifier"]),
            status=str(raw.get("DBInstanceStatus", "unknown")),
            address=str(endpoint["Address"]) if endpoint.get("Address") else None,
            port=int(port) if port is not None else None,
            tags={str(tag["Key"]): str(tag.get("Value", "")) for tag in raw.get("TagList") or []},
        )


def _delete_command(instance_id: str) -> str:
    return f"`aws rds delete-db-instance --db-instance-identifier {instance_id} --skip-final-snapshot`"


def _failed(instance: _Instance) -> RdsError:
    return RdsError(
        f"RDS instance {instance.id} exists but is in state '{instance.status}': the restore did not complete; "
        "the live database instance was not touched",
        hint=f"see its events in the RDS console, then delete it ({_delete_command(instance.id)}) before retrying, "
        "or set another restore_instance_id",
        details={"instance_id": instance.id, "status": instance.status},
    )


class RdsRestore:
    """Implements `RdsRestorer` with boto3; `client` is for tests that need to play AWS's state changes."""

    def __init__(
        self,
        *,
        region: str | None,
        instance_class: str | None = None,
        poll_interval_s: float = 15.0,
        timeout_s: float = 3 * 3600,
        client: Any | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.region = region
        self.instance_class = instance_class
        self.poll_interval_s = poll_interval_s
        self.timeout_s = timeout_s
        self._client = client
        self._sleep = sleep
        self._clock = clock

    def describe(self) -> str:
        return f"AWS RDS in {self.region or os.environ.get('AWS_REGION') or 'the default AWS region'}"

    # --- the RdsRestorer protocol -------------------------------------------------------------------

    def check(self, *, source: str, instance_id: str, point_in_time: bool, run_id: str | None = None) -> None:
        """Credentials work, the source can be restored, and `instance_id` is free or ours.

        `run_id` (an extension of the protocol) also refuses an instance rollback-bot made for another run.
        """
        if point_in_time:
            self._source_instance(source)
        else:
            self._snapshot(source)
        existing = self._instance(instance_id)
        if existing is not None:
            self._claim(existing, run_id=run_id, expect={SOURCE_TAG: source})
            if existing.status in FAILED_STATES:
                raise _failed(existing)  # a retry would only wait for it to fail again

    def restore_snapshot(
        self, *, snapshot_id: str, instance_id: str, run_id: str, progress: Progress = no_progress
    ) -> RdsRestoreResult:
        tags = {RUN_TAG: run_id, SOURCE_TAG: snapshot_id}
        params: dict[str, Any] = {"DBInstanceIdentifier": instance_id, "DBSnapshotIdentifier": snapshot_id}
        ready = self._restore(
            "restore_db_instance_from_db_snapshot",
            params,
            instance_id=instance_id,
            tags=tags,
            what=f"restoring snapshot {snapshot_id} into {instance_id}",
            before_create=lambda: params.update(self._network_like(self._snapshot(snapshot_id))),
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
            before_create=lambda: params.update(
                self._network_like({"DBInstanceIdentifier": self._source_instance(source_instance_id).id})
            ),
            progress=progress,
        )
        return self._result(ready, source=f"{source_instance_id} at {at}", restored=f"{source_instance_id} at {at}")

    # --- the steps ----------------------------------------------------------------------------------

    def _restore(
        self,
        operation: str,
        params: dict[str, Any],
        *,
        instance_id: str,
        tags: dict[str, str],
        what: str,
        before_create: Callable[[], object],
        progress: Progress,
    ) -> _Instance:
        say = Reporter(progress)  # redacted, and a failing callback cannot abort a restore AWS has begun
        expect = {key: value for key, value in tags.items() if key != RUN_TAG}
        existing = self._instance(instance_id)
        if existing is None:
            before_create()
            if self.instance_class:
                params["DBInstanceClass"] = self.instance_class
            # Everything else (engine, storage, parameter and option groups, port) is RDS's default for a
            # restore: the source's settings, in the default VPC security group unless configured otherwise.
            params["Tags"] = [{"Key": key, "Value": value} for key, value in tags.items()]
            try:
                self._call(operation, what, **params)
                say.say(f"{what}: RDS accepted the request; creating NEW instance {instance_id}")
            except ApiError as error:
                if error.code != "DBInstanceAlreadyExists":
                    raise
                # Another replica (or a retry racing this one) got there first: adopt it only if it is ours.
                existing = self._instance(instance_id)
                if existing is None:
                    raise
        if existing is not None:
            self._claim(existing, run_id=tags[RUN_TAG], expect=expect)
            say.say(f"{instance_id} exists from this run ({existing.status}): waiting for it, not creating it again")
        return self._wait(instance_id, say=say)

    def _wait(self, instance_id: str, *, say: Reporter) -> _Instance:
        """Poll until available, reporting each poll with the seconds waited against the timeout."""
        started = self._clock()
        while True:
            instance = self._instance(instance_id)
            elapsed = self._clock() - started
            if instance is None:
                raise RdsError(
                    f"RDS instance {instance_id} disappeared while it was being restored",
                    hint="someone deleted it, or it failed and RDS removed it; retry this step to restore again",
                )
            if instance.status == "available" and instance.address:
                self._waited(say, f"{instance_id}: available after {fmt.duration(elapsed)}", elapsed)
                return instance
            if instance.status in FAILED_STATES:
                raise _failed(instance)
            self._waited(say, f"{instance_id}: {instance.status} ({fmt.duration(elapsed)} elapsed)", elapsed)
            if elapsed >= self.timeout_s:
                raise RdsError(
                    f"RDS instance {instance_id} is still '{instance.status}' after {fmt.duration(elapsed)}: it "
                    "exists and AWS is still working on it; the live database instance was not touched",
                    hint="retry this step to keep waiting (it will not create a second instance), or delete it "
                    f"({_delete_command(instance_id)}) to give up on this restore",
                    details={"instance_id": instance_id, "status": instance.status},
                )
            self._sleep(max(0.0, min(self.poll_interval_s, self.timeout_s - elapsed)))

    def _waited(self, say: Reporter, text: str, elapsed: float) -> None:
        """One poll's sentence, measured as the seconds waited against the timeout (every poll is sent)."""
        say.measure(text, done=min(elapsed, self.timeout_s), total=self.timeout_s, unit="seconds", at_once=True)

    def _result(self, ready: _Instance, *, source: str, restored: str) -> RdsRestoreResult:
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

    def _claim(self, existing: _Instance, *, run_id: str | None, expect: Mapping[str, str]) -> None:
        """Accept an existing instance only if rollback-bot made it, for this run and this source."""
        owner = existing.tags.get(RUN_TAG)
        if owner is None:
            raise RdsError(
                f"an RDS instance named {existing.id} already exists (state '{existing.status}') and was not "
                "created by rollback-bot",
                hint="RDS restores into a NEW instance: set restore_instance_id in [environments.<env>.rds] to a "
                "name that is not in use",
                details={"instance_id": existing.id, "status": existing.status},
            )
        if run_id is not None and owner != run_id:
            raise RdsError(
                f"RDS instance {existing.id} already exists: rollback-bot created it for another run ({owner})",
                hint="it may be the live database now: set another restore_instance_id, or delete it if nothing "
                "uses it",
                details={"instance_id": existing.id, "run_id": owner},
            )
        for key, wanted in expect.items():
            found = existing.tags.get(key)
            if found is not None and found != wanted:
                raise RdsError(
                    f"RDS instance {existing.id} was restored by rollback-bot from {key.split(':')[-1]} {found}, "
                    f"not {wanted}",
                    hint=f"set another restore_instance_id, or delete it ({_delete_command(existing.id)})",
                    details={"instance_id": existing.id, key: found},
                )

    # --- reading AWS --------------------------------------------------------------------------------

    def _instance(self, instance_id: str) -> _Instance | None:
        try:
            answer = self._call(
                "describe_db_instances", f"looking up RDS instance {instance_id}", DBInstanceIdentifier=instance_id
            )
        except ApiError as error:
            if error.code == "DBInstanceNotFound":
                return None
            raise
        found = answer.get("DBInstances") or []
        return _Instance.from_api(found[0]) if found else None

    def _source_instance(self, instance_id: str) -> _Instance:
        try:
            answer = self._call(
                "describe_db_instances", f"looking up RDS instance {instance_id}", DBInstanceIdentifier=instance_id
            )
        except ApiError as error:
            if error.code != "DBInstanceNotFound":
                raise
            raise RdsError(
                f"the RDS source instance {instance_id} was not found in {self._where()}",
                hint="check [environments.<env>.rds] source_instance_id and region (or AWS_REGION / AWS_PROFILE)",
            ) from None
        raw = (answer.get("DBInstances") or [{}])[0]
        if raw.get("BackupRetentionPeriod") == 0:
            raise RdsError(
                f"RDS instance {instance_id} has automated backups turned off: it has no point in time to restore",
                hint="restore a snapshot instead (--db rds-snapshot, with snapshot_id in [environments.<env>.rds])",
            )
        return _Instance.from_api(raw)

    def _network_like(self, source: dict[str, Any]) -> dict[str, Any]:
        """The old instance's network placement, so the app can reach the new one where it reached the old.

        RDS's default for a restore is the default VPC security group and no Multi-AZ; copying the
        source's subnet group, security groups, public access and Multi-AZ keeps the new instance where
        the application already has a route and a rule. A source instance that is gone keeps the defaults.
        """
        instance_id = str(source.get("DBInstanceIdentifier") or "")
        if not instance_id:
            return {}
        try:
            answer = self._call(
                "describe_db_instances", f"reading {instance_id}'s network", DBInstanceIdentifier=instance_id
            )
        except ApiError as error:
            if error.code == "DBInstanceNotFound":
                return {}
            raise
        raw = (answer.get("DBInstances") or [{}])[0]
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

    def _snapshot(self, snapshot_id: str) -> dict[str, Any]:
        """The snapshot, or RdsError unless it exists and is available."""
        what = f"looking up RDS snapshot {snapshot_id}"
        try:
            answer = self._call("describe_db_snapshots", what, DBSnapshotIdentifier=snapshot_id)
            found = answer.get("DBSnapshots") or []
        except ApiError as error:
            if error.code != "DBSnapshotNotFound":
                raise
            found = []
        if not found:
            raise RdsError(
                f"the RDS snapshot {snapshot_id} was not found in {self._where()}",
                hint="check snapshot_id and region in [environments.<env>.rds] (aws rds describe-db-snapshots)",
            )
        status = str(found[0].get("Status", "unknown"))
        if status != "available":
            raise RdsError(
                f"the RDS snapshot {snapshot_id} is '{status}', not available: it cannot be restored now",
                hint="wait for it to become available, or choose another snapshot",
            )
        return dict(found[0])

    def _where(self) -> str:
        region = getattr(getattr(self._client, "meta", None), "region_name", None) or self.region
        return f"region {region}" if region else "the configured AWS region"

    def _call(self, operation: str, what: str, **params: Any) -> dict[str, Any]:
        """One RDS API call; every AWS or botocore failure becomes an RdsError without a stack trace."""
        try:
            answer = getattr(self._rds(), operation)(**params)
        except (ClientError, BotoCoreError) as error:
            raise translate(error, what) from None
        return dict(answer)

    def _rds(self) -> Any:
        if self._client is None:
            # Only the region from the config (or AWS_REGION, which botocore itself does not read) is given:
            # profile, credentials and endpoint come from the environment exactly as boto3 finds them.
            region = self.region or os.environ.get("AWS_REGION") or None
            try:
                self._client = boto3.session.Session(region_name=region).client("rds")
            except (ClientError, BotoCoreError) as error:
                raise translate(error, "connecting to AWS RDS") from None
        return self._client
