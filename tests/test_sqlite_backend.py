"""The SQLite backend on real files: backup-API dumps, restores that open connections see, nothing lost."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from bot.backends.databases import open_database
from bot.backends.sqlite import SQLiteDatabase
from bot.errors import DatabaseError, DumpFailed, RestoreFailed
from tests.fixtures.databases import sqlite_contents, sqlite_database

KEPT = re.compile(r"\.before_rollback_\d{12}(_\d+)?$")


def wreck(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("DELETE FROM orders WHERE id > 100")
        conn.execute("UPDATE customers SET name = 'renamed by the bad release'")
        conn.execute("DROP VIEW big_orders")
        conn.execute("CREATE TABLE new_feature (id INTEGER)")
        conn.execute("INSERT INTO new_feature VALUES (1), (2)")
        conn.commit()


def files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.is_file())


def test_dump_writes_a_verified_self_contained_copy(tmp_path: Path) -> None:
    live = tmp_path / "app.db"
    backend = SQLiteDatabase(sqlite_database(live, wal=True))
    messages: list[str] = []
    info = backend.dump(tmp_path / "dumps" / "good.db", progress=messages.append)

    assert info.verified and info.entries == 4  # two tables, an index and a view (not sqlite_sequence)
    assert info.size_bytes == info.path.stat().st_size > 0
    assert files(tmp_path / "dumps") == ["good.db"]  # no .partial, no -wal beside the dump
    assert sqlite_contents(info.path) == sqlite_contents(live)
    assert backend.verify(info.path).entries == info.entries
    assert any("verified" in m for m in messages)


@pytest.mark.parametrize("wal", [False, True], ids=["rollback-journal", "wal"])
def test_restore_brings_the_dump_back_and_an_open_connection_sees_it(tmp_path: Path, wal: bool) -> None:
    live = tmp_path / "app.db"
    backend = SQLiteDatabase(sqlite_database(live, wal=wal))
    before = sqlite_contents(live)
    dump = backend.dump(tmp_path / "dumps" / "good.db").path
    app = sqlite3.connect(live)  # the application's long-lived connection
    app.execute("SELECT count(*) FROM orders").fetchone()
    wreck(live)
    wrecked = sqlite_contents(live)

    result = backend.restore(dump)

    assert result.database == str(live) and KEPT.search(result.previous)
    assert sqlite_contents(live) == before
    assert app.execute("SELECT count(*) FROM orders").fetchone() == (2000,)  # no reconnect needed
    app.execute("INSERT INTO customers (name) VALUES ('after the rollback')")  # and it can still write
    app.commit()
    app.close()
    assert sqlite_contents(Path(result.previous)) == wrecked
    assert not [f for f in files(tmp_path) if "rb_restore" in f or f.endswith(".partial")]
    with closing(sqlite3.connect(live)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.parametrize("damage", ["truncated", "random", "empty", "not sqlite"])
def test_a_corrupt_dump_is_refused_and_the_live_database_is_untouched(tmp_path: Path, damage: str) -> None:
    live = tmp_path / "app.db"
    backend = SQLiteDatabase(sqlite_database(live, rows=20000))
    data = backend.dump(tmp_path / "dumps" / "good.db").path.read_bytes()
    bad = tmp_path / "dumps" / "bad.db"
    bad.write_bytes(
        {
            "truncated": data[: len(data) // 2],
            "random": data[:100] + bytes(range(256)) * 100,
            "empty": b"",
            "not sqlite": b"-- plain SQL\nDROP TABLE customers;\n",
        }[damage]
    )
    wreck(live)
    wrecked = sqlite_contents(live)
    before_files = files(tmp_path)

    with pytest.raises(DumpFailed):
        backend.verify(bad)
    with pytest.raises(RestoreFailed) as failure:
        backend.restore(bad)

    assert "not touched" in failure.value.message and failure.value.hint
    assert sqlite_contents(live) == wrecked
    assert files(tmp_path) == before_files  # no staged copy, no kept copy


def test_a_database_locked_by_the_app_is_left_alone_after_the_timeout(tmp_path: Path) -> None:
    live = tmp_path / "app.db"
    backend = SQLiteDatabase(sqlite_database(live), busy_timeout_s=1)
    dump = backend.dump(tmp_path / "dumps" / "good.db").path
    wreck(live)
    app = sqlite3.connect(live, isolation_level=None)
    app.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(RestoreFailed, match="locked") as failure:
            backend.restore(dump)
        assert "not touched" in failure.value.message
    finally:
        app.execute("ROLLBACK")
        app.close()
    assert "new_feature" in sqlite_contents(live)
    assert not [f for f in files(tmp_path) if "before_rollback" in f or "rb_restore" in f]


def test_urls_describe_and_the_factory(tmp_path: Path) -> None:
    backend = open_database(engine="sqlite", url=f"sqlite:///{tmp_path}/app.db")
    assert isinstance(backend, SQLiteDatabase)
    assert backend.describe() == f"sqlite:///{tmp_path}/app.db" and backend.required_tools() == []
    with pytest.raises(DatabaseError, match="does not exist"):
        backend.check()
    assert not (tmp_path / "app.db").exists()  # checking never creates an empty database
    with pytest.raises(DumpFailed):
        backend.dump(tmp_path / "x.db")
    for bad in ("sqlite://", "sqlite:///:memory:", "postgresql://x/y", "sqlite:///x.db?mode=rw"):
        with pytest.raises(DatabaseError):
            SQLiteDatabase(bad)
    relative = SQLiteDatabase("sqlite:///relative/app.db")
    assert relative.path == Path.cwd() / "relative" / "app.db"
