"""What each step leaves in the journal, typed: readers (the run's end, the checklist, undo-flags, the
state-of-things on failure, the Slack story) use these, never `details["…"]` by key.

A step's details are stored as JSON in the store (`steps.details`); `from_details` reads them back,
tolerating journals written by an earlier release (missing keys take their defaults, unknown keys are
ignored), so a run interrupted before an upgrade can still be resumed after it.
"""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field

from bot.backends.base import FlagState, HealthResult


class _Outcome(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    @classmethod
    def from_details(cls, details: dict[str, Any] | None) -> Self:
        return cls.model_validate(details or {})

    def to_details(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)  # what did not happen is not shown


class SafetyOutcome(_Outcome):
    passed: list[str] = Field(default_factory=list)
    failed: list[str] = Field(default_factory=list)


class DumpOutcome(_Outcome):
    """The pre-rollback dump: where it is kept, and how to check it is the one taken."""

    path: str | None = None  # local file, or the artifact location (s3://…)
    size_bytes: int = 0
    entries: int = 0
    sha256: str | None = None
    location: str | None = None
    kept_database: str | None = None  # prestaged: dumped from the database the swap kept aside


class CodeOutcome(_Outcome):
    strategy: str = ""
    old_head: str = ""
    new_head: str = ""
    backup_ref: str = ""


class DatabaseOutcome(_Outcome):
    """A dump restore (database / previous / source / shadow) or an RDS restore (instance / endpoint)."""

    database: str | None = None
    previous: str | None = None  # the live data kept aside
    source: str | None = None
    shadow: str | None = None  # journaled before the restore starts, so a crash can drop it
    standby: str | None = None  # prestaged: the standby that was swapped in
    # Journaled before the swap (base.DatabaseIdentities): after a crash, the live name carrying the
    # shadow's identity means the swap completed, and the database with the live's identity is the kept one.
    shadow_id: str | None = None
    live_id: str | None = None
    instance: str | None = None
    endpoint: str | None = None
    status: str | None = None
    cluster: str | None = None  # Aurora: the NEW cluster; `endpoint` is its endpoint, `instance` its instance
    reader_endpoint: str | None = None  # Aurora: the NEW cluster's reader endpoint


class FlagRow(_Outcome):
    key: str
    on: bool | None = None
    detail: str = ""

    @classmethod
    def of(cls, state: FlagState) -> FlagRow:
        return cls(key=state.key, on=state.on, detail=state.detail)

    def state(self) -> FlagState:
        return FlagState(key=self.key, on=self.on, detail=self.detail)


class FlagsOutcome(_Outcome):
    before: dict[str, list[FlagRow]] = Field(default_factory=dict)  # provider → states before any change
    after: dict[str, list[FlagRow]] = Field(default_factory=dict)
    turned_off: list[str] = Field(default_factory=list)


class HealthRow(_Outcome):
    url: str
    healthy: bool
    status: int | None = None
    expected: int = 200
    attempts: int = 0
    latency_ms: float | None = None
    error: str = ""

    @classmethod
    def of(cls, result: HealthResult) -> HealthRow:
        return cls(
            url=result.url,
            healthy=result.healthy,
            status=result.last_status,
            expected=result.expected_status,
            attempts=result.attempts,
            latency_ms=result.latency_ms,
            error=result.last_error,
        )

    def result(self) -> HealthResult:
        return HealthResult(
            url=self.url,
            healthy=self.healthy,
            attempts=self.attempts,
            last_status=self.status,
            last_error=self.error,
            latency_ms=self.latency_ms,
            expected_status=self.expected,
        )


class HealthOutcome(_Outcome):
    checks: list[HealthRow] = Field(default_factory=list)


class ChecklistOutcome(_Outcome):
    items: list[str] = Field(default_factory=list)
