"""views.*, auth.test, conversations.*, users.info and usergroups.users.list, as Slack answers them."""

from __future__ import annotations

import json
import time
from typing import Any

from sandbox._blockkit_limits import Surface, view_errors
from sandbox._slack_models import JSON, ApiError, OpenedView, PublishedHome
from sandbox._slack_workspace import Workspace, decode_json_arg, error_metadata

MAX_VIEW_STACK = 3  # a modal plus two pushed views, per Slack's views.push documentation

# -- directory ------------------------------------------------------------------------------------


def auth_test(ws: Workspace, args: JSON) -> JSON:
    return {
        "ok": True,
        "url": f"https://{ws.team_domain}.slack.com/",
        "team": ws.team_domain,
        "user": ws.display_name(ws.bot_user_id),
        "team_id": ws.team_id,
        "user_id": ws.bot_user_id,
        "bot_id": ws.bot_id,
        "is_enterprise_install": False,
    }


def _channel_object(ws: Workspace, channel_id: str) -> JSON:
    kind = channel_id[0]
    return {
        "id": channel_id,
        "name": ws.channel_name(channel_id).removeprefix("@"),
        "name_normalized": ws.channel_name(channel_id).removeprefix("@"),
        "is_channel": kind == "C",
        "is_group": kind == "G",
        "is_im": kind == "D",
        "is_private": kind in ("G", "D"),
        "is_archived": False,
        "is_general": False,
        "is_member": channel_id in ws.joined or kind == "D",
        "created": 1_690_000_000,
        "context_team_id": ws.team_id,
    }


def conversations_info(ws: Workspace, args: JSON) -> JSON:
    channel = args.get("channel")
    if not isinstance(channel, str) or channel.startswith("#"):
        raise ApiError("channel_not_found")  # conversations.info takes IDs only
    return {"ok": True, "channel": _channel_object(ws, ws.resolve_channel(channel))}


def conversations_join(ws: Workspace, args: JSON) -> JSON:
    channel = ws.resolve_channel(args.get("channel"))
    if channel[0] == "D":
        raise ApiError("method_not_supported_for_channel_type")
    answer: JSON = {"ok": True}
    if channel in ws.joined:
        answer["warning"] = "already_in_channel"
        answer["response_metadata"] = {"warnings": ["already_in_channel"]}
    ws.joined.add(channel)
    answer["channel"] = _channel_object(ws, channel)
    return answer


def users_info(ws: Workspace, args: JSON) -> JSON:
    user = args.get("user")
    if not ws.is_known_user(user):
        raise ApiError("user_not_found")
    name = ws.display_name(str(user))
    return {
        "ok": True,
        "user": {
            "id": user,
            "team_id": ws.team_id,
            "name": name.split(" ")[0].lower(),
            "real_name": name,
            "deleted": False,
            "is_bot": user == ws.bot_user_id,
            "tz": "UTC",
            "profile": {"display_name": name, "real_name": name},
        },
    }


def usergroups_users_list(ws: Workspace, args: JSON) -> JSON:
    group = args.get("usergroup")
    if not isinstance(group, str) or group not in ws.usergroups:
        raise ApiError("no_such_subteam")
    return {"ok": True, "users": list(ws.usergroups[group])}


# -- views ----------------------------------------------------------------------------------------


def _view_arg(ws: Workspace, args: JSON, *, expect: Surface | None) -> JSON:
    view = decode_json_arg(args.get("view"), error="invalid_arguments")
    if view is None:
        raise ApiError("invalid_arguments", extra=error_metadata(["view is required [json-pointer:/view]"]))
    errors = view_errors(view, expect=expect, action_id_scope=ws.action_id_scope)
    if errors:
        # Slack answers a bad view with invalid_arguments (not invalid_blocks) and the details.
        raise ApiError("invalid_arguments", extra=error_metadata(errors))
    assert isinstance(view, dict)  # view_errors refuses anything else
    return view


def view_payload(ws: Workspace, view_id: str, view: JSON, view_hash: str, **ids: str | None) -> JSON:
    """The full view object Slack returns and later sends back in view_submission payloads."""
    payload: JSON = {
        "private_metadata": "",
        "callback_id": "",
        "external_id": "",
        "clear_on_close": False,
        "notify_on_close": False,
        "submit": None,
        "close": None,
        **view,
        "id": view_id,
        "team_id": ws.team_id,
        "state": {"values": {}},
        "hash": view_hash,
        "app_id": ws.app_id,
        "app_installed_team_id": ws.team_id,
        "bot_id": ws.bot_id,
        "previous_view_id": None,
        "root_view_id": view_id,
    }
    payload.update(ids)
    return payload


def _answer(ws: Workspace, opened: OpenedView) -> JSON:
    ids = {"root_view_id": opened.root_view_id, "previous_view_id": opened.previous_view_id}
    return {"ok": True, "view": view_payload(ws, opened.id, opened.view, opened.hash, **ids)}


def views_open(ws: Workspace, args: JSON) -> JSON:
    view = _view_arg(ws, args, expect="modal")
    trigger_id = str(args.get("trigger_id") or "")
    trigger = ws.exchange_trigger(args.get("trigger_id"))
    for opened in ws.views.values():  # a new modal replaces whatever the user had open
        if opened.user_id == trigger.user_id:
            opened.closed = True
    view_id = ws.next_view_id()
    opened = OpenedView(
        id=view_id,
        user_id=trigger.user_id,
        view=view,
        method="views.open",
        trigger_id=trigger_id,
        hash=ws.new_hash(),
        root_view_id=view_id,
        external_id=view.get("external_id"),
        opened_at=time.time(),
    )
    ws.views[view_id] = opened
    return _answer(ws, opened)


def views_push(ws: Workspace, args: JSON) -> JSON:
    view = _view_arg(ws, args, expect="modal")
    trigger_id = str(args.get("trigger_id") or "")
    trigger = ws.exchange_trigger(args.get("trigger_id"))
    stack = [v for v in ws.views.values() if v.user_id == trigger.user_id and not v.closed]
    if not stack:
        raise ApiError("not_found")
    if len(stack) >= MAX_VIEW_STACK:
        raise ApiError("push_limit_reached")
    view_id = ws.next_view_id()
    opened = OpenedView(
        id=view_id,
        user_id=trigger.user_id,
        view=view,
        method="views.push",
        trigger_id=trigger_id,
        hash=ws.new_hash(),
        root_view_id=stack[0].id,
        previous_view_id=stack[-1].id,
        external_id=view.get("external_id"),
        opened_at=time.time(),
    )
    ws.views[view_id] = opened
    return _answer(ws, opened)


def views_update(ws: Workspace, args: JSON) -> JSON:
    view_id, external_id = args.get("view_id"), args.get("external_id")
    if not view_id and not external_id:
        raise ApiError("invalid_arguments", extra=error_metadata(["view_id or external_id is required"]))
    home = next((h for h in ws.homes.values() if h.view_id == view_id), None)
    if home is not None:
        return _publish(ws, home.user_id, _view_arg(ws, args, expect="home"), args.get("hash"))
    opened = ws.views.get(str(view_id)) if view_id else None
    if opened is None and external_id:
        opened = next((v for v in ws.views.values() if v.external_id == external_id), None)
    if opened is None or opened.closed:
        raise ApiError("not_found")
    view = _view_arg(ws, args, expect="modal")
    if args.get("hash") and args["hash"] != opened.hash:
        raise ApiError("hash_conflict")
    opened.history.append(opened.view)
    opened.view, opened.hash = view, ws.new_hash()
    return _answer(ws, opened)


def views_publish(ws: Workspace, args: JSON) -> JSON:
    user_id = args.get("user_id")
    if not ws.is_known_user(user_id):
        raise ApiError("user_not_found")
    return _publish(ws, str(user_id), _view_arg(ws, args, expect="home"), args.get("hash"))


def _publish(ws: Workspace, user_id: str, view: JSON, expected_hash: Any) -> JSON:
    home = ws.homes.get(user_id)
    if home is not None and expected_hash and expected_hash != home.hash:
        raise ApiError("hash_conflict")
    if home is None:
        home = PublishedHome(user_id=user_id, view=view, view_id=ws.next_view_id(), hash=ws.new_hash())
        ws.homes[user_id] = home
    else:
        home.history.append(home.view)
        home.view, home.hash = view, ws.new_hash()
        home.publish_count += 1
    return {"ok": True, "view": view_payload(ws, home.view_id, home.view, home.hash)}


def apply_view_response(ws: Workspace, view_id: str, status: int, body: str) -> None:
    """Do what Slack does with a view_submission's ack: close, update, push, clear or show errors."""
    opened = ws.views.get(view_id)
    if opened is None or status != 200:
        return
    try:
        answer = json.loads(body) if body.strip() else {}
    except ValueError:
        answer = {}
    action = answer.get("response_action") if isinstance(answer, dict) else None
    if action == "errors":
        opened.submission_errors = dict(answer.get("errors") or {})
    elif action == "update" and isinstance(answer.get("view"), dict):
        opened.history.append(opened.view)
        opened.view, opened.hash = answer["view"], ws.new_hash()
    elif action == "push" and isinstance(answer.get("view"), dict):
        pushed_id = ws.next_view_id()
        ws.views[pushed_id] = OpenedView(
            id=pushed_id,
            user_id=opened.user_id,
            view=answer["view"],
            method="response_action:push",
            trigger_id="",
            hash=ws.new_hash(),
            root_view_id=opened.root_view_id,
            previous_view_id=opened.id,
            opened_at=time.time(),
        )
    elif action == "clear":
        for view in ws.views.values():
            if view.root_view_id == opened.root_view_id:
                view.closed = True
    else:
        opened.closed = True
