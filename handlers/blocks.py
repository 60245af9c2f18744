"""Pure Block Kit builders: data in, blocks (or a view) out. No Slack client, no I/O, no clock.

Import from here; the builders live in siblings by surface so each stays small:
- blocks_plan: the plan message and what it turns into (status header);
- blocks_run: step messages, failure with next moves, health table, checklist, the final summary;
- blocks_stakeholder: plain-language updates for the stakeholder channels;
- blocks_views: App Home, the options and typed-confirmation modals, help, ephemeral answers, errors;
- blocks_kit: escaping, redaction and Slack's limits, shared by all of them.

Every builder redacts and mrkdwn-escapes what it is given, and stays within Slack's limits whatever
the size of its input.
"""

from __future__ import annotations

from handlers.blocks_kit import Block, esc, mention
from handlers.blocks_plan import plan_blocks, plan_text_fallback, status_header_blocks
from handlers.blocks_run import (
    checklist_blocks,
    failure_blocks,
    finished_blocks,
    health_blocks,
    health_rows,
    reminder_blocks,
    step_blocks,
    undo_flags_blocks,
)
from handlers.blocks_stakeholder import (
    STAKEHOLDER_PHASES,
    environment_words,
    stakeholder_text,
    stakeholder_update_blocks,
)
from handlers.blocks_views import (
    ephemeral_text_blocks,
    error_blocks,
    help_blocks,
    home_view,
    options_modal,
    typed_confirmation_modal,
)

__all__ = [
    "STAKEHOLDER_PHASES",
    "Block",
    "checklist_blocks",
    "environment_words",
    "ephemeral_text_blocks",
    "error_blocks",
    "esc",
    "failure_blocks",
    "finished_blocks",
    "health_blocks",
    "health_rows",
    "help_blocks",
    "home_view",
    "mention",
    "options_modal",
    "plan_blocks",
    "plan_text_fallback",
    "reminder_blocks",
    "stakeholder_text",
    "stakeholder_update_blocks",
    "status_header_blocks",
    "step_blocks",
    "typed_confirmation_modal",
    "undo_flags_blocks",
]
