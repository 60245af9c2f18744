"""The destructive-SQL scan: what the migrations between two commits did that a code rollback cannot undo.

A rollback plan shows these so the approver knows a database restore is needed, not just a revert.
SQL files are split into statements properly (comments, quoted strings and dollar quotes never split
or trigger anything); Alembic and Django migrations are read with `ast`; Rails migrations with regexes.
Only the forward direction is scanned (`upgrade`, `up`/`change`, `sql=`), never the reverse one.
"""

from __future__ import annotations

import ast
import bisect
import re
from dataclasses import dataclass

from bot.backends.base import CodeRepo

_MAX_STATEMENT = 300


@dataclass(frozen=True)
class MigrationRisk:
    file: str
    statement: str  # as written (comments removed, whitespace collapsed), trimmed to ~300 characters
    kind: str  # "DROP TABLE", "DROP COLUMN", "ALTER COLUMN TYPE", "TRUNCATE", "RENAME", …
    line: int  # 1-based line where the statement starts


# --- which files ------------------------------------------------------------------------------------

_MIGRATION_PATHS = (
    re.compile(r"\.sql$", re.IGNORECASE),  # Prisma's migrations/*/migration.sql and any raw SQL
    re.compile(r"(?:^|/)(?:alembic|migrations)/versions/[^/]+\.py$"),
    re.compile(r"(?:^|/)migrations/\d{4}_[^/]*\.py$"),  # Django
    re.compile(r"(?:^|/)db/migrate/[^/]+\.rb$"),  # Rails
)


def is_migration_file(path: str) -> bool:
    normal = path.replace("\\", "/")
    return any(p.search(normal) for p in _MIGRATION_PATHS)


def scan_between(repo: CodeRepo, *, older: str, newer: str) -> list[MigrationRisk]:
    """Risks in the migration files that changed from `older` to `newer`, read as they are at `newer`."""
    risks: list[MigrationRisk] = []
    for path in sorted(repo.changed_files(older, newer)):
        if not is_migration_file(path):
            continue
        text = repo.read_file(newer, path)
        if text is not None:  # None: deleted by `newer`, nothing it could run
            risks.extend(scan_file(text, file=path))
    return risks


def scan_file(text: str, *, file: str) -> list[MigrationRisk]:
    """Dispatch on the file's kind: SQL, Python (Alembic, Django) or Ruby (Rails)."""
    lower = file.lower()
    if lower.endswith(".py"):
        return scan_python(text, file=file)
    if lower.endswith(".rb"):
        return scan_ruby(text, file=file)
    return scan_sql(text, file=file)


# --- SQL --------------------------------------------------------------------------------------------

_NAME = r'(?:"[^"]*"|`[^`]*`|\[[^\]]*\]|[\w$]+)(?:\s*\.\s*(?:"[^"]*"|`[^`]*`|\[[^\]]*\]|[\w$]+))*'
_DROP_OBJECT = re.compile(
    r"^DROP\s+(?:TEMPORARY\s+)?(?:MATERIALIZED\s+)?(TABLE|VIEW|SCHEMA|DATABASE|INDEX|SEQUENCE|TYPE)\b", re.I
)
_ALTER_TABLE = re.compile(rf"^ALTER\s+TABLE\s+(?:IF\s+EXISTS\s+)?(?:ONLY\s+)?{_NAME}\s*\*?\s*(.*)$", re.I | re.S)
_ALTER_TYPE = re.compile(rf"^ALTER\s+(?:COLUMN\s+)?{_NAME}\s+(?:SET\s+DATA\s+)?TYPE\b", re.I)
_HARMLESS_DROPS = {"CONSTRAINT", "PRIMARY", "FOREIGN", "CHECK", "DEFAULT"}
_BLOCK_BEGIN = re.compile(r"BEGIN\s+(?:ATOMIC\s+)?(?!TRANSACTION\b|WORK\b|ISOLATION\b)(?=\S)", re.I)
_SPECIAL = re.compile(r"[-/'\"`$;]")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_]\w*)?\$")
_DOLLAR_BODY = re.compile(r"\$(\w*)\$(.*?)\$\1\$", re.S)


@dataclass(frozen=True)
class _Statement:
    text: str  # comments blanked, strings kept
    masked: str  # also string contents blanked: what classification looks at
    start: int  # offset of the statement's first character in the scanned text


def scan_sql(text: str, *, file: str) -> list[MigrationRisk]:
    return _scan_sql(text, file=file, first_line=1)


def _scan_sql(text: str, *, file: str, first_line: int) -> list[MigrationRisk]:
    newlines = [i for i, ch in enumerate(text) if ch == "\n"]

    def line_of(offset: int) -> int:
        return first_line + bisect.bisect_left(newlines, offset)

    risks: list[MigrationRisk] = []
    for stmt in _split_sql(text):
        line = line_of(stmt.start)
        for kind in _classify(stmt.masked):
            risks.append(MigrationRisk(file=file, statement=_shorten(stmt.text), kind=kind, line=line))
        if re.match(r"\s*DO\b", stmt.masked, re.I):
            # An anonymous block runs its body now: scan it as SQL of its own.
            for body in _DOLLAR_BODY.finditer(stmt.text):
                risks.extend(_scan_sql(body.group(2), file=file, first_line=line_of(stmt.start + body.start(2))))
    return risks


def _split_sql(text: str) -> list[_Statement]:
    """Split at top-level `;`, honouring -- and /* */ comments, '…' strings, "…"/`…` names, $tag$ bodies."""
    # Two copies of the text, character for character (so offsets stay valid): one with comments
    # blanked, one with string contents blanked too.
    plain: list[str] = []
    masked: list[str] = []
    statements: list[_Statement] = []
    start, i, n = 0, 0, len(text)

    def emit(end: int) -> None:
        body, mask = "".join(plain[start:end]), "".join(masked[start:end])
        # the first statement of a PL/pgSQL block starts after its BEGIN
        lead = len(mask) - len(mask.lstrip())
        if block := _BLOCK_BEGIN.match(mask, lead):
            lead = block.end()
        if mask[lead:].strip():
            statements.append(_Statement(text=body[lead:].strip(), masked=mask[lead:].strip(), start=start + lead))

    while i < n:
        ch = text[i]
        if text.startswith("--", i) or text.startswith("/*", i):
            end = _block_comment_end(text, i) if ch == "/" else _line_end(text, i)
            plain.extend(_blank(text[i:end]))
            masked.extend(_blank(text[i:end]))
        elif ch == "'" or ch in '"`':
            # E'…' strings take backslash escapes; identifiers ("…", `…`) are kept, not masked
            escapes = ch == "'" and i > 0 and text[i - 1] in "eE" and (i < 2 or not text[i - 2].isalnum())
            end = _quote_end(text, i, ch, backslash=escapes)
            plain.extend(text[i:end])
            closed = end - i >= 2 and text[end - 1] == ch
            masked.extend(_mask_inside(text[i:end], 1, 1 if closed else 0) if ch == "'" else text[i:end])
        elif ch == "$" and (tag := _DOLLAR_TAG.match(text, i)):
            delim = tag.group(0)
            close = text.find(delim, i + len(delim))
            end = n if close < 0 else close + len(delim)
            plain.extend(text[i:end])
            masked.extend(_mask_inside(text[i:end], len(delim), 0 if close < 0 else len(delim)))
        elif ch == ";":
            end = i + 1
            plain.append(" ")
            masked.append(" ")
            emit(i)
            start = end
        else:  # ordinary text: copy it up to the next character that could start something
            special = _SPECIAL.search(text, i + 1)
            end = special.start() if special else n
            plain.extend(text[i:end])
            masked.extend(text[i:end])
        i = end
    emit(n)
    return statements


def _blank(segment: str) -> str:
    return "".join(c if c == "\n" else " " for c in segment)


def _mask_inside(segment: str, opening: int, closing: int) -> str:
    return segment[:opening] + _blank(segment[opening : len(segment) - closing]) + segment[len(segment) - closing :]


def _line_end(text: str, i: int) -> int:
    end = text.find("\n", i)
    return len(text) if end < 0 else end


def _block_comment_end(text: str, i: int) -> int:
    depth, j = 0, i  # PostgreSQL nests block comments
    while j < len(text):
        if text.startswith("/*", j):
            depth, j = depth + 1, j + 2
        elif text.startswith("*/", j):
            depth, j = depth - 1, j + 2
            if depth == 0:
                return j
        else:
            j += 1
    return len(text)


def _quote_end(text: str, i: int, quote: str, *, backslash: bool) -> int:
    j = i + 1
    while j < len(text):
        if backslash and text[j] == "\\":
            j += 2
        elif text[j] == quote:
            if text.startswith(quote * 2, j):  # a doubled quote is an escaped quote
                j += 2
            else:
                return j + 1
        else:
            j += 1
    return len(text)


def _classify(masked: str) -> list[str]:
    sql = re.sub(r"\s+", " ", masked).strip()
    upper = sql.upper()
    if m := _DROP_OBJECT.match(sql):
        return [f"DROP {m.group(1).upper()}"]
    if upper.startswith("TRUNCATE"):
        return ["TRUNCATE"]
    if re.match(r"DELETE\b", upper) and not re.search(r"\bWHERE\b", upper):
        return ["DELETE without WHERE"]
    if re.match(r"RENAME TABLES?\b", upper) or re.match(r"EXEC(?:UTE)? SP_RENAME\b", upper):
        return ["RENAME"]
    if m := _ALTER_TABLE.match(sql):
        kinds: list[str] = []
        for action in _top_level_split(m.group(1)):
            kind = _alter_action(action.strip())
            if kind and kind not in kinds:
                kinds.append(kind)
        return kinds
    return []


def _alter_action(action: str) -> str | None:
    upper = action.upper()
    words = upper.split()
    if not words:
        return None
    if words[0] == "DROP":
        second = words[1] if len(words) > 1 else ""
        if second in _HARMLESS_DROPS:
            return None
        if second in ("INDEX", "KEY"):
            return "DROP INDEX"
        if second == "PARTITION":
            return "DROP PARTITION"
        return "DROP COLUMN"  # DROP COLUMN x, or PostgreSQL's DROP x / DROP IF EXISTS x
    if words[0] in ("MODIFY", "CHANGE") or _ALTER_TYPE.match(action):
        return "ALTER COLUMN TYPE"
    if words[0] == "RENAME" and (len(words) < 2 or words[1] not in ("CONSTRAINT", "INDEX", "KEY")):
        return "RENAME"
    return None


def _top_level_split(sql: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in sql:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def _shorten(statement: str) -> str:
    text = re.sub(r"\s+", " ", statement).strip()
    return text if len(text) <= _MAX_STATEMENT else text[: _MAX_STATEMENT - 1] + "…"


# --- Python: Alembic and Django ---------------------------------------------------------------------

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
        where = _shorten(ast.get_source_segment(text, call) or name)
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
            risks.extend(_scan_sql(node.value, file=file, first_line=node.lineno))
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
            risks.append(MigrationRisk(file=file, statement=_shorten(line), kind=_PY_OPS[m.group(1)], line=number))
    return risks


# --- Ruby: Rails ------------------------------------------------------------------------------------

_RB_OPS = {
    "drop_table": "DROP TABLE",
    "drop_join_table": "DROP TABLE",
    "remove_column": "DROP COLUMN",
    "remove_columns": "DROP COLUMN",
    "remove_reference": "DROP COLUMN",
    "remove_belongs_to": "DROP COLUMN",
    "remove_timestamps": "DROP COLUMN",
    "change_column": "ALTER COLUMN TYPE",
    "rename_column": "RENAME",
    "rename_table": "RENAME",
    "remove_index": "DROP INDEX",
}
_RB_TABLE_OPS = {
    "remove": "DROP COLUMN",
    "change": "ALTER COLUMN TYPE",
    "rename": "RENAME",
}  # change_table |t|
# not after a word, "." or ":" (a symbol), not followed by ":" (a hash key)
_RB_OP = re.compile(rf"(?<![\w.:])({'|'.join(_RB_OPS)})\b(?![:?!])")
_RB_TABLE_OP = re.compile(rf"\b\w+\.({'|'.join(_RB_TABLE_OPS)})\b")
_RB_EXECUTE = re.compile(r"(?<![\w.:])execute\b\s*\(?\s*")
_RB_HEREDOC = re.compile(r"<<[~-]?(['\"]?)(\w+)\1")


def scan_ruby(text: str, *, file: str) -> list[MigrationRisk]:
    lines = _forward_ruby_lines(text)
    risks: list[MigrationRisk] = []
    for index, line in enumerate(lines):
        number, code = index + 1, line.split("#", 1)[0] if "#{" not in line else line
        if re.match(r"\s*def\b", code):
            continue
        if m := _RB_OP.search(code):
            risks.append(MigrationRisk(file=file, statement=_shorten(code), kind=_RB_OPS[m.group(1)], line=number))
        elif m := _RB_TABLE_OP.search(code):
            kind = _RB_TABLE_OPS[m.group(1)]
            risks.append(MigrationRisk(file=file, statement=_shorten(code), kind=kind, line=number))
        if m := _RB_EXECUTE.search(code):
            rest = code[m.end() :]
            if heredoc := _RB_HEREDOC.match(rest):
                body: list[str] = []
                for later in lines[index + 1 :]:
                    if later.strip() == heredoc.group(2):
                        break
                    body.append(later)
                risks.extend(_scan_sql("\n".join(body), file=file, first_line=number + 1))
            elif literal := re.match(r"\"((?:[^\"\\]|\\.)*)\"|'((?:[^'\\]|\\.)*)'", rest):
                sql = literal.group(1) if literal.group(1) is not None else literal.group(2)
                risks.extend(_scan_sql(sql, file=file, first_line=number))
    return risks


def _forward_ruby_lines(text: str) -> list[str]:
    """The file's lines with `def down … end` and =begin/=end comments blanked (line numbers kept)."""
    lines = text.splitlines()
    skip_until: str | None = None
    for index, line in enumerate(lines):
        if skip_until is not None:
            done = re.match(skip_until, line) is not None
            lines[index] = ""
            skip_until = None if done else skip_until
        elif m := re.match(r"(\s*)def (?:self\.)?down\b", line):
            skip_until = rf"{m.group(1)}end\b"
            lines[index] = ""
        elif line.startswith("=begin"):
            skip_until = r"=end\b"
            lines[index] = ""
    return lines
