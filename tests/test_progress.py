"""Measured progress: a live bar in a terminal, plain lines in logs, a compact text bar in Slack."""

from __future__ import annotations

import io
import os
import pty
import re
import subprocess
import sys
import textwrap
from pathlib import Path

from bot import format as fmt
from bot.engine.events import StepFinished, StepProgress, StepStarted
from bot.engine.story import NoticeKind
from bot.progress import Estimate, measure_text, plain_line, slack_line, text_bar
from bot.terminal import TerminalReporter
from handlers import blocks
from handlers.outbox_render import render

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# A restore of 268 objects, one measure every 0.3 s of real time (so the bar redraws between them)
# while the reporter's clock says 5 s passed: the time left is the pace so far, counted down.
CHILD = textwrap.dedent(
    """
    import time
    from bot.engine.events import StepFinished, StepProgress, StepStarted
    from bot.terminal import TerminalReporter

    now = [0.0]
    reporter = TerminalReporter(clock=lambda: now[0])
    assert reporter.live
    reporter(StepStarted(run_id="r", step="database", title="Database restore", position=3, total=6))
    for done in range(0, 269, 27):
        now[0] += 5.0
        reporter(StepProgress(run_id="r", step="database", message="restoring into app_rb_shadow_ab12",
                              done=done, total=268, unit="objects"))
        time.sleep(0.3)
    reporter(StepFinished(run_id="r", step="database", title="Database restore", status="ok",
                          summary="restored", duration_s=50.0))
    """
)


def run_in_a_terminal(script: str) -> str:
    """Run `script` with its stdout on a pseudo-terminal; what the terminal received, escapes and all."""
    leader, follower = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "30", "PYTHONPATH": str(ROOT)}
    env.pop("NO_COLOR", None)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=follower, stderr=subprocess.PIPE, env=env)
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 0, err.decode()
    return b"".join(chunks).decode("utf-8", "replace")


def test_in_a_terminal_the_bar_shows_a_percentage_and_a_time_left_that_move() -> None:
    raw = run_in_a_terminal(CHILD)
    assert "\x1b[" in raw  # drawn in place, with escapes
    frames = [ANSI.sub("", frame) for frame in re.split(r"[\r\n]", raw)]
    bars = [f for f in frames if "restoring into app_rb_shadow_ab12" in f and "━" in f]
    percents = [int(m.group(1)) for f in bars if (m := re.search(r"(\d+)%", f))]
    lefts = {m.group(1) for f in bars if (m := re.search(r"about (\S+) left", f))}
    assert len(set(percents)) >= 3 and percents == sorted(percents), bars
    assert len(lefts) >= 2, bars  # the estimate moves as the measures come in
    assert any("/268 objects" in f for f in bars)
    assert "✅ Database restore: restored (50s)" in ANSI.sub("", raw)


def test_without_a_terminal_progress_is_plain_lines_a_few_seconds_apart() -> None:
    out = io.StringIO()
    now = [100.0]
    reporter = TerminalReporter(out, clock=lambda: now[0])
    assert reporter.live is False
    reporter(StepStarted(run_id="r", step="database", title="Database restore", position=3, total=6))
    for done in range(0, 269, 12):  # a measure a second
        now[0] += 1.0
        reporter(
            StepProgress(run_id="r", step="database", message="restoring into x", done=done, total=268, unit="objects")
        )
    reporter(
        StepFinished(run_id="r", step="database", title="Database restore", status="ok", summary="ok", duration_s=23)
    )
    lines = out.getvalue().splitlines()
    progress = [line for line in lines if "restoring into x" in line]
    assert "\x1b" not in out.getvalue()
    assert 3 <= len(progress) <= 6  # 23 measures over 23 s: one line every 5 s at most
    assert progress[0] == "     restoring into x … 0% (0 of 268 objects)"
    assert re.fullmatch(r"     restoring into x … \d+% \(\d+ of 268 objects\), about \d+s left", progress[-1])
    assert lines[0] == "⏳ [4/6] Database restore…" and lines[-1] == "✅ Database restore: ok (23s)"


def test_snapshot_progress_through_say_is_humanised_for_bytes() -> None:
    out = io.StringIO()
    reporter = TerminalReporter(out, live=False, clock=lambda: 0.0)
    reporter.say("dumping app", done=3 * 1024**2, total=12 * 1024**2, unit="bytes")
    reporter.say("dump verified")
    assert out.getvalue().splitlines() == ["     dumping app … 25% (3.0 MiB of 12.0 MiB)", "dump verified"]


def test_the_slack_step_message_shows_the_text_bar() -> None:
    running = blocks.step_blocks(
        title="Database restore",
        status="running",
        summary="",
        duration_s=None,
        progress="restoring into app_rb_shadow_ab12",
        done=120,
        total=268,
        unit="objects",
        left_s=12.4,
    )
    text = str(running)
    assert "▰▰▰▰▱▱▱▱▱▱ 44% · 120/268 objects · ~12s left" in text and "restoring into app_rb_shadow_ab12" in text
    payload = {
        "title": "Database restore",
        "status": "running",
        "progress": "restoring",
        "done": 3 * 1024**3,
        "total": 4 * 1024**3,
        "unit": "bytes",
        "left_s": 95,
    }
    fallback, rendered = render(NoticeKind.STEP, payload)
    assert fallback == "⏳ Database restore"
    assert "▰▰▰▰▰▰▰▰▱▱ 75% · 3.0 GiB/4.0 GiB · ~1m 35s left" in str(rendered)
    done = blocks.step_blocks(title="Database restore", status="ok", summary="ok", duration_s=74, done=268, total=268)
    assert "▰" not in str(done)  # the bar is for a step still running


def test_the_estimate_is_the_pace_so_far_counted_down() -> None:
    estimate = Estimate(started=0.0, at=30.0, done=25, total=100)
    assert estimate.percent == 25 and estimate.left_s() == 90.0 and estimate.left_s(now=40.0) == 80.0
    assert Estimate(started=0.0, at=1.0, done=50, total=100).left_s() is None  # too early to say
    assert Estimate(started=0.0, at=30.0, done=7, total=None).left_s() is None  # no total, no time left
    assert Estimate(started=0.0, at=30.0, done=100, total=100).left_s() == 0.0
    assert measure_text(7, None, "tables") == "7 tables so far"
    assert measure_text(90, 600, "seconds") == "1m 30s of 10m 00s"
    assert text_bar(0.0) == "▱" * 10 and text_bar(1.0) == "▰" * 10
    assert plain_line("waiting", Estimate(0.0, 5.0, None, None), None) == "waiting"
    assert slack_line(5, None, "objects") == "5 objects so far"


def test_one_module_formats_sizes_and_durations() -> None:
    assert [fmt.size(n) for n in (0, 1023, 1536, 5 * 1024**2, 3 * 1024**3, 2 * 1024**4)] == [
        "0 B",
        "1023 B",
        "1.5 KiB",
        "5.0 MiB",
        "3.0 GiB",
        "2.0 TiB",
    ]
    assert [fmt.duration(s) for s in (4.25, 45, 74, 3 * 3600 + 12 * 60, 52 * 3600)] == [
        "4.2s",
        "45s",
        "1m 14s",
        "3h 12m",
        "2d 4h",
    ]
    assert fmt.duration(4.25, rough=True) == "4s"
    assert fmt.in_words(720) == "12 minutes"
