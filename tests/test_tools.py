"""How the bot runs git and the database tools: below its own CPU priority (a burst of plans or a dump
cannot starve Slack's acks), and stopped at once when their work is no longer wanted."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from pathlib import Path

from bot.backends.dbtools import TOOL_NICENESS, run_tool, tool_env
from bot.backends.git import GitRepo


def _expected() -> int:
    # A process can only lower its priority: under a parent already nicer than 10, the child keeps that.
    return max(TOOL_NICENESS, os.getpriority(os.PRIO_PROCESS, 0))


def test_a_database_tool_runs_niced() -> None:
    # The sleep lets the bot lower the priority before the shell reads it back.
    run = run_tool(["sh", "-c", "sleep 0.3; ps -o ni= -p $$"], env=tool_env({}), timeout_s=10, capture_stdout=True)
    assert run.ok
    assert int(run.stdout.strip()) == _expected()


def test_git_runs_niced(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "remote", "add", "origin", str(tmp_path)], check=True)
    hook = tmp_path / "nice-of-git"
    # `git -c alias.x=!…` runs the alias in a shell whose parent is git: its niceness is git's.
    repo = GitRepo(repo=str(tmp_path), remote="origin", branch="main", work_dir=tmp_path / "work")
    out = repo._exec("-c", f"alias.ni=!ps -o ni= -p $PPID > {hook}", "ni")
    assert out.status == 0, out.stderr
    assert int(hook.read_text().strip()) == _expected()


def test_a_tool_is_stopped_as_soon_as_it_is_no_longer_needed() -> None:
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    started = time.monotonic()
    run = run_tool(["sleep", "30"], env=tool_env({}), timeout_s=60, cancel=cancel)
    assert run.cancelled and not run.ok and "no longer needed" in run.why()
    assert time.monotonic() - started < 10  # killed, not waited for
