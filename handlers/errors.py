"""The one error path of the Slack layer: how a refusal or a failure reads, and where it goes.

`render_error(error)` is the only place an exception becomes words in Slack: a RollbackError shows its
message and hint; anything else shows a short apology (it was logged in full where it was caught).
Where the words go depends on the moment, and each moment has one function:

- before the ack of a slash command: `ack_error(ack, error)`, the ack itself is the ephemeral answer;
- before the ack of a modal submission: `view_error(ack, error, field=…)`, Slack's `errors` response,
  shown under the field;
- after the ack: `Reply.error(error)`, an ephemeral answer to the person who acted (through the
  request's response_url, else chat.postEphemeral in the channel). Background work is wrapped by
  `answered(reply, …)`, so whatever it raises is told to that person exactly once.

Messages of a run (plan, thread, header) never go through here: they are notices in the outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, BoltResponse
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.errors import RollbackError
from handlers import blocks
from handlers.blocks import Block

log = logging.getLogger(__name__)

UNEXPECTED = "Something went wrong on the bot's side; it has been logged."
MAX_FIELD_ERROR = 150  # Slack shows at most this much under a modal field
Send = Callable[[str, list[Block]], object]  # (fallback text, blocks) → delivered


def render_error(error: BaseException, *, hint: str = "") -> tuple[str, list[Block]]:
    """(fallback text, blocks) for `error`: what was wrong and what to do next. Never a stack trace."""
    if isinstance(error, RollbackError):
        return error.message, blocks.error_blocks(message=error.message, hint=error.hint)
    return UNEXPECTED, blocks.error_blocks(message=UNEXPECTED, hint=hint)


def ack_error(ack: Ack, error: RollbackError) -> BoltResponse:
    """A slash command refused before anything started: the ack carries the ephemeral answer."""
    text, shown = render_error(error)
    return ack(response_type="ephemeral", text=text, blocks=shown)


def view_error(ack: Ack, error: RollbackError | str, *, field: str) -> BoltResponse:
    """A modal submission refused: Slack keeps the modal open and shows the words under `field`."""
    text = error if isinstance(error, str) else render_error(error)[0]
    return ack(response_action="errors", errors={field: text[:MAX_FIELD_ERROR]})


@dataclass(frozen=True)
class Reply:
    """Ephemeral answers to the one person who acted; nobody else sees them.

    Delivery is best effort by design: the act it answers has already happened (or been refused), so
    a reply Slack will not take (an expired response_url, an unknown channel) is a log line, not a
    second failure.
    """

    send: Send | None
    user: str = ""

    def say(self, text: str, shown: list[Block] | None = None) -> None:
        if self.send is None:
            log.warning("no way to answer %r (no response_url or channel): %s", self.user or "someone", _line(text))
            return
        try:
            self.send(text, shown if shown is not None else blocks.ephemeral_text_blocks(text))
        except Exception as error:  # see the class docstring: a lost answer is one log line
            detail = error.response.get("error") if isinstance(error, SlackApiError) else str(error)
            log.warning("could not answer %r: %s: %s", self.user or "someone", type(error).__name__, _line(detail))

    def error(self, error: BaseException, *, hint: str = "") -> None:
        self.say(*render_error(error, hint=hint))


def reply_to(body: Mapping[str, Any], *, respond: Any, client: WebClient) -> Reply:
    """Where answers to this request go: its response_url, else chat.postEphemeral in its channel."""
    user = _user_of(body)
    if isinstance(body.get("response_url"), str) and respond is not None:

        def via_response_url(text: str, shown: list[Block]) -> object:
            return respond(response_type="ephemeral", replace_original=False, text=text, blocks=shown)

        return Reply(via_response_url, user=user)
    channel = body.get("channel")
    channel_id = channel.get("id") if isinstance(channel, dict) else body.get("channel_id")
    if isinstance(channel_id, str) and channel_id and user:
        return reply_in_channel(client, channel=channel_id, user=user)
    return Reply(None, user=user)


def reply_in_channel(client: WebClient, *, channel: str, user: str) -> Reply:
    """Answers through chat.postEphemeral (a modal has no response_url: its channel is in private_metadata)."""
    if not channel:
        return Reply(None, user=user)

    def via_post_ephemeral(text: str, shown: list[Block]) -> object:
        return client.chat_postEphemeral(channel=channel, user=user, text=text, blocks=shown)

    return Reply(via_post_ephemeral, user=user)


def answered(reply: Reply, work: Callable[..., Any], /, *args: Any, hint: str = "", **kwargs: Any) -> Any:
    """Run `work` (after the ack); whatever it raises is told to the person who acted, exactly once.

    A RollbackError is an answer (its message and hint); anything else is logged with its stack trace
    and the person hears the short apology with `hint`.
    """
    try:
        return work(*args, **kwargs)
    except RollbackError as error:
        reply.error(error)
    except Exception as error:
        log.exception("%s failed unexpectedly", getattr(work, "__name__", work))
        reply.error(error, hint=hint)
    return None


def _line(text: object) -> str:
    return " ".join(str(text).split())[:200]


def _user_of(body: Mapping[str, Any]) -> str:
    user = body.get("user")
    found = user.get("id") if isinstance(user, dict) else body.get("user_id")
    return found if isinstance(found, str) else ""
