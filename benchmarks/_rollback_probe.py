"""What the rollback benchmark watches while a way runs: the live database's downtime, and the bot's memory.

DowntimeProbe opens a FRESH connection to the live database every 50 ms (as a new app request
would, after a restart or from a pool that lost its connections) and runs a query that needs the
app's tables and their first rows. A probe fails if it cannot connect, errors, answers false or
takes longer than a second (it was blocked). The longest outage is reported two ways: from the first
failed probe's start to the last one's end (what was seen failing), and from the last good probe
before to the first good one after (what could have been down, at most).

PeakRss polls /proc/<pid>/status every 50 ms for VmHWM, the process's own peak resident set: the
bot's Python process, not the pg_dump / pg_restore children it starts.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import psycopg

from benchmarks._rollback_data import PROBE_QUERY

EVERY_S = 0.05
SLOW_S = 1.0  # a probe blocked this long is an outage, whatever it answers in the end


@dataclass(frozen=True)
class Sample:
    started: float  # time.monotonic()
    finished: float
    ok: bool
    error: str = ""


@dataclass(frozen=True)
class Downtime:
    seen_s: float  # first failed probe's start → last failed probe's end, of the longest failing run
    bound_s: float  # last good probe's end before it → first good probe's start after it
    failed: int  # failed probes in the whole way
    probes: int
    slowest_ok_ms: float
    first_error: str = ""

    def text(self) -> str:
        if not self.failed:
            return "0"
        return f"{self.seen_s:.2f}–{self.bound_s:.2f}"


def downtime_of(samples: list[Sample]) -> Downtime:
    ordered = sorted(samples, key=lambda s: s.started)
    best: tuple[float, float] = (0.0, 0.0)
    run: list[Sample] = []
    last_ok_end: float | None = None
    for sample in [*ordered, None]:
        if sample is not None and not sample.ok:
            run.append(sample)
            continue
        if run:
            seen = max(s.finished for s in run) - run[0].started
            # Probes overlap (a blocked one runs on while later ones start): the bound never under-reports.
            start = min(last_ok_end, run[0].started) if last_ok_end is not None else run[0].started
            end = sample.started if sample is not None else max(s.finished for s in run)
            best = max(best, (seen, max(seen, end - start)))
            run = []
        if sample is not None:
            last_ok_end = sample.finished
    failed = [s for s in ordered if not s.ok]
    oks = [(s.finished - s.started) * 1000 for s in ordered if s.ok]
    return Downtime(
        seen_s=best[0],
        bound_s=best[1],
        failed=len(failed),
        probes=len(ordered),
        slowest_ok_ms=max(oks, default=0.0),
        first_error=failed[0].error if failed else "",
    )


class DowntimeProbe:
    """A fresh connection to `url` every EVERY_S seconds, from a small pool so a blocked probe stops none."""

    def __init__(self, url: str, *, every_s: float = EVERY_S) -> None:
        self.url = url
        self.every_s = every_s
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=6, thread_name_prefix="downtime-probe")
        self._thread = threading.Thread(target=self._schedule, name="downtime-probe-clock", daemon=True)

    def __enter__(self) -> DowntimeProbe:
        self._thread.start()
        time.sleep(3 * self.every_s)  # a few good probes first: the way starts with the database up
        return self

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def result(self) -> Downtime:
        with self._lock:
            return downtime_of(list(self.samples))

    def _schedule(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            self._pool.submit(self._probe)
            due += self.every_s
            self._stop.wait(max(0.0, due - time.monotonic()))

    def _probe(self) -> None:
        started = time.monotonic()
        ok, error = False, ""
        try:
            with psycopg.connect(
                self.url, autocommit=True, connect_timeout=2, options=f"-c statement_timeout={int(SLOW_S * 1000)}"
            ) as conn:
                row = conn.execute(PROBE_QUERY).fetchone()
                ok = bool(row and row[0])
                error = "" if ok else "the app's tables are empty"
        except psycopg.Error as exc:
            error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        finished = time.monotonic()
        if ok and finished - started > SLOW_S:
            ok, error = False, f"blocked for {finished - started:.1f} s"
        with self._lock:
            self.samples.append(Sample(started, finished, ok, error))


class PeakRss:
    """The peak resident set (VmHWM) of one process, polled until it exits or the block ends."""

    def __init__(self, pid: int, *, marker: str = "rollback-bot", every_s: float = EVERY_S) -> None:
        self.pid = pid
        self.marker = marker  # an argument of the exec'd command: before exec the child shows its parent's memory
        self.every_s = every_s
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="peak-rss", daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    @property
    def peak_mib(self) -> float | None:
        return self.peak_kib / 1024 if self.peak_kib else None

    def _poll(self) -> None:
        proc = Path(f"/proc/{self.pid}")
        while not self._stop.is_set():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                if any(arg.decode(errors="replace").endswith(self.marker) for arg in argv):
                    for line in (proc / "status").read_text().splitlines():
                        if line.startswith("VmHWM:"):
                            self.peak_kib = max(self.peak_kib, int(line.split()[1]))
            except (OSError, ValueError, IndexError):
                pass  # not started yet, or gone (a zombie has no VmHWM line)
            self._stop.wait(self.every_s)
