"""How long does a rollback take, end to end, against the seed's script? A benchmark, not a test.

For each size (default about 130 MiB, 600 MiB and 1.5 GiB) it generates a shop database, applies a
bad deploy to a copy, and rolls the copy back three ways, one after another, on identical data:

  seed      the seed's rollback.sh: git revert + push, `pg_dump -Fc` pre-rollback backup of the live
            database, `pg_restore --clean --if-exists` of the restore point onto it, a health request
  bot       `rollback-bot run prod --force` (restore point from `rollback-bot snapshot prod`, taken
            before the bad deploy and not timed)
  prestage  the same with `prestage = true`: the snapshot stages a standby, the rollback swaps it in

While each way runs, a probe opens a fresh connection to the live database every 50 ms (downtime),
and /proc/<pid>/status gives the bot's peak resident set. After each way the live database must hold
the good state and the remote branch the good release's files; if not, or if the bot's run did not
succeed, the exit status is 1 (a missed speed goal is reported, not an error). See benchmarks/README.md.

    .venv/bin/python benchmarks/rollback.py [--sizes 130MiB,600MiB,1.5GiB] [--ways seed,bot,prestage]
                                            [--write-readme]
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere, installed or not
    sys.path.insert(0, str(ROOT))

from benchmarks import _rollback_data as data  # noqa: E402
from benchmarks._rollback_report import SizeResult, failures_of, machine, report, secs  # noqa: E402
from benchmarks._rollback_slack import slack_way  # noqa: E402
from benchmarks._rollback_ways import (  # noqa: E402
    PRESTAGE_WAY,
    SEED_WAY,
    SLACK_WAY,
    WAYS,
    Stage,
    WayResult,
    bot_way,
    leftovers,
    seed_way,
)
from sandbox.health_server import HealthServer  # noqa: E402
from sandbox.repo import build_sandbox_repo, git  # noqa: E402

README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "rollback-results.md"
START_MARK, END_MARK = "<!-- bench-rollback:start -->", "<!-- bench-rollback:end -->"
REPRODUCE = ".venv/bin/python benchmarks/rollback.py"
DEFAULT_SIZES = "130MiB,600MiB,1.5GiB"
MIN_SIZE = 16 * 2**20  # an empty database is already 7.5 MiB
MAX_SIZE = 64 * 2**30
_UNITS = {"k": 2**10, "m": 2**20, "g": 2**30}


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def parse_size(text: str) -> int:
    """`130MiB`, `1.5GiB`, `600M`, `30 MiB` → bytes (binary units; MB and GB are read as MiB and GiB)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG])(?:i?[bB])?\s*", text)
    if not match:
        raise ValueError(f"{text!r} is not a size like 130MiB or 1.5GiB")
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def replace_between_markers(text: str, section: str) -> str:
    if text.count(START_MARK) != 1 or text.count(END_MARK) != 1 or text.index(START_MARK) > text.index(END_MARK):
        raise ValueError(f"README.md must hold {START_MARK} … {END_MARK} exactly once, in that order")
    head, rest = text.split(START_MARK, 1)
    _, tail = rest.split(END_MARK, 1)
    return f"{head}{START_MARK}\n{section.rstrip()}\n{END_MARK}{tail}"


# --- one size ---------------------------------------------------------------------------------------------


def make_stage(index: int, asked: str, target: int, *, run_prefix: str, tmp: Path, health_url: str) -> Stage:
    prefix = f"{run_prefix}s{index}_"
    root = tmp / f"size-{index}"
    tpl_good, tpl_bad = prefix + "good", prefix + "bad"
    began = time.perf_counter()
    say(f"[{asked}] generating the good state in {tpl_good}…")
    customers = data.generate(tpl_good, target, say)
    say(f"[{asked}] the bad deploy, in a copy: {tpl_bad}…")
    data.create_from(tpl_bad, tpl_good)
    data.deploy_bad(tpl_bad)
    good = data.fingerprint(tpl_good)
    if not data.fingerprint(tpl_bad).differences(good):
        raise RuntimeError("the bad deploy did not change what the correctness check looks at")
    repo = build_sandbox_repo(root / "git")
    seed_clone = root / "seed-clone"
    git(root, "clone", "--quiet", "--origin", "origin", repo.remote_url, str(seed_clone))
    for key, value in (("user.name", "On-call"), ("user.email", "oncall@bench.invalid"), ("commit.gpgsign", "false")):
        git(seed_clone, "config", key, value)
    good_dump = root / "restore-point.dump"  # the seed's restore point, taken at deploy time: not timed
    say(f"[{asked}] the seed's restore point: pg_dump -Fc of the good state…")
    subprocess.run(
        ["pg_dump", "-Fc", f"--file={good_dump}", f"--dbname={data.db_url(tpl_good)}"],
        check=True,
        capture_output=True,
        timeout=3600,
    )
    return Stage(
        label=asked,
        root=root,
        prefix=prefix,
        tpl_good=tpl_good,
        tpl_bad=tpl_bad,
        live=prefix + "live",
        repo=repo,
        seed_clone=seed_clone,
        health_url=health_url,
        good=good,
        good_dump=good_dump,
        size_bytes=data.database_size(tpl_bad),
        customers=customers,
        generate_s=time.perf_counter() - began,
    )


def run_way(stage: Stage, way: str, *, logs: Path, keep: bool) -> WayResult:
    before = set(data.names_like(stage.prefix, anywhere=True)) - {stage.live}
    result: WayResult | None = None
    try:
        try:
            if way == SEED_WAY:
                result = seed_way(stage, say)
            elif way == SLACK_WAY:
                result = slack_way(stage, say)
            else:
                result = bot_way(stage, say, prestage=way == PRESTAGE_WAY)
        except Exception as exc:  # an unexpected state (or a bug here): this way's failure; the rest go on
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            result = WayResult(way).fail(f"{type(exc).__name__}: {first}"[:240])
            result.problems.append(f"the benchmark could not complete this way: {result.error}")
        return result
    finally:
        if result is not None and (keep or not result.ok):
            kept = keep_logs(stage.root / way, logs / f"{stage.label}-{way}")
            if not result.ok:
                result.problems.append(f"its logs, config and store are kept in {kept}")
        for name in leftovers(stage, before):  # the live database, and what the bot kept or staged beside it
            data.drop(name)
        shutil.rmtree(stage.root / way, ignore_errors=True)


def keep_logs(work: Path, dest: Path) -> Path:
    """Copy a way's logs, config and store (never its dumps) where they outlive the run."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in work.rglob("*"):
        if path.is_file() and (path.suffix in (".log", ".toml") or path.parent.name == "state"):
            shutil.copy2(path, dest / path.name)
    return dest


def summary(way: WayResult) -> str:
    if way.error:
        return f"   {way.way}: FAILED: {way.error}"
    down = way.downtime.text() if way.downtime else "–"
    rss = f", peak RSS {way.peak_rss_mib:.0f} MiB" if way.peak_rss_mib else ""
    back = f", app back at {secs(way.healthy_s)} s" if way.way in (PRESTAGE_WAY, SLACK_WAY) else ""
    return (
        f"   {way.way}: {secs(way.total_s)} s{back} (database {secs(way.db_s)} s, pre-dump {secs(way.pre_dump_s)} s), "
        f"downtime {down} s{rss}" + ("" if way.ok else f"; CHECK FAILED: {'; '.join(way.problems)}")
    )


def measure_size(
    index: int,
    asked: str,
    target: int,
    ways: Sequence[str],
    *,
    run_prefix: str,
    tmp: Path,
    health_url: str,
    logs: Path,
    keep: bool,
) -> SizeResult:
    result = SizeResult(asked)
    prefix = f"{run_prefix}s{index}_"
    try:
        try:
            stage = make_stage(index, asked, target, run_prefix=run_prefix, tmp=tmp, health_url=health_url)
        except Exception as exc:
            text = exc.stderr.decode(errors="replace") if isinstance(exc, subprocess.CalledProcessError) else str(exc)
            result.setup_error = (text.strip().splitlines() or [type(exc).__name__])[0][:240]
            say(f"[{asked}] FAILED to make the data: {result.setup_error}")
            return result
        result.size_bytes, result.customers, result.generate_s = stage.size_bytes, stage.customers, stage.generate_s
        say(
            f"[{asked}] {result.label}, {stage.customers:,} customers, made in {stage.generate_s:.0f} s; "
            f"ways: {', '.join(ways)}"
        )
        for way in ways:
            result.ways[way] = run_way(stage, way, logs=logs, keep=keep)
            say(summary(result.ways[way]))
        return result
    finally:
        dropped = data.drop_prefix(prefix)
        shutil.rmtree(tmp / f"size-{index}", ignore_errors=True)
        if dropped:
            say(f"[{asked}] dropped {len(dropped)} database(s): {', '.join(sorted(dropped))}")


# --- main ------------------------------------------------------------------------------------------------


def compile_the_bot() -> None:
    """Byte-compile the bot's own modules first, as pip does when it installs the wheel: an editable
    checkout under PYTHONDONTWRITEBYTECODE=1 would compile them from source at every CLI start."""
    for package in ("bot", "handlers"):
        compileall.compile_dir(ROOT / package, quiet=1)


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through the finally blocks: children stopped, databases dropped


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--sizes", default=DEFAULT_SIZES, help=f"database sizes, comma-separated (default {DEFAULT_SIZES})"
    )
    parser.add_argument(
        "--ways", default=",".join(WAYS), help=f"which ways, comma-separated (default {','.join(WAYS)})"
    )
    parser.add_argument("--write-readme", action="store_true", help="also replace the rollback section of README.md")
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep every way's logs, config and store (never dumps) under /tmp"
    )
    args = parser.parse_args(argv)
    try:
        sizes = [(text.strip(), parse_size(text)) for text in args.sizes.split(",") if text.strip()]
    except ValueError as error:
        parser.error(f"--sizes: {error}")
    if not sizes or any(not MIN_SIZE <= n <= MAX_SIZE for _, n in sizes):
        parser.error("--sizes: each size must be between 16MiB and 64GiB")
    ways = [w.strip() for w in args.ways.split(",") if w.strip()]
    if not ways or any(w not in WAYS for w in ways) or len(set(ways)) != len(ways):
        parser.error(f"--ways: a comma-separated choice of {', '.join(WAYS)}")
    if SEED_WAY not in ways:
        say("note: without the seed's way there is nothing to compare the bot's times with")
    if args.write_readme:
        try:
            replace_between_markers(README.read_text(), "")
        except (OSError, ValueError) as error:
            parser.error(f"--write-readme: {error}")  # before a long run, not after it
    try:
        pg_version = data.server_version()
    except Exception as error:
        parser.error(f"PostgreSQL at {data.ADMIN_URL.rsplit('@', 1)[-1]} does not answer: {error}")

    signal.signal(signal.SIGTERM, _terminate)
    compile_the_bot()
    when, host = datetime.now(UTC), machine(pg_version)
    stale = data.drop_stale()
    if stale:
        say(f"dropped {len(stale)} database(s) left by earlier runs that were killed: {', '.join(stale)}")
    run_prefix = f"{data.PREFIX}{os.getpid()}_"
    results: list[SizeResult] = []
    logs = Path(tempfile.gettempdir()) / f"rollback-bench-logs-{os.getpid()}"
    began = time.perf_counter()
    health = HealthServer()  # the app's health endpoint: healthy throughout
    health_url = health.start()
    try:
        with tempfile.TemporaryDirectory(prefix="rollback-bench-") as tmp:
            for index, (asked, target) in enumerate(sizes, start=1):
                results.append(
                    measure_size(
                        index,
                        asked,
                        target,
                        ways,
                        run_prefix=run_prefix,
                        tmp=Path(tmp),
                        health_url=health_url,
                        logs=logs,
                        keep=args.keep_logs,
                    )
                )
    except KeyboardInterrupt:
        say("interrupted: cleaned up")
        return 130
    finally:
        health.stop()
        dropped = data.drop_prefix(run_prefix)
        if dropped:
            say(f"dropped {len(dropped)} database(s) left over: {', '.join(dropped)}")

    command = REPRODUCE + ("" if args.sizes == DEFAULT_SIZES else f" --sizes {args.sizes}")
    command += "" if ways == list(WAYS) else f" --ways {','.join(ways)}"
    failures = failures_of(results)
    markdown = report(results, when=when, host=host, command=command, failures=failures)
    print(markdown, end="")
    RESULTS.write_text(f"# Rollback time benchmark\n\n{markdown}")
    say(f"wrote {shown(RESULTS)} ({time.perf_counter() - began:.0f} s in all)")
    if logs.exists():
        say(f"logs, configs and stores kept in {logs}")
    if args.write_readme and failures:
        say(f"not updating {shown(README)}: this run failed its checks (see below)")
    elif args.write_readme:
        README.write_text(replace_between_markers(README.read_text(), markdown))
        say(f"updated the rollback section of {shown(README)}")
    for line in failures:
        say(f"FAILED: {line}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
