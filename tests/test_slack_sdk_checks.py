"""The Slack stand-in refuses what Slack's own SDK (slack_sdk.models) refuses, as Slack would answer it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from sandbox._blockkit_limits import message_block_errors, view_errors
from sandbox.slack_api import SlackApiStandIn

TOKEN = "xoxb-test-token"
INC = "C0INC"


def plain(text: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": text}


def button(**extra: Any) -> dict[str, Any]:
    return {"type": "button", "text": plain("Roll back"), "action_id": "go", "value": "v", **extra}


@pytest.fixture
def api() -> Iterator[SlackApiStandIn]:
    stand_in = SlackApiStandIn(token=TOKEN, channels={INC: "inc-checkout"}, users={"U0ADA": "Ada"})
    stand_in.start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def client(api: SlackApiStandIn) -> WebClient:
    return WebClient(token=TOKEN, base_url=api.base_url)


# Each of these only slack_sdk's validators catch: the stand-in's own table no longer checks them.
SDK_ONLY: dict[str, tuple[dict[str, Any], str, str]] = {
    "a confirm title over 100": (
        {
            "type": "actions",
            "elements": [
                button(
                    confirm={
                        "title": plain("t" * 101),
                        "text": {"type": "mrkdwn", "text": "sure?"},
                        "confirm": plain("Yes"),
                        "deny": plain("No"),
                    }
                )
            ],
        },
        "title attribute cannot exceed 100 characters",
        "/blocks/0/elements/0/confirm/title/text",
    ),
    "a button style Slack does not have": (
        {"type": "actions", "elements": [button(style="green")]},
        "style attribute must be one of the following values",
        "/blocks/0/elements/0/style",
    ),
    "a section with neither text nor fields": ({"type": "section"}, "text or fields", "/blocks/0"),
    "an input without its element": (
        {"type": "input", "label": plain("Environment")},
        "element",
        "/blocks/0/element",
    ),
}


@pytest.mark.parametrize("case", sorted(SDK_ONLY))
def test_a_block_slack_sdk_rejects_is_refused_with_invalid_blocks(
    api: SlackApiStandIn, client: WebClient, case: str
) -> None:
    block, words, pointer = SDK_ONLY[case]
    with pytest.raises(SlackApiError) as refused:
        client.chat_postMessage(channel=INC, text="t", blocks=[block])
    data = refused.value.response.data
    assert data["error"] == "invalid_blocks"
    assert any(words in error and error.endswith(f"[json-pointer:{pointer}]") for error in data["errors"]), data
    assert data["response_metadata"]["messages"][0].startswith("[ERROR] ")
    assert api.messages(INC) == []


def test_a_view_slack_sdk_rejects_is_refused_like_slack(api: SlackApiStandIn, client: WebClient) -> None:
    view = {"type": "home", "private_metadata": "p" * 3001, "blocks": [{"type": "divider"}]}
    with pytest.raises(SlackApiError) as refused:
        client.views_publish(user_id="U0ADA", view=view)
    data = refused.value.response.data
    assert data["error"] == "invalid_arguments"  # Slack answers views with invalid_arguments
    assert data["errors"] == ["private_metadata cannot exceed 3000 characters [json-pointer:/view/private_metadata]"]


def test_what_both_accept_passes_and_each_problem_is_named_once() -> None:
    assert message_block_errors([{"type": "actions", "elements": [button(style="primary")]}]) == []
    assert view_errors({"type": "modal", "title": plain("t" * 24), "blocks": [{"type": "divider"}]}) == []
    twice = message_block_errors([{"type": "header", "text": plain("h" * 151)}, {"type": "divider", "block_id": "x"}])
    assert twice == ["text attribute cannot exceed 150 characters [json-pointer:/blocks/0/text/text]"]
