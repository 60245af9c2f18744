"""An incident where the database comes back from an AWS RDS snapshot (moto in server mode over HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.cli import main
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
    assert "new instance   prod-restore-new" in capsys.readouterr().out
    assert main(["run", "prod", "--force", "--db", "rds-snapshot", "--config", str(incident.config_path)]) == 0
    out = capsys.readouterr().out
    new = aws.instance("prod-restore-new")
    assert new is not None and new["DBInstanceStatus"] == "available"
    endpoint = new["Endpoint"]["Address"]
    assert endpoint in out  # the new endpoint is in the step's output…
    assert f"Update the DATABASE_URL environment variable to {endpoint}" in out  # …and in the checklist
    assert "Plan the old RDS instance's cleanup" in out
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
