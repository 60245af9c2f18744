"""Which process runs a rollback, so a crash is seen at once on the same host instead of after a timeout.

A run records the host, the pid and an identity made of the kernel's boot id and the process's start
time: a pid reused after a reboot, or by another process later, does not look alive.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


@dataclass(frozen=True)
class ProcessIdentity:
    host: str
    pid: int
    boot_id: str  # "<kernel boot id>/<process start time in clock ticks>"

    def columns(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "boot_id": self.boot_id}


def _boot_id() -> str:
    try:
        return _BOOT_ID.read_text().strip()
    except OSError:  # not Linux: the pid alone, checked with kill(pid, 0)
        return "unknown-boot"


def _start_ticks(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()  # after "(comm)" the fields start at 3
    return None if fields[0] in ("Z", "X") else fields[19]  # a zombie has finished: it is gone


@cache
def current_process() -> ProcessIdentity:
    pid = os.getpid()
    return ProcessIdentity(host=socket.gethostname(), pid=pid, boot_id=f"{_boot_id()}/{_start_ticks(pid) or '?'}")


def is_gone(*, host: str | None, pid: int | None, boot_id: str | None) -> bool | None:
    """True if that process is certainly dead, False if it is certainly alive, None if we cannot tell here."""
    if not host or pid is None or not boot_id or host != socket.gethostname():
        return None
    boot, _, ticks = boot_id.partition("/")
    if boot != _boot_id():
        return True  # the machine rebooted since: nothing of that process survives a reboot
    started = _start_ticks(pid)
    if started is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False  # no /proc: alive as far as kill() can tell
    return started != ticks  # another process got the pid


def terminal_user() -> str:
    """Who runs the CLI, as the audit trail names them: user@host."""
    import getpass

    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except Exception:  # getuser raises on containers with no passwd entry
        return "terminal"
