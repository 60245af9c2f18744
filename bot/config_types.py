"""The building blocks every table of rollback.toml is made of: strict models, durations, variable names."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict

from bot.durations import parse_duration

ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError('a duration is a string like "90s", "15m" or "2h"')
    return parse_duration(value)


Duration = Annotated[timedelta, BeforeValidator(_duration)]


class Strict(BaseModel):
    """A table whose unknown keys are errors (a typo is named, never ignored) and whose values never change."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def env_var_name(value: str) -> str:
    if not ENV_VAR.match(value):
        raise ValueError("must be the NAME of an environment variable (e.g. DATABASE_URL), never the secret")
    return value
