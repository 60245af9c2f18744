"""A database's own properties, which no dump carries: read from the live database, given to the shadow, compared.

pg_dump without --create dumps the objects inside a database. What belongs to the database itself lives
in shared catalogs keyed by its oid, and the rename swap leaves all of it with the old oid, that is
with the kept copy: owner, ACL and connection limit (pg_database), `ALTER DATABASE … SET` and `ALTER
ROLE … IN DATABASE … SET` settings (pg_db_role_setting), the comment (pg_shdescription) and security
labels (pg_shseclabel). So the restore gives each to the shadow before the swap, then reads the shadow
back: whatever still differs is named in a warning, never dropped silently.

What PostgreSQL forbids a role that is not a superuser, and so what can end in a warning:
- a custom setting such as app.tenant: it needs `GRANT SET ON PARAMETER app.tenant` (PostgreSQL 15's
  check: once stored, a placeholder may turn out to be a superuser-only setting), as do superuser-only
  settings (log_statement, …);
- another role's setting (`ALTER ROLE app IN DATABASE …`): it needs CREATEROLE (and the role must not
  be a superuser), or to be that role, so a member of it sets it under SET ROLE;
- a security label: its provider (sepgsql, …) must be loaded, whoever asks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
from psycopg import sql

from bot.backends.dbtools import one_line

Conn = psycopg.Connection[tuple[object, ...]]
Grant = tuple[str, str, bool]  # (grantee, "" for PUBLIC; privilege; with grant option)
Setting = tuple[str, str, str]  # (role, "" for the whole database; name; value as stored)

# Settings whose value is a list pg_dump quotes element by element (dumputils.c, variable_is_guc_list_quote).
_LIST_SETTINGS = {
    "local_preload_libraries",
    "search_path",
    "session_preload_libraries",
    "shared_preload_libraries",
    "temp_tablespaces",
    "unix_socket_directories",
}


@dataclass(frozen=True)
class Properties:
    """What the application sees of a database itself. Equal properties: nothing to carry over."""

    owner: str
    acl: frozenset[Grant]  # the effective ACL: the default one when datacl is NULL
    connection_limit: int
    settings: tuple[Setting, ...]  # in the order they were set, which is the order pg_dump shows them in
    comment: str | None
    labels: frozenset[tuple[str, str]]  # (provider, label)


def read(conn: Conn, name: str) -> Properties | None:
    row = conn.execute(
        "SELECT oid, pg_get_userbyid(datdba), datconnlimit, shobj_description(oid, 'pg_database')"
        " FROM pg_database WHERE datname = %s",
        (name,),
    ).fetchone()
    if row is None:
        return None
    oid = row[0]
    acl = conn.execute(
        "SELECT CASE WHEN a.grantee = 0 THEN '' ELSE pg_get_userbyid(a.grantee) END, a.privilege_type,"
        " a.is_grantable FROM pg_database d, aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a"
        " WHERE d.oid = %s",
        (oid,),
    ).fetchall()
    settings = conn.execute(
        "SELECT coalesce(r.rolname, ''), c.setting FROM pg_db_role_setting s"
        " LEFT JOIN pg_roles r ON r.oid = s.setrole, unnest(s.setconfig) WITH ORDINALITY c(setting, n)"
        " WHERE s.setdatabase = %s ORDER BY 1, c.n",
        (oid,),
    ).fetchall()
    labels = conn.execute(
        "SELECT provider, label FROM pg_shseclabel WHERE objoid = %s AND classoid = 'pg_database'::regclass",
        (oid,),
    ).fetchall()
    return Properties(
        owner=str(row[1]),
        acl=frozenset((str(g), str(p), bool(o)) for g, p, o in acl),
        connection_limit=int(str(row[2])),
        settings=tuple((str(role), *_name_value(str(s))) for role, s in settings),
        comment=None if row[3] is None else str(row[3]),
        labels=frozenset((str(p), str(label)) for p, label in labels),
    )


def carry_over(conn: Conn, live: str, dest: str) -> list[str]:
    """Give `dest` the properties of `live`; return a warning for each one it could not be given.

    Runs on the maintenance database as the bot's role. The statements in the warnings name `live`,
    the name `dest` will have after the swap, so that a DBA can run them as they are.
    """
    want = read(conn, live)
    if want is None:
        return [f"the live database {live} vanished: none of its properties could be carried over"]
    carrier = _Carrier(conn, live, dest)
    carrier.owner(want.owner)
    have = read(conn, dest)
    assert have is not None  # the shadow: ours, and only ours
    carrier.acl(want, have)
    if want.connection_limit != have.connection_limit:
        limit = sql.Literal(want.connection_limit)
        carrier.run(
            ("connection limit",), lambda db: sql.SQL("ALTER DATABASE {} WITH CONNECTION LIMIT {}").format(db, limit)
        )
    for setting in want.settings:
        if setting not in have.settings:
            carrier.setting(*setting)
    for role, name, _ in sorted(set(have.settings) - set(want.settings)):
        if (role, name) not in {(r, n) for r, n, _ in want.settings}:
            carrier.reset(role, name)
    if want.comment != have.comment:
        comment = sql.Literal(want.comment)
        carrier.run(("comment",), lambda db: sql.SQL("COMMENT ON DATABASE {} IS {}").format(db, comment))
    for provider, label in sorted(want.labels - have.labels):
        carrier.label(provider, label)
    now = read(conn, dest)
    assert now is not None
    for key, what in differences(want, now):
        if key not in carrier.reported:
            carrier.warnings.append(f"{what} was not carried over to the restored database")
    return carrier.warnings


def differences(want: Properties, have: Properties) -> list[tuple[tuple[str, ...], str]]:
    """What `have` lacks or has more of than `want`, each as (key, words)."""
    found: list[tuple[tuple[str, ...], str]] = []
    if want.owner != have.owner:
        found.append((("owner",), f"the owner {want.owner}"))
    for grantee, privilege in sorted({(g, p) for g, p, _ in want.acl ^ have.acl}):
        found.append((("acl", grantee, privilege), f"the {privilege} privilege of {grantee or 'PUBLIC'} as it was"))
    if want.connection_limit != have.connection_limit:
        found.append((("connection limit",), f"the connection limit {want.connection_limit}"))
    wanted = {(role, name): value for role, name, value in want.settings}
    for role, name in sorted({(r, n) for r, n, _ in set(want.settings) ^ set(have.settings)}):
        value = wanted.get((role, name))
        what = f"{name} = {value!r}" if value is not None else f"no {name} (the restored database has one)"
        found.append((("setting", role, name), f"the setting {_scope_words(role)}{what}"))
    if want.comment != have.comment:
        found.append((("comment",), "the database's comment"))
    for provider, label in sorted(want.labels ^ have.labels):
        found.append((("label", provider), f"the security label {label!r} of provider {provider}"))
    return found


def split_setting_list(value: str) -> list[str]:
    """Split a stored list setting (`"$user", public`) into its elements, as the server's SplitGUCList."""
    items: list[str] = []
    i, n = 0, len(value)
    while i < n:
        while i < n and value[i].isspace():
            i += 1
        if i < n and value[i] == '"':
            i += 1
            item = []
            while i < n:
                if value[i] == '"':
                    if i + 1 < n and value[i + 1] == '"':  # doubled quote inside a quoted name
                        item.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                item.append(value[i])
                i += 1
            items.append("".join(item))
            while i < n and value[i] != ",":
                i += 1
        else:
            end = value.find(",", i)
            end = n if end < 0 else end
            token = value[i:end].strip()
            if token:
                items.append(token)
            i = end
        i += 1  # skip the comma
    return items


# --- internals ----------------------------------------------------------------------------------------


Statement = Callable[[sql.Identifier], sql.Composed]  # the statement, given the database's name


class _Carrier:
    """Runs each statement on the shadow; on failure, warns with the same statement for the live name."""

    def __init__(self, conn: Conn, live: str, dest: str) -> None:
        self.conn, self.live, self.dest = conn, live, dest
        me = conn.execute("SELECT current_user").fetchone()
        self.me = str(me[0]) if me else ""
        self.warnings: list[str] = []
        self.reported: set[tuple[str, ...]] = set()

    def run(self, key: tuple[str, ...], statement: Statement, *, hint: str = "") -> None:
        error = self.attempt(statement)
        if error is None:
            return
        self.reported.add(key)
        by_hand = statement(sql.Identifier(self.live)).as_string(self.conn)
        self.warnings.append(f"{by_hand} could not be carried over ({error}){'; ' + hint if hint else ''}")

    def attempt(self, statement: Statement, *, as_role: str = "") -> str | None:
        """Run the statement on the shadow; None, or why it failed."""
        try:
            with self._as(as_role):
                self.conn.execute(statement(sql.Identifier(self.dest)))
        except psycopg.Error as exc:
            return one_line(exc)
        return None

    def owner(self, owner: str) -> None:
        have = self.conn.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s", (self.dest,)
        ).fetchone()
        if have and have[0] != owner:
            self.run(
                ("owner",),
                lambda db: sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, sql.Identifier(owner)),
                hint=f"the restored database is owned by {have[0]}: the bot's role needs CREATEDB and"
                f" membership in {owner}",
            )

    def acl(self, want: Properties, have: Properties) -> None:
        wanted = {(g, p): o for g, p, o in want.acl}
        held = {(g, p): o for g, p, o in have.acl}
        for (grantee, privilege), grantable in sorted(wanted.items()):
            if held.get((grantee, privilege)) == grantable:
                continue
            if held.get((grantee, privilege)) and not grantable:
                self._acl("REVOKE GRANT OPTION FOR {} ON DATABASE {} FROM {}", grantee, privilege)
            else:
                option = " WITH GRANT OPTION" if grantable else ""
                self._acl("GRANT {} ON DATABASE {} TO {}" + option, grantee, privilege)
        for grantee, privilege in sorted(held.keys() - wanted.keys()):
            if grantee == have.owner != want.owner:
                continue  # revoking its own CONNECT would lock the bot's role out of the restored database
            self._acl("REVOKE {} ON DATABASE {} FROM {}", grantee, privilege)

    def label(self, provider: str, label: str) -> None:
        self.run(
            ("label", provider),
            lambda db: sql.SQL("SECURITY LABEL FOR {} ON DATABASE {} IS {}").format(
                sql.Identifier(provider), db, sql.Literal(label)
            ),
            hint=f"a label of {provider} can be set only where {provider} is loaded (shared_preload_libraries)",
        )

    def _acl(self, template: str, grantee: str, privilege: str) -> None:
        who = sql.Identifier(grantee) if grantee else sql.SQL("PUBLIC")
        self.run(("acl", grantee, privilege), lambda db: sql.SQL(template).format(sql.SQL(privilege), db, who))

    def setting(self, role: str, name: str, value: str) -> None:
        values: sql.Composable
        if name.lower() in _LIST_SETTINGS:
            values = sql.SQL(", ").join(sql.Literal(v) for v in split_setting_list(value))
        else:
            values = sql.Literal(value)

        def statement(db: sql.Identifier) -> sql.Composed:
            if role:
                return sql.SQL("ALTER ROLE {} IN DATABASE {} SET {} TO {}").format(
                    sql.Identifier(role), db, sql.Identifier(name), values
                )
            return sql.SQL("ALTER DATABASE {} SET {} TO {}").format(db, sql.Identifier(name), values)

        if self.attempt(statement) is None:
            return
        # PostgreSQL lets a role change its own settings: a member of `role` may act as it.
        if role and role != self.me and self._member_of(role) and self.attempt(statement, as_role=role) is None:
            return
        self.run(("setting", role, name), statement, hint=self._setting_hint(role, name))

    def reset(self, role: str, name: str) -> None:
        setting = sql.Identifier(name)
        if role:
            self.run(
                ("setting", role, name),
                lambda db: sql.SQL("ALTER ROLE {} IN DATABASE {} RESET {}").format(sql.Identifier(role), db, setting),
            )
        else:
            self.run(("setting", "", name), lambda db: sql.SQL("ALTER DATABASE {} RESET {}").format(db, setting))

    def _setting_hint(self, role: str, name: str) -> str:
        parameter = f"a superuser can GRANT SET ON PARAMETER {name} TO {self.me}, so that the next rollback carries it"
        needs_grant = "." in name or not self._may_set(name)  # a custom setting, or a superuser-only one
        if not role or role == self.me:
            return parameter if needs_grant else ""
        row = self.conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
        who = "to be a superuser" if row and row[0] else "CREATEROLE"  # CREATEROLE stops at superusers
        routes = f"the bot's role needs {who} or membership in {role}"
        return f"{routes}; {parameter}" if needs_grant else routes

    def _may_set(self, name: str) -> bool:
        row = self.conn.execute(
            "SELECT context <> 'superuser' OR has_parameter_privilege(name, 'SET') FROM pg_settings WHERE name = %s",
            (name.lower(),),
        ).fetchone()
        return bool(row is None or row[0])

    def _member_of(self, role: str) -> bool:
        row = self.conn.execute(
            "SELECT pg_has_role(current_user, oid, 'MEMBER') FROM pg_roles WHERE rolname = %s", (role,)
        ).fetchone()
        return bool(row and row[0])

    @contextmanager
    def _as(self, role: str) -> Iterator[None]:
        if not role:
            yield
            return
        self.conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        try:
            yield
        finally:
            self.conn.execute("RESET ROLE")


def _name_value(setting: str) -> tuple[str, str]:
    name, _, value = setting.partition("=")
    return name, value


def _scope_words(role: str) -> str:
    return f"of role {role} in this database: " if role else ""
