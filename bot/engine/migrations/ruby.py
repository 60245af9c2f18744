"""Ruby migrations (Rails), read with regexes: only `up` / `change`, never `down`."""

from __future__ import annotations

import re

from bot.engine.migrations.risk import MigrationRisk, shorten
from bot.engine.migrations.sql import scan_statements

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
            risks.append(MigrationRisk(file=file, statement=shorten(code), kind=_RB_OPS[m.group(1)], line=number))
        elif m := _RB_TABLE_OP.search(code):
            kind = _RB_TABLE_OPS[m.group(1)]
            risks.append(MigrationRisk(file=file, statement=shorten(code), kind=kind, line=number))
        if m := _RB_EXECUTE.search(code):
            rest = code[m.end() :]
            if heredoc := _RB_HEREDOC.match(rest):
                body: list[str] = []
                for later in lines[index + 1 :]:
                    if later.strip() == heredoc.group(2):
                        break
                    body.append(later)
                risks.extend(scan_statements("\n".join(body), file=file, first_line=number + 1))
            elif literal := re.match(r"\"((?:[^\"\\]|\\.)*)\"|'((?:[^'\\]|\\.)*)'", rest):
                sql = literal.group(1) if literal.group(1) is not None else literal.group(2)
                risks.extend(scan_statements(sql, file=file, first_line=number))
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
