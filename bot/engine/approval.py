"""Who may ask for and approve a rollback, and whether an approval still applies to its plan.

Front-end neutral: group membership is looked up through a function the front end supplies (Slack
resolves user groups with usergroups.users.list; the terminal has none).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from bot.config import EnvironmentSettings
from bot.engine.plan import Plan
from bot.errors import BadRequest, NotAllowed, PlanChanged, PlanExpired
from bot.format import duration
from bot.store import RunRecord

MembersOf = Callable[[str], set[str]]  # user-group ID → its user IDs
MIN_JUSTIFICATION = 20  # characters of a break-glass justification: a sentence, not "urgent"
MIN_REASON = 10  # characters of the reason for taking a run over or breaking a lock
MAX_REASON = 1500  # what the audit trail and a Slack section keep of it


def is_listed(user: str, entries: list[str], members_of: MembersOf) -> bool:
    """True if `user` is named directly, or is a member of a listed user group (S…)."""
    if user in entries:
        return True
    return any(entry.startswith("S") and user in members_of(entry) for entry in entries)


def check_requester(settings: EnvironmentSettings, *, env: str, user: str, members_of: MembersOf) -> None:
    if settings.requesters and not is_listed(user, settings.requesters, members_of):
        raise NotAllowed(
            f"you are not among the people who may request a rollback of {env}",
            hint="ask the on-call engineer; the list is environments." + env + ".requesters",
        )


def check_approval(
    settings: EnvironmentSettings,
    *,
    run: RunRecord,
    approver: str,
    plan_hash: str,
    members_of: MembersOf,
    now: datetime,
    expires_after: timedelta,
) -> None:
    """Raise the reason this person may not approve this exact plan now; return if they may."""
    if plan_hash != run.plan_hash:
        raise PlanChanged(
            "this button belongs to an older version of the plan",
            hint="approve the newest plan message in the channel",
        )
    if run.status == "planned" and now - run.created_at > expires_after:
        raise PlanExpired(
            f"this plan expired {int((now - run.created_at - expires_after).total_seconds() // 60)} min ago "
            f"(plans are valid for {int(expires_after.total_seconds() // 60)} min)",
            hint=f"ask for a fresh plan with /rollback {run.env}",
        )
    if settings.two_person and approver == run.requested_by:
        raise NotAllowed(
            "two-person rule: you asked for this rollback, so someone else must confirm it",
            hint="ask another approver to click Confirm",
        )
    if settings.approvers and not is_listed(approver, settings.approvers, members_of):
        raise NotAllowed(
            f"you are not an approver for {run.env}",
            hint="approvers are listed in environments." + run.env + ".approvers",
        )


def is_approver(settings: EnvironmentSettings, user: str, members_of: MembersOf) -> bool:
    """An environment with no approvers listed lets anyone approve (in an incident channel)."""
    return not settings.approvers or is_listed(user, settings.approvers, members_of)


def check_break_glass(settings: EnvironmentSettings, *, run: RunRecord, user: str, now: datetime) -> None:
    """Raise why `user` may not run this plan alone; return if they may. The same rules from every front end.

    Break-glass exists only where the environment lists who may use it; only the person who asked may use
    it on their own plan, if they are listed; and only once no approver has confirmed it for
    `break_glass_after`.
    """
    env = run.env
    if run.dry_run:
        raise NotAllowed("break-glass is for real rollbacks: a dry run changes nothing and waits for an approver")
    if not settings.break_glass:
        raise NotAllowed(
            f"break-glass is not available for {env}: a rollback of {env} always needs an approver",
            hint=f"ask an approver to confirm; environments.{env}.break_glass would list who may run alone",
        )
    if user != run.requested_by:
        raise NotAllowed(
            f"only the person who asked for this rollback (<@{run.requested_by}>) may break glass on it",
            hint="an approver confirms it instead",
        )
    if user not in settings.break_glass:
        raise NotAllowed(
            f"you are not among the people who may break glass for {env}",
            hint=f"ask an approver to confirm; the list is environments.{env}.break_glass",
        )
    opens = run.created_at + settings.break_glass_after
    if now < opens:
        raise NotAllowed(
            f"break-glass opens at {opens:%H:%M:%S} UTC, {duration(settings.break_glass_after)} after the plan, "
            "if no approver has confirmed it by then",
            hint="ask an approver to confirm it meanwhile",
        )


def check_reason(text: str | None, *, what: str = "reason", minimum: int = MIN_REASON) -> str:
    """The reason (or justification) a person typed, trimmed; raise if it is too short to mean anything."""
    given = (text or "").strip()
    if len(" ".join(given.split())) < minimum:
        raise BadRequest(
            f"a {what} of at least {minimum} characters is needed: it goes into the audit trail",
            hint="say what happened and why this cannot wait",
        )
    return given[:MAX_REASON]


def risky_choices(plan: Plan) -> list[str]:
    """What makes a plan risky enough that the approver must type the environment's name."""
    if plan.dry_run:
        return []
    risks = []
    if plan.code == "force-push":
        risks.append(f"rewrites the history of {plan.remote}/{plan.branch} (the old head is saved first)")
    if plan.database.action.startswith("rds-"):
        risks.append("restores an RDS snapshot into a NEW instance; the app must be pointed at it")
    elif plan.database.action == "dump":
        risks.append(f"replaces the live database {plan.database.where} with the restore point")
    return risks
