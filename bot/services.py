"""Builds the store and the backends from settings, once, for the CLI and the Slack app alike."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from bot.backends.base import CodeRepo, Database, HealthChecker
from bot.backends.databases import open_database
from bot.backends.git import GitRepo
from bot.backends.health import HttpHealthChecker
from bot.config import LoadedConfig, load_config
from bot.errors import PreconditionFailed
from bot.redact import register_secret
from bot.store import Store


@dataclass
class Services:
    config: LoadedConfig
    store: Store
    health: HealthChecker = field(default_factory=HttpHealthChecker)
    _repos: dict[str, CodeRepo] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def repo(self, env: str) -> CodeRepo:
        settings = self.config.environment(env)
        with self._lock:
            if env not in self._repos:
                self._repos[env] = GitRepo(
                    repo=self.config.repo_location(settings),
                    remote=settings.remote,
                    branch=settings.branch,
                    work_dir=self.config.backup_dir / "repos",
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
        return open_database(engine=settings.engine, url=url)

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
    register_secret(loaded.store_url)
    return Services(config=loaded, store=Store(loaded.store_url))
