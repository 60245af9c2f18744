"""Extension versions, which pg_dump does not record: the restored database gets the live one's.

A dump says `CREATE EXTENSION IF NOT EXISTS hstore WITH SCHEMA public`, which installs the server's
default version: for a database created on an older server and upgraded since, a newer one than the
application runs against, and ALTER EXTENSION cannot in general go back down. So when an extension of
the dump has another version in the live database, the restore loads the dump in two parts: first
everything up to the last extension (schemas, extensions), then, once each extension is at the live
version (ALTER EXTENSION … UPDATE TO, or, since nothing depends on it yet, dropped and created again at
that version), the rest. An extension the live database no longer has gets the default version.
"""

from __future__ import annotations

import re

import psycopg
from psycopg import sql

from bot.backends.dbtools import one_line

Conn = psycopg.Connection[tuple[object, ...]]

_EXTENSION = re.compile(r"^\d+; 3079 \d+ EXTENSION - (.*?) ?$")  # 3079: pg_extension's oid in pg_class
_COMMENT = re.compile(r"^\d+; 0 0 COMMENT - ")


def in_toc(toc: list[str]) -> list[str]:
    """The extensions a `pg_restore --list` creates."""
    return [m.group(1) for m in map(_EXTENSION.match, toc) if m]


def installed(conn: Conn) -> dict[str, str]:
    """Extension → version, on a connection to the database itself (pg_extension is per database)."""
    return {str(name): str(version) for name, version in conn.execute("SELECT extname, extversion FROM pg_extension")}


def to_pin(conn: Conn, live: dict[str, str], toc: list[str]) -> dict[str, str]:
    """The dump's extensions that a plain restore would install at another version than the live one's."""
    names = [name for name in in_toc(toc) if name in live]
    defaults = {
        str(name): str(version)
        for name, version in conn.execute(
            "SELECT name, default_version FROM pg_available_extensions WHERE name = ANY(%s)", (names,)
        )
    }
    return {name: live[name] for name in names if defaults.get(name) != live[name]}


def split(toc: list[str]) -> tuple[list[str], list[str]]:
    """(up to the last extension, the rest); comments move to the rest, where a re-created extension's
    comment is still to come."""
    last = max((i for i, line in enumerate(toc) if _EXTENSION.match(line)), default=-1)
    head = [line for line in toc[: last + 1] if not _COMMENT.match(line)]
    tail = [line for line in toc[: last + 1] if _COMMENT.match(line)] + toc[last + 1 :]
    return head, tail


def pin(conn: Conn, wanted: dict[str, str]) -> dict[str, str]:
    """Set each extension to its wanted version, in a database that holds nothing else yet.

    Returns extension → why it could not be.
    """
    failed: dict[str, str] = {}
    for name, version in sorted(wanted.items()):
        row = conn.execute(
            "SELECT extversion, extnamespace::regnamespace::text FROM pg_extension WHERE extname = %s", (name,)
        ).fetchone()
        if row is None or row[0] == version:
            continue
        ext, target = sql.Identifier(name), sql.Literal(version)
        try:
            conn.execute(sql.SQL("ALTER EXTENSION {} UPDATE TO {}").format(ext, target))
            continue
        except psycopg.Error:
            pass  # most often a way down, which extensions do not ship: create it afresh instead
        try:
            with conn.transaction():
                conn.execute(sql.SQL("DROP EXTENSION {}").format(ext))
                conn.execute(
                    sql.SQL("CREATE EXTENSION {} WITH SCHEMA {} VERSION {}").format(ext, sql.SQL(str(row[1])), target)
                )
        except psycopg.Error as exc:
            failed[name] = one_line(exc)
    return failed


def mismatches(live: dict[str, str], restored: dict[str, str], why: dict[str, str]) -> list[str]:
    """Warnings for the extensions of both databases whose versions differ."""
    return [
        f"extension {name} is at version {restored[name]} in the restored database, {live[name]} in the live one"
        + (f" ({why[name]})" if name in why else "")
        for name in sorted(live.keys() & restored.keys())
        if live[name] != restored[name]
    ]
