"""One error tree for everything the bot can refuse or fail at.

Every error carries a sentence for a human (`message`) and, where there is one, what to do next
(`hint`). The CLI and the Slack handlers each turn these into words in exactly one place; nothing
else formats an exception for a user, and no stack trace ever reaches one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class RollbackError(Exception):
    """Base of every error the bot expects and explains."""

    def __init__(self, message: str, *, hint: str = "", details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or {}  # what was found (e.g. the health table), for reporters

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong in a configuration file: where, what, and what would be right."""

    file: str
    key: str
    problem: str
    expected: str = ""

    def __str__(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        text = f"{where}: {self.problem}"
        return f"{text} (expected {self.expected})" if self.expected else text


class ConfigError(RollbackError):
    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        count = len(problems)
        summary = "; ".join(str(p) for p in problems[:3]) + ("; …" if count > 3 else "")
        super().__init__(
            f"configuration has {count} problem{'s' if count != 1 else ''}: {summary}",
            hint="run `rollback-bot check-config` to see every problem",
        )


class UnknownEnvironment(RollbackError):
    pass


class BadRequest(RollbackError):
    """The user asked for something malformed (unknown option, bad SHA, …)."""


class PreconditionFailed(RollbackError):
    """A safety check failed before anything was changed."""


class ToolMissing(PreconditionFailed):
    pass


class GitError(RollbackError):
    pass


class PushRejected(GitError):
    """The remote refused a push (hook, protection, lease): the remote is as it was."""


class DatabaseError(RollbackError):
    pass


class DumpFailed(DatabaseError):
    pass


class RestoreFailed(DatabaseError):
    """A restore did not complete; the message says what state the live database is in."""


class StandbyUnusable(DatabaseError):
    """The prestaged standby is missing or may have changed: the restore takes the normal path."""


class HealthCheckFailed(RollbackError):
    pass


class NotSupported(RollbackError):
    """A configured action this build cannot perform yet."""


class LockHeld(RollbackError):
    """Another rollback of the same environment holds the lock."""

    def __init__(self, env: str, *, run_id: str, holder: str, since: str) -> None:
        super().__init__(
            f"a rollback of {env} is already in progress: run {run_id}, started by {holder} at {since}",
            hint=f"wait for it, or see `rollback-bot status`; abort it with `rollback-bot abort {run_id}`",
        )
        self.env = env
        self.run_id = run_id
        self.holder = holder


class RunNotFound(RollbackError):
    pass


class InvalidState(RollbackError):
    """The run is not in a state that allows this (e.g. resuming a finished run)."""


class NotAllowed(RollbackError):
    """The person asking may not do this (not an approver, own request with two_person, …)."""


class PlanExpired(RollbackError):
    pass


class PlanChanged(RollbackError):
    """The plan an approval was given for is not the plan that would run now."""


class FlagError(RollbackError):
    """A flag vendor refused or could not be reached; says which flags are in which state."""


class RdsError(RollbackError):
    """AWS refused or failed an RDS call; says what exists now (e.g. a half-created instance)."""


class ArtifactError(RollbackError):
    """A dump could not be stored in, or read back from, the artifact store (folder or S3)."""


class ArtifactCorrupt(ArtifactError):
    """A stored dump is not the one that was recorded: its sha256 (or size) differs. Nothing was used."""

    def __init__(
        self, location: str, *, expected_sha256: str, actual_sha256: str, expected_size: int | None, size: int
    ) -> None:
        sizes = f"; size {size} bytes, recorded {expected_size}" if expected_size not in (None, size) else ""
        super().__init__(
            f"{location} is corrupt: sha256 {actual_sha256[:12]}… does not match the recorded "
            f"{expected_sha256[:12]}…{sizes}",
            hint="it was refused before anything changed; restore from another restore point or take a new one",
        )
        self.location = location
        self.expected_sha256 = expected_sha256
        self.actual_sha256 = actual_sha256
