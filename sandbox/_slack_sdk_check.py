"""Block Kit checked by Slack's own Python SDK (`slack_sdk.models`), for the Slack Web API stand-in.

slack_sdk's models carry most of Slack's documented limits (text lengths, how many fields, elements,
options; button styles; modal title, submit and close; private_metadata, callback_id; 1 to 100 blocks
in a view) and raise `SlackObjectFormationError` when one is broken. We parse what the bot sends with
them (`Block.parse`, `View(**view)`), run their validators object by object, and name each problem the
way Slack does: the SDK's words, then the JSON pointer of the object (and field) at fault, so a test
failure still points at the exact block. What the SDK does not check stays in sandbox/_blockkit_limits.py.
"""

from __future__ import annotations

import re
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.basic_objects import JsonObject
from slack_sdk.models.blocks import Block
from slack_sdk.models.views import View

_FIRST_WORD = re.compile(r"^([a-z_]+)\b")
_MISSING_ARGUMENT = re.compile(r"argument: '([a-z_]+)'")
_UNEXPECTED_ARGUMENT = re.compile(r"unexpected keyword argument '([a-z_]+)'")


def block_errors(blocks: list[Any], base: str) -> list[str]:
    """Problems slack_sdk finds in each block of `blocks` (found at `base`, e.g. "/blocks")."""
    errors: list[str] = []
    for index, raw in enumerate(blocks):
        if not isinstance(raw, dict):
            continue  # the table names it: "must be a block object"
        path = f"{base}/{index}"
        try:
            parsed = Block.parse(raw)
        except (SlackObjectFormationError, TypeError, ValueError, KeyError, AttributeError) as problem:
            errors.append(_said(problem, raw, path))
            continue
        if parsed is not None:  # None: a type the SDK does not know; the table names it
            _walk(parsed, raw, path, errors)
    return errors


def view_errors(view: dict[str, Any]) -> list[str]:
    """Problems slack_sdk finds in a modal or Home tab view, then in each of its blocks."""
    try:
        View(**view).validate_json()
    except SlackObjectFormationError as problem:
        said = str(problem)
        if said.startswith("views must contain"):
            return [f"{said} [json-pointer:/view/blocks]"]
        return [_said(problem, view, "/view")]
    except (TypeError, ValueError, KeyError, AttributeError) as problem:
        return [_said(problem, view, "/view")]
    blocks = view.get("blocks")
    return block_errors(blocks, "/view/blocks") if isinstance(blocks, list) else []


def _walk(obj: JsonObject, raw: dict[str, Any], path: str, errors: list[str]) -> None:
    """This object's own validators, then its children's, so the pointer names the innermost culprit."""
    try:
        obj.validate_json()
    except SlackObjectFormationError as problem:
        errors.append(_said(problem, raw, path))
        return
    for key, value in raw.items():
        child = getattr(obj, key, None)
        if isinstance(child, JsonObject) and isinstance(value, dict):
            _walk(child, value, f"{path}/{key}", errors)
        elif isinstance(child, list) and isinstance(value, list):
            for index, (item, item_raw) in enumerate(zip(child, value, strict=False)):
                if isinstance(item, JsonObject) and isinstance(item_raw, dict):
                    _walk(item, item_raw, f"{path}/{key}/{index}", errors)


def _said(problem: Exception, raw: dict[str, Any], path: str) -> str:
    """The SDK's words and a JSON pointer: to the field its message names when there is one."""
    text = str(problem)
    field = _field_named(problem, raw)
    if field:
        path = f"{path}/{field}"
        value = raw.get(field)
        if isinstance(value, dict) and "text" in value:  # a text object: the limit is on its text
            path += "/text"
    if not isinstance(problem, SlackObjectFormationError):
        text = f"could not be read: {text}"
    return f"{text} [json-pointer:{path}]"


def _field_named(problem: Exception, raw: dict[str, Any]) -> str | None:
    text = str(problem)
    if isinstance(problem, TypeError):
        match = _MISSING_ARGUMENT.search(text) or _UNEXPECTED_ARGUMENT.search(text)
        return match.group(1) if match else None
    match = _FIRST_WORD.match(text)
    return match.group(1) if match and match.group(1) in raw else None
