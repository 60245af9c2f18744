"""Restore drills and rehearsals: the readiness every plan shows (issue: rehearse before the night).

- readiness_checks: one row per drill or rehearsal. occurrence is unique, so a scheduled drill fired by
  two replicas runs once; scratch names what it created, written before creating it, so a check cut off
  by a crash is cleaned up later; details holds step times, row counts and check results.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "readiness_checks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("env", sa.String(64), nullable=False),
        sa.Column("occurrence", sa.String(200), unique=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("requested_by", sa.String(120), nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("restore_point_id", sa.Integer),
        sa.Column("dump_sha256", sa.String(64)),
        sa.Column("run_id", sa.String(40)),
        sa.Column("started_at", sa.String(40), nullable=False),
        sa.Column("finished_at", sa.String(40)),
        sa.Column("seconds", sa.Float),
        sa.Column("scratch", sa.Text, nullable=False),
        sa.Column("details", sa.Text, nullable=False),
        sa.Column("failure", sa.Text),
        sa.Column("host", sa.String(255)),
        sa.Column("pid", sa.Integer),
    )
    op.create_index("ix_readiness_checks_env_kind", "readiness_checks", ["env", "kind", "id"])


def downgrade() -> None:
    op.drop_index("ix_readiness_checks_env_kind", table_name="readiness_checks")
    op.drop_table("readiness_checks")
