"""The outbox: every message a run produces is a row in the store first, sent to Slack later.

Producers (the rollback, timers, the CLI with --channel) only write rows, so a slow or absent Slack
never slows a rollback. A sender thread in each serving replica drains it, and only the holder of the
"outbox-sender" lease sends, so messages go out once and in order (rows are sent in id order; the
first one Slack cannot take now holds back the rest).

- **Keyed messages** (a step's message, the plan header, the checklist) are posted once and then
  updated in place: the sender records where the post landed in `slack_messages`, keyed by
  `message_key`, and later rows for the same key become `chat.update`s.
- **Coalescing**: a new state for a keyed message whose previous state is still waiting replaces it in
  that row, so only the latest state is sent. A row changed while it was being sent stays pending
  (`mark_sent` compares the payload it sent), and its newest state goes out next.
- **Once**: `dedupe_key` makes enqueueing idempotent (a timer fired twice after a crash, two replicas
  announcing the same interrupted run), and the sender lease makes sending single.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from bot.redact import redact_data
from bot.store import Store, iso, now
from bot.store.schema import leases, outbox, slack_messages

SENDER_LEASE = "outbox-sender"


@dataclass(frozen=True)
class Notice:
    """What to say, where: rendered into Block Kit by the Slack side when it is sent."""

    channel: str
    kind: str  # see handlers/outbox_render.py
    payload: dict[str, Any]
    run_id: str | None = None
    message_key: str | None = None  # updated in place under this key
    thread_key: str | None = None  # a reply in the thread of this keyed message
    dedupe_key: str | None = None  # enqueued twice → stored once


@dataclass(frozen=True)
class OutboxRow:
    id: int
    notice: Notice
    raw_payload: str
    attempts: int
    created_at: datetime


@dataclass(frozen=True)
class SlackMessage:
    channel: str
    ts: str


class Outbox:
    def __init__(self, store: Store) -> None:
        self.store = store

    # --- producers -----------------------------------------------------------------------------------

    def enqueue(self, notice: Notice) -> int | None:
        """Store a notice; returns its row id, or None if its dedupe key was seen before."""
        payload = json.dumps(redact_data(notice.payload), sort_keys=True)
        try:
            with self.store.transaction() as conn:
                if notice.message_key is not None:
                    waiting = conn.execute(
                        sa.select(outbox.c.id)
                        .where(outbox.c.message_key == notice.message_key, outbox.c.state == "pending")
                        .order_by(outbox.c.id.desc())
                        .limit(1)
                    ).first()
                    if waiting is not None:  # coalesce: only the latest state of a message is worth sending
                        conn.execute(
                            outbox.update()
                            .where(outbox.c.id == waiting[0])
                            .values(kind=notice.kind, payload=payload, channel=notice.channel)
                        )
                        return int(waiting[0])
                result = conn.execute(
                    outbox.insert().values(
                        created_at=iso(),
                        run_id=notice.run_id,
                        channel=notice.channel,
                        message_key=notice.message_key,
                        thread_key=notice.thread_key,
                        kind=notice.kind,
                        payload=payload,
                        dedupe_key=notice.dedupe_key,
                        state="pending",
                        attempts=0,
                        next_attempt_at=iso(),
                    )
                )
                key = result.inserted_primary_key
                return int(key[0]) if key else None
        except IntegrityError:
            return None  # the dedupe key: this notice is already in the outbox

    # --- the sender ----------------------------------------------------------------------------------

    def hold_lease(self, holder: str, *, ttl: timedelta, name: str = SENDER_LEASE) -> bool:
        """Take or renew the sender lease; True while `holder` has it. A dead holder's lease runs out."""
        moment = now()
        with self.store.transaction() as conn:
            taken = conn.execute(
                leases.update()
                .where(leases.c.name == name, sa.or_(leases.c.holder == holder, leases.c.until < iso(moment)))
                .values(holder=holder, until=iso(moment + ttl))
            ).rowcount
        if taken:
            return True
        try:
            with self.store.transaction() as conn:
                conn.execute(leases.insert().values(name=name, holder=holder, until=iso(moment + ttl)))
        except IntegrityError:
            return False  # someone else holds it
        return True

    def release_lease(self, holder: str, *, name: str = SENDER_LEASE) -> None:
        with self.store.transaction() as conn:
            conn.execute(leases.delete().where(leases.c.name == name, leases.c.holder == holder))

    def due(self, *, limit: int = 50) -> list[OutboxRow]:
        """Pending rows in order, up to the first one that must wait (so order is kept)."""
        with self.store.transaction() as conn:
            rows = conn.execute(
                outbox.select().where(outbox.c.state == "pending").order_by(outbox.c.id).limit(limit)
            ).mappings()
            found = []
            for row in rows:
                if row["next_attempt_at"] and row["next_attempt_at"] > iso():
                    break
                found.append(_row(row))
        return found

    def pending_count(self) -> int:
        with self.store.transaction() as conn:
            return int(conn.execute(sa.select(sa.func.count()).where(outbox.c.state == "pending")).scalar_one())

    def mark_sent(self, row: OutboxRow) -> bool:
        """Sent; False if the row got a newer state meanwhile (it stays pending and goes out next)."""
        with self.store.transaction() as conn:
            return bool(
                conn.execute(
                    outbox.update()
                    .where(outbox.c.id == row.id, outbox.c.payload == row.raw_payload)
                    .values(state="sent", sent_at=iso(), attempts=outbox.c.attempts + 1, last_error=None)
                ).rowcount
            )

    def retry_later(self, row: OutboxRow, *, error: str, delay: timedelta) -> None:
        with self.store.transaction() as conn:
            conn.execute(
                outbox.update()
                .where(outbox.c.id == row.id)
                .values(attempts=outbox.c.attempts + 1, last_error=error[:500], next_attempt_at=iso(now() + delay))
            )

    def give_up(self, row: OutboxRow, *, error: str) -> None:
        """Slack will never take this one (unknown channel, invalid blocks): keep it, marked, for the record."""
        with self.store.transaction() as conn:
            conn.execute(
                outbox.update()
                .where(outbox.c.id == row.id)
                .values(state="dead", attempts=outbox.c.attempts + 1, last_error=error[:500])
            )

    def remember(self, key: str, message: SlackMessage) -> None:
        try:
            with self.store.transaction() as conn:
                conn.execute(
                    slack_messages.insert().values(key=key, channel=message.channel, ts=message.ts, posted_at=iso())
                )
        except IntegrityError:
            pass  # already known: the first post of a key is the message

    def message(self, key: str) -> SlackMessage | None:
        with self.store.transaction() as conn:
            row = conn.execute(slack_messages.select().where(slack_messages.c.key == key)).first()
        return SlackMessage(channel=row.channel, ts=row.ts) if row else None

    def waiting_before(self, row: OutboxRow, key: str) -> bool:
        """Is the message `key` still to be posted by an earlier row (so `row` must wait for it)?"""
        with self.store.transaction() as conn:
            found = conn.execute(
                sa.select(outbox.c.id).where(
                    outbox.c.message_key == key, outbox.c.state == "pending", outbox.c.id < row.id
                )
            ).first()
        return found is not None

    def rows(self, *, run_id: str | None = None) -> list[tuple[int, str, str, str | None]]:
        """(id, kind, state, last_error) for the record and for tests."""
        query = sa.select(outbox.c.id, outbox.c.kind, outbox.c.state, outbox.c.last_error).order_by(outbox.c.id)
        if run_id is not None:
            query = query.where(outbox.c.run_id == run_id)
        with self.store.transaction() as conn:
            return [(int(r[0]), r[1], r[2], r[3]) for r in conn.execute(query)]


def _row(row: Any) -> OutboxRow:
    return OutboxRow(
        id=int(row["id"]),
        notice=Notice(
            channel=row["channel"],
            kind=row["kind"],
            payload=json.loads(row["payload"]),
            run_id=row["run_id"],
            message_key=row["message_key"],
            thread_key=row["thread_key"],
            dedupe_key=row["dedupe_key"],
        ),
        raw_payload=row["payload"],
        attempts=int(row["attempts"]),
        created_at=datetime.fromisoformat(row["created_at"]),
    )
