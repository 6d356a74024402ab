"""The rules at their edges: each boundary instant, each reason a rule alone produces, roll-ups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from hotpatch.core.calendar import Calendar
from hotpatch.core.compliance import Evaluator, summarize
from hotpatch.core.inventory import parse_rows
from hotpatch.core.models import Action, State, Verdict
from hotpatch.core.policy import Policy
from hotpatch.data import shipped_image_catalog, shipped_release_catalog
from tests.builders import DELETE, NOW, assessment_row, installation_row, vm_id, vm_row

FEB_2026 = "10.0.20348.4711"  # WS2022 2026-02 hotpatch: the release in force at NOW
#: The 2026-02 hotpatch shipped 2026-02-10 18:00Z; its seven days of grace end here.
FEB_GRACE_ENDS = datetime(2026, 2, 17, 18, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


def evaluate(*rows: dict[str, Any], now: datetime = NOW) -> list[Verdict]:
    """Every row through one evaluator: decisions it shares between machines are tested too."""
    policy = Policy()
    evaluator = Evaluator(shipped_image_catalog(), Calendar(shipped_release_catalog()), policy, now)
    return evaluator.evaluate_all(parse_rows(rows))


def codes(verdict: Verdict) -> list[str]:
    return [reason.code for reason in verdict.reasons]


# -- the assessment's maximum age ----------------------------------------------------------------


def test_an_assessment_exactly_the_maximum_age_old_is_fresh_and_a_second_older_is_stale() -> None:
    exactly = NOW - Policy().assessment_max_age
    verdicts = evaluate(
        vm_row("exact"),
        assessment_row(vm_id("exact"), assessed=exactly),
        vm_row("older"),
        assessment_row(vm_id("older"), assessed=exactly - SECOND),
    )
    assert [(v.name, v.state, codes(v)) for v in verdicts] == [
        ("exact", State.COMPLIANT, []),
        ("older", State.ASSESSMENT_DUE, ["assessment_stale"]),
    ]
    assert verdicts[1].action is Action.ASSESS


def test_a_stale_assessment_is_judged_stale_after_a_fresh_one_was_decided() -> None:
    """The evaluator shares decisions between machines with equal facts: the assessment's age
    must be one of those facts, on the same side of the boundary as the rule puts it."""
    exactly = NOW - Policy().assessment_max_age
    verdicts = evaluate(
        vm_row("older"),
        assessment_row(vm_id("older"), assessed=exactly - SECOND),
        vm_row("exact"),
        assessment_row(vm_id("exact"), assessed=exactly),
    )
    assert [v.state for v in verdicts] == [State.ASSESSMENT_DUE, State.COMPLIANT]


def written_in(row: dict[str, Any], offset: timedelta) -> dict[str, Any]:
    """The assessment row with its time written at another UTC offset (the same instant)."""
    at = datetime.fromisoformat(row["properties"]["lastModifiedDateTime"])
    row["properties"]["lastModifiedDateTime"] = at.astimezone(timezone(offset)).isoformat()
    return row


def test_the_maximum_age_is_one_instant_whatever_offset_the_time_is_written_at() -> None:
    exactly = NOW - Policy().assessment_max_age
    ahead, behind = timedelta(hours=5, minutes=30), timedelta(hours=-8)
    verdicts = evaluate(
        vm_row("exact ahead"),
        written_in(assessment_row(vm_id("exact ahead"), assessed=exactly), ahead),
        vm_row("older behind"),
        written_in(assessment_row(vm_id("older behind"), assessed=exactly - SECOND), behind),
        vm_row("exact in UTC"),
        assessment_row(vm_id("exact in UTC"), assessed=exactly),
        vm_row("older ahead"),
        written_in(assessment_row(vm_id("older ahead"), assessed=exactly - SECOND), ahead),
        vm_row("exact behind"),
        written_in(assessment_row(vm_id("exact behind"), assessed=exactly), behind),
    )
    assert [(v.name, v.state) for v in verdicts] == [
        ("exact ahead", State.COMPLIANT),
        ("older behind", State.ASSESSMENT_DUE),
        ("exact in UTC", State.COMPLIANT),
        ("older ahead", State.ASSESSMENT_DUE),
        ("exact behind", State.COMPLIANT),
    ]


# -- the grace period of missing updates ---------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "state", "code"),
    [
        (FEB_GRACE_ENDS - SECOND, State.PENDING, "updates_pending"),
        (FEB_GRACE_ENDS, State.NON_COMPLIANT, "missing_security_updates"),
    ],
    ids=["a second before the grace ends", "the instant it ends"],
)
def test_missing_security_updates_are_non_compliant_from_the_instant_the_grace_period_ends(
    now: datetime, state: State, code: str
) -> None:
    (verdict,) = evaluate(
        vm_row(build=FEB_2026), assessment_row(vm_id("vm1"), assessed=now, security=1), now=now
    )
    assert (verdict.state, codes(verdict)) == (state, [code])
    assert verdict.action is Action.INSTALL_HOTPATCH


# -- an install that asked for a restart, against the assessment after it ---------------------


@pytest.mark.parametrize(
    ("installed", "state"),
    [
        (-SECOND, State.COMPLIANT),  # assessed after the install: the restart happened
        (timedelta(0), State.REBOOT_PENDING),  # same instant: nothing shows it restarted
        (SECOND, State.REBOOT_PENDING),
    ],
    ids=["install before the assessment", "same instant", "install after the assessment"],
)
def test_an_install_that_needs_a_restart_counts_unless_an_assessment_came_strictly_after_it(
    installed: timedelta, state: State
) -> None:
    assessed = NOW - timedelta(hours=2)
    (verdict,) = evaluate(
        vm_row(build=FEB_2026),
        assessment_row(vm_id("vm1"), assessed=assessed),
        installation_row(vm_id("vm1"), assessed + installed, reboot_status="Required"),
    )
    assert verdict.state is state


@pytest.mark.parametrize("reboot_status", ["Required", "required", "REQUIRED"])
def test_the_reboot_status_of_an_install_is_read_in_any_case(reboot_status: str) -> None:
    (verdict,) = evaluate(
        vm_row(build=FEB_2026),
        assessment_row(vm_id("vm1"), assessed=NOW - timedelta(hours=2)),
        installation_row(vm_id("vm1"), NOW - timedelta(hours=1), reboot_status=reboot_status),
    )
    assert (verdict.state, codes(verdict)) == (State.REBOOT_PENDING, ["reboot_pending"])


@pytest.mark.parametrize("reboot_status", ["NotNeeded", "Completed", "Started"])
def test_an_install_that_needs_no_restart_leaves_the_machine_as_it_was(reboot_status: str) -> None:
    (verdict,) = evaluate(
        vm_row(build=FEB_2026),
        assessment_row(vm_id("vm1"), assessed=NOW - timedelta(hours=2)),
        installation_row(vm_id("vm1"), NOW - timedelta(hours=1), reboot_status=reboot_status),
    )
    assert (verdict.state, codes(verdict)) == (State.COMPLIANT, [])


def test_an_install_that_needs_a_restart_on_a_machine_never_assessed_still_counts() -> None:
    (verdict,) = evaluate(
        vm_row(build=FEB_2026),
        installation_row(vm_id("vm1"), NOW - timedelta(hours=1), reboot_status="Required"),
    )
    assert verdict.state is State.ASSESSMENT_DUE
    assert codes(verdict) == ["never_assessed", "reboot_pending"]


# -- the next action of a machine waiting for a restart -----------------------------------------


def test_a_machine_waiting_for_a_restart_is_next_given_a_restart_permitting_install() -> None:
    (verdict,) = evaluate(vm_row(build=FEB_2026), assessment_row(vm_id("vm1"), reboot_pending=True))
    assert (verdict.state, verdict.action, codes(verdict)) == (
        State.REBOOT_PENDING,
        Action.INSTALL_BASELINE,
        ["reboot_pending"],
    )


# -- machines that are not running ---------------------------------------------------------------

POWER = "properties.extended.instanceView.powerState.code"


@pytest.mark.parametrize(
    ("power_state", "code", "words"),
    [
        ("PowerState/stopped", "stopped", "stopped (allocated, not running)"),
        ("PowerState/stopping", "stopped", "stopping"),
        ("PowerState/deallocated", "deallocated", "deallocated"),
        ("PowerState/deallocating", "deallocated", "deallocating"),
        ("powerstate/STOPPED", "stopped", "stopped (allocated, not running)"),
    ],
)
def test_a_machine_that_is_not_running_is_unknown_and_waits_to_be_judged_when_it_runs(
    power_state: str, code: str, words: str
) -> None:
    (verdict,) = evaluate(vm_row(**{POWER: power_state}), assessment_row(vm_id("vm1")))
    assert (verdict.state, verdict.action, codes(verdict)) == (State.UNKNOWN, Action.NONE, [code])
    assert verdict.reasons[0].message == f"the VM is {words}; it is judged again when it runs"


@pytest.mark.parametrize("power_state", ["PowerState/running", "PowerState/starting", None])
def test_a_running_or_starting_machine_is_judged_on_its_patches(power_state: str | None) -> None:
    row = vm_row(**{POWER: DELETE if power_state is None else power_state})
    (verdict,) = evaluate(row, assessment_row(vm_id("vm1")))
    assert (verdict.state, codes(verdict)) == (State.COMPLIANT, [])


# -- a build that is not one of the machine's release ------------------------------------------


@pytest.mark.parametrize(
    "build",
    ["10.0.26100.32313", "10.0.17763.1", "not a build"],
    ids=["a WS2025 build on a WS2022 image", "a WS2019 build", "text"],
)
def test_a_build_that_is_not_of_the_images_release_is_unknown_and_investigated(
    build: str,
) -> None:
    (verdict,) = evaluate(vm_row(build=build), assessment_row(vm_id("vm1")))
    assert (verdict.state, verdict.action, codes(verdict)) == (
        State.UNKNOWN,
        Action.INVESTIGATE,
        ["build_not_recognised"],
    )
    assert verdict.reasons[0].message == f"reported OS version {build} is not a ws2022 build"
    assert (verdict.release_month, verdict.releases_behind) == (None, None)


# -- configuration ------------------------------------------------------------------------------


def test_a_vm_whose_agent_is_not_provisioned_is_misconfigured() -> None:
    row = vm_row(**{"properties.osProfile.windowsConfiguration.provisionVMAgent": False})
    (verdict,) = evaluate(row, assessment_row(vm_id("vm1")))
    assert (verdict.state, verdict.action, codes(verdict)) == (
        State.MISCONFIGURED,
        Action.FIX_CONFIGURATION,
        ["vm_agent_not_provisioned"],
    )


@pytest.mark.parametrize("provisioned", [True, DELETE], ids=["true", "not set"])
def test_a_vm_agent_provisioned_or_not_reported_is_no_finding(provisioned: object) -> None:
    row = vm_row(**{"properties.osProfile.windowsConfiguration.provisionVMAgent": provisioned})
    (verdict,) = evaluate(row, assessment_row(vm_id("vm1")))
    assert (verdict.state, codes(verdict)) == (State.COMPLIANT, [])


# -- the roll-up by subscription ----------------------------------------------------------------

SUB_A = "00000000-0000-0000-0000-00000000000a"
SUB_B = "00000000-0000-0000-0000-00000000000b"


def _in(subscription: str | None, name: str, **assessment: Any) -> list[dict[str, Any]]:
    machine = vm_id(name, subscription or SUB_A)
    row = vm_row(name, id=machine, subscriptionId=subscription or DELETE)
    return [row, assessment_row(machine, **assessment)]


def test_the_summary_counts_each_subscription_by_state_in_precedence_order() -> None:
    verdicts = evaluate(
        *_in(SUB_B, "b1"),
        *_in(SUB_A, "a1"),
        *_in(SUB_A, "a2", reboot_pending=True),
        *_in(SUB_A, "a3", status="Failed"),
        *_in(SUB_A, "a4"),
        *_in(None, "orphan"),
    )
    by_subscription = summarize(verdicts).by_subscription
    assert list(by_subscription.items()) == [
        ("(none)", {"compliant": 1}),
        (SUB_A, {"assessment_due": 1, "reboot_pending": 1, "compliant": 2}),
        (SUB_B, {"compliant": 1}),
    ]
    assert list(by_subscription[SUB_A]) == ["assessment_due", "reboot_pending", "compliant"]
