"""The verbs of the rollback-bot command that need the engine: imported only when one of them runs.

`bot.cli` parses and dispatches without importing any of this, so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bot.cli._exit import EXIT_ERROR, EXIT_FAILED, EXIT_UNHEALTHY
from bot.config import config_path, environment_problems, load_config
from bot.engine import lifecycle
from bot.engine.events import Reporter
from bot.engine.lifecycle import Actor
from bot.engine.plan import Plan, RollbackRequest
from bot.engine.restore_points import take_snapshot
from bot.engine.story import RunStory, checklist_notice, snapshot_notice
from bot.errors import BadRequest, ConfigError, RollbackError
from bot.outbox import Outbox
from bot.process_identity import current_process, terminal_user
from bot.render_text import plan_text, readiness_text, run_line, status_text, timeline_markdown
from bot.services import Services, build_services
from bot.terminal import TerminalReporter, error_text


def engine_command(args: argparse.Namespace) -> int:
    services = build_services(args.config)
    try:
        return _engine_command(services, args)
    finally:
        services.close()


def serve(args: argparse.Namespace) -> int:
    from bot.app import serve_http, serve_socket

    services = build_services(args.config)
    if args.command == "serve":
        return serve_http(services, host=args.host, port=args.port)
    return serve_socket(services)


def check_config(args: argparse.Namespace) -> int:
    return _check_config(args.config)


def demo(args: argparse.Namespace) -> int:
    return _demo(Path(args.dir), terminal=args.terminal)


def _demo(folder: Path, *, terminal: bool) -> int:
    """The demo's world (stand-ins, scenario) is not in the installed package: it lives in a checkout."""
    if (Path.cwd() / "sandbox" / "demo.py").is_file() and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))  # run from the repository: use its sandbox/
    try:
        demo = importlib.import_module("sandbox.demo")
    except ImportError:
        print(
            "error: the demo's sandbox is not installed (it ships with the source, not the package)\n"
            "  → git clone the rollback-bot repository, then run `make demo` in it",
            file=sys.stderr,
        )
        return EXIT_ERROR
    code: int = demo.run_demo(folder, terminal=terminal)
    return code


def _engine_command(services: Services, args: argparse.Namespace) -> int:
    command = args.command
    reporter = TerminalReporter()
    me = Actor(id=getattr(args, "actor", None) or terminal_user(), via="terminal")
    if command in ("plan", "run"):
        request = RollbackRequest(
            env=args.env,
            requested_by=me.id,
            to=args.to,
            code=args.code,
            db=args.db,
            flags=not args.no_flags,
            dry_run=args.dry_run,
            source="cli",
        )
        if command == "plan":
            print(plan_text(lifecycle.make_request_plan(services, request)))
            return 0
        return _run(services, request, force=args.force, reporter=reporter, actor=me, channel=args.channel)
    if command in ("resume", "abort"):
        decision = "abort" if command == "abort" else args.decision
        reporters: list[Reporter] = [reporter, *_story(services, args.run_id, channel=args.channel)]
        record = lifecycle.resume(services, args.run_id, decision=decision, actor=me, reporters=reporters)
        return _exit_code(record.status, ok=("succeeded", "aborted"))
    if command in ("break-glass", "takeover", "break-lock", "sign-off"):
        return _when_people_are_gone(services, args, actor=me, reporter=reporter)
    if command == "undo-flags":
        print("\n".join(lifecycle.undo_flags(services, args.run_id, actor=me)))
        return 0
    if command == "status":
        store = services.store
        active = store.list_runs(limit=50, statuses=("running", "failed", "planned"), dry_run=False)
        locks = [lock for env in services.config.settings.environments if (lock := store.lock_for(env))]
        print(status_text([lifecycle.view(services, r.id) for r in active], locks))
        print(readiness_text(services))
        return 0
    if command == "history":
        runs = services.store.list_runs(limit=args.limit, env=args.env)
        print("\n".join(run_line(r, lifecycle.view(services, r.id).status) for r in runs) or "No rollbacks yet.")
        return 0
    if command == "timeline":
        record = services.store.get_run(args.run_id)
        trail = services.store.audit_trail(run_id=record.id)
        print(
            timeline_markdown(record, trail, services.store.checklist(record.id), lifecycle.view(services, record.id)),
            end="",
        )
        return 0
    if command == "rehearse":
        return _rehearse(services, args.env, actor=me, reporter=reporter)
    if command == "snapshot":
        result = take_snapshot(services, args.env, actor=me.id, progress=reporter.say)
        print(result.summary)
        if args.channel:
            Outbox(services.store).enqueue(snapshot_notice(args.channel, env=args.env, summary=result.summary))
            print(f"(told {args.channel} through the outbox)")
        return 0
    if command == "drill":
        return _drill(services, args.env, actor=me, reporter=reporter)
    raise BadRequest(f"unknown command {command!r}")


def _when_people_are_gone(
    services: Services, args: argparse.Namespace, *, actor: Actor, reporter: TerminalReporter
) -> int:
    """break-glass, takeover, break-lock, sign-off: the same engine rules as the Slack buttons."""
    from bot.engine import break_glass, handover

    if args.command == "break-glass":
        record = services.store.get_run(args.run_id)
        break_glass.break_glass(
            services, record.id, actor=actor, plan_hash=record.plan_hash, justification=args.justification
        )
        print(f"Break glass: {record.id} approved by {actor.id} alone; the channel and stakeholders are told.")
        reporters: list[Reporter] = [reporter, *_story(services, record.id, channel=args.channel)]
        with _timers_while_running(services, enabled=bool(reporters[1:])):
            result = lifecycle.start(services, record.id, actor=actor, reporters=reporters)
        if result.status == "failed":
            print(f"\nThe run is waiting: rollback-bot resume {record.id} --retry | --skip | --abort", file=sys.stderr)
        return _exit_code(result.status, ok=("succeeded",))
    if args.command == "takeover":
        record = handover.take_over(services, args.run_id, actor=actor, reason=args.reason)
        previous = record.meta.get("taken_over", {}).get("from", "?")
        print(f"Run {record.id} of {record.env} is yours now (it was {previous}'s); the lock is held in your name.")
        print(f"Next: rollback-bot resume {record.id} --retry | --skip | --abort")
        return 0
    if args.command == "break-lock":
        print("\n".join(handover.break_lock(services, args.env, actor=actor, reason=args.reason, reporters=[reporter])))
        return 0
    if not break_glass.complete_checklist_item(services, args.run_id, break_glass.REVIEW_ITEM, actor=actor):
        item = next((i for i in services.store.checklist(args.run_id) if i.item_id == break_glass.REVIEW_ITEM), None)
        if item is None:
            raise BadRequest(f"run {args.run_id} was not a break-glass rollback: there is no review to sign off")
        print(f"Already signed off by {item.done_by}.")
        return 0
    record = services.store.get_run(args.run_id)
    shown = checklist_notice(record, services.store.checklist(record.id))
    if shown is not None and lifecycle.RunStatus(record.status).ended:  # its checklist message is in the thread
        Outbox(services.store).enqueue(shown)
    print(f"Signed off the review of the break-glass rollback {record.id}.")
    return 0


def _rehearse(services: Services, env: str, *, actor: Actor, reporter: TerminalReporter) -> int:
    """The whole plan against stand-ins, each step as it goes, then the summary: 0 passed, 1 failed."""
    from bot.engine.rehearsal import rehearse, summary_lines

    print(f"Rehearsing the rollback of {env} against stand-ins for production: nothing of production changes.")
    check = rehearse(services, env, requested_by=actor.id, source="cli", reporters=[reporter], say=reporter.say)
    print("\n".join(summary_lines(check)))
    return 0 if check.status == "passed" else EXIT_FAILED


def _story(services: Services, run_id: str, *, channel: str | None) -> list[Reporter]:
    """The run's story for its Slack channel (the one it has, or --channel), through the outbox."""
    record = services.store.get_run(run_id)
    if channel and record.meta.get("channel") != channel:
        services.store.merge_meta(run_id, {"channel": channel})
    elif not record.meta.get("channel"):
        return []
    return [RunStory(services, run_id=run_id)]


def _run(
    services: Services,
    request: RollbackRequest,
    *,
    force: bool,
    reporter: TerminalReporter,
    actor: Actor,
    channel: str | None,
) -> int:
    record, plan = lifecycle.propose(services, request, meta={"channel": channel} if channel else None)
    print(plan_text(plan))
    try:
        confirmed = force or _confirmed(plan)
    except (RollbackError, EOFError):
        lifecycle.cancel(services, record.id, actor=actor)
        raise
    if not confirmed:
        lifecycle.cancel(services, record.id, actor=actor)
        print("Cancelled: nothing was changed.")
        return EXIT_FAILED
    lifecycle.approve(services, record.id, actor=actor, plan_hash=record.plan_hash)
    reporters: list[Reporter] = [reporter, *_story(services, record.id, channel=channel)]
    with _timers_while_running(services, enabled=bool(channel)):
        result = lifecycle.start(services, record.id, actor=actor, reporters=reporters)
        while result.status == "failed" and sys.stdin.isatty() and not force:
            answer = input(
                "Retry the failed step, skip it, abort, or leave it for later? [retry/skip/abort/leave] "
            ).strip()
            if answer in ("leave", ""):
                break
            if answer not in ("retry", "skip", "abort"):
                continue
            try:
                result = lifecycle.resume(services, record.id, decision=answer, actor=actor, reporters=reporters)
            except RollbackError as error:
                print(error_text(error), file=sys.stderr)
    if result.status == "failed":
        print(
            f"\nThe run is waiting: rollback-bot resume {record.id} --retry | --skip | --abort",
            file=sys.stderr,
        )
    if channel:
        print(f"(the story of this run waits in the outbox for {channel}: a serving bot posts it when Slack answers)")
    return _exit_code(result.status, ok=("succeeded",))


def _exit_code(status: str, *, ok: tuple[str, ...]) -> int:
    if status in ok:
        return 0
    return EXIT_UNHEALTHY if status == "unhealthy" else EXIT_FAILED


@contextmanager
def _timers_while_running(services: Services, *, enabled: bool) -> Iterator[None]:
    """While a terminal run tells a channel, fire its stakeholder updates on time into the outbox."""
    if not enabled:
        yield
        return
    from bot.engine.timed import timer_handlers
    from bot.timers import TimerPoller, Timers

    me = current_process()
    poller = TimerPoller(Timers(services.store), timer_handlers(services), holder=f"cli:{me.host}:{me.pid}").start()
    try:
        yield
    finally:
        poller.stop()


def _confirmed(plan: Plan) -> bool:
    """The seed's confirmations: type the environment's name; risky choices ask once more."""
    if not sys.stdin.isatty():
        raise BadRequest(
            "a rollback needs a typed confirmation and there is no terminal to ask in",
            hint="run it in a terminal, or pass --force if you are sure",
        )
    verb = "check (dry run)" if plan.dry_run else "roll back"
    if input(f"\nType the environment name ({plan.env}) to {verb} it: ").strip() != plan.env:
        return False
    risky = (
        []
        if plan.dry_run
        else [
            text
            for applies, text in (
                (plan.code == "force-push", "rewrite the history of " + f"{plan.remote}/{plan.branch}"),
                (
                    plan.database.action != "none",
                    f"replace the live database ({plan.database.where or plan.env})",
                ),
            )
            if applies
        ]
    )
    if risky:
        return input(f"This will {' and '.join(risky)}. Type ROLLBACK to go ahead: ").strip() == "ROLLBACK"
    return True


def _check_config(explicit: str | None) -> int:
    path = config_path(explicit)
    try:
        loaded = load_config(path)
    except ConfigError as error:
        print(error_text(error), file=sys.stderr)
        return EXIT_ERROR
    problems = environment_problems(loaded)
    if problems:
        print(error_text(ConfigError(problems)), file=sys.stderr)
        return EXIT_ERROR
    envs = ", ".join(sorted(loaded.settings.environments))
    print(f"{path}: OK ({len(loaded.settings.environments)} environment(s): {envs})")
    if loaded.store_url.startswith("sqlite:"):
        print(
            "note: the store is SQLite, a file on this machine: run ONE bot replica. Several replicas (and the "
            'CLI on other machines) must share a PostgreSQL store: [bot] store = "postgresql://…"'
        )
    return 0


def _drill(services: Services, env: str, *, actor: Actor, reporter: TerminalReporter) -> int:
    """`rollback-bot drill ENV`: one restore drill now, its progress and result on screen; a failure alerts too."""
    from bot.engine.drill_story import drill_lines
    from bot.engine.drills import run_drill

    check = run_drill(services, env, requested_by=actor.id, source="cli", progress=reporter.say)
    reporter.say("\n".join(drill_lines(check)))
    return 0 if check.status == "passed" else EXIT_FAILED
