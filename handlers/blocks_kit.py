"""Block Kit primitives every builder shares: escaping, redaction, Slack's size limits, small constructors.

Every piece of text that reaches Slack passes through `esc` (redact, then escape &, <, >) so a commit
subject like "<!channel> fix" renders literally instead of paging a channel, and through a limit-aware
constructor so no plan, however big, produces a message Slack would refuse with `invalid_blocks`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from bot import format as fmt
from bot.redact import redact

Block = dict[str, Any]

# Slack's limits (docs.slack.dev/reference/block-kit), kept a little under where it costs nothing.
MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_SECTION_TEXT = 3000
MAX_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_OPTION_TEXT = 75
MAX_OPTIONS = 100
MAX_CONFIRM_TEXT = 300
MAX_MODAL_TITLE = 24

ELLIPSIS = "…"
_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{6,}$")
# An entity (&amp;) or a <...> token cut in half would render as garbage or an unbalanced link.
_OPEN_ENTITY = re.compile(r"&[a-z]{0,4}$")


def esc(text: object) -> str:
    """Redact secrets, then escape for mrkdwn: nothing user-controlled can mention, link or ping."""
    cleaned = redact(str(text))
    return cleaned.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_ESCAPED_USER_MENTION = re.compile(r"&lt;@([UW][A-Z0-9]{2,})&gt;")


def esc_keep_mentions(text: object) -> str:
    """`esc`, except that user mentions (<@U…>) the bot wrote itself still work; never <!channel> or links."""
    return _ESCAPED_USER_MENTION.sub(r"<@\1>", esc(text))


def clean(text: object) -> str:
    """Redacted text for plain_text objects (Slack shows them literally; no escaping needed)."""
    return redact(str(text))


def cut(text: str, limit: int) -> str:
    """At most `limit` characters, ending in "…" if shortened, never splitting an entity or a <token>."""
    if len(text) <= limit:
        return text
    head = text[: max(limit - len(ELLIPSIS), 0)]
    head = _OPEN_ENTITY.sub("", head)
    opened, closed = head.rfind("<"), head.rfind(">")
    if opened > closed:
        head = head[:opened]
    return head + ELLIPSIS


def one_line(text: str) -> str:
    return " ".join(text.split())


def code(text: object, *, limit: int = 600) -> str:
    """`text` as a code span: inline if it can be, else a ``` block (a backtick would end an inline span)."""
    raw = cut(redact(str(text)), limit)
    escaped = esc(raw) if raw else "(empty)"
    if "`" not in escaped and "\n" not in escaped:
        return f"`{escaped}`"
    return "```" + escaped.replace("```", "`\u200b`\u200b`") + "```"


def mention(user: str | None) -> str:
    """`<@U…>` for a Slack user ID (so Slack shows the name), the escaped plain name otherwise."""
    if not user:
        return "someone"
    if _SLACK_USER.match(user):
        return f"<@{user}>"
    return esc(user)


def utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:  # the store writes aware times; a naive one is UTC by convention here
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def hhmm(moment: datetime) -> str:
    return f"{utc(moment):%H:%M} UTC"


def day_hhmm(moment: datetime) -> str:
    return f"{utc(moment):%Y-%m-%d %H:%M} UTC"


def ago(delta: timedelta) -> str:
    """Plain words for people: "a few minutes", "12 minutes", "2 hours", "3 days" (bot.format.in_words)."""
    return fmt.in_words(delta)


def join_fitting(lines: Sequence[str], *, limit: int, more: Callable[[int], str] = lambda n: f"…and {n} more") -> str:
    """Whole lines while they fit in `limit`, then one "…and N more" line (itself within the limit)."""
    out: list[str] = []
    used = 0
    for index, line in enumerate(lines):
        remaining = len(lines) - index - 1
        tail = len(more(remaining)) + 1 if remaining else 0
        cost = len(line) + (1 if out else 0)
        if used + cost + tail <= limit:
            out.append(line)
            used += cost
            continue
        if not out:  # even the first line is too long: keep what fits of it
            out.append(cut(line, limit - (len(more(remaining)) + 1 if remaining else 0)))
            if remaining:
                out.append(more(remaining))
        else:
            out.append(more(len(lines) - index))
        break
    return "\n".join(out)


def group_lines(lines: Sequence[str], *, limit: int) -> list[list[str]]:
    """Pack lines into as few groups as possible whose joined text is at most `limit` (long lines are cut)."""
    groups: list[list[str]] = []
    current: list[str] = []
    size = 0
    for raw in lines:
        line = cut(raw, limit)
        cost = len(line) + (1 if current else 0)
        if current and size + cost > limit:
            groups.append(current)
            current, size = [], 0
            cost = len(line)
        current.append(line)
        size += cost
    if current:
        groups.append(current)
    return groups


def chunk_lines(lines: Sequence[str], *, limit: int) -> list[str]:
    return ["\n".join(group) for group in group_lines(lines, limit=limit)]


# --- text objects and blocks ---------------------------------------------------------------------------


def mrkdwn(text: str, *, limit: int = MAX_SECTION_TEXT) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": cut(text, limit) or "—"}


def plain(text: str, *, limit: int = MAX_SECTION_TEXT) -> dict[str, Any]:
    return {"type": "plain_text", "text": cut(clean(text), limit) or "—", "emoji": True}


def section(text: str, *, accessory: Block | None = None, block_id: str | None = None) -> Block:
    block: Block = {"type": "section", "text": mrkdwn(text)}
    if accessory is not None:
        block["accessory"] = accessory
    if block_id:
        block["block_id"] = block_id
    return block


def fields_section(fields: Sequence[str], *, text: str | None = None) -> Block:
    block: Block = {
        "type": "section",
        "fields": [mrkdwn(f, limit=MAX_FIELD_TEXT) for f in fields[:MAX_FIELDS]],
    }
    if text:
        block["text"] = mrkdwn(text)
    return block


def header(text: str) -> Block:
    return {"type": "header", "text": plain(one_line(text), limit=MAX_HEADER_TEXT)}


def context(*texts: str) -> Block:
    return {"type": "context", "elements": [mrkdwn(t) for t in texts[:MAX_CONTEXT_ELEMENTS]]}


def divider() -> Block:
    return {"type": "divider"}


def confirm_dialog(*, title: str, text: str, ok: str, deny: str = "Go back") -> dict[str, Any]:
    return {
        "title": plain(title, limit=100),
        "text": mrkdwn(text, limit=MAX_CONFIRM_TEXT),
        "confirm": plain(ok, limit=30),
        "deny": plain(deny, limit=30),
    }


def button(
    *, text: str, action_id: str, value: str, style: str | None = None, confirm: dict[str, Any] | None = None
) -> Block:
    element: Block = {
        "type": "button",
        "text": plain(one_line(text), limit=MAX_BUTTON_TEXT),
        "action_id": str(action_id),  # a plain str, not the ids enum, in what goes over the wire
        "value": value[:2000],
    }
    if style:
        element["style"] = style
    if confirm:
        element["confirm"] = confirm
    return element


def actions(elements: Sequence[Block], *, block_id: str | None = None) -> Block:
    block: Block = {"type": "actions", "elements": list(elements[:MAX_ACTIONS_ELEMENTS])}
    if block_id:
        block["block_id"] = str(block_id)
    return block


def option(*, text: str, value: str, description: str = "") -> dict[str, Any]:
    item: dict[str, Any] = {"text": plain(text, limit=MAX_OPTION_TEXT), "value": str(value)[:150]}
    if description:
        item["description"] = plain(description, limit=MAX_OPTION_TEXT)
    return item


def cap_blocks(blocks: list[Block], *, limit: int, keep_tail: int = 0, note: str = "") -> list[Block]:
    """Never more than `limit` blocks: drop from the middle, keeping the last `keep_tail` (the buttons)."""
    if len(blocks) <= limit:
        return blocks
    tail = blocks[len(blocks) - keep_tail :] if keep_tail else []
    head = blocks[: limit - keep_tail - 1]
    dropped = len(blocks) - len(head) - len(tail)
    return [*head, context(note or f"…{dropped} more blocks left out to stay within Slack's limits"), *tail]
