"""The planner: what a run starts, on which machine, with which parameters, and why not."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotpatch.core.calendar import Calendar, YearMonth
from hotpatch.core.models import Action, OsFamily, Reason, State
from hotpatch.core.plan import (
    BlockedKb,
    Mode,
    OperationKind,
    PastOperation,
    Plan,
    PlanMachine,
    PlannedOperation,
    RemediationPolicy,
    RingPolicy,
    RingStatus,
    RolloutState,
    Skip,
    SkipCode,
    TaggedWindow,
    Window,
    operation_key,
    plan,
)
from hotpatch.core.reasons import ReasonCode
from hotpatch.data import shipped_release_catalog

CALENDAR = Calendar(shipped_release_catalog())
#: The 2026-02 hotpatch shipped 2026-02-10 18:00Z (10:00 PST): WS2022 KB5075943.
FEB_RELEASE = datetime(2026, 2, 10, 18, 0, tzinfo=UTC)
FEB_KB = "KB5075943"
WS2025_FEB_KB = "KB5075942"
#: Two days after Patch Tuesday, 22:00 London (GMT in February) for 3 h.
DEFAULT_WINDOW = Window(2, time(22, 0), "Europe/London", timedelta(hours=3))
RING1_WINDOW = Window(6, time(22, 0), "Europe/London", timedelta(hours=3))
RING2_WINDOW = Window(10, time(22, 0), "Europe/London", timedelta(hours=3))
#: Half an hour into the February default window (2026-02-12 22:00Z to 2026-02-13 01:00Z).
IN_WINDOW = datetime(2026, 2, 12, 22, 30, tzinfo=UTC)
#: Half an hour into ring1's February window (2026-02-16 22:00Z).
IN_RING1_WINDOW = datetime(2026, 2, 16, 22, 30, tzinfo=UTC)
IN_RING2_WINDOW = datetime(2026, 2, 20, 22, 30, tzinfo=UTC)
#: The April baseline: Patch Tuesday 2026-04-14; the window opens 2026-04-16 21:00Z (BST).
IN_APRIL_WINDOW = datetime(2026, 4, 16, 21, 30, tzinfo=UTC)
BLOCK = BlockedKb("KB5062557", "failover clusters restart in a loop", None)

_ACTIONS = {
    State.NON_COMPLIANT: Action.INSTALL_HOTPATCH,
    State.PENDING: Action.INSTALL_HOTPATCH,
    State.REBOOT_PENDING: Action.INSTALL_BASELINE,
    State.ASSESSMENT_DUE: Action.ASSESS,
    State.MISCONFIGURED: Action.FIX_CONFIGURATION,
}


@dataclass(frozen=True)
class Row:
    """A verdict as the planner reads it."""

    id: str
    name: str
    os: OsFamily | None
    ring: str | None
    tags: Mapping[str, str]
    state: State
    action: Action
    eligible: bool
    reasons: tuple[Reason, ...]
    release_month: str | None = None


def vm(
    name: str,
    state: State = State.NON_COMPLIANT,
    *,
    ring: str | None = "ring0",
    action: Action | None = None,
    os: OsFamily | None = OsFamily.WS2022,
    tags: Mapping[str, str] | None = None,
    eligible: bool = True,
    reasons: tuple[Reason, ...] = (),
) -> Row:
    return Row(
        id=f"/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/{name}",
        name=name,
        os=os,
        ring=ring,
        tags=dict(tags or {}) | ({"hotpatch-ring": ring} if ring else {}),
        state=state,
        action=action or _ACTIONS.get(state, Action.NONE),
        eligible=eligible,
        reasons=reasons,
    )


def past(
    machine: Row,
    status: str = "succeeded",
    *,
    action: str = "install_hotpatch",
    release: str = "2026-02",
    finished: datetime | None = IN_WINDOW,
    kbs: tuple[str, ...] = (FEB_KB,),
    ring: str | None = None,
) -> PastOperation:
    return PastOperation(
        key=operation_key(machine.id, release, action),
        machine_id=machine.id,
        ring=ring if ring is not None else machine.ring,
        release=release,
        action=action,
        status=status,
        started_at=(finished or IN_WINDOW) - timedelta(minutes=20),
        finished_at=finished if status in {"succeeded", "failed"} else None,
        kbs=kbs if status == "succeeded" else (),
    )


RINGS = (
    RingPolicy("ring0"),
    RingPolicy("ring1", window=RING1_WINDOW),
    RingPolicy("ring2", window=RING2_WINDOW),
)
REMEDIATE = RemediationPolicy(
    mode=Mode.REMEDIATE, rings=RINGS, default_window=DEFAULT_WINDOW, blocked_kbs=(BLOCK,)
)


def planned(
    *machines: Row,
    policy: RemediationPolicy = REMEDIATE,
    operations: tuple[PastOperation, ...] = (),
    now: datetime = IN_WINDOW,
    **state: object,
) -> Plan:
    rollout = RolloutState(operations=operations, **state)  # type: ignore[arg-type]
    return plan(machines, policy, rollout, CALENDAR, now)


def everything(result: Plan) -> list[PlannedOperation | Skip]:
    return [*result.operations, *result.skips]


def outcome(result: Plan, machine: Row) -> PlannedOperation | Skip:
    found = [
        item for item in everything(result) if item.machine_id.casefold() == machine.id.casefold()
    ]
    assert len(found) == 1, f"{machine.name} appears {len(found)} times"
    return found[0]


def skip_of(result: Plan, machine: Row) -> Skip:
    found = outcome(result, machine)
    assert isinstance(found, Skip), f"{machine.name} was planned: {found}"
    return found


def operation_of(result: Plan, machine: Row) -> PlannedOperation:
    found = outcome(result, machine)
    assert isinstance(found, PlannedOperation), f"{machine.name} was skipped: {found}"
    return found


# -- modes ---------------------------------------------------------------------------------------


def test_the_default_policy_starts_nothing_and_says_so_for_every_machine() -> None:
    machines = (vm("a"), vm("b", State.ASSESSMENT_DUE), vm("c", State.COMPLIANT))
    result = plan(machines, RemediationPolicy(), RolloutState(), CALENDAR, IN_WINDOW)
    assert result.mode is Mode.REPORT
    assert result.operations == ()
    assert [(s.code, s.would) for s in result.skips] == [
        (SkipCode.MODE_REPORT, "no_ring"),
        (SkipCode.MODE_REPORT, "assess:2026-02-12"),
        (SkipCode.MODE_REPORT, "compliant"),
    ]


def test_report_mode_shows_what_remediate_would_start_and_still_decides_the_rings() -> None:
    policy = replace(REMEDIATE, mode=Mode.REPORT)
    result = planned(vm("a"), vm("b", ring="ring1"), policy=policy)
    assert result.operations == ()
    a = skip_of(result, vm("a"))
    assert (a.code, a.would) == (SkipCode.MODE_REPORT, "install_hotpatch")
    assert "would get install_hotpatch" in a.message
    assert skip_of(result, vm("b", ring="ring1")).would == "ring_waiting"
    assert [d.status for d in result.rings] == [
        RingStatus.INSTALLING,
        RingStatus.WAITING,
        RingStatus.WAITING,
    ]


def test_assess_mode_starts_assessments_and_no_install() -> None:
    policy = replace(REMEDIATE, mode=Mode.ASSESS)
    result = planned(vm("stale", State.ASSESSMENT_DUE), vm("behind"), policy=policy)
    assert [op.action for op in result.operations] == ["assess:2026-02-12"]
    behind = skip_of(result, vm("behind"))
    assert (behind.code, behind.would) == (SkipCode.MODE_ASSESS_ONLY, "install_hotpatch")


# -- what each machine needs --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "code"),
    [
        (vm("tagged", tags={"Hotpatch-Exclude": "TRUE"}), SkipCode.EXCLUDED),
        (
            vm("off", State.UNKNOWN, reasons=(Reason(ReasonCode.DEALLOCATED, "deallocated"),)),
            SkipCode.DEALLOCATED,
        ),
        (
            vm("odd", State.UNKNOWN, reasons=(Reason(ReasonCode.MALFORMED_RECORD, "bad row"),)),
            SkipCode.UNKNOWN,
        ),
        (vm("linux", State.NOT_ELIGIBLE, eligible=False), SkipCode.NOT_ELIGIBLE),
        (vm("manual", State.MISCONFIGURED), SkipCode.MISCONFIGURED),
        (vm("current", State.COMPLIANT), SkipCode.COMPLIANT),
        (vm("in-grace", State.PENDING), SkipCode.PENDING),
        (vm("untagged", ring=None), SkipCode.NO_RING),
        (vm("stray", ring="canary"), SkipCode.NO_RING),
        (vm("no-os", os=None), SkipCode.UNKNOWN),
    ],
    ids=lambda value: value.name if isinstance(value, Row) else str(value),
)
def test_a_machine_with_nothing_remediation_may_start_is_skipped_with_its_own_code(
    machine: Row, code: SkipCode
) -> None:
    skip = skip_of(planned(machine), machine)
    assert skip.code is code
    assert skip.message


def test_an_exclude_tag_that_is_not_true_excludes_nothing() -> None:
    machine = vm("kept", tags={"hotpatch-exclude": "no"})
    assert operation_of(planned(machine), machine).action == "install_hotpatch"


def test_a_machine_in_its_grace_period_is_installed_when_the_policy_says_so() -> None:
    machine = vm("in-grace", State.PENDING)
    result = planned(machine, policy=replace(REMEDIATE, install_pending=True))
    assert operation_of(result, machine).action == "install_hotpatch"


def test_a_stale_assessment_is_refreshed_before_any_install_even_outside_a_window() -> None:
    machine = vm("stale", State.ASSESSMENT_DUE)
    outside = datetime(2026, 2, 11, 9, 0, tzinfo=UTC)
    op = operation_of(planned(machine, now=outside), machine)
    assert (op.kind, op.action, op.install, op.window_end) == (
        OperationKind.ASSESS,
        "assess:2026-02-11",
        None,
        None,
    )
    assert op.key == operation_key(machine.id, "2026-02", "assess:2026-02-11")


def test_assessments_wait_for_the_window_when_the_policy_does_not_let_them_start_anytime() -> None:
    machine = vm("stale", State.ASSESSMENT_DUE)
    policy = replace(REMEDIATE, assess_anytime=False)
    outside = datetime(2026, 2, 11, 9, 0, tzinfo=UTC)
    assert skip_of(planned(machine, policy=policy, now=outside), machine).code is (
        SkipCode.OUTSIDE_WINDOW
    )
    inside = operation_of(planned(machine, policy=policy), machine)
    assert inside.window_end == datetime(2026, 2, 13, 1, 0, tzinfo=UTC)


def test_assessments_need_no_ring() -> None:
    machine = vm("stale", State.ASSESSMENT_DUE, ring=None)
    assert operation_of(planned(machine), machine).kind is OperationKind.ASSESS


# -- install parameters by month kind -----------------------------------------------------------


def test_a_hotpatch_month_install_never_restarts_and_takes_critical_and_security_only() -> None:
    machine = vm("behind")
    op = operation_of(planned(machine), machine)
    assert (op.action, op.release, op.ring) == ("install_hotpatch", "2026-02", "ring0")
    assert op.install is not None
    assert op.install.reboot_setting == "Never"
    assert op.install.classifications == ("Critical", "Security")
    assert op.install.kb_include == ()
    assert op.install.max_patch_publish_date == FEB_RELEASE
    assert op.install.kb_exclude == ("KB5062557",)


def test_an_off_cycle_machine_in_a_hotpatch_month_installs_the_baseline_without_a_restart() -> None:
    machine = vm("off-cycle", action=Action.INSTALL_BASELINE)
    op = operation_of(planned(machine), machine)
    assert op.action == "install_baseline"
    assert op.install is not None
    assert op.install.reboot_setting == "Never"


def test_a_baseline_month_install_may_restart_inside_the_window() -> None:
    machine = vm("behind", action=Action.INSTALL_BASELINE)
    op = operation_of(planned(machine, now=IN_APRIL_WINDOW), machine)
    assert (op.action, op.release) == ("install_baseline", "2026-04")
    assert op.install is not None
    assert op.install.reboot_setting == "IfRequired"
    assert op.install.max_patch_publish_date == datetime(2026, 4, 14, 17, 0, tzinfo=UTC)


def test_a_pending_reboot_gets_a_restart_permitting_install_even_in_a_hotpatch_month() -> None:
    machine = vm("waiting", State.REBOOT_PENDING)
    op = operation_of(planned(machine), machine)
    assert op.action == "install_restart"
    assert op.install is not None
    assert op.install.reboot_setting == "IfRequired"


def test_the_install_key_is_the_journal_key_of_machine_release_and_action() -> None:
    from hotpatch.ports.store import operation_key as journal_key

    machine = vm("Behind-VM")
    op = operation_of(planned(machine), machine)
    assert op.key == journal_key(machine.id, "2026-02", "install_hotpatch")
    assert op.key == operation_key(machine.id, "2026-02", "install_hotpatch")
    assert op.key.startswith(machine.id.casefold() + "|")


# -- windows -------------------------------------------------------------------------------------


def test_outside_its_window_an_install_waits_and_the_message_names_the_next_opening() -> None:
    machine = vm("behind")
    skip = skip_of(planned(machine, now=datetime(2026, 2, 11, 9, 0, tzinfo=UTC)), machine)
    assert skip.code is SkipCode.OUTSIDE_WINDOW
    assert "next opens 2026-02-12T22:00Z until 2026-02-13T01:00Z" in skip.message


def test_without_any_window_nothing_that_changes_a_machine_starts() -> None:
    machine = vm("behind")
    result = planned(machine, policy=replace(REMEDIATE, default_window=None))
    assert skip_of(result, machine).code is SkipCode.NO_WINDOW


def test_an_install_may_run_only_until_its_window_closes() -> None:
    machine = vm("behind")
    forty_minutes_left = datetime(2026, 2, 13, 0, 20, tzinfo=UTC)
    op = operation_of(planned(machine, now=forty_minutes_left), machine)
    assert op.install is not None
    assert op.install.maximum_duration == timedelta(minutes=40)
    assert op.window_end == datetime(2026, 2, 13, 1, 0, tzinfo=UTC)
    early = operation_of(planned(machine), machine)
    assert early.install is not None
    assert early.install.maximum_duration == timedelta(hours=2)


def test_an_install_is_not_started_with_under_fifteen_minutes_left_in_its_window() -> None:
    machine = vm("behind")
    result = planned(machine, now=datetime(2026, 2, 13, 0, 46, tzinfo=UTC))
    skip = skip_of(result, machine)
    assert skip.code is SkipCode.WINDOW_CLOSING
    assert "0h14m left" in skip.message
    at_fifteen = planned(machine, now=datetime(2026, 2, 13, 0, 45, tzinfo=UTC))
    assert operation_of(at_fifteen, machine).action == "install_hotpatch"


def test_a_ring_window_comes_before_a_tagged_window_which_comes_before_the_default() -> None:
    tagged = TaggedWindow("patch-window", "early", Window(1, time(2, 0), "UTC", timedelta(hours=2)))
    policy = replace(REMEDIATE, windows=(tagged,), rings=(RingPolicy("ring0"),))
    own = replace(policy, rings=(RingPolicy("ring0", window=RING1_WINDOW),))
    early, plain = vm("early", tags={"Patch-Window": "EARLY"}), vm("plain")
    at_tagged = datetime(2026, 2, 11, 2, 30, tzinfo=UTC)
    result = planned(early, plain, policy=policy, now=at_tagged)
    assert operation_of(result, early).window_end == datetime(2026, 2, 11, 4, 0, tzinfo=UTC)
    assert "(default: 2 day(s) after" in skip_of(result, plain).message
    ring_first = skip_of(planned(early, policy=own, now=at_tagged), early)
    assert ring_first.code is SkipCode.OUTSIDE_WINDOW
    assert "(ring ring0: 6 day(s) after Patch Tuesday, 22:00 Europe/London" in ring_first.message


@pytest.mark.parametrize(
    ("month", "opens"),
    [
        (YearMonth(2026, 2), datetime(2026, 2, 12, 22, 0, tzinfo=UTC)),
        (YearMonth(2026, 7), datetime(2026, 7, 16, 21, 0, tzinfo=UTC)),
    ],
    ids=["GMT in February", "BST in July"],
)
def test_a_window_opens_at_its_wall_clock_time_in_its_zone(
    month: YearMonth, opens: datetime
) -> None:
    assert DEFAULT_WINDOW.occurrence(month) == (opens, opens + timedelta(hours=3))


def test_a_window_late_in_the_month_is_found_from_the_next_month() -> None:
    late = Window(27, time(23, 0), "UTC", timedelta(hours=3))
    # Patch Tuesday 2026-02-10 + 27 days = 2026-03-09 23:00Z, until 2026-03-10 02:00Z; the
    # next is March's: 2026-03-10 + 27 days.
    assert late.containing(datetime(2026, 3, 10, 1, 0, tzinfo=UTC)) == (
        datetime(2026, 3, 9, 23, 0, tzinfo=UTC),
        datetime(2026, 3, 10, 2, 0, tzinfo=UTC),
    )
    assert late.next_after(datetime(2026, 3, 10, 1, 0, tzinfo=UTC))[0] == datetime(
        2026, 4, 6, 23, 0, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        ((28, time(22, 0), "UTC", timedelta(hours=1)), "offset_days must be 0 to 27"),
        ((-1, time(22, 0), "UTC", timedelta(hours=1)), "offset_days must be 0 to 27"),
        ((2, time(22, 0), "Mars/Olympus", timedelta(hours=1)), "unknown time zone"),
        ((2, time(22, 0), "UTC", timedelta(hours=3, minutes=55)), "less than 3h55m"),
        ((2, time(22, 0), "UTC", timedelta(0)), "more than 0"),
        ((2, time(22, 0, tzinfo=UTC), "UTC", timedelta(hours=1)), "without a zone"),
    ],
)
def test_a_window_that_cannot_be_kept_is_refused(
    arguments: tuple[int, time, str, timedelta], words: str
) -> None:
    with pytest.raises(ValueError, match=words):
        Window(*arguments)


# -- rings ---------------------------------------------------------------------------------------


def test_the_second_ring_waits_while_the_first_still_has_machines_to_install() -> None:
    first, second = vm("a0"), vm("b1", ring="ring1")
    done = past(vm("z0"))
    result = planned(first, second, operations=(done,), now=IN_RING1_WINDOW)
    assert skip_of(result, second).code is SkipCode.RING_WAITING
    decision = result.rings[0]
    assert (decision.status, decision.waiting, decision.succeeded) == (RingStatus.INSTALLING, 1, 1)
    assert result.rings[1].status is RingStatus.WAITING


def test_an_install_in_flight_or_of_unknown_outcome_holds_the_next_ring_back() -> None:
    second = vm("b1", ring="ring1")
    for status in ("started", "accepted", "unknown"):
        operations = (past(vm("a0")), past(vm("a1"), status))
        result = planned(second, operations=operations, now=IN_RING1_WINDOW)
        assert result.rings[0].status is RingStatus.INSTALLING, status
        assert skip_of(result, second).code is SkipCode.RING_WAITING, status


def test_the_second_ring_waits_out_the_first_rings_soak() -> None:
    second = vm("b1", ring="ring1")
    finished = datetime(2026, 2, 14, 12, 0, tzinfo=UTC)
    result = planned(second, operations=(past(vm("a0"), finished=finished),), now=IN_RING1_WINDOW)
    assert result.rings[0].status is RingStatus.SOAKING
    assert result.rings[0].soak_ends == finished + timedelta(days=3)
    skip = skip_of(result, second)
    assert skip.code is SkipCode.RING_SOAKING
    assert "2026-02-17T12:00Z" in skip.message


@pytest.mark.parametrize(
    ("after_soak", "status"),
    [(-timedelta(seconds=1), RingStatus.SOAKING), (timedelta(0), RingStatus.PROMOTED)],
    ids=["a second before the soak ends", "the instant it ends"],
)
def test_a_ring_is_promoted_the_instant_its_soak_after_the_last_install_ends(
    after_soak: timedelta, status: RingStatus
) -> None:
    last = IN_RING1_WINDOW - timedelta(days=3) - after_soak
    operations = (past(vm("a0"), finished=last - timedelta(hours=1)), past(vm("a1"), finished=last))
    result = planned(vm("b1", ring="ring1"), operations=operations, now=IN_RING1_WINDOW)
    assert result.rings[0].status is status
    assert result.rings[0].soak_ends == last + timedelta(days=3)


def test_after_the_soak_the_next_ring_installs_exactly_the_kb_set_the_first_proved() -> None:
    second = vm("b1", ring="ring1")
    proof = (
        past(vm("a0"), kbs=(FEB_KB,)),
        past(vm("a1"), kbs=("5075943", "KB5075999")),
        past(vm("a2", os=OsFamily.WS2025), kbs=(WS2025_FEB_KB,)),
    )
    result = planned(second, operations=proof, now=IN_RING1_WINDOW)
    assert result.rings[0].status is RingStatus.PROMOTED
    assert result.rings[0].kbs == (WS2025_FEB_KB, FEB_KB, "KB5075999")
    op = operation_of(result, second)
    assert op.install is not None
    assert op.install.kb_include == (WS2025_FEB_KB, FEB_KB, "KB5075999")
    # Nothing beyond the proven set is selected, and nothing published after the release.
    assert op.install.classifications == ()
    assert op.install.max_patch_publish_date == FEB_RELEASE
    assert result.rings[1].kb_include == op.install.kb_include


def test_the_kb_set_comes_from_this_release_and_this_ring_only() -> None:
    second = vm("b1", ring="ring1")
    proof = (
        past(vm("a0")),
        past(vm("old0"), release="2026-01", kbs=("KB5073457",)),
        past(vm("other"), ring="ring2", kbs=("KB5099999",)),
    )
    op = operation_of(planned(second, operations=proof, now=IN_RING1_WINDOW), second)
    assert op.install is not None
    assert op.install.kb_include == (FEB_KB,)


def test_the_third_ring_installs_what_the_second_proved_after_its_own_soak() -> None:
    third = vm("c2", ring="ring2")
    proof = (
        past(vm("a0")),
        past(vm("b1", ring="ring1"), finished=datetime(2026, 2, 16, 23, 0, tzinfo=UTC)),
    )
    result = planned(third, operations=proof, now=IN_RING2_WINDOW)
    assert [d.status for d in result.rings] == [RingStatus.PROMOTED] * 2 + [RingStatus.INSTALLING]
    op = operation_of(result, third)
    assert op.install is not None
    assert op.install.kb_include == (FEB_KB,)


def test_a_ring_over_its_error_budget_halts_and_no_later_ring_starts() -> None:
    first, second = vm("a9"), vm("b1", ring="ring1")
    operations = (*(past(vm(f"a{i}")) for i in range(8)), past(vm("f0"), "failed"))
    result = planned(first, second, operations=operations, now=IN_RING1_WINDOW)
    halted = result.rings[0]
    assert (halted.status, halted.failures, halted.finished) == (RingStatus.HALTED, 1, 9)
    assert "1 of 9 finished install(s) of 2026-02 failed (11%)" in halted.reason
    assert "error budget of 5%" in halted.reason
    assert skip_of(result, first).code is SkipCode.RING_HALTED
    assert skip_of(result, second).code is SkipCode.RING_HALTED
    assert [d.status for d in result.rings[1:]] == [RingStatus.HALTED, RingStatus.HALTED]
    assert "ring0 is halted" in result.rings[2].reason


def test_failures_within_the_error_budget_still_promote() -> None:
    second = vm("b1", ring="ring1")
    operations = (*(past(vm(f"a{i}")) for i in range(19)), past(vm("f0"), "failed"))
    result = planned(second, operations=operations, now=IN_RING1_WINDOW)
    assert (result.rings[0].status, result.rings[0].failures) == (RingStatus.PROMOTED, 1)
    assert operation_of(result, second).action == "install_hotpatch"


def test_an_empty_proven_set_halts_the_next_ring_with_the_reason() -> None:
    second = vm("b1", ring="ring1")
    result = planned(second, operations=(past(vm("a0"), kbs=()),), now=IN_RING1_WINDOW)
    assert result.rings[0].status is RingStatus.HALTED
    assert "proved no KB for 2026-02" in result.rings[0].reason
    skip = skip_of(result, second)
    assert skip.code is SkipCode.RING_HALTED
    assert "proved no KB" in skip.message


def test_a_first_ring_with_nothing_to_install_leaves_the_next_waiting() -> None:
    second = vm("b1", ring="ring1")
    result = planned(vm("a0", State.COMPLIANT), second, now=IN_RING1_WINDOW)
    assert result.rings[0].status is RingStatus.WAITING
    assert skip_of(result, second).code is SkipCode.RING_WAITING


def test_ring_names_and_the_machines_ring_compare_without_regard_to_case() -> None:
    machine = vm("a0", ring="RING0")
    op = operation_of(planned(machine), machine)
    assert op.ring == "ring0"
    assert planned(machine).rings[0].machines == 1


# -- blocked KBs ---------------------------------------------------------------------------------


def test_a_blocked_kb_is_excluded_from_every_install_and_never_included() -> None:
    second = vm("b1", ring="ring1")
    proof = (past(vm("a0"), kbs=(FEB_KB, "KB5062557")),)
    result = planned(second, operations=proof, now=IN_RING1_WINDOW)
    op = operation_of(result, second)
    assert op.install is not None
    assert op.install.kb_include == (FEB_KB,)
    assert op.install.kb_exclude == ("KB5062557",)
    assert any("KB5062557, proven in ring0, is left out" in n for n in result.notices)


def test_a_ring_whose_every_proven_kb_is_blocked_halts_the_next() -> None:
    second = vm("b1", ring="ring1")
    proof = (past(vm("a0"), kbs=("KB5062557",)),)
    result = planned(second, operations=proof, now=IN_RING1_WINDOW)
    assert result.rings[1].status is RingStatus.HALTED
    assert skip_of(result, second).code is SkipCode.RING_HALTED


def test_blocks_from_the_store_join_the_policys_and_an_expired_block_is_dropped() -> None:
    machine = vm("a0")
    expired = BlockedKb("KB5000001", "old", datetime(2026, 2, 1, tzinfo=UTC))
    stored = BlockedKb("KB5000002", "stored", datetime(2026, 3, 1, tzinfo=UTC))
    policy = replace(REMEDIATE, blocked_kbs=(BLOCK, expired))
    op = operation_of(planned(machine, policy=policy, blocked_kbs=(stored,)), machine)
    assert op.install is not None
    assert op.install.kb_exclude == ("KB5000002", "KB5062557")


def test_a_block_expires_at_its_instant() -> None:
    block = BlockedKb("KB5062557", "bad", IN_WINDOW)
    assert block.active(IN_WINDOW - timedelta(seconds=1))
    assert not block.active(IN_WINDOW)


def test_a_machine_whose_release_kb_is_blocked_gets_no_install() -> None:
    machine = vm("a0")
    policy = replace(REMEDIATE, blocked_kbs=(BlockedKb(FEB_KB, "breaks IIS"),))
    skip = skip_of(planned(machine, policy=policy), machine)
    assert skip.code is SkipCode.BLOCKED
    assert FEB_KB in skip.message
    assert "breaks IIS" in skip.message


def test_a_machine_whose_release_is_blocked_does_not_hold_its_ring_back() -> None:
    # Its install waits for the block to go, not for the ring: the ring is promoted without it.
    blocked = vm("a-ws2025", os=OsFamily.WS2025)
    second = vm("b1", ring="ring1")
    policy = replace(REMEDIATE, blocked_kbs=(BlockedKb(WS2025_FEB_KB, "breaks clusters"),))
    result = planned(
        blocked, second, policy=policy, operations=(past(vm("a0")),), now=IN_RING1_WINDOW
    )
    assert skip_of(result, blocked).code is SkipCode.BLOCKED
    assert result.rings[0].status is RingStatus.PROMOTED
    assert operation_of(result, second).install is not None


def test_a_machine_with_a_blocked_kb_installed_is_named_in_a_notice() -> None:
    machine = vm("clustered", State.COMPLIANT)
    installed = {machine.id.casefold(): ("KB5062557", "KB5075943")}
    result = planned(machine, installed_kbs=installed)
    (notice,) = [n for n in result.notices if "KB5062557" in n]
    assert "clustered" in notice
    assert "failover clusters restart in a loop" in notice


def test_a_blocked_kb_must_be_written_as_a_kb() -> None:
    with pytest.raises(ValueError, match="KB and 4 to 8 digits"):
        BlockedKb("5062557", "digits only")


# -- the journal ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [
        ("started", SkipCode.IN_FLIGHT),
        ("accepted", SkipCode.IN_FLIGHT),
        ("succeeded", SkipCode.ALREADY_DONE),
        ("failed", SkipCode.FAILED_BEFORE),
        ("unknown", SkipCode.OUTCOME_UNKNOWN),
    ],
)
def test_an_operation_on_record_is_never_started_again(status: str, code: SkipCode) -> None:
    machine = vm("a0")
    policy = replace(REMEDIATE, rings=(RingPolicy("ring0", error_budget=1.0),))
    result = planned(machine, policy=policy, operations=(past(machine, status),))
    assert skip_of(result, machine).code is code


def test_a_machine_with_any_operation_in_flight_gets_no_other() -> None:
    machine = vm("stale", State.ASSESSMENT_DUE)
    running = past(machine, "accepted", action="install_hotpatch")
    skip = skip_of(planned(machine, operations=(running,)), machine)
    assert skip.code is SkipCode.IN_FLIGHT
    assert "install_hotpatch for 2026-02 is in flight" in skip.message


def test_an_assessment_is_one_a_day() -> None:
    machine = vm("stale", State.ASSESSMENT_DUE)
    yesterday = past(machine, action="assess:2026-02-11", kbs=())
    today = past(machine, action="assess:2026-02-12", kbs=())
    assert operation_of(planned(machine, operations=(yesterday,)), machine).action == (
        "assess:2026-02-12"
    )
    assert skip_of(planned(machine, operations=(today,)), machine).code is SkipCode.ALREADY_DONE


# -- caps and order ------------------------------------------------------------------------------


def test_a_ring_starts_no_more_than_its_concurrency_allows_counting_operations_in_flight() -> None:
    machines = [vm(f"a{i}") for i in range(5)]
    policy = replace(REMEDIATE, rings=(RingPolicy("ring0", max_concurrent=3),))
    running = past(vm("x0"), "started")
    result = planned(*machines, policy=policy, operations=(running,))
    assert [op.machine_id.rsplit("/", 1)[1] for op in result.operations] == ["a0", "a1"]
    assert {s.code for s in result.skips} == {SkipCode.CAP_REACHED}
    assert "max_concurrent of 3" in result.skips[0].message


def test_a_ring_starts_no_more_than_its_max_per_run() -> None:
    machines = [vm(f"a{i}") for i in range(4)]
    policy = replace(REMEDIATE, rings=(RingPolicy("ring0", max_per_run=2),))
    result = planned(*machines, policy=policy)
    assert len(result.operations) == 2
    assert "max_per_run of 2" in result.skips[0].message


def test_one_run_starts_no_more_than_the_blast_radius_across_rings_and_kinds() -> None:
    machines = [vm(f"a{i}") for i in range(3)] + [
        vm(f"s{i}", State.ASSESSMENT_DUE) for i in range(3)
    ]
    result = planned(*machines, policy=replace(REMEDIATE, max_starts_per_run=4))
    assert len(result.operations) == 4
    assert [s.code for s in result.skips] == [SkipCode.CAP_REACHED] * 2
    assert "max_starts_per_run of 4" in result.skips[0].message


def test_machines_are_planned_in_ring_order_then_by_id() -> None:
    proof = (past(vm("p0")),)
    machines = [vm("b", ring="ring1"), vm("z"), vm("s", State.ASSESSMENT_DUE, ring=None), vm("a")]
    result = planned(*machines, operations=proof, now=IN_RING1_WINDOW)
    order = [item.machine_id.rsplit("/", 1)[1] for item in everything(result)]
    assert [op.machine_id.rsplit("/", 1)[1] for op in result.operations] == ["s"]
    assert sorted(order) == ["a", "b", "s", "z"]
    assert [s.machine_id.rsplit("/", 1)[1] for s in result.skips] == ["a", "z", "b"]


def test_a_machine_given_twice_is_planned_once_and_the_repeat_noted() -> None:
    machine = vm("a0")
    shouted = replace(machine, id=machine.id.upper())
    result = planned(machine, shouted)
    assert len(result.operations) + len(result.skips) == 1
    assert any("given 2 times" in n for n in result.notices)


def test_a_verdict_row_of_the_store_is_a_machine_the_planner_reads() -> None:
    from hotpatch.ports.store import VerdictRow

    row = VerdictRow(
        id=vm("a0").id,
        name="a0",
        subscription="s",
        resource_group="rg",
        os=OsFamily.WS2022,
        ring="ring0",
        tags={"hotpatch-ring": "ring0"},
        state=State.NON_COMPLIANT,
        action=Action.INSTALL_HOTPATCH,
        eligible=True,
        reasons=(),
    )
    machine: PlanMachine = row
    assert plan([machine], REMEDIATE, RolloutState(), CALENDAR, IN_WINDOW).operations


def test_ring_statuses_are_the_stores() -> None:
    from hotpatch.ports.store import RingStatus as StoredRingStatus

    assert [s.value for s in RingStatus] == [s.value for s in StoredRingStatus]


def test_now_must_carry_its_zone() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        plan([], REMEDIATE, RolloutState(), CALENDAR, datetime(2026, 2, 12, 22, 30))


# -- invariants ----------------------------------------------------------------------------------

_STATES = st.sampled_from(list(State))
_RINGS = st.sampled_from(["ring0", "RING1", "ring2", "canary", None])
_STATUSES = st.sampled_from(["started", "accepted", "succeeded", "failed", "unknown"])
#: Mostly inside windows, where installs start; sometimes anywhere in half a year.
_NOW = st.one_of(
    st.sampled_from([IN_WINDOW, IN_RING1_WINDOW, IN_RING2_WINDOW, IN_APRIL_WINDOW]),
    st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2026, 7, 1), timezones=st.just(UTC)
    ),
)


@st.composite
def _fleet(draw: st.DrawFn) -> tuple[list[Row], tuple[PastOperation, ...]]:
    names = draw(st.lists(st.sampled_from([f"vm{i}" for i in range(12)]), max_size=20))
    machines = [
        vm(
            name.upper() if draw(st.booleans()) else name,
            draw(_STATES),
            ring=draw(_RINGS),
            tags={"hotpatch-exclude": "true"} if draw(st.integers(0, 9)) == 0 else None,
            os=draw(st.sampled_from([OsFamily.WS2022, OsFamily.WS2025, None])),
        )
        for name in names
    ]
    operations = tuple(
        past(
            vm(name, ring=draw(_RINGS)),
            draw(_STATUSES),
            action=draw(
                st.sampled_from(["install_hotpatch", "install_restart", "assess:2026-02-12"])
            ),
            release=draw(st.sampled_from(["2026-02", "2026-03"])),
            kbs=tuple(
                draw(st.lists(st.sampled_from([FEB_KB, "KB5062557", "KB5078737"]), max_size=2))
            ),
        )
        for name in draw(st.lists(st.sampled_from([f"vm{i}" for i in range(12)]), max_size=12))
    )
    return machines, operations


@given(fleet=_fleet(), now=_NOW, mode=st.sampled_from(list(Mode)), cap=st.integers(0, 6))
def test_every_machine_comes_out_exactly_once_and_no_install_breaks_a_rule(
    fleet: tuple[list[Row], tuple[PastOperation, ...]], now: datetime, mode: Mode, cap: int
) -> None:
    machines, operations = fleet
    policy = replace(REMEDIATE, mode=mode, max_starts_per_run=cap)
    result = planned(*machines, policy=policy, operations=operations, now=now)
    given_ids = {m.id.casefold() for m in machines}
    out = [item.machine_id.casefold() for item in everything(result)]
    assert sorted(out) == sorted(given_ids)
    assert len(result.operations) <= cap
    if mode is not Mode.REMEDIATE:
        assert all(op.kind is OperationKind.ASSESS for op in result.operations)
    if mode is Mode.REPORT:
        assert result.operations == ()
    for op in result.operations:
        if op.install is None:
            continue
        assert "KB5062557" not in op.install.kb_include
        assert op.install.kb_exclude == ("KB5062557",)
        assert op.install.maximum_duration <= timedelta(hours=2)
        assert op.window_end is not None
        assert op.window_end - now >= op.install.maximum_duration
        slot = CALENDAR.in_force(OsFamily.WS2022, now)
        if not slot.restart and op.action != "install_restart":
            assert op.install.reboot_setting == "Never"
