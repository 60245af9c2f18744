"""The bot as a service shared by replicas: who runs a run, checked dumps, durable timers and an outbox.

- runs.pid / host / boot_id: the process executing a run, so a dead one is seen as interrupted at once;
- restore_points.dump_sha256: checked before every restore from that point (NULL for older points);
- timers: everything due later (plan expiry, updates, reminders, drills), never only in memory;
- outbox: every message stored first and sent by one replica; dedupe_key is unique so a notice
  enqueued twice is stored once;
- slack_messages: where a keyed message landed, for later updates and thread replies;
- leases: one holder at a time across replicas (the outbox sender).

Every added column is nullable, so old rows stay valid without a default. SQLite alters tables through
batch_alter_table (it adds columns in place, and recreates the table to drop them on downgrade).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("pid", sa.Integer))
        batch.add_column(sa.Column("host", sa.String(255)))
        batch.add_column(sa.Column("boot_id", sa.String(64)))
    with op.batch_alter_table("restore_points") as batch:
        batch.add_column(sa.Column("dump_sha256", sa.String(64)))

    op.create_table(
        "timers",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("run_id", sa.String(40)),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("due_at", sa.String(40), nullable=False),
        sa.Column("every_s", sa.Float),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("claimed_by", sa.String(120)),
        sa.Column("claimed_until", sa.String(40)),
        sa.Column("fired", sa.Integer, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("done_at", sa.String(40)),
    )
    op.create_index("ix_timers_run_id", "timers", ["run_id"])
    op.create_index("ix_timers_due_at", "timers", ["due_at"])

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("run_id", sa.String(40)),
        sa.Column("channel", sa.String(40), nullable=False),
        sa.Column("message_key", sa.String(200)),
        sa.Column("thread_key", sa.String(200)),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("dedupe_key", sa.String(200)),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.String(40)),
        sa.Column("sent_at", sa.String(40)),
        sa.Column("last_error", sa.Text),
        # The name PostgreSQL gives schema.py's unnamed `unique=True`, so both ways make the same database.
        sa.UniqueConstraint("dedupe_key", name="outbox_dedupe_key_key"),
    )
    op.create_index("ix_outbox_run_id", "outbox", ["run_id"])
    op.create_index("ix_outbox_state", "outbox", ["state"])

    op.create_table(
        "slack_messages",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("channel", sa.String(40), nullable=False),
        sa.Column("ts", sa.String(40), nullable=False),
        sa.Column("posted_at", sa.String(40), nullable=False),
    )

    op.create_table(
        "leases",
        sa.Column("name", sa.String(60), primary_key=True),
        sa.Column("holder", sa.String(120), nullable=False),
        sa.Column("until", sa.String(40), nullable=False),
    )


def downgrade() -> None:
    # Back to release 0.1's tables; what only the service knew (timers, outbox, leases, pids) is dropped.
    for table in ("leases", "slack_messages", "outbox", "timers"):
        op.drop_table(table)  # their indexes go with them
    with op.batch_alter_table("restore_points") as batch:
        batch.drop_column("dump_sha256")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("boot_id")
        batch.drop_column("host")
        batch.drop_column("pid")
