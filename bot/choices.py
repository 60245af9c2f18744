"""The choices a rollback request may name: shared by the CLI's parser (which must import nothing heavy),
the Slack grammar and the engine's validation."""

from __future__ import annotations

CODE_CHOICES = ("revert", "force-push", "none")
DB_CHOICES = ("dump", "rds-snapshot", "rds-pitr", "none")
