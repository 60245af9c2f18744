"""Restore fidelity on PostgreSQL: after a rollback the application sees its database exactly as before.

A restore loads the dump into a new database and renames it into place, so whatever belongs to the
database itself (not to an object a dump carries) must be carried over from the live one: owner, ACL,
connection limit, `ALTER DATABASE … SET` and `ALTER ROLE … IN DATABASE … SET` settings, comment,
security labels; and pg_dump does not record extension versions either. All of it is checked here on a
schema shaped like real ones, restored by the role that owns the database: CREATEDB, NOT a superuser.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from bot.backends.postgres import PostgresDatabase
from bot.errors import StandbyUnusable
from tests.fixtures.databases import PgDatabase, pg_connect, pg_url, postgres_database, secret_password
from tests.fixtures.fidelity import (
    Roles,
    catalog,
    contents,
    database_settings,
    fidelity_roles,
    fingerprint,
    schema_dump,
    seed,
)


def wreck(db: str, roles: Roles) -> None:
    """What a bad release does to the objects and the data (never to the database's own properties)."""
    with pg_connect(db, user=roles.owner) as conn:
        conn.execute("DELETE FROM billing.invoices WHERE state = 'paid'")
        conn.execute("UPDATE billing.customers SET name = 'renamed by the bad release'")
        conn.execute("ALTER TABLE billing.customers ADD COLUMN loyalty int")
        conn.execute("DROP VIEW reporting.latest")
        conn.execute("CREATE TABLE billing.new_feature (id int)")
        conn.execute("REFRESH MATERIALIZED VIEW billing.tenant_totals")


def owner_backend(db: PgDatabase, roles: Roles) -> PostgresDatabase:
    backend = PostgresDatabase(pg_url(db.name, user=roles.owner, password=roles.password))
    with pg_connect("postgres") as conn:
        row = conn.execute("SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = %s", (roles.owner,)).fetchone()
    assert row == (False, True)  # the premise of every test here
    return backend


@pytest.fixture
def shop(request: pytest.FixtureRequest) -> Iterator[tuple[PgDatabase, Roles]]:
    """The rich schema, owned by the bot's role, with every database-level property a deployment sets."""
    options: dict[str, Any] = dict(getattr(request, "param", {}))
    grant_parameter = options.pop("grant_parameter", True)
    with (
        fidelity_roles(secret_password(), **options) as roles,
        postgres_database(owner=roles.owner, password=roles.password, seed=False) as db,
    ):
        seed(db.name, roles)
        with pg_connect("postgres") as conn:
            for statement in database_settings(db.name, roles):
                conn.execute(statement)
            if grant_parameter:  # what PostgreSQL 15 asks of a non-superuser to set app.tenant itself
                conn.execute(sql.SQL("GRANT SET ON PARAMETER app.tenant TO {}").format(sql.Identifier(roles.owner)))
        yield db, roles


ROUTES = [
    pytest.param({"member_of_app": True}, id="owner-member-of-the-app-role"),
    pytest.param({"owner_options": "CREATEROLE"}, id="owner-with-createrole"),
]


@pytest.mark.parametrize("shop", ROUTES, indirect=True)
def test_a_restore_by_a_non_superuser_owner_keeps_everything_the_application_sees(
    shop: tuple[PgDatabase, Roles], tmp_path: Path
) -> None:
    db, roles = shop
    backend = owner_backend(db, roles)
    before = fingerprint(db.name, roles)
    assert before["as the application"]["app.tenant"] == ("acme",)  # the premise: the app depends on it
    assert before["as the application"]["invoices by tenant"] == [("acme", 267)]  # RLS reads app.tenant
    dump = backend.dump(tmp_path / "good.dump").path
    wreck(db.name, roles)
    assert contents(db.name) != before["contents"]

    result = backend.restore(dump)

    after = fingerprint(db.name, roles)
    for part in before:  # one part at a time: a failure names what differs
        assert after[part] == before[part], part
    assert "warnings" not in result.details, result.details["warnings"]
    assert result.details["ownership"] == "as in the dump"


LABEL = "system_u:object_r:sepgsql_db_t:s0"


def label_database(name: str) -> None:
    """A security label as sepgsql would leave it (no provider is loaded here, so it is written directly)."""
    with pg_connect("postgres") as conn:
        conn.execute("SET allow_system_table_mods = on")
        conn.execute(
            "INSERT INTO pg_shseclabel SELECT oid, 'pg_database'::regclass, 'selinux', %s FROM pg_database"
            " WHERE datname = %s",
            (LABEL, name),
        )


@pytest.mark.parametrize("shop", [pytest.param({"grant_parameter": False}, id="owner-alone")], indirect=True)
def test_what_the_owner_may_not_carry_over_is_named_with_the_statement_that_puts_it_back(
    shop: tuple[PgDatabase, Roles], tmp_path: Path
) -> None:
    """Without CREATEROLE, membership in the app's role or SET on app.tenant, PostgreSQL refuses the bot
    those settings; no provider is loaded for the label. Each is named, with the statement to run."""
    db, roles = shop
    label_database(db.name)
    backend = owner_backend(db, roles)
    before = fingerprint(db.name, roles)
    objects_before = schema_dump(db.name, create=False)
    dump = backend.dump(tmp_path / "good.dump").path
    messages: list[str] = []

    result = backend.restore(dump, progress=messages.append)

    warnings = [m.removeprefix("warning: ") for m in messages if m.startswith("warning: ")]
    assert result.details["warnings"] == "; ".join(warnings)
    app, live = roles.app, db.name
    expected = {
        f'ALTER DATABASE "{live}" SET "app.tenant" TO \'acme\'': 'permission denied to set parameter "app.tenant"',
        f'ALTER ROLE "{app}" IN DATABASE "{live}" SET "work_mem" TO \'12MB\'': f"membership in {app}",
        f"ALTER ROLE \"{app}\" IN DATABASE \"{live}\" SET \"search_path\" TO 'billing', 'ext', 'public'": "CREATEROLE",
        f'SECURITY LABEL FOR "selinux" ON DATABASE "{live}" IS \'{LABEL}\'': '"selinux" is not loaded',
    }
    assert len(warnings) == len(expected), warnings
    for statement, why in expected.items():
        assert [w for w in warnings if w.startswith(statement + " could not be carried over") and why in w], statement
    assert f"GRANT SET ON PARAMETER app.tenant TO {roles.owner}" in result.details["warnings"]

    restored = catalog(db.name)
    for part in ("database", "acl", "extensions", "schemas", "default privileges"):
        assert restored[part] == before[part], part  # everything else was carried over
    assert restored["labels"] == [] and ("", "app.tenant=acme") not in restored["settings"]
    # The statements in the warnings, run as they are by a DBA, put back all but the label.
    with pg_connect("postgres") as conn:
        for statement in expected:
            if not statement.startswith("SECURITY LABEL"):
                conn.execute(statement.encode())
    after = fingerprint(db.name, roles)
    for part in before.keys() - {"labels", "schema dump"}:  # the label is lost, and named
        assert after[part] == before[part], part
    assert schema_dump(db.name, create=False) == objects_before


@pytest.mark.parametrize("shop", ROUTES[:1], indirect=True)
def test_a_standby_is_swapped_in_only_while_the_live_database_has_what_it_was_given(
    shop: tuple[PgDatabase, Roles], tmp_path: Path
) -> None:
    """A standby is built ahead of time: a live property changed since would be lost by swapping it in."""
    db, roles = shop
    backend = owner_backend(db, roles)
    before = fingerprint(db.name, roles)
    dump = backend.dump(tmp_path / "good.dump").path
    ident, app = sql.Identifier(db.name), sql.Identifier(roles.app)
    changes = [
        sql.SQL("COMMENT ON DATABASE {} IS 'changed'").format(ident),
        sql.SQL("ALTER ROLE {} IN DATABASE {} SET work_mem = '13MB'").format(app, ident),
        sql.SQL("ALTER DATABASE {} SET app.tenant = 'globex'").format(ident),
        sql.SQL("ALTER DATABASE {} CONNECTION LIMIT 41").format(ident),
        sql.SQL("REVOKE TEMPORARY ON DATABASE {} FROM {}").format(ident, app),
    ]
    for change in changes:
        standby = backend.build_standby(dump, label="good")
        with pg_connect("postgres") as conn:
            conn.execute(change)
        with pytest.raises(StandbyUnusable, match="differ from the standby"):
            backend.stage_standby(standby, label="good")
        backend.drop_standby()
        with pg_connect("postgres") as conn:  # as it was
            for statement in database_settings(db.name, roles):
                conn.execute(statement)

    standby = backend.build_standby(dump, label="good")
    with pg_connect(db.name, user=roles.owner) as conn:
        conn.execute("ALTER EXTENSION hstore UPDATE TO '1.5'")
    with pytest.raises(StandbyUnusable, match="extensions hstore"):
        backend.stage_standby(standby, label="good")
    backend.drop_standby()

    standby = backend.build_standby(dump, label="good")  # built with hstore 1.5, the live version now
    result = backend.stage_standby(standby, label="good").swap_in(progress=lambda _: None)

    after = fingerprint(db.name, roles)
    assert ("hstore", "1.5") in {e[:2] for e in after.pop("extensions")}
    before.pop("extensions")
    for part in before:
        assert after[part] == before[part], part
    assert "warnings" not in result.details
