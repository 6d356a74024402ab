"""Compliance: one state per machine with every reason, precedence, grace periods, next action."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hotpatch.core import eligibility as eligibility_module
from hotpatch.core.calendar import Calendar, MonthOverride, YearMonth
from hotpatch.core.compliance import Evaluator, summarize
from hotpatch.core.inventory import ParsedInventory, parse_rows
from hotpatch.core.models import IDENTITY_FIELDS, Action, MonthKind, OsFamily, State, Verdict
from hotpatch.core.policy import Policy
from hotpatch.data import shipped_image_catalog, shipped_release_catalog
from hotpatch.sandbox.estate import EstateSpec, generate_estate
from tests.builders import (
    LATER,
    NOW,
    arc_id,
    arc_row,
    assessment_row,
    installation_row,
    vm_id,
    vm_row,
)

FEB_2026 = "10.0.20348.4711"  # WS2022 2026-02 hotpatch, the release in force at NOW
JAN_2026 = "10.0.20348.4648"  # 2026-01 baseline
DEC_2025 = "10.0.20348.4467"  # 2025-12 hotpatch: behind the January baseline


def evaluate(
    *rows: dict[str, Any], now: datetime = NOW, policy: Policy | None = None
) -> list[Verdict]:
    policy = policy or Policy()
    calendar = Calendar(shipped_release_catalog(), policy.month_overrides)
    evaluator = Evaluator(shipped_image_catalog(), calendar, policy, now)
    return evaluator.evaluate_all(parse_rows(rows))


def one(*rows: dict[str, Any], now: datetime = NOW, policy: Policy | None = None) -> Verdict:
    (verdict,) = evaluate(*rows, now=now, policy=policy)
    return verdict


def codes(verdict: Verdict) -> list[str]:
    return [reason.code for reason in verdict.reasons]


def healthy(name: str = "vm1", build: str = FEB_2026, **assessment: Any) -> list[dict[str, Any]]:
    return [vm_row(name, build=build), assessment_row(vm_id(name), **assessment)]


def test_a_machine_on_the_release_in_force_and_freshly_assessed_is_compliant() -> None:
    verdict = one(*healthy())
    assert (verdict.state, verdict.action, verdict.reasons) == (State.COMPLIANT, Action.NONE, ())
    assert verdict.release_month == "2026-02"
    assert verdict.releases_behind == 0
    assert verdict.expected_build == FEB_2026


def test_one_release_behind_inside_the_grace_period_is_pending_and_takes_the_hotpatch() -> None:
    verdict = one(*healthy(build=JAN_2026))
    assert verdict.state is State.PENDING
    assert verdict.action is Action.INSTALL_HOTPATCH
    assert codes(verdict) == ["update_available"]
    assert verdict.releases_behind == 1
    assert verdict.grace_ends == datetime(2026, 2, 17, 18, 0, tzinfo=UTC)


def test_one_release_behind_after_the_grace_period_is_non_compliant() -> None:
    verdict = one(vm_row(build=JAN_2026), assessment_row(vm_id("vm1"), assessed=LATER), now=LATER)
    assert verdict.state is State.NON_COMPLIANT
    assert codes(verdict) == ["build_behind"]
    assert verdict.action is Action.INSTALL_HOTPATCH


def test_the_grace_period_ends_exactly_seven_days_after_the_release_instant() -> None:
    grace_ends = datetime(2026, 2, 17, 18, 0, tzinfo=UTC)
    rows = [vm_row(build=JAN_2026), assessment_row(vm_id("vm1"), assessed=grace_ends)]
    before = one(*rows, now=grace_ends - timedelta(seconds=1))
    at = one(*rows, now=grace_ends)
    assert (before.state, at.state) == (State.PENDING, State.NON_COMPLIANT)


def test_behind_the_current_baseline_is_off_cycle_and_needs_a_baseline() -> None:
    verdict = one(*healthy(build=DEC_2025))
    assert verdict.state is State.NON_COMPLIANT
    assert codes(verdict) == ["off_cycle"]
    assert verdict.action is Action.INSTALL_BASELINE
    assert "2026-01 baseline" in verdict.reasons[0].message


def test_a_build_older_than_every_published_release_is_off_cycle() -> None:
    verdict = one(*healthy(build="10.0.20348.1000"))
    assert codes(verdict) == ["off_cycle"]


def test_in_a_baseline_month_the_grace_period_is_fourteen_days() -> None:
    # 2026-04-14 17:00Z: the April baseline; the machine is still on the March hotpatch.
    march = "10.0.20348.4830"
    rows = [vm_row(build=march)]
    ten_days = datetime(2026, 4, 24, 17, 0, tzinfo=UTC)
    fifteen_days = datetime(2026, 4, 29, 17, 0, tzinfo=UTC)
    early = one(*rows, assessment_row(vm_id("vm1"), assessed=ten_days), now=ten_days)
    late = one(*rows, assessment_row(vm_id("vm1"), assessed=fifteen_days), now=fifteen_days)
    assert (early.state, early.action) == (State.PENDING, Action.INSTALL_BASELINE)
    assert (late.state, codes(late)) == (State.NON_COMPLIANT, ["off_cycle"])


def test_missing_security_updates_are_pending_inside_grace_and_non_compliant_after() -> None:
    inside = one(*healthy(security=2))
    after = one(vm_row(), assessment_row(vm_id("vm1"), assessed=LATER, critical=1), now=LATER)
    assert (inside.state, codes(inside)) == (State.PENDING, ["updates_pending"])
    assert (after.state, codes(after)) == (State.NON_COMPLIANT, ["missing_security_updates"])
    assert after.missing_critical_security == 1


def test_a_machine_never_assessed_is_due_for_assessment() -> None:
    verdict = one(vm_row())
    assert (verdict.state, verdict.action, codes(verdict)) == (
        State.ASSESSMENT_DUE,
        Action.ASSESS,
        ["never_assessed"],
    )


def test_an_assessment_older_than_the_policy_allows_is_stale() -> None:
    old = NOW - timedelta(hours=73)
    verdict = one(vm_row(), assessment_row(vm_id("vm1"), assessed=old))
    assert codes(verdict) == ["assessment_stale"]
    assert "older than 72 h" in verdict.reasons[0].message
    assert verdict.last_assessed == old.replace(microsecond=0)
    relaxed = one(
        vm_row(),
        assessment_row(vm_id("vm1"), assessed=old),
        policy=Policy(assessment_max_age=timedelta(hours=96)),
    )
    assert relaxed.state is State.COMPLIANT


def test_a_failed_assessment_is_due_again() -> None:
    verdict = one(vm_row(), assessment_row(vm_id("vm1"), status="Failed"))
    assert (verdict.state, codes(verdict)) == (State.ASSESSMENT_DUE, ["assessment_failed"])


def test_a_pending_reboot_is_reported() -> None:
    verdict = one(*healthy(reboot_pending=True))
    assert (verdict.state, codes(verdict)) == (State.REBOOT_PENDING, ["reboot_pending"])


def test_an_install_that_needs_a_restart_after_the_last_assessment_is_reboot_pending() -> None:
    finished = NOW - timedelta(hours=1)
    rows = [*healthy(), installation_row(vm_id("vm1"), finished, reboot_status="Required")]
    assert one(*rows).state is State.REBOOT_PENDING


def test_an_assessment_after_the_install_supersedes_its_reboot_status() -> None:
    finished = NOW - timedelta(days=2)
    rows = [*healthy(), installation_row(vm_id("vm1"), finished, reboot_status="Required")]
    assert one(*rows).state is State.COMPLIANT


def test_only_the_newest_installation_row_counts() -> None:
    machine = vm_id("vm1")
    rows = [
        vm_row(build=FEB_2026),
        installation_row(machine, NOW - timedelta(hours=2), "new", reboot_status="NotNeeded"),
        installation_row(machine, NOW - timedelta(days=9), "old", reboot_status="Required"),
    ]
    verdict = one(*rows, assessment_row(machine, assessed=NOW - timedelta(days=3, hours=-1)))
    assert verdict.state is State.COMPLIANT


def test_a_deallocated_vm_is_unknown_and_waits() -> None:
    row = vm_row(**{"properties.extended.instanceView.powerState.code": "PowerState/deallocated"})
    verdict = one(row, assessment_row(vm_id("vm1")))
    assert (verdict.state, verdict.action, codes(verdict)) == (
        State.UNKNOWN,
        Action.NONE,
        ["deallocated"],
    )


def test_a_disconnected_arc_machine_is_unknown() -> None:
    verdict = one(arc_row(**{"properties.status": "Disconnected"}), assessment_row(arc_id("arc1")))
    assert (verdict.state, verdict.action) == (State.UNKNOWN, Action.INVESTIGATE)
    assert "arc_disconnected" in codes(verdict)


def test_misconfiguration_outranks_everything_below_it_but_keeps_every_reason() -> None:
    row = vm_row(
        build=DEC_2025,
        **{"properties.osProfile.windowsConfiguration.patchSettings.enableHotpatching": False},
    )
    verdict = one(row)
    assert (verdict.state, verdict.action) == (State.MISCONFIGURED, Action.FIX_CONFIGURATION)
    assert codes(verdict) == ["hotpatch_disabled", "never_assessed", "off_cycle"]


def test_unknown_outranks_not_eligible() -> None:
    row = vm_row(
        image=("MicrosoftWindowsServer", "WindowsServer", "2019-datacenter"),
        **{"properties.extended.instanceView.powerState.code": "PowerState/deallocated"},
    )
    verdict = one(row)
    assert verdict.state is State.UNKNOWN
    assert codes(verdict) == ["deallocated", "sku_not_hotpatchable"]


def test_a_machine_that_is_not_eligible_gets_no_patch_findings() -> None:
    row = vm_row(image=("MicrosoftWindowsServer", "WindowsServer", "2019-datacenter"))
    verdict = one(row)
    assert (verdict.state, verdict.action, codes(verdict)) == (
        State.NOT_ELIGIBLE,
        Action.NONE,
        ["sku_not_hotpatchable"],
    )


def test_an_enrolled_arc_machine_on_the_current_build_is_compliant() -> None:
    verdict = one(arc_row(build="10.0.26100.32313"), assessment_row(arc_id("arc1")))
    assert verdict.state is State.COMPLIANT
    assert verdict.os is OsFamily.WS2025


def test_an_operator_announced_unplanned_baseline_makes_the_month_need_a_restart() -> None:
    override = MonthOverride(YearMonth(2026, 2), MonthKind.UNPLANNED_BASELINE, OsFamily.WS2022)
    verdict = one(*healthy(build=JAN_2026), policy=Policy(month_overrides=(override,)))
    assert verdict.action is Action.INSTALL_BASELINE
    assert verdict.grace_ends == datetime(2026, 2, 24, 18, 0, tzinfo=UTC)


def test_months_the_catalog_does_not_know_are_not_invented() -> None:
    # November 2026: the catalog ends at 2026-05, so the expected build is unknown.
    now = datetime(2026, 11, 22, tzinfo=UTC)
    verdict = one(
        vm_row(build="10.0.20348.5074"), assessment_row(vm_id("vm1"), assessed=now), now=now
    )
    assert verdict.expected_build is None
    assert verdict.state is State.NON_COMPLIANT
    assert codes(verdict) == ["off_cycle"]
    assert "not in the catalog yet" in verdict.reasons[0].message


def test_the_ring_comes_from_the_policy_tag() -> None:
    row = vm_row(**{"tags": {"wave": "canary"}})
    assert one(row, policy=Policy(ring_tag="wave")).ring == "canary"
    assert one(row).ring is None


def test_the_summary_counts_by_state_subscription_os_and_ring() -> None:
    verdicts = evaluate(
        *healthy("a"),
        *healthy("b", build=DEC_2025),
        vm_row("c", image=("MicrosoftWindowsServer", "WindowsServer", "2019-datacenter")),
    )
    summary = summarize(verdicts)
    assert summary.total == 3
    assert summary.by_state["compliant"] == 1
    assert summary.by_state["non_compliant"] == 1
    assert summary.by_state["not_eligible"] == 1
    # Every state, in README's order (most urgent first), zeros included.
    assert list(summary.by_state) == [
        "unknown",
        "not_eligible",
        "misconfigured",
        "assessment_due",
        "non_compliant",
        "reboot_pending",
        "pending",
        "compliant",
    ]
    assert summary.by_state["pending"] == 0
    assert summary.by_os == {
        "(other)": {"not_eligible": 1},
        "ws2022": {"non_compliant": 1, "compliant": 1},
    }
    assert summary.by_ring == {"1": {"non_compliant": 1, "not_eligible": 1, "compliant": 1}}
    assert sum(summary.by_action.values()) == 3


def test_the_evaluator_refuses_a_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone"):
        evaluate(vm_row(), now=datetime(2026, 2, 14))


def test_patch_rows_join_their_machine_case_insensitively() -> None:
    rows = [vm_row(build=FEB_2026), assessment_row(vm_id("vm1").upper())]
    assert one(*rows).state is State.COMPLIANT


def test_deleting_the_build_leaves_only_the_assessment_to_judge() -> None:
    verdict = one(vm_row(build=None), assessment_row(vm_id("vm1")))
    assert verdict.state is State.COMPLIANT
    assert verdict.build is None
    assert verdict.releases_behind is None


PREVIEW_NO_YEAR = (
    "MicrosoftWindowsServer",
    "WindowsServerHotpatch-previews",
    "windows-server-azure-edition-hotpatch",
)


def test_an_allowed_preview_image_is_judged_by_the_build_it_reports() -> None:
    allow = Policy(allow_preview_images=True)
    verdict = one(vm_row(image=PREVIEW_NO_YEAR, build=DEC_2025), policy=allow)
    assert verdict.os is OsFamily.WS2022
    assert verdict.state is State.ASSESSMENT_DUE
    assert codes(verdict) == ["never_assessed", "off_cycle"]


def test_an_allowed_preview_image_without_a_build_is_unknown_not_compliant() -> None:
    allow = Policy(allow_preview_images=True)
    verdict = one(vm_row(image=PREVIEW_NO_YEAR, build=None), policy=allow)
    assert (verdict.state, codes(verdict)) == (State.UNKNOWN, ["missing_image_data"])


@pytest.mark.parametrize(
    "as_of",
    [
        datetime(2026, 5, 19, 12, 0, tzinfo=UTC),  # a week after a release: grace just over
        datetime(2026, 5, 13, 9, 0, tzinfo=UTC),  # the day after one: inside the grace period
        datetime(2026, 4, 2, 18, 0, tzinfo=UTC),  # mid-cycle, after a baseline month
    ],
)
def test_sharing_decisions_across_a_fleet_changes_no_verdict(as_of: datetime) -> None:
    """One evaluator decides each combination of facts once and reuses it: every machine must
    still get exactly the decision an evaluator that has seen only that machine gives it."""
    releases = shipped_release_catalog()
    estate = generate_estate(EstateSpec(machines=1_500, seed=as_of.day, as_of=as_of), releases)
    inventory = parse_rows(estate.rows())
    rules = (shipped_image_catalog(), Calendar(releases), Policy())
    shared = Evaluator(*rules, as_of).evaluate_all(inventory)
    assert len({verdict.state for verdict in shared}) >= 7  # a varied fleet, not one case
    for verdict in shared:
        key = verdict.id
        alone = Evaluator(*rules, as_of).evaluate(
            verdict.machine, inventory.assessments.get(key), inventory.installations.get(key)
        )
        assert alone.decision == verdict.decision, verdict.name


def test_preview_machines_on_different_releases_are_each_judged_by_their_own_build() -> None:
    allow = Policy(allow_preview_images=True)
    ws2022, ws2025 = evaluate(
        vm_row("a", image=PREVIEW_NO_YEAR, build=DEC_2025),
        vm_row("b", image=PREVIEW_NO_YEAR, build="10.0.26100.32313"),
        policy=allow,
    )
    assert (ws2022.os, ws2022.release_month, ws2022.releases_behind) == (
        OsFamily.WS2022,
        "2025-12",
        2,
    )
    assert codes(ws2022) == ["never_assessed", "off_cycle"]
    assert ws2022.expected_build == FEB_2026
    assert (ws2025.os, ws2025.release_month, ws2025.releases_behind) == (
        OsFamily.WS2025,
        "2026-02",
        0,
    )
    assert codes(ws2025) == ["never_assessed"]
    assert ws2025.expected_build == "10.0.26100.32313"


def test_an_inventory_built_by_hand_is_judged_like_a_parsed_one() -> None:
    rows = [*healthy("a"), *healthy("b", build=DEC_2025)]
    parsed = parse_rows(rows)
    by_hand = ParsedInventory(parsed.machines, parsed.assessments, parsed.installations)
    evaluator = Evaluator(
        shipped_image_catalog(), Calendar(shipped_release_catalog()), Policy(), NOW
    )
    assert [v.decision for v in evaluator.evaluate_all(by_hand)] == [
        v.decision for v in evaluate(*rows)
    ]


def _identity_reads(tree: ast.AST) -> list[str]:
    return [
        f"line {node.lineno}: machine.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "machine"
        and node.attr in IDENTITY_FIELDS
    ]


def test_no_rule_reads_which_machine_it_is_only_what_it_is() -> None:
    """Decisions are shared by machines with equal profiles, which leave out the identity: a
    rule that read a machine's name, subscription or tags would judge a whole fleet by one."""
    core = Path(eligibility_module.__file__).parent
    rules = ast.parse((core / "eligibility.py").read_text())
    compliance = ast.parse((core / "compliance.py").read_text())
    joins = {"evaluate_all", "_judge"}  # where a verdict is assembled: id, tags for the ring
    for node in ast.walk(compliance):
        if isinstance(node, ast.FunctionDef) and node.name not in joins:
            assert _identity_reads(node) == [], node.name
    assert _identity_reads(rules) == []
