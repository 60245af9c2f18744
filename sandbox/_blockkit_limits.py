"""Block Kit validation with the limits Slack enforces, for the Slack Web API stand-in.

Slack answers a bad surface with `invalid_blocks` (messages) or `invalid_arguments` (views) and a
list of problems, each ending in a JSON pointer. We produce the same shape so a test failure names
the exact block and field, and so the bot is caught sending what real Slack would refuse at 3 a.m.

Two sources, in this order:
1. Slack's own SDK, `slack_sdk.models` (sandbox/_slack_sdk_check.py): text lengths of sections,
   headers, buttons, labels, hints, placeholders, confirm dialogs and images; how many fields,
   context and actions elements and options; block_id and action_id lengths; button styles, values
   and URLs; the modal's title, submit and close; private_metadata and callback_id; 1 to 100 blocks
   in a view; the fields each block and element must have.
2. This table, only for what slack_sdk does not check (docs.slack.dev/reference/block-kit):
   - at most 50 blocks in a message, and 40,000 characters of message text;
   - which block types exist, and which element types each place accepts (SDK: skips unknown ones);
   - text objects: plain_text where Slack wants it (headers, buttons, labels, modal titles), no
     unknown keys, never empty; a section field at most 2,000 characters; a context text 3,000;
   - block_id and action_id unique (the SDK validates one object at a time);
   - actions and context blocks with at least one element; images with an image_url or slack_file;
   - option text at most 75 and value at most 150 characters; a view's external_id at most 255;
   - a view's type modal or home (the SDK also takes workflow_step), the surface a method expects,
     a modal title present, and a submit button when a modal has inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from sandbox import _slack_sdk_check as sdk

MAX_MESSAGE_BLOCKS = 50
MAX_MESSAGE_TEXT = 40_000
MAX_SECTION_TEXT = 3000  # a context block's text elements (the SDK checks section text itself)
MAX_FIELD_TEXT = 2000
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_EXTERNAL_ID = 255

Surface = Literal["message", "modal", "home"]
# Slack documents action_id as unique "among all other action_ids in the containing block"; we
# default to the stricter whole-surface rule because Bolt routes by action_id and a duplicate across
# blocks is almost always a bug in how we built the message.
ActionIdScope = Literal["surface", "block"]

BLOCK_TYPES = frozenset(
    {
        "section",
        "header",
        "divider",
        "context",
        "actions",
        "image",
        "input",
        "rich_text",
        "file",
        "video",
        "markdown",
    }
)
_SELECTS = frozenset(
    {
        "static_select",
        "external_select",
        "users_select",
        "conversations_select",
        "channels_select",
        "multi_static_select",
        "multi_external_select",
        "multi_users_select",
        "multi_conversations_select",
        "multi_channels_select",
    }
)
_PICKERS = frozenset({"datepicker", "timepicker", "datetimepicker", "checkboxes", "radio_buttons"})
_TEXT_INPUTS = frozenset(
    {
        "plain_text_input",
        "email_text_input",
        "url_text_input",
        "number_input",
        "rich_text_input",
        "file_input",
    }
)
_ACTIONS_ELEMENTS = frozenset({"button", "overflow"} | _SELECTS | _PICKERS | {"workflow_button"})
_SECTION_ACCESSORIES = _ACTIONS_ELEMENTS | {"image"}
_INPUT_ELEMENTS = _SELECTS | _PICKERS | _TEXT_INPUTS
_CONTEXT_ELEMENTS = frozenset({"plain_text", "mrkdwn", "image"})


@dataclass
class _Checker:
    surface: Surface
    action_id_scope: ActionIdScope
    errors: list[str] = field(default_factory=list)
    _block_ids: set[str] = field(default_factory=set)
    _action_ids: set[str] = field(default_factory=set)

    def fail(self, problem: str, path: str) -> None:
        self.errors.append(f"{problem} [json-pointer:{path}]")

    # -- text objects -----------------------------------------------------------------------------

    def text(
        self, obj: Any, path: str, *, limit: int | None = None, plain_only: bool = False, required: bool = True
    ) -> None:
        if obj is None:
            if required:
                self.fail("is required", path)
            return
        if not isinstance(obj, dict):
            self.fail("must be a text object", path)
            return
        kind = obj.get("type")
        if kind not in ("plain_text", "mrkdwn"):
            self.fail(f"text object type must be plain_text or mrkdwn, got {kind!r}", f"{path}/type")
            return
        if plain_only and kind != "plain_text":
            self.fail("must be a plain_text text object, got mrkdwn", f"{path}/type")
        allowed = {"type", "text", "emoji" if kind == "plain_text" else "verbatim"}
        for key in sorted(set(obj) - allowed):
            self.fail(f"invalid additional property: {key}", path)
        self.string(obj.get("text"), f"{path}/text", limit=limit, required=True, min_len=1)

    def string(
        self, value: Any, path: str, *, limit: int | None = None, required: bool = False, min_len: int = 0
    ) -> None:
        if value is None:
            if required:
                self.fail("is required", path)
            return
        if not isinstance(value, str):
            self.fail("must be a string", path)
        elif len(value) < min_len:
            self.fail(f"must be at least {min_len} character{'s' if min_len != 1 else ''}", path)
        elif limit is not None and len(value) > limit:
            self.fail(f"must be at most {limit} characters (got {len(value)})", path)

    def items(self, value: Any, path: str, *, limit: int | None = None, required: bool = True) -> list[Any]:
        if value is None:
            if required:
                self.fail("is required", path)
            return []
        if not isinstance(value, list):
            self.fail("must be an array", path)
            return []
        if required and not value:
            self.fail("must contain at least 1 item", path)
        if limit is not None and len(value) > limit:
            self.fail(f"must contain at most {limit} items (got {len(value)})", path)
        return value

    # -- blocks -----------------------------------------------------------------------------------

    def blocks(self, blocks: Any, path: str, *, limit: int | None) -> None:
        for index, block in enumerate(self.items(blocks, path, limit=limit, required=False)):
            self.block(block, f"{path}/{index}")

    def block(self, block: Any, path: str) -> None:
        if not isinstance(block, dict):
            self.fail("must be a block object", path)
            return
        kind = block.get("type")
        if not isinstance(kind, str) or not kind:
            self.fail("missing required field: type", path)
            return
        if kind not in BLOCK_TYPES:
            self.fail(f"unsupported block type: {kind}", f"{path}/type")
            return
        block_id = block.get("block_id")
        self.string(block_id, f"{path}/block_id")
        if isinstance(block_id, str):
            if block_id in self._block_ids:
                self.fail(f"duplicate block_id: {block_id}", f"{path}/block_id")
            self._block_ids.add(block_id)
        block_action_ids: set[str] = set()
        getattr(self, f"_block_{kind}", self._block_other)(block, path, block_action_ids)

    def _block_section(self, block: dict[str, Any], path: str, seen: set[str]) -> None:
        self.text(block.get("text"), f"{path}/text", required=False)
        fields = self.items(block.get("fields"), f"{path}/fields", required=False)
        for index, item in enumerate(fields):
            self.text(item, f"{path}/fields/{index}", limit=MAX_FIELD_TEXT)
        if block.get("accessory") is not None:
            self.element(block["accessory"], f"{path}/accessory", _SECTION_ACCESSORIES, seen)

    def _block_header(self, block: dict[str, Any], path: str, seen: set[str]) -> None:
        self.text(block.get("text"), f"{path}/text", plain_only=True, required=False)

    def _block_divider(self, block: dict[str, Any], path: str, seen: set[str]) -> None:
        return

    def _block_context(self, block: dict[str, Any], path: str, seen: set[str]) -> None:
        elements = self.items(block.get("elements"), f"{path}/elements")
        for index, element in enumerate(elements):
            where = f"{path}/elements/{index}"
            kind = element.get("type") if isinstance(element, dict) else None
            if kind == "image":
                self.element(element, where, _CONTEXT_ELEMENTS, seen)
            elif kind in ("plain_text", "mrkdwn"):
                self.text(element, where, limit=MAX_SECTION_TEXT)
            else:
                self.fail(f"context elements must be text objects or images, got {kind!r}", where)

    def _block_actions(self, block: dict[str, Any], path: str, seen: set[str]) -> None:
        elements = self.items(block.get("elements"), f"{path}/elements")
        for index, element in enumerate(elements):
            self.element(element, f"{path}/elements/{index}", _ACTIONS_ELEMENTS, seen)

    def _block_image(self, block: dict[str, Any], path: str, seen: set[str]) -> None:
        self._image_source(block, path)
        self.string(block.get("alt_text"), f"{path}/alt_text", min_len=1)
        self.text(block.get("title"), f"{path}/title", plain_only=True, required=False)

    def _block_input(self, block: dict[str, Any], path: str, seen: set[str]) -> None:
        self.text(block.get("label"), f"{path}/label", plain_only=True, required=False)
        self.text(block.get("hint"), f"{path}/hint", plain_only=True, required=False)
        if block.get("element") is not None:
            self.element(block["element"], f"{path}/element", _INPUT_ELEMENTS, seen)

    def _block_other(self, block: dict[str, Any], path: str, seen: set[str]) -> None:
        # rich_text, file, video, markdown: we never send them; accept them without deeper checks.
        return

    def _image_source(self, obj: dict[str, Any], path: str) -> None:
        if obj.get("image_url") is None and obj.get("slack_file") is None:
            self.fail("must define either image_url or slack_file", path)

    # -- elements ---------------------------------------------------------------------------------

    def element(self, element: Any, path: str, allowed: frozenset[str], seen: set[str]) -> None:
        if not isinstance(element, dict):
            self.fail("must be an element object", path)
            return
        kind = element.get("type")
        if not isinstance(kind, str) or not kind:
            self.fail("missing required field: type", path)
            return
        if kind not in allowed:
            self.fail(f"element type {kind} is not allowed here", f"{path}/type")
            return
        if kind == "image":
            self._image_source(element, path)
            self.string(element.get("alt_text"), f"{path}/alt_text", min_len=1)
            return
        self.action_id(element.get("action_id"), f"{path}/action_id", seen)
        if kind == "button":
            self.text(element.get("text"), f"{path}/text", plain_only=True, required=False)
        self.text(element.get("placeholder"), f"{path}/placeholder", plain_only=True, required=False)
        if element.get("options") is not None:
            for index, option in enumerate(self.items(element["options"], f"{path}/options")):
                self.option(option, f"{path}/options/{index}")
        if element.get("confirm") is not None:
            self.confirm(element["confirm"], f"{path}/confirm")

    def action_id(self, value: Any, path: str, seen: set[str]) -> None:
        self.string(value, path)
        if not isinstance(value, str):
            return
        scope = seen if self.action_id_scope == "block" else self._action_ids
        if value in scope:
            self.fail(f"duplicate action_id: {value}", path)
        scope.add(value)

    def option(self, option: Any, path: str) -> None:
        if not isinstance(option, dict):
            self.fail("must be an option object", path)
            return
        self.text(option.get("text"), f"{path}/text", limit=MAX_OPTION_TEXT)
        self.string(option.get("value"), f"{path}/value", limit=MAX_OPTION_VALUE, required=True)

    def confirm(self, confirm: Any, path: str) -> None:
        if not isinstance(confirm, dict):
            self.fail("must be a confirmation dialog object", path)
            return
        self.text(confirm.get("title"), f"{path}/title", plain_only=True, required=False)
        self.text(confirm.get("text"), f"{path}/text", required=False)
        self.text(confirm.get("confirm"), f"{path}/confirm", plain_only=True, required=False)
        self.text(confirm.get("deny"), f"{path}/deny", plain_only=True, required=False)


def message_block_errors(blocks: Any, *, action_id_scope: ActionIdScope = "surface") -> list[str]:
    """Every problem Slack would name in a message's `blocks` (empty list: valid)."""
    checker = _Checker("message", action_id_scope)
    if not isinstance(blocks, list):
        checker.fail("must be an array of blocks", "/blocks")
        return checker.errors
    checker.blocks(blocks, "/blocks", limit=MAX_MESSAGE_BLOCKS)
    return _unique(sdk.block_errors(blocks, "/blocks") + checker.errors)


def view_errors(view: Any, *, expect: Surface | None = None, action_id_scope: ActionIdScope = "surface") -> list[str]:
    """Every problem Slack would name in a modal or Home tab view (empty list: valid)."""
    checker = _Checker("home" if expect == "home" else "modal", action_id_scope)
    if not isinstance(view, dict):
        checker.fail("must be a view object", "/view")
        return checker.errors
    kind = view.get("type")
    if kind not in ("modal", "home"):
        checker.fail(f"view type must be modal or home, got {kind!r}", "/view/type")
        return checker.errors
    if expect is not None and kind != expect:
        checker.fail(f"this method takes a {expect} view, got {kind}", "/view/type")
    if kind == "modal":
        checker.text(view.get("title"), "/view/title", plain_only=True)
        for key in ("submit", "close"):
            checker.text(view.get(key), f"/view/{key}", plain_only=True, required=False)
        blocks = view.get("blocks")
        has_input = isinstance(blocks, list) and any(isinstance(b, dict) and b.get("type") == "input" for b in blocks)
        if has_input and view.get("submit") is None:
            checker.fail("submit is required when a view contains input blocks", "/view/submit")
    checker.string(view.get("private_metadata"), "/view/private_metadata")
    checker.string(view.get("callback_id"), "/view/callback_id")
    checker.string(view.get("external_id"), "/view/external_id", limit=MAX_EXTERNAL_ID)
    if view.get("blocks") is not None:
        checker.blocks(view.get("blocks"), "/view/blocks", limit=None)
    return _unique(sdk.view_errors(view) + checker.errors)


def _unique(errors: list[str]) -> list[str]:
    """Each problem once: where the SDK and the table both see it (a missing field), say it once."""
    return list(dict.fromkeys(errors))
