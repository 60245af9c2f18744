"""The rollback benchmark's data: a shop database generated server-side, its bad deploy, and how to check it.

Tables (all with primary keys; foreign keys and secondary indexes as an app would have them):

    customers   (profile jsonb; unique email, index on country)
    products    (10,000 rows; unique sku)
    orders      (4 per customer; FK customers; indexes on customer_id and created_at)
    order_items (3 per order; FK orders and products; index on order_id)
    events      (6 per customer, a jsonb payload; FK customers; index on (customer_id, created_at))
    schema_migrations

Rows are functions of their ids (no random()), so every generation of a size is the same data. The
"bad deploy" is a migration and the damage it does: a new column and a new table, 10% of the orders
repriced, a row in schema_migrations. `fingerprint` tells the good state from the bad one cheaply
(index lookups, one scan of orders), so it runs after every way.

Every database made here is named with the run's prefix (`rbbench_<pid>_…`), and so is everything the
bot creates beside the live one (`<live>_before_rollback_…`, `<live>_rb_shadow_…`, a standby): dropping
by prefix drops it all.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.rows import TupleRow

ADMIN_URL = os.environ.get("ROLLBACK_TEST_PG_ADMIN", "postgresql://postgres@127.0.0.1:5432/postgres")
PREFIX = "rbbench_"
GOOD_MIGRATION = "20261101_init"
BAD_MIGRATION = "20261120_new_pricing"
APP_TABLES = ("customers", "products", "orders", "order_items", "events", "schema_migrations")
BATCH_CUSTOMERS = 100_000  # one INSERT … SELECT per table per batch
GUESS_BYTES_PER_CUSTOMER = 3_850  # rows and indexes, measured on PostgreSQL 15; topped up if short
EMPTY_DB_BYTES = 7_600_000  # pg_database_size of a new database

SCHEMA = """
CREATE TABLE schema_migrations (version text PRIMARY KEY, applied_at timestamptz NOT NULL);
CREATE TABLE customers (id bigint NOT NULL, email text NOT NULL, name text NOT NULL, country text NOT NULL,
    created_at timestamptz NOT NULL, profile jsonb NOT NULL);
CREATE TABLE products (id bigint NOT NULL, sku text NOT NULL, name text NOT NULL, price numeric(10,2) NOT NULL);
CREATE TABLE orders (id bigint NOT NULL, customer_id bigint NOT NULL, status text NOT NULL,
    total numeric(12,2) NOT NULL, created_at timestamptz NOT NULL);
CREATE TABLE order_items (id bigint NOT NULL, order_id bigint NOT NULL, product_id bigint NOT NULL,
    qty integer NOT NULL, unit_price numeric(10,2) NOT NULL);
CREATE TABLE events (id bigint NOT NULL, customer_id bigint NOT NULL, kind text NOT NULL, payload jsonb NOT NULL,
    created_at timestamptz NOT NULL);
INSERT INTO schema_migrations VALUES ('20261001_baseline', '2026-10-01'), ('{good}', '2026-11-01');
INSERT INTO products SELECT i, 'SKU-' || lpad(i::text, 6, '0'), 'Product ' || substr(md5(i::text), 1, 12),
    round(1 + (i * 7919 % 20000) / 100.0, 2) FROM generate_series(1, 10000) i;
"""

# One batch: customers a..b and everything that belongs to them ({a}, {b} are literal integers).
BATCH = [
    """INSERT INTO customers SELECT i, 'user' || i || '@example.com',
        initcap(substr(md5(i::text), 1, 8)) || ' ' || initcap(substr(md5((i + 7)::text), 1, 11)),
        (ARRAY['US','GB','DE','FR','NL','SE','JP','BR'])[1 + i % 8],
        timestamptz '2024-01-01' + (i % 700) * interval '1 day' + (i % 86400) * interval '1 second',
        jsonb_build_object('plan', (ARRAY['free','pro','team'])[1 + i % 3], 'newsletter', i % 2 = 0,
            'tags', jsonb_build_array('t' || i % 13, 't' || i % 7), 'ref', substr(md5((i * 3)::text), 1, 16))
        FROM generate_series({a}::bigint, {b}) i""",
    """INSERT INTO orders SELECT i, (i + 3) / 4, (ARRAY['paid','shipped','delivered','refunded'])[1 + i % 4],
        round(5 + (i * 7919 % 100000) / 100.0, 2),
        timestamptz '2024-01-01' + (i % 700) * interval '1 day' + (i % 3600) * interval '1 second'
        FROM generate_series(4 * {a}::bigint - 3, 4 * {b}) i""",
    """INSERT INTO order_items SELECT i, (i + 2) / 3, 1 + i * 31 % 10000, 1 + i % 5, round(1 + (i * 104729 % 20000)
        / 100.0, 2) FROM generate_series(12 * {a}::bigint - 11, 12 * {b}) i""",
    """INSERT INTO events SELECT i, (i + 5) / 6, (ARRAY['login','view','cart','checkout','search','logout'])[1 + i % 6],
        jsonb_build_object('ip', '10.' || i % 250 || '.' || i % 199 || '.' || i % 97, 'path',
            '/shop/' || substr(md5(i::text), 1, 10), 'ua', 'Mozilla/5.0 (X11; Linux x86_64) rb/' || i % 40,
            'ms', i % 977, 'session', md5((i / 6)::text)),
        timestamptz '2024-01-01' + (i % 700) * interval '1 day' + (i % 86400) * interval '1 second'
        FROM generate_series(6 * {a}::bigint - 5, 6 * {b}) i""",
]

CONSTRAINTS = [
    "ALTER TABLE customers ADD PRIMARY KEY (id)",
    "ALTER TABLE products ADD PRIMARY KEY (id)",
    "ALTER TABLE orders ADD PRIMARY KEY (id)",
    "ALTER TABLE order_items ADD PRIMARY KEY (id)",
    "ALTER TABLE events ADD PRIMARY KEY (id)",
    "CREATE UNIQUE INDEX customers_email_key ON customers (email)",
    "CREATE INDEX customers_country_idx ON customers (country)",
    "CREATE UNIQUE INDEX products_sku_key ON products (sku)",
    "CREATE INDEX orders_customer_id_idx ON orders (customer_id)",
    "CREATE INDEX orders_created_at_idx ON orders (created_at)",
    "CREATE INDEX order_items_order_id_idx ON order_items (order_id)",
    "CREATE INDEX events_customer_created_idx ON events (customer_id, created_at)",
    "ALTER TABLE orders ADD CONSTRAINT orders_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id)",
    "ALTER TABLE order_items ADD CONSTRAINT order_items_order_fk FOREIGN KEY (order_id) REFERENCES orders (id)",
    "ALTER TABLE order_items ADD CONSTRAINT order_items_product_fk FOREIGN KEY (product_id) REFERENCES products (id)",
    "ALTER TABLE events ADD CONSTRAINT events_customer_fk FOREIGN KEY (customer_id) REFERENCES customers (id)",
]

# The bad release's migration and the damage it does once live. `promotions` has no foreign key on
# purpose: the seed's `pg_restore --clean` cannot drop a table its dump does not hold, and a foreign
# key into a table it does drop would make that restore fail outright.
BAD_DEPLOY = f"""
ALTER TABLE orders ADD COLUMN discount_pct numeric(5,2) NOT NULL DEFAULT 0;
CREATE TABLE promotions (id bigint PRIMARY KEY, code text NOT NULL, pct numeric(5,2) NOT NULL);
INSERT INTO promotions SELECT i, 'SPRING' || i, 19 FROM generate_series(1, 100) i;
UPDATE orders SET total = round(total * 0.81, 2), discount_pct = 19 WHERE id % 10 = 0;
INSERT INTO schema_migrations VALUES ('{BAD_MIGRATION}', '2026-11-20');
"""

# The downtime probe's query: the app's tables answer, with their first rows in them. It fails (error or
# false) while `pg_restore --clean` has dropped a table or not yet loaded it.
PROBE_QUERY = (
    "SELECT EXISTS (SELECT 1 FROM customers WHERE id = 1) AND EXISTS (SELECT 1 FROM orders WHERE id = 1)"
    " AND EXISTS (SELECT 1 FROM order_items WHERE id = 1) AND EXISTS (SELECT 1 FROM events WHERE id = 1)"
)


@dataclass(frozen=True)
class Fingerprint:
    """What tells the good state from the bad one, and that the data is all there."""

    migrations: tuple[str, ...]
    order_columns: tuple[str, ...]
    orders: int
    orders_total: str
    max_ids: tuple[tuple[str, int], ...]
    tables: frozenset[str]

    def differences(self, wanted: Fingerprint) -> list[str]:
        """What differs from `wanted`, in words; tables beyond wanted's are left out (see `extra_tables`)."""
        problems = []
        if self.migrations != wanted.migrations:
            problems.append(f"schema_migrations is {list(self.migrations)}, expected {list(wanted.migrations)}")
        if self.order_columns != wanted.order_columns:
            problems.append(f"orders has columns {list(self.order_columns)}, expected {list(wanted.order_columns)}")
        if (self.orders, self.orders_total) != (wanted.orders, wanted.orders_total):
            problems.append(
                f"orders: {self.orders} rows totalling {self.orders_total}, expected {wanted.orders} "
                f"totalling {wanted.orders_total}"
            )
        if self.max_ids != wanted.max_ids:
            problems.append(f"last ids {dict(self.max_ids)}, expected {dict(wanted.max_ids)}")
        missing = wanted.tables - self.tables
        if missing:
            problems.append(f"tables missing: {', '.join(sorted(missing))}")
        return problems

    def extra_tables(self, wanted: Fingerprint) -> list[str]:
        return sorted(self.tables - wanted.tables)


def db_url(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def admin() -> psycopg.Connection[TupleRow]:
    return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=10)


def create_from(name: str, template: str) -> None:
    """A copy of `template` (FILE_COPY: a file copy between checkpoints, not the whole database through WAL)."""
    with admin() as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {} STRATEGY FILE_COPY").format(
                sql.Identifier(name), sql.Identifier(template)
            )
        )


def drop(name: str) -> None:
    with admin() as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def names_like(prefix: str, *, anywhere: bool = False) -> list[str]:
    """Databases whose name starts with `prefix` (or holds it anywhere)."""
    pattern = ("%" if anywhere else "") + prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"
    with admin() as conn:
        return [str(r[0]) for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (pattern,))]


def drop_prefix(prefix: str) -> list[str]:
    """Drop every database whose name holds `prefix` (the run's own, and whatever the bot made beside them)."""
    names = names_like(prefix, anywhere=True)
    for name in names:
        drop(name)
    return names


def drop_stale() -> list[str]:
    """Databases of earlier benchmark runs on this host whose process is gone (a kill -9 leaves them)."""
    dropped = []
    for name in names_like(PREFIX):
        match = re.match(rf"{PREFIX}(\d+)_", name)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            drop(name)
            dropped.append(name)
    return dropped


def checkpoint() -> None:
    """Flush what earlier work left dirty, so no checkpoint of it lands in the middle of a timed way."""
    with admin() as conn:
        conn.execute("CHECKPOINT")


def database_size(name: str) -> int:
    with admin() as conn:
        row = conn.execute("SELECT pg_database_size(%s)", (name,)).fetchone()
    return int(row[0]) if row else 0


def generate(name: str, target_bytes: int, say: Callable[[str], None]) -> int:
    """Create database `name` holding the good state, about `target_bytes` big; return how many customers."""
    with admin() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(db_url(name), autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        conn.execute("SET maintenance_work_mem = '256MB'")
        conn.execute(SCHEMA.format(good=GOOD_MIGRATION).encode())
        base = database_size(name)
        customers = max(1000, int((target_bytes - base) * 0.97 / GUESS_BYTES_PER_CUSTOMER))
        _load(conn, 1, customers, say)
        say(f"   building indexes and foreign keys on {customers:,} customers…")
        for statement in CONSTRAINTS:
            conn.execute(statement.encode())
        size = database_size(name)
        per_customer = max(1.0, (size - base) / customers)
        while size < target_bytes * 0.97:  # the guess was low: top up, indexes in place now
            more = max(1000, int((target_bytes - size) / per_customer))
            _load(conn, customers + 1, customers + more, say)
            customers += more
            size = database_size(name)
        conn.execute("VACUUM (ANALYZE)")
    return customers


def _load(conn: psycopg.Connection[TupleRow], first: int, last: int, say: Callable[[str], None]) -> None:
    for a in range(first, last + 1, BATCH_CUSTOMERS):
        b = min(last, a + BATCH_CUSTOMERS - 1)
        say(f"   loading customers {a:,}…{b:,} of {last:,}")
        for statement in BATCH:
            conn.execute(statement.format(a=a, b=b).encode())


def deploy_bad(name: str) -> None:
    with psycopg.connect(db_url(name), autocommit=True) as conn:
        conn.execute(BAD_DEPLOY.encode())
        conn.execute("VACUUM (ANALYZE)")  # as autovacuum would soon; every way starts from the same pages


def fingerprint(name: str) -> Fingerprint:
    with psycopg.connect(db_url(name), autocommit=True, connect_timeout=10) as conn:
        migrations = tuple(str(r[0]) for r in conn.execute("SELECT version FROM schema_migrations ORDER BY 1"))
        columns = tuple(
            str(r[0])
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
                "AND table_name = 'orders' ORDER BY ordinal_position"
            )
        )
        row = conn.execute("SELECT count(*), coalesce(sum(total), 0)::text FROM orders").fetchone()
        assert row is not None
        max_ids = []
        for table in APP_TABLES[:-1]:
            top = conn.execute(sql.SQL("SELECT coalesce(max(id), 0) FROM {}").format(sql.Identifier(table))).fetchone()
            max_ids.append((table, int(top[0]) if top else 0))
        tables = frozenset(
            str(r[0]) for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        )
    return Fingerprint(migrations, columns, int(row[0]), str(row[1]), tuple(max_ids), tables)


def server_version() -> str:
    with admin() as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]).split(" ")[0] if row else "?"
