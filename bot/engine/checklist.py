"""The seed's post-rollback checklist in three phases, tailored to what this run did."""

from __future__ import annotations

from dataclasses import dataclass

PHASES = ("immediate", "short_term", "medium_term")
PHASE_TITLES = {
    "immediate": "Immediate (0–15 minutes)",
    "short_term": "Short-term (15 minutes – 2 hours)",
    "medium_term": "Medium-term (2+ hours)",
}


@dataclass(frozen=True)
class ChecklistItem:
    id: str
    phase: str
    text: str


@dataclass(frozen=True)
class ChecklistFacts:
    """What ran, so only the items that apply are listed."""

    env: str
    code_strategy: str  # revert | force-push | none (or skipped)
    db_action: str  # dump | rds-snapshot | rds-pitr | none
    pre_dump: str | None  # path of the pre-rollback dump, if one was taken
    previous_database: str | None  # where the pre-restore live data was kept
    new_endpoint: str | None  # RDS: the new instance's endpoint
    backup_ref: str | None  # force-push: the ref keeping the old head
    health_urls: tuple[str, ...]
    flags_turned_off: tuple[str, ...]


def build_checklist(facts: ChecklistFacts) -> list[ChecklistItem]:
    items: list[ChecklistItem] = []

    def add(phase: str, item_id: str, text: str) -> None:
        items.append(ChecklistItem(id=item_id, phase=phase, text=text))

    rds = facts.db_action.startswith("rds-")
    add("immediate", "logs", "Monitor application logs for errors")
    add("immediate", "errors", "Check the error tracking dashboard (Sentry/Bugsnag)")
    add("immediate", "user-flows", "Verify critical user flows manually")
    if facts.health_urls:
        add("immediate", "health", "Confirm health endpoints return 200: " + ", ".join(facts.health_urls))
    if facts.flags_turned_off:
        add("immediate", "flags", "Confirm the flags are off for users: " + ", ".join(facts.flags_turned_off))
    add("immediate", "stakeholders", "Update team and stakeholders on rollback status")

    if rds:
        endpoint = f" to {facts.new_endpoint}" if facts.new_endpoint else ""
        add("short_term", "rds-url", f"Update the DATABASE_URL environment variable{endpoint}")
        add("short_term", "rds-dns", "Update DNS / load balancer if needed")
        add("short_term", "rds-restart", "Restart application services")
        add("short_term", "rds-connectivity", "Verify database connectivity")
    elif facts.db_action == "dump" and facts.previous_database:
        add("short_term", "db-verify", "Verify the application reads the restored database correctly")
    add("short_term", "metrics", "Monitor key business metrics")
    add("short_term", "support", "Check customer support channels")
    add(
        "short_term",
        "timeline",
        "Document the incident timeline (`rollback-bot timeline` has the bot's part)",
    )

    if facts.pre_dump:
        add(
            "medium_term",
            "keep-dump",
            f"Keep the pre-rollback dump until stability is confirmed: {facts.pre_dump}",
        )
    if facts.previous_database:
        add(
            "medium_term",
            "old-db",
            f"Decide when to drop the pre-restore data kept as {facts.previous_database}"
            + (
                f" (the verified pre-rollback dump {facts.pre_dump} holds the same data)"
                if facts.pre_dump
                else " (no verified dump of it exists: it is the only copy of the pre-rollback data)"
            ),
        )
    if facts.backup_ref:
        add("medium_term", "git-cleanup", f"Clean up temporary git refs once stable: {facts.backup_ref}")
    else:
        add("medium_term", "git-cleanup", "Clean up temporary git branches")
    if rds:
        add("medium_term", "rds-cleanup", "Plan the old RDS instance's (or Aurora cluster's) cleanup")
    add("medium_term", "review", "Conduct the post-incident review")
    add("medium_term", "procedures", "Update rollback procedures based on learnings")
    return items
