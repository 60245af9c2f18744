"""Routines and events across the swap: the unchanged ones stay as they are, the replaced ones get their grants back.

Routines and events belong to the database, not to a table, so the RENAME swap cannot move them: the
live ones are replaced by the dump's. Replacing a routine loses the `GRANT EXECUTE ON FUNCTION …`
given on it (with automatic_sp_privileges, the default, the server revokes them when the routine is
dropped), which an application user may depend on. So a routine or event whose definition is the same
in the dump is left untouched, and only those that differ are replaced. Their grants are read from
mysql.procs_priv before (which takes SELECT on it) and given again after (which takes GRANT OPTION);
what cannot be read or given is named in the restore's warnings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pymysql

from bot.backends import mysql_objects as objs  # which imports this module: attributes are read at call time
from bot.backends.dbtools import one_line

if TYPE_CHECKING:
    from bot.backends.mysql_objects import SchemaObject

RoutineGrant = tuple[str, str, str, str, str]  # user, host, routine type, routine name, privileges ("Execute,Grant")


def replaced(old: list[SchemaObject], new: list[SchemaObject]) -> tuple[list[SchemaObject], list[SchemaObject]]:
    """(the live objects to drop, the dump's to create): those whose definitions differ, or exist on one side."""
    return [o for o in old if o not in new], [o for o in new if o not in old]


def read_grants(conn: Any, db: str) -> tuple[list[RoutineGrant] | None, str]:
    """The routine-level grants on `db`'s routines, or None and why they cannot be read."""
    try:
        found = objs.rows(
            conn,
            "SELECT User, Host, Routine_type, Routine_name, Proc_priv FROM mysql.procs_priv WHERE Db = %s",
            (db,),
        )
    except pymysql.MySQLError as exc:
        return None, one_line(exc)
    return [(str(u), str(h), str(t), str(n), str(p)) for u, h, t, n, p in found], ""


def give_back(
    conn: Any, db: str, grants: list[RoutineGrant] | None, why: str, old: list[SchemaObject], new: list[SchemaObject]
) -> list[str]:
    """Give the routines of `new` that replaced one of `old` the grants the old one had; warnings."""
    again = {(o.kind, o.name) for o in new} & {(o.kind, o.name) for o in old if o.kind in ("FUNCTION", "PROCEDURE")}
    if not again:
        return []
    if grants is None:
        return [
            f"{kind.lower()} {name} was replaced by the dump's definition: any GRANT … ON {kind} {db}.{name} was"
            f" revoked with the old one, and the bot's user cannot read which there were (mysql.procs_priv: {why});"
            " check SHOW GRANTS of the application's users (a user with SELECT on mysql.procs_priv and GRANT"
            " OPTION gives them back itself)"
            for kind, name in sorted(again)
        ]
    held = set(read_grants(conn, db)[0] or [])  # with automatic_sp_privileges off, the server kept them
    warnings = []
    for grant in grants:
        user, host, kind, name, privileges = grant
        if (kind, name) not in again or grant in held:
            continue
        statement = _grant(db, kind, name, privileges)
        try:
            objs.run(conn, statement, (user, host))
        except pymysql.MySQLError as exc:
            shown = statement.replace("%%", "%").replace("%s@%s", f"'{user}'@'{host}'")
            warnings.append(f"{shown} could not be given back to the replaced {kind.lower()} ({one_line(exc)})")
    return warnings


def _grant(db: str, kind: str, name: str, privileges: str) -> str:
    listed = [p.strip() for p in privileges.split(",") if p.strip()]
    granted = [p.upper() for p in listed if p != "Grant"] or ["USAGE"]
    option = " WITH GRANT OPTION" if "Grant" in listed else ""
    return f"GRANT {', '.join(granted)} ON {kind} {objs.pct(db)}.{objs.pct(name)} TO %s@%s{option}"
