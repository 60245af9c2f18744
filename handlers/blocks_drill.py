"""A failed restore drill in Block Kit: loud, top level, the contacts mentioned, what failed and what to do.

Pure: the notice's payload (bot/engine/drill_story.py) in, blocks out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bot import format as fmt
from bot.store import now, parse_iso
from handlers.blocks_kit import Block, code, context, cut, esc, fields_section, header, hhmm, section
from handlers.blocks_run import contact_mention

STAGES = {
    "setup": "before restoring anything",
    "fetch": "checking the stored dump",
    "restore": "restoring it",
    "rows": "reading the restored tables",
    "checks": "the data checks",
    "cleanup": "dropping the scratch database",
}


def drill_failed_blocks(payload: dict[str, Any]) -> list[Block]:
    env = str(payload["env"])
    point = payload.get("restore_point") or {}
    who = " ".join(contact_mention(str(c)) for c in payload.get("contacts", []))
    at: datetime = parse_iso(payload.get("at")) or now()
    stage = STAGES.get(str(payload.get("stage", "setup")), esc(payload.get("stage")))
    blocks = [
        header(f"🚨 Restore drill FAILED: {env}" + (f", restore point #{point['id']}" if point.get("id") else "")),
        section(
            (f"{who}: " if who else "")
            + f"the backup a rollback of *{esc(env)}* would restore failed its drill, at {stage}."
            + " Found now, not during an incident.\n*What failed*\n"
            + code(payload.get("failure", ""), limit=1200)
        ),
    ]
    if point:
        created = parse_iso(point.get("created_at"))
        fields = [
            f"*Restore point*\n#{point['id']} at `{esc(str(point.get('commit', ''))[:7])}`",
            f"*Taken*\n{fmt.duration(at - created, rough=True) + ' ago' if created else '?'}",
            f"*Dump*\n{esc(str(point.get('dump') or 'none').rsplit('/', 1)[-1])}",
        ]
        if point.get("recorded_size"):
            fields.append(f"*Recorded size*\n{fmt.size(point['recorded_size'])}")
        blocks.append(fields_section(fields))
    for check in payload.get("failed_checks", [])[:5]:
        got = f"returned {check['value']}" if check.get("value") is not None else f"error: {check.get('error')}"
        blocks.append(section(f"❌ {code(check.get('sql', ''), limit=400)} {esc(cut(got, 400))}"))
    blocks.append(section(f"*What to do*\n{esc(cut(str(payload.get('what_to_do', '')), 1500))}"))
    took = f" after {fmt.duration(payload['seconds'])}" if payload.get("seconds") is not None else ""
    by = "scheduled" if payload.get("source") == "schedule" else f"run by {esc(payload.get('requested_by', '?'))}"
    blocks.append(context(f"Drill #{esc(payload.get('check_id', '?'))} · {by}{took} · {hhmm(at)}"))
    return blocks


def render_drill_failed(payload: dict[str, Any]) -> tuple[str, list[Block]]:
    point = payload.get("restore_point") or {}
    which = f" (restore point #{point['id']})" if point.get("id") else ""
    text = cut(f"🚨 Restore drill of {payload['env']} failed{which}: {payload.get('failure', '')}", 1000)
    return text, drill_failed_blocks(payload)
