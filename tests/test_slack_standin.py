"""The Slack Web API stand-in and the signed-request sender, driven by the real slack_sdk and Bolt."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import requests
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from sandbox.slack_api import SlackApiStandIn
from sandbox.slack_signing import SlackRequestSender, compute_signature

TOKEN = "xoxb-test-token"
SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
INC = "C0INC"


def section(text: str, **extra: Any) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}, **extra}


def button(label: str, action_id: str, value: str = "v") -> dict[str, Any]:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "action_id": action_id,
        "value": value,
    }


def wait_for(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.fixture
def api() -> Iterator[SlackApiStandIn]:
    stand_in = SlackApiStandIn(
        token=TOKEN,
        channels={INC: "inc-checkout", "C0STATUS": "status"},
        users={"U0ENG": "Erin", "U0ADA": "Ada"},
        usergroups={"S0ONCALL": ["U0ADA", "U0ENG"]},
    )
    stand_in.start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def client(api: SlackApiStandIn) -> WebClient:
    return WebClient(token=TOKEN, base_url=api.base_url)


def api_error(call: Callable[[], Any]) -> dict[str, Any]:
    with pytest.raises(SlackApiError) as caught:
        call()
    data: dict[str, Any] = caught.value.response.data
    return data


# -- messages ---------------------------------------------------------------------------------------


def test_post_update_and_thread_replies_are_recorded(api: SlackApiStandIn, client: WebClient) -> None:
    plan = client.chat_postMessage(channel=INC, text="Plan", blocks=[section("*Plan* for prod")])
    first = client.chat_postMessage(channel=INC, text="⏳ dump", thread_ts=plan["ts"])
    client.chat_postMessage(channel=INC, text="⏳ revert", thread_ts=plan["ts"], reply_broadcast=True)
    client.chat_update(channel=INC, ts=first["ts"], text="✅ dump (12 MB)")
    client.chat_update(channel=INC, ts=plan["ts"], text="Plan (confirmed)")

    assert plan["ts"] < first["ts"]
    messages = api.messages(INC)
    assert [m.text for m in messages] == ["Plan (confirmed)", "⏳ revert"]  # the broadcast reply shows too
    assert messages[0].blocks == [section("*Plan* for prod")]  # chat.update without blocks keeps them
    assert messages[0].edit_count == 1
    assert [r.text for r in messages[0].replies] == ["✅ dump (12 MB)", "⏳ revert"]
    thread = api.thread(INC, plan["ts"])
    assert thread[0].edit_count == 1 and thread[0].history[0].text == "⏳ dump"
    assert all(r.thread_ts == plan["ts"] and r.bot_id == api.bot_id for r in thread)
    assert [c.method for c in api.calls_to("chat.update")] == ["chat.update", "chat.update"]
    assert api.calls_to("chat.postMessage")[1].args["thread_ts"] == plan["ts"]


def test_concurrent_posts_get_unique_increasing_ts(api: SlackApiStandIn, client: WebClient) -> None:
    def post(n: int) -> None:
        client.chat_postMessage(channel=INC, text=f"m{n}")

    threads = [threading.Thread(target=post, args=(n,)) for n in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stamps = [m.ts for m in api.messages(INC)]
    assert len(set(stamps)) == 20 and stamps == sorted(stamps)
    assert len(api.calls_to("chat.postMessage")) == 20


@pytest.mark.filterwarnings("ignore:The top-level `text` argument is missing")
def test_message_errors_are_slacks(api: SlackApiStandIn, client: WebClient) -> None:
    posted = client.chat_postMessage(channel=INC, text="x")
    user_ts = api.add_user_message(channel=INC, user="U0ENG", text="hello")
    assert api_error(lambda: client.chat_postMessage(channel="C0NOPE", text="x"))["error"] == "channel_not_found"
    assert api_error(lambda: client.chat_postMessage(channel=INC, text=""))["error"] == "no_text"
    assert api_error(lambda: client.chat_postMessage(channel=INC, text="x" * 40_001))["error"] == "msg_too_long"
    assert api_error(lambda: client.chat_update(channel=INC, ts="1.2", text="y"))["error"] == "message_not_found"
    assert api_error(lambda: client.chat_update(channel=INC, ts=user_ts, text="y"))["error"] == "cant_update_message"
    assert api_error(lambda: client.chat_postMessage(channel=INC, text="r", thread_ts="9.9"))["error"] == (
        "thread_not_found"
    )
    assert api_error(lambda: client.api_call("chat.scheduleMessage", json={}))["error"] == "unknown_method"
    client.chat_delete(channel=INC, ts=posted["ts"])
    assert [m.text for m in api.messages(INC)] == ["hello"]


def test_channel_names_and_dms_resolve(api: SlackApiStandIn, client: WebClient) -> None:
    assert client.chat_postMessage(channel="#status", text="up")["channel"] == "C0STATUS"
    assert client.chat_postMessage(channel="U0ADA", text="psst")["channel"].startswith("D")
    info = client.conversations_info(channel=INC)["channel"]
    assert (info["id"], info["name"], info["is_channel"], info["is_member"]) == (
        INC,
        "inc-checkout",
        True,
        False,
    )
    assert client.conversations_join(channel=INC)["channel"]["is_member"] is True


def test_token_is_required_and_checked(api: SlackApiStandIn) -> None:
    bad = WebClient(token="xoxb-wrong", base_url=api.base_url)
    assert api_error(lambda: bad.chat_postMessage(channel=INC, text="x"))["error"] == "invalid_auth"
    anonymous = requests.post(api.base_url + "chat.postMessage", data={"channel": INC, "text": "x"}, timeout=5)
    assert (anonymous.status_code, anonymous.json()["error"]) == (200, "not_authed")
    assert api.messages(INC) == []


def test_form_encoded_and_query_calls_are_understood(api: SlackApiStandIn) -> None:
    blocks = json.dumps([section("from a form")])
    form = requests.post(
        api.base_url + "chat.postMessage", data={"token": TOKEN, "channel": INC, "blocks": blocks}, timeout=5
    )
    assert form.json()["ok"] is True
    assert api.messages(INC)[0].blocks == [section("from a form")]
    query = requests.get(api.base_url + "conversations.info", params={"token": TOKEN, "channel": INC}, timeout=5)
    assert query.json()["channel"]["name"] == "inc-checkout"
    broken = requests.post(
        api.base_url + "chat.postMessage", data={"token": TOKEN, "channel": INC, "blocks": "[{"}, timeout=5
    )
    assert broken.json()["error"] == "invalid_blocks_format"


# -- Block Kit limits -------------------------------------------------------------------------------

TOO_MUCH: dict[str, tuple[list[dict[str, Any]], str]] = {
    "51 blocks": ([section(f"b{i}") for i in range(51)], "/blocks"),
    "3001-char section": ([section("x" * 3001)], "/blocks/0/text/text"),
    "76-char button": (
        [{"type": "actions", "elements": [button("x" * 76, "a")]}],
        "/blocks/0/elements/0/text/text",
    ),
    "duplicate action_id": (
        [
            section("a", accessory=button("One", "same")),
            {"type": "actions", "elements": [button("Two", "same")]},
        ],
        "/blocks/1/elements/0/action_id",
    ),
    "duplicate block_id": ([section("a", block_id="b1"), section("b", block_id="b1")], "/blocks/1/block_id"),
    "151-char header": (
        [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
        "/blocks/0/text/text",
    ),
    "mrkdwn header": ([{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}], "/blocks/0/text/type"),
    "mrkdwn button": (
        [
            {
                "type": "actions",
                "elements": [{"type": "button", "text": {"type": "mrkdwn", "text": "b"}, "action_id": "a"}],
            }
        ],
        "/blocks/0/elements/0/text/type",
    ),
    "11 fields": (
        [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}],
        "/blocks/0/fields",
    ),
    "2001-char field": (
        [{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}],
        "/blocks/0/fields/0/text",
    ),
    "11 context elements": (
        [{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}],
        "/blocks/0/elements",
    ),
    "26 buttons": (
        [{"type": "actions", "elements": [button("b", f"a{i}") for i in range(26)]}],
        "/blocks/0/elements",
    ),
    "2001-char value": (
        [{"type": "actions", "elements": [button("b", "a", "v" * 2001)]}],
        "/blocks/0/elements/0/value",
    ),
    "256-char action_id": (
        [{"type": "actions", "elements": [button("b", "a" * 256)]}],
        "/blocks/0/elements/0/action_id",
    ),
    "missing type": ([{"text": {"type": "mrkdwn", "text": "t"}}], "/blocks/0"),
    "unknown type": ([{"type": "sektion", "text": {"type": "mrkdwn", "text": "t"}}], "/blocks/0/type"),
    "empty section text": ([section("")], "/blocks/0/text/text"),
}


@pytest.mark.parametrize("case", sorted(TOO_MUCH))
def test_block_kit_limits_are_enforced(api: SlackApiStandIn, client: WebClient, case: str) -> None:
    blocks, pointer = TOO_MUCH[case]
    data = api_error(lambda: client.chat_postMessage(channel=INC, text="t", blocks=blocks))
    assert data["error"] == "invalid_blocks"
    assert any(error.endswith(f"[json-pointer:{pointer}]") for error in data["errors"]), data["errors"]
    assert data["response_metadata"]["messages"][0].startswith("[ERROR] ")
    assert api.messages(INC) == []


def test_block_kit_limits_are_not_off_by_one(client: WebClient) -> None:
    at_the_limit = [
        {"type": "header", "text": {"type": "plain_text", "text": "h" * 150}},
        section("x" * 3000, accessory=button("b" * 75, "a0", "v" * 2000)),
        {"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2000}] * 10},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 10},
        {"type": "actions", "elements": [button("b", f"a{i + 1}") for i in range(25)]},
        *[{"type": "divider"} for _ in range(45)],
    ]
    assert len(at_the_limit) == 50
    assert client.chat_postMessage(channel=INC, text="t", blocks=at_the_limit)["ok"] is True


def test_action_ids_may_repeat_across_blocks_when_scoped_per_block() -> None:
    blocks = [section("a", accessory=button("Done", "done")), section("b", accessory=button("Done", "done"))]
    with SlackApiStandIn(action_id_scope="block") as lenient:
        assert WebClient(token=TOKEN, base_url=lenient.base_url).chat_postMessage(channel=INC, text="t", blocks=blocks)


# -- rate limits and injected failures --------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(api: SlackApiStandIn, client: WebClient) -> None:
    api.rate_limit("chat.postMessage", retry_after=7)
    with pytest.raises(SlackApiError) as caught:
        client.chat_postMessage(channel=INC, text="x")
    assert caught.value.response.status_code == 429
    assert caught.value.response.headers["Retry-After"] == "7"
    assert caught.value.response["error"] == "ratelimited"
    assert client.chat_postMessage(channel=INC, text="x")["ok"] is True  # only the next call was limited


def test_webclient_retry_handler_waits_and_succeeds(api: SlackApiStandIn) -> None:
    patient = WebClient(
        token=TOKEN, base_url=api.base_url, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)]
    )
    api.rate_limit("chat.postMessage", times=1, retry_after=1)
    started = time.monotonic()
    assert patient.chat_postMessage(channel=INC, text="after the wait")["ok"] is True
    assert time.monotonic() - started >= 1.0
    assert [c.status for c in api.calls_to("chat.postMessage")] == [429, 200]
    assert [m.text for m in api.messages(INC)] == ["after the wait"]


def test_fail_next_injects_any_error(api: SlackApiStandIn, client: WebClient) -> None:
    api.fail_next("chat.update", "cant_update_message", times=2)
    ts = client.chat_postMessage(channel=INC, text="x")["ts"]
    for _ in range(2):
        assert api_error(lambda: client.chat_update(channel=INC, ts=ts, text="y"))["error"] == "cant_update_message"
    assert client.chat_update(channel=INC, ts=ts, text="y")["ok"] is True


# -- views, directory -------------------------------------------------------------------------------

MODAL = {
    "type": "modal",
    "callback_id": "confirm_env",
    "title": {"type": "plain_text", "text": "Confirm rollback"},
    "submit": {"type": "plain_text", "text": "Roll back"},
    "blocks": [
        {
            "type": "input",
            "block_id": "env",
            "label": {"type": "plain_text", "text": "Type the environment name"},
            "element": {"type": "plain_text_input", "action_id": "value"},
        }
    ],
}


def test_views_open_needs_a_fresh_trigger(api: SlackApiStandIn, client: WebClient) -> None:
    fresh = api.make_trigger_id(user_id="U0ADA")
    opened = client.views_open(trigger_id=fresh, view=MODAL)["view"]
    assert opened["callback_id"] == "confirm_env" and opened["id"].startswith("V")
    assert [(v.user_id, v.title) for v in api.opened_views()] == [("U0ADA", "Confirm rollback")]
    assert "Type the environment name: [ plain_text_input ]" in api.render_view(opened["id"])
    assert api_error(lambda: client.views_open(trigger_id=fresh, view=MODAL))["error"] == "exchanged_trigger_id"
    stale = api.make_trigger_id(user_id="U0ADA", age=3.5)
    assert api_error(lambda: client.views_open(trigger_id=stale, view=MODAL))["error"] == "expired_trigger_id"
    assert api_error(lambda: client.views_open(trigger_id="123.456.abc", view=MODAL))["error"] == "invalid_trigger_id"
    long_title = {**MODAL, "title": {"type": "plain_text", "text": "t" * 25}}
    data = api_error(lambda: client.views_open(trigger_id=api.make_trigger_id(), view=long_title))
    assert data["error"] == "invalid_arguments" and "[json-pointer:/view/title/text]" in data["errors"][0]


def test_views_update_push_and_publish(api: SlackApiStandIn, client: WebClient) -> None:
    view = client.views_open(trigger_id=api.make_trigger_id(user_id="U0ADA"), view=MODAL)["view"]
    updated = client.views_update(view_id=view["id"], hash=view["hash"], view={**MODAL, "private_metadata": "p"})
    assert updated["view"]["private_metadata"] == "p"
    stale_hash = lambda: client.views_update(view_id=view["id"], hash=view["hash"], view=MODAL)  # noqa: E731
    assert api_error(stale_hash)["error"] == "hash_conflict"
    pushed = client.views_push(trigger_id=api.make_trigger_id(user_id="U0ADA"), view=MODAL)["view"]
    assert pushed["root_view_id"] == view["id"] and pushed["previous_view_id"] == view["id"]
    home = {
        "type": "home",
        "blocks": [section("*Recent runs*"), {"type": "actions", "elements": [button("Refresh", "r")]}],
    }
    client.views_publish(user_id="U0ADA", view=home)
    client.views_publish(user_id="U0ADA", view=home)
    published = api.published_home("U0ADA")
    assert published is not None and published.publish_count == 2
    assert "[ Refresh ]" in api.render_home("U0ADA")
    assert api_error(lambda: client.views_publish(user_id="U0ADA", view=MODAL))["error"] == "invalid_arguments"
    assert api_error(lambda: client.views_publish(user_id="U0NOBODY", view=home))["error"] == "user_not_found"


def test_directory_lookups(client: WebClient) -> None:
    assert client.usergroups_users_list(usergroup="S0ONCALL")["users"] == ["U0ADA", "U0ENG"]
    assert api_error(lambda: client.usergroups_users_list(usergroup="S0NONE"))["error"] == "no_such_subteam"
    assert client.users_info(user="U0ADA")["user"]["real_name"] == "Ada"
    assert api_error(lambda: client.users_info(user="U0NOBODY"))["error"] == "user_not_found"
    assert client.auth_test()["user_id"] == "U0ROLLBOT"


# -- reading the conversation -------------------------------------------------------------------------


def test_render_channel_reads_like_slack(api: SlackApiStandIn, client: WebClient) -> None:
    plan = client.chat_postMessage(
        channel=INC,
        text="Rollback plan for prod",
        blocks=[
            {"type": "header", "text": {"type": "plain_text", "text": "Rollback plan: prod"}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": "*Target*\nabc1234"},
                    {"type": "mrkdwn", "text": "*Asked by*\n<@U0ENG>"},
                ],
            },
            {
                "type": "context",
                "elements": [{"type": "mrkdwn", "text": "Approvers: <!subteam^S0ONCALL|@oncall> in <#C0STATUS>"}],
            },
            {"type": "actions", "elements": [button("Confirm", "confirm"), button("Cancel", "cancel")]},
        ],
    )
    client.chat_postMessage(
        channel=INC, text="✅ Pre-rollback dump taken: prod-20240101.dump (12 MB)", thread_ts=plan["ts"]
    )
    client.chat_postEphemeral(channel=INC, user="U0ADA", text="Only you can see this")
    client.reactions_add(channel=INC, timestamp=plan["ts"], name="eyes")
    expected = """\
#inc-checkout (C0INC)
────────────────────────────────────────────────────────────
rollback-bot:
    == Rollback plan: prod ==
    *Target* abc1234
    *Asked by* @Erin
    Approvers: @oncall in #status
    [ Confirm ]  [ Cancel ]
    :eyes: 1
    └─ thread: 1 reply
        rollback-bot:
            ✅ Pre-rollback dump taken: prod-20240101.dump (12 MB)
"""
    assert api.render_channel(INC) == expected
    assert "rollback-bot (only visible to Ada):\n    Only you can see this" in api.render_channel(INC, for_user="U0ADA")


# -- response_url ---------------------------------------------------------------------------------------


def test_response_url_posts_are_recorded_and_applied(api: SlackApiStandIn, client: WebClient) -> None:
    ts = client.chat_postMessage(channel=INC, text="Plan", blocks=[section("Plan")])["ts"]
    url = api.make_response_url(channel=INC, user="U0ADA", message_ts=ts)
    webhook = WebhookClient(url)
    assert webhook.send(text="Only Ada sees this").status_code == 200
    assert webhook.send(text="Everyone sees this", response_type="in_channel").status_code == 200
    assert webhook.send(text="Confirmed by Ada", replace_original=True).status_code == 200
    bad = webhook.send(blocks=[section("x" * 3001)])
    assert bad.status_code == 400 and json.loads(bad.body)["error"] == "invalid_blocks"

    effects = [(r.response_type, r.replace_original, r.effect) for r in api.responses()]
    assert effects == [
        ("ephemeral", False, "ephemeral"),
        ("in_channel", False, "in_channel"),
        ("ephemeral", True, "replaced"),
        ("ephemeral", False, "rejected: invalid_blocks"),
    ]
    assert [(e.user, e.text, e.source) for e in api.ephemerals(INC)] == [
        ("U0ADA", "Only Ada sees this", "response_url")
    ]
    plan = api.messages(INC)[0]
    assert (plan.text, plan.blocks, plan.edit_count) == ("Confirmed by Ada", [], 1)
    assert api.messages(INC)[1].text == "Everyone sees this"
    assert webhook.send(delete_original=True).status_code == 200
    assert webhook.send(text="fifth use").status_code == 200
    assert webhook.send(text="sixth use").status_code == 404  # a response_url is good for five posts
    assert [m.text for m in api.messages(INC)] == ["Everyone sees this"]


# -- signing ------------------------------------------------------------------------------------------


def test_signature_matches_slack_sdk_verifier() -> None:
    body = urlencode({"command": "/rollback", "text": "prod"}).encode()
    now = int(time.time())
    verifier = SignatureVerifier(SECRET)
    signature = compute_signature(signing_secret=SECRET, timestamp=now, body=body)
    assert signature == verifier.generate_signature(timestamp=str(now), body=body)
    headers = {"x-slack-request-timestamp": str(now), "x-slack-signature": signature}
    assert verifier.is_valid_request(body, headers)
    assert not verifier.is_valid_request(body + b"x", headers)
    old = now - 6 * 60
    stale = {
        "x-slack-request-timestamp": str(old),
        "x-slack-signature": compute_signature(signing_secret=SECRET, timestamp=old, body=body),
    }
    assert not verifier.is_valid_request(body, stale)


# -- the real Bolt app, end to end ------------------------------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return


class _ThreadedWSGIServer(WSGIServer):
    daemon_threads = True

    def process_request(self, request: Any, client_address: Any) -> None:
        threading.Thread(target=self._handle, args=(request, client_address), daemon=True).start()

    def _handle(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        finally:
            self.shutdown_request(request)


@pytest.fixture
def bolt(api: SlackApiStandIn) -> Iterator[tuple[SlackRequestSender, list[dict[str, Any]]]]:
    app = App(token=TOKEN, signing_secret=SECRET, client=WebClient(token=TOKEN, base_url=api.base_url))
    seen: list[dict[str, Any]] = []

    @app.command("/rollback")
    def rollback(ack: Any, body: dict[str, Any], client: WebClient, request: Any) -> None:
        ack(f"Planning a rollback of {body['text']}…")
        seen.append({"retry": request.headers.get("x-slack-retry-num", [None])[0]})
        client.chat_postMessage(
            channel=body["channel_id"],
            text="Plan",
            blocks=[
                section("Plan"),
                {"type": "actions", "elements": [button("Confirm", "confirm", "run-1")]},
            ],
        )

    @app.action("confirm")
    def confirm(ack: Any, body: dict[str, Any], respond: Any, client: WebClient) -> None:
        ack()
        seen.append(body)
        client.views_open(trigger_id=body["trigger_id"], view=MODAL)
        respond(text=f"Confirmed by <@{body['user']['id']}>", replace_original=True)

    @app.view("confirm_env")
    def submitted(ack: Any, view: dict[str, Any]) -> None:
        if view["state"]["values"]["env"]["value"]["value"] != "prod":
            ack(response_action="errors", errors={"env": "Type prod to confirm"})
        else:
            ack()

    server = make_server(
        "127.0.0.1",
        0,
        SlackRequestHandler(app),
        server_class=_ThreadedWSGIServer,
        handler_class=_QuietHandler,
    )
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    sender = SlackRequestSender(
        app_url=f"http://127.0.0.1:{server.server_port}/slack/events", signing_secret=SECRET, api=api
    )
    yield sender, seen
    server.shutdown()
    server.server_close()


def test_bolt_app_round_trip(api: SlackApiStandIn, bolt: tuple[SlackRequestSender, list[dict[str, Any]]]) -> None:
    sender, seen = bolt
    assert sender.slash_command(user_id="U0ENG", text="prod", channel_id=INC).status_code == 200
    assert [e.text for e in api.ephemerals(INC, user="U0ENG")] == ["Planning a rollback of prod…"]
    plan = wait_for(lambda: api.messages(INC))[0]

    click = sender.block_action(user_id="U0ADA", action_id="confirm", value="run-1", channel_id=INC, message_ts=plan.ts)
    assert click.status_code == 200
    wait_for(lambda: api.messages(INC)[0].text.startswith("Confirmed"))
    body = seen[-1]
    assert body["message"]["ts"] == plan.ts and body["container"]["message_ts"] == plan.ts
    assert body["actions"][0]["text"]["text"] == "Confirm"
    assert "Confirmed by @Ada" in api.render_channel(INC)
    modal = wait_for(lambda: api.open_view_for("U0ADA", callback_id="confirm_env"))

    wrong = sender.view_submission(
        user_id="U0ADA",
        callback_id="confirm_env",
        state_values={"env": {"value": {"type": "plain_text_input", "value": "staging"}}},
    )
    assert wrong.json() == {"response_action": "errors", "errors": {"env": "Type prod to confirm"}}
    assert api.view(modal.id).submission_errors == {"env": "Type prod to confirm"}
    right = sender.view_submission(
        user_id="U0ADA",
        callback_id="confirm_env",
        state_values={"env": {"value": {"type": "plain_text_input", "value": "prod"}}},
    )
    assert right.status_code == 200 and api.view(modal.id).closed


def test_bolt_refuses_forged_and_replayed_requests(
    api: SlackApiStandIn, bolt: tuple[SlackRequestSender, list[dict[str, Any]]]
) -> None:
    sender, seen = bolt
    body = urlencode({"command": "/rollback", "text": "prod", "user_id": "U0ENG", "channel_id": INC}).encode()
    assert sender.post(body, "application/x-www-form-urlencoded", signature="v0=" + "0" * 64).status_code == 401
    assert sender.post(body, "application/x-www-form-urlencoded", timestamp=int(time.time()) - 301).status_code == 401
    assert sender.url_verification("challenge-123").json() == {"challenge": "challenge-123"}
    assert sender.slash_command(
        user_id="U0ENG", text="prod", channel_id=INC, retry_num=1, retry_reason="http_timeout"
    ).ok
    assert wait_for(lambda: seen)[-1] == {"retry": "1"}
    assert api.calls_to("auth.test")  # Bolt checked its token against the stand-in at start-up
