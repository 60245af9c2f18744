"""An incident where the database comes back from an AWS RDS snapshot (moto in server mode over HTTP)."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli import main
from bot.engine.outcomes import DatabaseOutcome
from bot.services import Services
from sandbox.aws import CONFLICTING_ENV, MotoRds
from sandbox.scenario import Incident, database_contents

RDS_TABLE = """
[environments.prod.rds]
region = "us-east-1"
snapshot_id = "prod-snapshot-20231201"
restore_instance_id = "prod-restore-new"
source_instance_id = "prod-db"
"""


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoRds]:
    with MotoRds() as moto:
        moto.reset()  # moto keeps its fake AWS in this process: start every test from an empty account
        for name in CONFLICTING_ENV:
            monkeypatch.delenv(name, raising=False)
        for name, value in moto.environment().items():
            monkeypatch.setenv(name, value)
        moto.create_source_instance("prod-db")
        moto.create_snapshot("prod-snapshot-20231201", from_instance="prod-db")
        yield moto


@pytest.mark.incident_config(extra_env=RDS_TABLE)
def test_rds_snapshot_restore_creates_a_new_instance_and_says_where(
    aws: MotoRds, incident: Incident, services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    live = database_contents(incident.db_url)
    assert main(["plan", "prod", "--db", "rds-snapshot", "--config", str(incident.config_path)]) == 0
    plan = capsys.readouterr().out
    assert "new instance   prod-restore-new" in plan
    assert "Aurora: a new cluster prod-restore-new with its writer prod-restore-new-instance-1" in plan
    assert main(["run", "prod", "--force", "--db", "rds-snapshot", "--config", str(incident.config_path)]) == 0
    out = capsys.readouterr().out
    new = aws.instance("prod-restore-new")
    assert new is not None and new["DBInstanceStatus"] == "available"
    endpoint = new["Endpoint"]["Address"]
    assert endpoint in out  # the new endpoint is in the step's output…
    assert f"Update the DATABASE_URL environment variable to {endpoint}" in out  # …and in the checklist
    assert "Plan the old RDS instance's (or Aurora cluster's) cleanup" in out
    assert aws.instance("prod-db") is not None  # the old instance is untouched
    assert database_contents(incident.db_url) == live  # and so is the live database it was serving
    dumps = list((incident.root / "backups" / "prod").glob("pre-rollback-*.dump"))
    assert len(dumps) == 1  # the pre-rollback dump of the live database was still taken

    assert services.store.list_runs()[0].status == "succeeded"
    assert len([i for i in aws.instance_ids() if i.startswith("prod-restore")]) == 1


@pytest.mark.incident_config(extra_env=RDS_TABLE.replace("prod-snapshot-20231201", "no-such-snapshot"))
def test_an_unknown_snapshot_is_caught_by_the_safety_checks(
    aws: MotoRds, incident: Incident, services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    head = Path(incident.repo.remote_url)
    assert main(["run", "prod", "--force", "--db", "rds-snapshot", "--config", str(incident.config_path)]) == 1
    assert "no-such-snapshot" in capsys.readouterr().out
    run = services.store.list_runs()[0]
    assert run.current_step == "safety" and head.exists()
    assert aws.instance("prod-restore-new") is None


@pytest.mark.incident_config(extra_env=RDS_TABLE)
def test_point_in_time_restore(aws: MotoRds, incident: Incident, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["run", "prod", "--force", "--db", "rds-pitr", "--code", "none", "--config", str(incident.config_path)])
        == 0
    )
    assert aws.instance("prod-restore-new") is not None
    assert "prod-restore-new" in capsys.readouterr().out


@pytest.mark.incident_config(extra_env=RDS_TABLE)
def test_the_new_instance_lands_in_the_old_ones_network(aws: MotoRds, incident: Incident) -> None:
    aws.client().modify_db_instance(
        DBInstanceIdentifier="prod-db", VpcSecurityGroupIds=["sg-0app1234"], MultiAZ=True, ApplyImmediately=True
    )
    before = aws.instance("prod-db")
    assert before is not None
    assert (
        main(
            ["run", "prod", "--force", "--db", "rds-snapshot", "--code", "none", "--config", str(incident.config_path)]
        )
        == 0
    )
    new = aws.instance("prod-restore-new")
    assert new is not None
    groups = [g["VpcSecurityGroupId"] for g in new["VpcSecurityGroups"]]
    assert groups == [g["VpcSecurityGroupId"] for g in before["VpcSecurityGroups"]] == ["sg-0app1234"]
    assert new["MultiAZ"] is True


@pytest.mark.incident_config(extra_env=RDS_TABLE)
def test_an_rds_restore_that_aws_refuses_mid_rollback_fails_creates_nothing_and_a_retry_finishes(
    aws: MotoRds, incident: Incident, services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    """A real fault through moto's HTTP API: the snapshot is deleted after the safety checks found it (by the
    remote's post-receive hook, as the code step pushes), so AWS refuses the restore itself."""
    hook = Path(incident.repo.remote_url) / "hooks" / "post-receive"
    delete = (
        "import boto3; boto3.client('rds', region_name='us-east-1')"
        ".delete_db_snapshot(DBSnapshotIdentifier='prod-snapshot-20231201')"
    )
    hook.write_text(f"#!/bin/sh\ncat >/dev/null\nexec {sys.executable} -c {shlex.quote(delete)}\n")
    hook.chmod(0o755)
    live = database_contents(incident.db_url)
    config = ["--config", str(incident.config_path)]

    assert main(["run", "prod", "--force", "--db", "rds-snapshot", *config]) == 1

    out = capsys.readouterr().out
    run = services.store.list_runs()[0]
    assert run.current_step == "database" and "prod-snapshot-20231201 was not found" in (run.error or "")
    assert "Next: retry | skip | abort" in out  # the terminal says what can be done next
    assert aws.instance("prod-restore-new") is None  # nothing half-made
    assert aws.instance("prod-db") is not None and database_contents(incident.db_url) == live
    steps = {s.name: s.status for s in services.store.steps(run.id)}
    assert steps["code"] == "ok" and steps["pre_dump"] == "ok" and steps["database"] == "failed"

    hook.unlink()
    aws.create_snapshot("prod-snapshot-20231201", from_instance="prod-db")  # AWS has it again
    assert main(["resume", run.id, "--retry", *config]) == 0
    assert services.store.get_run(run.id).status == "succeeded"
    assert [i for i in aws.instance_ids() if i.startswith("prod-restore")] == ["prod-restore-new"]


AURORA_TABLE = """
[environments.prod.rds]
region = "us-east-1"
snapshot_id = "prod-aurora-20231201"
restore_instance_id = "prod-restore-new"
source_instance_id = "prod-aurora"
"""


@pytest.fixture
def aurora(aws: MotoRds) -> MotoRds:
    """Production on Aurora: a cluster with its writer, and a snapshot of the cluster."""
    aws.create_source_cluster("prod-aurora")
    aws.create_cluster_snapshot("prod-aurora-20231201", from_cluster="prod-aurora")
    return aws


@pytest.mark.incident_config(extra_env=AURORA_TABLE)
def test_an_aurora_snapshot_restores_a_new_cluster_and_says_its_endpoint(
    aurora: MotoRds, incident: Incident, services: Services, capsys: pytest.CaptureFixture[str]
) -> None:
    source_members = aurora.cluster("prod-aurora")["DBClusterMembers"]  # type: ignore[index]
    assert main(["run", "prod", "--force", "--db", "rds-snapshot", "--config", str(incident.config_path)]) == 0
    out = capsys.readouterr().out
    cluster = aurora.cluster("prod-restore-new")
    assert cluster is not None and cluster["Status"] == "available"
    assert [m["DBInstanceIdentifier"] for m in cluster["DBClusterMembers"]] == ["prod-restore-new-instance-1"]
    endpoint = cluster["Endpoint"]
    assert f"NEW Aurora cluster prod-restore-new with instance prod-restore-new-instance-1: endpoint {endpoint}" in out
    assert f"Update the DATABASE_URL environment variable to {endpoint}:5432" in out  # the cluster's, in the checklist
    assert aurora.cluster("prod-aurora")["DBClusterMembers"] == source_members  # type: ignore[index]

    run = services.store.list_runs()[0]
    assert run.status == "succeeded"
    step = next(s for s in services.store.steps(run.id) if s.name == "database")
    outcome = DatabaseOutcome.from_details(step.details)
    assert (outcome.cluster, outcome.instance, outcome.endpoint) == (
        "prod-restore-new",
        "prod-restore-new-instance-1",
        f"{endpoint}:5432",
    )
    assert outcome.reader_endpoint == f"{cluster['ReaderEndpoint']}:5432"
    assert aurora.cluster_ids() == ["prod-aurora", "prod-restore-new"]


@pytest.mark.incident_config(extra_env=AURORA_TABLE)
def test_an_aurora_point_in_time_restore(
    aurora: MotoRds, incident: Incident, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["run", "prod", "--force", "--db", "rds-pitr", "--code", "none", "--config", str(incident.config_path)])
        == 0
    )
    cluster = aurora.cluster("prod-restore-new")
    assert cluster is not None and cluster["DBSubnetGroup"] == "app-subnets"
    assert (
        "prod-aurora at its latest restorable time into NEW Aurora cluster prod-restore-new" in capsys.readouterr().out
    )
