"""Release 0.1's store, as it was made by `metadata.create_all` before migrations existed.

The baseline: a store made by release 0.1 has exactly these tables and is stamped at this revision
rather than upgraded through it. Written out by hand, column by column, so later changes to schema.py
can never change what this revision means.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("env", sa.String(64), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("requested_by", sa.String(120), nullable=False),
        sa.Column("approved_by", sa.String(120)),
        sa.Column("plan", sa.Text, nullable=False),
        sa.Column("plan_hash", sa.String(64), nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("started_at", sa.String(40)),
        sa.Column("finished_at", sa.String(40)),
        sa.Column("heartbeat_at", sa.String(40)),
        sa.Column("current_step", sa.String(40)),
        sa.Column("error", sa.Text),
        sa.Column("meta", sa.Text, nullable=False),
    )
    op.create_index("ix_runs_env", "runs", ["env"])

    op.create_table(
        "steps",
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(40), primary_key=True),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("started_at", sa.String(40)),
        sa.Column("finished_at", sa.String(40)),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
    )

    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("run_id", sa.String(40)),
        sa.Column("env", sa.String(64)),
        sa.Column("actor", sa.String(120), nullable=False),
        sa.Column("action", sa.String(60), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_run_id", "audit", ["run_id"])

    op.create_table(
        "locks",
        sa.Column("env", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.String(40), nullable=False),
        sa.Column("holder", sa.String(120), nullable=False),
        sa.Column("acquired_at", sa.String(40), nullable=False),
    )

    op.create_table(
        "restore_points",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("env", sa.String(64), nullable=False),
        sa.Column("commit_sha", sa.String(64), nullable=False),
        sa.Column("commit_subject", sa.Text, nullable=False),
        sa.Column("dump_path", sa.Text),
        sa.Column("dump_size", sa.BigInteger),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("created_by", sa.String(120), nullable=False),
    )
    op.create_index("ix_restore_points_env", "restore_points", ["env"])

    op.create_table(
        "checklist",
        sa.Column("run_id", sa.String(40), primary_key=True),
        sa.Column("item_id", sa.String(60), primary_key=True),
        sa.Column("phase", sa.String(20), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("done_by", sa.String(120)),
        sa.Column("done_at", sa.String(40)),
    )

    op.create_table(
        "once_keys",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("at", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    # Dropping the baseline empties the store: only for tests and for starting over on purpose.
    for table in ("once_keys", "checklist", "restore_points", "locks", "audit", "steps", "runs"):
        op.drop_table(table)
