"""Restore fidelity on MySQL/MariaDB: after a rollback the application sees its database exactly as before.

The swap moves tables into the live database, which itself stays: its character set, collation,
comment and the grants on it and on its tables keep applying. Views, triggers, routines and events
cannot move and are made again from their definitions; a routine made again loses the grants given on
it, so the unchanged ones must be left alone, and a replaced one get its grants back or be named.
Restored by a user that is not root (every right on the application's databases, no GRANT OPTION).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest

from bot.backends.mysql import MySQLDatabase
from tests.crash_process import CrashingBot
from tests.fixtures.databases import (
    mysql_connect,
    mysql_database,
    mysql_databases,
    mysql_url,
    mysql_user,
    secret_password,
    unique,
)
from tests.fixtures.waiting import wait_for

SCHEMA = [
    "CREATE TABLE customers (id INT AUTO_INCREMENT PRIMARY KEY, tenant VARCHAR(20) NOT NULL,"
    " email VARCHAR(100) NOT NULL UNIQUE, name VARCHAR(100) NOT NULL, tier ENUM('free', 'silver', 'gold')"
    " NOT NULL DEFAULT 'free', name_upper VARCHAR(100) AS (UPPER(name)) VIRTUAL, CHECK (email LIKE '%@%'))"
    " COMMENT 'one row per customer'",
    "CREATE TABLE invoices (id INT AUTO_INCREMENT, customer_id INT NOT NULL, issued DATE NOT NULL,"
    " amount DECIMAL(10, 2) NOT NULL, state VARCHAR(10) NOT NULL DEFAULT 'draft', PRIMARY KEY (id, issued),"
    " KEY invoices_customer (customer_id)) PARTITION BY RANGE (YEAR(issued))"
    " (PARTITION p2023 VALUES LESS THAN (2024), PARTITION p2024 VALUES LESS THAN (2025),"
    " PARTITION pmax VALUES LESS THAN MAXVALUE)",
    "CREATE TABLE payments (id INT AUTO_INCREMENT PRIMARY KEY, customer_id INT NOT NULL,"
    " amount DECIMAL(10, 2) NOT NULL, FOREIGN KEY (customer_id) REFERENCES customers (id))",
    "CREATE TABLE audit (at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), tbl VARCHAR(20), row_id INT,"
    " action VARCHAR(10))",
    "CREATE VIEW open_invoices AS SELECT i.id, c.tenant, c.name, i.amount FROM invoices i"
    " JOIN customers c ON c.id = i.customer_id WHERE i.state IN ('draft', 'sent')",
    "CREATE SQL SECURITY INVOKER VIEW gold_customers AS SELECT id, name FROM customers WHERE tier = 'gold'"
    " WITH CHECK OPTION",
    "CREATE TRIGGER invoices_audit AFTER INSERT ON invoices FOR EACH ROW"
    " INSERT INTO audit (tbl, row_id, action) VALUES ('invoices', NEW.id, 'insert')",
    "CREATE TRIGGER invoices_check BEFORE INSERT ON invoices FOR EACH ROW SET NEW.state = LOWER(NEW.state)",
    "CREATE TRIGGER invoices_audit_more AFTER INSERT ON invoices FOR EACH ROW FOLLOWS invoices_audit"
    " INSERT INTO audit (tbl, row_id, action) VALUES ('invoices', NEW.id, 'second')",
    "CREATE FUNCTION customer_total(customer INT) RETURNS DECIMAL(12, 2) READS SQL DATA"
    " COMMENT 'what a customer was invoiced' RETURN (SELECT COALESCE(SUM(amount), 0) FROM invoices"
    " WHERE customer_id = customer)",
    "CREATE PROCEDURE pay(IN customer INT, IN paid DECIMAL(10, 2)) MODIFIES SQL DATA"
    " BEGIN INSERT INTO payments (customer_id, amount) VALUES (customer, paid);"
    " UPDATE invoices SET state = 'paid' WHERE customer_id = customer AND state = 'sent'; END",
    "CREATE EVENT purge_audit ON SCHEDULE EVERY 1 DAY STARTS '2024-01-01 03:00:00' ON COMPLETION PRESERVE"
    " DO DELETE FROM audit WHERE at < NOW() - INTERVAL 90 DAY",
    "CREATE EVENT yearly_report ON SCHEDULE EVERY 1 YEAR STARTS '2024-01-01 00:00:00' ON COMPLETION PRESERVE"
    " DISABLE COMMENT 'switched on by hand' DO INSERT INTO audit (tbl, action) VALUES ('report', 'yearly')",
    "INSERT INTO customers (tenant, email, name, tier) VALUES ('acme', 'ops@acme.test', 'Acme Ops', 'gold'),"
    " ('acme', 'billing@acme.test', 'Acme Billing', 'free'), ('globex', 'it@globex.test', 'Globex IT', 'silver')",
    "INSERT INTO invoices (customer_id, issued, amount, state) SELECT 1 + seq % 3,"
    " DATE '2023-01-01' + INTERVAL seq * 3 DAY, seq * 12.5, ELT(1 + seq % 3, 'DRAFT', 'sent', 'paid')"
    " FROM seq_1_to_300",
]


_AUTO_INCREMENT = re.compile(r" AUTO_INCREMENT=\d+")


@dataclass(frozen=True)
class Shop:
    name: str
    bot: str
    bot_password: str
    app: str
    app_password: str


def as_root(statements: list[str], db: str | None = None, args: tuple[Any, ...] | None = None) -> None:
    with closing(mysql_connect(db)) as conn, conn.cursor() as cur:
        for statement in statements:
            cur.execute(statement, args if "%s" in statement else None)


@pytest.fixture
def shop() -> Iterator[Shop]:
    name, app, app_password, bot_password = unique(), unique("rbt_app"), secret_password(), secret_password()
    with mysql_user(bot_password, prefix=name[:14]) as bot:
        try:
            as_root([f"CREATE DATABASE `{name}` CHARACTER SET latin1 COLLATE latin1_german1_ci COMMENT 'the shop'"])
            with closing(mysql_connect(name, user=bot, password=bot_password)) as conn, conn.cursor() as cur:
                for statement in SCHEMA:  # as the bot's user: it is the definer, as it is of a migration's objects
                    cur.execute(statement)
            as_root(["CREATE USER %s@'%%' IDENTIFIED BY %s"], args=(app, app_password))
            grants = [
                f"GRANT SELECT, INSERT ON `{name}`.* TO %s@'%%'",
                f"GRANT UPDATE (tier) ON `{name}`.customers TO %s@'%%'",
                f"GRANT DELETE ON `{name}`.audit TO %s@'%%'",
                f"GRANT SELECT ON `{name}`.open_invoices TO %s@'%%'",
                f"GRANT EXECUTE ON FUNCTION `{name}`.customer_total TO %s@'%%'",
                f"GRANT EXECUTE ON PROCEDURE `{name}`.pay TO %s@'%%'",
            ]
            as_root(grants, args=(app,))
            yield Shop(name, bot, bot_password, app, app_password)
        finally:
            as_root(["DROP USER IF EXISTS %s@'%%'"], args=(app,))
            as_root([f"DROP DATABASE IF EXISTS `{db}`" for db in mysql_databases(name[:14])])


def fingerprint(shop: Shop) -> dict[str, Any]:
    """Every definition (SHOW CREATE), the database's own properties, the grants, the rows, as root."""
    seen: dict[str, Any] = {}
    with closing(mysql_connect(shop.name)) as conn, conn.cursor() as cur:

        def rows(query: str, *args: Any) -> list[tuple[Any, ...]]:
            cur.execute(query, args)
            return sorted(cur.fetchall(), key=repr)

        seen["database"] = rows(
            "SELECT DEFAULT_CHARACTER_SET_NAME, DEFAULT_COLLATION_NAME, SCHEMA_COMMENT FROM information_schema.SCHEMATA"
            " WHERE SCHEMA_NAME = %s",
            shop.name,
        )
        for kind, query in {
            "TABLE": "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s"
            " AND TABLE_TYPE = 'BASE TABLE'",
            "VIEW": "SELECT TABLE_NAME FROM information_schema.VIEWS WHERE TABLE_SCHEMA = %s",
            "TRIGGER": "SELECT TRIGGER_NAME FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s",
            "FUNCTION": "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s"
            " AND ROUTINE_TYPE = 'FUNCTION'",
            "PROCEDURE": "SELECT ROUTINE_NAME FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = %s"
            " AND ROUTINE_TYPE = 'PROCEDURE'",
            "EVENT": "SELECT EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA = %s",
        }.items():
            for (name,) in rows(query, shop.name):
                created = rows(f"SHOW CREATE {kind} `{name}`")[0]
                if kind == "TABLE":  # the AUTO_INCREMENT counter moves with the data (and never back)
                    created = (created[0], _AUTO_INCREMENT.sub("", str(created[1])))
                # A trigger's last column is when it was created: made again by the swap, by design.
                seen[f"{kind} {name}"] = created[:-1] if kind == "TRIGGER" else created
        seen["trigger order"] = rows(
            "SELECT TRIGGER_NAME, ACTION_ORDER, DEFINER FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = %s",
            shop.name,
        )
        seen["routines"] = rows(
            "SELECT ROUTINE_NAME, DEFINER, SECURITY_TYPE, SQL_MODE, ROUTINE_COMMENT FROM information_schema.ROUTINES"
            " WHERE ROUTINE_SCHEMA = %s",
            shop.name,
        )
        seen["events"] = rows(
            "SELECT EVENT_NAME, DEFINER, STATUS, EVENT_COMMENT, STARTS FROM information_schema.EVENTS"
            " WHERE EVENT_SCHEMA = %s",
            shop.name,
        )
        seen["app grants"] = [str(g[0]).replace(shop.name, "<db>") for g in rows("SHOW GRANTS FOR %s@'%%'", shop.app)]
        for table in ("customers", "invoices", "payments"):
            seen[f"rows of {table}"] = rows(f"SELECT * FROM `{table}`")
    seen["as the application"] = app_view(shop)
    return seen


def app_view(shop: Shop) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    with closing(mysql_connect(shop.name, user=shop.app, password=shop.app_password)) as conn:
        conn.autocommit(False)
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*), SUM(amount) FROM open_invoices")
            seen["open invoices"] = cur.fetchall()
            try:
                cur.execute("SELECT customer_total(1)")
                seen["customer total"] = cur.fetchall()
            except pymysql.err.OperationalError as exc:  # the routine-level grant
                seen["customer total"] = exc.args[0]
            cur.execute("CALL pay(2, 10)")  # payments, and the trigger-fed audit, through the procedure
            cur.execute("UPDATE customers SET tier = 'gold' WHERE id = 2")  # the column grant
            cur.execute("SELECT COUNT(*) FROM gold_customers")
            seen["gold after upgrade"] = cur.fetchall()
            cur.execute("INSERT INTO invoices (customer_id, issued, amount, state) VALUES (3, '2024-06-01', 1, 'SENT')")
            cur.execute("SELECT action FROM audit ORDER BY at, action")
            seen["audit"] = cur.fetchall()
            cur.execute("DELETE FROM audit")  # the table grant
            try:
                cur.execute("DELETE FROM payments")
                seen["delete payments"] = "allowed"
            except pymysql.err.OperationalError as exc:  # the app user was never allowed to
                seen["delete payments"] = exc.args[0]
        conn.rollback()
    return seen


def wreck(shop: Shop) -> None:
    """What a bad release does: data, tables, views and triggers changed; routines and events left alone."""
    with closing(mysql_connect(shop.name, user=shop.bot, password=shop.bot_password)) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM invoices WHERE state = 'paid'")
        cur.execute("UPDATE customers SET name = 'renamed by the bad release'")
        cur.execute("ALTER TABLE payments ADD COLUMN note TEXT")
        cur.execute("DROP VIEW gold_customers")
        cur.execute("DROP TRIGGER invoices_audit_more")
        cur.execute("CREATE TABLE new_feature (id INT)")


def test_a_restore_by_a_user_that_is_not_root_keeps_everything_the_application_sees(shop: Shop, tmp_path: Path) -> None:
    backend = MySQLDatabase(mysql_url(shop.name, user=shop.bot, password=shop.bot_password))
    before = fingerprint(shop)
    assert before["as the application"]["delete payments"] == 1142  # command denied
    dump = backend.dump(tmp_path / "good.sql").path
    wreck(shop)

    result = backend.restore(dump)

    after = fingerprint(shop)
    for part in before.keys() | after.keys():
        assert after.get(part) == before.get(part), part
    assert "warnings" not in result.details, result.details["warnings"]


@pytest.mark.parametrize("as_bot", [True, False], ids=["not-root", "root"])
def test_a_routine_the_rollback_replaces_gets_its_grants_back_or_is_named(
    shop: Shop, tmp_path: Path, as_bot: bool
) -> None:
    """A bad release that re-created a function (and granted it again) sees it replaced by the dump's."""
    url = mysql_url(shop.name, user=shop.bot, password=shop.bot_password) if as_bot else mysql_url(shop.name)
    backend = MySQLDatabase(url)
    before = fingerprint(shop)
    dump = backend.dump(tmp_path / "good.sql").path
    as_root(
        [
            "DROP FUNCTION customer_total",
            "CREATE DEFINER = CURRENT_USER FUNCTION customer_total(customer INT) RETURNS DECIMAL(12, 2)"
            " READS SQL DATA RETURN -1",
            "GRANT EXECUTE ON FUNCTION customer_total TO %s@'%%'",
        ],
        shop.name,
        (shop.app,),
    )

    result = backend.restore(dump)

    after = fingerprint(shop)
    assert after["FUNCTION customer_total"] == before["FUNCTION customer_total"]  # the dump's definition
    if as_bot:  # it may neither read mysql.procs_priv nor grant: the loss is named, with where to look
        warning = result.details["warnings"]
        assert (
            f"function customer_total was replaced by the dump's definition: any GRANT … ON FUNCTION {shop.name}"
            in warning
        )
        assert "customer_total" in warning and "mysql.procs_priv" in warning and "SHOW GRANTS" in warning
        assert [g for g in after["app grants"] if "FUNCTION" in g] == []
        assert after["as the application"]["customer total"] == 1370  # execute command denied: the named loss
        as_root([f"GRANT EXECUTE ON FUNCTION `{shop.name}`.customer_total TO %s@'%%'"], args=(shop.app,))
        after = fingerprint(shop)
    else:
        assert "warnings" not in result.details, result.details["warnings"]
    for part in before:
        assert after[part] == before[part], part


def test_a_switch_finished_after_a_crash_gives_replaced_routines_their_grants_back(tmp_path: Path) -> None:
    """The routine grants are journaled with the switch: the repair of a crash after the RENAME uses them."""
    app = unique("rbt_app")
    with mysql_database() as live:
        as_root(["CREATE USER %s@'%%'"], args=(app,))
        try:
            backend = MySQLDatabase(live.url)
            dump = backend.dump(tmp_path / "good.sql").path
            as_root(
                [
                    "DROP FUNCTION order_count",  # the bad release's own version, granted to the app again
                    "CREATE FUNCTION order_count() RETURNS INT READS SQL DATA RETURN -1",
                    "GRANT EXECUTE ON FUNCTION order_count TO %s@'%%'",
                ],
                live.name,
                (app,),
            )
            blocker = mysql_connect()  # holds a metadata lock: the bot is killed while its RENAME waits
            blocker.autocommit(False)
            with blocker.cursor() as cur:
                cur.execute(f"SELECT COUNT(*) FROM `{live.name}`.customers")
            shadow = backend.shadow_name("cd34ef56")
            bot = CrashingBot("mysql", live.url, dump, shadow, tmp_path / "bot.log", swap_timeout_s=120)
            bot.wait_for("the RENAME waiting for its lock", lambda: renaming("metadata lock"))
            bot.kill(tree=True)
            blocker.commit()  # the dead bot's RENAME runs: the switch is to be finished
            blocker.close()
            wait_for("the RENAME to be done", lambda: not renaming(""))

            said = backend.repair_interrupted_swap()

            assert said and said[0].startswith("finished a switch interrupted after its RENAME")
            with closing(live.connect()) as conn, conn.cursor() as cur:
                cur.execute("SELECT order_count()")
                assert cur.fetchone() == (500,)  # the dump's definition
                cur.execute("SHOW GRANTS FOR %s@'%%'", (app,))
                grants = [str(g[0]) for g in cur.fetchall() if "FUNCTION" in str(g[0])]
            assert grants == [f"GRANT EXECUTE ON FUNCTION `{live.name}`.`order_count` TO `{app}`@`%`"]
        finally:
            as_root(["DROP USER IF EXISTS %s@'%%'"], args=(app,))


def renaming(state: str) -> bool:
    with closing(mysql_connect()) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT 1 FROM information_schema.PROCESSLIST WHERE INFO LIKE 'RENAME TABLE%%' AND STATE LIKE %s",
            (f"%{state}%",),
        )
        return bool(cur.fetchall())
