"""The rollback-bot command: parses, calls the engine or the app, prints. Nothing else lives here."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bot import __version__
from bot.config import config_path, environment_problems, load_config
from bot.engine import lifecycle
from bot.engine.events import Reporter
from bot.engine.lifecycle import Actor
from bot.engine.plan import Plan, RollbackRequest
from bot.engine.restore_points import take_snapshot
from bot.engine.story import RunStory, snapshot_notice
from bot.errors import BadRequest, ConfigError, RollbackError
from bot.outbox import Outbox
from bot.process_identity import current_process, terminal_user
from bot.redact import install_logging_filter, redact
from bot.render_text import plan_text, run_line, status_text, timeline_markdown
from bot.services import Services, build_services
from bot.terminal import TerminalReporter, error_text

EXIT_ERROR = 2
EXIT_FAILED = 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rollback-bot", description="Emergency production rollback, from Slack or a terminal."
    )
    parser.add_argument("--version", action="version", version=f"rollback-bot {__version__}")
    parser.add_argument("--config", help="path to rollback.toml (default: $ROLLBACK_CONFIG or ./rollback.toml)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--config", default=argparse.SUPPRESS, help="path to rollback.toml")
        return sub

    serve = command("serve", "serve the Slack app over HTTP (POST /slack/events, GET /healthz)")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=3000)
    command("socket", "run the Slack app over Socket Mode (needs SLACK_APP_TOKEN)")
    for name, text in (
        ("plan", "print the rollback plan; changes nothing"),
        ("run", "roll ENV back from this terminal"),
    ):
        sub = command(name, text)
        sub.add_argument("env", metavar="ENV")
        sub.add_argument("--to", metavar="SHA", help="target commit (default: the latest restore point)")
        sub.add_argument("--code", choices=lifecycle.CODE_CHOICES)
        sub.add_argument("--db", choices=lifecycle.DB_CHOICES)
        sub.add_argument("--no-flags", action="store_true", help="leave feature flags as they are")
        sub.add_argument("--dry-run", action="store_true", help="check and show everything, change nothing")
        if name == "run":
            sub.add_argument("--force", action="store_true", help="skip the typed confirmations (dangerous)")
            sub.add_argument("--as", dest="actor", help="who is running it (default: user@host)")
            _channel_option(sub)
    resume = command("resume", "act on a failed or interrupted run")
    resume.add_argument("run_id", metavar="RUN_ID")
    _channel_option(resume)
    decision = resume.add_mutually_exclusive_group(required=True)
    for choice in ("retry", "skip", "abort"):
        decision.add_argument(f"--{choice}", dest="decision", action="store_const", const=choice)
    abort = command("abort", "abort a failed or interrupted run (releases the environment's lock)")
    abort.add_argument("run_id", metavar="RUN_ID")
    _channel_option(abort)
    undo = command("undo-flags", "put the flags a run turned off back as they were before it")
    undo.add_argument("run_id", metavar="RUN_ID")
    command("status", "what is running or waiting now")
    history = command("history", "recent rollbacks")
    history.add_argument("--env")
    history.add_argument("--limit", type=int, default=20)
    timeline = command("timeline", "a run's timeline as Markdown")
    timeline.add_argument("run_id", metavar="RUN_ID")
    snapshot = command("snapshot", "record a restore point: the deployed commit and a database dump")
    snapshot.add_argument("env", metavar="ENV")
    _channel_option(snapshot)
    command("check-config", "validate the configuration and name every problem")
    demo = command("demo", "the whole flow on a local sandbox with a local stand-in for Slack")
    demo.add_argument("--dir", default="demo-sandbox", help="where to build the sandbox")
    demo.add_argument("--terminal", action="store_true", help="drive the terminal flow instead of Slack")
    return parser


def _channel_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--channel",
        metavar="C…",
        help="the Slack channel that gets the story, through the outbox: posted when Slack answers, even if down now",
    )


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    install_logging_filter()
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return EXIT_ERROR
    try:
        return _dispatch(args)
    except RollbackError as error:
        print(error_text(error), file=sys.stderr)
        return EXIT_ERROR
    except EOFError:
        print("error: no answer (the input was closed); nothing was changed", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("\ninterrupted: a running step may be unfinished; see `rollback-bot status`", file=sys.stderr)
        return 130
    except Exception as error:  # last resort: a short, redacted line instead of a stack trace
        logging.getLogger("rollback-bot").debug("unexpected error", exc_info=True)
        print(redact(f"error: unexpected {type(error).__name__}: {error}"), file=sys.stderr)
        return EXIT_ERROR


def _dispatch(args: argparse.Namespace) -> int:
    command = args.command
    if command == "check-config":
        return _check_config(args.config)
    if command == "demo":
        return _demo(Path(args.dir), terminal=args.terminal)
    if command in ("serve", "socket"):
        from bot.app import serve_http, serve_socket

        services = build_services(args.config)
        return serve_http(services, host=args.host, port=args.port) if command == "serve" else serve_socket(services)
    services = build_services(args.config)
    try:
        return _engine_command(services, args)
    finally:
        services.close()


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
        return 0 if record.status in ("succeeded", "aborted") else EXIT_FAILED
    if command == "undo-flags":
        print("\n".join(lifecycle.undo_flags(services, args.run_id, actor=me)))
        return 0
    if command == "status":
        store = services.store
        active = store.list_runs(limit=50, statuses=("running", "failed", "planned"))
        locks = [lock for env in services.config.settings.environments if (lock := store.lock_for(env))]
        print(status_text([lifecycle.view(services, r.id) for r in active], locks))
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
    if command == "snapshot":
        result = take_snapshot(services, args.env, actor=me.id, progress=reporter.say)
        print(result.summary)
        if args.channel:
            Outbox(services.store).enqueue(snapshot_notice(args.channel, env=args.env, summary=result.summary))
            print(f"(told {args.channel} through the outbox)")
        return 0
    raise BadRequest(f"unknown command {command!r}")


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
    return 0 if result.status == "succeeded" else EXIT_FAILED


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


if __name__ == "__main__":
    sys.exit(main())
