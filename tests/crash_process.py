"""A bot process that restores a database and is then killed with SIGKILL: a real crash, for the crash tests.

The restore runs in a separate Python process (the "bot") started in its own process group. Its client
tools (pg_restore, mysql) run in process groups of their own (dbtools.run_tool), just as in production,
so killing the bot's group alone orphans them; `kill(tree=True)` kills every descendant as well, like a
host crash would.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

_CHILD = """
import json, os, sys
from pathlib import Path
engine, source, shadow, options = sys.argv[1:5]
if engine == "postgres":
    from bot.backends.postgres import PostgresDatabase as Backend
elif engine == "mysql":
    from bot.backends.mysql import MySQLDatabase as Backend
else:
    from bot.backends.sqlite import SQLiteDatabase as Backend
kwargs = json.loads(options)
if engine == "postgres":
    # One pg_restore process, whose session outlives the killed bot (the orphan case). With --jobs its
    # leader dies of SIGPIPE at its next message and takes its workers along: an easier case.
    kwargs.setdefault("jobs", 1)
db = Backend(os.environ["RB_CRASH_URL"], **kwargs)
db.restore(Path(source), shadow=shadow, progress=lambda m: print(m, flush=True))
print("RESTORE COMPLETED", flush=True)
"""


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])  # the command name may hold spaces and parentheses
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


class CrashingBot:
    def __init__(
        self,
        engine: str,
        url: str,
        source: Path,
        shadow: str,
        log: Path,
        *,
        env: dict[str, str] | None = None,
        **options: Any,
    ) -> None:
        self.log = log
        self._out = log.open("wb")
        # Its own TMPDIR: a SIGKILLed MySQL restore cannot delete its option file, and a leftover in the
        # shared /tmp would fail other tests' check that none is ever left there.
        self.tmp = log.with_name(log.stem + "-tmp")
        self.tmp.mkdir()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, engine, str(source), shadow, json.dumps(options)],
            cwd=ROOT,
            env={**os.environ, "RB_CRASH_URL": url, "PYTHONPATH": str(ROOT), "TMPDIR": str(self.tmp), **(env or {})},
            stdout=self._out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def descendants(self) -> list[int]:
        tree, found, todo = _children(), [], [self.proc.pid]
        while todo:
            kids = tree.get(todo.pop(), [])
            found += kids
            todo += kids
        return found

    def wait_for(self, what: str, condition: Callable[[], bool], *, timeout_s: float = 60.0) -> None:
        """Poll until `condition` holds; fail (killing the bot) if it finishes or time runs out first."""
        deadline = time.monotonic() + timeout_s
        while not condition():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill(tree=True)
                raise AssertionError(f"the bot never reached the point of the crash ({what}):\n{self.output()}")
            time.sleep(0.02)

    def kill(self, *, tree: bool) -> list[int]:
        """SIGKILL the bot's process group (and with `tree`, every descendant); return the survivors' pids."""
        others = self.descendants()
        if tree:
            for pid in others:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self._out.close()
        assert "RESTORE COMPLETED" not in self.output()
        return [] if tree else [pid for pid in others if alive(pid)]
