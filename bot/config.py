"""rollback.toml → typed, validated settings.

Every problem is collected (not just the first) and named by file and key, with what would be right,
so `rollback-bot check-config` can list them all and nothing downstream ever sees a half-valid config.
Relative paths (store, backup_dir, work_dir, repo, dump) are resolved against the config file's folder, so
the bot behaves the same whatever directory it is started from. `backup_dir` may instead be
`s3://bucket/prefix`, so a restore point taken on one machine (a CI runner) can be restored on another.

Size: every table of rollback.toml, the checks across tables (break-glass must open before a plan
expires) and the translation of pydantic's errors into check-config's words live in one module, so a key
and what check-config says about it are read together.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.artifacts.base import backup_location_problem
from bot.config_readiness import DrillSettings, RehearsalSettings
from bot.config_types import Duration, Strict, env_var_name
from bot.errors import ConfigError, ConfigProblem

DEFAULT_CONFIG = "rollback.toml"
CODE_STRATEGIES = ("revert", "force-push", "none")
DB_ENGINES = ("postgres", "mysql", "sqlite", "none")
DB_RESTORES = ("dump", "rds-snapshot", "rds-pitr", "none")
FLAG_PROVIDERS = ("launchdarkly", "flagsmith", "unleash", "webhook")
_ENV_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,39}$")
_SLACK_ID = re.compile(r"^[UWSCGD][A-Z0-9]{2,}$")


def _backup_location(value: str) -> str:
    """A folder, or s3://bucket[/prefix] with a bucket name S3 would accept."""
    problem = backup_location_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _slack_ids(values: list[str]) -> list[str]:
    for value in values:
        if not _SLACK_ID.match(value):
            raise ValueError(f"{value!r} is not a Slack user (U…/W…) or user-group (S…) ID")
    return values


class ChecklistSettings(Strict):
    short_term_after: Duration = timedelta(minutes=15)
    medium_term_after: Duration = timedelta(hours=2)


class BotSettings(Strict):
    store: str = "sqlite:///rollback-bot.db"
    backup_dir: str = "backups"  # a folder, or s3://bucket/prefix (boto3's standard configuration)
    work_dir: str = "work"  # local scratch: repo clones, dumps before upload, downloads before restore
    deploy_token_env: str | None = None  # enables POST /hooks/deploy; names the variable holding the token
    incident_channels: str | None = None
    stakeholder_channels: list[str] = Field(default_factory=list)
    stakeholder_update_every: Duration = timedelta(minutes=10)
    plan_expires_after: Duration = timedelta(minutes=15)
    # A run on another host whose heartbeat is older than this shows as interrupted (same host: at once).
    heartbeat_timeout: Duration = timedelta(seconds=60)
    checklist: ChecklistSettings = Field(default_factory=ChecklistSettings)

    @field_validator("store")
    @classmethod
    def _store_url(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://", "postgresql+psycopg://")):
            raise ValueError('must be "sqlite:///path.db" or "postgresql://…"')
        return value

    _check_backup = field_validator("backup_dir")(_backup_location)
    _check_token_env = field_validator("deploy_token_env")(lambda v: v if v is None else env_var_name(v))

    @field_validator("work_dir")
    @classmethod
    def _local_folder(cls, value: str) -> str:
        if "://" in value or not value.strip():
            raise ValueError(f"{value!r} must be a local folder (scratch space on this machine)")
        return value

    @field_validator("incident_channels")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as error:
                raise ValueError(f"is not a valid regular expression: {error}") from None
        return value


class DatabaseSettings(Strict):
    engine: Literal["postgres", "mysql", "sqlite", "none"] = "none"
    url_env: str = "DATABASE_URL"
    restore: Literal["dump", "rds-snapshot", "rds-pitr", "none"] = "none"
    dump: str | None = None
    # snapshot also restores the restore point into a standby database; a rollback's database step is
    # then the swap alone, and the pre-rollback dump is taken of the kept database after it
    prestage: bool = False
    # pg_dump's zlib level for restore points and pre-rollback dumps (PostgreSQL). 0 trades disk space for
    # time: an uncompressed dump costs pg_dump no CPU, which the restore loading beside it then has (see
    # the README's benchmarks); the dump is then about as big as the database.
    dump_compression: int = Field(default=1, ge=0, le=9)
    _check_env = field_validator("url_env")(env_var_name)

    @model_validator(mode="after")
    def _prestage_needs_a_swap(self) -> DatabaseSettings:
        if self.prestage and (self.engine != "postgres" or self.restore != "dump"):
            raise ValueError(
                'prestage = true needs engine = "postgres" and restore = "dump": the standby is a database'
                " beside the live one, swapped in by a rename"
            )
        return self


class RdsSettings(Strict):
    # Aurora is read from AWS, not configured: a DB cluster snapshot as snapshot_id, or a DB cluster (or one of
    # its instances) as source_instance_id, restores a NEW cluster named restore_instance_id and its instance
    # <restore_instance_id>-instance-1 (bot/backends/rds_cluster.py).
    region: str | None = None
    snapshot_id: str | None = None  # a DB snapshot, or an Aurora DB cluster snapshot
    restore_instance_id: str | None = None  # the NEW instance (Aurora: the NEW cluster)
    source_instance_id: str | None = None  # for rds-pitr: a DB instance, or an Aurora DB cluster
    instance_class: str | None = None  # default: the source's (Aurora: its writer instance's)


class FlagSettings(Strict):
    provider: Literal["launchdarkly", "flagsmith", "unleash", "webhook"]
    keys: list[str] = Field(min_length=1)
    api_key_env: str | None = None
    project: str | None = None
    environment: str | None = None
    base_url: str | None = None
    _check_env = field_validator("api_key_env")(lambda v: v if v is None else env_var_name(v))


class HealthSettings(Strict):
    url: str
    expect_status: int = Field(default=200, ge=100, le=599)
    timeout: Duration = timedelta(seconds=5)
    attempts: int = Field(default=10, ge=1, le=1000)
    interval: Duration = timedelta(seconds=3)  # after a failed try, before the next
    consecutive: int = Field(default=2, ge=1, le=100)
    # After a passing try, before the next one of the streak: short, so a healthy app costs no waiting.
    pass_interval: Duration = timedelta(milliseconds=250)

    @field_validator("url")
    @classmethod
    def _http(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _reachable(self) -> HealthSettings:
        if self.consecutive > self.attempts:
            raise ValueError(
                f"consecutive ({self.consecutive}) is more than attempts ({self.attempts}): it could never pass"
            )
        return self


class EnvironmentSettings(Strict):
    repo: str
    remote: str = "origin"
    branch: str = "main"
    code: Literal["revert", "force-push", "none"] = "revert"
    requesters: list[str] = Field(default_factory=list)
    approvers: list[str] = Field(default_factory=list)
    two_person: bool = True
    # Break-glass: these people (user IDs, by name: never a group) may run their own rollback alone, with a
    # typed justification, once no approver has confirmed it for break_glass_after; empty = never. The review
    # an approver must sign off afterwards is reminded every break_glass_remind_every (bot/engine/handover.py).
    break_glass: list[str] = Field(default_factory=list)
    break_glass_after: Duration = timedelta(minutes=10)
    break_glass_remind_every: Duration = timedelta(minutes=15)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    rds: RdsSettings | None = None
    flags: list[FlagSettings] = Field(default_factory=list)
    health: list[HealthSettings] = Field(default_factory=list)
    drill: DrillSettings = Field(default_factory=DrillSettings)  # restore drills (bot/config_readiness.py)
    rehearsal: RehearsalSettings = Field(default_factory=RehearsalSettings)  # its staging stand-ins

    _ids = field_validator("requesters", "approvers")(_slack_ids)

    @field_validator("break_glass")
    @classmethod
    def _people(cls, values: list[str]) -> list[str]:
        for value in values:
            if not re.match(r"^[UW][A-Z0-9]{2,}$", value):
                raise ValueError(f"{value!r} is not a Slack user ID (U…/W…): break-glass is granted to people by name")
        return values

    @model_validator(mode="after")
    def _consistent(self) -> EnvironmentSettings:
        db = self.database
        if db.restore == "dump" and db.engine == "none":
            raise ValueError('database.restore = "dump" needs database.engine (postgres, mysql or sqlite)')
        if db.restore.startswith("rds-") and self.rds is None:
            raise ValueError(f'database.restore = "{db.restore}" needs an [environments.<name>.rds] table')
        return self


class Settings(Strict):
    bot: BotSettings = Field(default_factory=BotSettings)
    contacts: dict[str, str] = Field(default_factory=dict)
    environments: dict[str, EnvironmentSettings]

    @field_validator("environments")
    @classmethod
    def _names(cls, value: dict[str, EnvironmentSettings]) -> dict[str, EnvironmentSettings]:
        if not value:
            raise ValueError("at least one environment is needed, e.g. [environments.prod]")
        for name in value:
            if not _ENV_NAME.match(name):
                raise ValueError(f"environment name {name!r} must be letters, digits, '-' or '_'")
        return value

    @model_validator(mode="after")
    def _break_glass_opens_before_the_plan_expires(self) -> Settings:
        expires = self.bot.plan_expires_after
        for name, env in self.environments.items():
            if env.break_glass and env.break_glass_after >= expires:
                from bot.format import duration

                raise ValueError(
                    f"environments.{name}.break_glass_after ({duration(env.break_glass_after)}) is not shorter than "
                    f"bot.plan_expires_after ({duration(expires)}): plans would expire before break-glass opens"
                )
        return self

    @model_validator(mode="after")
    def _failed_drills_have_somewhere_to_go(self) -> Settings:
        for name, env in self.environments.items():
            if env.drill.every is not None and env.drill.channel is None and not self.bot.stakeholder_channels:
                raise ValueError(
                    f"environments.{name}.drill.every schedules drills, but a failed one would alert nobody: set"
                    f" environments.{name}.drill.channel or bot.stakeholder_channels"
                )
        return self


@dataclass(frozen=True)
class LoadedConfig:
    """Settings plus where they came from, with every relative path made absolute."""

    settings: Settings
    path: Path

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def resolve_path(self, value: str) -> Path:
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else (self.base_dir / candidate).resolve()

    @property
    def backups_in_s3(self) -> bool:
        return self.settings.bot.backup_dir.startswith("s3://")

    @property
    def artifact_location(self) -> str:
        """Where dumps are kept: `s3://bucket/prefix` as configured (no trailing '/'), or an absolute folder."""
        if self.backups_in_s3:
            return self.settings.bot.backup_dir.rstrip("/")
        return str(self.resolve_path(self.settings.bot.backup_dir))

    @property
    def work_dir(self) -> Path:
        return self.resolve_path(self.settings.bot.work_dir)

    @property
    def backup_dir(self) -> Path:
        """A local folder for callers that need one: the backup folder itself, or work_dir when backups are in S3.

        New code uses `artifact_location` (where dumps are kept) and `work_dir` (scratch) instead.
        """
        return self.work_dir if self.backups_in_s3 else self.resolve_path(self.settings.bot.backup_dir)

    @property
    def store_url(self) -> str:
        url = self.settings.bot.store
        if url.startswith("sqlite:///"):
            return f"sqlite:///{self.resolve_path(url.removeprefix('sqlite:///'))}"
        return url

    def environment(self, name: str) -> EnvironmentSettings:
        from bot.errors import UnknownEnvironment

        try:
            return self.settings.environments[name]
        except KeyError:
            known = ", ".join(sorted(self.settings.environments)) or "none"
            raise UnknownEnvironment(
                f"unknown environment {name!r}", hint=f"configured environments: {known}"
            ) from None

    def repo_location(self, env: EnvironmentSettings) -> str:
        """A local path (resolved) or a URL to clone, as the config names it."""
        if "://" in env.repo or env.repo.startswith("git@"):
            return env.repo
        return str(self.resolve_path(env.repo))


def config_path(explicit: str | None = None) -> Path:
    return Path(explicit or os.environ.get("ROLLBACK_CONFIG") or DEFAULT_CONFIG).expanduser().resolve()


def load_config(path: str | Path | None = None) -> LoadedConfig:
    """Read and validate the config; raise ConfigError listing every problem."""
    resolved = config_path(str(path) if path is not None else None)
    file = str(resolved)
    try:
        raw = resolved.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [ConfigProblem(file, "", "file not found", "a rollback.toml, given with --config or ROLLBACK_CONFIG")]
        ) from None
    except OSError as error:
        raise ConfigError([ConfigProblem(file, "", f"cannot be read: {error.strerror}")]) from None
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError([ConfigProblem(file, "", f"is not valid TOML: {error}")]) from None
    try:
        settings = Settings.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_problems(file, error)) from None
    return LoadedConfig(settings=settings, path=resolved)


def environment_problems(config: LoadedConfig) -> list[ConfigProblem]:
    """What is missing from the process environment for this config to run (check-config reports it)."""
    problems: list[ConfigProblem] = []
    file = str(config.path)
    token_env = config.settings.bot.deploy_token_env
    if token_env and not os.environ.get(token_env):
        problems.append(
            ConfigProblem(
                file,
                "bot.deploy_token_env",
                f"the variable {token_env} is not set in this environment, so POST /hooks/deploy answers 404",
                f"export {token_env}=<a long random token the deploy pipeline also holds>",
            )
        )
    for name, env in config.settings.environments.items():
        if env.database.engine != "none" and not os.environ.get(env.database.url_env):
            problems.append(
                ConfigProblem(
                    file,
                    f"environments.{name}.database.url_env",
                    f"the variable {env.database.url_env} is not set in this environment",
                    f"export {env.database.url_env}=<database URL> before running",
                )
            )
        for index, flag in enumerate(env.flags):
            if flag.api_key_env and not os.environ.get(flag.api_key_env):
                problems.append(
                    ConfigProblem(
                        file,
                        f"environments.{name}.flags[{index}].api_key_env",
                        f"the variable {flag.api_key_env} is not set in this environment",
                        f"export {flag.api_key_env}=<API key>",
                    )
                )
    return problems


# --- turning pydantic's errors into ConfigProblems ----------------------------------------------------

_KNOWN_KEYS: dict[str, type[BaseModel]] = {
    "bot": BotSettings,
    "checklist": ChecklistSettings,
    "database": DatabaseSettings,
    "rds": RdsSettings,
    "flags": FlagSettings,
    "health": HealthSettings,
    "drill": DrillSettings,
    "rehearsal": RehearsalSettings,
}


def _key(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            parts[-1:] = [f"{parts[-1]}[{part}]"] if parts else [f"[{part}]"]
        else:
            parts.append(str(part))
    return ".".join(parts)


def _model_for(loc: tuple[int | str, ...]) -> type[BaseModel]:
    names = [part for part in loc if isinstance(part, str)]
    if len(names) >= 2 and names[0] == "environments":
        # environments.<name>.<table>…: the model is picked by the table name after the env name
        tables = names[2:]
        for table in reversed(tables):
            if table in _KNOWN_KEYS:
                return _KNOWN_KEYS[table]
        return EnvironmentSettings
    for name in reversed(names):
        if name in _KNOWN_KEYS:
            return _KNOWN_KEYS[name]
    return Settings


def _problems(file: str, error: ValidationError) -> list[ConfigProblem]:
    problems: list[ConfigProblem] = []
    for item in error.errors(include_url=False):
        loc = tuple(item["loc"])
        key = _key(loc)
        kind = item["type"]
        given = item.get("input")
        if kind == "extra_forbidden":
            model = _model_for(loc[:-1])
            known = ", ".join(sorted(model.model_fields))
            problems.append(ConfigProblem(file, key, "is not a known key", f"one of: {known}"))
        elif kind == "missing":
            problems.append(ConfigProblem(file, key, "is required but missing"))
        elif kind == "literal_error":
            expected = item.get("ctx", {}).get("expected", "")
            problems.append(ConfigProblem(file, key, f"is {given!r}", f"one of {expected}"))
        elif kind in ("value_error", "assertion_error"):
            message = str(item.get("ctx", {}).get("error", item["msg"]))
            problems.append(ConfigProblem(file, key or "(top level)", message))
        else:
            problems.append(ConfigProblem(file, key or "(top level)", f"is {given!r}: {item['msg'].lower()}"))
    return problems
