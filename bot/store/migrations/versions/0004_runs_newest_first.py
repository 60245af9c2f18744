"""The newest runs first, without sorting the table: an index on runs (created_at, id).

Status, App Home and every plan's "what else is running here" read ask for the latest runs; under a
burst of slash commands that was a full sort of `runs` per request, competing with Bolt's acks.
"""

from __future__ import annotations

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_index("ix_runs_created_at", "runs", ["created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_runs_created_at", table_name="runs")
