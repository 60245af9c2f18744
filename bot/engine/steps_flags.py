"""Feature flags: record every flag's state, then turn them off, then read them back.

The states before are written to the journal before the first change, so a failure half-way (or an
"undo flags" later) knows exactly what to put back.
"""

from __future__ import annotations

from bot.backends.base import FlagState
from bot.engine.outcomes import FlagRow, FlagsOutcome
from bot.engine.step_context import StepContext, StepOutcome
from bot.errors import FlagError, RollbackError


def flag_checks(ctx: StepContext, passed: list[str], failures: list[str]) -> None:
    if not ctx.plan.flags:
        return
    if ctx.flags_error is not None:
        failures.append(ctx.flags_error.message)
        return
    for provider, wanted in zip(ctx.flags, ctx.plan.flags, strict=True):
        try:
            provider.check()
            states = provider.states(list(wanted.keys))
        except RollbackError as error:
            failures.append(f"{provider.describe()}: {error.message}")
            continue
        unknown = [s.key for s in states if s.on is None and provider.provider != "webhook"]
        if unknown:
            failures.append(f"{provider.describe()}: unknown flag(s) {', '.join(unknown)}")
        else:
            passed.append(f"{provider.describe()} answers: {', '.join(_state_words(s) for s in states)}")


def feature_flags(ctx: StepContext) -> StepOutcome:
    plan = ctx.plan
    if not plan.flags:
        return StepOutcome("skipped", "no feature flags to turn off")
    before = [(p, p.states(list(f.keys))) for p, f in zip(ctx.flags, plan.flags, strict=True)]
    recorded = {p.describe(): [FlagRow.of(s) for s in states] for p, states in before}
    # On a retry, the first attempt may have turned some flags off already: the states to put back are
    # the ones journaled before that attempt changed anything, not the ones we read now.
    journal = next((s.details for s in ctx.store.steps(ctx.run_id) if s.name == "flags"), None)
    earlier = FlagsOutcome.from_details(journal).before
    for name, rows in recorded.items():
        first_seen = {row.key: row for row in earlier.get(name, [])}
        recorded[name] = [first_seen.get(row.key, row) for row in rows]
    if plan.dry_run:
        words = "; ".join(
            f"{name}: {', '.join(_state_words(r.state()) for r in rows)}" for name, rows in recorded.items()
        )
        return StepOutcome("skipped", f"dry run: would turn off {words}", FlagsOutcome(before=recorded).to_details())
    ctx.store.note_step(ctx.run_id, "flags", FlagsOutcome(before=recorded).to_details())  # before anything changes
    after: dict[str, list[FlagRow]] = {}
    turned_off: list[str] = []
    already_off: list[str] = []
    for provider, states in before:
        rows = after.setdefault(provider.describe(), [])
        first_seen = {row.key: row for row in recorded[provider.describe()]}
        for state in states:
            if state.on is False:
                # No write for a flag the vendor reports off: after a crash, the earlier attempt's write
                # is not repeated (it counts as ours if the journal saw the flag on before it).
                rows.append(FlagRow.of(state))
                (turned_off if first_seen[state.key].on else already_off).append(state.key)
                ctx.progress(f"{provider.describe()}: {state.key} is already off")
                continue
            try:
                new = provider.turn_off(state.key)
            except RollbackError as error:
                still_on = [s.key for _, ss in before for s in ss if s.on and s.key not in turned_off]
                off = turned_off + already_off
                raise FlagError(
                    f"{provider.describe()}: could not turn off {state.key}: {error.message}",
                    hint=f"already off: {', '.join(off) or 'none'}; still on: {', '.join(still_on) or 'none'}. "
                    "Retry, or turn them off in the vendor's console",
                    details=FlagsOutcome(before=recorded, after=after).to_details(),
                ) from None
            ctx.progress(f"{provider.describe()}: {state.key} is off")
            rows.append(FlagRow.of(new))
            turned_off.append(state.key)
    not_off = [row.key for rows in after.values() for row in rows if row.on]
    if not_off:
        raise FlagError(
            f"the vendor still reports these flags on: {', '.join(not_off)}",
            hint="check the vendor's console; retry",
            details=FlagsOutcome(before=recorded, after=after).to_details(),
        )
    summary = f"turned off {len(turned_off)} flag(s): {', '.join(turned_off) or 'none'}"
    if already_off:
        summary += f"; already off: {', '.join(already_off)}"
    return StepOutcome(
        "ok",
        f"{summary} (states before are recorded)",
        FlagsOutcome(before=recorded, after=after, turned_off=turned_off).to_details(),
    )


def _state_words(state: FlagState) -> str:
    return f"{state.key} {'on' if state.on else 'off' if state.on is False else 'state unknown'}"
