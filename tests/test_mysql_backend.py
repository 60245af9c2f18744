"""The MySQL/MariaDB backend against a real server: mysqldump out, shadow restore, one atomic RENAME TABLE."""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from pathlib import Path

import pymysql
import pytest

from bot.backends.base import no_progress
from bot.backends.databases import open_database
from bot.backends.mysql import MySQLDatabase
from bot.errors import DatabaseError, DumpFailed, RestoreFailed, RollbackError
from tests.fixtures.databases import (
    MySQLTestDb,
    mysql_connect,
    mysql_database,
    mysql_databases,
    mysql_url,
    mysql_user,
    secret_password,
    unique,
)

KEPT = re.compile(r"_before_rollback_\d{12}(_\d+)?$")


@pytest.fixture
def live() -> Iterator[MySQLTestDb]:
    with mysql_database() as db:
        yield db


def leftovers(db: MySQLTestDb) -> list[str]:
    return [n for n in mysql_databases(db.name[:14]) if n != db.name]


def wreck(db: MySQLTestDb) -> None:
    with closing(db.connect()) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM orders WHERE id > 100")
        cur.execute("UPDATE customers SET name = 'renamed by the bad release'")
        cur.execute("DROP VIEW big_orders")
        cur.execute("DROP TRIGGER orders_audit")
        cur.execute("DROP FUNCTION order_count")
        cur.execute("CREATE TABLE new_feature (id INT)")
        cur.execute("INSERT INTO new_feature VALUES (1), (2)")


def objects(db: str) -> dict[str, list[str]]:
    with closing(mysql_connect(db)) as conn, conn.cursor() as cur:
        out: dict[str, list[str]] = {}
        for kind, query in {
            "views": "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s",
            "triggers": "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s",
            "routines": "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s",
            "events": "SELECT CONCAT(EVENT_NAME, ':', STATUS) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s",
        }.items():
            cur.execute(query, (db,))
            out[kind] = sorted(r[0] for r in cur.fetchall())
        return out


def test_dump_writes_a_complete_file_that_restores_to_equal_data(live: MySQLTestDb, tmp_path: Path) -> None:
    backend = MySQLDatabase(live.url)
    messages: list[str] = []
    info = backend.dump(tmp_path / "dumps" / "good.sql", progress=messages.append)

    assert info.verified and info.path.is_file() and info.size_bytes == info.path.stat().st_size
    assert info.entries == 4  # three tables and a view
    assert info.path.read_bytes().rstrip().splitlines()[-1].startswith(b"-- Dump completed")
    assert not list(tmp_path.glob("dumps/*.partial"))
    assert backend.verify(info.path).entries == 4
    assert any("verified" in m for m in messages)

    copy = unique()
    with closing(mysql_connect()) as conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{copy}`")
    try:
        with info.path.open("rb") as dump:
            subprocess.run(["mysql", "-h127.0.0.1", "-uroot", copy], stdin=dump, check=True, capture_output=True)
        assert MySQLTestDb(copy, "").contents() == live.contents()
    finally:
        with closing(mysql_connect()) as conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE `{copy}`")


def test_restore_brings_the_dump_back_under_the_same_name_and_keeps_the_previous_data(
    live: MySQLTestDb, tmp_path: Path
) -> None:
    backend = MySQLDatabase(live.url)
    before, before_objects = live.contents(), objects(live.name)
    dump = backend.dump(tmp_path / "good.sql").path
    wreck(live)
    wrecked, wrecked_objects = live.contents(), objects(live.name)

    messages: list[str] = []
    result = backend.restore(dump, progress=messages.append)

    assert result.database == live.name
    assert live.contents() == before
    assert objects(live.name) == before_objects  # view, trigger, function and event are the dump's
    with closing(live.connect()) as conn, conn.cursor() as cur:
        cur.execute("INSERT INTO orders (customer_id, total) VALUES (1, 500)")
        cur.execute("SELECT COUNT(*) FROM audit")  # the trigger fires in the restored database
        assert cur.fetchone() == (501,)
        cur.execute("SELECT order_count(), (SELECT COUNT(*) FROM big_orders)")
        assert cur.fetchone()[0] == 501
    assert KEPT.search(result.previous) and result.previous.startswith(live.name)
    assert MySQLTestDb(result.previous, "").contents() == wrecked
    kept_objects = objects(result.previous)
    assert kept_objects["views"] == wrecked_objects["views"] and kept_objects["triggers"] == []
    assert kept_objects["events"] == ["purge_audit:DISABLED"]  # kept, but not running against the copy
    assert leftovers(live) == [result.previous]
    assert any("switched" in m for m in messages)


@pytest.mark.parametrize("damage", ["truncated", "random", "empty", "broken SQL"])
def test_a_corrupt_dump_is_refused_and_the_live_database_is_untouched(
    live: MySQLTestDb, tmp_path: Path, damage: str
) -> None:
    backend = MySQLDatabase(live.url)
    data = backend.dump(tmp_path / "good.sql").path.read_bytes()
    middle = data.index(b"INSERT INTO `orders`")
    bad = tmp_path / "bad.sql"
    bad.write_bytes(
        {
            "truncated": data[: len(data) // 2],
            "random": bytes(range(256)) * 40,
            "empty": b"",
            # complete-looking (the trailer is there) but the server will reject it half-way
            "broken SQL": data[:middle] + b"THIS IS NOT SQL;\n" + data[middle:],
        }[damage]
    )
    wreck(live)
    wrecked, wrecked_objects = live.contents(), objects(live.name)

    if damage != "broken SQL":
        with pytest.raises(DumpFailed):
            backend.verify(bad)
    with pytest.raises(RestoreFailed) as failure:
        backend.restore(bad)

    assert "not touched" in failure.value.message and failure.value.hint
    assert live.contents() == wrecked and objects(live.name) == wrecked_objects
    assert leftovers(live) == []


def test_a_dump_that_names_its_database_is_refused_before_it_can_write_into_it(
    live: MySQLTestDb, tmp_path: Path
) -> None:
    dump = tmp_path / "all.sql"
    with dump.open("wb") as out:
        subprocess.run(["mysqldump", "-h127.0.0.1", "-uroot", "--databases", live.name], stdout=out, check=True)
    wreck(live)
    wrecked = live.contents()
    with pytest.raises(DumpFailed, match="--databases"):
        MySQLDatabase(live.url).verify(dump)
    with pytest.raises(RestoreFailed, match="not touched"):
        MySQLDatabase(live.url).restore(dump)
    assert live.contents() == wrecked and leftovers(live) == []


def test_a_client_connected_to_the_live_database_is_disconnected_and_the_swap_succeeds(
    live: MySQLTestDb, tmp_path: Path
) -> None:
    backend = MySQLDatabase(live.url)
    dump = backend.dump(tmp_path / "good.sql").path
    before = live.contents()
    wreck(live)
    app = live.connect()
    with app.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("SELECT COUNT(*) FROM customers")  # an open transaction: a metadata lock on the table

    result = backend.restore(dump)

    assert int(result.details["terminated_sessions"]) >= 1
    with pytest.raises(pymysql.err.OperationalError), app.cursor() as cur:
        cur.execute("SELECT 1")
    assert live.contents() == before


def test_with_a_password_protected_user_nothing_leaks(tmp_path: Path) -> None:
    password = secret_password()
    name = unique()
    with (
        mysql_user(password, prefix=name[:14]) as user,
        mysql_database(name=name, user=user, password=password) as live,
    ):
        backend = MySQLDatabase(live.url)
        assert password not in backend.describe() and user in backend.describe()
        messages: list[str] = []
        dump = backend.dump(tmp_path / "good.sql", progress=messages.append).path
        before = live.contents()
        wreck(live)
        result = backend.restore(dump, progress=messages.append)
        assert live.contents() == before and objects(live.name)["triggers"] == ["orders_audit"]

        errors: list[RollbackError] = []
        broken = tmp_path / "broken.sql"
        broken.write_bytes(b"garbage\n-- Dump completed\n")
        wrong = mysql_url(live.name, user=user, password=password + "x")
        for attempt in (
            lambda: backend.restore(broken, progress=messages.append),
            lambda: MySQLDatabase(wrong).check(),
            lambda: MySQLDatabase(wrong).dump(tmp_path / "x.sql"),
            lambda: MySQLDatabase(mysql_url("no_such_db", user=user, password=password)).dump(tmp_path / "x.sql"),
            lambda: MySQLDatabase(live.url.replace(":3306/", ":1/")).restore(dump),
        ):
            with pytest.raises(RollbackError) as caught:
                attempt()
            errors.append(caught.value)

    texts = messages + [str(e) for e in errors] + [repr(result)]
    assert not [t for t in texts if password in t or password[:12] in t]
    assert all(isinstance(e, DatabaseError) for e in errors)
    assert not list(Path("/tmp").glob("rollback-bot-*.cnf"))  # the option files are gone


def test_describe_and_the_factory() -> None:
    backend = open_database(engine="mysql", url="mysql://app:hunter2hunter2@db.internal:3307/shop")
    assert isinstance(backend, MySQLDatabase)
    assert backend.describe() == "mysql://app@db.internal:3307/shop"
    assert backend.required_tools() == ["mysqldump", "mysql"] and backend.engine == "mysql"
    assert isinstance(open_database(engine="mariadb", url="mariadb://a@h/db"), MySQLDatabase)
    for bad in ("postgresql://x@y/z", "mysql://app:pw@host:3306", "mysql://a:b@h/db?bogus=1", "mysql://h:notaport/db"):
        with pytest.raises(DatabaseError):
            MySQLDatabase(bad)


def test_the_restore_loads_while_the_pre_rollback_dump_is_taken_and_swaps_after(
    live: MySQLTestDb, tmp_path: Path
) -> None:
    """As a rollback does it (bot.engine.overlap): stage() beside dump(), then swap_in()."""
    backend = MySQLDatabase(live.url)
    good = backend.dump(tmp_path / "good.sql").path
    before = live.contents()
    wreck(live)
    wrecked = live.contents()

    with ThreadPoolExecutor(max_workers=2) as pool:
        pre_dump = pool.submit(backend.dump, tmp_path / "pre-rollback.sql")
        staged = pool.submit(backend.stage, good, shadow=backend.shadow_name("ab12cd34"))
        pre = pre_dump.result()
        loaded = staged.result()
    assert live.contents() == wrecked  # nothing live changed until the swap
    result = loaded.swap_in(progress=no_progress)
    assert live.contents() == before
    assert MySQLTestDb(result.previous, "").contents() == wrecked
    assert pre.verified and pre.entries == 4  # the new table was dumped too; the view was dropped


def test_a_stopped_load_drops_its_shadow_and_changes_nothing(live: MySQLTestDb, tmp_path: Path) -> None:
    backend = MySQLDatabase(live.url)
    good = backend.dump(tmp_path / "good.sql").path
    wreck(live)
    wrecked = live.contents()
    cancel = threading.Event()
    cancel.set()  # stopped before it could load: the dump it waited for failed
    with pytest.raises(RestoreFailed, match="stopped before the swap"):
        backend.stage(good, shadow=backend.shadow_name("ab12cd34"), cancel=cancel)
    assert live.contents() == wrecked
    assert leftovers(live) == []
