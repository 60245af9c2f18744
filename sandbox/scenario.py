"""The incident the demo and the tests play: a bad release went out and production must go back.

It builds, on this machine: a git remote with a good and a bad release (the bad one drops a column
and a table), a real PostgreSQL database migrated by the same SQL files, a health endpoint, and a
rollback.toml. The deploy pipeline's restore point is taken with `snapshot` while the good release
is live, exactly as a real pipeline would, and only then is the bad release deployed.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bot.config import load_config
from bot.engine.restore_points import take_snapshot
from bot.services import build_services
from sandbox.flag_servers import LaunchDarklyServer
from sandbox.health_server import HealthServer
from sandbox.repo import DROP_MIGRATION, INIT_MIGRATION, SandboxRepo, build_sandbox_repo, git

PG_ADMIN_URL = os.environ.get("ROLLBACK_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")

LAUNCHDARKLY_TABLE = """
[[environments.prod.flags]]
provider = "launchdarkly"
keys = ["new-pricing"]
api_key_env = "LD_API_KEY"
project = "default"
environment = "production"
base_url = "{}"
"""

GOOD_ORDERS = [("ada", "120.00", "LEGACY-1"), ("grace", "80.50", "LEGACY-2"), ("linus", "42.00", "LEGACY-3")]


@dataclass
class Incident:
    root: Path
    config_path: Path
    repo: SandboxRepo
    db_name: str
    db_url: str
    url_env: str
    health: HealthServer
    health_url: str
    flags: LaunchDarklyServer | None = None  # the bad release's flag, on, in a LaunchDarkly stand-in
    admin_url: str = PG_ADMIN_URL  # the server it lives on (tests stop a private one to break it)

    def close(self) -> None:
        self.health.stop()
        if self.flags is not None:
            self.flags.stop()
        drop_databases(self.db_name, admin_url=self.admin_url)


def config_text(
    *,
    repo: SandboxRepo,
    url_env: str,
    health_url: str,
    extra_env: str = "",
    update_every: str = "10m",
    remind_after: tuple[str, str] = ("15m", "2h"),
    health_interval: str = "200ms",
    store: str = "sqlite:///state/rollback-bot.db",
    plan_expires_after: str = "15m",
    prestage: bool = False,
) -> str:
    return f"""# The sandbox's rollback.toml: one environment, "prod", on this machine.
[bot]
store = "{store}"
backup_dir = "backups"
incident_channels = "^(inc|incident)[-_]"
stakeholder_channels = ["C0STATUS"]
stakeholder_update_every = "{update_every}"
plan_expires_after = "{plan_expires_after}"

[bot.checklist]
short_term_after = "{remind_after[0]}"
medium_term_after = "{remind_after[1]}"

[contacts]
oncall = "S0ONCALL"
database = "S0DBA"

[environments.prod]
repo = "{repo.clone}"
remote = "{repo.remote_name}"
branch = "{repo.branch}"
code = "revert"
approvers = ["S0ONCALL", "U0CAROL"]
two_person = true
{extra_env}
[environments.prod.database]
engine = "postgres"
url_env = "{url_env}"
restore = "dump"
prestage = {"true" if prestage else "false"}

[[environments.prod.health]]
url = "{health_url}"
expect_status = 200
timeout = "2s"
attempts = 5
interval = "{health_interval}"
consecutive = 2
"""


def create_database(name: str, *, admin_url: str = PG_ADMIN_URL) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def drop_databases(prefix: str, *, admin_url: str = PG_ADMIN_URL) -> None:
    """Drop the database and everything a restore kept beside it (`<name>_before_rollback_…`, shadows)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT datname FROM pg_database WHERE datname = %s OR datname LIKE %s",
                (prefix, prefix[:40] + "%"),
            )
        ]
        for name in names:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def deploy_good_release(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(INIT_MIGRATION.encode())
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO orders (customer, total, legacy_ref) VALUES (%s, %s, %s)", GOOD_ORDERS)
            cur.execute("INSERT INTO audit_old (note) VALUES ('kept for the auditors')")


def deploy_bad_release(url: str) -> None:
    """The migration that ships with the bad release, and the damage it does once live."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(DROP_MIGRATION.encode())
        conn.execute("UPDATE orders SET total = total * 0.81")  # the new pricing bug, now in the data


def database_contents(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every user table's columns and rows, for comparing two databases."""
    contents: dict[str, list[tuple[object, ...]]] = {}
    with psycopg.connect(url) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")]
        for table in tables:
            columns = [
                r[0]
                for r in conn.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = %s ORDER BY ordinal_position",
                    (table,),
                )
            ]
            rows = conn.execute(sql.SQL("SELECT * FROM {} ORDER BY 1").format(sql.Identifier(table))).fetchall()
            contents[table] = [tuple(columns), *rows]
    return contents


def build_incident(
    root: Path,
    *,
    url_env: str = "DATABASE_URL",
    environ: MutableMapping[str, str] = os.environ,
    with_flags: bool = False,
    admin_url: str = PG_ADMIN_URL,
    **config_options: Any,
) -> Incident:
    """Set the stage: good release live and snapshotted, then the bad release deployed over it."""
    root.mkdir(parents=True, exist_ok=True)
    repo = build_sandbox_repo(root / "git")
    db_name = f"rb_shop_{secrets.token_hex(4)}"
    db_url = create_database(db_name, admin_url=admin_url)
    environ[url_env] = db_url
    health = HealthServer()
    health_url = health.start()
    flags = None
    if with_flags:
        flags = LaunchDarklyServer()
        flags.start()
        flags.set_flag("new-pricing", True)  # the bad release shipped behind this flag
        environ["LD_API_KEY"] = flags.api_key
        config_options["extra_env"] = config_options.get("extra_env", "") + LAUNCHDARKLY_TABLE.format(flags.base_url)
    config_path = root / "rollback.toml"
    config_path.write_text(config_text(repo=repo, url_env=url_env, health_url=health_url, **config_options))

    # Before the bad deploy: the good release is live, and the pipeline records a restore point.
    git(repo.clone, "push", "--quiet", "--force", repo.remote_name, f"{repo.good}:refs/heads/{repo.branch}")
    deploy_good_release(db_url)
    services = build_services(config=load_config(config_path))
    try:
        take_snapshot(services, "prod", actor="deploy-pipeline")
    finally:
        services.close()
    # The deploy: the bad release goes out and its migration runs.
    git(repo.clone, "push", "--quiet", "--force", repo.remote_name, f"{repo.bad}:refs/heads/{repo.branch}")
    deploy_bad_release(db_url)
    return Incident(
        root=root,
        config_path=config_path,
        repo=repo,
        db_name=db_name,
        db_url=db_url,
        url_env=url_env,
        health=health,
        health_url=health_url,
        flags=flags,
        admin_url=admin_url,
    )
