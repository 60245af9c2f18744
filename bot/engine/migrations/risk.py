"""What the scan reports, and how a statement is shown."""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_STATEMENT = 300


@dataclass(frozen=True)
class MigrationRisk:
    file: str
    statement: str  # as written (comments removed, whitespace collapsed), trimmed to ~300 characters
    kind: str  # "DROP TABLE", "DROP COLUMN", "ALTER COLUMN TYPE", "TRUNCATE", "RENAME", …
    line: int  # 1-based line where the statement starts


def shorten(statement: str) -> str:
    text = re.sub(r"\s+", " ", statement).strip()
    return text if len(text) <= MAX_STATEMENT else text[: MAX_STATEMENT - 1] + "…"
