"""SQL migrations (raw SQL, Prisma's migration.sql): split into statements properly, then classified.

Comments, quoted strings and dollar quotes never split a statement or trigger anything.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass

from bot.engine.migrations.risk import MigrationRisk, shorten

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
    return scan_statements(text, file=file, first_line=1)


def scan_statements(text: str, *, file: str, first_line: int) -> list[MigrationRisk]:
    newlines = [i for i, ch in enumerate(text) if ch == "\n"]

    def line_of(offset: int) -> int:
        return first_line + bisect.bisect_left(newlines, offset)

    risks: list[MigrationRisk] = []
    for stmt in _split_sql(text):
        line = line_of(stmt.start)
        for kind in _classify(stmt.masked):
            risks.append(MigrationRisk(file=file, statement=shorten(stmt.text), kind=kind, line=line))
        if re.match(r"\s*DO\b", stmt.masked, re.I):
            # An anonymous block runs its body now: scan it as SQL of its own.
            for body in _DOLLAR_BODY.finditer(stmt.text):
                risks.extend(scan_statements(body.group(2), file=file, first_line=line_of(stmt.start + body.start(2))))
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
