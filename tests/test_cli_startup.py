"""The CLI starts at once: each verb imports only what it uses (what is loaded is checked, not timed)."""

from __future__ import annotations

import json
import subprocess
import sys

from sandbox.scenario import Incident

HEAVY = (
    "boto3",
    "botocore",
    "sqlalchemy",
    "pydantic",
    "git",
    "psycopg",
    "pymysql",
    "requests",
    "slack_sdk",
    "slack_bolt",
    "rich",
    "alembic",
)
PROBE = """
import json, sys
from bot.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as done:
    code = done.code
print(json.dumps({"code": code, "loaded": sorted(m for m in sys.modules if "." not in m)}))
"""


def loaded_by(*argv: str) -> tuple[int, set[str]]:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, check=True)
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    return int(answer["code"] or 0), set(answer["loaded"]) & set(HEAVY)


def test_help_imports_nothing_heavy() -> None:
    code, heavy = loaded_by("--help")
    assert code == 0 and heavy == set()
    code, heavy = loaded_by("run", "--help")
    assert code == 0 and heavy == set()


def test_status_and_plan_never_load_aws_or_slack(incident: Incident) -> None:
    code, heavy = loaded_by("status", "--config", str(incident.config_path))
    assert code == 0 and not heavy & {"boto3", "botocore", "slack_sdk", "slack_bolt", "git", "requests", "rich"}
    code, heavy = loaded_by("plan", "prod", "--config", str(incident.config_path))
    assert code == 0 and not heavy & {"boto3", "botocore", "slack_sdk", "slack_bolt"}
