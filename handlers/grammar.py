"""The `/rollback` grammar, parsed into a typed command. Pure: text in, command out, or BadRequest.

Both ways of asking (the slash command's text, the options modal's choices) become the same `Command`
here, and the one `RollbackRequest` the engine takes is built from it by `to_request`.

/rollback ENV [to SHA] [--code revert|force-push|none] [--db dump|rds-snapshot|rds-pitr|none]
          [--no-flags] [--dry-run]
/rollback                 (opens a modal)
/rollback help | status | history | cancel [RUN_ID]
/rollback rehearse ENV    (the whole plan against stand-ins for production: bot.engine.rehearsal)
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from bot.choices import CODE_CHOICES, DB_CHOICES
from bot.engine.plan import RollbackRequest
from bot.errors import BadRequest
from handlers.ids import DEFAULT_CHOICE, Choice

KEYWORDS = ("help", "status", "history", "cancel", "rehearse")
_SHA = re.compile(r"^[0-9a-fA-F]{4,40}$")
_ENV = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,39}$")
USAGE = (
    "/rollback ENV [to SHA] [--code revert|force-push|none] [--db dump|rds-snapshot|rds-pitr|none] "
    "[--no-flags] [--dry-run]"
)
REHEARSE_USAGE = "/rollback rehearse ENV: the whole plan against stand-ins for production; nothing of it changes"


@dataclass(frozen=True)
class Command:
    kind: str  # "modal" | "help" | "status" | "history" | "cancel" | "rehearse" | "rollback"
    env: str | None = None
    to: str | None = None
    code: str | None = None
    db: str | None = None
    flags: bool = True
    dry_run: bool = False
    run_id: str | None = None


def parse(text: str) -> Command:
    try:
        words = shlex.split(text.strip())
    except ValueError:
        raise BadRequest("unbalanced quotes in the command", hint=USAGE) from None
    if not words:
        return Command(kind="modal")
    first = words[0].lower()
    if first == "rehearse":
        if len(words) != 2 or not _ENV.match(words[1]):
            shown = f" {_clip(words[1])!r} is not an environment name:" if len(words) == 2 else ""
            raise BadRequest(f"`rehearse`{shown} takes one environment name", hint=REHEARSE_USAGE)
        return Command(kind="rehearse", env=words[1])
    if first in KEYWORDS:
        if first == "cancel" and len(words) == 2:
            return Command(kind="cancel", run_id=words[1])
        if len(words) > 1:
            raise BadRequest(
                f"`{first}` takes no arguments" if first != "cancel" else "`cancel` takes at most a run ID",
                hint=USAGE,
            )
        return Command(kind=first)
    if not _ENV.match(words[0]):
        raise BadRequest(f"{_clip(words[0])!r} is not an environment name", hint=USAGE)
    env, to, code, db, flags, dry_run = words[0], None, None, None, True, False
    rest = words[1:]
    while rest:
        word = rest.pop(0)
        lowered = word.lower()
        if lowered in ("to", "--to"):
            to = _take(rest, word)
            if not _SHA.match(to):
                raise BadRequest(f"{_clip(to)!r} is not a commit SHA (4–40 hex characters)", hint=USAGE)
        elif lowered.startswith(("--code", "--db")):
            name, value = _option(word, rest)
            choices = CODE_CHOICES if name == "--code" else DB_CHOICES
            if value not in choices:
                raise BadRequest(f"{name} {_clip(value)!r} is not one of {', '.join(choices)}", hint=USAGE)
            if name == "--code":
                code = value
            else:
                db = value
        elif lowered == "--no-flags":
            flags = False
        elif lowered == "--dry-run":
            dry_run = True
        else:
            raise BadRequest(f"I don't understand {_clip(word)!r}", hint=USAGE)
    return Command(kind="rollback", env=env, to=to, code=code, db=db, flags=flags, dry_run=dry_run)


def from_choices(
    *, env: str, target: str = "", code: str | None = None, db: str | None = None, checked: Iterable[str] = ()
) -> Command:
    """The options modal's choices, read as the command a person would have typed (same checks, same words).

    `code` / `db` of None or DEFAULT_CHOICE keep the environment's configured strategy; `checked`
    holds the ticked option values (ids.Choice).
    """
    words = [env] + (["to", target] if target else [])
    for option, chosen in (("--code", code), ("--db", db)):
        if chosen and chosen != DEFAULT_CHOICE:
            words += [option, chosen]
    ticked = set(checked)
    words += [
        flag for choice, flag in ((Choice.NO_FLAGS, "--no-flags"), (Choice.DRY_RUN, "--dry-run")) if choice in ticked
    ]
    return parse(shlex.join(words))


def to_request(command: Command, *, user: str) -> RollbackRequest:
    """The engine's request for a parsed `/rollback ENV …` (typed, or picked in the modal) by `user`."""
    return RollbackRequest(
        env=command.env or "",
        requested_by=user,
        to=command.to,
        code=command.code,
        db=command.db,
        flags=command.flags,
        dry_run=command.dry_run,
        source="slack",
    )


def _take(rest: list[str], after: str) -> str:
    if not rest:
        raise BadRequest(f"`{after}` needs a value", hint=USAGE)
    return rest.pop(0)


def _option(word: str, rest: list[str]) -> tuple[str, str]:
    name, sep, value = word.partition("=")
    name = name.lower()
    if name not in ("--code", "--db"):
        raise BadRequest(f"I don't understand {_clip(word)!r}", hint=USAGE)
    return name, (value if sep else _take(rest, name)).lower()


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
