"""Python migrations (Alembic, Django), read with `ast`: only the forward direction (`upgrade`, `sql=`)."""

from __future__ import annotations

import ast
import re

from bot.engine.migrations.risk import MigrationRisk, shorten
from bot.engine.migrations.sql import scan_statements

_PY_OPS = {
    "drop_table": "DROP TABLE",  # Alembic
    "drop_column": "DROP COLUMN",
    "rename_table": "RENAME",
    "drop_index": "DROP INDEX",
    "DeleteModel": "DROP TABLE",  # Django
    "RemoveField": "DROP COLUMN",
    "AlterField": "ALTER COLUMN TYPE",
    "RenameField": "RENAME",
    "RenameModel": "RENAME",
    "RemoveIndex": "DROP INDEX",
}
_ALTER_COLUMN = {"type_": "ALTER COLUMN TYPE", "new_column_name": "RENAME"}  # Alembic's alter_column
_PY_SQL_CALLS = {"execute": ("sqltext", "sql", "statement"), "RunSQL": ("sql",)}
_REVERSE_FUNCTION = re.compile(r"^(?:downgrade|reverse|backward)", re.I)


def scan_python(text: str, *, file: str) -> list[MigrationRisk]:
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return _scan_python_text(text, file=file)
    risks: list[MigrationRisk] = []
    for call in _forward_calls(tree):
        name = _call_name(call)
        where = shorten(ast.get_source_segment(text, call) or name)
        kind = _PY_OPS.get(name)
        if name == "alter_column":
            kind = next((_ALTER_COLUMN[k.arg] for k in call.keywords if k.arg in _ALTER_COLUMN), None)
        if kind:
            risks.append(MigrationRisk(file=file, statement=where, kind=kind, line=call.lineno))
        if name in _PY_SQL_CALLS:
            sql_arg = call.args[0] if call.args else None
            sql_arg = sql_arg or next((k.value for k in call.keywords if k.arg in _PY_SQL_CALLS[name]), None)
            if sql_arg is not None:
                risks.extend(_scan_python_sql(sql_arg, file=file, where=where, line=call.lineno))
    return risks


def _forward_calls(tree: ast.AST) -> list[ast.Call]:
    """Every call outside the reverse direction (downgrade(), reverse_sql=, backwards functions)."""
    calls: list[ast.Call] = []
    todo: list[ast.AST] = [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _REVERSE_FUNCTION.match(node.name):
            continue
        if isinstance(node, ast.keyword) and node.arg in ("reverse_sql", "reverse_code"):
            continue
        if isinstance(node, ast.Call):
            calls.append(node)
            if _call_name(node) in ("RunSQL", "RunPython"):
                # the second positional argument is the reverse operation
                todo.extend([node.func, *node.args[:1], *node.keywords])
                continue
        todo.extend(ast.iter_child_nodes(node))
    return sorted(calls, key=lambda c: (c.lineno, c.col_offset))


def _call_name(call: ast.Call) -> str:
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return call.func.id if isinstance(call.func, ast.Name) else ""


def _scan_python_sql(arg: ast.expr, *, file: str, where: str, line: int) -> list[MigrationRisk]:
    risks: list[MigrationRisk] = []
    for node in ast.walk(arg):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            risks.extend(scan_statements(node.value, file=file, first_line=node.lineno))
    # SQLAlchemy Core: op.execute(table.delete()) with no .where() empties the table.
    source = ast.unparse(arg)
    if ".delete()" in source and ".where(" not in source:
        risks.append(MigrationRisk(file=file, statement=where, kind="DELETE without WHERE", line=line))
    return risks


def _scan_python_text(text: str, *, file: str) -> list[MigrationRisk]:
    # The file does not parse: fall back to spotting the operations by name.
    risks: list[MigrationRisk] = []
    pattern = re.compile(rf"\b(?:\w+\.)?({'|'.join(_PY_OPS)})\s*\(")
    for number, line in enumerate(text.splitlines(), start=1):
        if (m := pattern.search(line)) and not line.lstrip().startswith("#"):
            risks.append(MigrationRisk(file=file, statement=shorten(line), kind=_PY_OPS[m.group(1)], line=number))
    return risks
