"""The ack benchmark's report: the table, the goals (bot p99 ÷ bare Bolt p99), the paragraph, the README markers."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from datetime import datetime

from benchmarks._ack_burst import SLACK_DEADLINE_S, Phase

START_MARK, END_MARK = "<!-- bench:start -->", "<!-- bench:end -->"
REPRODUCE = ".venv/bin/python benchmarks/run.py"
# Issue #8's goal for acks under a burst: p99 at most 1.5 × a bare Bolt app's, and under 150 ms.
GOAL_RATIO = 1.5
GOAL_P99_MS = 150.0
# (bot row, bare row, what the burst is) for each side-by-side comparison
COMPARED = (
    ("c", "c⁰", "`/rollback prod --dry-run` only"),
    ("m", "m⁰", "help, status and prod --dry-run interleaved"),
)


@dataclass
class Outcome:
    phases: dict[str, Phase]
    plans_expected: int
    plans_posted: int
    plans_check: str  # "" when each dry run produced exactly one plan message
    settle_s: float  # c's first request sent → all of c's plans posted
    bot_errors: list[str]
    slack_in_process: bool = False  # the Web API stand-in served from the bot's process (--slack-in-process)


@dataclass(frozen=True)
class Goal:
    bot: Phase
    bare: Phase
    burst: str

    @property
    def ratio(self) -> float:
        return self.bot.pct(99) / self.bare.pct(99)

    @property
    def each_round(self) -> str:
        ratios = [bot / bare for bot, bare in zip(self.bot.per_burst(99), self.bare.per_burst(99), strict=True)]
        return ", ".join(f"{r:.2f}×" for r in ratios)

    @property
    def ratio_met(self) -> bool:
        return self.ratio <= GOAL_RATIO

    @property
    def ceiling_met(self) -> bool:
        return self.bot.pct(99) < GOAL_P99_MS


def goals(outcome: Outcome) -> list[Goal]:
    p = outcome.phases
    return [Goal(p[bot], p[bare], burst) for bot, bare, burst in COMPARED if bot in p and bare in p]


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


def verdict(met: bool) -> str:
    return "PASS" if met else "**MISS**"


def count(phase: Phase) -> str:
    sizes = {len(burst) for burst in phase.bursts}
    return (
        f"{len(phase.bursts)} × {sizes.pop()}" if len(phase.bursts) > 1 and len(sizes) == 1 else str(len(phase.samples))
    )


def report(outcome: Outcome, *, n: int, concurrency: int, rounds: int, when: datetime, host: str) -> str:
    p = outcome.phases
    rows = [
        "| | request | before the HTTP response | n | per s | p50 ms | p95 ms | p99 ms | max ms | under 3 s |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for phase in p.values():
        under = f"{phase.under_deadline:.0%}" if phase.acked else f"({phase.under_deadline:.0%})"
        rows.append(
            f"| {phase.key} | {phase.label} | {phase.before_ack} | {count(phase)} | "
            f"{len(phase.samples) / phase.wall_s:,.0f} | {fmt(phase.pct(50))} | {fmt(phase.pct(95))} | "
            f"{fmt(phase.pct(99))} | {fmt(phase.pct(100))} | {under} |"
        )
    table = [
        f"| burst ({n} requests, {concurrency} at once) | bot p99 ms | bare Bolt p99 ms | bot ÷ bare | "
        f"each round | ≤ {GOAL_RATIO}× | < {GOAL_P99_MS:.0f} ms |",
        "|---|--:|--:|--:|--:|:-:|:-:|",
    ]
    for goal in goals(outcome):
        table.append(
            f"| {goal.bot.key} vs {goal.bare.key}: {goal.burst} | {fmt(goal.bot.pct(99))} | "
            f"{fmt(goal.bare.pct(99))} | **{goal.ratio:.2f}×** | {goal.each_round} | {verdict(goal.ratio_met)} | "
            f"{verdict(goal.ceiling_met)} |"
        )
    text = paragraph(outcome, n=n, concurrency=concurrency, rounds=rounds, when=when, host=host)
    return "\n".join([*table, "", *rows, "", text]) + "\n"


def paragraph(outcome: Outcome, *, n: int, concurrency: int, rounds: int, when: datetime, host: str) -> str:
    p = outcome.phases
    met = [g for g in goals(outcome) if g.ratio_met and g.ceiling_met]
    compared = "; ".join(
        f"{g.bot.key}: {fmt(g.bot.pct(99))} vs {fmt(g.bare.pct(99))} ms ({g.ratio:.2f}×)" for g in goals(outcome)
    )
    if len(met) == len(COMPARED):
        headline = (
            f"Under a burst of {n} signed `/rollback` requests, {concurrency} at once, the bot's ack p99 is within "
            f"{GOAL_RATIO}× of a bare Bolt app's under the same burst and under {GOAL_P99_MS:.0f} ms ({compared})"
        )
    else:
        headline = (
            f"Under a burst of {n} signed `/rollback` requests, {concurrency} at once, the bot's ack p99 **misses** "
            f"the goal (at most {GOAL_RATIO}× a bare Bolt app's, and under {GOAL_P99_MS:.0f} ms): {compared}"
        )
    c, c_held, d, d_burst = p["c"], p["c′"], p["d"], p["d′"]
    plans = (
        f"all {outcome.plans_posted} dry runs of c, c′ and m posted exactly one plan each"
        if not outcome.plans_check
        else f"**PLAN CHECK FAILED**: {outcome.plans_check}"
    )
    if outcome.bot_errors:
        plans += f"; the bot logged {len(outcome.bot_errors)} error(s), first: `{outcome.bot_errors[0]}`"
    stand_in = "in the bot's process" if outcome.slack_in_process else "in a process of its own, as Slack is"
    return (
        f"{headline}. Planning before acking would cost {fmt(d.pct(50))} ms at p50 one at a time (d) and "
        f"{fmt(d_burst.pct(99))} ms at p99 under the burst (d′). c′ holds the background plans back "
        f"(p99 {fmt(c_held.pct(99))} ms against c's {fmt(c.pct(99))}). Measured {when:%Y-%m-%d} on {host} with "
        f"`{REPRODUCE} --requests {n} --concurrency {concurrency} --rounds {rounds}"
        f"{' --slack-in-process' if outcome.slack_in_process else ''}`: the bot (waitress, "
        f"127.0.0.1) on the sandbox incident, posting to the Slack Web API stand-in "
        f"{stand_in}, "
        f"and in its own process a bare Bolt app (same signing secret, one "
        f"`/rollback` listener that only acks, the same waitress setup on another port). Every burst is {n} "
        f"signed requests from {concurrency} client threads (in a separate process) released together, timed from "
        f"send to HTTP response; percentiles are nearest-rank. c and m run {rounds} times, each right after the "
        f"bare app's burst of the same bodies (c⁰, m⁰), and the bot settles before the next round: their figures "
        f"are the median of the rounds'. d and d′ call `make_request_plan` in-process. "
        f"{plans[0].upper()}{plans[1:]}; c's first {n} plans were all posted {outcome.settle_s:.1f} s after its "
        f"burst began. The sandbox's git remote is a local path, so d is a floor. Shared machine: compare rows "
        f"of one run, not runs."
    )


def failures_text(outcome: Outcome) -> list[str]:
    lines = []
    for phase in outcome.phases.values():
        bad = phase.failures
        if bad:
            lines.append(f"{phase.key}. {len(bad)} of {len(phase.samples)} wrong answers, e.g. {bad[0].detail}")
        if phase.under_deadline < 1 and phase.acked:
            lines.append(f"{phase.key}. only {phase.under_deadline:.1%} of acks within {SLACK_DEADLINE_S:.0f} s")
    if outcome.plans_check:
        lines.append(f"plans: {outcome.plans_check}")
    lines.extend(f"the bot logged: {message}" for message in outcome.bot_errors[:5])
    return lines


def goal_lines(outcome: Outcome) -> list[str]:
    """One line per comparison, for stderr: PASS or MISS against each goal."""
    return [
        f"{'PASS' if g.ratio_met and g.ceiling_met else 'MISS'}: {g.bot.key} ({g.burst}) p99 {fmt(g.bot.pct(99))} ms "
        f"= {g.ratio:.2f}× the bare app's {fmt(g.bare.pct(99))} ms (goal ≤ {GOAL_RATIO}× and < {GOAL_P99_MS:.0f} ms)"
        for g in goals(outcome)
    ]


def replace_between_markers(text: str, section: str) -> str:
    if text.count(START_MARK) != 1 or text.count(END_MARK) != 1 or text.index(START_MARK) > text.index(END_MARK):
        raise ValueError(f"README.md must hold {START_MARK} … {END_MARK} exactly once, in that order")
    head, rest = text.split(START_MARK, 1)
    _, tail = rest.split(END_MARK, 1)
    return f"{head}{START_MARK}\n{section.rstrip()}\n{END_MARK}{tail}"
