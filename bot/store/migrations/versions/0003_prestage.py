"""Prestaged restore points: the standby database each environment keeps ready (prestage = true).

- standbys: one row per environment, written when `snapshot` has restored a restore point into a
  standby database beside the live one, and removed when a rollback swaps it in or finds it unusable.
  oid and label are what a rollback checks before trusting it: the same database, still closed to
  connections, still carrying the comment that names its restore point.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "standbys",
        sa.Column("env", sa.String(64), primary_key=True),
        sa.Column("database", sa.String(128), nullable=False),
        sa.Column("restore_point_id", sa.Integer, nullable=False),
        sa.Column("dump_sha256", sa.String(64)),
        sa.Column("oid", sa.BigInteger, nullable=False),
        sa.Column("label", sa.Text, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("standbys")
