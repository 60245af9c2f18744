"""How fast does Slack get its ack from /rollback? A benchmark, not a test.

Slack gives an app 3 s to answer a slash command over HTTP. The bot acks at once and does the slow
work (git fetch, migration scan, the plan message) on its own executor. This measures, in one run and
side by side (the machines are shared and noisy, so the ratios matter more than the milliseconds):

  a.  `/rollback help`              the ack carries the whole answer
  b.  `/rollback status`            reads the store, then acks (one plan is waiting)
  c.  `/rollback prod --dry-run`    acks, then plans in the background and posts the plan
  c′. the same, background held     c with the bot's plan workers kept busy until the acks are in
  d.  make_request_plan in-process  what an ack would cost if the handler planned before acking
  d′. the same from C threads       ... and what it would cost under the same burst
  e.  forged signature              Bolt's 401

a, b, c, c′ and e are bursts of N signed requests from C client threads released together (in a
separate process, as Slack is), against the real app served by waitress on 127.0.0.1
(sandbox.slack_harness); d is the planning call made N times in a row in this process, d′ the
same from C threads. Latency is wall time from sending a request to its HTTP response (the ack).
Then the bot is left to settle, and every dry run must have produced exactly one plan message in
the channel; if not, or if any answer was wrong, the exit status is 1. See benchmarks/README.md.

    .venv/bin/python benchmarks/run.py [--requests N] [--concurrency C] [--write-readme]
"""

from __future__ import annotations

import argparse
import logging
import math
import multiprocessing
import os
import platform
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from urllib.parse import urlencode

import requests

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere, installed or not
    sys.path.insert(0, str(ROOT))

from bot.config import load_config  # noqa: E402
from bot.engine.lifecycle import make_request_plan  # noqa: E402
from bot.engine.plan import RollbackRequest  # noqa: E402
from bot.engine.story import run_key  # noqa: E402
from bot.outbox import Outbox  # noqa: E402
from bot.services import Services, build_services  # noqa: E402
from handlers.context import PLAN_WORKERS  # noqa: E402
from sandbox.scenario import Incident, build_incident, drop_databases  # noqa: E402
from sandbox.slack_api import SlackApiStandIn  # noqa: E402
from sandbox.slack_harness import INCIDENT, SIGNING_SECRET, SlackWorkspace  # noqa: E402
from sandbox.slack_signing import FORM, compute_signature  # noqa: E402

SLACK_DEADLINE_S = 3.0
REQUEST_TIMEOUT_S = 30.0
SETTLE_TIMEOUT_S = 300.0
USER = "U0ALICE"  # on call; may request a rollback of prod
URL_ENV = "ROLLBACK_BENCH_DATABASE_URL"
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results.md"
START_MARK, END_MARK = "<!-- bench:start -->", "<!-- bench:end -->"
DRY_RUN_PLAN_PREFIX = "[DRY RUN] Rollback plan for prod"
REPRODUCE = ".venv/bin/python benchmarks/run.py"


@dataclass(frozen=True)
class Sample:
    seconds: float
    ok: bool  # the expected status and answer
    detail: str = ""


@dataclass(frozen=True)
class Phase:
    key: str
    label: str
    before_ack: str
    samples: list[Sample]
    wall_s: float

    @property
    def latencies_ms(self) -> list[float]:
        return sorted(s.seconds * 1000 for s in self.samples)

    @property
    def failures(self) -> list[Sample]:
        return [s for s in self.samples if not s.ok]

    def pct(self, q: float) -> float:
        """Nearest-rank percentile, in ms."""
        values = self.latencies_ms
        return values[max(0, math.ceil(q / 100 * len(values)) - 1)] if values else float("nan")

    @property
    def under_deadline(self) -> float:
        return sum(1 for s in self.samples if s.seconds < SLACK_DEADLINE_S) / max(1, len(self.samples))


# --- requests as Slack sends them ------------------------------------------------------------------


def slash_body(api: SlackApiStandIn, text: str, *, user: str = USER, channel: str = INCIDENT) -> bytes:
    """The fields SlackRequestSender.slash_command sends, with a response_url the stand-in honours."""
    fields = {
        "token": "legacy-verification-token",
        "team_id": api.team_id,
        "team_domain": api.team_domain,
        "channel_id": channel,
        "channel_name": api.channel_name(channel),
        "user_id": user,
        "user_name": api.user_name(user) or user,
        "command": "/rollback",
        "text": text,
        "api_app_id": api.app_id,
        "is_enterprise_install": "false",
        "response_url": api.make_response_url(channel=channel, user=user, message_ts=None),
        "trigger_id": api.make_trigger_id(user_id=user),
    }
    return urlencode(fields).encode()


Answer = tuple[float, int, str]  # seconds from send to response, HTTP status (0: no response), body or error


def released_together(worker: Callable[[], None], *, gate: threading.Barrier, concurrency: int, name: str) -> float:
    """Run `concurrency` workers that each wait at `gate`, release them at once, return the wall time."""
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=name) as pool:
        futures = [pool.submit(worker) for _ in range(concurrency)]
        gate.wait(timeout=60)
        started = time.perf_counter()
        for future in futures:
            future.result()
        return time.perf_counter() - started


def client_burst(
    url: str, secret: str, bodies: list[bytes], concurrency: int, forge: bool
) -> tuple[list[Answer], float]:
    """Send every body once, from `concurrency` threads released together, each with its own Session.

    Runs in the client process, so the clients' Python does not share the bot's GIL (Slack's servers
    are not in the bot's process either). Each request is signed as it is sent, as Slack does.
    """
    queue = list(bodies)
    lock = threading.Lock()
    gate = threading.Barrier(concurrency + 1)
    answers: list[Answer] = []

    def send(session: requests.Session, body: bytes) -> Answer:
        sent_at = int(time.time())
        signature = compute_signature(signing_secret=secret, timestamp=sent_at, body=body)
        headers = {
            "Content-Type": FORM,
            "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
            "X-Slack-Request-Timestamp": str(sent_at),
            "X-Slack-Signature": "v0=" + "0" * 64 if forge else signature,
        }
        started = time.perf_counter()
        try:
            response = session.post(url, data=body, headers=headers, timeout=REQUEST_TIMEOUT_S)
        except requests.RequestException as error:
            return time.perf_counter() - started, 0, f"{type(error).__name__}: {error}"
        return time.perf_counter() - started, response.status_code, response.text

    def client() -> None:
        with requests.Session() as session:
            session.trust_env = False  # 127.0.0.1 only: no proxy from the environment
            gate.wait(timeout=60)
            for _ in range(len(bodies)):  # bounded: each thread takes at most every body
                with lock:
                    if not queue:
                        return
                    body = queue.pop()
                answer = send(session, body)
                with lock:
                    answers.append(answer)

    return answers, released_together(client, gate=gate, concurrency=concurrency, name="bench-client")


Check = Callable[[int, str], str]  # (status, body) → "" when it is the expected answer, else why not


def expect(status: int, contains: str = "") -> Check:
    def check(got: int, body: str) -> str:
        if got != status:
            return f"HTTP {got}, expected {status}: {body[:160]!r}"
        if contains and contains not in body:
            return f"answer lacks {contains!r}: {body[:160]!r}"
        return ""

    return check


class Clients:
    """Slack's side: a separate process that sends bursts of signed requests to the app."""

    def __init__(self, pool: ProcessPoolExecutor, workspace: SlackWorkspace) -> None:
        self.pool = pool
        self.workspace = workspace

    def burst(
        self, texts: Sequence[str], *, concurrency: int, check: Check, forge: bool = False
    ) -> tuple[list[Sample], float]:
        bodies = [slash_body(self.workspace.api, text) for text in texts]
        job = self.pool.submit(client_burst, self.workspace.app_url, SIGNING_SECRET, bodies, concurrency, forge)
        answers, wall = job.result(timeout=REQUEST_TIMEOUT_S * (len(bodies) + 2))
        samples = []
        for seconds, status, body in answers:
            why = check(status, body)
            samples.append(Sample(REQUEST_TIMEOUT_S if status == 0 else seconds, ok=not why, detail=why))
        return samples, wall


def in_process_plans(services: Services, n: int, *, concurrency: int = 1) -> tuple[list[Sample], float]:
    """make_request_plan n times, from `concurrency` threads released together (1: one after another)."""
    remaining = [n]
    lock = threading.Lock()
    gate = threading.Barrier(concurrency + 1)
    samples: list[Sample] = []

    def planner() -> None:
        gate.wait(timeout=60)
        for _ in range(n):
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
            t0 = time.perf_counter()
            try:
                plan = make_request_plan(services, RollbackRequest(env="prod", requested_by="bench", dry_run=True))
                sample = Sample(time.perf_counter() - t0, ok=plan.dry_run)
            except Exception as error:
                sample = Sample(time.perf_counter() - t0, ok=False, detail=f"{type(error).__name__}: {error}")
            with lock:
                samples.append(sample)

    return samples, released_together(planner, gate=gate, concurrency=concurrency, name="bench-planner")


# --- the run -----------------------------------------------------------------------------------------


@dataclass
class Outcome:
    phases: dict[str, Phase]
    plans_expected: int
    plans_posted: int
    plans_check: str  # "" when each dry run produced exactly one plan message
    settle_s: float  # c's first request sent → all of c's plans posted
    bot_errors: list[str]


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


def measure(incident: Incident, *, n: int, concurrency: int, errors: ErrorLog) -> Outcome:
    services = build_services(config=load_config(incident.config_path))
    spawn = multiprocessing.get_context("spawn")  # no fork of a process full of threads
    try:
        with (
            SlackWorkspace(services) as workspace,
            ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool,
        ):
            clients = Clients(pool, workspace)
            help_ok = expect(200, "/rollback ENV")
            status_ok = expect(200, "prod-")  # lists the plan the warm-up left waiting
            dry_ok = expect(200, "planning a rollback of prod (dry run)")
            forged_ok = expect(401)

            # Warm-up, not measured: the client process, imports, connections, the first plan (which
            # stays waiting, so `status` has one plan to list, as during an incident).
            say("warming up…")
            clients.burst(["help"] * concurrency, concurrency=concurrency, check=help_ok)
            clients.burst(["prod --dry-run"], concurrency=1, check=dry_ok)
            workspace.settle(timeout=SETTLE_TIMEOUT_S)
            clients.burst(["status"], concurrency=1, check=status_ok)
            clients.burst(["help"], concurrency=1, check=forged_ok, forge=True)
            in_process_plans(services, 1)

            phases: dict[str, Phase] = {}

            def add(key: str, label: str, before: str, result: tuple[list[Sample], float]) -> None:
                phases[key] = Phase(key, label, before, *result)

            def run_burst(key: str, label: str, before: str, text: str, check: Check, forge: bool = False) -> None:
                say(f"{key}. {label}: {n} requests from {concurrency} threads…")
                add(key, label, before, clients.burst([text] * n, concurrency=concurrency, check=check, forge=forge))

            run_burst("a", "`/rollback help`", "parse, render the help", "help", help_ok)
            run_burst("b", "`/rollback status`", "read the store (1 plan waiting)", "status", status_ok)
            workspace.settle(timeout=SETTLE_TIMEOUT_S)

            before = {m.ts for m in workspace.api.messages(INCIDENT)}
            runs_before = {r.id for r in services.store.list_runs(limit=100_000)}
            c_started = time.perf_counter()
            dry = "`/rollback prod --dry-run`"
            run_burst("c", dry, "parse, check the requester; plan after", "prod --dry-run", dry_ok)
            say(f"   waiting for the bot to post {n} plans…")
            workspace.settle(timeout=SETTLE_TIMEOUT_S)
            settle_s = time.perf_counter() - c_started
            with plan_workers_held(workspace):
                run_burst("c′", f"{dry}, plans held", "as c, no planning meanwhile", "prod --dry-run", dry_ok)
            say(f"   waiting for the bot to post {n} more plans…")
            workspace.settle(timeout=SETTLE_TIMEOUT_S)
            posted, plans_check = check_plans(workspace, services, before=before, runs_before=runs_before, n=2 * n)

            say(f"d. make_request_plan in-process: {n} times in a row…")
            add("d", "plan before acking, one at a time", "git fetch, migration scan", in_process_plans(services, n))
            say(f"d′. make_request_plan in-process: {n} times from {concurrency} threads…")
            add(
                "d′",
                f"plan before acking, {concurrency} at once",
                "the same, as a burst would",
                in_process_plans(services, n, concurrency=concurrency),
            )
            run_burst("e", "forged signature → 401", "verify the signature", "help", forged_ok, forge=True)
            workspace.settle(timeout=SETTLE_TIMEOUT_S)
    finally:
        services.close()
    return Outcome(
        phases,
        plans_expected=2 * n,
        plans_posted=posted,
        plans_check=plans_check,
        settle_s=settle_s,
        bot_errors=list(errors.messages),
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


# --- the report -----------------------------------------------------------------------------------------


def machine() -> str:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{usable} CPUs (nproc), Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.system()} {platform.release()} {platform.machine()}, load average {load}"
    )


def fmt(ms: float) -> str:
    return f"{ms:,.1f}" if ms < 100 else f"{ms:,.0f}"


def report(outcome: Outcome, *, n: int, concurrency: int, when: datetime, host: str) -> str:
    p = outcome.phases
    rows = [
        "| | request | before the HTTP response | n | per s | p50 ms | p95 ms | max ms | under 3 s |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for phase in p.values():
        under = f"{phase.under_deadline:.0%}"
        if phase.key.startswith("d"):
            under = f"({under})"  # no ack here: what the ack would have cost
        rows.append(
            f"| {phase.key} | {phase.label} | {phase.before_ack} | {len(phase.samples)} | "
            f"{len(phase.samples) / phase.wall_s:,.0f} | {fmt(phase.pct(50))} | {fmt(phase.pct(95))} | "
            f"{fmt(phase.pct(100))} | {under} |"
        )
    c, c_held, d, d_burst = p["c"], p["c′"], p["d"], p["d′"]
    alone = d.pct(50) / c.pct(95)
    if alone >= 1.2:
        headline = (
            f"Acks for `/rollback prod` are **{alone:.1f}× faster** than planning before acking "
            f"(p50 of d ÷ p95 of c; {d.pct(50) / c.pct(50):.1f}× p50 to p50)"
        )
    else:
        headline = (
            f"Under a burst, acks for `/rollback prod` are **not clearly faster** than one plan made alone: "
            f"p50 of d ÷ p95 of c is {alone:.1f}× ({d.pct(50) / c.pct(50):.1f}× p50 to p50)"
        )
    plans = (
        f"all {outcome.plans_posted} dry runs of c and c′ posted exactly one plan each"
        if not outcome.plans_check
        else f"**PLAN CHECK FAILED**: {outcome.plans_check}"
    )
    if outcome.bot_errors:
        plans += f"; the bot logged {len(outcome.bot_errors)} error(s), first: `{outcome.bot_errors[0]}`"
    paragraph = (
        f"{headline}. Under the same burst, planning before acking (d′) would make acks "
        f"**{d_burst.pct(50) / c.pct(50):.1f}× slower** at p50 ({d_burst.pct(95) / c.pct(95):.1f}× at p95). "
        f"c′ holds the background plans back: {max(0.0, c.pct(50) - c_held.pct(50)):.1f} ms of c's p50 is "
        f"contention with them. Measured {when:%Y-%m-%d} on {host} with "
        f"`{REPRODUCE} --requests {n} --concurrency {concurrency}`: the real app (waitress, 127.0.0.1) on the "
        f"sandbox incident; a, b, c, c′ and e are bursts of {n} signed requests from {concurrency} client "
        f"threads (in a separate process) released together, timed from send to HTTP response; d and d′ call "
        f"`make_request_plan` in-process. {plans[0].upper()}{plans[1:]}; c's plans were all posted "
        f"{outcome.settle_s:.1f} s after its burst began. The sandbox's git remote is a local path, so d is a "
        f"floor: a real remote adds network round trips to d, not to c. Shared machine: compare rows, not runs."
    )
    return "\n".join([*rows, "", paragraph]) + "\n"


def failures_text(outcome: Outcome) -> list[str]:
    lines = []
    for phase in outcome.phases.values():
        bad = phase.failures
        if bad:
            lines.append(f"{phase.key}. {len(bad)} of {len(phase.samples)} wrong answers, e.g. {bad[0].detail}")
        if phase.under_deadline < 1 and not phase.key.startswith("d"):
            lines.append(f"{phase.key}. only {phase.under_deadline:.1%} of acks within {SLACK_DEADLINE_S:.0f} s")
    if outcome.plans_check:
        lines.append(f"plans: {outcome.plans_check}")
    lines.extend(f"the bot logged: {message}" for message in outcome.bot_errors[:5])
    return lines


def replace_between_markers(text: str, section: str) -> str:
    if text.count(START_MARK) != 1 or text.count(END_MARK) != 1 or text.index(START_MARK) > text.index(END_MARK):
        raise ValueError(f"README.md must hold {START_MARK} … {END_MARK} exactly once, in that order")
    head, rest = text.split(START_MARK, 1)
    _, tail = rest.split(END_MARK, 1)
    return f"{head}{START_MARK}\n{section.rstrip()}\n{END_MARK}{tail}"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# --- main ------------------------------------------------------------------------------------------------


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: servers stopped, database dropped


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=300, help="requests per burst (default 300)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads per burst (default 8)")
    parser.add_argument("--write-readme", action="store_true", help="also replace the bench section of README.md")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= 10_000 or not 1 <= args.concurrency <= 64:
        parser.error("--requests must be 1…10000 and --concurrency 1…64")
    if args.write_readme:
        try:
            replace_between_markers(README.read_text(), "")
        except (OSError, ValueError) as error:
            parser.error(f"--write-readme: {error}")  # before a two-minute run, not after it

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
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
            outcome = measure(incident, n=args.requests, concurrency=args.concurrency, errors=errors)
        finally:
            incident.close()
            os.environ.pop(URL_ENV, None)
            say(f"dropped the sandbox database {incident.db_name}")

    markdown = report(outcome, n=args.requests, concurrency=args.concurrency, when=when, host=host)
    print(markdown, end="")
    RESULTS.write_text(f"# Ack latency benchmark\n\n{markdown}")
    say(f"wrote {RESULTS.relative_to(ROOT)}")
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
