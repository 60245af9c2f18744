"""chat.*, reactions.add, response_url posts and command acks, as Slack's Web API handles them."""

from __future__ import annotations

import time
from typing import Any

from sandbox._slack_models import (
    JSON,
    ApiError,
    Ephemeral,
    MessageVersion,
    ResponseRecord,
    StoredMessage,
)
from sandbox._slack_workspace import (
    RESPONSE_URL_MAX_USES,
    RESPONSE_URL_TTL_SECONDS,
    ResponseTarget,
    Workspace,
    decode_json_arg,
    truthy,
)


def _opt_bool(args: JSON, key: str) -> bool | None:
    return None if args.get(key) is None else truthy(args[key])


def chat_post_message(ws: Workspace, args: JSON) -> JSON:
    channel = ws.resolve_channel(args.get("channel"))
    text, blocks = ws.message_content(args, need_content=True)
    parent = ws.thread_parent(channel, args.get("thread_ts"))
    attachments = decode_json_arg(args.get("attachments"), error="invalid_attachments") or []
    metadata = decode_json_arg(args.get("metadata"), error="invalid_metadata_format")
    message = StoredMessage(
        channel=channel,
        ts=ws.next_ts(),
        text=text or "",
        blocks=blocks or [],
        user=ws.bot_user_id,
        bot_id=ws.bot_id,
        thread_ts=parent.ts if parent else None,
        reply_broadcast=parent is not None and truthy(args.get("reply_broadcast")),
        attachments=attachments if isinstance(attachments, list) else [],
        metadata=metadata if isinstance(metadata, dict) else None,
        unfurl_links=_opt_bool(args, "unfurl_links"),
        unfurl_media=_opt_bool(args, "unfurl_media"),
        posted_at=time.time(),
    )
    ws.store_message(message, parent)
    return {"ok": True, "channel": channel, "ts": message.ts, "message": message.as_payload()}


def _own_message(ws: Workspace, args: JSON, *, refusal: str) -> StoredMessage:
    channel = ws.resolve_channel(args.get("channel"))
    message = ws.find_message(channel, args.get("ts"))
    if message is None or message.deleted:
        # Ephemeral messages cannot be changed through chat.update/chat.delete: Slack says not found.
        raise ApiError("message_not_found")
    if message.bot_id != ws.bot_id:
        raise ApiError(refusal)
    return message


def chat_update(ws: Workspace, args: JSON) -> JSON:
    message = _own_message(ws, args, refusal="cant_update_message")
    text, blocks = ws.message_content(args, need_content=True)
    replace(message, text=text, blocks=blocks)
    return {
        "ok": True,
        "channel": message.channel,
        "ts": message.ts,
        "text": message.text,
        "message": message.as_payload(),
    }


def replace(target: StoredMessage | Ephemeral, *, text: str | None, blocks: list[JSON] | None) -> None:
    """Change a message in place, keeping the old version (Slack shows "(edited)")."""
    target.history.append(MessageVersion(text=target.text, blocks=target.blocks, at=time.time()))
    if text is not None:
        target.text = text
    # chat.update keeps the previous blocks when none are sent; an empty list removes them.
    if blocks is not None:
        target.blocks = blocks


def chat_delete(ws: Workspace, args: JSON) -> JSON:
    message = _own_message(ws, args, refusal="cant_delete_message")
    message.deleted = True
    return {"ok": True, "channel": message.channel, "ts": message.ts}


def chat_post_ephemeral(ws: Workspace, args: JSON) -> JSON:
    channel = ws.resolve_channel(args.get("channel"))
    user = args.get("user")
    if not ws.is_known_user(user):
        raise ApiError("user_not_found")
    text, blocks = ws.message_content(args, need_content=True)
    thread_ts = args.get("thread_ts") or None
    ephemeral = Ephemeral(
        channel=channel,
        user=str(user),
        ts=ws.next_ts(),
        text=text or "",
        blocks=blocks or [],
        source="chat.postEphemeral",
        thread_ts=str(thread_ts) if thread_ts else None,
        posted_at=time.time(),
    )
    ws.ephemerals.append(ephemeral)
    return {"ok": True, "message_ts": ephemeral.ts}


def reactions_add(ws: Workspace, args: JSON) -> JSON:
    channel = ws.resolve_channel(args.get("channel"))
    name = args.get("name")
    if not isinstance(name, str) or not name.strip(":"):
        raise ApiError("invalid_name")
    message = ws.find_message(channel, args.get("timestamp"))
    if message is None or message.deleted:
        raise ApiError("message_not_found")
    users = message.reactions.setdefault(name.strip(":"), [])
    if ws.bot_user_id in users:
        raise ApiError("already_reacted")
    users.append(ws.bot_user_id)
    return {"ok": True}


# -- response_url -------------------------------------------------------------------------------


def post_response(ws: Workspace, response_id: str, body: JSON) -> tuple[int, JSON]:
    """A POST to a response_url: validated, recorded, and applied to the conversation like Slack."""
    target = ws.response_targets.get(response_id)
    if target is None:
        return 404, {"ok": False, "error": "invalid_url"}
    if time.monotonic() - target.issued > RESPONSE_URL_TTL_SECONDS:
        return _rejected(ws, response_id, body, 404, "expired_url")
    if target.uses >= RESPONSE_URL_MAX_USES:
        return _rejected(ws, response_id, body, 404, "used_url")
    try:
        text, blocks = ws.message_content(body, need_content=not truthy(body.get("delete_original")))
    except ApiError as exc:
        return _rejected(ws, response_id, body, 400, exc.error, exc.extra)
    target.uses += 1
    response_type = str(body.get("response_type") or "ephemeral")
    thread_ts = body.get("thread_ts") or None
    effect = _apply_response(ws, target, body, text=text, blocks=blocks, response_type=response_type)
    if effect.startswith("rejected"):
        return _rejected(ws, response_id, body, 404, effect.removeprefix("rejected: "))
    ws.responses.append(_record(ws, response_id, body, 200, effect, text, blocks, thread_ts))
    return 200, {"ok": True}


def _apply_response(
    ws: Workspace,
    target: ResponseTarget,
    body: JSON,
    *,
    text: str | None,
    blocks: list[JSON] | None,
    response_type: str,
) -> str:
    original: StoredMessage | Ephemeral | None = None
    if target.message_ts and target.channel:
        original = ws.find_message(target.channel, target.message_ts) or ws.find_ephemeral(target.message_ts)
    if truthy(body.get("delete_original")):
        if original is None or original.deleted:
            return "rejected: message_not_found"
        original.deleted = True
        return "deleted"
    if truthy(body.get("replace_original")) and original is not None:
        # A replacement is the whole new message: blocks not sent are gone, unlike chat.update.
        replace(original, text=text or "", blocks=blocks or [])
        return "replaced"
    channel = target.channel or ""
    if response_type == "in_channel":
        if not channel:
            return "rejected: channel_not_found"
        try:
            ws.post_as_bot(channel=channel, text=text or "", blocks=blocks or [], thread_ts=body.get("thread_ts"))
        except ApiError as exc:
            return f"rejected: {exc.error}"
        return "in_channel"
    ws.ephemerals.append(
        Ephemeral(
            channel=channel,
            user=target.user or "",
            ts=ws.next_ts(),
            text=text or "",
            blocks=blocks or [],
            source="response_url",
            thread_ts=body.get("thread_ts") or None,
            posted_at=time.time(),
        )
    )
    return "ephemeral"


def _record(
    ws: Workspace,
    response_id: str,
    body: JSON,
    status: int,
    effect: str,
    text: str | None,
    blocks: list[JSON] | None,
    thread_ts: Any,
) -> ResponseRecord:
    target = ws.response_targets.get(response_id)
    raw_blocks = body.get("blocks")
    return ResponseRecord(
        response_id=response_id,
        channel=target.channel if target else None,
        user=target.user if target else None,
        message_ts=target.message_ts if target else None,
        response_type=str(body.get("response_type") or "ephemeral"),
        replace_original=truthy(body.get("replace_original")),
        delete_original=truthy(body.get("delete_original")),
        text=text if text is not None else str(body.get("text") or ""),
        blocks=blocks if blocks is not None else (raw_blocks if isinstance(raw_blocks, list) else []),
        thread_ts=str(thread_ts) if thread_ts else None,
        body=body,
        status=status,
        effect=effect,
        at=time.time(),
    )


def _rejected(
    ws: Workspace, response_id: str, body: JSON, status: int, error: str, extra: JSON | None = None
) -> tuple[int, JSON]:
    ws.responses.append(_record(ws, response_id, body, status, f"rejected: {error}", None, None, None))
    return status, {"ok": False, "error": error, **(extra or {})}


# -- acknowledgements -----------------------------------------------------------------------------


def record_command_ack(ws: Workspace, *, channel: str, user: str, body: JSON) -> None:
    """Slack shows a slash command's ack body to the user (or the channel, for in_channel)."""
    errors: list[str] = []
    try:
        text, blocks = ws.message_content(body, need_content=True)
    except ApiError as exc:
        errors = list(exc.extra.get("errors", [])) or [exc.error]
        text, blocks = f"(Slack refused this response: {exc.error})", None
    if body.get("response_type") == "in_channel" and not errors:
        ws.post_as_bot(channel=channel, text=text or "", blocks=blocks or [], thread_ts=None)
        return
    ws.ephemerals.append(
        Ephemeral(
            channel=channel,
            user=user,
            ts=ws.next_ts(),
            text=text or "",
            blocks=blocks or [],
            source="command_ack",
            errors=errors,
            posted_at=time.time(),
        )
    )
