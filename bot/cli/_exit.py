"""The command's exit codes: 0 success, 1 the rollback did not complete (or was cancelled), 2 bad input or refused,
3 the rollback is done but the health checks fail."""

from __future__ import annotations

EXIT_ERROR = 2
EXIT_FAILED = 1
EXIT_UNHEALTHY = 3
