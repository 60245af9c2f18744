"""Plumbing shared by the database backends: running a client tool, names, files.

Kept apart from the backends so that they, and restore.py's procedures, read as dump, verify, restore
aside, swap rather than as subprocess and file handling. Progress reporting is reporter.py's.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from bot.errors import DatabaseError, DumpFailed, ToolMissing
from bot.redact import redact

DEFAULT_TOOL_TIMEOUT_S = 6 * 3600.0  # a multi-hundred-GB dump or restore takes hours, not minutes
# Tools run below the bot's own priority: on a busy host Slack's 3 s ack deadline and the heartbeats
# matter more than a dump finishing a few per cent sooner; on an idle host it costs nothing.
TOOL_NICENESS = 10
_ERROR_WORDS = ("error", "fatal", "failed", "denied", "could not", "unknown", "invalid")


@dataclass(frozen=True)
class ToolRun:
    """How a client tool ended: its exit code, what it printed, and whether we had to kill it."""

    returncode: int
    stdout: str
    stderr_tail: list[str]  # already redacted
    timed_out: bool
    cancelled: bool = False  # stopped because the caller no longer needed it

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out and not self.cancelled

    def why(self, *, limit: int = 3) -> str:
        """The tool's own words for what went wrong: error lines first, else its last lines."""
        errors = [line for line in self.stderr_tail if any(w in line.lower() for w in _ERROR_WORDS)]
        chosen = (errors or self.stderr_tail)[-limit:]
        text = " / ".join(line.strip() for line in chosen if line.strip())
        if self.timed_out:
            return f"timed out and was stopped{': ' + text if text else ''}"
        if self.cancelled:
            return "stopped: it was no longer needed"
        return text or f"exit code {self.returncode}"


def tool_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment for a client tool: ours, plus credentials and settings, in English.

    Messages are forced to the C locale because progress is read from the tools' own words.
    """
    env = dict(os.environ)
    env.update(extra)
    env["LC_ALL"] = "C"
    env.pop("LANGUAGE", None)
    return env


def run_tool(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout_s: float,
    stdin: IO[bytes] | None = None,
    capture_stdout: bool = False,
    on_line: Callable[[str], None] | None = None,
    on_tick: Callable[[], None] | None = None,
    tick_s: float = 2.0,
    keep_lines: int = 60,
    cancel: threading.Event | None = None,
) -> ToolRun:
    """Run a tool without a shell or a terminal, streaming its stderr to `on_line`; `on_tick` every `tick_s`.

    Callbacks run on the calling thread (never concurrently with each other), so a progress
    callback does not have to be thread-safe. The tool is killed, with any children, at `timeout_s`,
    or as soon as `cancel` is set (the result then says it was cancelled).
    """
    name = Path(args[0]).name
    try:
        proc = subprocess.Popen(
            list(args),
            stdin=stdin if stdin is not None else subprocess.DEVNULL,  # never wait on a prompt
            stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=dict(env),
            start_new_session=True,  # its own process group, so a timeout kills everything it started
        )
    except FileNotFoundError:
        raise ToolMissing(
            f"{name} is not installed or not on the bot's PATH; nothing was changed",
            hint=f"install the {name} client tool (same major version as the server or newer) and retry",
        ) from None
    except OSError as exc:
        raise ToolMissing(
            f"cannot run {name}: {exc.strerror}; nothing was changed",
            hint=f"check that {name} on the bot's PATH is an executable the bot may run",
        ) from None
    lower_priority(proc.pid)
    assert proc.stderr is not None
    lines: queue.Queue[str | None] = queue.Queue()
    stdout_parts: list[bytes] = []

    def pump_stderr(stream: IO[bytes]) -> None:
        for raw in stream:
            lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
        lines.put(None)

    def pump_stdout(stream: IO[bytes]) -> None:
        stdout_parts.append(stream.read())

    threads = [threading.Thread(target=pump_stderr, args=(proc.stderr,), daemon=True)]
    if capture_stdout and proc.stdout is not None:
        threads.append(threading.Thread(target=pump_stdout, args=(proc.stdout,), daemon=True))
    for thread in threads:
        thread.start()

    deadline = time.monotonic() + timeout_s
    next_tick = time.monotonic() + tick_s
    tail: deque[str] = deque(maxlen=keep_lines)
    errors: deque[str] = deque(maxlen=10)  # so verbose chatter cannot push the real error out of view
    timed_out = cancelled = False
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                timed_out = True
                _kill(proc)
                break
            if cancel is not None and cancel.is_set():
                cancelled = True
                _kill(proc)
                break
            # Ticks come every tick_s even while the tool chatters: a measure polled only in silences
            # would stall exactly when the tool is busiest.
            if on_tick is not None and now >= next_tick:
                next_tick = now + tick_s
                on_tick()
            try:
                line = lines.get(timeout=max(0.05, min(next_tick, deadline) - time.monotonic()))
            except queue.Empty:
                continue
            if line is None:
                break
            clean = redact(line)
            tail.append(clean)
            if any(w in clean.lower() for w in _ERROR_WORDS):
                errors.append(clean)
            if on_line is not None:
                on_line(clean)
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(proc)
            proc.wait()
    finally:
        if proc.poll() is None:  # a callback raised: never leave a tool running behind us
            _kill(proc)
            proc.wait()
        for thread in threads:
            thread.join(timeout=5)
    merged = [line for line in errors if line not in tail] + list(tail)
    out = b"".join(stdout_parts).decode("utf-8", "replace")
    return ToolRun(returncode=proc.returncode, stdout=out, stderr_tail=merged, timed_out=timed_out, cancelled=cancelled)


def lower_priority(pid: int) -> None:
    """Give a child process (and what it forks from now on: pg_restore --jobs workers) a lower CPU priority."""
    with suppress(OSError):  # it may have exited already; a lower priority is a courtesy, never a failure
        os.setpriority(os.PRIO_PROCESS, pid, TOOL_NICENESS)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def stamp(*, seconds: bool = False) -> str:
    """UTC time for names (UTC so that several servers and the bot agree on what a name means)."""
    return datetime.now(UTC).strftime("%Y%m%d%H%M%S" if seconds else "%Y%m%d%H%M")


def fit_name(base: str, suffix: str, *, max_bytes: int) -> str:
    """`base + suffix`, cutting `base` (never the suffix) so the result fits in `max_bytes` bytes."""
    room = max_bytes - len(suffix.encode())
    cut = base.encode()[: max(room, 0)].decode("utf-8", "ignore")  # never split a character
    return cut + suffix


SHADOW_MARK = "_rb_shadow_"
_TAG = re.compile(r"[A-Za-z0-9]{1,32}")
# What follows the mark in a shadow name: a tag, or (restores not given a name) a UTC stamp with _2, _3, …
_SHADOW_TAIL = re.compile(r"[A-Za-z0-9]{1,32}(?:_[0-9]{1,4})?")


def shadow_name_for(live: str, tag: str, *, max_bytes: int, mark: str = SHADOW_MARK) -> str:
    """`<live>_rb_shadow_<tag>`, the live name cut so the whole fits the engine's limit.

    Letters and digits only: the name must survive every quoting rule and read the same in a journal.
    """
    if not _TAG.fullmatch(tag):
        raise DatabaseError(
            f"{redact(tag)!r} cannot tag a shadow name: use 1 to 32 letters or digits",
            hint="derive the tag from the run id, e.g. its first 8 hex characters",
        )
    return fit_name(live, mark + tag, max_bytes=max_bytes)


def is_shadow_name(live: str, name: str, *, max_bytes: int, mark: str = SHADOW_MARK) -> bool:
    """Whether `name` is one that shadow_name_for (or a restore's own stamp) gives for `live`.

    Exact reconstruction rather than a pattern, so that neither the live name nor a kept
    `_before_rollback_` copy (nor another application's database) can ever pass for a shadow.
    """
    _, found, tail = name.rpartition(mark)
    if not found or not _SHADOW_TAIL.fullmatch(tail) or name == live:
        return False
    return fit_name(live, mark + tail, max_bytes=max_bytes) == name


def refuse_unless_shadow(
    live: str,
    name: str,
    *,
    max_bytes: int,
    action: str,
    error: type[DatabaseError] = DatabaseError,
    mark: str = SHADOW_MARK,
    shown: str = "",
) -> None:
    """Raise `error` (nothing is changed) unless `name` is a shadow name of `live`."""
    if not is_shadow_name(live, name, max_bytes=max_bytes, mark=mark):
        raise error(
            f"refused to {action} {redact(shown or name)!r}: it is not a shadow name of {redact(live)}"
            " (the live database and kept before_rollback copies are never touched this way); nothing was changed",
            hint=f"pass the name shadow_name() gave for this run (it ends in {mark}<tag>)",
        )


def partial_path(dest: Path) -> Path:
    """Where a dump is written until verified: a half-written dump never carries the final name."""
    return dest.with_name(dest.name + ".partial")


def fsync_path(path: Path) -> None:
    """Flush a file (or a directory entry) to disk: a dump we call kept must survive a power cut."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories; the file itself was synced
        pass
    finally:
        os.close(fd)


def publish(partial: Path, dest: Path) -> None:
    """Give a verified dump its final name, durably."""
    try:
        fsync_path(partial)
        os.replace(partial, dest)
        fsync_path(dest.parent)
    except OSError as exc:
        raise DumpFailed(
            f"could not save the verified dump as {dest}: {exc.strerror}; it is still at {partial}",
            hint="check the backup directory (space, permissions), then move the file there by hand",
        ) from None


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def one_line(exc: BaseException, *, limit: int = 400) -> str:
    """An exception as one redacted line, for a message a human reads."""
    text = " ".join(str(a) for a in exc.args) if len(exc.args) > 1 else str(exc)
    return " ".join(redact(text.strip() or type(exc).__name__).split())[:limit]


def prepare_dest(dest: Path) -> Path:
    """Make room for a dump at `dest`; return the .partial path it is written to until verified."""
    partial = partial_path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial.unlink(missing_ok=True)
    except OSError as exc:
        raise DumpFailed(
            f"cannot write to {dest.parent}: {exc.strerror}; no dump was taken",
            hint="check the backup directory exists and the bot may write to it",
        ) from None
    return partial


RETRY_HINT = "use another restore point, or take a new dump"


def dump_file_size(path: Path, shown: str) -> int:
    """The size of a dump file that exists and is not empty; DumpFailed otherwise."""
    if not path.is_file():
        raise DumpFailed(f"{path}: no such dump file", hint="check the path, or take a new dump")
    size = path.stat().st_size
    if size == 0:
        raise DumpFailed(f"{shown} is empty (0 bytes): it was never written completely", hint=RETRY_HINT)
    return size


def no_objects(shown: str) -> DumpFailed:
    return DumpFailed(
        f"{shown} is readable but holds no tables (was the database empty?)",
        hint="restoring it would leave an empty database; " + RETRY_HINT,
    )
