"""A PostgreSQL restore killed with SIGKILL mid-way leaves nothing behind and nothing broken.

Every crash here is real: the restore runs in a child process (the "bot") that is SIGKILLed at the
chosen moment, with or without its pg_restore. Then, as the engine does on resume or abort, the test
calls discard_shadow() and repair_interrupted_swap(), and a fresh restore into the same shadow name.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from bot.backends.postgres import PostgresDatabase
from bot.errors import DatabaseError, RestoreFailed
from tests.crash_process import CrashingBot, alive
from tests.fixtures.databases import (
    PgDatabase,
    pg_connect,
    pg_databases,
    pg_url,
    postgres_database,
    postgres_role,
    secret_password,
)

TAG = "ab12cd34"
KEPT = re.compile(r"_before_rollback_\d{12}(_\d+)?$")
# An index whose build is slow only while the role's rbt.slow_ms says so: the seed and the second
# restore are quick, the crashing restore spends seconds inside pg_restore (CREATE INDEX).
SLOW_SEED = """
CREATE FUNCTION slow_key(i int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    PERFORM pg_sleep(coalesce(nullif(current_setting('rbt.slow_ms', true), ''), '0')::float / 1000);
    RETURN i;
END $$;
CREATE TABLE slow (id int PRIMARY KEY);
INSERT INTO slow SELECT generate_series(1, 2000);
CREATE INDEX slow_by_key ON slow (slow_key(id));
"""


@pytest.fixture
def owned() -> Iterator[tuple[PgDatabase, str, str]]:
    """A live database owned by a non-superuser role (as a real app's is): (database, role, password)."""
    password = secret_password()
    with postgres_role(password) as role, postgres_database(owner=role, password=password) as db:
        with pg_connect(db.name, user=role) as conn:
            conn.execute(SLOW_SEED)
        yield db, role, password


def slow_restores(role: str, slow_ms: int) -> None:
    with pg_connect("postgres") as conn:
        if slow_ms:
            conn.execute(
                sql.SQL("ALTER ROLE {} SET rbt.slow_ms = {}").format(sql.Identifier(role), sql.Literal(str(slow_ms)))
            )
        else:
            conn.execute(sql.SQL("ALTER ROLE {} RESET rbt.slow_ms").format(sql.Identifier(role)))


def shadows(db: PgDatabase) -> list[str]:
    return [n for n in pg_databases(db.name[:14]) if "_rb_shadow_" in n]


def allows_connections(name: str) -> bool | None:
    with pg_connect("postgres") as conn:
        row = conn.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", (name,)).fetchone()
        return None if row is None else bool(row[0])


def sessions_on(name: str, query_prefix: str = "") -> list[int]:
    with pg_connect("postgres") as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND starts_with(coalesce(query, ''), %s)",
            (name, query_prefix),
        ).fetchall()
        return [int(r[0]) for r in rows]


def wreck(db: PgDatabase) -> None:
    with db.connect() as conn:
        conn.execute("DELETE FROM orders WHERE id > 100")
        conn.execute("UPDATE customers SET name = 'renamed by the bad release'")


def restore_point_then_wreck(
    live: PgDatabase, tmp_path: Path
) -> tuple[PostgresDatabase, dict[str, list[tuple[Any, ...]]], Path, str]:
    """The good state dumped (the restore point), then the bad release's damage done to the live database.
    → (the backend, the good contents, the dump, the shadow name a restore of this run uses)."""
    backend = PostgresDatabase(live.url)
    before = live.contents()
    dump = backend.dump(tmp_path / "good.dump").path
    wreck(live)
    return backend, before, dump, backend.shadow_name(TAG)


def user_connects(db: PgDatabase, role: str, password: str) -> bool:
    try:
        with psycopg.connect(pg_url(db.name, user=role, password=password), connect_timeout=5) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.OperationalError as exc:
        assert "not currently accepting connections" in str(exc)
        return False


@pytest.mark.parametrize("tree", [True, False], ids=["bot-and-pg_restore-killed", "pg_restore-orphaned"])
def test_a_restore_killed_inside_pg_restore_leaves_a_shadow_that_discard_drops(
    owned: tuple[PgDatabase, str, str], tmp_path: Path, tree: bool
) -> None:
    live, role, password = owned
    backend, before, dump, shadow = restore_point_then_wreck(live, tmp_path)
    wrecked = live.contents()
    assert shadow == f"{live.name}_rb_shadow_{TAG}"

    slow_restores(role, 5)  # 2000 rows × 5 ms: about ten seconds inside CREATE INDEX
    try:
        bot = CrashingBot("postgres", live.url, dump, shadow, tmp_path / "bot.log")
        bot.wait_for(
            "pg_restore building the slow index", lambda: bool(sessions_on(shadow, "CREATE INDEX slow_by_key"))
        )
        survivors = bot.kill(tree=tree)
    finally:
        slow_restores(role, 0)

    assert shadows(live) == [shadow]  # the crash left the full copy of production behind …
    if not tree:  # … and, with only the bot killed, its pg_restore still writing into it
        assert survivors and sessions_on(shadow)
    assert allows_connections(live.name) is True and live.contents() == wrecked  # live untouched

    assert backend.repair_interrupted_swap() == []  # nothing of the live database to repair
    said = backend.discard_shadow(shadow)

    assert said is not None and said.startswith(f"dropped the leftover shadow database {shadow} (")
    assert shadows(live) == []
    assert backend.discard_shadow(shadow) is None  # idempotent
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in survivors) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in survivors if alive(pid)], "the orphaned pg_restore outlived its shadow"
    assert user_connects(live, role, password) and live.contents() == wrecked

    messages: list[str] = []
    result = backend.restore(dump, shadow=shadow, progress=messages.append)
    assert result.details["shadow"] == shadow and live.contents() == before
    assert shadows(live) == [] and allows_connections(live.name) is True
    assert not any("interrupted attempt" in m for m in messages)  # the shadow was gone already


def test_a_restore_into_a_leftover_shadow_drops_it_first_and_says_so(
    owned: tuple[PgDatabase, str, str], tmp_path: Path
) -> None:
    live, role, _ = owned
    backend, before, dump, shadow = restore_point_then_wreck(live, tmp_path)
    slow_restores(role, 5)
    try:
        bot = CrashingBot("postgres", live.url, dump, shadow, tmp_path / "bot.log")
        bot.wait_for(
            "pg_restore building the slow index", lambda: bool(sessions_on(shadow, "CREATE INDEX slow_by_key"))
        )
        survivors = bot.kill(tree=False)  # the orphan still writes into the shadow the retry will use
    finally:
        slow_restores(role, 0)
    assert survivors

    messages: list[str] = []
    result = backend.restore(dump, shadow=shadow, progress=messages.append)

    assert any(f"dropping the shadow database {shadow} left by an interrupted attempt" in m for m in messages)
    assert live.contents() == before and KEPT.search(result.previous)
    assert shadows(live) == []


def creating(shadow: str) -> list[int]:
    """Sessions whose running statement is the CREATE DATABASE of `shadow`."""
    with pg_connect("postgres") as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE state = 'active' AND starts_with(query, 'CREATE DATABASE')"
            " AND position(%s in query) > 0",
            (shadow,),
        ).fetchall()
        return [int(r[0]) for r in rows]


@pytest.mark.parametrize("then", ["discard", "retry"])
def test_a_crash_inside_create_database_is_settled_before_the_shadow_is_looked_for(
    owned: tuple[PgDatabase, str, str], tmp_path: Path, then: str
) -> None:
    """The server finishes a dead bot's CREATE DATABASE unless told otherwise, and the new database is
    invisible until then: cleanup and retry must end that statement before asking whether the shadow
    exists, or it appears after they looked (a shadow nobody drops; the retry's CREATE DATABASE fails)."""
    live, _role, _ = owned
    backend, before, dump, shadow = restore_point_then_wreck(live, tmp_path)
    # A lock on CREATE DATABASE's template (COMMENT takes one that conflicts) keeps the statement in flight.
    with pg_connect("postgres") as holder:
        holder.autocommit = False
        holder.execute("COMMENT ON DATABASE template0 IS 'held by a test'")
        bot = CrashingBot("postgres", live.url, dump, shadow, tmp_path / "bot.log")
        bot.wait_for("the bot's CREATE DATABASE, waiting", lambda: bool(creating(shadow)))
        bot.kill(tree=True)
        orphan = creating(shadow)
        assert orphan  # the bot is gone, its statement is not

        messages: list[str] = []
        if then == "discard":
            assert backend.discard_shadow(shadow) is None  # nothing was created, and now nothing will be
        holder.rollback()  # the template is free: an orphan still waiting would create the shadow now
        if then == "retry":
            result = backend.restore(dump, shadow=shadow, progress=messages.append)
            assert live.contents() == before and KEPT.search(result.previous)
    assert creating(shadow) == []
    time.sleep(0.5)  # an orphaned CREATE DATABASE, had it survived, would have committed by now
    assert shadows(live) == []


def hold_live_open_until_killed(live: PgDatabase) -> psycopg.Connection[Any]:
    """A superuser session on the live database: the app's role may not terminate it, so the switch
    waits (swap_timeout_s) with the live database already closed to new connections."""
    return live.connect()


def test_a_crash_after_closing_the_live_database_is_repaired(
    owned: tuple[PgDatabase, str, str], tmp_path: Path
) -> None:
    live, role, password = owned
    backend, before, dump, shadow = restore_point_then_wreck(live, tmp_path)
    wrecked = live.contents()

    blocker = hold_live_open_until_killed(live)
    try:
        bot = CrashingBot("postgres", live.url, dump, shadow, tmp_path / "bot.log", swap_timeout_s=120)
        bot.wait_for("connections to the live database disallowed", lambda: allows_connections(live.name) is False)
        bot.kill(tree=True)
    finally:
        blocker.close()

    # The outage the crash leaves: the live database refuses everyone.
    assert allows_connections(live.name) is False and not user_connects(live, role, password)
    assert shadows(live) == [shadow]

    said = backend.repair_interrupted_swap()

    assert len(said) == 1 and live.name in said[0] and "accepts connections again" in said[0]
    assert allows_connections(live.name) is True and user_connects(live, role, password)
    assert live.contents() == wrecked  # the switch never happened: the live data is the old one
    assert [n for n in pg_databases(live.name[:14]) if KEPT.search(n)] == []
    assert backend.repair_interrupted_swap() == []  # idempotent

    assert (backend.discard_shadow(shadow) or "").startswith(f"dropped the leftover shadow database {shadow}")
    backend.restore(dump, shadow=shadow)
    assert live.contents() == before and shadows(live) == []


def test_a_crash_inside_the_rename_transaction_is_rolled_back_and_repaired(
    owned: tuple[PgDatabase, str, str], tmp_path: Path
) -> None:
    live, role, password = owned
    backend, before, dump, shadow = restore_point_then_wreck(live, tmp_path)
    wrecked = live.contents()

    # The bot names the kept copy `<live>_before_rollback_<UTC minute>`. A transaction of ours that has
    # renamed scratch databases to those names (this minute and the next), uncommitted, is invisible
    # to the bot's check that the name is free, so its rename of live waits on the name's unique index
    # entry: the bot sits INSIDE its swap transaction, connections already disallowed.
    scratch = [f"{live.name}_scratch{i}" for i in (1, 2)]
    with pg_connect("postgres") as conn:
        for name in scratch:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    blocker = pg_connect("postgres")
    try:
        blocker.execute("BEGIN")
        now = datetime.now(UTC)
        for name, minute in zip(scratch, (now, now + timedelta(minutes=1)), strict=True):
            kept_name = f"{live.name}_before_rollback_{minute:%Y%m%d%H%M}"
            blocker.execute(
                sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(name), sql.Identifier(kept_name))
            )
        bot = CrashingBot("postgres", live.url, dump, shadow, tmp_path / "bot.log", swap_timeout_s=120)

        def rename_waits() -> bool:
            with pg_connect("postgres") as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE starts_with(query, 'ALTER DATABASE')"
                    " AND wait_event_type = 'Lock' AND state = 'active' AND pid <> %s",
                    (blocker.info.backend_pid,),
                ).fetchone()
                return bool(row and row[0])

        bot.wait_for("the rename of live waiting inside the swap transaction", rename_waits)
        assert allows_connections(live.name) is False
        bot.kill(tree=True)
    finally:
        blocker.execute("ROLLBACK")  # the dead bot's transaction may go on now: it can only roll back
        blocker.close()

    said = backend.repair_interrupted_swap()

    assert len(said) == 1 and "accepts connections again" in said[0]
    assert user_connects(live, role, password) and live.contents() == wrecked
    assert [n for n in pg_databases(live.name[:14]) if KEPT.search(n)] == []  # the renames were undone
    assert shadows(live) == [shadow]
    assert backend.discard_shadow(shadow) is not None
    backend.restore(dump, shadow=shadow)
    assert live.contents() == before and shadows(live) == []


def test_after_a_completed_switch_there_is_nothing_to_repair_or_discard(
    owned: tuple[PgDatabase, str, str], tmp_path: Path
) -> None:
    # A crash after the COMMIT leaves exactly what a successful restore leaves.
    live, _, _ = owned
    backend = PostgresDatabase(live.url)
    dump = backend.dump(tmp_path / "good.dump").path
    shadow = backend.shadow_name(TAG)
    result = backend.restore(dump, shadow=shadow)
    assert backend.repair_interrupted_swap() == []
    assert backend.discard_shadow(shadow) is None
    assert allows_connections(live.name) is True and allows_connections(result.previous) is True


def test_only_shadow_names_are_ever_dropped_or_restored_into(
    owned: tuple[PgDatabase, str, str], tmp_path: Path
) -> None:
    live, _, _ = owned
    backend = PostgresDatabase(live.url)
    dump = backend.dump(tmp_path / "good.dump").path
    kept = backend.restore(dump).previous
    names_before = pg_databases(live.name[:14])
    refused = [
        live.name,
        kept,
        f"{live.name}_rb_shadow_",
        f"{live.name}_rb_shadow_x;y",
        "postgres",
        "other_rb_shadow_ab12",
    ]
    for name in refused:
        with pytest.raises(DatabaseError) as refusal:
            backend.discard_shadow(name)
        assert "not a shadow name" in refusal.value.message
        with pytest.raises(RestoreFailed):
            backend.restore(dump, shadow=name)
    assert pg_databases(live.name[:14]) == names_before

    with pytest.raises(DatabaseError):
        backend.shadow_name("ab_12")  # letters and digits only
    long = PostgresDatabase(pg_url("x" * 63))
    assert len(long.shadow_name(TAG).encode()) <= 63 and long.shadow_name(TAG).endswith(f"_rb_shadow_{TAG}")
    assert long.shadow_name(TAG) != long.shadow_name("ab12cd35")
