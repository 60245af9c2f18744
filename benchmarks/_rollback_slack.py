"""The product's main path, timed: the resident bot (`rollback-bot serve`), a plan in Slack, an approver's Confirm.

    slack     prestage (`prestage = true`), as the prestage way, but the rollback is asked for and approved
              in Slack: `rollback-bot serve` runs as a subprocess (already up, as during an incident) next
              to the Web API stand-in; alice types `/rollback prod` (signed as Slack signs it), the plan is
              posted, dave clicks Confirm (and types `prod` when the bot asks for it). The clock starts at
              the click: what comes before is people reading the plan. The run's end is read from the store.

The command-line ways pay for a Python process's start-up (about 1 s: imports, the store, the plan)
inside the rollback; this one does not, because the bot that runs it is already running.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from benchmarks._rollback_probe import DowntimeProbe, PeakRss
from benchmarks._rollback_ways import (
    SLACK_WAY,
    TOOL_TIMEOUT_S,
    Say,
    Stage,
    WayResult,
    check_live,
    deploy_then_break,
    first_error_line,
    read_journal,
    started,
    tool_env,
)
from bot.store import RunRecord, Store
from sandbox.ports import free_port
from sandbox.serving import answers, serve_command
from sandbox.slack_api import SlackApiStandIn, StoredMessage
from sandbox.slack_harness import (
    INCIDENT,
    SIGNING_SECRET,
    TYPED_CONFIRMATION,
    find_button,
    sandbox_slack_api,
    type_confirmation,
)
from sandbox.slack_signing import SlackRequestSender

REQUESTER, APPROVER = "U0ALICE", "U0DAVE"  # both on call (S0ONCALL, the benchmark's approvers)
POLL_S = 0.01
T = TypeVar("T")


def slack_way(stage: Stage, say: Say) -> WayResult:
    result = WayResult(SLACK_WAY)
    staged = deploy_then_break(stage, result, say, prestage=True)
    if staged is None:
        return result
    work, config = staged
    with sandbox_slack_api() as api:
        env = {
            **tool_env(stage.live_url),
            "SLACK_BOT_TOKEN": api.token,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": api.base_url,
        }
        port, log = free_port(), work / "serve.log"
        say(f"   {SLACK_WAY}: rollback-bot serve; alice types /rollback prod, dave clicks Confirm…")
        with started(serve_command(config, port), env=env, log=log) as proc, PeakRss(proc.pid) as rss:
            url = f"http://127.0.0.1:{port}"
            if _wait(lambda: proc.poll() is not None or answers(url), 60.0) is None or proc.poll() is not None:
                return result.fail(f"serve did not start: {first_error_line(log)}")
            sender = SlackRequestSender(app_url=f"{url}/slack/events", signing_secret=SIGNING_SECRET, api=api)
            sender.slash_command(user_id=REQUESTER, text="prod", channel_id=INCIDENT)
            plan = _wait(lambda: _plan_message(api), 120.0)
            if plan is None:
                return result.fail(f"no plan with a Confirm button was posted: {first_error_line(log)}")
            began_wall = _approve_and_wait(stage.live_url, work, api, sender, plan, result)
        result.peak_rss_mib = rss.peak_mib
    if began_wall is None:
        return result
    read_journal(work, result, began_wall=began_wall)
    # From the click, not from a process's start: the bot was already running, and it does not exit.
    result.parts = {("approval" if k == "start-up" else k): v for k, v in result.parts.items() if k != "exit"}
    check_live(stage, result)
    result.ok = not result.error and not result.problems
    if result.error:
        result.problems.insert(0, f"the rollback did not succeed: {result.error}")
    return result


def _approve_and_wait(
    live_url: str, work: Path, api: SlackApiStandIn, sender: SlackRequestSender, plan: StoredMessage, result: WayResult
) -> float | None:
    """Dave confirms (typing the environment's name if asked); wait for the run to end. → when he clicked."""
    store = Store(f"sqlite:///{work / 'state' / 'rollback-bot.db'}")
    try:
        with DowntimeProbe(live_url) as probe:
            began_wall, began = time.time(), time.perf_counter()
            action_id, value = find_button(plan.blocks, "Confirm")
            sender.block_action(
                user_id=APPROVER, action_id=action_id, value=value, channel_id=INCIDENT, message_ts=plan.ts
            )
            asked = _wait(lambda: api.open_view_for(APPROVER, callback_id=TYPED_CONFIRMATION) or _started(store), 30)
            if asked is not None and not isinstance(asked, bool):
                type_confirmation(sender, api, APPROVER, "prod")
            run = _wait(lambda: _ended(store), TOOL_TIMEOUT_S)
            result.total_s = time.perf_counter() - began
        result.downtime = probe.result()
    finally:
        store.close()
    if run is None:
        result.fail(f"the run did not end within {TOOL_TIMEOUT_S:.0f} s")
        return None
    return began_wall


def _plan_message(api: SlackApiStandIn) -> StoredMessage | None:
    for message in reversed(api.messages(INCIDENT)):
        try:
            find_button(message.blocks, "Confirm")
        except LookupError:
            continue
        return message
    return None


def _runs(store: Store) -> list[RunRecord]:
    return [r for r in store.list_runs(limit=5, env="prod") if not r.dry_run]


def _started(store: Store) -> bool:
    return any(r.status != "planned" for r in _runs(store))


def _ended(store: Store) -> RunRecord | None:
    return next((r for r in _runs(store) if r.status not in ("planned", "approved", "running")), None)


def _wait(check: Callable[[], T | bool | None], timeout: float) -> T | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found  # type: ignore[return-value]
        time.sleep(POLL_S)
    return None
