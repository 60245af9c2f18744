"""The rollback-bot command: parses, dispatches to a verb, prints. Nothing else lives here.

Only argparse is imported up front: each verb imports the engine, the store or the Slack app when it
runs, so `rollback-bot --help` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from bot import __version__
from bot.choices import CODE_CHOICES, DB_CHOICES
from bot.cli._exit import EXIT_ERROR, EXIT_FAILED

__all__ = ["EXIT_ERROR", "EXIT_FAILED", "main"]


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
        sub.add_argument("--code", choices=CODE_CHOICES)
        sub.add_argument("--db", choices=DB_CHOICES)
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
    glass = command("break-glass", "run a plan nobody approved in time alone (only people in ENV's break_glass)")
    glass.add_argument("run_id", metavar="RUN_ID")
    glass.add_argument(
        "--justification",
        required=True,
        help="why it cannot wait for an approver: audited, and posted in the channel and the stakeholder channels",
    )
    _as_option(glass, "the Slack user ID breaking the glass: the plan's requester, listed in break_glass")
    _channel_option(glass)
    takeover = command("takeover", "make a failed or interrupted run yours (its requester is gone)")
    takeover.add_argument("run_id", metavar="RUN_ID")
    takeover.add_argument("--reason", required=True, help="why: it goes into the audit trail and the run's thread")
    _as_option(takeover, "who takes it over (default: user@host)")
    break_lock = command("break-lock", "free ENV whose lock holder is gone (a failed or interrupted holder is aborted)")
    break_lock.add_argument("env", metavar="ENV")
    break_lock.add_argument("--reason", required=True, help="why: it goes into the audit trail and the run's thread")
    _as_option(break_lock, "who breaks it (default: user@host)")
    sign_off = command("sign-off", "sign off the review of a break-glass rollback (never by who broke the glass)")
    sign_off.add_argument("run_id", metavar="RUN_ID")
    _as_option(sign_off, "who signs it off (default: user@host)")
    command("status", "what is running or waiting now")
    history = command("history", "recent rollbacks")
    history.add_argument("--env")
    history.add_argument("--limit", type=int, default=20)
    timeline = command("timeline", "a run's timeline as Markdown")
    timeline.add_argument("run_id", metavar="RUN_ID")
    snapshot = command("snapshot", "record a restore point: the deployed commit and a database dump")
    snapshot.add_argument("env", metavar="ENV")
    _channel_option(snapshot)
    drill = command(
        "drill", "restore drill: ENV's latest restore point restored into a scratch database, counted, checked, dropped"
    )
    drill.add_argument("env", metavar="ENV")
    _as_option(drill, "who runs it, for the record (default: user@host)")
    rehearse = command(
        "rehearse", "run ENV's whole rollback against stand-ins for production: production unchanged, nothing left"
    )
    rehearse.add_argument("env", metavar="ENV")
    _as_option(rehearse, "who asks for it (default: user@host)")
    command("check-config", "validate the configuration and name every problem")
    demo = command("demo", "the whole flow on a local sandbox with a local stand-in for Slack")
    demo.add_argument("--dir", default="demo-sandbox", help="where to build the sandbox")
    demo.add_argument("--terminal", action="store_true", help="drive the terminal flow instead of Slack")
    return parser


def _as_option(sub: argparse.ArgumentParser, text: str) -> None:
    sub.add_argument("--as", dest="actor", metavar="USER", help=text)


def _channel_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument(
        "--channel",
        metavar="C…",
        help="the Slack channel that gets the story, through the outbox: posted when Slack answers, even if down now",
    )


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help()
        return EXIT_ERROR
    from bot.errors import RollbackError
    from bot.redact import install_logging_filter, redact

    install_logging_filter()
    try:
        return _dispatch(args)
    except RollbackError as error:
        from bot.terminal import error_text

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
    from bot.cli import _verbs

    if args.command == "check-config":
        return _verbs.check_config(args)
    if args.command == "demo":
        return _verbs.demo(args)
    if args.command in ("serve", "socket"):
        return _verbs.serve(args)
    return _verbs.engine_command(args)
