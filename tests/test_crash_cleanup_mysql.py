"""A MySQL/MariaDB restore killed with SIGKILL mid-way leaves nothing behind and nothing broken.

The restore runs in a child process (the "bot") that is SIGKILLed at the chosen moment: while the
`mysql` client loads the shadow, or while the switch's RENAME TABLE waits for a metadata lock, after
the live views and triggers were dropped. Then, as the engine does on resume or abort, the test calls
repair_interrupted_swap() and discard_shadow(), and a fresh restore into the same shadow name.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from bot.backends import mysql_objects as objs
from bot.backends.mysql import MySQLDatabase
from bot.errors import DatabaseError, RestoreFailed
from tests.crash_process import CrashingBot, alive
from tests.fixtures.databases import MySQLTestDb, mysql_connect, mysql_database, mysql_databases, mysql_url
from tests.fixtures.waiting import wait_for

TAG = "ab12cd34"


@pytest.fixture
def live() -> Iterator[MySQLTestDb]:
    with mysql_database() as db:
        yield db


def query(sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with closing(mysql_connect()) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return list(cur.fetchall())


def objects(db: str) -> dict[str, list[str]]:
    """The schema objects that do not move with RENAME TABLE, by kind."""
    return {
        "views": [
            r[0] for r in query("SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s", (db,))
        ],
        "triggers": [
            r[0] for r in query("SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s", (db,))
        ],
        "routines": [
            r[0] for r in query("SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s", (db,))
        ],
        "events": [
            f"{r[0]}:{r[1]}"
            for r in query("SELECT EVENT_NAME, STATUS FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s", (db,))
        ],
    }


def wreck(db: MySQLTestDb) -> None:
    with closing(db.connect()) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM orders WHERE id > 100")
        cur.execute("UPDATE customers SET name = 'renamed by the bad release'")
        cur.execute("DROP VIEW big_orders")
        cur.execute("CREATE VIEW new_feature AS SELECT 1 AS one")


def others(db: MySQLTestDb) -> list[str]:
    return [n for n in mysql_databases(db.name[:14]) if n != db.name]


def sessions(where: str, args: tuple[Any, ...]) -> list[int]:
    return [int(r[0]) for r in query(f"SELECT ID FROM information_schema.PROCESSLIST WHERE {where}", args)]


def slow_copy(dump: Path, dest: Path) -> Path:
    """The same dump with a 60-second pause after the first table's data: the crash happens inside it."""
    text = dump.read_bytes()
    cut = text.index(b"UNLOCK TABLES;\n") + len(b"UNLOCK TABLES;\n")
    dest.write_bytes(text[:cut] + b"DO SLEEP(60);\n" + text[cut:])
    return dest


@pytest.mark.parametrize("tree", [True, False], ids=["bot-and-mysql-killed", "mysql-client-orphaned"])
def test_a_restore_killed_while_loading_leaves_a_shadow_that_discard_drops(
    live: MySQLTestDb, tmp_path: Path, tree: bool
) -> None:
    backend = MySQLDatabase(live.url)
    before, objects_before = live.contents(), objects(live.name)
    dump = backend.dump(tmp_path / "good.sql").path
    wreck(live)
    wrecked, objects_wrecked = live.contents(), objects(live.name)
    shadow = backend.shadow_name(TAG)
    assert shadow == f"{live.name}_rb_shadow_{TAG}"

    bot = CrashingBot("mysql", live.url, slow_copy(dump, tmp_path / "slow.sql"), shadow, tmp_path / "bot.log")
    bot.wait_for(
        "the client loading the shadow", lambda: bool(sessions("DB = %s AND INFO LIKE 'DO SLEEP%%'", (shadow,)))
    )
    survivors = bot.kill(tree=tree)

    assert others(live) == [shadow]
    if not tree:  # the orphaned client still holds its session on the shadow
        assert survivors and sessions("DB = %s", (shadow,))
    assert live.contents() == wrecked and objects(live.name) == objects_wrecked

    assert backend.repair_interrupted_swap() == []
    said = backend.discard_shadow(shadow)

    assert said is not None and said.startswith(f"dropped the leftover shadow database {shadow} (")
    assert others(live) == [] and backend.discard_shadow(shadow) is None
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in survivors) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in survivors if alive(pid)], "the orphaned mysql client outlived its shadow"
    assert live.contents() == wrecked

    result = backend.restore(dump, shadow=shadow)
    assert live.contents() == before and objects(live.name) == objects_before
    assert others(live) == [result.previous]


@pytest.mark.parametrize("then", ["discard", "retry"])
def test_a_crash_inside_create_database_is_settled_before_the_shadow_is_looked_for(
    live: MySQLTestDb, tmp_path: Path, then: str
) -> None:
    """A backup's global read lock holds off every DDL; the server keeps a dead bot's CREATE DATABASE
    waiting and runs it once the lock is free: cleanup and retry must end it before asking whether the
    shadow exists, or it appears after they looked (a shadow nobody drops; the retry's CREATE fails)."""
    backend = MySQLDatabase(live.url)
    before = live.contents()
    dump = backend.dump(tmp_path / "good.sql").path
    wreck(live)
    shadow = backend.shadow_name(TAG)
    creating = f"CREATE DATABASE {objs.q(shadow)}%"
    with closing(mysql_connect()) as backup, backup.cursor() as lock:
        lock.execute("FLUSH TABLES WITH READ LOCK")  # what mysqldump --lock-all-tables or a backup tool takes
        bot = CrashingBot("mysql", live.url, dump, shadow, tmp_path / "bot.log")
        bot.wait_for("the bot's CREATE DATABASE, waiting", lambda: bool(sessions("INFO LIKE %s", (creating,))))
        bot.kill(tree=True)
        orphans = sessions("INFO LIKE %s", (creating,))
        assert orphans  # the bot is gone, its statement is not

        if then == "discard":
            assert backend.discard_shadow(shadow) is None  # nothing was created, and now nothing will be
            lock.execute("UNLOCK TABLES")  # an orphan still waiting would create the shadow now
        else:  # the retry looks while the lock is held, then its own CREATE DATABASE waits in turn
            with ThreadPoolExecutor(max_workers=1) as pool:
                retried = pool.submit(backend.restore, dump, shadow=shadow)
                try:
                    wait_for(
                        "the retry's own CREATE DATABASE, waiting",
                        lambda: bool(set(sessions("INFO LIKE %s", (creating,))) - set(orphans)) or retried.done(),
                    )
                finally:
                    lock.execute("UNLOCK TABLES")  # never leave the retry (and the server) waiting on it
                result = retried.result(timeout=60)
            assert live.contents() == before and others(live) == [result.previous]
    assert sessions("INFO LIKE %s", (creating,)) == []
    time.sleep(0.5)  # an orphaned CREATE DATABASE, had it survived, would have run by now
    assert shadow not in others(live)


def crash_while_the_rename_waits(live: MySQLTestDb, tmp_path: Path) -> tuple[MySQLDatabase, Path, str, Any]:
    """Kill the bot while its RENAME TABLE waits for a metadata lock held by a transaction of ours.

    Returns the still-open blocking connection: the dead bot's RENAME goes on waiting on the server.
    """
    backend = MySQLDatabase(live.url)
    dump = backend.dump(tmp_path / "good.sql").path
    wreck(live)
    shadow = backend.shadow_name(TAG)
    blocker = mysql_connect()  # no current database, so the switch does not disconnect it
    blocker.autocommit(False)
    with blocker.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute(f"SELECT COUNT(*) FROM {objs.q(live.name)}.customers")
    bot = CrashingBot("mysql", live.url, dump, shadow, tmp_path / "bot.log", swap_timeout_s=120)
    bot.wait_for(
        "the RENAME waiting for its metadata lock",
        lambda: bool(sessions("INFO LIKE 'RENAME TABLE%%' AND STATE LIKE '%%metadata lock%%'", ())),
    )
    bot.kill(tree=True)
    return backend, dump, shadow, blocker


def test_a_crash_before_the_rename_is_undone_from_the_journal(live: MySQLTestDb, tmp_path: Path) -> None:
    before = live.contents()
    backend, dump, shadow, blocker = crash_while_the_rename_waits(live, tmp_path)
    try:
        wrecked_objects = objects(live.name)  # read after the crash: the views and triggers are gone …
        assert wrecked_objects["views"] == [] and wrecked_objects["triggers"] == []
        assert wrecked_objects["routines"] == ["order_count"]
        kept = [n for n in others(live) if "_before_rollback_" in n]
        assert len(kept) == 1 and objs.JOURNAL in [t for (t,) in query(f"SHOW TABLES FROM {objs.q(kept[0])}")]

        said = backend.repair_interrupted_swap()  # the dead bot's RENAME still waits: repair stops it first
    finally:
        blocker.rollback()
        blocker.close()

    assert len(said) == 1 and said[0].startswith(f"put {live.name} back as it was") and kept[0] in said[0]
    assert objects(live.name) == {
        "views": ["new_feature"],  # as the bad release left them: this is the live data, untouched
        "triggers": ["orders_audit"],
        "routines": ["order_count"],
        "events": ["purge_audit:ENABLED"],
    }
    assert live.contents()["customers"][0][1] == "renamed by the bad release"  # the old (live) data, in place
    assert others(live) == [shadow]  # kept (journal only) dropped; the shadow is discard_shadow's
    assert not sessions("INFO LIKE 'RENAME TABLE%%'", ())
    assert backend.repair_interrupted_swap() == []

    assert backend.discard_shadow(shadow) is not None
    result = backend.restore(dump, shadow=shadow)
    assert live.contents() == before and others(live) == [result.previous]
    assert objects(live.name)["views"] == ["big_orders"]


def test_a_crash_after_the_rename_is_finished_from_the_journal(live: MySQLTestDb, tmp_path: Path) -> None:
    before, objects_before = live.contents(), objects(live.name)
    backend, _, shadow, blocker = crash_while_the_rename_waits(live, tmp_path)
    wrecked_rows = len(query(f"SELECT * FROM {objs.q(live.name)}.orders"))
    blocker.commit()  # the dead bot's RENAME gets its lock and runs: the server has not noticed its client died
    blocker.close()
    deadline = time.monotonic() + 30
    while sessions("INFO LIKE 'RENAME TABLE%%'", ()) and time.monotonic() < deadline:
        time.sleep(0.05)
    kept = next(n for n in others(live) if "_before_rollback_" in n)
    assert live.contents() == before  # the tables moved …
    assert objects(live.name)["views"] == [] and objects(live.name)["triggers"] == []  # … their objects did not

    said = backend.repair_interrupted_swap()

    assert said and said[0].startswith("finished a switch interrupted after its RENAME") and kept in said[0]
    assert objects(live.name) == objects_before and live.contents() == before
    assert len(query(f"SELECT * FROM {objs.q(kept)}.orders")) == wrecked_rows
    assert objects(kept) == {
        "views": ["new_feature"],
        "triggers": ["orders_audit"],
        "routines": ["order_count"],
        "events": ["purge_audit:DISABLED"],  # the old events must not run against the kept copy
    }
    assert objs.JOURNAL not in [t for (t,) in query(f"SHOW TABLES FROM {objs.q(kept)}")]
    assert backend.repair_interrupted_swap() == []

    assert (backend.discard_shadow(shadow) or "").startswith(f"dropped the leftover shadow database {shadow}")
    assert others(live) == [kept]


def test_an_empty_kept_database_left_by_a_crash_is_dropped_and_real_kept_copies_are_not(
    live: MySQLTestDb, tmp_path: Path
) -> None:
    backend = MySQLDatabase(live.url)
    dump = backend.dump(tmp_path / "good.sql").path
    real_kept = backend.restore(dump).previous
    empty = f"{live.name}_before_rollback_209901010000"  # the crash came between CREATE DATABASE and the journal
    query(f"CREATE DATABASE {objs.q(empty)}")

    said = backend.repair_interrupted_swap()

    assert said == [f"dropped {empty}, an empty database an interrupted switch had created (it never held data)"]
    assert others(live) == [real_kept]


def test_only_shadow_names_are_ever_dropped_or_restored_into(live: MySQLTestDb, tmp_path: Path) -> None:
    backend = MySQLDatabase(live.url)
    dump = backend.dump(tmp_path / "good.sql").path
    kept = backend.restore(dump).previous
    for name in [live.name, kept, f"{live.name}_rb_shadow_", f"{live.name}_rb_shadow_a`b", "mysql", "x_rb_shadow_ab12"]:
        with pytest.raises(DatabaseError) as refusal:
            backend.discard_shadow(name)
        assert "not a shadow name" in refusal.value.message
        with pytest.raises(RestoreFailed):
            backend.restore(dump, shadow=name)
    assert others(live) == [kept] and live.contents()
    long = MySQLDatabase(mysql_url("y" * 64))
    assert len(long.shadow_name(TAG).encode()) <= 64 and long.shadow_name(TAG).endswith(f"_rb_shadow_{TAG}")
