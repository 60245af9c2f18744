"""What stands in for production in a rehearsal: decided first, written down, then made (bot.engine.rehearsal).

`decide` reads the configuration and the store and changes nothing: which branch, database, flag
environment and health URLs stand in, what is skipped and why, and the stand-in environment the engine
runs on (its settings derived from the environment's, under a name no configured environment can have).
`make_branch` and `make_database` create the scratch ones; their names are written down by the caller
before they are made, so a crash leaves names to clean (bot.engine._rehearsal_cleanup).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from bot.artifacts import fetched
from bot.backends.base import Database, Progress
from bot.config import DatabaseSettings, EnvironmentSettings, FlagSettings, HealthSettings
from bot.config_readiness import DrillSettings, RehearsalSettings
from bot.engine.run_status import REHEARSAL_SUFFIX
from bot.errors import PreconditionFailed
from bot.store import RestorePoint

if TYPE_CHECKING:
    from bot.services import Services

BRANCH_PREFIX = "rollback-bot/rehearsal-"  # under bot.backends.git.SCRATCH_BRANCHES
# Flag vendors whose API names an environment of their own; a webhook is one URL with no staging of its own.
STAGED_VENDORS = ("launchdarkly", "flagsmith", "unleash")


def stand_in_name(env: str) -> str:
    return env + REHEARSAL_SUFFIX  # "prod@r"


def scratch_branch_name(env: str, check_id: int) -> str:
    return f"{BRANCH_PREFIX}{env}-{check_id}"


@runtime_checkable
class ScratchBranches(Protocol):
    """A code backend that can make and remove a scratch branch (bot.backends.git.GitRepo)."""

    def create_branch_at(self, sha: str, name: str) -> str: ...

    def stand_in_deploy(self, sha: str, *, note: str) -> str: ...

    def delete_remote_branch(self, name: str) -> str | None: ...

    def delete_backup_ref(self, backup_ref: str) -> str | None: ...


@dataclass(frozen=True)
class Decided:
    env: str
    name: str  # the stand-in environment the engine runs on
    settings: EnvironmentSettings  # the environment's, with the stand-ins in place
    remote: str
    branch: str
    scratch_branch: bool  # made for the rehearsal, deleted after; False: a configured staging branch, kept
    staging_url_env: str | None  # a configured staging database's variable; None: a scratch database, or none
    scratch_database: bool
    restore_point: RestorePoint | None
    source: str | None  # the dump the scratch database is restored from (the one the rollback restores)
    said: dict[str, str] = field(default_factory=dict)  # code / database / flags / health → in words
    skipped: dict[str, str] = field(default_factory=dict)  # what is not rehearsed, and why

    def stand_ins(self) -> dict[str, object]:
        return {**self.said, "skipped": dict(self.skipped)}


def decide(services: Services, env: str, *, check_id: int) -> Decided:
    """The stand-ins for `env`'s rehearsal; raise PreconditionFailed (nothing made) when there can be none."""
    settings = services.config.environment(env)
    rehearsal = settings.rehearsal
    said: dict[str, str] = {}
    skipped: dict[str, str] = {}
    remote = rehearsal.remote or settings.remote
    if rehearsal.branch:
        if remote == settings.remote and rehearsal.branch == settings.branch:
            raise PreconditionFailed(
                f"rehearsal.branch is {env}'s own branch {remote}/{settings.branch}",
                hint=f"name a staging branch in environments.{env}.rehearsal.branch, or leave it out for a scratch one",
            )
        branch = rehearsal.branch
        said["code"] = f"the staging branch {remote}/{branch} (rolled back, and kept: it is staging's own)"
    else:
        branch = scratch_branch_name(env, check_id)
        said["code"] = f"a scratch branch {remote}/{branch} at {env}'s deployed commit (deleted afterwards)"

    restore_point = services.store.latest_restore_point(env)
    override = services.dump_override(env)
    source = str(override) if override else (restore_point.dump_path if restore_point else None)
    database = settings.database
    staging_env = rehearsal.database_url_env
    derived_db = DatabaseSettings()
    if database.engine == "none":
        skipped["database"] = f"{env} has no database"
    elif database.restore.startswith("rds-"):
        skipped["database"] = f"{database.restore} restores a NEW RDS instance: not rehearsed (a drill proves dumps)"
    elif source is None:
        raise PreconditionFailed(
            f"{env} has no restore point, so there is nothing to restore the rehearsal's database from",
            hint=f"record one with `rollback-bot snapshot {env}` (the deploy pipeline does before each deploy)",
        )
    else:
        derived_db = database.model_copy(update={"url_env": staging_env or database.url_env})
        where = f"restore point #{restore_point.id}" if restore_point and not override else f"the dump {source}"
        if staging_env:
            said["database"] = (
                f"the staging database in ${staging_env}, restored over from {where} and kept (the copy of its"
                " data from before the rehearsal that the swap keeps aside is dropped with the rest)"
            )
        else:
            said["database"] = f"a scratch copy of {env}'s database restored from {where} (dropped afterwards)"

    flags: list[FlagSettings] = []
    if not settings.flags:
        skipped["flags"] = f"{env} has no feature flags configured"
    elif not rehearsal.flags_environment:
        skipped["flags"] = "no rehearsal.flags_environment: production's flags are never touched"
    else:
        flags = [f.model_copy(update={"environment": rehearsal.flags_environment}) for f in settings.flags]
        flags = [f for f in flags if f.provider in STAGED_VENDORS]
        webhooks = len(settings.flags) - len(flags)
        if flags:
            said["flags"] = f"the vendor's {rehearsal.flags_environment!r} environment (put back afterwards)"
        if webhooks:
            skipped["flags"] = f"{webhooks} webhook flag provider(s): a webhook has no staging environment"

    health = [_health(url, settings.health, index) for index, url in enumerate(rehearsal.health)]
    if health:
        said["health"] = "staging URLs: " + ", ".join(rehearsal.health)
    else:
        skipped["health"] = "no rehearsal.health URLs: production's health says nothing of a rehearsal"

    derived = settings.model_copy(
        update={
            "remote": remote,
            "branch": branch,
            "database": derived_db,
            "rds": None,
            "flags": flags,
            "health": health,
            "requesters": [],
            "approvers": [],
            "break_glass": [],
            "drill": DrillSettings(),
            "rehearsal": RehearsalSettings(),
        }
    )
    scratch_database = derived_db.engine != "none" and not staging_env
    return Decided(
        env=env,
        name=stand_in_name(env),
        settings=derived,
        remote=remote,
        branch=branch,
        scratch_branch=not rehearsal.branch,
        staging_url_env=staging_env if derived_db.engine != "none" else None,
        scratch_database=scratch_database,
        restore_point=restore_point,
        source=source,
        said=said,
        skipped=skipped,
    )


def _health(url: str, configured: list[HealthSettings], index: int) -> HealthSettings:
    """A staging URL, checked as the environment's own check in the same place (or its first) is."""
    template = configured[min(index, len(configured) - 1)] if configured else HealthSettings(url=url)
    return template.model_copy(update={"url": url})


def staging_database_url(services: Services, decided: Decided) -> str:
    """The configured staging database's URL, refused when it is missing or is production's own database."""
    var = decided.staging_url_env or ""
    url = os.environ.get(var)
    if not url:
        raise PreconditionFailed(
            f"{var} is not set: it must hold the staging database's URL for the rehearsal",
            hint=f"export {var}=… (environments.{decided.env}.rehearsal.database_url_env names it)",
        )
    from bot.backends.databases import open_database

    try:
        production = services.database(decided.env)
    except PreconditionFailed:  # production's URL is not on this machine: there is nothing to compare with
        production = None
    staging = open_database(engine=decided.settings.database.engine, url=url)
    if production is not None and staging.describe() == production.describe():
        raise PreconditionFailed(
            f"the staging database in ${var} is {decided.env}'s own database ({production.describe()})",
            hint="point it at a staging database, or leave rehearsal.database_url_env out for a scratch copy",
        )
    return url


def make_branch(services: Services, decided: Decided, repo: object) -> str:
    """Create the scratch branch at the environment's deployed commit (fetched fresh now).

    When production runs the restore point's very commit (a snapshot was just taken, no deploy since),
    a rollback would have no code to revert: the scratch branch then gets one commit on top, standing in
    for the next deploy, so the code step still reverts and pushes for real.
    """
    if not isinstance(repo, ScratchBranches):
        raise PreconditionFailed("this code backend cannot make a scratch branch", hint="configure rehearsal.branch")
    deployed = services.repo(decided.env).fetch()
    point = decided.restore_point
    if point is None or point.commit_sha != deployed.sha:
        return repo.create_branch_at(deployed.sha, decided.branch)
    note = f"rehearsal of {decided.env}: stands in for a deploy after restore point #{point.id}"
    made = repo.create_branch_at(repo.stand_in_deploy(deployed.sha, note=note), decided.branch)
    return f"{made}: one commit standing in for a deploy, since {decided.env} runs restore point #{point.id}'s commit"


def scratch_database_name(services: Services, env: str, check_id: int) -> str:
    from bot.backends.scratch import scratch_name

    production = _production_database(services, env)
    return scratch_name(production, "rehearsal", str(check_id))


def make_database(services: Services, decided: Decided, *, name: str, say: Progress) -> tuple[str, float, int | None]:
    """Restore the rehearsal's source dump into the scratch database `name`: (its URL, seconds, size)."""
    from bot.backends.reporter import Reporter
    from bot.backends.scratch import restore_scratch

    production = _production_database(services, decided.env)
    point = decided.restore_point
    source = decided.source or ""

    def restore(local: Path) -> tuple[str, float, int | None]:
        copy = restore_scratch(production, local, name=name, say=Reporter(say))
        return copy.url, copy.seconds, copy.size

    if point is not None and source == point.dump_path and point.dump_sha256:
        downloads = services.config.work_dir / "downloads"
        with fetched(services.artifacts(), source, point.dump_sha256, point.dump_size, downloads) as local:
            return restore(local)
    return restore(Path(source))


def _production_database(services: Services, env: str) -> Database:
    database = services.database(env)
    if database is None:
        raise PreconditionFailed(f"{env} has no database to make a scratch copy of")
    return database
