"""A local stand-in for AWS RDS and S3: moto in server mode, spoken to over HTTP like the real API.

The code under test builds its boto3 client from the environment as it would in production, so this
module changes nothing globally: `environment()` returns the variables a test (or the sandbox) sets
itself — AWS_ENDPOINT_URL pointing here and dummy credentials — and `CONFLICTING_ENV` names the ones
to remove so a developer's own AWS setup cannot leak in.

What moto's RDS does and does not do (moto 5.x): instances and snapshots are "available" at once,
with an endpoint `<id>.aaaaaaaaaa.<region>.rds.amazonaws.com`; restores from a snapshot and to a point
in time create real (fake) instances with the requested tags and instance class; nothing is ever
"creating" or "failed", and credentials are not checked. State transitions over time therefore have
to be tested with a scripted client (see tests/test_rds.py). Aurora clusters, cluster snapshots, both
cluster restores and instances in a cluster work too; bot/backends/rds_cluster.py says what moto does
differently from AWS there.

The same server serves S3 (the artifact store's `s3://bucket/prefix` backups): `create_bucket`,
`object_bytes` and `put_object_bytes` (to corrupt a stored dump the way a bad disk or a person would)
set the stage; the code under test reaches the server only through `environment()`.

moto is a development dependency: it is imported only when a server starts.
"""

from __future__ import annotations

import logging
from typing import Any

import boto3
import requests

DUMMY_KEY = "testing"
# Variables that would otherwise change where boto3 sends requests or whose credentials it signs with.
CONFLICTING_ENV = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_RDS",
    "AWS_ENDPOINT_URL_S3",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_ROLE_ARN",
)


class MotoRds:
    """`with MotoRds() as aws:` starts moto on 127.0.0.1 (a free port unless `port` is given)."""

    def __init__(self, *, region: str = "us-east-1", port: int = 0, quiet: bool = True) -> None:
        self.region = region
        self.port = port
        self.quiet = quiet
        self.url = ""
        self._server: Any = None
        self._setup: Any = None
        self._s3: Any = None

    def start(self) -> str:
        """Start the server; return its endpoint URL (http://127.0.0.1:PORT)."""
        try:
            from moto.server import ThreadedMotoServer
        except ImportError:
            raise RuntimeError(
                "the AWS sandbox needs moto: pip install 'moto[server]' (it is in the dev dependencies)"
            ) from None
        if self.quiet:
            # Werkzeug's development server logs every request to stderr unless its logger is configured;
            # the sandbox's terminal output is for the rollback, not for fake AWS traffic.
            werkzeug = logging.getLogger("werkzeug")
            if werkzeug.level == logging.NOTSET:
                werkzeug.setLevel(logging.WARNING)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.url = f"http://{host}:{port}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
            self._setup = None
            self._s3 = None

    def reset(self) -> None:
        """Forget every instance, snapshot and bucket (moto's own reset API), so a shared server serves many tests."""
        requests.post(f"{self._require_url()}/moto-api/reset", timeout=10).raise_for_status()

    def environment(self, *, service_specific: bool = False, service: str = "rds") -> dict[str, str]:
        """What to set so an unmodified boto3 talks to this server: endpoint, dummy credentials, region.

        `service_specific` uses AWS_ENDPOINT_URL_<SERVICE> (RDS by default, or S3) instead of AWS_ENDPOINT_URL.
        """
        endpoint_var = f"AWS_ENDPOINT_URL_{service.upper()}" if service_specific else "AWS_ENDPOINT_URL"
        return {
            endpoint_var: self._require_url(),
            "AWS_ACCESS_KEY_ID": DUMMY_KEY,
            "AWS_SECRET_ACCESS_KEY": DUMMY_KEY,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_REGION": self.region,
        }

    # --- setup helpers: these set the stage, they are not the code under test --------------------------

    def client(self) -> Any:
        """A boto3 RDS client pointed at this server explicitly (setup and assertions only)."""
        if self._setup is None:
            self._setup = boto3.session.Session(
                aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_KEY, region_name=self.region
            ).client("rds", endpoint_url=self._require_url())
        return self._setup

    def create_source_instance(
        self, instance_id: str, *, engine: str = "postgres", instance_class: str = "db.t3.micro"
    ) -> dict[str, Any]:
        """A live database instance, as production's would be (automated backups on, so PITR works)."""
        answer = self.client().create_db_instance(
            DBInstanceIdentifier=instance_id,
            Engine=engine,
            DBInstanceClass=instance_class,
            AllocatedStorage=20,
            MasterUsername="app",
            MasterUserPassword="sandbox-password",
            BackupRetentionPeriod=7,
            Tags=[{"Key": "service", "Value": "sandbox"}],
        )
        return dict(answer["DBInstance"])

    def create_snapshot(self, snapshot_id: str, from_instance: str) -> dict[str, Any]:
        answer = self.client().create_db_snapshot(DBSnapshotIdentifier=snapshot_id, DBInstanceIdentifier=from_instance)
        return dict(answer["DBSnapshot"])

    def create_source_cluster(
        self,
        cluster_id: str,
        *,
        engine: str = "aurora-postgresql",
        engine_version: str = "15.4",
        instance_class: str = "db.r6g.large",
        instances: int = 1,
        security_groups: tuple[str, ...] = ("sg-0aurora1",),
        subnet_group: str = "app-subnets",
    ) -> dict[str, Any]:
        """A live Aurora cluster with its instances (`<cluster>-1`, `<cluster>-2`, …; the first is the writer)."""
        self.client().create_db_cluster(
            DBClusterIdentifier=cluster_id,
            Engine=engine,
            EngineVersion=engine_version,
            MasterUsername="app",
            MasterUserPassword="sandbox-password",
            VpcSecurityGroupIds=list(security_groups),
            DBSubnetGroupName=subnet_group,
            BackupRetentionPeriod=7,
            Tags=[{"Key": "service", "Value": "sandbox"}],
        )
        for number in range(1, instances + 1):
            self.client().create_db_instance(
                DBInstanceIdentifier=f"{cluster_id}-{number}",
                DBClusterIdentifier=cluster_id,
                Engine=engine,
                DBInstanceClass=instance_class,
                PubliclyAccessible=False,
                Tags=[{"Key": "service", "Value": "sandbox"}],
            )
        cluster = self.cluster(cluster_id)
        assert cluster is not None
        return cluster

    def create_cluster_snapshot(self, snapshot_id: str, from_cluster: str) -> dict[str, Any]:
        answer = self.client().create_db_cluster_snapshot(
            DBClusterSnapshotIdentifier=snapshot_id, DBClusterIdentifier=from_cluster
        )
        return dict(answer["DBClusterSnapshot"])

    def cluster(self, cluster_id: str) -> dict[str, Any] | None:
        """The DB cluster as RDS describes it, or None if there is none by that name."""
        found = self.client().describe_db_clusters()["DBClusters"]
        return next((dict(item) for item in found if item["DBClusterIdentifier"] == cluster_id), None)

    def cluster_ids(self) -> list[str]:
        return sorted(item["DBClusterIdentifier"] for item in self.client().describe_db_clusters()["DBClusters"])

    def instance(self, instance_id: str) -> dict[str, Any] | None:
        """The instance as RDS describes it, or None if there is none by that name."""
        found = self.client().describe_db_instances()["DBInstances"]
        return next((dict(item) for item in found if item["DBInstanceIdentifier"] == instance_id), None)

    def instance_ids(self) -> list[str]:
        return sorted(item["DBInstanceIdentifier"] for item in self.client().describe_db_instances()["DBInstances"])

    # --- S3 ------------------------------------------------------------------------------------------

    def s3_client(self) -> Any:
        """A boto3 S3 client pointed at this server explicitly (setup and assertions only)."""
        if self._s3 is None:
            self._s3 = boto3.session.Session(
                aws_access_key_id=DUMMY_KEY, aws_secret_access_key=DUMMY_KEY, region_name=self.region
            ).client("s3", endpoint_url=self._require_url())
        return self._s3

    def create_bucket(self, name: str) -> None:
        self.s3_client().create_bucket(Bucket=name)

    def object_keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def object_bytes(self, bucket: str, key: str) -> bytes:
        return bytes(self.s3_client().get_object(Bucket=bucket, Key=key)["Body"].read())

    def object_metadata(self, bucket: str, key: str) -> dict[str, Any]:
        return dict(self.s3_client().head_object(Bucket=bucket, Key=key))

    def put_object_bytes(self, bucket: str, key: str, data: bytes) -> None:
        """Overwrite (or create) an object: how a test corrupts a stored dump behind the bot's back."""
        self.s3_client().put_object(Bucket=bucket, Key=key, Body=data)

    def _require_url(self) -> str:
        if not self.url:
            raise RuntimeError("MotoRds.start() has not been called")
        return self.url

    def __enter__(self) -> MotoRds:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


MotoAws = MotoRds  # the same server plays RDS and S3
