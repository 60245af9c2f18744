"""The destructive-SQL scan: SQL files, Alembic, Django and Rails migrations, and a real git range."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.backends.git import GitRepo
from bot.engine.migrations import (
    MigrationRisk,
    is_migration_file,
    scan_between,
    scan_file,
    scan_python,
    scan_ruby,
    scan_sql,
)
from sandbox.repo import build_sandbox_repo


def kinds(sql: str) -> list[str]:
    return [r.kind for r in scan_sql(sql, file="m.sql")]


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("DROP TABLE audit_old;", "DROP TABLE"),
        ('drop table if exists "public"."audit_old" cascade;', "DROP TABLE"),
        ('ALTER TABLE "orders" DROP COLUMN "legacy_ref";', "DROP COLUMN"),
        ("alter table orders drop legacy_ref;", "DROP COLUMN"),
        ("ALTER TABLE IF EXISTS ONLY orders DROP COLUMN IF EXISTS a;", "DROP COLUMN"),
        ("ALTER TABLE users ALTER COLUMN email TYPE varchar(100);", "ALTER COLUMN TYPE"),
        ("ALTER TABLE users ALTER COLUMN email SET DATA TYPE text USING email::text;", "ALTER COLUMN TYPE"),
        ("ALTER TABLE users MODIFY COLUMN age bigint NOT NULL;", "ALTER COLUMN TYPE"),
        ("ALTER TABLE users CHANGE COLUMN nm name varchar(50);", "ALTER COLUMN TYPE"),
        ("ALTER TABLE users RENAME TO customers;", "RENAME"),
        ("ALTER TABLE users RENAME COLUMN nm TO name;", "RENAME"),
        ("RENAME TABLE users TO customers;", "RENAME"),
        ("TRUNCATE TABLE sessions;", "TRUNCATE"),
        ("DELETE FROM sessions;", "DELETE without WHERE"),
        ("DROP INDEX CONCURRENTLY orders_customer_idx;", "DROP INDEX"),
        ("DROP SCHEMA legacy CASCADE;", "DROP SCHEMA"),
        ("DROP DATABASE shop_old;", "DROP DATABASE"),
        ("DROP MATERIALIZED VIEW sales;", "DROP VIEW"),
        ("DROP VIEW v_orders;", "DROP VIEW"),
        ("ALTER TABLE events DROP PARTITION p2023;", "DROP PARTITION"),
    ],
)
def test_each_destructive_kind(sql: str, kind: str) -> None:
    assert kinds(sql) == [kind]


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE t (id int PRIMARY KEY, note text DEFAULT 'DROP TABLE x; TRUNCATE y');",
        "ALTER TABLE orders ADD COLUMN discount numeric(5,2);",
        "DELETE FROM sessions WHERE expires_at < now();",
        "delete from sessions\nwhere id in (select id from old);",
        "INSERT INTO notes (body) VALUES ('a; DROP TABLE users; --'), ('/* x */');",
        "UPDATE orders SET total = 0 WHERE id = 1;",
        "CREATE INDEX orders_customer_idx ON orders (customer);",
        "ALTER TABLE orders DROP CONSTRAINT orders_fk;",
        "ALTER TABLE users ALTER COLUMN email SET NOT NULL;",
        "ALTER TABLE users RENAME CONSTRAINT a TO b;",
        "-- DROP TABLE users;\n/* TRUNCATE sessions; */\n",
        "/* outer /* DROP TABLE nested; */ still a comment; DELETE FROM x; */ SELECT 1;",
        "CREATE FUNCTION f() RETURNS void AS $fn$ BEGIN DELETE FROM cache; END $fn$ LANGUAGE plpgsql;",
        'SELECT "weird;name" FROM t; SELECT `DROP TABLE x`;',
        "SELECT E'it\\'s; DROP TABLE no';",
        "",
        "   \n-- only a comment\n",
    ],
)
def test_harmless_sql_is_not_flagged(sql: str) -> None:
    assert kinds(sql) == []


def test_statement_text_and_lines() -> None:
    sql = (
        "-- Prisma migration\n"
        "INSERT INTO log VALUES ('x;\ny');\n"
        'ALTER TABLE  "orders"\n'
        '    DROP COLUMN "legacy_ref", -- no longer read\n'
        "    ADD COLUMN ref text;\n"
        "\n"
        "DROP TABLE audit_old; TRUNCATE t;\n"
    )
    risks = scan_sql(sql, file="prisma/migrations/1/migration.sql")
    assert risks == [
        MigrationRisk(
            file="prisma/migrations/1/migration.sql",
            statement='ALTER TABLE "orders" DROP COLUMN "legacy_ref", ADD COLUMN ref text',
            kind="DROP COLUMN",
            line=4,
        ),
        MigrationRisk(
            file="prisma/migrations/1/migration.sql",
            statement="DROP TABLE audit_old",
            kind="DROP TABLE",
            line=8,
        ),
        MigrationRisk(file="prisma/migrations/1/migration.sql", statement="TRUNCATE t", kind="TRUNCATE", line=8),
    ]


def test_one_statement_with_several_destructive_actions() -> None:
    risks = scan_sql("ALTER TABLE t DROP COLUMN a, DROP COLUMN b, RENAME TO u;", file="m.sql")
    assert [r.kind for r in risks] == ["DROP COLUMN", "RENAME"]


def test_long_statements_are_trimmed() -> None:
    sql = "DELETE FROM t USING " + ", ".join(f"table_{i}" for i in range(100)) + ";"
    (risk,) = scan_sql(sql, file="m.sql")
    assert len(risk.statement) <= 300 and risk.statement.endswith("…")


def test_do_block_bodies_are_scanned() -> None:
    sql = "SELECT 1;\nDO $$\nBEGIN\n  DROP TABLE inside_do;\nEND\n$$;\n"
    assert [(r.kind, r.line, r.statement) for r in scan_sql(sql, file="m.sql")] == [
        ("DROP TABLE", 4, "DROP TABLE inside_do")
    ]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("prisma/migrations/20261120_drop_legacy/migration.sql", True),
        ("db/schema.sql", True),
        ("alembic/versions/3f2a_drop_legacy.py", True),
        ("service/migrations/versions/3f2a_drop_legacy.py", True),
        ("shop/migrations/0042_remove_legacy.py", True),
        ("db/migrate/20261120093000_drop_legacy.rb", True),
        ("shop/migrations/__init__.py", False),
        ("app/orders.py", False),
        ("alembic/env.py", False),
        ("db/seeds.rb", False),
        ("README.md", False),
    ],
)
def test_is_migration_file(path: str, expected: bool) -> None:
    assert is_migration_file(path) is expected


ALEMBIC = '''"""drop legacy columns

Revision ID: 3f2a
"""
from alembic import op
import sqlalchemy as sa


def upgrade() -> None:
    op.drop_column("orders", "legacy_ref")
    op.drop_table("audit_old")
    op.alter_column("users", "email", type_=sa.String(100), existing_type=sa.Text())
    op.alter_column("users", "bio", nullable=True)
    op.rename_table("carts", "baskets")
    op.create_table("coupons", sa.Column("id", sa.Integer, primary_key=True))
    op.execute("""
        UPDATE users SET tier = 'gold' WHERE spend > 1000;
        DELETE FROM sessions;
    """)
    op.execute(sa.text("DELETE FROM tokens WHERE expired"))
    # op.drop_table("only_in_a_comment")


def downgrade() -> None:
    op.drop_table("coupons")
    op.execute("TRUNCATE never_in_upgrade")
'''


def test_alembic_upgrade_is_scanned_and_downgrade_is_not() -> None:
    risks = scan_python(ALEMBIC, file="alembic/versions/3f2a_drop_legacy.py")
    assert [(r.kind, r.line) for r in risks] == [
        ("DROP COLUMN", 10),
        ("DROP TABLE", 11),
        ("ALTER COLUMN TYPE", 12),
        ("RENAME", 14),
        ("DELETE without WHERE", 18),
    ]
    assert risks[0].statement == 'op.drop_column("orders", "legacy_ref")'
    assert risks[-1].statement == "DELETE FROM sessions"


DJANGO = """from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("shop", "0041_order_total")]

    operations = [
        migrations.RemoveField(model_name="order", name="legacy_ref"),
        migrations.DeleteModel(name="AuditOld"),
        migrations.AlterField(
            model_name="order",
            name="total",
            field=models.DecimalField(max_digits=12, decimal_places=2),
        ),
        migrations.RenameField(model_name="order", old_name="cust", new_name="customer"),
        migrations.RenameModel("Cart", "Basket"),
        migrations.AddField(model_name="order", name="note", field=models.TextField(default="")),
        migrations.RunSQL("TRUNCATE shop_cache;", reverse_sql="DROP TABLE never;"),
        migrations.RunSQL("SELECT 1;", "DROP TABLE never_either;"),
    ]
"""


def test_django_operations() -> None:
    risks = scan_python(DJANGO, file="shop/migrations/0042_cleanup.py")
    assert [(r.kind, r.line) for r in risks] == [
        ("DROP COLUMN", 8),
        ("DROP TABLE", 9),
        ("ALTER COLUMN TYPE", 10),
        ("RENAME", 15),
        ("RENAME", 16),
        ("TRUNCATE", 18),
    ]


def test_unparsable_python_falls_back_to_names() -> None:
    risks = scan_python("def upgrade(:\n    op.drop_table('x')\n", file="alembic/versions/x.py")
    assert [(r.kind, r.line) for r in risks] == [("DROP TABLE", 2)]


RAILS = """class DropLegacy < ActiveRecord::Migration[7.1]
  def up
    remove_column :orders, :legacy_ref
    drop_table :audit_old
    change_column :users, :email, :string, limit: 100
    rename_column :users, :nm, :name
    add_column :users, :tier, :string
    change_column_default :users, :tier, "basic"
    # drop_table :only_in_a_comment
    change_table :carts do |t|
      t.remove :coupon
      t.rename :qty, :quantity
    end
    execute <<~SQL
      UPDATE users SET tier = 'gold' WHERE spend > 1000;
      TRUNCATE sessions;
    SQL
    execute "DELETE FROM tokens"
  end

  def down
    create_table :audit_old
    drop_table :never_in_up
  end
end
"""


def test_rails_up_is_scanned_and_down_is_not() -> None:
    risks = scan_ruby(RAILS, file="db/migrate/20261120093000_drop_legacy.rb")
    assert [(r.kind, r.line) for r in risks] == [
        ("DROP COLUMN", 3),
        ("DROP TABLE", 4),
        ("ALTER COLUMN TYPE", 5),
        ("RENAME", 6),
        ("DROP COLUMN", 11),
        ("RENAME", 12),
        ("TRUNCATE", 16),
        ("DELETE without WHERE", 18),
    ]
    assert risks[0].statement == "remove_column :orders, :legacy_ref"


def test_scan_file_dispatches_on_extension() -> None:
    assert [r.kind for r in scan_file("DROP TABLE x;", file="a.sql")] == ["DROP TABLE"]
    assert [r.kind for r in scan_file("drop_table :x\n", file="db/migrate/1_x.rb")] == ["DROP TABLE"]
    assert [r.kind for r in scan_file("op.drop_table('x')\n", file="alembic/versions/1.py")] == ["DROP TABLE"]


# --- on a real repository ---------------------------------------------------------------------------


def test_scan_between_finds_the_bad_release_migration(tmp_path: Path) -> None:
    sandbox = build_sandbox_repo(tmp_path / "sandbox")
    repo = GitRepo(repo=str(sandbox.clone), remote="production", branch="release", work_dir=tmp_path / "work")
    risks = scan_between(repo, older=sandbox.good, newer=sandbox.bad)
    path = "prisma/migrations/20261120_drop_legacy/migration.sql"
    assert risks == [
        MigrationRisk(file=path, statement='ALTER TABLE "orders" DROP COLUMN "legacy_ref"', kind="DROP COLUMN", line=3),
        MigrationRisk(file=path, statement='DROP TABLE "audit_old"', kind="DROP TABLE", line=6),
    ]
    # The good release's own migration creates tables (with a ';' inside a string): nothing to flag.
    first = repo.first_parent(sandbox.good).sha
    assert scan_between(repo, older=first, newer=sandbox.good) == []


def test_scan_between_skips_files_deleted_by_newer(tmp_path: Path) -> None:
    sandbox = build_sandbox_repo(tmp_path / "sandbox")
    repo = GitRepo(repo=sandbox.remote_url, remote="production", branch="release", work_dir=tmp_path / "work")
    reverted = repo.revert_to(deployed=sandbox.bad, target=sandbox.good, message="Roll back").new_head
    assert "prisma/migrations/20261120_drop_legacy/migration.sql" in repo.changed_files(sandbox.bad, reverted)
    assert scan_between(repo, older=sandbox.bad, newer=reverted) == []
