"""What a drill tells people: the loud alert when one fails (as outbox notices) and its result in a terminal.

The alert goes top level, at once, into the environment's `[drill] channel` (else the stakeholder
channels), mentioning the `[contacts]`: which restore point failed, at what, and what to do now, while
there is time. handlers/blocks_drill.py renders it; the engine never talks to Slack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot import format as fmt
from bot.outbox import Notice, Outbox
from bot.store import ReadinessCheck, iso

if TYPE_CHECKING:
    from bot.services import Services

DRILL_FAILED = "drill_failed"  # the outbox notice kind (handlers/outbox_render.py)


def what_to_do(env: str, stage: str, point_id: int | None, hint: str = "") -> str:
    """The next move, in plain words, for a drill that failed at `stage`."""
    point = f"restore point #{point_id}" if point_id is not None else "the restore point"
    retake = f"take a new restore point now (`rollback-bot snapshot {env}`) and drill it (`rollback-bot drill {env}`)"
    moves = {
        "setup": f"{hint + '; ' if hint else ''}until a drill passes, a rollback of {env} cannot count on its data",
        "fetch": f"the stored dump of {point} is not the one that was taken: {retake}, then check the backup storage",
        "restore": f"{point} does not restore, so a rollback to it would fail at its database step: {retake};"
        f" then find out why{': ' + hint if hint else ''}",
        "rows": f"{point} restored but its tables could not be read: {retake}",
        "checks": f"{point} restores, but its data fails the check: a rollback to it would bring that data back;"
        f" look at what the dump holds, and {retake} once the data is right",
        "cleanup": f"{point} itself is fine, but the drill's scratch database is still on the database server:"
        " drop it by hand",
    }
    return moves.get(stage, hint or retake)


def drill_failed_notices(services: Services, check: ReadinessCheck) -> list[Notice]:
    details = check.details
    point = details.get("restore_point") or {}
    payload: dict[str, Any] = {
        "env": check.env,
        "check_id": check.id,
        "restore_point": point or None,
        "stage": details.get("stage", "setup"),
        "failure": check.failure or "the drill failed",
        "what_to_do": what_to_do(check.env, details.get("stage", "setup"), point.get("id"), details.get("hint", "")),
        "contacts": list(dict.fromkeys(services.config.settings.contacts.values())),
        "requested_by": check.requested_by,
        "source": check.source,
        "seconds": check.seconds,
        "failed_checks": [c for c in details.get("checks", []) if not c.get("passed")][:5],
        "at": iso(check.finished_at or check.started_at),
    }
    return [
        Notice(channel=channel, kind=DRILL_FAILED, payload=payload, dedupe_key=f"drill-failed:{check.id}:{channel}")
        for channel in details.get("alerted", [])
    ]


def alert(services: Services, check: ReadinessCheck) -> list[str]:
    """Enqueue the failed drill's alert (once per drill and channel, however often this is called)."""
    outbox = Outbox(services.store)
    notices = drill_failed_notices(services, check)
    for notice in notices:
        outbox.enqueue(notice)
    return [n.channel for n in notices]


def drill_lines(check: ReadinessCheck) -> list[str]:
    """The result for a terminal: verdict, restore point, sizes and times, rows per table, checks, cleanup."""
    d, icon = check.details, {"passed": "✅", "failed": "❌"}.get(check.status, "⏹")
    took = fmt.duration(check.seconds) if check.seconds is not None else "?"
    lines = [f"{icon} Drill #{check.id} of {check.env}: {check.status.upper()} ({took})"]
    if check.failure:
        lines.append(f"   {check.failure}")
    point = d.get("restore_point")
    if point:
        size = d.get("dump_size") or point.get("recorded_size")
        dump = f", dump {str(point.get('dump', '')).rsplit('/', 1)[-1]}" + (f" ({fmt.size(size)})" if size else "")
        checked = ", sha256 verified" if d.get("sha256_verified") else ""
        lines.append(f"   restore point #{point['id']} at {str(point['commit'])[:7]}{dump}{checked}")
    if d.get("restore_seconds") is not None:
        scratch = f" into {d['scratch_database']}" if d.get("scratch_database") else ""
        lines.append(f"   restored{scratch} in {fmt.duration(d['restore_seconds'])}")
    rows: dict[str, int] = d.get("rows") or {}
    if rows:
        width = max(len(t) for t in rows)
        lines.append("   rows per table:")
        lines += [f"     {table:<{width}}  {n:,}" for table, n in rows.items()]
        lines.append(f"     {'total':<{width}}  {d.get('total_rows', 0):,} in {len(rows)} table(s)")
    for result in d.get("checks", []):
        got = f"→ {result['value']}" if result.get("value") is not None else f"error: {result.get('error')}"
        lines.append(f"   {'✅' if result['passed'] else '❌'} check {result['sql']}  {got}")
    for warning in d.get("warnings") or []:
        lines.append(f"   warning: {warning}")
    if d.get("dropped") or d.get("left_behind"):
        lines.append(f"   {d.get('dropped') or 'LEFT BEHIND: ' + str(d['left_behind'])}")
    if check.status == "failed":
        move = what_to_do(check.env, d.get("stage", "setup"), check.restore_point_id, d.get("hint", ""))
        lines.append(f"   what to do: {move}")
        alerted = d.get("alerted") or []
        lines.append(
            f"   alerted: {', '.join(alerted)}"
            if alerted
            else "   alerted: nobody (no channel, no stakeholder channel)"
        )
    return lines
