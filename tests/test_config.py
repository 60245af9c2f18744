"""Configuration: good files load; bad files name every problem by file and key; no stack traces."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from bot.cli import main
from bot.config import load_config
from bot.errors import ConfigError

GOOD = """
[bot]
store = "sqlite:///state/rollback-bot.db"
backup_dir = "backups"
incident_channels = "^(inc|incident)[-_]"
stakeholder_channels = ["C0STATUS"]
stakeholder_update_every = "10m"
plan_expires_after = "15m"

[bot.checklist]
short_term_after = "15m"
medium_term_after = "2h"

[contacts]
oncall = "S0ONCALL"

[environments.prod]
repo = "app"
remote = "production"
branch = "release"
code = "revert"
approvers = ["S0ONCALL", "U0APPROVER"]
two_person = true

[environments.prod.database]
engine = "postgres"
url_env = "DATABASE_URL"
restore = "dump"

[environments.prod.rds]
region = "us-east-1"
snapshot_id = "prod-snapshot-20231201"
restore_instance_id = "prod-restore-new"

[[environments.prod.flags]]
provider = "launchdarkly"
keys = ["new-checkout"]
api_key_env = "LD_API_KEY"
project = "default"
environment = "production"

[[environments.prod.health]]
url = "https://app.example.com/health"
timeout = "5s"
attempts = 10
interval = "3s"
consecutive = 2
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "rollback.toml"
    path.write_text(text)
    return path


def test_the_documented_example_loads_with_paths_made_absolute(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    prod = config.environment("prod")
    assert prod.branch == "release" and prod.code == "revert" and prod.two_person
    assert config.settings.bot.plan_expires_after == timedelta(minutes=15)
    assert prod.health[0].interval == timedelta(seconds=3)
    assert config.backup_dir == tmp_path / "backups"
    assert config.store_url == f"sqlite:///{tmp_path / 'state' / 'rollback-bot.db'}"
    assert config.repo_location(prod) == str(tmp_path / "app")


def test_every_problem_is_named_with_its_key(tmp_path: Path) -> None:
    bad = GOOD.replace('code = "revert"', 'code = "rebase"').replace('timeout = "5s"', 'timeout = "five"')
    bad = bad.replace('approvers = ["S0ONCALL", "U0APPROVER"]', 'approvers = ["alice"]')
    bad = bad.replace('engine = "postgres"', 'engine = "postgres"\nurl = "postgresql://u:pw@h/db"')
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, bad))
    problems = {p.key: p for p in caught.value.problems}
    assert set(problems) == {
        "environments.prod.code",
        "environments.prod.health[0].timeout",
        "environments.prod.approvers",
        "environments.prod.database.url",
    }
    assert "'revert'" in problems["environments.prod.code"].expected
    assert "duration" in problems["environments.prod.health[0].timeout"].problem
    assert "url_env" in problems["environments.prod.database.url"].expected
    assert all(p.file == str(tmp_path / "rollback.toml") for p in problems.values())


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        (
            "[environments.prod]\nrepo='x'\n[environments.prod.database]\nrestore='dump'\n",
            "environments.prod",
            "needs database.engine",
        ),
        (
            "[environments.prod]\nrepo='x'\n[environments.prod.database]\nengine='postgres'\nrestore='rds-snapshot'\n",
            "environments.prod",
            "rds",
        ),
        (
            "[environments.prod]\nrepo='x'\n[[environments.prod.health]]\nurl='ftp://x'\n",
            "environments.prod.health[0].url",
            "http",
        ),
        (
            "[environments.prod]\nrepo='x'\n[[environments.prod.health]]\nurl='http://x'\nattempts=1\nconsecutive=3\n",
            "environments.prod.health[0]",
            "never pass",
        ),
        (
            "[bot]\nincident_channels='(('\n[environments.prod]\nrepo='x'\n",
            "bot.incident_channels",
            "regular expression",
        ),
        (
            "[environments.prod]\nrepo='x'\n[environments.prod.database]\nengine='postgres'\nurl_env='postgresql://u:p@h/d'\n",
            "environments.prod.database.url_env",
            "NAME of an environment variable",
        ),
        ("[environments]\n", "environments", "at least one environment"),
        (
            "[environments.prod]\nrepo='x'\n[environments.prod.drill]\nevery='1m'\nchannel='C0DBA'\n",
            "environments.prod.drill.every",
            "at most every 5 minutes",
        ),
        (
            "[environments.prod]\nrepo='x'\n[environments.prod.drill]\nchannel='#dba'\n",
            "environments.prod.drill.channel",
            "not a Slack channel ID",
        ),
        (
            "[environments.prod]\nrepo='x'\n[environments.prod.drill]\nevery='24h'\n",
            "(top level)",
            "would alert nobody",
        ),
        (
            "[environments.prod]\nrepo='x'\n[environments.prod.rehearsal]\nhealth=['staging.example.com']\n",
            "environments.prod.rehearsal.health",
            "http:// or https://",
        ),
        (
            "[environments.prod]\nrepo='x'\n[environments.prod.rehearsal]\nbranch='main'\nurl='x'\n",
            "environments.prod.rehearsal.url",
            "not a known key",
        ),
        (
            "[environments.prod]\nrepo='x'\n[environments.prod.database]\ndump_compression=10\n",
            "environments.prod.database.dump_compression",
            "less than or equal to 9",
        ),
        ("[environments.prod]\nremote='x'\n", "environments.prod.repo", "required"),
    ],
)
def test_named_errors(tmp_path: Path, text: str, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert [p.key for p in caught.value.problems] == [key]
    assert words in str(caught.value.problems[0])


def test_check_config_lists_problems_and_exits_non_zero_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, GOOD.replace('code = "revert"', 'code = "yolo"').replace("attempts = 10", "attempts = 0"))
    assert main(["check-config", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert "environments.prod.code" in err and "environments.prod.health[0].attempts" in err
    assert "Traceback" not in err


def test_check_config_names_unset_secret_variables(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("LD_API_KEY", "api-key-1234")
    assert main(["check-config", "--config", str(write(tmp_path, GOOD))]) == 2
    err = capsys.readouterr().err
    assert "DATABASE_URL is not set" in err and "LD_API_KEY" not in err
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:pw@127.0.0.1/app")
    assert main(["check-config", "--config", str(write(tmp_path, GOOD))]) == 0
    assert "OK (1 environment(s): prod)" in capsys.readouterr().out


@pytest.mark.parametrize("text", ["not toml = [", "", "[environments.prod]\nrepo = 3\n"])
def test_malformed_files_get_a_clear_answer(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str) -> None:
    assert main(["check-config", "--config", str(write(tmp_path, text))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the configuration has") and "Traceback" not in err


def test_missing_file_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check-config", "--config", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: file not found" in capsys.readouterr().err


def test_rollback_config_variable_is_honoured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("ROLLBACK_CONFIG", str(write(tmp_path, "[environments.staging]\nrepo='x'\n")))
    assert main(["check-config"]) == 0
    assert "staging" in capsys.readouterr().out


# --- backups any machine can reach (a folder or S3), the work folder, the deploy hook's token -----------


def test_backup_dir_may_be_s3_and_work_dir_is_local_scratch_beside_the_config(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.artifact_location == str(tmp_path / "backups") and not config.backups_in_s3
    assert config.work_dir == tmp_path / "work"  # the default: beside the config
    assert config.settings.bot.deploy_token_env is None  # the deploy hook is off unless asked for

    text = GOOD.replace(
        'backup_dir = "backups"',
        'backup_dir = "s3://acme-rollback.dumps/prod-db/"\nwork_dir = "/var/tmp/rb"\n'
        'deploy_token_env = "ROLLBACK_DEPLOY_TOKEN"',
    )
    config = load_config(write(tmp_path, text))
    assert config.backups_in_s3 and config.artifact_location == "s3://acme-rollback.dumps/prod-db"
    assert config.work_dir == Path("/var/tmp/rb")
    assert config.backup_dir == Path("/var/tmp/rb")  # callers that need a folder get local scratch
    assert config.settings.bot.deploy_token_env == "ROLLBACK_DEPLOY_TOKEN"
    bucket_only = load_config(write(tmp_path, GOOD.replace('backup_dir = "backups"', 'backup_dir = "s3://dumps"')))
    assert bucket_only.artifact_location == "s3://dumps"


@pytest.mark.parametrize(
    ("line", "key", "words"),
    [
        ('backup_dir = "s3://Acme_Dumps/prefix"', "bot.backup_dir", "lowercase letters, digits"),
        ('backup_dir = "s3://ab"', "bot.backup_dir", "3 to 63 characters"),
        ('backup_dir = "s3:///prefix"', "bot.backup_dir", "bucket name '' is missing"),
        ('backup_dir = "s3://192.168.1.10/x"', "bot.backup_dir", "IP address"),
        ('backup_dir = "s3://my..bucket"', "bot.backup_dir", "'..'"),
        ('backup_dir = "s3://bucket//double"', "bot.backup_dir", "empty path segment"),
        ('backup_dir = "gs://bucket/prefix"', "bot.backup_dir", "neither a folder nor an s3://bucket/prefix"),
        ('work_dir = "s3://bucket/scratch"', "bot.work_dir", "must be a local folder"),
        ('deploy_token_env = "tok_3f9a8b7c-live"', "bot.deploy_token_env", "NAME of an environment variable"),
        ('deploy_token_env = "Bearer abc.def"', "bot.deploy_token_env", "never the secret"),
    ],
)
def test_bad_backup_work_and_token_keys_are_named(tmp_path: Path, line: str, key: str, words: str) -> None:
    text = GOOD.replace(
        'backup_dir = "backups"', line if line.startswith("backup_dir") else f'backup_dir = "backups"\n{line}'
    )
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, text))
    assert [p.key for p in caught.value.problems] == [key]
    assert words in str(caught.value.problems[0])


def test_check_config_names_an_unset_deploy_token_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:pw@127.0.0.1/app")
    monkeypatch.setenv("LD_API_KEY", "api-key-1234")
    monkeypatch.delenv("RB_DEPLOY_TOKEN", raising=False)
    text = GOOD.replace('backup_dir = "backups"', 'backup_dir = "backups"\ndeploy_token_env = "RB_DEPLOY_TOKEN"')
    assert main(["check-config", "--config", str(write(tmp_path, text))]) == 2
    assert "bot.deploy_token_env: the variable RB_DEPLOY_TOKEN is not set" in capsys.readouterr().err
    monkeypatch.setenv("RB_DEPLOY_TOKEN", "a-long-random-token")
    assert main(["check-config", "--config", str(write(tmp_path, text))]) == 0


def test_check_config_says_a_sqlite_store_means_one_replica(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:pw@127.0.0.1/app")
    monkeypatch.setenv("LD_API_KEY", "api-key-1234")
    assert main(["check-config", "--config", str(write(tmp_path, GOOD))]) == 0
    assert "run ONE bot replica" in capsys.readouterr().out
    shared = GOOD.replace('store = "sqlite:///state/rollback-bot.db"', 'store = "postgresql://bot@127.0.0.1/rollback"')
    assert shared != GOOD
    assert main(["check-config", "--config", str(write(tmp_path, shared))]) == 0
    assert "replica" not in capsys.readouterr().out


def test_the_readmes_configuration_loads_as_written(tmp_path: Path) -> None:
    """The README's rollback.toml blocks are what people copy: they must load, every key known."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    section = readme.split("## Configuration: `rollback.toml`", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```toml\n(.*?)```", section, flags=re.S)
    assert len(blocks) >= 2  # the main table, then flags and RDS
    config = load_config(write(tmp_path, "\n".join(blocks)))
    prod = config.environment("prod")
    assert prod.drill.every == timedelta(hours=24) and prod.drill.channel and prod.drill.checks
    assert prod.database.dump_compression == 1 and prod.break_glass == []


def test_dump_compression_reaches_pg_dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.backends.postgres import PostgresDatabase
    from bot.services import build_services

    text = "[environments.prod]\nrepo='x'\n[environments.prod.database]\nengine='postgres'\ndump_compression=0\n"
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/app")
    services = build_services(config=load_config(write(tmp_path, text)))
    try:
        database = services.database("prod")
        assert isinstance(database, PostgresDatabase) and database.compress == 0
    finally:
        services.close()
