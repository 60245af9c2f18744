"""The command's exit codes: 0 success, 1 the rollback did not complete (or was cancelled), 2 bad input or refused."""

from __future__ import annotations

EXIT_ERROR = 2
EXIT_FAILED = 1
