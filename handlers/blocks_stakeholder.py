"""Updates for the stakeholder channels: plain words for support and product people, no jargon.

No commit SHAs, tool names or step names: "the previous version of the code is live again", with
times in UTC and when the next update is due. Anything a caller passes in is redacted and scrubbed of
SHA-like tokens anyway, since these channels are read far outside the engineering team.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from handlers.blocks_kit import Block, ago, context, esc, hhmm, section

STAKEHOLDER_PHASES = ("started", "step", "running", "failed", "finished", "unhealthy", "aborted")
_LOOK = {
    "started": ("🔄", "rollback started"),
    "step": ("➡️", "rollback progress"),
    "running": ("🔄", "rollback in progress"),
    "failed": ("⚠️", "rollback hit a problem"),
    "finished": ("✅", "rollback complete"),
    "unhealthy": ("⚠️", "rollback done, service not healthy yet"),
    "aborted": ("🛑", "rollback stopped"),
}
_ENV_WORDS = {
    "prod": "production",
    "prd": "production",
    "production": "production",
    "live": "production",
    "stage": "staging",
    "stg": "staging",
    "staging": "staging",
    "dev": "development",
}
_STEP_WORDS = {
    "safety": "Pre-flight checks passed; the rollback is going ahead.",
    "pre_dump": "A safety copy of the current data has been taken before anything changes.",
    "code": "The previous version of the code is live again.",
    "flags": "The features that were recently switched on have been switched off again.",
    "health": "Health checks pass: the service is answering normally.",
    "checklist": "The team is now running the follow-up checks.",
}
# A word of at least 7 hex characters with a digit in it reads as a commit ID, not as English.
_SHA_LIKE = re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{7,64}\b")


def environment_words(env: str) -> str:
    return _ENV_WORDS.get(env.lower(), env)


def plain_words(text: str) -> str:
    """Scrub SHA-like tokens (and, through `esc` later, secrets) from text meant for non-engineers."""
    return " ".join(_SHA_LIKE.sub("", text).split())


def stakeholder_text(
    *,
    env: str,
    phase: str,
    now: datetime,
    started_at: datetime | None = None,
    version_from: datetime | None = None,
    step: str | None = None,
    data_as_of: datetime | None = None,
    next_update: datetime | None = None,
    next_update_in: timedelta | None = None,
    healthy: bool | None = None,
    dry_run: bool = False,
) -> str:
    """One update in plain words. `phase` is one of STAKEHOLDER_PHASES; `step` goes with phase "step"
    (or say phase="step:code").

    `version_from` is when the version we roll back to was made (the target commit's time);
    `data_as_of` is when the restored data was taken (the restore point's time). The next update is
    due at `next_update`, or `next_update_in` from `now`.
    """
    phase, step = _split_phase(phase, step)
    where = environment_words(env)
    if next_update is None and next_update_in is not None:
        next_update = now + next_update_in
    began = started_at or now
    if phase == "started":
        version = f" to the version from {ago(now - version_from)} ago" if version_from else " to an earlier version"
        text = f"We are rolling back {where}{version}. Started {hhmm(began)}."
    elif phase == "step":
        if step == "database":
            text = (
                f"Customer data has been restored to its state at {hhmm(data_as_of)}."
                if data_as_of
                else "Customer data has been restored to an earlier state."
            )
        else:
            text = _STEP_WORDS.get(step or "", f"The rollback of {where} is moving forward.")
    elif phase == "running":
        text = f"The rollback of {where} is still in progress (started {hhmm(began)}, {ago(now - began)} ago)."
    elif phase == "failed":
        text = f"The rollback of {where} hit a problem; the team is on it."
    elif phase == "finished":
        if healthy is False:
            text = (
                f"The rollback of {where} is complete, but some checks still show problems; "
                "the team is looking into it."
            )
        else:
            text = f"The rollback of {where} is complete and the service is answering normally."
        text += f" Started {hhmm(began)}, finished {hhmm(now)}."
    elif phase == "unhealthy":
        text = (
            f"The rollback of {where} is done: the previous version and its data are back. The service is"
            " not answering normally yet; the team is looking into it."
            f" Started {hhmm(began)}, finished {hhmm(now)}."
        )
    elif phase == "aborted":
        text = f"The team stopped the rollback of {where} and is deciding the next step."
    else:
        text = f"There is an update on the rollback of {where}."
    if next_update is not None and phase not in ("finished", "unhealthy"):
        text += f" Next update by {hhmm(next_update)}."
    if dry_run:
        text = "Rehearsal only, nothing changes for customers: " + text
    return plain_words(text)


def _split_phase(phase: str, step: str | None) -> tuple[str, str | None]:
    """Accept "step:code" as well as phase="step", step="code"."""
    if phase.startswith("step:"):
        return "step", phase.removeprefix("step:") or step
    return phase, step


def stakeholder_update_blocks(*, env: str, phase: str, text: str, now: datetime) -> list[Block]:
    icon, words = _LOOK.get(_split_phase(phase, None)[0], ("ℹ️", "rollback update"))
    title = f"{icon} *{esc(environment_words(env)).capitalize()}: {words}*"
    return [section(f"{title}\n{esc(plain_words(text))}"), context(f"Update at {hhmm(now)}")]
