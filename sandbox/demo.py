"""`rollback-bot demo`: the whole incident, end to end, on this machine.

A restore drill and a rehearsal first prove the way back, as the schedule would, so the plan can say
so. A bad release is live (its migration dropped a column and a table). Alice, on call, types
`/rollback prod` in #inc-checkout-500s; the bot posts the plan; Alice cannot approve her own
rollback; Carol, the incident commander, confirms and types the environment's name; the bot rolls
code and database back, checks health and posts the checklist; stakeholders see plain updates.
Everything is real (git, PostgreSQL, the Bolt app over HTTP) except Slack's servers, which a local
stand-in replaces.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bot.cli import main as cli_main
from bot.config import load_config
from bot.services import build_services
from sandbox.repo import git
from sandbox.scenario import Incident, build_incident, database_contents
from sandbox.slack_harness import INCIDENT, STATUS, SlackWorkspace

ALICE, CAROL = "U0ALICE", "U0CAROL"
RULE = "─" * 100


def say(text: str = "") -> None:
    print(text, flush=True)


def run_demo(folder: Path, *, terminal: bool = False) -> int:
    folder = folder.resolve()
    if folder.exists():
        shutil.rmtree(folder)
    say(f"Building the sandbox in {folder}: a git remote, a PostgreSQL database, a health endpoint…")
    incident = build_incident(folder, with_flags=True)
    try:
        _the_night_before(incident)
        _describe(incident)
        return _terminal(incident) if terminal else _slack(incident)
    finally:
        incident.close()
        say(f"\nThe sandbox's files stay in {folder}; its database {incident.db_name} was dropped.")


def _the_night_before(incident: Incident) -> None:
    """A restore drill and a rehearsal, as the schedule runs them, so the plan can say what they proved."""
    from bot.engine.drills import run_drill
    from bot.engine.readiness import environment_readiness
    from bot.engine.rehearsal import rehearse
    from bot.store import now

    services = build_services(config=load_config(incident.config_path))
    try:
        say(RULE)
        say("What the schedule does every night: a restore drill restores the restore point into a scratch database")
        say("and drops it; a rehearsal runs the whole plan on a scratch branch and database, and removes them.")
        drill = run_drill(services, "prod", requested_by="schedule", source="schedule")
        rehearsal = rehearse(services, "prod", requested_by="U0CAROL", source="cli")
        say(
            f"  drill      {drill.status}; rehearsal {rehearsal.status}"
            + (f": {rehearsal.failure}" if rehearsal.failure else "")
        )
        for line in environment_readiness(services.store, "prod", has_database=True, at=now()):
            say(f"  readiness  {line}")
    finally:
        services.close()


def _describe(incident: Incident) -> None:
    repo = incident.repo
    say(RULE)
    say("The incident: production runs a bad release.")
    say(f"  deployed   {git(repo.clone, 'log', '-1', '--format=%h %s', repo.bad)}")
    say(
        f"  good       {git(repo.clone, 'log', '-1', '--format=%h %s', repo.good)}"
        "  (restore point taken before the deploy)"
    )
    orders = database_contents(incident.db_url)["orders"]
    say(f"  database   orders columns {orders[0]}; audit_old table dropped by the bad migration")
    if incident.flags is not None:
        say("  flags      LaunchDarkly new-pricing is ON (the bad release ships behind it)")
    say(RULE)


def _slack(incident: Incident) -> int:
    os.environ.setdefault("SLACK_BOT_TOKEN", "xoxb-sandbox")
    services = build_services(config=load_config(incident.config_path))
    try:
        with SlackWorkspace(services) as slack:
            say("alice (on call) in #inc-checkout-500s:  /rollback prod")
            slack.slash(ALICE, "prod")
            plan = slack.latest()
            say(RULE)
            say("The plan, as the channel sees it before anyone approves:")
            say(RULE)
            say(slack.transcript(INCIDENT))
            say(RULE)
            say("alice clicks Confirm on her own plan…")
            slack.click(ALICE, "Confirm", message=plan)
            for text in slack.ephemeral_texts(ALICE)[-1:]:
                say(f"  (only alice sees) {text}")
            say("carol (incident commander) clicks Confirm… and types “prod” in the confirmation modal")
            slack.click(CAROL, "Confirm", message=plan)
            slack.type_confirmation(CAROL, "prod", settle=False)
            slack.settle(timeout=600)
            checklist = next((m for m in reversed(slack.thread(plan)) if "checklist_done" in str(m.blocks)), None)
            if checklist is not None:
                say("carol ticks the first checklist item…")
                slack.click(CAROL, "Done", message=checklist)
            say(RULE)
            say("#inc-checkout-500s, as people in the channel read it:")
            say(RULE)
            say(slack.transcript(INCIDENT))
            say(RULE)
            say("#status, what stakeholders read:")
            say(RULE)
            say(slack.transcript(STATUS))
            run = services.store.list_runs()[0]
    finally:
        services.close()
    return _verdict(incident, run.id, run.status)


def _terminal(incident: Incident) -> int:
    say("Slack is down: the on-call engineer runs it from a terminal.")
    say("$ rollback-bot run prod --force")
    code = cli_main(["run", "prod", "--force", "--config", str(incident.config_path)])
    services = build_services(config=load_config(incident.config_path))
    try:
        run = services.store.list_runs()[0]
    finally:
        services.close()
    return _verdict(incident, run.id, run.status) or code


def _verdict(incident: Incident, run_id: str, status: str) -> int:
    repo = incident.repo
    head = git(Path(repo.remote_url), "rev-parse", f"refs/heads/{repo.branch}")
    same_tree = git(Path(repo.remote_url), "rev-parse", f"{head}^{{tree}}") == git(
        Path(repo.remote_url), "rev-parse", f"{repo.good}^{{tree}}"
    )
    orders = database_contents(incident.db_url)["orders"]
    dumps = sorted((incident.root / "backups" / "prod").glob("pre-rollback-*.dump"))
    say(RULE)
    say("What actually happened:")
    say(f"  run {run_id}: {status}")
    say(f"  remote {repo.remote_name}/{repo.branch} is at {head[:7]}; its tree equals the good release: {same_tree}")
    say(f"  orders columns now {orders[0]}; rows {orders[1:]}")
    say(f"  pre-rollback dump kept: {dumps[-1] if dumps else 'NONE'}")
    flag_off = incident.flags is None or not incident.flags.flag_on("new-pricing")
    if incident.flags is not None:
        say(f"  LaunchDarkly new-pricing is {'off' if flag_off else 'STILL ON'}")
    say(RULE)
    say(f"$ rollback-bot timeline {run_id}")
    cli_main(["timeline", run_id, "--config", str(incident.config_path)])
    ok = status == "succeeded" and same_tree and "legacy_ref" in orders[0] and bool(dumps) and flag_off
    say("Demo finished: the rollback worked." if ok else "Demo finished: the rollback did NOT complete.")
    return 0 if ok else 1


def main() -> int:
    """`python -m sandbox.demo [--dir D] [--terminal]`, which is what `make demo` runs."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m sandbox.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--dir", default="demo-sandbox", help="where to build the sandbox")
    parser.add_argument("--terminal", action="store_true", help="drive the terminal flow instead of Slack")
    args = parser.parse_args()
    return run_demo(Path(args.dir), terminal=args.terminal)


if __name__ == "__main__":
    raise SystemExit(main())
