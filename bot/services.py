"""Builds the store and the backends from settings, once, for the CLI and the Slack app alike.

Backends are imported when first used, not here: `rollback-bot status` never loads boto3, git or requests.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from bot.artifacts import ArtifactStore, open_artifact_store
from bot.backends.base import CodeRepo, Database, FlagProvider, HealthChecker, RdsRestorer
from bot.config import LoadedConfig, load_config
from bot.errors import PreconditionFailed
from bot.redact import register_secret
from bot.store import Store


@dataclass
class Services:
    config: LoadedConfig
    store: Store
    health_checker: HealthChecker | None = None  # built when a run first checks health
    _repos: dict[str, CodeRepo] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _artifacts: ArtifactStore | None = None

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
        url = os.environ.get(settings.url_env)
        if not url:
            raise PreconditionFailed(
                f"{settings.url_env} is not set: it must hold the {env} database URL",
                hint=f"export {settings.url_env}=… (the config names the variable, never the URL)",
            )
        register_secret(url)
        from bot.backends.databases import open_database

        return open_database(engine=settings.engine, url=url)

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
