"""Every action_id, callback_id and block_id the app uses, in one place (Dispatch style: enums)."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    CONFIRM = "rollback_confirm"
    CANCEL = "rollback_cancel"
    EDIT = "rollback_edit"
    RETRY = "rollback_retry"
    SKIP = "rollback_skip"
    ABORT = "rollback_abort"
    UNDO_FLAGS = "rollback_undo_flags"
    CHECKLIST_DONE = "checklist_done"  # one per item: f"{CHECKLIST_DONE}:{item_id}" keeps action_ids unique
    BREAK_GLASS = "rollback_break_glass"  # on a plan nobody confirmed in time: run it alone (opens a modal)
    TAKE_OVER = "rollback_take_over"  # on a failed or interrupted run: make it yours (opens a modal)
    BREAK_LOCK = "rollback_break_lock"  # on a plan refused for the lock: free the environment (opens a modal)


class View(StrEnum):
    OPTIONS = "rollback_options"  # pick environment and options (from `/rollback` alone, or Edit)
    TYPED_CONFIRMATION = "rollback_typed_confirmation"  # type the environment name for risky plans
    BREAK_GLASS = "rollback_break_glass"  # the justification, and the environment's name
    TAKE_OVER = "rollback_take_over"  # the reason
    BREAK_LOCK = "rollback_break_lock"  # the reason


class Field(StrEnum):
    """block_id / action_id pairs inside the modals."""

    ENV = "env"
    TARGET = "target"
    CODE = "code"
    DB = "db"
    OPTIONS = "options"  # checkboxes: no-flags, dry-run
    TYPED_ENV = "typed_env"
    JUSTIFICATION = "justification"  # break-glass
    REASON = "reason"  # take over, break a lock


class Choice(StrEnum):
    """Option values of the options modal's checkboxes (Field.OPTIONS)."""

    NO_FLAGS = "no_flags"
    DRY_RUN = "dry_run"


DEFAULT_CHOICE = "default"  # code/db selects: "use the environment's configured default"


class Block(StrEnum):
    """block_ids of message blocks a handler may need to find again."""

    PLAN_ACTIONS = "plan_actions"
    FAILURE_ACTIONS = "failure_actions"
    LOCK_ACTIONS = "lock_actions"  # Break lock…, on a plan refused because the environment is locked


def checklist_action(item_id: str) -> str:
    return f"{Action.CHECKLIST_DONE}:{item_id}"


def checklist_value(run_id: str, item_id: str) -> str:
    return f"{run_id}|{item_id}"


def parse_checklist_value(value: str) -> tuple[str, str]:
    run_id, _, item_id = value.partition("|")
    return run_id, item_id


def run_value(run_id: str, plan_hash: str) -> str:
    """A button's value binds it to one run AND one plan: a stale button cannot approve a changed plan."""
    return f"{run_id}|{plan_hash}"


def parse_run_value(value: str) -> tuple[str, str]:
    run_id, _, plan_hash = value.partition("|")
    return run_id, plan_hash
