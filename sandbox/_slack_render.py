"""Plain-text renderings of what a person sees in Slack: a channel with its threads, a modal, a Home tab.

`make demo` prints these, and tests assert on them, so they favour what a reader would see
(mentions by name, buttons as `[ Confirm ]`) over fidelity to Slack's markup.
"""

from __future__ import annotations

import html
import re
from typing import Any

from sandbox._slack_models import JSON, Ephemeral, StoredMessage
from sandbox._slack_workspace import Workspace

_INDENT = "    "
_RULE = "─" * 60
_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")


def flatten_mrkdwn(text: str, ws: Workspace) -> str:
    """Slack's mrkdwn as a reader sees it: mentions and links by name, entities unescaped."""

    def link(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith("@"):
            return label or f"@{ws.display_name(target[1:])}"
        if target.startswith("#"):
            return f"#{label or ws.channel_name(target[1:])}"
        if target.startswith("!subteam^"):
            return label or f"@{target.removeprefix('!subteam^')}"
        if target.startswith("!date^"):
            return label or target
        if target.startswith("!"):
            return f"@{target[1:]}"
        return f"{label} ({target})" if label and label != target else target

    return html.unescape(_LINK.sub(link, text))


def _text(obj: Any, ws: Workspace) -> str:
    if not isinstance(obj, dict):
        return ""
    text = str(obj.get("text", ""))
    return flatten_mrkdwn(text, ws) if obj.get("type") == "mrkdwn" else text


def _element(element: Any, ws: Workspace) -> str:
    if not isinstance(element, dict):
        return ""
    kind = element.get("type")
    if kind == "button":
        return f"[ {_text(element.get('text'), ws)} ]"
    if kind == "image":
        return f"[image: {element.get('alt_text', '')}]"
    if kind == "overflow":
        return "[ ⋯ ]"
    if kind in ("plain_text", "mrkdwn"):
        return _text(element, ws)
    shown = element.get("initial_value") or element.get("initial_date") or _text(element.get("placeholder"), ws)
    return f"[ {shown or kind} ▾ ]" if "select" in str(kind) else f"[ {shown or kind} ]"


def _rich_text(node: Any, ws: Workspace) -> str:
    if isinstance(node, list):
        return "".join(_rich_text(n, ws) for n in node)
    if not isinstance(node, dict):
        return ""
    kind = node.get("type")
    if kind == "text":
        return str(node.get("text", ""))
    if kind == "user":
        return f"@{ws.display_name(str(node.get('user_id', '')))}"
    if kind == "channel":
        return f"#{ws.channel_name(str(node.get('channel_id', '')))}"
    if kind == "link":
        return str(node.get("text") or node.get("url", ""))
    if kind == "emoji":
        return f":{node.get('name', '')}:"
    separator = "\n" if kind in ("rich_text_list",) else ""
    return separator.join(_rich_text(n, ws) for n in node.get("elements", []))


def render_blocks(blocks: list[JSON], ws: Workspace) -> list[str]:
    """Each block as the lines a reader sees, top to bottom."""
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            lines.append(f"== {_text(block.get('text'), ws)} ==")
        elif kind == "section":
            body = _text(block.get("text"), ws).splitlines() if block.get("text") else []
            # Each field on its own line: two columns of multi-line text do not survive plain text.
            body.extend(" ".join(_text(f, ws).split("\n")) for f in block.get("fields") or [])
            accessory = _element(block.get("accessory"), ws) if block.get("accessory") else ""
            if accessory:
                body = [*body[:-1], f"{body[-1]}   {accessory}"] if body else [accessory]
            lines.extend(body)
        elif kind == "context" or kind == "actions":
            lines.append("  ".join(_element(e, ws) for e in block.get("elements") or []))
        elif kind == "divider":
            lines.append("─" * 24)
        elif kind == "image":
            lines.append(f"[image: {block.get('alt_text', '')}]")
        elif kind == "input":
            optional = " (optional)" if block.get("optional") else ""
            lines.append(f"{_text(block.get('label'), ws)}{optional}: {_element(block.get('element'), ws)}")
            if block.get("hint"):
                lines.append(f"  {_text(block.get('hint'), ws)}")
        elif kind == "rich_text":
            lines.extend(_rich_text(block.get("elements", []), ws).splitlines())
        elif kind == "markdown":
            lines.extend(str(block.get("text", "")).splitlines())
        else:
            lines.append(f"[{kind}]")
    return lines


def _body(text: str, blocks: list[JSON], attachments: list[JSON], ws: Workspace) -> list[str]:
    # Slack shows the blocks when there are any; `text` is then only the notification fallback.
    lines = render_blocks(blocks, ws) if blocks else flatten_mrkdwn(text, ws).splitlines()
    for attachment in attachments:
        shown = attachment.get("text") or attachment.get("fallback") or ""
        lines.extend(f"| {line}" for line in flatten_mrkdwn(str(shown), ws).splitlines())
    return lines or [""]


def _message_lines(message: StoredMessage | Ephemeral, ws: Workspace, indent: str) -> list[str]:
    if message.deleted:
        return [f"{indent}(This message was deleted.)"]
    if isinstance(message, Ephemeral):
        author = f"{ws.display_name(ws.bot_user_id)} (only visible to {ws.display_name(message.user)})"
        attachments: list[JSON] = []
    else:
        author = ws.display_name(message.user)
        if message.reply_broadcast and message.is_reply:
            author += " (replied to a thread, also sent to the channel)"
        attachments = message.attachments
    if message.history:
        author += " (edited)"
    lines = [f"{indent}{author}:"]
    lines.extend(f"{indent}{_INDENT}{line}".rstrip() for line in _body(message.text, message.blocks, attachments, ws))
    if isinstance(message, StoredMessage) and message.reactions:
        shown = "  ".join(f":{name}: {len(users)}" for name, users in message.reactions.items())
        lines.append(f"{indent}{_INDENT}{shown}")
    return lines


def render_channel(ws: Workspace, channel: str, *, for_user: str | None = None) -> str:
    """A channel and its threads, in order, as `for_user` (or anyone, without ephemerals) reads them."""
    visible = [e for e in ws.ephemerals if e.channel == channel and e.user == for_user and not e.deleted]
    entries: list[StoredMessage | Ephemeral] = [m for m in ws.timelines.get(channel, []) if not m.deleted or m.replies]
    entries.extend(e for e in visible if e.thread_ts is None)
    entries.sort(key=lambda m: m.ts)
    name = ws.channel_name(channel)
    lines = [f"{name if name.startswith('@') else '#' + name} ({channel})", _RULE]
    for entry in entries:
        lines.extend(_message_lines(entry, ws, ""))
        if isinstance(entry, StoredMessage) and not entry.is_reply:
            thread: list[StoredMessage | Ephemeral] = [r for r in entry.replies if not r.deleted]
            thread.extend(e for e in visible if e.thread_ts == entry.ts)
            thread.sort(key=lambda m: m.ts)
            if thread:
                count = len(thread)
                lines.append(f"{_INDENT}└─ thread: {count} repl{'y' if count == 1 else 'ies'}")
                for reply in thread:
                    lines.extend(_message_lines(reply, ws, _INDENT * 2))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def render_view(view: JSON, ws: Workspace) -> str:
    """A modal (title, blocks, its buttons) or a Home tab, as the user sees it."""
    lines: list[str] = []
    if view.get("type") == "modal":
        lines.extend([f"┌ {_text(view.get('title'), ws)}", _RULE])
    else:
        lines.extend(["┌ Home", _RULE])
    lines.extend(render_blocks(list(view.get("blocks") or []), ws))
    buttons = [f"[ {_text(view.get(k), ws)} ]" for k in ("close", "submit") if view.get(k)]
    if buttons:
        lines.extend([_RULE, "  ".join(buttons)])
    return "\n".join(lines) + "\n"
