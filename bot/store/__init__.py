"""The store: runs, steps, audit trail, locks, restore points, checklist, timers, outbox, drills, rehearsals.

SQLAlchemy Core over SQLite (the embedded default, one replica) or PostgreSQL (several replicas sharing
state). The public API is what this module exports; the modules beside it are private.
"""

from __future__ import annotations

from bot.store._store import Store, new_run_id
from bot.store.schema import (
    AuditEntry,
    ChecklistRecord,
    LockRecord,
    ReadinessCheck,
    RestorePoint,
    RunRecord,
    StandbyRecord,
    StepRecord,
    iso,
    now,
    parse_iso,
)

__all__ = [
    "AuditEntry",
    "ChecklistRecord",
    "LockRecord",
    "ReadinessCheck",
    "RestorePoint",
    "RunRecord",
    "StandbyRecord",
    "StepRecord",
    "Store",
    "iso",
    "new_run_id",
    "now",
    "parse_iso",
]
