"""[environments.X.drill] and [environments.X.rehearsal]: how an environment proves its rollback before the night.

A drill restores the environment's latest restore point into a scratch database, counts its rows, runs
the configured SQL checks and drops it; `every` schedules it on the durable timers. A rehearsal runs the
environment's whole plan against stand-ins for production: each key below names a staging stand-in, and
a key left out means the safe default (a scratch branch or database made for the rehearsal and removed
after it; flags and health skipped, and said so).
"""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import Field, field_validator

from bot.config_types import ENV_VAR, Duration, Strict

_CHANNEL = re.compile(r"^[CG][A-Z0-9]{2,}$")
_BRANCH = re.compile(r"^(?!/)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/\-]+(?<![/.])$")


class DrillSettings(Strict):
    # How often a drill runs on its own (durable timers, once across replicas); unset: only when asked
    # (`rollback-bot drill ENV`).
    every: Duration | None = None
    # SQL run in the restored scratch database, each of which must return true (one row, one column).
    checks: list[str] = Field(default_factory=list)
    # Where a failed drill is announced at once, mentioning [contacts]; default: bot.stakeholder_channels.
    channel: str | None = None

    @field_validator("every")
    @classmethod
    def _not_too_often(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value < timedelta(minutes=5):
            raise ValueError('a drill restores a whole database: run it at most every 5 minutes (e.g. every = "24h")')
        return value

    @field_validator("checks")
    @classmethod
    def _checks(cls, values: list[str]) -> list[str]:
        for value in values:
            if not value.strip():
                raise ValueError("a check is a SQL query that returns true, not an empty string")
        return values

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and not _CHANNEL.match(value):
            raise ValueError(f"{value!r} is not a Slack channel ID (C…/G…)")
        return value


class RehearsalSettings(Strict):
    # Code: the remote (default: the environment's own) and a staging branch on it to rehearse on (kept:
    # it is staging's own). No branch: a scratch branch made at the deployed commit, deleted afterwards.
    remote: str | None = None
    branch: str | None = None
    # Database: the variable holding a staging database's URL (restored over, kept). Unset: a scratch
    # database restored from the same restore point, dropped afterwards.
    database_url_env: str | None = None
    # Flags: the flag vendor's staging environment (LaunchDarkly/Flagsmith/Unleash); unset: flags skipped.
    flags_environment: str | None = None
    # Health: staging URLs, checked as the environment's [[health]] entries are; unset: health skipped.
    health: list[str] = Field(default_factory=list)

    @field_validator("database_url_env")
    @classmethod
    def _env_var(cls, value: str | None) -> str | None:
        if value is not None and not ENV_VAR.match(value):
            raise ValueError("must be the NAME of an environment variable (e.g. STAGING_DATABASE_URL), never the URL")
        return value

    @field_validator("branch")
    @classmethod
    def _branch(cls, value: str | None) -> str | None:
        if value is not None and not _BRANCH.match(value):
            raise ValueError(f"{value!r} is not a valid branch name")
        return value

    @field_validator("health")
    @classmethod
    def _urls(cls, values: list[str]) -> list[str]:
        for value in values:
            if not value.startswith(("http://", "https://")):
                raise ValueError(f"{value!r} must be an http:// or https:// URL")
        return values
