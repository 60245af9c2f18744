"""The ways a rollback is done, each timed on the same data: the seed's script, the bot, the bot with prestage.

Each way starts from a copy of the size's bad-state template under the live database's name, with the
remote's branch at the bad release; each ends with the live database checked against the good state
and everything it made beside the live one dropped.

    seed      what rollback.sh does, as its README describes it: git revert + push, `pg_dump -Fc` of
              the live database (the pre-rollback backup), `pg_restore --clean --if-exists` of the
              restore point onto the live database, one health request.
    bot       `rollback-bot snapshot prod` while the data is good (deploy time, not timed), the bad
              deploy, then `rollback-bot run prod --force`, timed as a subprocess.
    prestage  the same with `prestage = true`: the snapshot also stages the restore point in a standby
              database, and the rollback's database step is the swap.
    slack     prestage, asked for and approved in Slack, run by the resident bot (_rollback_slack.py).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import _rollback_data as data
from benchmarks._rollback_probe import Downtime, DowntimeProbe, PeakRss
from bot.store import StepRecord, Store
from sandbox.repo import SandboxRepo, git

BIN = Path(sys.executable).with_name("rollback-bot")
URL_ENV = "ROLLBACK_BENCH_DATABASE_URL"
TOOL_TIMEOUT_S = 3600.0
SEED_WAY, BOT_WAY, PRESTAGE_WAY, SLACK_WAY = "seed", "bot", "prestage", "slack"  # slack: _rollback_slack.py
WAYS = (SEED_WAY, BOT_WAY, PRESTAGE_WAY, SLACK_WAY)

Say = Callable[[str], None]


@dataclass
class Stage:
    """What one size's ways share: the templates, the git remote, the health endpoint, the good state."""

    label: str  # as asked: "130MiB"
    root: Path
    prefix: str  # every database of this run starts with it
    tpl_good: str
    tpl_bad: str
    live: str
    repo: SandboxRepo
    seed_clone: Path
    health_url: str
    good: data.Fingerprint
    good_dump: Path  # the seed's restore point: `pg_dump -Fc` of the good state
    size_bytes: int = 0
    customers: int = 0
    generate_s: float = 0.0

    @property
    def live_url(self) -> str:
        return data.db_url(self.live)


@dataclass
class WayResult:
    way: str
    ok: bool = False
    error: str = ""  # the first line of what failed, when the way did not complete
    total_s: float | None = None
    db_s: float | None = None  # seed: dump + restore; bot: the database step
    pre_dump_s: float | None = None
    healthy_s: float | None = None  # from the start until the health step finished (the app is back)
    snapshot_s: float | None = None  # deploy time, not part of the rollback
    parts: dict[str, float] = field(default_factory=dict)  # where the time went, in order
    spans: dict[str, tuple[float, float]] = field(default_factory=dict)  # bot steps: start, end from the start
    downtime: Downtime | None = None
    peak_rss_mib: float | None = None
    pre_dump_verified: bool | None = None  # the bot's pre-rollback dump: journaled ok, file matches its sha256
    problems: list[str] = field(default_factory=list)  # correctness failures
    notes: list[str] = field(default_factory=list)

    def fail(self, error: str) -> WayResult:
        self.ok = False
        self.error = error
        return self


# --- subprocesses ---------------------------------------------------------------------------------------


@contextmanager
def started(args: list[str], *, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child in a session of its own (a Ctrl-C reaches only us), ended with its children if we stop first."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)  # its group: the pg_dump / pg_restore it started too
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    with suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()


def run_tool(args: list[str], *, env: dict[str, str], log: Path) -> tuple[int, float]:
    """Run a command to its end; return its exit status and wall time."""
    began = time.perf_counter()
    with started(args, env=env, log=log) as proc:
        try:
            status = proc.wait(timeout=TOOL_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with log.open("a") as out:
                out.write(f"\nerror: still running after {TOOL_TIMEOUT_S:.0f} s: stopped\n")
            status = -1
    return status, time.perf_counter() - began


def first_error_line(log: Path) -> str:
    """The line that says what went wrong (joined with the next one when it ends with a colon)."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    markers = ("error", "failed", "❌", "refused", "cannot", "fatal")
    for i, line in enumerate(lines):
        if any(m in line.lower() for m in markers):
            text = f"{line} {lines[i + 1].lstrip('- ')}" if line.endswith(":") and i + 1 < len(lines) else line
            return text[:240]
    return (lines[-1] if lines else "no output")[:240]


def tool_env(live_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env[URL_ENV] = live_url
    env["DATABASE_URL"] = live_url  # the seed script's variable
    return env


# --- the stage each way starts from ----------------------------------------------------------------------


def set_remote(stage: Stage, sha: str) -> None:
    repo = stage.repo
    git(repo.clone, "push", "--quiet", "--force", repo.remote_name, f"{sha}:refs/heads/{repo.branch}")


def remote_tree(stage: Stage) -> str:
    return git(stage.repo.bare, "rev-parse", f"refs/heads/{stage.repo.branch}^{{tree}}")


def good_tree(stage: Stage) -> str:
    return git(stage.repo.bare, "rev-parse", f"{stage.repo.good}^{{tree}}")


def fresh_live(stage: Stage, template: str) -> None:
    data.drop(stage.live)
    data.create_from(stage.live, template)


def leftovers(stage: Stage, before: set[str]) -> list[str]:
    """Databases this run's way made (the bot's kept, shadow and standby databases included)."""
    return sorted(set(data.names_like(stage.prefix, anywhere=True)) - before)


def check_live(stage: Stage, result: WayResult) -> None:
    try:
        now = data.fingerprint(stage.live)
    except Exception as exc:  # the live database is gone or broken: that is the finding
        result.problems.append(f"the live database cannot be read: {str(exc).splitlines()[0]}")
        return
    result.problems += [f"live database: {p}" for p in now.differences(stage.good)]
    extra = now.extra_tables(stage.good)
    if extra:
        result.notes.append(f"left in the live database by the bad deploy: table {', '.join(extra)}")
    if remote_tree(stage) != good_tree(stage):
        result.problems.append("the remote branch does not hold the good release's files")


# --- the seed's way --------------------------------------------------------------------------------------


def seed_way(stage: Stage, say: Say) -> WayResult:
    result = WayResult(SEED_WAY)
    work = stage.root / SEED_WAY
    work.mkdir(parents=True, exist_ok=True)
    env = tool_env(stage.live_url)
    fresh_live(stage, stage.tpl_bad)
    set_remote(stage, stage.repo.bad)
    data.checkpoint()
    repo = stage.repo
    clone = str(stage.seed_clone)
    code_steps = [
        ["git", "-C", clone, "fetch", "--quiet", "origin"],
        ["git", "-C", clone, "checkout", "--quiet", "-B", repo.branch, f"origin/{repo.branch}"],
        ["git", "-C", clone, "revert", "--no-edit", "--no-commit", "-m", "1", repo.bad],  # the merge on top
        ["git", "-C", clone, "revert", "--no-edit", "--no-commit", repo.bad_release],  # the bad release
        ["git", "-C", clone, "commit", "--quiet", "-m", f"Rollback to {repo.good[:7]}"],
        ["git", "-C", clone, "push", "--quiet", "origin", f"HEAD:refs/heads/{repo.branch}"],
    ]
    pre_dump = work / f"pre-rollback-{datetime.now(UTC):%Y%m%d%H%M}.dump"
    say(f"   seed's way: git revert + push, pg_dump -Fc, pg_restore --clean --if-exists, health on {stage.live}")
    with DowntimeProbe(stage.live_url) as probe:
        began = time.perf_counter()
        try:
            checked = time.perf_counter()
            missing = [tool for tool in ("git", "pg_dump", "pg_restore", "curl") if shutil.which(tool) is None]
            if missing or not env.get("DATABASE_URL"):
                return result.fail(f"the seed's safety checks failed: missing {', '.join(missing) or 'DATABASE_URL'}")
            result.parts["checks"] = time.perf_counter() - checked
            code_s = 0.0
            for i, args in enumerate(code_steps):
                status, took = run_tool(args, env=env, log=work / f"git-{i}.log")
                code_s += took
                if status:
                    return result.fail(f"git {args[3]}: {first_error_line(work / f'git-{i}.log')}")
            result.parts["code"] = code_s
            dump = ["pg_dump", "-Fc", f"--file={pre_dump}", f"--dbname={stage.live_url}"]
            status, result.parts["pg_dump"] = run_tool(dump, env=env, log=work / "pg_dump.log")
            if status:
                return result.fail(f"pg_dump: {first_error_line(work / 'pg_dump.log')}")
            restore = ["pg_restore", "--clean", "--if-exists", f"--dbname={stage.live_url}", str(stage.good_dump)]
            status, result.parts["pg_restore"] = run_tool(restore, env=env, log=work / "pg_restore.log")
            if status:
                return result.fail(f"pg_restore: {first_error_line(work / 'pg_restore.log')}")
            health = ["curl", "--fail", "--silent", "--show-error", "--max-time", "5", stage.health_url]
            status, result.parts["health"] = run_tool(health, env=env, log=work / "health.log")
            if status:
                return result.fail(f"health: {first_error_line(work / 'health.log')}")
            result.total_s = time.perf_counter() - began
            result.healthy_s = result.total_s
        finally:
            result.downtime = probe.result()
    result.db_s = result.parts["pg_dump"] + result.parts["pg_restore"]
    result.pre_dump_s = result.parts["pg_dump"]
    check_live(stage, result)
    result.ok = not result.problems
    return result


# --- the bot's way ---------------------------------------------------------------------------------------


def config_text(stage: Stage, work: Path, *, prestage: bool) -> str:
    repo = stage.repo
    return f"""# rollback-bot's configuration for the rollback benchmark ({"prestage" if prestage else "bot"})
[bot]
store = "sqlite:///{work / "state" / "rollback-bot.db"}"
backup_dir = "{work / "backups"}"
work_dir = "{work / "work"}"

[environments.prod]
repo = "{repo.clone}"
remote = "{repo.remote_name}"
branch = "{repo.branch}"
code = "revert"
approvers = ["S0ONCALL"]

[environments.prod.database]
engine = "postgres"
url_env = "{URL_ENV}"
restore = "dump"
{"prestage = true" if prestage else ""}

[[environments.prod.health]]
url = "{stage.health_url}"
expect_status = 200
"""


def deploy_then_break(stage: Stage, result: WayResult, say: Say, *, prestage: bool) -> tuple[Path, Path] | None:
    """The good release goes live and the pipeline snapshots it (not timed), then the bad deploy lands.
    → (the way's work folder, its rollback.toml); None when the snapshot failed (`result` says why)."""
    work = stage.root / result.way
    work.mkdir(parents=True, exist_ok=True)
    config = work / "rollback.toml"
    config.write_text(config_text(stage, work, prestage=prestage))
    fresh_live(stage, stage.tpl_good)
    set_remote(stage, stage.repo.good)
    say(f"   {result.way}: rollback-bot snapshot prod (deploy time, not timed)…")
    status, result.snapshot_s = run_tool(
        [str(BIN), "snapshot", "prod", "--config", str(config)], env=tool_env(stage.live_url), log=work / "snapshot.log"
    )
    if status:
        result.fail(f"snapshot: {first_error_line(work / 'snapshot.log')}".replace(str(config), config.name))
        return None
    # The bad deploy: the same bad-state data as every other way, under the live name.
    fresh_live(stage, stage.tpl_bad)
    set_remote(stage, stage.repo.bad)
    data.checkpoint()
    return work, config


def bot_way(stage: Stage, say: Say, *, prestage: bool) -> WayResult:
    way = PRESTAGE_WAY if prestage else BOT_WAY
    result = WayResult(way)
    staged = deploy_then_break(stage, result, say, prestage=prestage)
    if staged is None:
        return result
    work, config = staged
    env = tool_env(stage.live_url)
    say(f"   {way}: rollback-bot run prod --force…")
    log = work / "run.log"
    with DowntimeProbe(stage.live_url) as probe:
        began_wall, began = time.time(), time.perf_counter()
        with (
            started([str(BIN), "run", "prod", "--force", "--config", str(config)], env=env, log=log) as proc,
            PeakRss(proc.pid) as rss,
        ):
            try:
                status = proc.wait(timeout=TOOL_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                status, result.error = -1, f"still running after {TOOL_TIMEOUT_S:.0f} s: stopped"
        result.total_s = time.perf_counter() - began
        result.downtime = probe.result()
    result.peak_rss_mib = rss.peak_mib
    read_journal(work, result, began_wall=began_wall)
    if status:
        said = first_error_line(log).replace(str(config), config.name)
        result.error = f"exit status {status}: " + (f"{result.error} ({said})" if result.error else said)
    check_live(stage, result)
    result.ok = status == 0 and not result.error and not result.problems
    if result.error:
        result.problems.insert(0, f"the rollback did not succeed: {result.error}")
    return result


def read_journal(work: Path, result: WayResult, *, began_wall: float) -> None:
    """Per-step times, the run's outcome and its pre-rollback dump, from the bot's own store."""
    store = Store(f"sqlite:///{work / 'state' / 'rollback-bot.db'}")
    try:
        runs = [r for r in store.list_runs(limit=10, env="prod") if not r.dry_run]
        if not runs:
            result.error = "no run was recorded"
            return
        run = runs[0]
        steps = {s.name: s for s in store.steps(run.id)}
    finally:
        store.close()
    if run.status != "succeeded":
        result.error = f"run {run.status}" + (f": {run.error.splitlines()[0][:200]}" if run.error else "")
    first = min((s.started_at for s in steps.values() if s.started_at), default=None)
    if first is not None:
        result.parts["start-up"] = first.timestamp() - began_wall
    for step in sorted(steps.values(), key=lambda s: s.position):
        took = _seconds(step)
        if took is not None and step.started_at is not None:
            result.parts[step.name] = took
            at = step.started_at.timestamp() - began_wall
            result.spans[step.name] = (at, at + took)  # steps may overlap: the dump runs beside the restore
    last = max((s.finished_at for s in steps.values() if s.finished_at), default=None)
    if last is not None and result.total_s is not None:
        result.parts["exit"] = began_wall + result.total_s - last.timestamp()
    result.db_s = _seconds(steps.get("database"))
    result.pre_dump_s = _seconds(steps.get("pre_dump"))
    health = steps.get("health")
    if health is not None and health.finished_at is not None and health.status == "ok":
        result.healthy_s = health.finished_at.timestamp() - began_wall
    result.pre_dump_verified = _pre_dump_checked(steps.get("pre_dump"), result)
    database = steps.get("database")
    pre = steps.get("pre_dump")
    if pre and database and pre.started_at and database.finished_at:
        when = "after" if pre.started_at >= database.finished_at else "before"
        result.notes.append(f"pre-rollback dump taken {when} the swap")
    if pre and run.finished_at and pre.finished_at and pre.finished_at > run.finished_at:
        result.problems.append("the run finished before its pre-rollback dump was verified")


def _pre_dump_checked(step: StepRecord | None, result: WayResult) -> bool:
    """The journal says the dump is verified, and the file it names is the one recorded (size, sha256)."""
    if step is None or step.status != "ok":
        result.problems.append(f"pre-rollback dump: {step.status if step else 'no such step'}")
        return False
    details: dict[str, Any] = step.details
    sha256, size, where = (
        details.get("sha256"),
        details.get("size_bytes"),
        details.get("location") or details.get("path"),
    )
    if not sha256 or not size or not where:
        result.problems.append(f"pre-rollback dump: the journal lacks its sha256, size or location ({sorted(details)})")
        return False
    path = Path(str(where))
    if not path.is_file():
        result.problems.append(f"pre-rollback dump: {path} is not there")
        return False
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    if path.stat().st_size != int(size) or digest.hexdigest() != sha256:
        result.problems.append(f"pre-rollback dump: {path.name} does not match its recorded size and sha256")
        return False
    return True


def _seconds(step: StepRecord | None) -> float | None:
    if step is None or step.started_at is None or step.finished_at is None or step.status == "skipped":
        return None
    return (step.finished_at - step.started_at).total_seconds()
