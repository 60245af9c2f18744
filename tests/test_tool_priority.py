"""Git and the dump tools run below the bot's CPU priority, so a burst of plans cannot starve Slack's acks."""

from __future__ import annotations

import os
import subprocess
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
