"""Pick the database backend an environment's `engine` names.

Each backend is imported only when named: a PostgreSQL rollback never loads PyMySQL (about 130 ms of a
terminal run's start-up), nor a MySQL one psycopg.
"""

from __future__ import annotations

from bot.backends.base import Database
from bot.errors import BadRequest, NotSupported

ENGINES = ("postgres", "mysql", "sqlite")
_ALIASES = {"postgresql": "postgres", "mariadb": "mysql", "sqlite3": "sqlite"}


def open_database(*, engine: str, url: str, compress: int = 1) -> Database:
    """A backend for `url`; the URL is checked for shape here but no connection is made.

    `compress` is pg_dump's level (PostgreSQL only: mysqldump writes SQL, SQLite copies pages).
    """
    name = engine.strip().lower()
    name = _ALIASES.get(name, name)
    if not url:
        raise BadRequest(
            f"no database URL was given for the {name or 'database'} engine",
            hint="set the variable the environment's url_env names",
        )
    if name == "postgres":
        from bot.backends.postgres import PostgresDatabase

        return PostgresDatabase(url, compress=compress)
    if name == "mysql":
        from bot.backends.mysql import MySQLDatabase

        return MySQLDatabase(url)
    if name == "sqlite":
        from bot.backends.sqlite import SQLiteDatabase

        return SQLiteDatabase(url)
    if name in ("", "none"):
        raise BadRequest(
            'this environment has no database (engine = "none")',
            hint="use --db none, or set engine to one of " + ", ".join(ENGINES),
        )
    raise NotSupported(
        f"database engine {engine!r} is not supported",
        hint="use one of " + ", ".join(ENGINES) + ", or restore this database by hand",
    )
