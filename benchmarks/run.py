"""How fast does Slack get its ack from /rollback, next to a bare Bolt app? A benchmark, not a test.

Slack gives an app 3 s to answer a slash command over HTTP. The bot acks at once and does the slow
work (git fetch, migration scan, the plan message) on its own executor. Issue #8's goal: under a
burst of 200 signed requests, 20 at a time, the bot's ack p99 is at most 1.5 × a bare Bolt app's
under the same burst, and under 150 ms. This measures, in one run and side by side (the machines are
shared and noisy, so the ratios matter more than the milliseconds):

  a.  `/rollback help`              the ack carries the whole answer
  b.  `/rollback status`            reads the store, then acks (one plan is waiting)
  c⁰. bare Bolt app, c's burst      a Bolt app whose only listener acks: the yardstick for c
  c.  `/rollback prod --dry-run`    acks, then plans in the background and posts the plan
  c′. the same, background held     c with the bot's plan workers kept busy until the acks are in
  m⁰. bare Bolt app, m's burst      the yardstick for m
  m.  help, status, prod --dry-run  the issue's mixed burst, interleaved
  d.  make_request_plan in-process  what an ack would cost if the handler planned before acking
  d′. the same from C threads       ... and what it would cost under the same burst
  e.  forged signature              Bolt's 401

Every burst is N signed requests from C client threads released together (in a separate process, as
Slack is), against the real app served by waitress on 127.0.0.1 (sandbox.slack_harness; the Web API
stand-in it posts to runs in a process of its own, as Slack does: benchmarks/_ack_slack.py), or against
the bare app (benchmarks/_ack_bare.py: its own process, the same waitress setup, another port); d
is the planning call made N times in a row in this process, d′ the same from C threads. Latency is
wall time from sending a request to its HTTP response (the ack). Then the bot is left to settle, and
every dry run must have produced exactly one plan message in the channel; if not, or if any answer
was wrong, the exit status is 1 (a missed goal is reported, not an error). See benchmarks/README.md.

    .venv/bin/python benchmarks/run.py [--requests N] [--concurrency C] [--slack-in-process] [--write-readme]
"""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere, installed or not
    sys.path.insert(0, str(ROOT))

from benchmarks._ack_bare import BareApp  # noqa: E402
from benchmarks._ack_burst import Check, Clients, Phase, Sample, expect, in_process_plans  # noqa: E402
from benchmarks._ack_report import (  # noqa: E402
    Outcome,
    failures_text,
    goal_lines,
    machine,
    replace_between_markers,
    report,
)
from benchmarks._ack_slack import SlackApiElsewhere  # noqa: E402
from bot.config import load_config  # noqa: E402
from bot.engine.story import run_key  # noqa: E402
from bot.outbox import Outbox  # noqa: E402
from bot.services import Services, build_services  # noqa: E402
from handlers.context import PLAN_WORKERS  # noqa: E402
from sandbox.scenario import Incident, build_incident, drop_databases  # noqa: E402
from sandbox.slack_harness import INCIDENT, SlackWorkspace  # noqa: E402

SETTLE_TIMEOUT_S = 300.0
URL_ENV = "ROLLBACK_BENCH_DATABASE_URL"
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results.md"
DRY_RUN_PLAN_PREFIX = "[DRY RUN] Rollback plan for prod"
HELP, STATUS, DRY_RUN, PLAN = "help", "status", "prod --dry-run", "prod"
MIX = (DRY_RUN, HELP, STATUS)  # the burst, interleaved: 200 requests → 67 dry runs


def mixed(n: int) -> list[str]:
    return [MIX[i % len(MIX)] for i in range(n)]


class ErrorLog(logging.Handler):
    """Counts what the bot logs at ERROR (a background plan that failed says so only there)."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        error = record.exc_info[1] if record.exc_info else None
        why = f": {type(error).__name__}: {str(error).splitlines()[0][:160]}" if error else ""
        self.messages.append(f"{record.name}: {record.getMessage()}{why}")


@contextmanager
def plan_workers_held(workspace: SlackWorkspace) -> Iterator[None]:
    """Keep the bot's plan workers busy, so plans queue until the block ends."""
    assert workspace.ctx is not None, "start() first"
    started = threading.Semaphore(0)
    release = threading.Event()

    def hold() -> None:
        started.release()
        release.wait(timeout=SETTLE_TIMEOUT_S)

    holders = [workspace.ctx.planner.submit(hold) for _ in range(PLAN_WORKERS)]
    try:
        for _ in holders:
            if not started.acquire(timeout=60):
                raise TimeoutError("the bot's workers did not pick up the holders")
        yield
    finally:
        release.set()


def measure(
    incident: Incident, *, n: int, concurrency: int, rounds: int, errors: ErrorLog, slack_in_process: bool = False
) -> Outcome:
    services = build_services(config=load_config(incident.config_path))
    spawn = multiprocessing.get_context("spawn")  # no fork of a process full of threads
    try:
        with (
            nullcontext(None) if slack_in_process else SlackApiElsewhere() as slack,
            SlackWorkspace(services, api=slack.as_stand_in() if slack else None) as workspace,
            BareApp(token=workspace.api.token, api_url=workspace.api.base_url) as bare,
            ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool,
        ):
            clients = Clients(pool, workspace.api)
            bot_checks: dict[str, Check] = {
                HELP: expect(200, "/rollback ENV"),
                STATUS: expect(200, "prod-"),  # lists the plan the warm-up left waiting
                PLAN: expect(200, "planning a rollback of prod"),
                DRY_RUN: expect(200, "planning a rollback of prod (dry run)"),
            }
            bare_checks = {text: expect(200) for text in MIX}  # it only acks: 200, empty body
            forged = {HELP: expect(401)}

            # Warm-up, not measured: the client process, imports, connections, Bolt's auth.test, the
            # first plan (not a dry run: it stays waiting, so `status` has one plan to list, as during an incident).
            say("warming up…")
            clients.burst(workspace.app_url, [HELP] * concurrency, concurrency=concurrency, checks=bot_checks)
            clients.burst(bare.url, mixed(3 * concurrency), concurrency=concurrency, checks=bare_checks)
            clients.burst(workspace.app_url, [PLAN], concurrency=1, checks=bot_checks)
            workspace.settle(timeout=SETTLE_TIMEOUT_S)
            clients.burst(workspace.app_url, [STATUS], concurrency=1, checks=bot_checks)
            clients.burst(workspace.app_url, [HELP], concurrency=1, checks=forged, forge=True)
            in_process_plans(services, 1)

            phases: dict[str, Phase] = {}

            def add(key: str, label: str, before: str, result: tuple[list[Sample], float], acked: bool = True) -> None:
                samples, wall = result
                phases[key] = Phase(key, label, before, [samples], wall, acked=acked)

            def burst(texts: list[str], *, to_bare: bool = False, forge: bool = False) -> tuple[list[Sample], float]:
                url, checks = (
                    (bare.url, bare_checks) if to_bare else (workspace.app_url, forged if forge else bot_checks)
                )
                return clients.burst(url, texts, concurrency=concurrency, checks=checks, forge=forge)

            def run_burst(key: str, label: str, before: str, texts: list[str], *, forge: bool = False) -> None:
                say(f"{key}. {label}: {len(texts)} requests from {concurrency} threads…")
                add(key, label, before, burst(texts, forge=forge))

            def side_by_side(key: str, label: str, before: str, texts: list[str]) -> float:
                """`rounds` times: the bare app's burst, then the bot's, then the bot settles. → first settle (s)."""
                bare_runs: list[tuple[list[Sample], float]] = []
                bot_runs: list[tuple[list[Sample], float]] = []
                first_settle = 0.0
                for round_ in range(rounds):
                    say(f"{key}⁰/{key}. {label}, round {round_ + 1} of {rounds}: the bare app, then the bot…")
                    bare_runs.append(burst(texts, to_bare=True))
                    started = time.perf_counter()
                    bot_runs.append(burst(texts))
                    plans = texts.count(DRY_RUN)
                    if plans:
                        say(f"   waiting for the bot to post {plans} plans…")
                    workspace.settle(timeout=SETTLE_TIMEOUT_S)
                    first_settle = first_settle or time.perf_counter() - started
                for k, runs_, what, doing in (
                    (f"{key}⁰", bare_runs, f"bare Bolt app, {label}", "verify the signature, ack"),
                    (key, bot_runs, label, before),
                ):
                    phases[k] = Phase(k, what, doing, [r[0] for r in runs_], sum(r[1] for r in runs_))
                return first_settle

            run_burst("a", "`/rollback help`", "parse, render the help", [HELP] * n)
            run_burst("b", "`/rollback status`", "read the store (1 plan waiting)", [STATUS] * n)
            workspace.settle(timeout=SETTLE_TIMEOUT_S)

            before = {m.ts for m in workspace.api.messages(INCIDENT)}
            runs_before = {r.id for r in services.store.list_runs(limit=100_000)}
            dry = "`/rollback prod --dry-run`"
            settle_s = side_by_side("c", dry, "parse, check the requester; plan after", [DRY_RUN] * n)
            with plan_workers_held(workspace):
                run_burst("c′", f"{dry}, plans held", "as c, no planning meanwhile", [DRY_RUN] * n)
            say(f"   waiting for the bot to post {n} more plans…")
            workspace.settle(timeout=SETTLE_TIMEOUT_S)
            mix = mixed(n)
            side_by_side("m", "help, status, prod --dry-run interleaved", "as a, b and c, mixed", mix)
            expected = rounds * n + n + rounds * mix.count(DRY_RUN)
            posted, plans_check = check_plans(workspace, services, before=before, runs_before=runs_before, n=expected)

            say(f"d. make_request_plan in-process: {n} times in a row…")
            add(
                "d",
                "plan before acking, one at a time",
                "git fetch, migration scan",
                in_process_plans(services, n),
                False,
            )
            say(f"d′. make_request_plan in-process: {n} times from {concurrency} threads…")
            add(
                "d′",
                f"plan before acking, {concurrency} at once",
                "the same, as a burst would",
                in_process_plans(services, n, concurrency=concurrency),
                False,
            )
            run_burst("e", "forged signature → 401", "verify the signature", [HELP] * n, forge=True)
            workspace.settle(timeout=SETTLE_TIMEOUT_S)
    finally:
        services.close()
    return Outcome(
        phases,
        plans_expected=expected,
        plans_posted=posted,
        plans_check=plans_check,
        settle_s=settle_s,
        bot_errors=list(errors.messages),
        slack_in_process=slack_in_process,
    )


def check_plans(
    workspace: SlackWorkspace, services: Services, *, before: set[str], runs_before: set[str], n: int
) -> tuple[int, str]:
    """Each dry run made exactly one run record and one plan message, and nothing else was posted."""
    new = [m for m in workspace.api.messages(INCIDENT) if m.ts not in before]
    plans = [m for m in new if m.text.startswith(DRY_RUN_PLAN_PREFIX)]
    runs = [r for r in services.store.list_runs(limit=100_000) if r.id not in runs_before]
    problems = []
    if len(plans) != n:
        problems.append(f"{len(plans)} plan messages for {n} dry runs")
    if len(new) != len(plans):
        problems.append(f"{len(new) - len(plans)} other messages in the channel")
    if len(runs) != n:
        problems.append(f"{len(runs)} runs recorded for {n} dry runs")
    posted = Outbox(services.store)
    run_ts = [message.ts if (message := posted.message(run_key(r.id))) else "" for r in runs]
    plan_ts = sorted(m.ts for m in plans)
    if sorted(run_ts) != plan_ts:
        problems.append("the recorded runs and the plan messages do not pair up one to one")
    if not all(r.dry_run for r in runs):
        problems.append("a run was recorded without dry_run")
    return len(plans), "; ".join(problems)


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- main ------------------------------------------------------------------------------------------------


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: servers stopped, database dropped


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=200, help="requests per burst (default 200)")
    parser.add_argument("--concurrency", type=int, default=20, help="client threads per burst (default 20)")
    parser.add_argument("--rounds", type=int, default=3, help="times each bare/bot pair of bursts is run (default 3)")
    parser.add_argument(
        "--slack-in-process",
        action="store_true",
        help="serve the Slack stand-in from the bot's process (its records then weigh on the bot's heap)",
    )
    parser.add_argument("--write-readme", action="store_true", help="also replace the bench section of README.md")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 10_000 or not 1 <= args.concurrency <= 64 or not 1 <= args.rounds <= 20:
        parser.error("--requests must be 1…10000, --concurrency 1…64 and --rounds 1…20")
    if args.write_readme:
        try:
            replace_between_markers(README.read_text(), "")
        except (OSError, ValueError) as error:
            parser.error(f"--write-readme: {error}")  # before a two-minute run, not after it

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # 20 clients on 8 server threads: requests wait for a thread, and waitress would say so for nearly
    # every one of them ("Task queue depth is N"). That wait is in the timings, for both apps alike.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    errors = ErrorLog()
    logging.getLogger().addHandler(errors)
    signal.signal(signal.SIGTERM, _terminate)
    when, host = datetime.now(UTC), machine()
    os.environ.pop(URL_ENV, None)  # build_incident sets it (the bot reads the URL from the environment)
    with tempfile.TemporaryDirectory(prefix="rollback-bench-") as tmp:
        say(f"building the incident sandbox in {tmp}…")
        try:
            incident = build_incident(Path(tmp) / "incident", url_env=URL_ENV)
        except BaseException:
            url = os.environ.pop(URL_ENV, None)
            if url:  # the database was created before the failure: drop it
                drop_databases(url.rsplit("/", 1)[1])
                say(f"dropped the sandbox database {url.rsplit('/', 1)[1]}")
            raise
        try:
            outcome = measure(
                incident,
                n=args.requests,
                concurrency=args.concurrency,
                rounds=args.rounds,
                errors=errors,
                slack_in_process=args.slack_in_process,
            )
        finally:
            incident.close()
            os.environ.pop(URL_ENV, None)
            say(f"dropped the sandbox database {incident.db_name}")

    markdown = report(outcome, n=args.requests, concurrency=args.concurrency, rounds=args.rounds, when=when, host=host)
    print(markdown, end="")
    RESULTS.write_text(f"# Ack latency benchmark\n\n{markdown}")
    say(f"wrote {RESULTS.relative_to(ROOT)}")
    for line in goal_lines(outcome):
        say(line)
    problems = failures_text(outcome)
    if args.write_readme and problems:
        say(f"not updating {README.relative_to(ROOT)}: this run failed its checks (see below)")
    elif args.write_readme:
        README.write_text(replace_between_markers(README.read_text(), markdown))
        say(f"updated the bench section of {README.relative_to(ROOT)}")
    for line in problems:
        say(f"FAILED: {line}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
