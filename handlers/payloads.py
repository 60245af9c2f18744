"""The shape of every request Slack sends this app, checked once, before authorisation and listeners.

Slack signs what it sends, but a signed request can still be the wrong shape (a client bug, a replay
of an old payload format, a tool posting by hand). `check_shape` is a global Bolt middleware that runs
right after Bolt has verified the signature (`App(before_authorize=check_shape)`): a payload of a kind
the app handles must have the fields Bolt and the listeners read, with the right types, or it is
answered 400 with one log line naming the fields. So listeners can index `body["user"]["id"]` or
`view["state"]["values"]` without a guard, and a bad payload never becomes a 500 or a stack trace.

It is a `Middleware` subclass, not a function: Bolt builds a function middleware's arguments by
reading the body (`body["actions"][0]`, `body["view"]["type"]`, …), which is exactly what a malformed
body breaks. For the same reason, what Bolt itself reads of ANY request (to build a listener's
arguments, to match listeners, to log an unhandled one) is held to a shape too: `event` and `view`
are objects wherever they appear, and the kinds the app does not handle but Bolt reads into
(interactive_message, workflow_step_edit, block_suggestion) have the fields Bolt reads.

The models are deliberately lenient where Slack is (extra fields are fine, optional fields may be
missing) and strict about types (a number is not a string, a list is not an object). A body Bolt
cannot even parse (not JSON, not an object) never gets this far: `bot.app.wsgi_app` answers it 400.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator
from slack_bolt import BoltResponse
from slack_bolt.middleware import Middleware
from slack_bolt.request import BoltRequest

log = logging.getLogger(__name__)

Id = Annotated[str, StringConstraints(min_length=1)]  # a user or channel ID: a non-empty string
AnyObject = dict[str, Any]


class Shape(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


# --- parts ---------------------------------------------------------------------------------------------


class User(Shape):
    id: Id
    team_id: str | None = None


class Team(Shape):
    id: str


class Channel(Shape):
    id: Id


class Authorization(Shape):
    """One of `authorizations`: Bolt reads the first one as it reads a payload's top level."""

    enterprise: str | AnyObject | None = None
    team: str | AnyObject | None = None
    enterprise_id: str | None = None
    team_id: str | None = None
    user_id: str | None = None
    is_bot: bool | None = None
    is_enterprise_install: bool | None = None


class ResponseUrl(Shape):
    response_url: str


class ActionPart(Shape):
    action_id: str
    block_id: str | None = None
    type: str | None = None
    value: str | None = None
    action_ts: str | None = None


class Option(Shape):
    value: str


class Element(Shape):
    """A modal input's state: what the listeners read (`value`, `selected_option(s)`)."""

    type: str | None = None
    value: str | None = None
    selected_option: Option | None = None
    selected_options: list[Option] | None = None


class ViewState(Shape):
    values: dict[str, dict[str, Element]]


class SubmittedView(Shape):
    id: Id
    type: str  # Bolt reads it for every listener ("workflow_step" views carry a workflow_step)
    callback_id: str
    private_metadata: str = ""
    state: ViewState
    team_id: str | None = None
    app_installed_team_id: str | None = None


class ClosedView(Shape):
    id: Id
    callback_id: str
    private_metadata: str = ""
    state: ViewState | None = None


# --- payloads ------------------------------------------------------------------------------------------


class Envelope(Shape):
    """What Bolt reads from every interactivity payload to build its context."""

    type: str
    team: Team | None = None
    enterprise: AnyObject | None = None
    api_app_id: str | None = None
    token: str | None = None
    is_enterprise_install: bool | None = None
    authorizations: list[Authorization] | None = None


class BlockActions(Envelope):
    type: Literal["block_actions"]
    user: User
    actions: list[ActionPart] = Field(min_length=1)
    trigger_id: str
    response_url: str | None = None
    channel: Channel | None = None
    container: AnyObject | None = None
    message: AnyObject | None = None
    view: AnyObject | None = None
    state: AnyObject | None = None


class ViewSubmission(Envelope):
    type: Literal["view_submission"]
    user: User
    view: SubmittedView
    trigger_id: str | None = None
    response_urls: list[ResponseUrl] = []  # may be missing, never null: Bolt takes its length
    workflow_step: AnyObject | None = None

    @model_validator(mode="after")
    def _workflow_step_views_carry_their_step(self) -> ViewSubmission:
        if self.view.type == "workflow_step" and self.workflow_step is None:
            raise ValueError("a workflow_step view comes with a workflow_step object")
        return self


class ViewClosed(Envelope):
    type: Literal["view_closed"]
    user: User
    view: ClosedView
    is_cleared: bool | None = None


class Shortcut(Envelope):
    type: Literal["shortcut"]
    user: User
    callback_id: str
    trigger_id: str


class MessageAction(Envelope):
    type: Literal["message_action"]
    user: User
    callback_id: str
    trigger_id: str
    channel: Channel
    message: AnyObject
    response_url: str


class InteractiveMessage(Envelope):
    """Legacy attachment buttons: not handled, but Bolt reads `actions[0]` of any that has a callback_id."""

    type: Literal["interactive_message"]
    callback_id: str
    actions: list[AnyObject] = Field(min_length=1)


class WorkflowStepEdit(Envelope):
    """Legacy workflow steps: not handled, but Bolt reads `workflow_step` of any that has a callback_id."""

    type: Literal["workflow_step_edit"]
    callback_id: str
    workflow_step: AnyObject


class BlockSuggestion(Envelope):
    """External select options: not handled, but Bolt quotes `action_id` of any it cannot match."""

    type: Literal["block_suggestion"]
    action_id: str | None = None


class EventCallback(Shape):
    type: Literal["event_callback"]
    event: AnyObject
    team_id: str | None = None
    api_app_id: str | None = None
    token: str | None = None
    event_id: str | None = None
    event_time: int | None = None
    is_ext_shared_channel: bool | None = None
    authorizations: list[Authorization] | None = None


class UrlVerification(Shape):
    type: Literal["url_verification"]
    challenge: str
    token: str | None = None


class SlashCommand(Shape):
    """A slash command's form fields (always strings on the wire; JSON bodies are held to the same)."""

    command: str
    user_id: Id
    channel_id: Id
    trigger_id: str
    response_url: str
    text: str = ""
    channel_name: str = ""
    team_id: str | None = None


class AnyEvent(Shape):
    """Any event: what Bolt reads from every event to build its context (ids, as strings or objects)."""

    type: str
    user: str | AnyObject | None = None
    channel: str | AnyObject | None = None
    team: str | AnyObject | None = None
    enterprise: str | AnyObject | None = None


class AppHomeOpened(Shape):
    type: Literal["app_home_opened"]
    user: Id
    channel: str | None = None
    tab: str | None = None
    view: AnyObject | None = None
    event_ts: str | None = None


PAYLOADS: dict[str, type[Shape]] = {
    "block_actions": BlockActions,
    "view_submission": ViewSubmission,
    "view_closed": ViewClosed,
    "shortcut": Shortcut,
    "message_action": MessageAction,
    "interactive_message": InteractiveMessage,
    "workflow_step_edit": WorkflowStepEdit,
    "block_suggestion": BlockSuggestion,
    "event_callback": EventCallback,
    "url_verification": UrlVerification,
}
EVENTS: dict[str, type[Shape]] = {"app_home_opened": AppHomeOpened}


def shape_problem(body: object) -> str | None:
    """One line naming what is wrong with this payload's shape, or None if the app can read it.

    A payload of a kind the app does not handle (no `type`, or a type not listed here) has no shape to
    hold to: Bolt answers it as unhandled.
    """
    if not isinstance(body, Mapping):
        return "the body is not an object"
    for name in ("event", "view"):  # Bolt reads into these in every request that has one, whatever its type
        if name in body and not isinstance(body[name], dict):
            return f"{name}: not an object"
    if "command" in body:
        return _problem(SlashCommand, body, kind="slash command")
    kind = body.get("type")
    if kind is None:
        return None
    if not isinstance(kind, str):
        return "type: not a string"
    model = PAYLOADS.get(kind)
    if model is None:
        return None
    problem = _problem(model, body, kind=kind)
    if problem is None and model is EventCallback:
        event = body["event"]
        problem = _problem(AnyEvent, event, kind="event", prefix="event.")
        if problem is None and (event_model := EVENTS.get(event["type"])) is not None:
            problem = _problem(event_model, event, kind=event["type"], prefix="event.")
    return problem


class ShapeCheck(Middleware):
    """Global middleware (run right after signature verification): malformed payloads are answered 400."""

    def process(self, *, req: BoltRequest, resp: BoltResponse, next: Callable[[], BoltResponse]) -> BoltResponse | None:
        problem = shape_problem(req.body)
        if problem is None:
            return next()
        log.warning("refused a malformed Slack request (400): %s", problem)
        return BoltResponse(status=400, body="malformed Slack request")


check_shape = ShapeCheck()


def _problem(model: type[Shape], data: Mapping[str, Any], *, kind: str, prefix: str = "") -> str | None:
    try:
        model.model_validate(data)
    except ValidationError as error:
        where = [
            f"{prefix}{'.'.join(str(part) for part in issue['loc']) or '(body)'}: {issue['msg']}"
            for issue in error.errors(include_url=False, include_input=False)
        ]
        more = f"; and {len(where) - 3} more" if len(where) > 3 else ""
        return (f"{kind}: " + "; ".join(where[:3]) + more).replace("\n", " ")[:400]
    return None
