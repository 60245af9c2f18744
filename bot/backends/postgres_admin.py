"""The SQL half of the PostgreSQL backend: shadow databases and the rename swap (the database's own
properties: postgres_properties; extension versions: postgres_extensions).

Everything here runs on a connection to the maintenance database (never to the live one, which must
be left without sessions for the rename), in autocommit unless a transaction is opened explicitly.
Identifiers always go through psycopg.sql.Identifier; values through parameters or sql.Literal.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow

from bot.backends.dbtools import fit_name, one_line
from bot.errors import DatabaseError
from bot.redact import register_secret

Conn = psycopg.Connection[TupleRow]

PG_NAME_MAX = 63  # NAMEDATALEN - 1: longer names are silently truncated by the server, so we do it first


def parse_url(url: str) -> dict[str, str]:
    """libpq's own reading of a postgresql:// URL (query parameters such as sslmode included)."""
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.split("+")[0] not in ("postgresql", "postgres"):
        raise DatabaseError(
            "the database URL is not a postgresql:// URL", hint="use postgresql://user:password@host:port/dbname"
        )
    try:
        params = {k: str(v) for k, v in conninfo_to_dict(f"postgresql://{rest}").items() if v is not None}
    except psycopg.Error as exc:
        raise DatabaseError(
            f"the database URL cannot be read: {one_line(exc)}",
            hint="use postgresql://user:password@host:port/dbname (percent-encode special characters)",
        ) from None
    register_secret(params.get("password"))
    register_secret(params.get("sslpassword"))
    if "sslpassword" in params:
        raise DatabaseError(
            "the database URL carries sslpassword, which the bot cannot pass to pg_dump without putting it"
            " on a command line",
            hint="use an unencrypted client key readable only by the bot, or a libpq service file",
        )
    if not params.get("dbname"):
        raise DatabaseError("the database URL names no database", hint="end it with /dbname")
    return params


def owners_in_toc(toc: list[str]) -> set[str]:
    """The roles owning the entries of a `pg_restore --list` (owner is the last word of a line)."""
    owners = set()
    for line in toc:
        head, _, owner = line.rpartition(" ")
        if head and owner:  # an entry with no owner ends in a space: nothing to assign
            owners.add(owner)
    return owners


@dataclass(frozen=True)
class DbInfo:
    name: str
    oid: int
    owner: str
    encoding: str
    collate: str
    ctype: str
    locale_provider: str  # "c" (libc) or "i" (ICU); "c" before PostgreSQL 15
    icu_locale: str | None
    tablespace: str


class SessionsRemain(Exception):
    """Sessions on a database would not go away (we may not be allowed to terminate them)."""

    def __init__(self, database: str, sessions: list[str]) -> None:
        super().__init__(f"{len(sessions)} session(s) still connected to {database}")
        self.database = database
        self.sessions = sessions


def database_info(conn: Conn, name: str) -> DbInfo | None:
    version = conn.info.server_version
    locale = "NULL"
    if version >= 170000:
        locale = "d.datlocale"
    elif version >= 150000:
        locale = "d.daticulocale"
    provider = "d.datlocprovider::text" if version >= 150000 else "'c'"
    row = conn.execute(
        sql.SQL(
            "SELECT d.datname, d.oid::int, pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding),"
            " d.datcollate, d.datctype, {provider}, {locale}, t.spcname"
            " FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname = %s"
        ).format(provider=sql.SQL(provider), locale=sql.SQL(locale)),
        (name,),
    ).fetchone()
    if row is None:
        return None
    return DbInfo(
        name=str(row[0]),
        oid=int(row[1]),
        owner=str(row[2]),
        encoding=str(row[3]),
        collate=str(row[4]),
        ctype=str(row[5]),
        locale_provider=str(row[6]),
        icu_locale=None if row[7] is None else str(row[7]),
        tablespace=str(row[8]),
    )


def exists(conn: Conn, name: str) -> bool:
    return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def free_name(conn: Conn, base: str, suffix: str) -> str:
    """`base + suffix` cut to 63 bytes, with _2, _3, … appended until no database has that name."""
    name = fit_name(base, suffix, max_bytes=PG_NAME_MAX)
    counter = 2
    while exists(conn, name):
        name = fit_name(base, f"{suffix}_{counter}", max_bytes=PG_NAME_MAX)
        counter += 1
    return name


def current_role(conn: Conn) -> tuple[str, bool]:
    row = conn.execute("SELECT current_user::text, rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()
    return (str(row[0]), bool(row[1])) if row else ("", False)


def can_assign_owners(conn: Conn, owners: set[str]) -> list[str]:
    """The owners among `owners` that a restore by the current role could not give objects back to."""
    _, superuser = current_role(conn)
    wanted = sorted(owners - {"pg_database_owner"})  # a pseudo-role: whoever owns the database
    rows = conn.execute(
        "SELECT rolname, pg_has_role(current_user, oid, 'MEMBER') FROM pg_roles WHERE rolname = ANY(%s)",
        (wanted,),
    ).fetchall()
    usable = {str(name) for name, member in rows if superuser or member}
    return [owner for owner in wanted if owner not in usable]


def create_shadow(conn: Conn, name: str, like: DbInfo) -> list[str]:
    """Create an empty database with the live one's encoding, locale, tablespace and (if we may) owner.

    template0 because the dump recreates everything a template would bring (extensions, plpgsql, …)
    and the encoding or locale may differ from template1's. Returns warnings (none so far: an owner it
    may not assign is named by postgres_properties.carry_over, which tries again once the dump is in).
    """
    options = [
        sql.SQL("TEMPLATE template0 ENCODING {} LC_COLLATE {} LC_CTYPE {}").format(
            sql.Literal(like.encoding), sql.Literal(like.collate), sql.Literal(like.ctype)
        )
    ]
    if like.locale_provider == "i" and like.icu_locale:
        options.append(sql.SQL("LOCALE_PROVIDER icu ICU_LOCALE {}").format(sql.Literal(like.icu_locale)))
    if like.tablespace != "pg_default":
        options.append(sql.SQL("TABLESPACE {}").format(sql.Identifier(like.tablespace)))
    me, _ = current_role(conn)
    create = sql.SQL("CREATE DATABASE {} ").format(sql.Identifier(name)) + sql.SQL(" ").join(options)
    if like.owner == me:
        conn.execute(create)
        return []
    try:
        # The app's role must keep owning its database after the swap, or its migrations break.
        conn.execute(create + sql.SQL(" OWNER {}").format(sql.Identifier(like.owner)))
        return []
    except psycopg.errors.InsufficientPrivilege:
        conn.execute(create)  # postgres_properties.carry_over tries again, and names the owner if it cannot
        return []


def set_allow_connections(conn: Conn, name: str, allow: bool) -> None:
    conn.execute(
        sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
            sql.Identifier(name), sql.SQL("true" if allow else "false")
        )
    )


def disconnect_others(conn: Conn, name: str, *, timeout_s: float) -> int:
    """Terminate every session on `name` but ours; return how many were terminated.

    Autovacuum workers are left to the server (RENAME/DROP stop them itself, and only a superuser may
    signal them). Raises SessionsRemain naming who is left if they outlive `timeout_s`.
    """
    where = "datname = %s AND coalesce(backend_type, 'client backend') <> 'autovacuum worker'"
    terminated, left = _terminate_until_gone(conn, where, (name,), timeout_s=timeout_s)
    if left:
        raise SessionsRemain(name, left)
    return terminated


def end_statements_naming(conn: Conn, name: str, *, timeout_s: float) -> int:
    """Terminate every other session whose running statement names `name`; return how many were.

    A DROP is let finish: what follows drops IF EXISTS, and an interrupted DROP DATABASE is better not
    made. Those still running after `timeout_s` are left (only sessions of our own role are visible).
    """
    where = "state <> 'idle' AND position(%s in query) > 0 AND NOT starts_with(upper(ltrim(query)), 'DROP')"
    terminated, _left = _terminate_until_gone(conn, where, (name,), timeout_s=timeout_s)
    return terminated


def _terminate_until_gone(
    conn: Conn, where: str, params: tuple[str, ...], *, timeout_s: float
) -> tuple[int, list[str]]:
    """Terminate the sessions `where` selects (never ours) until none is left or `timeout_s` passes.
    → (how many were terminated, the ones left, described)."""
    query = (
        "SELECT pid, coalesce(usename, ''), coalesce(application_name, ''),"
        " coalesce(client_addr::text, 'local')"
        f" FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND {where}"
    )
    terminated: set[int] = set()
    refused: dict[int, str] = {}
    deadline = time.monotonic() + timeout_s
    while True:
        rows = conn.execute(query, params).fetchall()  # `where` is one of the constants above
        if not rows:
            return len(terminated), []
        if time.monotonic() >= deadline:
            return len(terminated), [
                f"pid {pid} ({user or '?'}, {app or 'no application_name'}, from {addr})"
                + (f": {refused[int(pid)]}" if int(pid) in refused else "")
                for pid, user, app, addr in rows
            ]
        for row in rows:
            pid = int(row[0])
            try:
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                terminated.add(pid)
            except psycopg.Error as exc:
                refused[pid] = one_line(exc)
        time.sleep(0.1)


def swap(conn: Conn, *, live: str, shadow: str, kept: str) -> None:
    """live → kept and shadow → live in ONE transaction: either both renames happen or neither does."""
    with conn.transaction():
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(live), sql.Identifier(kept)))
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(sql.Identifier(shadow), sql.Identifier(live)))
        set_allow_connections(conn, kept, True)  # the kept copy stays inspectable
        set_allow_connections(conn, live, True)


def drop_database(conn: Conn, name: str) -> None:
    force = sql.SQL(" WITH (FORCE)") if conn.info.server_version >= 130000 else sql.SQL("")
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}{}").format(sql.Identifier(name), force))
