"""What the instance and the Aurora restores share: the boto3 client, one API call, reading instances and
clusters as `Resource`s, the claim by tags, and waiting until a resource is available.

The boto3 client is built from the standard AWS environment (AWS_PROFILE, AWS_ENDPOINT_URL,
AWS_ENDPOINT_URL_RDS, AWS_ACCESS_KEY_ID, …): no endpoint or credentials are ever passed in here.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from bot import format as fmt
from bot.backends import rds_errors as words
from bot.backends.rds_errors import ApiError, translate
from bot.backends.reporter import Reporter

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
# The same for a DB cluster's Status: `db_cluster_available` gives up on the waiter's five, the rest need a person.
_CLUSTER_STUCK = (
    "inaccessible-encryption-credentials",
    "inaccessible-encryption-credentials-recoverable",
    "migration-failed",
    "cloning-failed",
    "restore-failed",
)
CLUSTER_FAILED_STATES = frozenset((*_WAITER_FAILURES, *_CLUSTER_STUCK, "storage-full", "stopped", "stopping"))

Kind = Literal["instance", "cluster"]


def is_code(error: ApiError, name: str) -> bool:
    """AWS's error codes come with or without "Fault" (DBSnapshotNotFound, DBClusterNotFoundFault)."""
    return error.code.removesuffix("Fault") == name.removesuffix("Fault")


def _tags(raw: Mapping[str, Any]) -> dict[str, str]:
    return {str(tag["Key"]): str(tag.get("Value", "")) for tag in raw.get("TagList") or []}


@dataclass(frozen=True)
class Resource:
    """The few fields of a DBInstance or a DBCluster this backend reads."""

    kind: Kind
    id: str
    status: str
    address: str | None
    port: int | None
    tags: dict[str, str] = field(default_factory=dict)
    cluster: str | None = None  # an instance: the DB cluster it belongs to (Aurora), if any
    reader: str | None = None  # a cluster: its reader endpoint
    engine: str | None = None

    @classmethod
    def instance(cls, raw: Mapping[str, Any]) -> Resource:
        endpoint = raw.get("Endpoint") or {}
        port = endpoint.get("Port")
        return cls(
            kind="instance",
            id=str(raw["DBInstanceIdentifier"]),
            status=str(raw.get("DBInstanceStatus", "unknown")),
            address=str(endpoint["Address"]) if endpoint.get("Address") else None,
            port=int(port) if port is not None else None,
            tags=_tags(raw),
            cluster=str(raw["DBClusterIdentifier"]) if raw.get("DBClusterIdentifier") else None,
            engine=str(raw["Engine"]) if raw.get("Engine") else None,
        )

    @classmethod
    def db_cluster(cls, raw: Mapping[str, Any]) -> Resource:
        port = raw.get("Port")
        return cls(
            kind="cluster",
            id=str(raw["DBClusterIdentifier"]),
            status=str(raw.get("Status", "unknown")),
            address=str(raw["Endpoint"]) if raw.get("Endpoint") else None,  # a cluster's Endpoint is a host name
            port=int(port) if port is not None else None,
            tags=_tags(raw),
            reader=str(raw["ReaderEndpoint"]) if raw.get("ReaderEndpoint") else None,
            engine=str(raw["Engine"]) if raw.get("Engine") else None,
        )

    @property
    def label(self) -> str:
        return words.label(self.kind)

    @property
    def ready(self) -> bool:
        return self.status == "available" and bool(self.address)

    @property
    def failed(self) -> bool:
        return self.status in (CLUSTER_FAILED_STATES if self.kind == "cluster" else FAILED_STATES)


class RdsApi:
    """The AWS side both restores stand on; `client` is for tests that need to play AWS's state changes."""

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

    # --- reading AWS --------------------------------------------------------------------------------

    def raw_instance(self, instance_id: str) -> dict[str, Any] | None:
        try:
            answer = self.call(
                "describe_db_instances", f"looking up RDS instance {instance_id}", DBInstanceIdentifier=instance_id
            )
        except ApiError as error:
            if is_code(error, "DBInstanceNotFound"):
                return None
            raise
        found = answer.get("DBInstances") or []
        return dict(found[0]) if found else None

    def instance(self, instance_id: str) -> Resource | None:
        raw = self.raw_instance(instance_id)
        return Resource.instance(raw) if raw is not None else None

    def raw_cluster(self, cluster_id: str) -> dict[str, Any] | None:
        try:
            answer = self.call(
                "describe_db_clusters", f"looking up Aurora cluster {cluster_id}", DBClusterIdentifier=cluster_id
            )
        except ApiError as error:
            if is_code(error, "DBClusterNotFoundFault"):
                return None
            raise
        found = answer.get("DBClusters") or []
        return dict(found[0]) if found else None

    def cluster(self, cluster_id: str) -> Resource | None:
        raw = self.raw_cluster(cluster_id)
        return Resource.db_cluster(raw) if raw is not None else None

    def call(self, operation: str, what: str, **params: Any) -> dict[str, Any]:
        """One RDS API call; every AWS or botocore failure becomes an RdsError without a stack trace."""
        try:
            answer = getattr(self._rds(), operation)(**params)
        except (ClientError, BotoCoreError) as error:
            raise translate(error, what) from None
        return dict(answer)

    def where(self) -> str:
        region = getattr(getattr(self._client, "meta", None), "region_name", None) or self.region
        return f"region {region}" if region else "the configured AWS region"

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

    def create_unless_there(
        self, find: Callable[[], Resource | None], create: Callable[[], None], *, exists: str
    ) -> Resource | None:
        """Call `create()` unless `find()` already sees the resource; the one found (to claim), or None if created.

        AWS answering `exists` to the create means another replica, or a retry racing this one, got there
        first: it is found again and returned, to be adopted only if claim() says it is ours.
        """
        existing = find()
        if existing is not None:
            return existing
        try:
            create()
        except ApiError as error:
            if not is_code(error, exists):
                raise
            existing = find()
            if existing is None:
                raise
        return existing

    # --- claiming and waiting -----------------------------------------------------------------------

    def claim(self, existing: Resource, *, run_id: str | None, expect: Mapping[str, str]) -> None:
        """Accept an existing instance or cluster only if rollback-bot made it, for this run and this source."""
        owner = existing.tags.get(RUN_TAG)
        if owner is None:
            raise words.not_ours(existing.kind, existing.id, existing.status)
        if run_id is not None and owner != run_id:
            raise words.another_run(existing.kind, existing.id, owner)
        for key, wanted in expect.items():
            found = existing.tags.get(key)
            if found is not None and found != wanted:
                raise words.other_source(existing.kind, existing.id, key, found, wanted)

    def wait(self, kind: Kind, name: str, *, say: Reporter, started: float | None = None) -> Resource:
        """Poll until available, reporting each poll with the seconds waited against the timeout.

        `started` (a clock reading) shares one timeout between several waits of the same restore.
        """
        look = self.cluster if kind == "cluster" else self.instance
        started = self._clock() if started is None else started
        while True:
            found = look(name)
            elapsed = self._clock() - started
            if found is None:
                raise words.disappeared(kind, name)
            if found.ready:
                self._waited(say, f"{name}: available after {fmt.duration(elapsed)}", elapsed)
                return found
            if found.failed:
                raise words.failed(kind, found.id, found.status)
            self._waited(say, f"{name}: {found.status} ({fmt.duration(elapsed)} elapsed)", elapsed)
            if elapsed >= self.timeout_s:
                raise words.still_waiting(kind, name, found.status, fmt.duration(elapsed))
            self._sleep(max(0.0, min(self.poll_interval_s, self.timeout_s - elapsed)))

    def now(self) -> float:
        return self._clock()

    def _waited(self, say: Reporter, text: str, elapsed: float) -> None:
        """One poll's sentence, measured as the seconds waited against the timeout (every poll is sent)."""
        say.measure(text, done=min(elapsed, self.timeout_s), total=self.timeout_s, unit="seconds", at_once=True)


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"Key": key, "Value": value} for key, value in tags.items()]
