"""State precedence: a machine gets the most urgent state of all that apply, in README's order.

unknown > not_eligible > misconfigured > assessment_due > non_compliant > reboot_pending >
pending > compliant; every reason stays on the verdict whichever state wins.
"""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest

from hotpatch.core.calendar import Calendar
from hotpatch.core.compliance import Evaluator
from hotpatch.core.inventory import parse_rows
from hotpatch.core.models import STATE_PRECEDENCE, Action, OsFamily, State, Verdict
from hotpatch.core.policy import Policy
from hotpatch.core.releases import Program, ReleaseCatalog
from hotpatch.data import shipped_image_catalog, shipped_release_catalog
from tests.builders import NOW, assessment_row, vm_id, vm_row

FEB_2026 = "10.0.20348.4711"  # WS2022 2026-02 hotpatch: the release in force at NOW
JAN_2026 = "10.0.20348.4648"  # 2026-01 baseline: one release behind, inside the grace period
DEC_2025 = "10.0.20348.4467"  # 2025-12 hotpatch: behind the January baseline (off the cycle)
NEWER_THAN_THE_CATALOG = "10.0.20348.99999"
PATCH = "properties.osProfile.windowsConfiguration.patchSettings"
POWER = "properties.extended.instanceView.powerState.code"
WS2019 = ("MicrosoftWindowsServer", "WindowsServer", "2019-datacenter")
STALE = NOW - timedelta(hours=73)


def _ended_ws2022_program() -> ReleaseCatalog:
    """The shipped releases, with WS2022's hotpatch program ending in December 2025."""
    shipped = shipped_release_catalog()
    programs = [
        Program(os=OsFamily.WS2022, first_month="2022-02", last_month="2025-12"),
        *(p for os, p in shipped.programs.items() if os is not OsFamily.WS2022),
    ]
    return ReleaseCatalog(shipped.releases, shipped.covers_through, programs)


def judge(*rows: dict[str, Any], releases: ReleaseCatalog | None = None) -> Verdict:
    calendar = Calendar(releases or shipped_release_catalog())
    evaluator = Evaluator(shipped_image_catalog(), calendar, Policy(), NOW)
    (verdict,) = evaluator.evaluate_all(parse_rows(rows))
    return verdict


def codes(verdict: Verdict) -> list[str]:
    return [reason.code for reason in verdict.reasons]


def test_the_documented_order_is_the_order_the_rules_rank_states_in() -> None:
    # README's table of states, top to bottom.
    assert [state.value for state in STATE_PRECEDENCE] == [
        "unknown",
        "not_eligible",
        "misconfigured",
        "assessment_due",
        "non_compliant",
        "reboot_pending",
        "pending",
        "compliant",
    ]


def test_off_cycle_outranks_a_pending_reboot_which_outranks_updates_inside_the_grace() -> None:
    verdict = judge(
        vm_row(build=DEC_2025),
        assessment_row(vm_id("vm1"), security=2, reboot_pending=True),
    )
    assert (verdict.state, verdict.action) == (State.NON_COMPLIANT, Action.INSTALL_BASELINE)
    assert codes(verdict) == ["off_cycle", "updates_pending", "reboot_pending"]


#: For each adjacent pair of states, a machine to which exactly the two apply: the higher one
#: wins, the action is the winning reason's, and both reasons are kept (in the rules' order).
ADJACENT_PAIRS = [
    pytest.param(
        [vm_row(image=WS2019, **{POWER: "PowerState/deallocated"})],
        None,
        (State.UNKNOWN, Action.NONE),
        ["deallocated", "sku_not_hotpatchable"],
        id="unknown > not_eligible",
    ),
    pytest.param(
        [vm_row(**{f"{PATCH}.enableHotpatching": False}), assessment_row(vm_id("vm1"))],
        _ended_ws2022_program,
        (State.NOT_ELIGIBLE, Action.NONE),
        ["hotpatch_program_ended", "hotpatch_disabled"],
        id="not_eligible > misconfigured",
    ),
    pytest.param(
        [vm_row(**{f"{PATCH}.patchMode": "Manual"})],
        None,
        (State.MISCONFIGURED, Action.FIX_CONFIGURATION),
        ["patch_mode_not_platform", "never_assessed"],
        id="misconfigured > assessment_due",
    ),
    pytest.param(
        [vm_row(build=DEC_2025), assessment_row(vm_id("vm1"), assessed=STALE)],
        None,
        (State.ASSESSMENT_DUE, Action.ASSESS),
        ["assessment_stale", "off_cycle"],
        id="assessment_due > non_compliant",
    ),
    pytest.param(
        [vm_row(build=DEC_2025), assessment_row(vm_id("vm1"), reboot_pending=True)],
        None,
        (State.NON_COMPLIANT, Action.INSTALL_BASELINE),
        ["off_cycle", "reboot_pending"],
        id="non_compliant > reboot_pending",
    ),
    pytest.param(
        [vm_row(build=JAN_2026), assessment_row(vm_id("vm1"), reboot_pending=True)],
        None,
        (State.REBOOT_PENDING, Action.INSTALL_BASELINE),
        ["update_available", "reboot_pending"],
        id="reboot_pending > pending",
    ),
    pytest.param(
        [vm_row(build=NEWER_THAN_THE_CATALOG), assessment_row(vm_id("vm1"), critical=1)],
        None,
        (State.PENDING, Action.INSTALL_HOTPATCH),
        ["build_not_in_catalog", "updates_pending"],
        id="pending > compliant",
    ),
]


@pytest.mark.parametrize(("rows", "releases", "outcome", "reasons"), ADJACENT_PAIRS)
def test_of_two_adjacent_states_the_more_urgent_one_wins_and_both_reasons_stay(
    rows: list[dict[str, Any]],
    releases: Any,
    outcome: tuple[State, Action],
    reasons: list[str],
) -> None:
    verdict = judge(*rows, releases=releases() if releases else None)
    assert (verdict.state, verdict.action) == outcome
    assert codes(verdict) == reasons


def test_the_pairs_cover_every_adjacent_pair_of_the_documented_order() -> None:
    named = [param.id for param in ADJACENT_PAIRS]
    order = [state.value for state in STATE_PRECEDENCE]
    assert named == [f"{high} > {low}" for high, low in itertools.pairwise(order)]


def test_of_two_reasons_of_the_winning_state_the_first_decides_the_action() -> None:
    """A stopped VM waits to be judged when it runs (action none), even when its build, which
    is also unknown, would be investigated: the availability rule speaks first."""
    verdict = judge(vm_row(build="not a build", **{POWER: "PowerState/stopped"}))
    assert codes(verdict)[:1] == ["stopped"]
    assert "build_not_recognised" in codes(verdict)
    assert (verdict.state, verdict.action) == (State.UNKNOWN, Action.NONE)
