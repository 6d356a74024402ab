"""The planner's triage: what each machine gets, and the sentence an operator reads for it.

The words of each skip and each operation's reason are what `hotpatch plan` shows; the journal
makes a run idempotent; every machine given comes out once. The builders are test_plan's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from hotpatch.core.models import Action, OsFamily, Reason, State
from hotpatch.core.plan import (
    BlockedKb,
    Mode,
    PastOperation,
    RemediationPolicy,
    RingPolicy,
    Skip,
    SkipCode,
)
from hotpatch.core.reasons import ReasonCode
from tests.unit.test_plan import (
    IN_APRIL_WINDOW,
    IN_WINDOW,
    REMEDIATE,
    Row,
    operation_of,
    outcome,
    past,
    planned,
    skip_of,
    vm,
)

#: What the ring0 installs of February and April add to the triage's reason.
FEB_PUBLISHED = "; ring0 installs updates published by 2026-02-10T18:00Z"
APRIL_PUBLISHED = "; ring0 installs updates published by 2026-04-14T17:00Z"
HOTPATCH = "the 2026-02 hotpatch installs without a restart (rebootSetting Never, critical and "
HOTPATCH += "security updates only)"


def gets(machine: Row) -> str:
    """What one machine gets: the action of its operation, or its skip code."""
    found = outcome(planned(machine), machine)
    return found.code.value if isinstance(found, Skip) else found.action


# -- which code a machine gets ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("machine", "expected"),
    [
        (vm("flagged-ineligible", eligible=False), "not_eligible"),
        (vm("ineligible-state", State.NOT_ELIGIBLE, action=Action.NONE), "not_eligible"),
        (vm("misconfigured-no-action", State.MISCONFIGURED, action=Action.NONE), "misconfigured"),
        (vm("to-investigate", action=Action.INVESTIGATE), "misconfigured"),
        (vm("to-fix", action=Action.FIX_CONFIGURATION), "misconfigured"),
        (vm("due-no-action", State.ASSESSMENT_DUE, action=Action.NONE), "assess:2026-02-12"),
        (vm("asked-to-assess", action=Action.ASSESS), "assess:2026-02-12"),
        (vm("behind-no-action", action=Action.NONE), "nothing_to_do"),
    ],
    ids=lambda value: value.name if isinstance(value, Row) else str(value),
)
def test_either_the_state_or_the_action_of_a_verdict_is_enough_to_decide_what_it_gets(
    machine: Row, expected: str
) -> None:
    assert gets(machine) == expected


# -- the sentence of each skip ---------------------------------------------------------------

_DEALLOCATED = Reason(ReasonCode.DEALLOCATED, "the VM is deallocated")
_MALFORMED = Reason(ReasonCode.MALFORMED_RECORD, "its row has no properties")
_GRACE = Reason("grace", "the 2026-02 hotpatch is 2 days old, inside its 7-day grace period")


@pytest.mark.parametrize(
    ("machine", "code", "message"),
    [
        (
            vm("tagged", tags={"hotpatch-exclude": "true"}),
            SkipCode.EXCLUDED,
            "tagged hotpatch-exclude=true: remediation leaves it alone",
        ),
        (
            vm("off", State.UNKNOWN, reasons=(_DEALLOCATED,)),
            SkipCode.DEALLOCATED,
            "the VM is deallocated: planned again when it runs",
        ),
        (
            vm("odd", State.UNKNOWN),
            SkipCode.UNKNOWN,
            "its state is unknown: nothing starts on a machine whose state is not known",
        ),
        (
            vm("malformed", State.UNKNOWN, reasons=(_MALFORMED,)),
            SkipCode.UNKNOWN,
            "its row has no properties: nothing starts on a machine whose state is not known",
        ),
        (
            vm("linux", State.NOT_ELIGIBLE, eligible=False),
            SkipCode.NOT_ELIGIBLE,
            "not eligible for hotpatch: remediation does not touch it",
        ),
        (
            vm("manual", State.MISCONFIGURED),
            SkipCode.MISCONFIGURED,
            "misconfigured: a person must fix it before anything starts",
        ),
        (
            vm("no-os", os=None),
            SkipCode.UNKNOWN,
            "its OS release is not known, so neither is the release it should take",
        ),
        (vm("current", State.COMPLIANT), SkipCode.COMPLIANT, "compliant: nothing to do"),
        (
            vm("in-grace", State.PENDING),
            SkipCode.PENDING,
            "inside the grace period: the platform's own patching has until the grace period ends",
        ),
        (
            vm("in-grace-said", State.PENDING, reasons=(_GRACE,)),
            SkipCode.PENDING,
            "the 2026-02 hotpatch is 2 days old, inside its 7-day grace period: the platform's "
            "own patching has until the grace period ends",
        ),
        (
            vm("idle", action=Action.NONE),
            SkipCode.NOTHING_TO_DO,
            "non_compliant with nothing for remediation to start",
        ),
    ],
    ids=lambda value: value.name if isinstance(value, Row) else None,
)
def test_a_skipped_machine_gets_its_code_and_says_why_in_its_own_words_or_a_default(
    machine: Row, code: SkipCode, message: str
) -> None:
    skip = skip_of(planned(machine), machine)
    assert (skip.machine_id, skip.code, skip.message) == (machine.id, code, message)


@pytest.mark.parametrize(
    ("machine", "policy", "message"),
    [
        (
            vm("ringed"),
            replace(REMEDIATE, rings=()),
            "the policy defines no rings: no install starts",
        ),
        (
            vm("untagged", ring=None),
            REMEDIATE,
            "it has no ring tag: installs start only in the policy's rings (ring0, ring1, ring2)",
        ),
        (
            vm("stray", ring="canary"),
            REMEDIATE,
            "its ring 'canary' is not one of the policy's rings (ring0, ring1, ring2)",
        ),
    ],
    ids=["no-rings-in-the-policy", "no-ring-tag", "a-ring-not-in-the-policy"],
)
def test_a_machine_outside_the_rings_is_told_which_rings_there_are(
    machine: Row, policy: RemediationPolicy, message: str
) -> None:
    skip = skip_of(planned(machine, policy=policy), machine)
    assert (skip.code, skip.message) == (SkipCode.NO_RING, message)


def test_assess_mode_says_which_install_remediate_mode_would_start_and_why() -> None:
    machine = vm("behind")
    skip = skip_of(planned(machine, policy=replace(REMEDIATE, mode=Mode.ASSESS)), machine)
    assert skip.message == (
        "mode assess starts only assessments; in remediate mode it would get install_hotpatch: "
        f"behind: {HOTPATCH}"
    )


# -- the reason of each operation ------------------------------------------------------------

_MISSING = Reason("missing", "KB5075943 is not installed")


@pytest.mark.parametrize(
    ("machine", "now", "action", "reason"),
    [
        (
            vm("stale", State.ASSESSMENT_DUE),
            IN_WINDOW,
            "assess:2026-02-12",
            "its assessment is due: a fresh assessment comes before any install",
        ),
        (vm("behind"), IN_WINDOW, "install_hotpatch", f"behind: {HOTPATCH}{FEB_PUBLISHED}"),
        (
            vm("missing", reasons=(_MISSING,)),
            IN_WINDOW,
            "install_hotpatch",
            f"KB5075943 is not installed: {HOTPATCH}{FEB_PUBLISHED}",
        ),
        (
            vm("waiting", State.REBOOT_PENDING),
            IN_WINDOW,
            "install_restart",
            "a restart is pending: a restart-permitting install (rebootSetting IfRequired) in "
            f"its window{FEB_PUBLISHED}",
        ),
        (
            vm("off-cycle", action=Action.INSTALL_BASELINE),
            IN_WINDOW,
            "install_baseline",
            "behind: the 2026-02 hotpatch-month update installs without a restart in a hotpatch "
            "month (rebootSetting Never); the restart follows in a later window"
            f"{FEB_PUBLISHED}",
        ),
        (
            vm("behind-in-april"),
            IN_APRIL_WINDOW,
            "install_baseline",
            "behind: the 2026-04 baseline update installs restarting if required (rebootSetting "
            f"IfRequired){APRIL_PUBLISHED}",
        ),
    ],
    ids=lambda value: value.name if isinstance(value, Row) else None,
)
def test_each_operation_says_what_it_installs_and_whether_it_may_restart(
    machine: Row, now: datetime, action: str, reason: str
) -> None:
    op = operation_of(planned(machine, now=now), machine)
    assert (op.action, op.reason) == (action, reason)


# -- the journal -----------------------------------------------------------------------------

#: `past` starts an operation 20 minutes before it finishes, IN_WINDOW by default.
_STARTED = "2026-02-12T22:10Z"


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (
            "started",
            SkipCode.IN_FLIGHT,
            f"install_hotpatch for 2026-02 is in flight (started since {_STARTED}): one "
            "operation at a time on a machine",
        ),
        (
            "succeeded",
            SkipCode.ALREADY_DONE,
            f"install_hotpatch for 2026-02 already succeeded (started {_STARTED})",
        ),
        (
            "failed",
            SkipCode.FAILED_BEFORE,
            f"install_hotpatch for 2026-02 failed before (started {_STARTED}): a failed "
            "operation is never retried automatically",
        ),
        (
            "unknown",
            SkipCode.OUTCOME_UNKNOWN,
            f"install_hotpatch for 2026-02 was started {_STARTED} and its outcome is unknown: "
            "resolve it before anything else starts on this machine",
        ),
    ],
)
def test_an_operation_on_record_says_what_happened_to_it_and_when_it_started(
    status: str, code: SkipCode, message: str
) -> None:
    machine = vm("a0")
    skip = skip_of(planned(machine, operations=(past(machine, status),)), machine)
    assert (skip.code, skip.message) == (code, message)


def _records(machine: Row, *statuses: str) -> tuple[PastOperation, ...]:
    """Records of one operation (one key) with these statuses, in this order."""
    return tuple(past(machine, status) for status in statuses)


@pytest.mark.parametrize(
    ("statuses", "code"),
    [
        (("succeeded", "failed"), SkipCode.FAILED_BEFORE),
        (("failed", "succeeded"), SkipCode.FAILED_BEFORE),
        (("succeeded", "unknown"), SkipCode.OUTCOME_UNKNOWN),
        (("unknown", "succeeded"), SkipCode.OUTCOME_UNKNOWN),
        (("failed", "unknown"), SkipCode.OUTCOME_UNKNOWN),
        (("unknown", "failed"), SkipCode.OUTCOME_UNKNOWN),
        # A status the planner does not know is an outcome it does not know.
        (("cancelled",), SkipCode.OUTCOME_UNKNOWN),
        (("failed", "cancelled"), SkipCode.OUTCOME_UNKNOWN),
        (("cancelled", "failed"), SkipCode.OUTCOME_UNKNOWN),
        (("succeeded", "cancelled"), SkipCode.OUTCOME_UNKNOWN),
        (("cancelled", "succeeded"), SkipCode.OUTCOME_UNKNOWN),
    ],
    ids=lambda value: "-then-".join(value) if isinstance(value, tuple) else str(value),
)
def test_of_several_records_of_one_operation_the_most_cautious_decides_in_any_order(
    statuses: tuple[str, ...], code: SkipCode
) -> None:
    machine = vm("a0")
    result = planned(machine, operations=_records(machine, *statuses))
    assert skip_of(result, machine).code is code


def test_every_operation_in_flight_in_a_ring_counts_against_its_concurrency() -> None:
    machines = [vm(f"a{i}") for i in range(3)]
    policy = replace(REMEDIATE, rings=(RingPolicy("ring0", max_concurrent=3),))
    running = (past(vm("x0"), "started"), past(vm("x1"), "accepted"))
    result = planned(*machines, policy=policy, operations=running)
    assert [op.machine_id for op in result.operations] == [machines[0].id]
    assert [(s.code, s.message) for s in result.skips] == [
        (SkipCode.CAP_REACHED, "ring ring0 has 3 operation(s) in flight, its max_concurrent of 3")
    ] * 2


@pytest.fixture
def host_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Sets the zone of the host the planner runs on (TZ), and restores it."""

    def set_zone(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield set_zone
    monkeypatch.undo()
    time.tzset()


def test_an_assessment_is_of_the_utc_day_whatever_the_zone_of_now_or_of_the_host(
    host_zone: Callable[[str], None],
) -> None:
    # Its day is in its key: the Function App (UTC) and an operator's laptop (UTC+14) must
    # agree on it, or one day's assessment starts twice.
    host_zone("Pacific/Kiritimati")
    machine = vm("stale", State.ASSESSMENT_DUE)
    berlin = IN_WINDOW.astimezone(ZoneInfo("Europe/Berlin"))
    assert berlin.date().isoformat() == "2026-02-12"
    assert operation_of(planned(machine, now=berlin), machine).action == "assess:2026-02-12"
    after_midnight_in_berlin = datetime(2026, 2, 12, 23, 30, tzinfo=UTC)
    late = operation_of(planned(machine, now=after_midnight_in_berlin), machine)
    assert late.action == "assess:2026-02-12"


# -- blocked KBs -----------------------------------------------------------------------------


def test_every_install_excludes_the_blocked_kbs_in_numeric_order() -> None:
    machine = vm("a0")
    blocks = (BlockedKb("KB5062557", "loops"), BlockedKb("KB999999", "old"))
    op = operation_of(planned(machine, policy=replace(REMEDIATE, blocked_kbs=blocks)), machine)
    assert op.install is not None
    assert op.install.kb_exclude == ("KB999999", "KB5062557")


# -- the run ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "release"),
    [
        (IN_WINDOW, "2026-02"),
        (datetime(2026, 2, 10, 17, 59, tzinfo=UTC), "2026-01"),
        (datetime(2026, 2, 10, 18, 0, tzinfo=UTC), "2026-02"),
        (IN_APRIL_WINDOW, "2026-04"),
    ],
)
def test_a_plan_says_when_it_was_made_and_which_release_was_in_force(
    now: datetime, release: str
) -> None:
    result = planned(vm("a0", State.COMPLIANT), now=now)
    assert (result.now, result.release) == (now, release)


def test_a_machine_given_three_times_is_planned_once_from_the_first_and_the_notice_counts() -> None:
    first = vm("a0")
    upper = replace(first, id=first.id.upper(), os=OsFamily.WS2025)
    untagged = replace(first, id=first.id.title(), ring=None)
    result = planned(first, upper, untagged, vm("b0"))
    assert [op.machine_id for op in result.operations] == [first.id, vm("b0").id]
    assert result.skips == ()
    assert result.notices == (
        f"machine {first.id} was given 3 times (ids compare without regard to case): it is "
        "planned once, from the first",
    )
