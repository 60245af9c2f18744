"""Thousands of signed payloads, of every shape, to the real app over real HTTP: never a 5xx or a traceback.

For every interactivity type the app handles (a click on each of its buttons, a submission of each of
its modals, view_closed, shortcuts and message actions, the slash command with odd form fields, the
app_home_opened event, url_verification) hypothesis starts from a payload shaped as Slack sends it,
then breaks it: fields removed or nulled, wrong types, lists where objects belong and the other way
round, extra fields. Each is signed as Slack signs it and posted to the app (waitress, Bolt, the
Slack Web API stand-in). Then:

- never a 5xx;
- a payload this file's own reading of Slack's shapes (RULES, written independently of the app's
  pydantic models) calls malformed is answered 400, with one log line that says so;
- a well-shaped one is not refused as malformed (200, or 404 for kinds the app does not handle);
- no log record anywhere carries a traceback.

The world holds one plan waiting for approval, so some clicks name a real run; the people clicking are
never approvers, so nothing runs.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.config import load_config
from bot.services import Services, build_services
from handlers.ids import Action, View, checklist_action, checklist_value, run_value
from sandbox.scenario import build_incident
from sandbox.slack_harness import GENERAL, SlackWorkspace
from sandbox.slack_signing import FORM, JSON_TYPE
from tests.conftest import TEST_URL_ENV
from tests.fixtures.runs import MonkeyEnv

ALICE, MALLORY = "U0ALICE", "U0MALLORY"
SETTINGS = settings(
    deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
MISSING = object()

# --- the world ---------------------------------------------------------------------------------------------


class Records(logging.Handler):
    """Every log record of the process while the world lives; those carrying a traceback set aside."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.records: list[logging.LogRecord] = []
        self.tracebacks: list[str] = []
        self.guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        with self.guard:
            self.records.append(record)
            if record.exc_info or record.exc_text or record.stack_info or "Traceback" in message:
                self.tracebacks.append(f"{record.name}: {message[:300]}")

    def since(self, start: int) -> list[logging.LogRecord]:
        with self.guard:
            return self.records[start:]


@dataclass
class World:
    workspace: SlackWorkspace
    services: Services
    run_id: str
    plan_hash: str
    logs: Records
    sent: dict[str, int] = field(default_factory=dict)
    verdicts: dict[str, int] = field(default_factory=dict)

    def post(self, body: bytes, content_type: str, *, kind: str) -> tuple[int, list[logging.LogRecord]]:
        start = len(self.logs.records)
        response = self.workspace.slack.post(body, content_type)
        self.sent[kind] = self.sent.get(kind, 0) + 1
        return response.status_code, self.logs.since(start)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    logs = Records()
    root_logger = logging.getLogger()
    root_logger.addHandler(logs)
    with pytest.MonkeyPatch.context() as monkeypatch:
        root = tmp_path_factory.mktemp("shapes")
        monkeypatch.chdir(root)
        monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test-token")
        incident = build_incident(Path(root) / "stage", url_env=TEST_URL_ENV, environ=MonkeyEnv(monkeypatch))
        services = build_services(config=load_config(incident.config_path))
        workspace = SlackWorkspace(services).start()
        try:
            workspace.slash(ALICE, "prod --db none --dry-run")  # a plan waiting for approval: buttons can name it
            record = services.store.list_runs()[0]
            world = World(workspace, services, run_id=record.id, plan_hash=record.plan_hash, logs=logs)
            yield world
            workspace.settle()
            assert logs.tracebacks == []
            print(f"\npayloads sent by kind: {world.sent} (total {sum(world.sent.values())})")
            print(f"verdict → status: {dict(sorted(world.verdicts.items()))}")
        finally:
            workspace.stop()
            services.close()
            incident.close()
            root_logger.removeHandler(logs)


# --- what Slack sends ------------------------------------------------------------------------------------

people = st.one_of(st.sampled_from([MALLORY, "U0NOBODY"]), st.text(min_size=1, max_size=12))
junk = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=12)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)
EXTRA_NAMES = ["x_extra", "unused", "is_beta", "zz_top", "metadata_x"]  # names neither Slack nor Bolt give meaning


def envelope(world: World, user: str) -> dict[str, Any]:
    sender = world.workspace.slack
    return {
        "user": {"id": user, "username": user, "name": user, "team_id": sender.team_id},
        "api_app_id": sender.api_app_id,
        "token": sender.verification_token,
        "team": {"id": sender.team_id, "domain": sender.team_domain},
        "enterprise": None,
        "is_enterprise_install": False,
        "trigger_id": world.workspace.api.make_trigger_id(user_id=user),
    }


def button_values(world: World) -> st.SearchStrategy[str]:
    real = run_value(world.run_id, world.plan_hash)
    return st.one_of(
        st.sampled_from([real, run_value(world.run_id, "stale"), "no-such-run|x", "", "|", world.run_id]),
        st.text(max_size=30),
    )


@st.composite
def click(draw: st.DrawFn, world: World) -> dict[str, Any]:
    action_id = draw(
        st.sampled_from([*(a.value for a in Action if a is not Action.CHECKLIST_DONE), checklist_action("item")])
    )
    value = draw(button_values(world))
    if action_id.startswith(Action.CHECKLIST_DONE.value):
        value = draw(st.sampled_from([checklist_value(world.run_id, "monitor_logs"), value]))
    user = draw(people)
    api = world.workspace.api
    return {
        "type": "block_actions",
        **envelope(world, user),
        "container": {"type": "message", "message_ts": "1.000001", "channel_id": GENERAL, "is_ephemeral": False},
        "channel": {"id": GENERAL, "name": "general"},
        "message": {"type": "message", "ts": "1.000001", "text": "plan", "blocks": []},
        "state": {"values": {}},
        "response_url": api.make_response_url(channel=GENERAL, user=user, message_ts="1.000001"),
        "actions": [
            {"action_id": action_id, "block_id": "plan_actions", "value": value, "type": "button", "action_ts": "1.2"}
        ],
    }


def selected(value: str | None) -> dict[str, Any]:
    return {"type": "static_select", "selected_option": None if value is None else {"value": value}}


@st.composite
def submission(draw: st.DrawFn, world: World, kind: str = "view_submission") -> dict[str, Any]:
    callback = draw(st.sampled_from([View.OPTIONS.value, View.TYPED_CONFIRMATION.value]))
    if callback == View.OPTIONS.value:
        metadata = draw(st.sampled_from([GENERAL, "", f"{GENERAL}|{world.run_id}"]) | st.text(max_size=20))
        values: dict[str, Any] = {
            "env": {"env": selected(draw(st.sampled_from(["prod", "nosuch", None]) | st.text(max_size=8)))},
            "target": {"target": {"type": "plain_text_input", "value": draw(st.sampled_from([None, "zz", "abc1"]))}},
            "code": {"code": selected(draw(st.sampled_from(["default", "revert", "yolo", None])))},
            "db": {"db": selected(draw(st.sampled_from(["default", "none", "dump", None])))},
            "options": {
                "options": {
                    "type": "checkboxes",
                    "selected_options": [{"value": v} for v in draw(st.sets(st.sampled_from(["dry_run", "no_flags"])))],
                }
            },
        }
    else:
        metadata = draw(button_values(world))
        typed = draw(st.sampled_from(["prod", "staging", None]) | st.text(max_size=8))
        values = {"typed_env": {"typed_env": {"type": "plain_text_input", "value": typed}}}
    base = envelope(world, draw(people))
    view = {
        "id": "V0SHAPES",
        "team_id": base["team"]["id"],
        "type": "modal",
        "callback_id": callback,
        "private_metadata": metadata,
        "blocks": [],
        "title": {"type": "plain_text", "text": "Roll back"},
        "state": {"values": values},
    }
    if kind == "view_closed":
        return {"type": "view_closed", **base, "view": view, "is_cleared": False}
    return {"type": "view_submission", **base, "view": view, "response_urls": []}


@st.composite
def shortcut(draw: st.DrawFn, world: World) -> dict[str, Any]:
    user = draw(people)
    payload = {"type": "shortcut", **envelope(world, user), "callback_id": draw(st.sampled_from(["rollback", "x"]))}
    if draw(st.booleans()):
        payload["type"] = "message_action"
        payload["channel"] = {"id": GENERAL, "name": "general"}
        payload["message"] = {"type": "message", "ts": "1.000001", "text": "hi"}
        payload["response_url"] = world.workspace.api.make_response_url(channel=GENERAL, user=user)
    return payload


@st.composite
def event(draw: st.DrawFn, world: World) -> dict[str, Any]:
    sender = world.workspace.slack
    if draw(st.integers(0, 9)) == 0:
        return {"type": "url_verification", "token": sender.verification_token, "challenge": draw(st.text())}
    user = draw(st.sampled_from([MALLORY, "U0NOBODY"]) | st.text(min_size=1, max_size=10))
    return {
        "token": sender.verification_token,
        "team_id": sender.team_id,
        "api_app_id": sender.api_app_id,
        "type": "event_callback",
        "event_id": "Ev0SHAPES",
        "event_time": 1700000000,
        "is_ext_shared_channel": False,
        "authorizations": [{"enterprise_id": None, "team_id": sender.team_id, "user_id": "U0BOT", "is_bot": True}],
        "event": {
            "type": "app_home_opened",
            "user": user,
            "channel": "D" + user[1:],
            "tab": draw(st.sampled_from(["home", "messages"])),
            "event_ts": "1.5",
        },
    }


# --- the shape Slack promises, as this test reads it -------------------------------------------------------

S, ID, INT, BOOL, OBJ, LIST, NULL, ABSENT = "str", "id", "int", "bool", "obj", "list", "null", "absent"
OPT = (NULL, ABSENT)  # optional: may be missing or null


def kind_of(value: Any) -> set[str]:
    if value is MISSING:
        return {ABSENT}
    if value is None:
        return {NULL}
    if isinstance(value, bool):
        return {BOOL}
    if isinstance(value, int):
        return {INT}
    if isinstance(value, str):
        return {S, ID} if value else {S}
    if isinstance(value, dict):
        return {OBJ}
    if isinstance(value, list):
        return {LIST, "nonempty"} if value else {LIST}
    return {"other"}


AUTHORIZATIONS = [
    ("authorizations", (LIST, *OPT)),
    ("authorizations.*", (OBJ,)),
    *[(f"authorizations.*.{name}", (S, *OPT)) for name in ("enterprise_id", "team_id", "user_id")],
    *[(f"authorizations.*.{name}", (S, OBJ, *OPT)) for name in ("enterprise", "team")],
    *[(f"authorizations.*.{name}", (BOOL, *OPT)) for name in ("is_bot", "is_enterprise_install")],
]
ENVELOPE = [
    ("user", (OBJ,)),
    ("user.id", (ID,)),
    ("user.team_id", (S, *OPT)),
    ("team", (OBJ, *OPT)),
    ("team.id", (S,)),
    ("enterprise", (OBJ, *OPT)),
    ("api_app_id", (S, *OPT)),
    ("token", (S, *OPT)),
    ("is_enterprise_install", (BOOL, *OPT)),
    *AUTHORIZATIONS,
]
STATE = [
    ("values", (OBJ,)),
    ("values.*", (OBJ,)),
    ("values.*.*", (OBJ,)),
    ("values.*.*.type", (S, *OPT)),
    ("values.*.*.value", (S, *OPT)),
    ("values.*.*.selected_option", (OBJ, *OPT)),
    ("values.*.*.selected_option.value", (S,)),
    ("values.*.*.selected_options", (LIST, *OPT)),
    ("values.*.*.selected_options.*", (OBJ,)),
    ("values.*.*.selected_options.*.value", (S,)),
]
VIEW = [
    ("view", (OBJ,)),
    ("view.id", (ID,)),
    ("view.callback_id", (S,)),
    ("view.private_metadata", (S, ABSENT)),
]
RULES: dict[str, list[tuple[str, tuple[str, ...]]]] = {
    "block_actions": [
        *ENVELOPE,
        ("actions", ("nonempty",)),
        ("actions.*", (OBJ,)),
        ("actions.*.action_id", (S,)),
        *[(f"actions.*.{name}", (S, *OPT)) for name in ("block_id", "type", "value", "action_ts")],
        ("trigger_id", (S,)),
        ("response_url", (S, *OPT)),
        ("channel", (OBJ, *OPT)),
        ("channel.id", (ID,)),
        *[(name, (OBJ, *OPT)) for name in ("container", "message", "view", "state")],
    ],
    "view_submission": [
        *ENVELOPE,
        *VIEW,
        ("view.type", (S,)),
        ("view.state", (OBJ,)),
        *[(f"view.state.{path}", kinds) for path, kinds in STATE],
        ("view.team_id", (S, *OPT)),
        ("view.app_installed_team_id", (S, *OPT)),
        ("trigger_id", (S, *OPT)),
        ("response_urls", (LIST, ABSENT)),  # never null: Bolt takes its length
        ("response_urls.*", (OBJ,)),
        ("response_urls.*.response_url", (S,)),
    ],
    "view_closed": [
        *ENVELOPE,
        *VIEW,
        ("view.state", (OBJ, *OPT)),
        *[(f"view.state.{path}", kinds) for path, kinds in STATE],
        ("is_cleared", (BOOL, *OPT)),
    ],
    "shortcut": [*ENVELOPE, ("callback_id", (S,)), ("trigger_id", (S,))],
    "message_action": [
        *ENVELOPE,
        ("callback_id", (S,)),
        ("trigger_id", (S,)),
        ("channel", (OBJ,)),
        ("channel.id", (ID,)),
        ("message", (OBJ,)),
        ("response_url", (S,)),
    ],
    "event_callback": [
        ("event", (OBJ,)),
        ("event.type", (S,)),
        *[(f"event.{name}", (S, OBJ, *OPT)) for name in ("user", "channel", "team", "enterprise")],
        *[(name, (S, *OPT)) for name in ("team_id", "api_app_id", "token", "event_id")],
        ("event_time", (INT, *OPT)),
        ("is_ext_shared_channel", (BOOL, *OPT)),
        *AUTHORIZATIONS,
    ],
    "app_home_opened": [
        ("event.user", (ID,)),
        *[(f"event.{name}", (S, *OPT)) for name in ("channel", "tab", "event_ts")],
        ("event.view", (OBJ, *OPT)),
    ],
    "url_verification": [("challenge", (S,)), ("token", (S, *OPT))],
    "slash": [(name, (ID,)) for name in ("user_id", "channel_id")]
    + [(name, (S,)) for name in ("command", "trigger_id", "response_url")],
}


def values_at(payload: Any, path: str) -> Iterator[Any]:
    """Every value at `path` ("a.*.b"), or MISSING where the parent is there but the child is not."""
    *parents, last = path.split(".")
    nodes = [payload]
    for part in parents:
        nodes = [
            child
            for node in nodes
            for child in (
                (node.values() if isinstance(node, dict) else node if isinstance(node, list) else [])
                if part == "*"
                else ([node[part]] if isinstance(node, dict) and part in node else [])
            )
        ]
    for node in nodes:
        if last == "*":
            yield from node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
        elif isinstance(node, dict):
            yield node.get(last, MISSING)


def verdict(payload: Any) -> str:
    """ "malformed", "well-shaped", or "unknown" (a kind the app does not handle: anything but a 5xx)."""
    if not isinstance(payload, dict):
        return "malformed"
    if any(name in payload and not isinstance(payload[name], dict) for name in ("event", "view")):
        return "malformed"  # Bolt reads into these in every body that has one, whatever its type
    if "command" in payload:
        rules = RULES["slash"]
    else:
        kind = payload.get("type")
        if kind is None or (isinstance(kind, str) and kind not in RULES):
            return "unknown"
        if not isinstance(kind, str):
            return "malformed"
        rules = RULES[kind]
        if kind == "event_callback":
            event_value = payload.get("event")
            if isinstance(event_value, dict) and event_value.get("type") == "app_home_opened":
                rules = rules + RULES["app_home_opened"]
    for path, kinds in rules:
        for value in values_at(payload, path):
            if not kind_of(value) & set(kinds):
                return "malformed"
    view = payload.get("view")
    if payload.get("type") == "view_submission" and isinstance(view, dict) and view.get("type") == "workflow_step":
        return "malformed" if not isinstance(payload.get("workflow_step"), dict) else "well-shaped"
    return "well-shaped"


# --- breaking it -----------------------------------------------------------------------------------------


def paths_of(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        yield from paths_of(child, (*prefix, key))


def replacement(draw: st.DrawFn, how: str, current: Any) -> Any:
    if how == "null":
        return None
    if how == "junk":
        return draw(junk)
    if how == "wrap":
        return [current]
    if how == "unwrap":
        return current[0] if isinstance(current, list) and current else current
    if isinstance(current, list):  # swap: a list where an object belongs, and the other way round
        return {str(i): item for i, item in enumerate(current)}
    return list(current.values()) if isinstance(current, dict) else current


def broken(draw: st.DrawFn, payload: dict[str, Any]) -> Any:
    """`payload` after 0–3 breakages: removed, nulled, wrong type, wrapped in a list, unwrapped, extra field."""
    body: Any = copy.deepcopy(payload)
    for _ in range(draw(st.integers(0, 3))):
        path = draw(st.sampled_from(list(paths_of(body))))
        how = draw(st.sampled_from(["remove", "null", "junk", "wrap", "unwrap", "extra", "swap"]))
        parent: Any = None
        current = body
        for key in path:
            parent, current = current, current[key]
        if how == "extra":
            if isinstance(current, dict):
                current[draw(st.sampled_from(EXTRA_NAMES))] = draw(junk)
        elif parent is None:  # the body itself
            body = body if how == "remove" else replacement(draw, how, body)
        elif how == "remove":
            del parent[path[-1]]
        else:
            parent[path[-1]] = replacement(draw, how, current)
    return body


def check(world: World, body: Any, *, status: int, logged: list[logging.LogRecord]) -> None:
    expected = verdict(body)
    world.verdicts[f"{expected} → {status}"] = world.verdicts.get(f"{expected} → {status}", 0) + 1
    assert status < 500, (status, body)
    if expected == "malformed":
        assert status == 400, (status, body)
    elif expected == "well-shaped":
        assert status in (200, 404), (status, body)
    if status == 400:
        lines = [r.getMessage() for r in logged if "malformed Slack request" in r.getMessage()]
        assert len(lines) == 1 and "\n" not in lines[0], lines
    assert world.logs.tracebacks == []


def send_payload(world: World, body: Any, *, kind: str) -> None:
    form = {"payload": json.dumps(body)}
    status, logged = world.post(urlencode(form).encode(), FORM, kind=kind)
    check(world, body, status=status, logged=logged)


# --- the properties --------------------------------------------------------------------------------------


@settings(SETTINGS, max_examples=600)
@given(data=st.data())
def test_button_clicks_of_every_shape(world: World, data: st.DataObject) -> None:
    send_payload(world, broken(data.draw, data.draw(click(world))), kind="block_actions")


@settings(SETTINGS, max_examples=350)
@given(data=st.data())
def test_modal_submissions_of_every_shape(world: World, data: st.DataObject) -> None:
    send_payload(world, broken(data.draw, data.draw(submission(world))), kind="view_submission")


@settings(SETTINGS, max_examples=250)
@given(data=st.data())
def test_closed_modals_shortcuts_and_message_actions_of_every_shape(world: World, data: st.DataObject) -> None:
    payload = data.draw(st.one_of(submission(world, kind="view_closed"), shortcut(world)))
    send_payload(world, broken(data.draw, payload), kind=str(payload["type"]))


@settings(SETTINGS, max_examples=350)
@given(data=st.data())
def test_events_of_every_shape(world: World, data: st.DataObject) -> None:
    body = broken(data.draw, data.draw(event(world)))
    status, logged = world.post(json.dumps(body).encode(), JSON_TYPE, kind="event_callback")
    check(world, body, status=status, logged=logged)


texts = st.sampled_from(
    ["", "help", "status", "history", "cancel", "cancel nope", "prod --code yolo", 'prod "x', "prod"]
)


@settings(SETTINGS, max_examples=350)
@given(data=st.data())
def test_slash_commands_with_odd_form_fields(world: World, data: st.DataObject) -> None:
    user = data.draw(people)
    fields = {
        "token": world.workspace.slack.verification_token,
        "team_id": world.workspace.slack.team_id,
        "channel_id": GENERAL,
        "channel_name": data.draw(st.sampled_from(["general", "", "privategroup", "directmessage"])),
        "user_id": user,
        "user_name": user,
        "command": "/rollback",
        "text": data.draw(texts | st.text(max_size=40)),
        "response_url": world.workspace.api.make_response_url(channel=GENERAL, user=user),
        "trigger_id": world.workspace.api.make_trigger_id(user_id=user),
    }
    pairs = list(fields.items())
    for _ in range(data.draw(st.integers(0, 3))):
        name = data.draw(st.sampled_from(sorted(fields)))
        how = data.draw(st.sampled_from(["remove", "empty", "odd", "twice", "extra"]))
        odd = data.draw(st.text(max_size=60))
        if how == "remove":
            pairs = [(k, v) for k, v in pairs if k != name]
        elif how == "empty":
            pairs = [(k, "" if k == name else v) for k, v in pairs]
        elif how == "odd":
            pairs = [(k, odd if k == name else v) for k, v in pairs]
        elif how == "twice":
            pairs.append((name, odd))
        else:
            pairs.append((data.draw(st.sampled_from(EXTRA_NAMES)), odd))
    body = urlencode(pairs).encode()
    status, logged = world.post(body, FORM, kind="slash command")
    seen = dict(pairs)  # the last of a repeated field wins, as Bolt reads it
    if "payload" in body.decode():
        seen = {}  # Bolt reads any body containing the word as an interactivity payload; it has none
    check(world, seen, status=status, logged=logged)


unreadable = st.one_of(
    st.builds(lambda b: (b"\xff" + b, FORM), st.binary(max_size=20)),
    st.builds(lambda v: (json.dumps(v).encode(), JSON_TYPE), st.one_of(st.lists(junk), st.integers(), st.text())),
    st.builds(
        lambda v: (urlencode({"payload": json.dumps(v)}).encode(), FORM),
        st.one_of(st.lists(junk, max_size=3), st.none(), st.booleans(), st.floats(allow_nan=False), st.text()),
    ),
    st.builds(lambda t: (urlencode({"payload": "{" + t}).encode(), FORM), st.text(max_size=20)),
)


@settings(SETTINGS, max_examples=200)
@given(sent=unreadable)
def test_bodies_that_are_not_a_payload_at_all(world: World, sent: tuple[bytes, str]) -> None:
    body, content_type = sent
    status, logged = world.post(body, content_type, kind="unreadable")
    assert status == 400, (status, body)
    lines = [r.getMessage() for r in logged if "malformed Slack request" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0], lines
    assert world.logs.tracebacks == []
