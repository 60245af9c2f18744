"""Builds the store and the backends from settings, once, for the CLI and the Slack app alike.

Backends are imported when first used, not here: `rollback-bot status` never loads boto3, git or requests.

A stand-in (`StandIn`, `Services.with_stand_in`) is an environment derived from a configured one, for a
rehearsal: the engine runs on it exactly as on a configured environment, but its name can never be a
configured one, and its database URL is given, never read from the process environment.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from bot.artifacts import ArtifactStore, open_artifact_store
from bot.backends.base import CodeRepo, Database, FlagProvider, HealthChecker, RdsRestorer
from bot.config import EnvironmentSettings, LoadedConfig, load_config
from bot.errors import PreconditionFailed
from bot.redact import register_secret
from bot.store import Store

STAND_IN_MARK = "@"  # never in a configured environment's name (bot.config's name rule): "prod@rehearsal"


@dataclass(frozen=True)
class StandIn:
    """An environment derived from a configured one: its own name, its settings, and its database's URL.

    The URL is given here (a scratch or staging database), never read from os.environ: a stand-in can never
    fall back to the database of the environment it was derived from. None: it has no database.
    """

    name: str
    settings: EnvironmentSettings
    database_url: str | None = None


@dataclass
class Services:
    config: LoadedConfig
    store: Store
    health_checker: HealthChecker | None = None  # built when a run first checks health
    _repos: dict[str, CodeRepo] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _artifacts: ArtifactStore | None = None
    _stand_in_urls: dict[str, str | None] = field(default_factory=dict)  # stand-in name → its database URL
    _borrowed: bool = False  # a view made by with_stand_in: the store belongs to the services it came from

    def with_stand_in(self, stand_in: StandIn) -> Services:
        """These services, seeing `stand_in` as one more environment; the store and artifacts are shared.

        A view: the configured environments are unchanged (nobody else sees the stand-in), and closing
        it closes nothing.
        """
        if STAND_IN_MARK not in stand_in.name:
            raise ValueError(f"a stand-in's name holds {STAND_IN_MARK!r}, so it is never a configured environment")
        register_secret(stand_in.database_url)
        settings = self.config.settings
        environments = {**settings.environments, stand_in.name: stand_in.settings}
        config = replace(self.config, settings=settings.model_copy(update={"environments": environments}))
        return Services(
            config=config,
            store=self.store,
            health_checker=self.health_checker,
            _artifacts=self.artifacts(),
            _stand_in_urls={**self._stand_in_urls, stand_in.name: stand_in.database_url},
            _borrowed=True,
        )

    def artifacts(self) -> ArtifactStore:
        """Where dumps are kept ([bot] backup_dir: a folder or S3); built on first use, boto3 only then."""
        with self._lock:
            if self._artifacts is None:
                self._artifacts = open_artifact_store(self.config.artifact_location)
            return self._artifacts

    @property
    def health(self) -> HealthChecker:
        if self.health_checker is None:
            from bot.backends.health import HttpHealthChecker

            self.health_checker = HttpHealthChecker()
        return self.health_checker

    def repo(self, env: str) -> CodeRepo:
        settings = self.config.environment(env)
        with self._lock:
            if env not in self._repos:
                from bot.backends.git import GitRepo

                self._repos[env] = GitRepo(
                    repo=self.config.repo_location(settings),
                    remote=settings.remote,
                    branch=settings.branch,
                    work_dir=self.config.work_dir / "repos",
                )
            return self._repos[env]

    def database(self, env: str) -> Database | None:
        """The environment's database, or None when it has none; the URL is read from the environment now."""
        settings = self.config.environment(env).database
        if settings.engine == "none":
            return None
        if env in self._stand_in_urls:  # never the environment's own variable: see StandIn
            url = self._stand_in_urls[env]
            if not url:
                raise PreconditionFailed(
                    f"no database stands in for {env}", hint="the rehearsal prepares one before it runs"
                )
        else:
            url = os.environ.get(settings.url_env)
        if not url:
            raise PreconditionFailed(
                f"{settings.url_env} is not set: it must hold the {env} database URL",
                hint=f"export {settings.url_env}=… (the config names the variable, never the URL)",
            )
        register_secret(url)
        from bot.backends.databases import open_database

        return open_database(engine=settings.engine, url=url, compress=settings.dump_compression)

    def flag_providers(self, env: str) -> list[FlagProvider]:
        """One provider per [[flags]] entry; API keys are read from the environment now."""
        providers = []
        for index, flag in enumerate(self.config.environment(env).flags):
            api_key = os.environ.get(flag.api_key_env) if flag.api_key_env else None
            if flag.api_key_env and not api_key:
                raise PreconditionFailed(
                    f"{flag.api_key_env} is not set: flags[{index}] ({flag.provider}) needs its API key",
                    hint=f"export {flag.api_key_env}=… or run with --no-flags",
                )
            register_secret(api_key)
            from bot.backends.flags import open_flag_provider

            providers.append(open_flag_provider(flag, api_key=api_key, index=index))
        return providers

    def rds(self, env: str) -> RdsRestorer | None:
        settings = self.config.environment(env).rds
        if settings is None:
            return None
        from bot.backends.rds import RdsRestore

        return RdsRestore(region=settings.region, instance_class=settings.instance_class)

    def dump_override(self, env: str) -> Path | None:
        dump = self.config.environment(env).database.dump
        return self.config.resolve_path(dump) if dump else None

    def close(self) -> None:
        if not self._borrowed:
            self.store.close()


def build_services(config_file: str | None = None, *, config: LoadedConfig | None = None) -> Services:
    loaded = config or load_config(config_file)
    for env in loaded.settings.environments.values():
        register_secret(os.environ.get(env.database.url_env))
        for flag in env.flags:
            if flag.api_key_env:
                register_secret(os.environ.get(flag.api_key_env))
    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN"):
        register_secret(os.environ.get(name))
    if loaded.settings.bot.deploy_token_env:
        register_secret(os.environ.get(loaded.settings.bot.deploy_token_env))
    register_secret(loaded.store_url)
    return Services(config=loaded, store=Store(loaded.store_url))
