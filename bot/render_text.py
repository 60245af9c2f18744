"""Plain-text and Markdown renderings for the terminal: plan, status, history, timeline."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot import format as fmt
from bot.backends.base import aurora_writer_id
from bot.engine.checklist import PHASE_TITLES, PHASES
from bot.engine.plan import Plan
from bot.engine.readiness import environment_readiness
from bot.engine.run_status import RunView, shown_env
from bot.redact import redact
from bot.store import AuditEntry, ChecklistRecord, LockRecord, RunRecord, now

if TYPE_CHECKING:
    from bot.services import Services

CODE_WORDS = {
    "revert": "revert (one new commit restoring the target's tree; history kept)",
    "force-push": "force-push (rewrites history; the old head is saved on the remote first)",
    "none": "none (code left as it is)",
}
DB_WORDS = {
    "dump": "restore from a dump (restored aside, then swapped in)",
    "rds-snapshot": "restore an RDS snapshot (creates a NEW instance, or for Aurora a NEW cluster)",
    "rds-pitr": "RDS point-in-time restore (creates a NEW instance, or for Aurora a NEW cluster)",
    "none": "none",
}


def plan_text(plan: Plan) -> str:
    lines = [
        f"Rollback plan for {plan.env}" + ("  [DRY RUN: nothing will be changed]" if plan.dry_run else ""),
        f"  requested by   {plan.requested_by}",
        f"  deployed       {plan.deployed.short}  {plan.deployed.subject}   ({plan.remote}/{plan.branch})",
        f"  target         {plan.target.short}  {plan.target.subject}   ({plan.target_source})",
        f"  code           {CODE_WORDS.get(plan.code, plan.code)}",
    ]
    if plan.undone:
        lines.append(f"  undoes         {len(plan.undone)} commit(s):")
        lines += [f"                   {c.short}  {c.subject}" for c in plan.undone[:15]]
        if len(plan.undone) > 15:
            lines.append(f"                   … and {len(plan.undone) - 15} more")
    db = plan.database
    lines.append(f"  database       {DB_WORDS.get(db.action, db.action)}" + (f" on {db.where}" if db.where else ""))
    if db.source:
        age = plan.restore_point_age()
        lines.append(
            f"  restore from   {db.source}" + (f"  ({db.source_label}, {age} old)" if age else f"  ({db.source_label})")
        )
    if db.new_instance:
        lines.append(f"  new instance   {db.new_instance} (RDS restores never touch the old instance; repoint the app)")
        writer = aurora_writer_id(db.new_instance)
        lines.append(f"                 Aurora: a new cluster {db.new_instance} with its writer {writer}")
    if db.prestaged:
        lines.append(f"  prestaged      {db.standby_note}")
    if db.pre_dump and db.prestaged:
        lines.append(f"  pre-rollback   dump of the kept database to {db.pre_dump}, after the swap, verified, kept")
    elif db.pre_dump:
        lines.append(f"  pre-rollback   dump to {db.pre_dump}, verified before anything changes, kept")
    if plan.flags:
        for flag in plan.flags:
            lines.append(f"  flags off      {flag.provider}: {', '.join(flag.keys)}")
    else:
        lines.append("  flags          none")
    if plan.health:
        for spec in plan.health:
            lines.append(
                f"  health         {spec.url} expects {spec.expect_status}, "
                f"{spec.consecutive} in a row within {spec.attempts} tries"
            )
    else:
        lines.append("  health         none configured")
    if plan.migration_risks:
        lines.append("  MIGRATION RISKS (destructive SQL between the two commits):")
        for risk in plan.migration_risks:
            lines.append(f"    {risk.file}:{risk.line}  [{risk.kind}]  {risk.statement}")
        lines.append("    A code rollback does not undo these; a database restore is the way back from them.")
    if plan.readiness is not None:
        at = now()
        said = plan.readiness.sentences(at)
        lines += [f"  {'readiness' if i == 0 else '':<14} {line}" for i, line in enumerate(said)]
        lines += [f"  NOT PROVEN: {warning}" for warning in plan.readiness.warnings(at)]
    for warning in plan.warnings:
        lines.append(f"  WARNING: {warning}")
    return redact("\n".join(lines))


STATUS_ICONS = {"ok": "✅", "failed": "❌", "skipped": "⏭", "running": "⏳", "pending": "·"}


def run_line(record: RunRecord, status: str | None = None) -> str:
    plan = record.plan
    deployed, target = plan["deployed"]["sha"][:7], plan["target"]["sha"][:7]
    when = f"{record.created_at:%Y-%m-%d %H:%M}"
    shown = status or record.status
    dry = " (dry run)" if record.dry_run else ""
    env = shown_env(record.env)
    return f"{record.id}  {when}  {env:<8} {shown:<11} {deployed} → {target}  by {record.requested_by}{dry}"


def status_text(views: list[RunView], locks: list[LockRecord]) -> str:
    if not views and not locks:
        return "No rollback in progress."
    lines = []
    for current in views:
        lines.append(run_line(current.record, current.status))
        for step in current.steps:
            lines.append(f"    {STATUS_ICONS.get(step.status, '?')} {step.name:<10} {step.summary}")
        if current.status in ("failed", "interrupted"):
            lines.append(f"    next: rollback-bot resume {current.record.id} --retry | --skip | --abort")
    for lock in locks:
        lines.append(f"lock: {lock.env} held by run {lock.run_id} ({lock.holder}) since {lock.acquired_at:%H:%M} UTC")
    return redact("\n".join(lines))


def readiness_text(services: Services) -> str:
    """`status`'s second half: each environment's restore point, last drill and last rehearsal."""
    at, lines = now(), ["", "Readiness:"]
    for name, env in sorted(services.config.settings.environments.items()):
        said = environment_readiness(services.store, name, has_database=env.database.engine != "none", at=at)
        lines.append(f"  {name}: {said[0]}")
        lines += [f"  {'':<{len(name)}}  {line}" for line in said[1:]]
    return redact("\n".join(lines))


def timeline_markdown(
    record: RunRecord, trail: list[AuditEntry], items: list[ChecklistRecord], steps_view: RunView
) -> str:
    plan = Plan.from_dict(record.plan)
    lines = [
        f"# Rollback {record.id}",
        "",
        f"- **Environment:** {record.env}",
        f"- **Outcome:** {steps_view.status}",
        f"- **Requested by:** {record.requested_by}"
        + (f"; **approved by:** {record.approved_by}" if record.approved_by else ""),
        f"- **Deployed → target:** `{plan.deployed.short}` {plan.deployed.subject} → "
        f"`{plan.target.short}` {plan.target.subject}",
        f"- **Code:** {plan.code}; **database:** {plan.database.action}",
    ]
    if record.started_at and record.finished_at:
        lines.append(f"- **Duration:** {fmt.duration(record.finished_at - record.started_at)}")
    lines += ["", "## Timeline (UTC)", "", "| time | who | what | detail |", "|---|---|---|---|"]
    for entry in trail:
        detail = entry.detail.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {entry.at:%H:%M:%S} | {entry.actor} | {entry.action} | {detail} |")
    lines += ["", "## Steps", "", "| step | result | attempts | summary |", "|---|---|---|---|"]
    for step in steps_view.steps:
        lines.append(f"| {step.name} | {step.status} | {step.attempts} | {step.summary.replace('|', '/')} |")
    if items:
        lines += ["", "## Post-rollback checklist"]
        for phase in PHASES:
            phase_items = [i for i in items if i.phase == phase]
            if phase_items:
                lines += ["", f"### {PHASE_TITLES[phase]}"]
                for item in phase_items:
                    done = f" — done by {item.done_by} at {item.done_at:%H:%M} UTC" if item.done_at else ""
                    lines.append(f"- [{'x' if item.done_at else ' '}] {item.text}{done}")
    return redact("\n".join(lines)) + "\n"
