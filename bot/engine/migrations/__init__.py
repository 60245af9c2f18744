"""The destructive-SQL scan: what the migrations between two commits did that a code rollback cannot undo.

A rollback plan shows these so the approver knows a database restore is needed, not just a revert.
SQL files are split into statements properly (comments, quoted strings and dollar quotes never split
or trigger anything); Alembic and Django migrations are read with `ast`; Rails migrations with regexes.
Only the forward direction is scanned (`upgrade`, `up`/`change`, `sql=`), never the reverse one.
"""

from __future__ import annotations

import re

from bot.backends.base import CodeRepo
from bot.engine.migrations.python import scan_python
from bot.engine.migrations.risk import MigrationRisk
from bot.engine.migrations.ruby import scan_ruby
from bot.engine.migrations.sql import scan_sql

__all__ = ["MigrationRisk", "is_migration_file", "scan_between", "scan_file", "scan_python", "scan_ruby", "scan_sql"]


_MIGRATION_PATHS = (
    re.compile(r"\.sql$", re.IGNORECASE),  # Prisma's migrations/*/migration.sql and any raw SQL
    re.compile(r"(?:^|/)(?:alembic|migrations)/versions/[^/]+\.py$"),
    re.compile(r"(?:^|/)migrations/\d{4}_[^/]*\.py$"),  # Django
    re.compile(r"(?:^|/)db/migrate/[^/]+\.rb$"),  # Rails
)


def is_migration_file(path: str) -> bool:
    normal = path.replace("\\", "/")
    return any(p.search(normal) for p in _MIGRATION_PATHS)


def scan_between(repo: CodeRepo, *, older: str, newer: str) -> list[MigrationRisk]:
    """Risks in the migration files that changed from `older` to `newer`, read as they are at `newer`."""
    risks: list[MigrationRisk] = []
    for path in sorted(repo.changed_files(older, newer)):
        if not is_migration_file(path):
            continue
        text = repo.read_file(newer, path)
        if text is not None:  # None: deleted by `newer`, nothing it could run
            risks.extend(scan_file(text, file=path))
    return risks


def scan_file(text: str, *, file: str) -> list[MigrationRisk]:
    """Dispatch on the file's kind: SQL, Python (Alembic, Django) or Ruby (Rails)."""
    lower = file.lower()
    if lower.endswith(".py"):
        return scan_python(text, file=file)
    if lower.endswith(".rb"):
        return scan_ruby(text, file=file)
    return scan_sql(text, file=file)
