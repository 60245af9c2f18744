"""The rollback benchmark's report: three Markdown tables, the goals of issue #8 with PASS / MISS, the machine."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from benchmarks._rollback_ways import BOT_WAY, PRESTAGE_WAY, SEED_WAY, SLACK_WAY, WayResult

TOTAL_GOAL = 0.6  # bot ÷ seed, end to end
PRESTAGE_GOAL = 0.2  # prestage until the app is back ÷ seed
DB_STEP_GOAL_S = 1.0  # prestage's database step
DOWNTIME_GOAL_S = 1.0
RSS_GOAL_MB = 150.0
FLAT = 0.10  # peak RSS counts as flat when the largest is within 10% of the smallest


@dataclass
class SizeResult:
    asked: str  # as given: "130MiB"
    size_bytes: int = 0  # pg_database_size of the bad-state template
    customers: int = 0
    generate_s: float = 0.0
    ways: dict[str, WayResult] = field(default_factory=dict)
    setup_error: str = ""  # the data could not be made: no way ran

    @property
    def label(self) -> str:
        return size_text(self.size_bytes) if self.size_bytes else self.asked

    def way(self, name: str) -> WayResult | None:
        return self.ways.get(name)


@dataclass(frozen=True)
class Verdict:
    goal: str
    outcome: str  # PASS | MISS | n/a
    detail: str

    def line(self) -> str:
        return f"- **{self.outcome}** {self.goal}: {self.detail}"


def size_text(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def secs(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.2f}" if x < 10 else f"{x:.1f}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def ratio_text(r: float | None) -> str:
    return "–" if r is None else f"{r:.2f}×"


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def failed_cell(way: WayResult | None) -> str | None:
    """What to show instead of figures for a way that did not run or did not complete."""
    if way is None:
        return "not run"
    if way.error:
        return cell(f"failed: {way.error}")
    return None


def mb(mib: float | None) -> float | None:
    return None if mib is None else mib * 2**20 / 1e6


def time_table(sizes: list[SizeResult]) -> list[str]:
    rows = [
        "| data | seed's way s | its dump + restore s | bot s | bot ÷ seed | database step s | pre-dump step s "
        "| prestage: app back s | ÷ seed | database step s | whole run s | in Slack: app back s | ÷ seed |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for size in sizes:
        if size.setup_error:
            rows.append(f"| {size.asked} | {cell('data not made: ' + size.setup_error)} |" + " |" * 11)
            continue
        seed, bot, pre, slack = size.way(SEED_WAY), size.way(BOT_WAY), size.way(PRESTAGE_WAY), size.way(SLACK_WAY)
        seed_cells = [failed_cell(seed) or secs(seed.total_s if seed else None), "–"]
        if seed is not None and not seed.error:
            seed_cells[1] = f"{secs(seed.parts.get('pg_dump'))} + {secs(seed.parts.get('pg_restore'))}"
        seed_total = seed.total_s if seed is not None and not seed.error else None
        bot_fail = failed_cell(bot)
        if bot_fail or bot is None:
            bot_cells = [bot_fail or "not run", "–", "–", "–"]
        else:
            bot_cells = [
                secs(bot.total_s),
                ratio_text(ratio(bot.total_s, seed_total)),
                secs(bot.db_s),
                secs(bot.pre_dump_s),
            ]
        pre_fail = failed_cell(pre)
        if pre_fail or pre is None:
            pre_cells = [pre_fail or "not run", "–", "–", "–"]
        else:
            pre_cells = [
                secs(pre.healthy_s),
                ratio_text(ratio(pre.healthy_s, seed_total)),
                secs(pre.db_s),
                secs(pre.total_s),
            ]
        slack_fail = failed_cell(slack)
        slack_cells = (
            [slack_fail or "not run", "–"]
            if slack_fail or slack is None
            else [secs(slack.healthy_s), ratio_text(ratio(slack.healthy_s, seed_total))]
        )
        rows.append("| " + " | ".join([size.label, *seed_cells, *bot_cells, *pre_cells, *slack_cells]) + " |")
    return rows


def safety_table(sizes: list[SizeResult]) -> list[str]:
    rows = [
        "| data | live downtime s: seed | bot | prestage | in Slack | failed probes: seed / bot / prestage / in Slack "
        "| bot peak RSS MB | prestage peak RSS MB | in Slack: serving bot's peak RSS MB |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for size in sizes:
        if size.setup_error:
            continue
        ways = [size.way(w) for w in (SEED_WAY, BOT_WAY, PRESTAGE_WAY, SLACK_WAY)]
        down = [w.downtime.text() if w is not None and w.downtime is not None else "–" for w in ways]
        failed = " / ".join(str(w.downtime.failed) if w is not None and w.downtime else "–" for w in ways)
        rss = [f"{mb(w.peak_rss_mib):.0f}" if w is not None and w.peak_rss_mib else "–" for w in ways[1:]]
        rows.append("| " + " | ".join([size.label, *down, failed, *rss]) + " |")
    return rows


def parts_table(sizes: list[SizeResult]) -> list[str]:
    rows = ["| data | way | where the time went, s |", "|---|---|---|"]
    for size in sizes:
        for name in (SEED_WAY, BOT_WAY, PRESTAGE_WAY, SLACK_WAY):
            way = size.way(name)
            if way is None or not way.parts:
                continue
            parts = " · ".join(
                f"{k} {secs(v)}" + (f" ({way.spans[k][0]:.1f}→{way.spans[k][1]:.1f})" if k in way.spans else "")
                for k, v in way.parts.items()
            )
            if way.snapshot_s is not None:
                parts += f" (snapshot at deploy time: {secs(way.snapshot_s)})"
            rows.append(f"| {size.label} | {name} | {cell(parts)} |")
    return rows


Pick = Callable[[WayResult, WayResult | None], float | None]  # (way, the seed's way if it completed) → value


def verdicts(sizes: list[SizeResult]) -> list[Verdict]:
    measured = [s for s in sizes if not s.setup_error]
    found: list[Verdict] = []

    def per_size(way: str, pick: Pick) -> list[tuple[str, float | None]]:
        out: list[tuple[str, float | None]] = []
        for size in measured:
            mine, seed = size.way(way), size.way(SEED_WAY)
            if mine is not None:
                out.append((size.label, None if mine.error else pick(mine, seed if seed and not seed.error else None)))
        return out

    def judge(goal: str, values: list[tuple[str, float | None]], limit: float, unit: str) -> None:
        if not values:
            found.append(Verdict(goal, "n/a", "not measured"))
            return
        shown = ", ".join(f"{label}: {'failed' if v is None else f'{v:.2f}{unit}'}" for label, v in values)
        ok = all(v is not None and v <= limit for _, v in values)
        found.append(Verdict(goal, "PASS" if ok else "MISS", shown))

    def vs_seed(attr: str) -> Pick:
        return lambda w, seed: ratio(getattr(w, attr), seed.total_s if seed else None)

    def downtime(w: WayResult, _seed: WayResult | None) -> float | None:
        return w.downtime.bound_s if w.downtime else None

    judge(
        f"bot's whole rollback ≤ {TOTAL_GOAL} × the seed's way", per_size(BOT_WAY, vs_seed("total_s")), TOTAL_GOAL, "×"
    )
    for way in (BOT_WAY, PRESTAGE_WAY, SLACK_WAY):
        judge(
            f"{way}: live-database downtime ≤ {DOWNTIME_GOAL_S:.0f} s (upper bound)",
            per_size(way, downtime),
            DOWNTIME_GOAL_S,
            " s",
        )
    judge(
        f"prestage: database step ≤ {DB_STEP_GOAL_S:.0f} s",
        per_size(PRESTAGE_WAY, lambda w, _s: w.db_s),
        DB_STEP_GOAL_S,
        " s",
    )
    for way, how in ((PRESTAGE_WAY, "from the terminal, the process's start-up included"), (SLACK_WAY, _SLACK)):
        judge(
            f"{way} ({how}): whole rollback until the app is back ≤ {PRESTAGE_GOAL} × the seed's way",
            per_size(way, vs_seed("healthy_s")),
            PRESTAGE_GOAL,
            "×",
        )
    prestaged = [(f"{s.label} {w.way}", w) for s in measured for w in s.ways.values() if w.way in _PRESTAGED]
    goal = "prestage: pre-rollback dump taken from the kept database after the swap, and verified"
    if prestaged:
        shown = ", ".join(f"{label}: {_dump_state(w)}" for label, w in prestaged)
        good = all(w.pre_dump_verified and not w.error and _after_swap(w) for _, w in prestaged)
        found.append(Verdict(goal, "PASS" if good else "MISS", shown))
    else:
        found.append(Verdict(goal, "n/a", "not measured"))
    for way in (BOT_WAY, PRESTAGE_WAY, SLACK_WAY):
        values = per_size(way, lambda w, _s: mb(w.peak_rss_mib))
        judge(f"{way}: peak RSS ≤ {RSS_GOAL_MB:.0f} MB", values, RSS_GOAL_MB, " MB")
        peaks = [v for _, v in values if v is not None]
        if len(peaks) >= 2 and len(peaks) == len(values):
            flat = max(peaks) <= min(peaks) * (1 + FLAT)
            found.append(
                Verdict(
                    f"{way}: peak RSS flat across sizes (largest within {FLAT:.0%} of smallest)",
                    "PASS" if flat else "MISS",
                    f"{min(peaks):.0f} to {max(peaks):.0f} MB",
                )
            )
    return found


_SLACK = "in Slack, run by the resident bot, from the approver's click"
_PRESTAGED = (PRESTAGE_WAY, SLACK_WAY)


def _after_swap(way: WayResult) -> bool:
    return "pre-rollback dump taken after the swap" in way.notes


def _dump_state(way: WayResult) -> str:
    if way.error:
        return "failed"
    state = "verified" if way.pre_dump_verified else "NOT verified"
    when = [n.removeprefix("pre-rollback dump ") for n in way.notes if n.startswith("pre-rollback dump taken")]
    return f"{state}, {when[0]}" if when else state


def machine(pg_version: str) -> str:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{usable} CPUs (nproc), load average {load} at the start, Python {platform.python_version()}, "
        f"PostgreSQL {pg_version}, {platform.system()} {platform.release()} {platform.machine()}"
    )


def report(sizes: list[SizeResult], *, when: datetime, host: str, command: str, failures: list[str]) -> str:
    lines = ["**Rollback time** (seconds, wall clock; ratios are the bot's way ÷ the seed's way on the same data)", ""]
    lines += time_table(sizes)
    lines += [
        "",
        "**Live database and memory** (downtime: seen failing – at most; peak RSS of the bot's own process)",
        "",
    ]
    lines += safety_table(sizes)
    lines += [
        "",
        "**Where the time went** (s; the bot's steps with (start→end) from the command's start, or in Slack from "
        "the approver's click)",
        "",
    ]
    lines += parts_table(sizes)
    lines += ["", "**Goals (issue #8)**", ""]
    lines += [v.line() for v in verdicts(sizes)]
    notes = sorted({f"{w.way}: {n}" for s in sizes for w in s.ways.values() for n in w.notes if "dump taken" not in n})
    paragraph = (
        f"Measured {when:%Y-%m-%d %H:%M} UTC on {host}, with `{command}`. Each size is a generated shop database "
        "(customers, products, orders, order_items, events with jsonb payloads; primary keys, foreign keys and "
        "secondary indexes), then a bad deploy (a column, a table, 10% of orders repriced, a migration row). "
        "Every way starts from a copy of the same bad-state template and must leave the good state in the live "
        "database and the good release's files on the remote branch. The seed's way is rollback.sh's sequence "
        "(git revert + push, `pg_dump -Fc`, `pg_restore --clean --if-exists` onto the live database, one health "
        "request); the bot's ways are `rollback-bot run prod --force` as a subprocess, after `rollback-bot snapshot "
        'prod` at deploy time (not timed), with per-step times from its store; "in Slack" is the prestage way asked '
        "for with a signed `/rollback prod` and approved with a Confirm click, run by `rollback-bot serve` (already "
        "up, as during an incident), timed from the click. A probe opens a fresh connection "
        "to the live database every 50 ms and needs the app's tables and their first rows. Shared 2-core "
        "machine: compare ways within a size, not runs."
    )
    lines += ["", paragraph]
    if notes:
        lines += ["", "Notes: " + "; ".join(notes) + "."]
    if failures:
        lines += ["", "**CHECKS FAILED** (exit status 1):", ""] + [f"- {cell(f)}" for f in failures]
    return "\n".join(lines) + "\n"


def failures_of(sizes: list[SizeResult]) -> list[str]:
    out = []
    for size in sizes:
        if size.setup_error:
            out.append(f"{size.asked}: the data could not be made: {size.setup_error}")
        for way in size.ways.values():
            problems = way.problems or ([f"did not complete: {way.error}"] if way.error else [])
            out += [f"{size.label}, {way.way}: {p}" for p in problems]
    return out
