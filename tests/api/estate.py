"""A fleet of stored verdicts for the API's tests: a known mix of every filter's values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hotpatch.core.models import Action, OsFamily, Reason, State
from hotpatch.core.reasons import ReasonCode
from hotpatch.ports.store import Store, VerdictRow

SUBSCRIPTIONS = (
    "11111111-1111-1111-1111-111111111111",
    "22222222-2222-2222-2222-222222222222",
    "33333333-3333-3333-3333-333333333333",
    "44444444-4444-4444-4444-444444444444",
)
GROUPS = ("rg-web", "RG-Data", "rg-batch")
RINGS = ("ring0", "ring1", "ring2", None)
ENVIRONMENTS = ("prod", "test", "dev")
#: The state of machine i is STATES[i % len(STATES)]: every state, in known proportions.
STATES = (
    State.COMPLIANT,
    State.COMPLIANT,
    State.COMPLIANT,
    State.NON_COMPLIANT,
    State.PENDING,
    State.NOT_ELIGIBLE,
    State.ASSESSMENT_DUE,
    State.MISCONFIGURED,
    State.REBOOT_PENDING,
    State.UNKNOWN,
)
REASONS = {
    State.COMPLIANT: (),
    State.NON_COMPLIANT: (ReasonCode.MISSING_SECURITY_UPDATES, ReasonCode.BUILD_BEHIND),
    State.PENDING: (ReasonCode.UPDATE_AVAILABLE,),
    State.NOT_ELIGIBLE: (ReasonCode.CUSTOM_IMAGE,),
    State.ASSESSMENT_DUE: (ReasonCode.ASSESSMENT_STALE,),
    State.MISCONFIGURED: (ReasonCode.HOTPATCH_DISABLED,),
    State.REBOOT_PENDING: (ReasonCode.REBOOT_PENDING,),
    State.UNKNOWN: (ReasonCode.DEALLOCATED,),
}
ACTIONS = {
    State.COMPLIANT: Action.NONE,
    State.NON_COMPLIANT: Action.INSTALL_HOTPATCH,
    State.PENDING: Action.INSTALL_HOTPATCH,
    State.NOT_ELIGIBLE: Action.NONE,
    State.ASSESSMENT_DUE: Action.ASSESS,
    State.MISCONFIGURED: Action.FIX_CONFIGURATION,
    State.REBOOT_PENDING: Action.INVESTIGATE,
    State.UNKNOWN: Action.INVESTIGATE,
}
T0 = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)


def machine_id(number: int) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTIONS[number % 4]}/resourceGroups/{GROUPS[number % 3]}"
        f"/providers/Microsoft.Compute/virtualMachines/vm-{number:05d}"
    )


def machine(number: int, state: State | None = None) -> VerdictRow:
    """Machine `number` of the fleet; its state by the STATES cycle unless given."""
    state = state or STATES[number % len(STATES)]
    ring = RINGS[number % len(RINGS)]
    tags = {"env": ENVIRONMENTS[number % 3]}
    if ring is not None:
        tags["hotpatch-ring"] = ring
    if number % 5 == 0:
        tags["owner"] = "team-a"
    return VerdictRow(
        id=machine_id(number),
        name=f"vm-{number:05d}",
        subscription=SUBSCRIPTIONS[number % 4],
        resource_group=GROUPS[number % 3],
        os=None if number % 10 == 9 else (OsFamily.WS2022, OsFamily.WS2025)[number % 2],
        ring=ring,
        tags=tags,
        state=state,
        action=ACTIONS[state],
        eligible=state is not State.NOT_ELIGIBLE,
        reasons=tuple(
            Reason(code.value, f"{code.value} on vm-{number:05d}") for code in REASONS[state]
        ),
        build="10.0.20348.4711",
        release_month="2026-04",
        last_assessed=T0 - timedelta(hours=number % 48),
        next_restart=None,
    )


def fleet(size: int) -> list[VerdictRow]:
    return [machine(number) for number in range(size)]


def store_snapshot(store: Store, run_id: str, rows: list[VerdictRow], at: datetime = T0) -> None:
    """Commit `rows` as the store's latest snapshot, a page of 1000 at a time."""
    writer = store.begin_snapshot(run_id, at)
    for start in range(0, len(rows), 1000):
        writer.add(rows[start : start + 1000])
    writer.commit()
