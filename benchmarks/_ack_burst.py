"""Slack's side of the ack benchmark: signed `/rollback` requests sent in bursts, and what is timed.

A burst is N request bodies sent from C client threads released together by a barrier, each thread
with its own `requests.Session`, in a separate process (so the clients' Python never competes for the
server's GIL; Slack's servers are not in the app's process either). Each request is signed as it is
sent, as Slack does. Also here: the in-process planning rows (d, d′) and the nearest-rank percentiles.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import urlencode

import requests

from bot.engine.lifecycle import make_request_plan
from bot.engine.plan import RollbackRequest
from bot.services import Services
from sandbox.slack_api import SlackApiStandIn
from sandbox.slack_harness import INCIDENT, SIGNING_SECRET
from sandbox.slack_signing import FORM, compute_signature

SLACK_DEADLINE_S = 3.0
REQUEST_TIMEOUT_S = 30.0
USER = "U0ALICE"  # on call; may request a rollback of prod


@dataclass(frozen=True)
class Sample:
    seconds: float
    ok: bool  # the expected status and answer
    detail: str = ""


def nearest_rank(samples: Sequence[Sample], q: float) -> float:
    """The ⌈q/100 × N⌉-th smallest latency, in ms."""
    values = sorted(s.seconds * 1000 for s in samples)
    return values[max(0, math.ceil(q / 100 * len(values)) - 1)] if values else float("nan")


@dataclass(frozen=True)
class Phase:
    """A row: one burst, or the same burst run several times (`bursts`), each timed on its own."""

    key: str
    label: str
    before_ack: str
    bursts: list[list[Sample]]
    wall_s: float  # all its bursts together
    acked: bool = True  # False for d and d′: no ack, what an ack would have cost

    @property
    def samples(self) -> list[Sample]:
        return [sample for burst in self.bursts for sample in burst]

    @property
    def failures(self) -> list[Sample]:
        return [s for s in self.samples if not s.ok]

    def pct(self, q: float) -> float:
        """Nearest-rank percentile in ms; of a row with several bursts, the median of each burst's."""
        return statistics.median(self.per_burst(q)) if self.bursts else float("nan")

    def per_burst(self, q: float) -> list[float]:
        return [nearest_rank(burst, q) for burst in self.bursts]

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


# (index of the body, seconds from send to response, HTTP status (0: no response), body or error)
Answer = tuple[int, float, int, str]


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
    """Send every body once, in order, from `concurrency` threads released together (runs in the client process)."""
    next_index = [0]
    lock = threading.Lock()
    gate = threading.Barrier(concurrency + 1)
    answers: list[Answer] = []

    def send(session: requests.Session, index: int) -> Answer:
        body = bodies[index]
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
            return index, time.perf_counter() - started, 0, f"{type(error).__name__}: {error}"
        return index, time.perf_counter() - started, response.status_code, response.text

    def client() -> None:
        with requests.Session() as session:
            session.trust_env = False  # 127.0.0.1 only: no proxy from the environment
            gate.wait(timeout=60)
            while True:
                with lock:
                    if next_index[0] >= len(bodies):
                        return
                    index = next_index[0]
                    next_index[0] += 1
                answer = send(session, index)
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
    """Slack's side: a separate process that sends bursts of signed requests to an app."""

    def __init__(self, pool: ProcessPoolExecutor, api: SlackApiStandIn) -> None:
        self.pool = pool
        self.api = api

    def burst(
        self,
        url: str,
        texts: Sequence[str],
        *,
        concurrency: int,
        checks: Mapping[str, Check],
        forge: bool = False,
    ) -> tuple[list[Sample], float]:
        """Send `/rollback TEXT` for each of `texts` (in that order); each answer is checked by its text's check."""
        bodies = [slash_body(self.api, text) for text in texts]
        job = self.pool.submit(client_burst, url, SIGNING_SECRET, bodies, concurrency, forge)
        answers, wall = job.result(timeout=REQUEST_TIMEOUT_S * (len(bodies) + 2))
        samples = []
        for index, seconds, status, body in answers:
            why = checks[texts[index]](status, body)
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
