"""Block Kit builders: every fact an approver needs is on screen, and Slack never refuses a message.

Each test validates what it builds with the same limits Slack enforces (sandbox._blockkit_limits),
so a plan with 500 undone commits or a 10,000-character SQL statement fails here, not at 3 a.m.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.backends.base import Commit, HealthResult, HealthSpec
from bot.engine.checklist import ChecklistItem
from bot.engine.events import RunFinished, StepFailed
from bot.engine.migrations import MigrationRisk
from bot.engine.plan import DatabasePlan, FlagPlan, Plan
from bot.store import ChecklistRecord, RunRecord
from handlers import blocks, ids
from sandbox._blockkit_limits import message_block_errors, view_errors

NOW = datetime(2024, 5, 1, 3, 12, tzinfo=UTC)
DEPLOYED = "a" * 7 + "1" * 33
TARGET = "b" * 7 + "2" * 33
SHA40 = re.compile(r"\b[0-9a-f]{40}\b")


def make_plan(**changes: Any) -> Plan:
    plan = Plan(
        env="prod",
        requested_by="U0ALICE01",
        created_at=NOW.isoformat(),
        remote="production",
        branch="release",
        deployed=Commit(sha=DEPLOYED, subject="Add new checkout flow"),
        target=Commit(sha=TARGET, subject="Fix invoice rounding"),
        target_source="restore point #3 taken 2024-05-01 01:10 UTC",
        undone=(
            Commit(sha=DEPLOYED, subject="Add new checkout flow"),
            Commit(sha="c" * 7 + "3" * 33, subject="Drop legacy carts"),
        ),
        code="revert",
        database=DatabasePlan(
            engine="postgres",
            action="dump",
            where="db.internal:5432/app",
            source="backups/prod/restore-point-3.dump",
            source_label="restore point #3 (commit bbbbbbb)",
            restore_point_at=(NOW - timedelta(hours=2, minutes=2)).isoformat(),
            pre_dump="backups/prod/pre-rollback-YYYYMMDDHHMM.dump",
        ),
        flags=(FlagPlan(provider="launchdarkly", keys=("new-checkout",), environment="production"),),
        health=(HealthSpec(url="https://app.example.com/health", expect_status=200, attempts=10, consecutive=2),),
        migration_risks=(
            MigrationRisk(
                file="db/migrations/0042_drop_carts.sql", statement="DROP TABLE carts;", kind="DROP TABLE", line=7
            ),
        ),
        dry_run=False,
        warnings=("the database restore point was taken at commit bbbbbbb",),
    )
    return replace(plan, **changes)


def valid_message(built: list[dict[str, Any]]) -> str:
    errors = message_block_errors(built)
    assert errors == [], errors
    return json.dumps(built, ensure_ascii=False)


def valid_view(view: dict[str, Any], expect: str) -> str:
    errors = view_errors(view, expect=expect)  # type: ignore[arg-type]
    assert errors == [], errors
    return json.dumps(view, ensure_ascii=False)


def buttons(built: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = [e for b in built if b["type"] == "actions" for e in b["elements"]]
    found += [b["accessory"] for b in built if b.get("accessory", {}).get("type") == "button"]
    return found


def texts(built: list[dict[str, Any]]) -> list[str]:
    """Every mrkdwn/plain_text string in the blocks (what Slack would parse)."""
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str):
                out.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(built)
    return out


# --- the plan message -----------------------------------------------------------------------------------


def test_plan_shows_every_fact_an_approver_needs() -> None:
    plan = make_plan()
    built = blocks.plan_blocks(run_id="prod-1", plan=plan, now=NOW, expires_at=NOW + timedelta(minutes=15))
    text = valid_message(built)
    assert built[0]["type"] == "header" and built[0]["text"]["text"] == "Rollback plan: prod"
    for fact in (
        "<@U0ALICE01>",
        "`aaaaaaa` Add new checkout flow",
        "`bbbbbbb` Fix invoice rounding",
        "restore point #3 taken",
        "Undoes 2 commits",
        "Drop legacy carts",
        "revert (one new commit",
        "restore from a dump",
        "db.internal:5432/app",
        "backups/prod/restore-point-3.dump",
        "2h 02m old",
        "pre-rollback dump to `backups/prod/pre-rollback-YYYYMMDDHHMM.dump`",
        "launchdarkly",
        "`new-checkout`",
        "https://app.example.com/health expects 200, 2 in a row within 10 tries",
        "MIGRATION RISKS",
        "`db/migrations/0042_drop_carts.sql:7`",
        "DROP TABLE",
        "`DROP TABLE carts;`",
        "a database restore is the way back",
        "the database restore point was taken at commit bbbbbbb",
        "expires at 03:27 UTC (in 15 min)",
    ):
        assert fact in text, fact
    found = {b["action_id"]: b for b in buttons(built)}
    assert list(found) == [ids.Action.CONFIRM, ids.Action.EDIT, ids.Action.CANCEL]
    assert {b["value"] for b in found.values()} == {ids.run_value("prod-1", plan.hash)}
    assert found[ids.Action.CONFIRM]["style"] == "primary"
    assert found[ids.Action.CANCEL]["style"] == "danger"
    # a database restore is risky: the handler opens the typed-confirmation modal, the label says so
    assert found[ids.Action.CONFIRM]["text"]["text"] == "Confirm…"
    assert "confirm" not in found[ids.Action.CONFIRM]


def test_safe_plan_confirms_with_a_click_and_shows_none() -> None:
    plan = make_plan(
        database=DatabasePlan(engine="none", action="none"), flags=(), health=(), migration_risks=(), warnings=()
    )
    built = blocks.plan_blocks(run_id="prod-1", plan=plan, now=NOW, expires_at=NOW + timedelta(minutes=15))
    text = valid_message(built)
    assert "*Flags*: none" in text and "*Health*: none configured" in text
    assert "*Migration risks*: none found" in text
    assert buttons(built)[0]["text"]["text"] == "Confirm"


def test_dry_run_plan_says_so() -> None:
    plan = make_plan(dry_run=True)
    built = blocks.plan_blocks(run_id="prod-1", plan=plan, now=NOW, expires_at=NOW + timedelta(minutes=15))
    valid_message(built)
    assert built[0]["text"]["text"].startswith("[DRY RUN]")
    assert blocks.plan_text_fallback(plan).startswith("[DRY RUN]")


def test_giant_plan_stays_within_slack_limits() -> None:
    huge = "x" * 5000
    plan = make_plan(
        deployed=Commit(sha=DEPLOYED, subject=huge),
        target=Commit(sha=TARGET, subject=huge),
        target_source=huge,
        undone=tuple(Commit(sha=f"{i:040x}", subject=huge) for i in range(500)),
        migration_risks=tuple(
            MigrationRisk(file=f"db/{i}.sql", statement="DROP TABLE t" + "y" * 5000, kind="DROP TABLE", line=i)
            for i in range(200)
        ),
        warnings=tuple(huge for _ in range(100)),
        flags=tuple(FlagPlan(provider="unleash", keys=tuple(f"flag-{i}" for i in range(300))) for _ in range(20)),
        health=tuple(HealthSpec(url=f"https://{huge}.example.com/{i}") for i in range(50)),
    )
    built = blocks.plan_blocks(run_id="prod-1", plan=plan, now=NOW, expires_at=NOW + timedelta(minutes=15))
    text = valid_message(built)
    assert len(built) <= 50
    assert "Undoes 500 commits" in text and "…and 490 more" in text
    assert "200 destructive statements" in text and "more: `rollback-bot plan prod` lists every one" in text
    assert [b["action_id"] for b in buttons(built)] == [ids.Action.CONFIRM, ids.Action.EDIT, ids.Action.CANCEL]
    assert len(blocks.plan_text_fallback(plan)) <= 3000


def test_a_single_ten_thousand_character_statement_is_cut_not_refused() -> None:
    risk = MigrationRisk(file="m.sql", statement="ALTER TABLE a DROP COLUMN b, " * 400, kind="DROP COLUMN", line=1)
    plan = make_plan(migration_risks=(risk,))
    text = valid_message(blocks.plan_blocks(run_id="r", plan=plan, now=NOW, expires_at=NOW))
    assert "ALTER TABLE a DROP COLUMN b" in text and "…" in text


def test_statements_with_backticks_go_in_a_code_block() -> None:
    risk = MigrationRisk(file="m.sql", statement="DROP TABLE `carts`;", kind="DROP TABLE", line=3)
    text = valid_message(
        blocks.plan_blocks(run_id="r", plan=make_plan(migration_risks=(risk,)), now=NOW, expires_at=NOW)
    )
    assert "```DROP TABLE `carts`;```" in text


def test_user_text_cannot_ping_or_link() -> None:
    plan = make_plan(
        deployed=Commit(sha=DEPLOYED, subject="<!channel> fix & <https://evil.example|click>"),
        requested_by="mallory <!here>",
        migration_risks=(
            MigrationRisk(file="<!everyone>.sql", statement="DROP TABLE <@U0BOSS>;", kind="DROP", line=1),
        ),
    )
    built = blocks.plan_blocks(run_id="r", plan=plan, now=NOW, expires_at=NOW)
    valid_message(built)
    for text in [*texts(built), blocks.plan_text_fallback(plan)]:
        assert "<!" not in text and "<https" not in text and "<@U0BOSS>" not in text, text
    joined = "\n".join(texts(built))
    assert "&lt;!channel&gt; fix &amp; &lt;https://evil.example|click&gt;" in joined
    assert "mallory &lt;!here&gt;" in joined


def test_passwords_in_urls_are_masked_everywhere() -> None:
    plan = make_plan(
        database=replace(make_plan().database, where="postgresql://app:hunter2secret@db.internal/app"),
        health=(HealthSpec(url="https://monitor:pa55w0rdXYZ@app.example.com/health"),),
        warnings=("could not reach mysql://root:r00tpassw0rd@db/app",),
    )
    for built in (
        blocks.plan_blocks(run_id="r", plan=plan, now=NOW, expires_at=NOW),
        blocks.status_header_blocks(run_id="r", plan=plan, status="running", approved_by="U0BOB0001", requested_by="x"),
    ):
        text = valid_message(built)
        for secret in ("hunter2secret", "pa55w0rdXYZ", "r00tpassw0rd"):
            assert secret not in text
    assert "postgresql://app:***@db.internal/app" in json.dumps(
        blocks.plan_blocks(run_id="r", plan=plan, now=NOW, expires_at=NOW)
    )
    failure = StepFailed(
        run_id="r",
        step="database",
        title="Database restore",
        error="pg_restore: connection to postgresql://app:hunter2secret@db/app failed",
        hint="check password=hunter2secret",
        duration_s=3.0,
        state={"database": "live database unchanged"},
        next_moves=("retry",),
    )
    assert "hunter2secret" not in valid_message(blocks.failure_blocks(run_id="r", plan_hash="h", event=failure))
    assert "hunter2secret" not in valid_message(
        blocks.error_blocks(message="cannot connect to postgresql://a:hunter2secret@h/d", hint="")
    )


# --- after approval -------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["running", "succeeded", "failed", "aborted", "cancelled", "expired", "interrupted"])
def test_status_header_has_no_confirm_button(status: str) -> None:
    built = blocks.status_header_blocks(
        run_id="prod-1", plan=make_plan(), status=status, approved_by="U0BOB0001", requested_by="U0ALICE01"
    )
    text = valid_message(built)
    assert buttons(built) == []
    assert "approved by <@U0BOB0001>" in text and "Requested by <@U0ALICE01>" in text
    assert status in built[0]["text"]["text"].lower()


def test_status_header_icons_and_detail_mentions() -> None:
    built = blocks.status_header_blocks(
        run_id="r",
        plan=make_plan(),
        status="cancelled",
        approved_by=None,
        requested_by="U0ALICE01",
        detail="cancelled by <@U0CAROL1> <!channel>",
    )
    text = valid_message(built)
    assert "cancelled by <@U0CAROL1> &lt;!channel&gt;" in text
    assert "approved by" not in text
    icons = {
        s: blocks.status_header_blocks(run_id="r", plan=make_plan(), status=s, approved_by=None, requested_by="x")[0]
        for s in ("running", "succeeded", "failed", "aborted")
    }
    assert [h["text"]["text"][0] for h in icons.values()] == ["⏳", "✅", "❌", "🛑"]


# --- the thread ------------------------------------------------------------------------------------------

CHECKS = [
    {
        "url": "https://app.example.com/health",
        "healthy": True,
        "status": 200,
        "expected": 200,
        "attempts": 2,
        "latency_ms": 41.7,
        "error": "",
    },
    {
        "url": "https://api.example.com/health",
        "healthy": False,
        "status": 503,
        "expected": 200,
        "attempts": 10,
        "latency_ms": None,
        "error": "Service Unavailable",
    },
]


def test_step_messages_move_from_running_to_a_result() -> None:
    running = blocks.step_blocks(
        title="Database restore", status="running", summary="", duration_s=None, progress="restored 12 of 40 tables"
    )
    assert "⏳ *Database restore*" in valid_message(running) and "restored 12 of 40 tables" in json.dumps(running)
    done = blocks.step_blocks(
        title="Database restore",
        status="ok",
        summary="restored backups/prod/rp3.dump (48.2 MB)",
        duration_s=74.0,
        details={"previous": "app_pre_20240501", "source": "backups/prod/rp3.dump", "items": ["x"]},
    )
    text = valid_message(done)
    assert "✅ *Database restore*: done · 1m 14s" in text and "app_pre_20240501" in text
    skipped = blocks.step_blocks(title="Feature flags", status="skipped", summary="no flags", duration_s=0.1)
    assert "⏭" in valid_message(skipped)
    failed = blocks.step_blocks(title="Health checks", status="failed", summary="1 unhealthy", duration_s=30)
    assert "❌" in valid_message(failed)


def test_health_table_in_a_step_and_alone() -> None:
    step = blocks.step_blocks(
        title="Health checks", status="ok", summary="1/2", duration_s=9, details={"checks": CHECKS}
    )
    text = valid_message(step)
    assert "1/2 healthy" in text and "✅  https://app.example.com/health  200/200  2 tries  42 ms" in text
    assert "❌  https://api.example.com/health  503/200  10 tries  — ms" in text and "Service Unavailable" in text
    results = [
        HealthResult(
            url=f"https://h{i}.example.com",
            healthy=i % 2 == 0,
            attempts=1,
            last_status=200,
            last_error="",
            latency_ms=5.0,
            expected_status=200,
        )
        for i in range(500)
    ]
    alone = valid_message(blocks.health_blocks(results))
    assert "250/500 healthy" in alone and "1 try" in alone and "more" in alone


def test_failure_offers_only_the_engines_next_moves() -> None:
    event = StepFailed(
        run_id="prod-1",
        step="code",
        title="Code rollback",
        error="push rejected: the remote moved",
        hint="fetch and plan again",
        duration_s=4.2,
        state={
            "flags": "flags unchanged (step not reached)",
            "code": "unchanged: production/release still at aaaaaaa",
            "database": "live database unchanged (step not reached)",
            "backup": "pre-rollback dump kept: backups/prod/pre.dump",
        },
        next_moves=("abort", "retry"),
    )
    built = blocks.failure_blocks(run_id="prod-1", plan_hash="abc", event=event)
    text = valid_message(built)
    for fact in (
        "Code rollback failed",
        "push rejected",
        "fetch and plan again",
        "Where things stand",
        "still at aaaaaaa",
        "pre-rollback dump kept",
    ):
        assert fact in text, fact
    assert text.index("*Code*") < text.index("*Database*") < text.index("*Flags*") < text.index("*Backup*")
    found = buttons(built)
    assert [b["action_id"] for b in found] == [ids.Action.RETRY, ids.Action.ABORT]
    assert found[1]["style"] == "danger" and "confirm" in found[1]
    assert {b["value"] for b in found} == {ids.run_value("prod-1", "abc")}
    only_abort = replace(event, next_moves=("abort",))
    assert [b["action_id"] for b in buttons(blocks.failure_blocks(run_id="r", plan_hash="h", event=only_abort))] == [
        ids.Action.ABORT
    ]
    none = valid_message(blocks.failure_blocks(run_id="r", plan_hash="h", event=replace(event, next_moves=())))
    assert "rollback-bot status" in none


def _items(count: int, *, done: Collection[int] = ()) -> list[ChecklistRecord]:
    phases = ("immediate", "short_term", "medium_term")
    return [
        ChecklistRecord(
            run_id="prod-1",
            item_id=f"item-{i}",
            phase=phases[i % 3],
            position=i,
            text=f"Check thing number {i}",
            done_by="U0DAVE001" if i in done else None,
            done_at=NOW + timedelta(minutes=28) if i in done else None,
        )
        for i in range(count)
    ]


def test_checklist_has_a_done_button_per_open_item() -> None:
    built = blocks.checklist_blocks(run_id="prod-1", items=_items(9, done={4}), now=NOW)
    text = valid_message(built)
    assert "Immediate (0–15 minutes)" in text and "Medium-term (2+ hours)" in text
    found = buttons(built)
    assert len(found) == 8
    assert {b["action_id"] for b in found} == {ids.checklist_action(f"item-{i}") for i in range(9) if i != 4}
    assert {b["value"] for b in found} == {f"prod-1|item-{i}" for i in range(9) if i != 4}
    assert "done by <@U0DAVE001> at 03:40 UTC" in text


def test_forty_item_checklist_stays_within_fifty_blocks() -> None:
    built = blocks.checklist_blocks(run_id="prod-1", items=_items(40, done={0, 1, 2}), now=NOW)
    text = valid_message(built)
    assert len(built) <= 50
    assert text.count("done by <@U0DAVE001> at 03:40 UTC") == 3
    assert {b["value"] for b in buttons(built)} == {f"prod-1|item-{i}" for i in range(3, 40)}


def test_a_long_checklist_is_grouped_by_phase_with_every_button_kept() -> None:
    built = blocks.checklist_blocks(run_id="prod-1", items=_items(90, done={5}), now=NOW)
    text = valid_message(built)
    assert len(built) <= 50
    assert "done by <@U0DAVE001> at 03:40 UTC" in text and "Short-term (15 minutes – 2 hours)" in text
    found = buttons(built)
    assert {b["value"] for b in found} == {f"prod-1|item-{i}" for i in range(90) if i != 5}
    assert all(len(b["text"]["text"]) <= 75 for b in found)
    valid_message(blocks.checklist_blocks(run_id="prod-1", items=_items(1500), now=NOW))


def test_finished_summary() -> None:
    event = RunFinished(
        run_id="prod-1",
        env="prod",
        outcome="succeeded",
        duration_s=192.0,
        dry_run=False,
        health=(
            HealthResult(
                url="https://app.example.com/health",
                healthy=True,
                attempts=2,
                last_status=200,
                last_error="",
                latency_ms=40.0,
                expected_status=200,
            ),
        ),
        checklist=(ChecklistItem(id="logs", phase="immediate", text="Monitor logs"),),
        summary="safety: ok; code: ok",
    )
    text = valid_message(blocks.finished_blocks(event=event))
    assert "Rollback of prod succeeded* in 3m 12s" in text and "1/1 healthy" in text and "checklist (1 items)" in text
    aborted = valid_message(blocks.finished_blocks(event=replace(event, outcome="aborted", health=())))
    assert "🛑" in aborted
    assert "nothing was changed" in valid_message(blocks.finished_blocks(event=replace(event, dry_run=True)))


# --- stakeholders ----------------------------------------------------------------------------------------


def test_stakeholder_updates_are_plain_language() -> None:
    common: dict[str, Any] = {"env": "prod", "now": NOW, "started_at": NOW - timedelta(minutes=10)}
    started = blocks.stakeholder_text(
        phase="started", version_from=NOW - timedelta(hours=2), next_update_in=timedelta(minutes=10), **common
    )
    assert started == (
        "We are rolling back production to the version from 2 hours ago. Started 03:02 UTC. Next update by 03:22 UTC."
    )
    messages = [
        started,
        blocks.stakeholder_text(phase="step", step="code", **common),
        blocks.stakeholder_text(
            phase="step", step="database", data_as_of=NOW - timedelta(hours=2, minutes=2), **common
        ),
        blocks.stakeholder_text(phase="step", step="health", **common),
        blocks.stakeholder_text(phase="running", next_update=NOW + timedelta(minutes=10), **common),
        blocks.stakeholder_text(phase="failed", **common),
        blocks.stakeholder_text(phase="finished", healthy=True, **common),
        blocks.stakeholder_text(phase="aborted", **common),
    ]
    assert "The previous version of the code is live again." in messages[1]
    assert blocks.stakeholder_text(phase="step:code", **common) == messages[1]
    assert "progress" in json.dumps(blocks.stakeholder_update_blocks(env="prod", phase="step:code", text="x", now=NOW))
    assert "Customer data has been restored to its state at 01:10 UTC." in messages[2]
    assert "Health checks pass" in messages[3]
    assert "still in progress" in messages[4] and "10 minutes ago" in messages[4]
    assert "hit a problem; the team is on it" in messages[5]
    for message in messages:
        assert not SHA40.search(message)
        assert "pg_restore" not in message and "prod " not in message
        built = blocks.stakeholder_update_blocks(env="prod", phase="step", text=message, now=NOW)
        assert message in valid_message(built)


def test_stakeholder_blocks_scrub_shas_and_secrets_a_caller_passes_in() -> None:
    text = f"Rolled back {DEPLOYED} via postgresql://a:hunter2secret@db/app"
    built = blocks.stakeholder_update_blocks(env="prod", phase="finished", text=text, now=NOW)
    shown = valid_message(built)
    assert not SHA40.search(shown) and "aaaaaaa" not in shown and "hunter2secret" not in shown
    assert "Production: rollback complete" in shown


# --- views -----------------------------------------------------------------------------------------------


def _run(i: int, status: str) -> RunRecord:
    return RunRecord(
        id=f"prod-20240501-{i:06d}",
        env="prod" if i % 2 else "staging",
        status=status,
        source="slack",
        requested_by="U0ALICE01",
        approved_by="U0BOB0001",
        plan=make_plan().to_dict(),
        plan_hash="h",
        dry_run=i % 5 == 0,
        created_at=NOW - timedelta(hours=i),
        started_at=NOW - timedelta(hours=i),
        finished_at=None,
        heartbeat_at=None,
        current_step="database",
        error=None,
    )


def test_home_view_with_two_hundred_recent_runs() -> None:
    view = blocks.home_view(
        running=[_run(0, "running")],
        recent=[_run(i, "succeeded" if i % 3 else "failed") for i in range(200)],
        environments=[
            ("prod", "production/release, revert, postgres dump", ["restore point #3, 2h 00m old", "never rehearsed"]),
            ("staging", "<!channel> staging", []),
        ],
        now=NOW,
    )
    text = valid_view(view, "home")
    assert view["type"] == "home" and len(view["blocks"]) <= 100
    assert "Running now" in text and "step database" in text and "Recent runs" in text
    assert "`aaaaaaa` → `bbbbbbb`" in text and "✅" in text and "❌" in text and "older" in text
    assert "*staging*: &lt;!channel&gt; staging" in text
    assert "restore point #3, 2h 00m old" in text and "never rehearsed" in text
    empty = valid_view(blocks.home_view(running=[], recent=[], environments=[], now=NOW), "home")
    assert "No rollback in progress" in empty


def test_home_names_a_rehearsal_for_what_it_is() -> None:
    rehearsing = replace(_run(1, "running"), env="prod@r")
    text = valid_view(blocks.home_view(running=[rehearsing], recent=[rehearsing], environments=[], now=NOW), "home")
    assert text.count("*prod (rehearsal)*") == 2 and "prod@r" not in text


def test_options_modal() -> None:
    view = blocks.options_modal(environments=["prod", "staging"], private_metadata="C0INC")
    valid_view(view, "modal")
    assert len(view["title"]["text"]) <= 24 and view["callback_id"] == ids.View.OPTIONS
    by_block = {b["block_id"]: b for b in view["blocks"]}
    assert set(by_block) == {ids.Field.ENV, ids.Field.TARGET, ids.Field.CODE, ids.Field.DB, ids.Field.OPTIONS}
    assert all(b["element"]["action_id"] == b["block_id"] for b in view["blocks"])
    assert by_block[ids.Field.ENV]["optional"] is False and by_block[ids.Field.TARGET]["optional"] is True
    codes = [o["value"] for o in by_block[ids.Field.CODE]["element"]["options"]]
    assert codes == [ids.DEFAULT_CHOICE, "revert", "force-push", "none"]
    dbs = [o["value"] for o in by_block[ids.Field.DB]["element"]["options"]]
    assert dbs == [ids.DEFAULT_CHOICE, "dump", "rds-snapshot", "rds-pitr", "none"]
    edit = blocks.options_modal(
        environments=["prod", "staging"],
        initial_env="staging",
        initial={"to": "bbbbbbb", "code": "force-push", "db": "none", "dry_run": True},
    )
    valid_view(edit, "modal")
    by_block = {b["block_id"]: b for b in edit["blocks"]}
    assert by_block[ids.Field.ENV]["element"]["initial_option"]["value"] == "staging"
    assert by_block[ids.Field.TARGET]["element"]["initial_value"] == "bbbbbbb"
    assert by_block[ids.Field.CODE]["element"]["initial_option"]["value"] == "force-push"
    assert [o["value"] for o in by_block[ids.Field.OPTIONS]["element"]["initial_options"]] == [ids.Choice.DRY_RUN]
    valid_view(blocks.options_modal(environments=[]), "modal")


def test_typed_confirmation_modal() -> None:
    view = blocks.typed_confirmation_modal(
        env="prod",
        risks=["rewrites the history of production/release", "replaces the live database <!channel>"],
        private_metadata=ids.run_value("prod-1", "abc"),
    )
    text = valid_view(view, "modal")
    assert view["callback_id"] == ids.View.TYPED_CONFIRMATION and view["private_metadata"] == "prod-1|abc"
    assert "rewrites the history of production/release" in text and "&lt;!channel&gt;" in text
    field = view["blocks"][-1]
    assert field["block_id"] == ids.Field.TYPED_ENV and field["element"]["action_id"] == ids.Field.TYPED_ENV
    assert "(prod)" in field["label"]["text"]


def test_help_ephemeral_and_errors() -> None:
    help_text = valid_message(blocks.help_blocks(environments=["prod", "staging"]))
    for part in (
        "/rollback ENV [to SHA] [--code revert|force-push|none]",
        "--db dump|rds-snapshot|rds-pitr|none",
        "--no-flags",
        "--dry-run",
        "`/rollback` alone",
        "`/rollback status`",
        "`/rollback history`",
        "`/rollback cancel`",
        "`/rollback help`",
        "`prod`, `staging`",
    ):
        assert part in help_text, part
    said = valid_message(blocks.ephemeral_text_blocks("already approved by <@U0BOB0001> <!here>\n" + "x" * 9000))
    assert "<@U0BOB0001>" in said and "<!here>" not in said
    error = blocks.error_blocks(message="unknown environment `prd`", hint="known: prod, staging")
    assert "❌ unknown environment `prd`" in valid_message(error) and "known: prod, staging" in json.dumps(error)


def test_an_rds_plan_names_the_new_instance_and_what_aurora_creates_instead() -> None:
    database = DatabasePlan(engine="postgres", action="rds-snapshot", source="snap-1", new_instance="prod-restored")
    text = valid_message(blocks.plan_blocks(run_id="r", plan=make_plan(database=database), now=NOW, expires_at=NOW))
    assert "*New RDS instance*: `prod-restored`" in text
    assert "Aurora: a new cluster of that name, with its writer `prod-restored-instance-1`" in text
