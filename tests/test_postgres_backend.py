"""The PostgreSQL backend against a real server: dumps that verify, restores that swap in whole or not at all."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from bot.backends.databases import open_database
from bot.backends.postgres import PostgresDatabase
from bot.errors import BadRequest, DatabaseError, DumpFailed, NotSupported, RestoreFailed, RollbackError, ToolMissing
from tests.fixtures.databases import (
    PgDatabase,
    pg_connect,
    pg_databases,
    pg_url,
    postgres_database,
    postgres_role,
    secret_password,
    unique,
)

KEPT = re.compile(r"_before_rollback_\d{12}(_\d+)?$")


@pytest.fixture
def live() -> Iterator[PgDatabase]:
    with postgres_database() as db:
        yield db


def leftovers(db: PgDatabase) -> list[str]:
    return [n for n in pg_databases(db.name[:14]) if n != db.name]


def wreck(db: PgDatabase) -> None:
    """What a bad release does after the restore point was taken."""
    with db.connect() as conn:
        conn.execute("DELETE FROM orders WHERE id > 100")
        conn.execute("UPDATE customers SET name = 'renamed by the bad release'")
        conn.execute("DROP VIEW big_orders")
        conn.execute("ALTER TABLE orders DROP COLUMN note")
        conn.execute("CREATE TABLE new_feature (id int)")
        conn.execute("INSERT INTO new_feature VALUES (1), (2)")


def test_dump_writes_a_verified_archive_that_restores_to_equal_data(live: PgDatabase, tmp_path: Path) -> None:
    backend = PostgresDatabase(live.url)
    messages: list[str] = []
    info = backend.dump(tmp_path / "dumps" / "good.dump", progress=messages.append)

    assert info.verified and info.path == tmp_path / "dumps" / "good.dump"
    assert info.size_bytes == info.path.stat().st_size > 0
    assert info.entries >= 5  # two tables, their data, a view, keys, an index
    assert not list(tmp_path.glob("dumps/*.partial"))
    assert any("verified" in m for m in messages)
    listed = subprocess.run(["pg_restore", "--list", str(info.path)], capture_output=True, text=True, check=True)
    assert "TABLE DATA public orders" in listed.stdout
    assert backend.verify(info.path).entries == info.entries

    with postgres_database(name=f"{live.name}_copy", seed=False) as copy:
        subprocess.run(
            ["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={copy.url}", str(info.path)],
            check=True,
            capture_output=True,
        )
        assert copy.contents() == live.contents()


def unanalyzed(db: PgDatabase) -> list[str]:
    """The database's tables that have no planner statistics yet (never ANALYZEd)."""
    with db.connect() as conn:
        return [str(r[0]) for r in conn.execute("SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NULL")]


def test_restore_brings_the_dump_back_under_the_same_name_and_keeps_the_previous_data(
    live: PgDatabase, tmp_path: Path
) -> None:
    backend = PostgresDatabase(live.url)
    before = live.contents()
    dump = backend.dump(tmp_path / "good.dump").path
    wreck(live)
    wrecked = live.contents()
    assert wrecked != before

    messages: list[str] = []
    result = backend.restore(dump, progress=messages.append)

    assert result.database == live.name
    assert live.contents() == before  # rows, the dropped column and the dropped view's table all back
    with live.connect() as conn:
        assert conn.execute("SELECT count(*) FROM big_orders").fetchone() is not None
    assert unanalyzed(live) == []  # planner statistics were gathered before the swap
    assert KEPT.search(result.previous) and result.previous.startswith(live.name)
    assert PgDatabase(result.previous, "").contents() == wrecked
    assert leftovers(live) == [result.previous]  # no shadow left behind
    with pg_connect("postgres") as conn:
        allowed = conn.execute(
            "SELECT datname, datallowconn FROM pg_database WHERE datname = ANY(%s)", ([live.name, result.previous],)
        ).fetchall()
    assert dict(allowed) == {live.name: True, result.previous: True}
    assert result.previous in result.summary and live.name in result.summary
    assert result.details["kept"] == result.previous
    assert any("restoring" in m for m in messages) and any("switched" in m for m in messages)


def test_a_second_restore_in_the_same_minute_keeps_both_previous_copies(live: PgDatabase, tmp_path: Path) -> None:
    backend = PostgresDatabase(live.url)
    dump = backend.dump(tmp_path / "good.dump").path
    first = backend.restore(dump)
    second = backend.restore(dump)
    assert first.previous != second.previous
    assert sorted(leftovers(live)) == sorted([first.previous, second.previous])


@pytest.mark.parametrize("damage", ["truncated", "random", "empty", "not a dump"])
def test_a_corrupt_dump_is_refused_and_the_live_database_is_untouched(
    live: PgDatabase, tmp_path: Path, damage: str
) -> None:
    backend = PostgresDatabase(live.url)
    good = backend.dump(tmp_path / "good.dump").path
    bad = tmp_path / "bad.dump"
    data = good.read_bytes()
    bad.write_bytes(
        {
            "truncated": data[: len(data) // 2],
            "random": bytes(range(256)) * 40,
            "empty": b"",
            "not a dump": b"-- plain SQL\nDROP TABLE customers;\n",
        }[damage]
    )
    wreck(live)
    wrecked = live.contents()

    with pytest.raises(DumpFailed):
        backend.verify(bad)
    with pytest.raises((RestoreFailed, DumpFailed)) as failure:
        backend.restore(bad)

    assert live.name in failure.value.message and "not touched" in failure.value.message
    assert failure.value.hint
    assert live.contents() == wrecked
    assert leftovers(live) == []


def test_a_dump_that_breaks_during_the_restore_leaves_no_shadow_and_the_live_database_as_it_was(
    live: PgDatabase, tmp_path: Path
) -> None:
    # Its table of contents is intact (pg_restore --list passes): only the data at the end is gone,
    # so the failure happens inside pg_restore, after the shadow database was created.
    backend = PostgresDatabase(live.url)
    data = backend.dump(tmp_path / "good.dump").path.read_bytes()
    bad = tmp_path / "cut.dump"
    bad.write_bytes(data[: int(len(data) * 0.6)])
    subprocess.run(["pg_restore", "--list", str(bad)], check=True, capture_output=True)
    before = live.contents()
    messages: list[str] = []

    with pytest.raises(RestoreFailed) as failure:
        backend.restore(bad, progress=messages.append)

    assert "restore failed at" in failure.value.message and "not touched" in failure.value.message
    assert any("shadow" in m for m in messages)  # it did get as far as the shadow database
    assert live.contents() == before
    assert leftovers(live) == []
    with pytest.raises(DumpFailed, match="damaged"):
        backend.verify(bad)  # the deep verification reads the data and catches it up front


def test_a_client_connected_to_the_live_database_is_disconnected_and_the_swap_succeeds(
    live: PgDatabase, tmp_path: Path
) -> None:
    backend = PostgresDatabase(live.url)
    dump = backend.dump(tmp_path / "good.dump").path
    before = live.contents()
    wreck(live)
    app = live.connect()
    app.execute("BEGIN")
    app.execute("SELECT count(*) FROM customers")  # an open transaction, holding locks

    result = backend.restore(dump)

    assert int(result.details["terminated_sessions"]) >= 1
    with pytest.raises(psycopg.OperationalError):
        app.execute("SELECT 1")
    app.close()
    assert live.contents() == before
    with live.connect() as again:  # the app's URL still works and sees the restored data
        assert again.execute("SELECT count(*) FROM orders").fetchone() == (20000,)


def test_with_a_password_protected_role_nothing_leaks_and_ownership_is_kept(tmp_path: Path) -> None:
    password = secret_password()
    with postgres_role(password) as role, postgres_database(owner=role, password=password) as live:
        assert password not in live.url  # percent-encoded in the URL …
        backend = PostgresDatabase(live.url)
        messages: list[str] = []
        errors: list[RollbackError] = []
        assert password not in backend.describe() and role in backend.describe()

        dump = backend.dump(tmp_path / "good.dump", progress=messages.append).path
        wreck(live)
        result = backend.restore(dump, progress=messages.append)
        with live.connect() as conn:
            owners = {r[0] for r in conn.execute("SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")}
            db_owner = conn.execute(
                "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
            ).fetchone()
        assert owners == {role} and db_owner == (role,)
        assert result.details["ownership"] == "as in the dump"
        assert unanalyzed(live) == []  # vacuumdb, too, got the password (and never showed it)

        broken = tmp_path / "broken.dump"
        broken.write_bytes(b"PGDMP garbage")
        for attempt in (
            lambda: backend.restore(broken, progress=messages.append),
            lambda: backend.verify(broken),
            lambda: PostgresDatabase(pg_url("no_such_db", user=role, password=password)).check(),
            lambda: PostgresDatabase(pg_url("no_such_db", user=role, password=password)).dump(tmp_path / "x.dump"),
            lambda: PostgresDatabase(live.url.replace(":5432/", ":1/")).check(),
            lambda: PostgresDatabase(live.url.replace(":5432/", ":1/")).restore(dump),
        ):
            with pytest.raises(RollbackError) as caught:
                attempt()
            errors.append(caught.value)

    texts = messages + [str(e) for e in errors] + [e.message + e.hint for e in errors] + [repr(result)]
    for form in (password, password.replace("%", "%25")):
        assert not [t for t in texts if form in t]
    assert all(isinstance(e, DatabaseError) for e in errors)


def test_database_level_properties_survive_the_swap(live: PgDatabase, tmp_path: Path) -> None:
    backend = PostgresDatabase(live.url)
    dump = backend.dump(tmp_path / "good.dump").path
    reader = unique("rbt_reader")
    with pg_connect("postgres") as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(reader)))
        conn.execute(
            sql.SQL("ALTER DATABASE {} SET search_path = '$user', public, \"Odd Schema\"").format(
                sql.Identifier(live.name)
            )
        )
        conn.execute(sql.SQL("ALTER DATABASE {} SET statement_timeout = '42s'").format(sql.Identifier(live.name)))
        conn.execute(sql.SQL("ALTER DATABASE {} SET app.tenant = 'acme'").format(sql.Identifier(live.name)))
        conn.execute(
            sql.SQL("ALTER ROLE {} IN DATABASE {} SET work_mem = '12MB'").format(
                sql.Identifier(reader), sql.Identifier(live.name)
            )
        )
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS 'the shop'").format(sql.Identifier(live.name)))
        conn.execute(sql.SQL("ALTER DATABASE {} CONNECTION LIMIT 40").format(sql.Identifier(live.name)))
        conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(live.name)))
        conn.execute(
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(live.name), sql.Identifier(reader))
        )
    try:
        result = backend.restore(dump)
        with pg_connect("postgres") as conn:
            settings = conn.execute(
                "SELECT unnest(setconfig) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase"
                " WHERE d.datname = %s ORDER BY 1",
                (live.name,),
            ).fetchall()
            database = conn.execute(
                "SELECT shobj_description(oid, 'pg_database'), datconnlimit FROM pg_database WHERE datname = %s",
                (live.name,),
            ).fetchone()
            privileges = conn.execute(
                "SELECT has_database_privilege('public', %s, 'CONNECT'), has_database_privilege(%s, %s, 'CONNECT')",
                (live.name, reader, live.name),
            ).fetchone()
        assert [s[0] for s in settings] == [
            "app.tenant=acme",
            'search_path="$user", public, "Odd Schema"',
            "statement_timeout=42s",
            "work_mem=12MB",  # the reader's, in this database
        ]
        assert database == ("the shop", 40)
        assert privileges == (False, True)  # PUBLIC still may not connect; the granted role still may
        assert "warnings" not in result.details
    finally:
        with pg_connect("postgres") as conn:
            for name in pg_databases(live.name):
                conn.execute(
                    sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(sql.Identifier(name), sql.Identifier(reader))
                )
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(reader)))


def test_when_sessions_cannot_be_terminated_the_swap_is_abandoned_and_nothing_changes(tmp_path: Path) -> None:
    password = secret_password()
    with postgres_role(password) as role, postgres_database(owner=role, password=password) as live:
        backend = PostgresDatabase(live.url, swap_timeout_s=1)
        dump = backend.dump(tmp_path / "good.dump").path
        wreck(live)
        wrecked = live.contents()
        superuser_session = live.connect()  # the role may not terminate a superuser's session
        try:
            with pytest.raises(RestoreFailed) as failure:
                backend.restore(dump)
            assert "is as it was" in failure.value.message and "sessions would not close" in failure.value.message
            assert superuser_session.execute("SELECT 1").fetchone() == (1,)
        finally:
            superuser_session.close()
        assert live.contents() == wrecked
        assert leftovers(live) == []
        with pg_connect("postgres") as conn:
            assert conn.execute("SELECT datallowconn FROM pg_database WHERE datname = %s", (live.name,)).fetchone() == (
                True,
            )


def test_long_database_names_are_cut_to_postgres_limit(tmp_path: Path) -> None:
    name = unique() + "_" + "x" * 48  # 63 bytes: any suffix must cut into the name
    assert len(name) == 63
    with postgres_database(name=name) as live:
        backend = PostgresDatabase(live.url)
        dump = backend.dump(tmp_path / "good.dump").path
        result = backend.restore(dump)
        assert len(result.previous.encode()) <= 63 and KEPT.search(result.previous)
        assert leftovers(live) == [result.previous]
        assert live.contents()["orders"]


def test_an_empty_database_gives_no_restore_point(tmp_path: Path) -> None:
    with postgres_database(seed=False) as live:
        with pytest.raises(DumpFailed, match="holds no tables"):
            PostgresDatabase(live.url).dump(tmp_path / "empty.dump")
        assert not list(tmp_path.iterdir())  # neither the dump nor a .partial is left


def test_describe_check_and_the_factory() -> None:
    url = "postgres://app:hunter2hunter2@db.internal:6543/shop?sslmode=disable&application_name=x"
    backend = open_database(engine="postgres", url=url)
    assert isinstance(backend, PostgresDatabase)
    assert backend.describe() == "postgresql://app@db.internal:6543/shop"
    assert backend.required_tools() == ["pg_dump", "pg_restore"]
    assert backend.engine == "postgres"
    for bad in ("mysql://x@y/z", "postgresql://app:pw@host:5432", "postgresql://a:b@h/db?sslpassword=k3yk3yk3y"):
        with pytest.raises(DatabaseError) as caught:
            PostgresDatabase(bad)
        assert "pw" not in caught.value.message and "k3yk3yk3y" not in str(caught.value)
    with pytest.raises(NotSupported):
        open_database(engine="oracle", url="oracle://x")
    with pytest.raises(BadRequest):
        open_database(engine="postgres", url="")
    with postgres_database(seed=False) as live:
        PostgresDatabase(live.url).check()


def test_a_tool_that_runs_too_long_is_stopped_and_leaves_no_partial_dump(live: PgDatabase, tmp_path: Path) -> None:
    backend = PostgresDatabase(live.url, tool_timeout_s=0.05)
    with pytest.raises(DumpFailed, match="timed out"):
        backend.dump(tmp_path / "slow.dump")
    assert list(tmp_path.iterdir()) == []


def test_missing_client_tools_are_named(live: PgDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolMissing, match="pg_dump"):
        PostgresDatabase(live.url).dump(tmp_path / "x.dump")


@pytest.mark.parametrize("vacuumdb", ["missing", "failing"])
def test_without_a_working_vacuumdb_one_session_analyzes_the_restored_data(
    live: PgDatabase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vacuumdb: str
) -> None:
    backend = PostgresDatabase(live.url)
    dump = backend.dump(tmp_path / "good.dump").path
    tools = tmp_path / "bin"  # a client package with pg_restore, and no vacuumdb or one that fails
    tools.mkdir()
    (tools / "pg_restore").symlink_to(shutil.which("pg_restore") or "pg_restore")
    if vacuumdb == "failing":  # as behind a pooler that refuses the statement_timeout option
        fake = tools / "vacuumdb"
        fake.write_text('#!/bin/sh\necho "vacuumdb: error: unsupported startup parameter: options" >&2\nexit 1\n')
        fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tools))
    messages: list[str] = []
    result = backend.restore(dump, progress=messages.append)
    assert any(m.startswith("analyzing ") for m in messages) and "warnings" not in result.details
    assert unanalyzed(live) == []


def test_a_failing_progress_callback_does_not_break_a_restore(live: PgDatabase, tmp_path: Path) -> None:
    def broken(_: str) -> None:
        raise RuntimeError("Slack is down")

    backend = PostgresDatabase(live.url)
    dump = backend.dump(tmp_path / "good.dump", progress=broken).path
    assert backend.restore(dump, progress=broken).database == live.name


def test_a_parallel_restore_gives_the_same_result(live: PgDatabase, tmp_path: Path) -> None:
    backend = PostgresDatabase(live.url, jobs=3)
    before = live.contents()
    dump = backend.dump(tmp_path / "good.dump").path
    wreck(live)
    messages: list[str] = []
    backend.restore(dump, progress=messages.append)
    assert live.contents() == before
    assert any("objects" in m for m in messages)
