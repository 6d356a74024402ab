"""What an operator reads: each reason's sentence, the signals beside a verdict, and when a machine
next restarts and why, word for word for the rules that shape them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from hotpatch.core.calendar import Calendar, MonthOverride, YearMonth
from hotpatch.core.compliance import Evaluator
from hotpatch.core.inventory import parse_rows
from hotpatch.core.models import MonthKind, OsFamily, Verdict
from hotpatch.core.policy import Policy
from hotpatch.data import shipped_image_catalog, shipped_release_catalog
from tests.builders import DELETE, NOW, arc_id, arc_row, assessment_row, vm_id, vm_row

MAY = datetime(2026, 5, 19, 12, 0, tzinfo=UTC)
PATCH = "properties.osProfile.windowsConfiguration.patchSettings"
AZURE_EDITION = "Windows Server 2022 Datacenter: Azure Edition"
FEB_2026 = "10.0.20348.4711"


def judge(*rows: dict[str, Any], now: datetime = NOW, policy: Policy | None = None) -> Verdict:
    policy = policy or Policy()
    calendar = Calendar(shipped_release_catalog(), policy.month_overrides)
    evaluator = Evaluator(shipped_image_catalog(), calendar, policy, now)
    (verdict,) = evaluator.evaluate_all(parse_rows(rows))
    return verdict


def said(verdict: Verdict) -> list[tuple[str, str]]:
    return [(str(reason.code), reason.message) for reason in verdict.reasons]


def signalled(verdict: Verdict) -> list[tuple[str, str]]:
    return [(str(signal.code), signal.message) for signal in verdict.signals]


def quiet_assessment(machine_id: str, **fields: Any) -> dict[str, Any]:
    """An assessment that found no update beyond the critical and security ones asked for."""
    row = assessment_row(machine_id, **fields)
    counts = row["properties"]["availablePatchCountByClassification"]
    del counts["other"]
    return row


# -- Azure Edition guests reported through Arc (Azure Local) ----------------------------------


def _azure_edition(**overrides: Any) -> dict[str, Any]:
    return arc_row(build=FEB_2026, **{"properties.osSku": AZURE_EDITION, **overrides})


@pytest.mark.parametrize(
    ("kind", "where"),
    [("HCI", "Azure Local"), ("hci", "Azure Local"), (DELETE, "Azure Arc"), ("", "Azure Arc")],
)
def test_an_azure_edition_guest_through_arc_is_judged_by_the_azure_edition_rules(
    kind: object, where: str
) -> None:
    verdict = judge(_azure_edition(kind=kind), quiet_assessment(arc_id("arc1")))
    assert (verdict.state.value, verdict.os, said(verdict)) == ("compliant", OsFamily.WS2022, [])
    assert signalled(verdict) == [
        (
            "azure_local",
            f"{AZURE_EDITION} on {where}: judged by the Azure Edition rules, not the Windows "
            "Server 2025 Arc hotpatch licensing rule",
        )
    ]


def test_an_azure_edition_guest_with_hotpatch_off_is_misconfigured() -> None:
    row = _azure_edition(**{"properties.osProfile.windowsConfiguration.patchSettings": {}})
    off = _azure_edition(
        **{"properties.osProfile.windowsConfiguration.patchSettings.enableHotpatching": False}
    )
    assert said(judge(row, quiet_assessment(arc_id("arc1")))) == []  # not reported: not judged
    assert said(judge(off, quiet_assessment(arc_id("arc1")))) == [
        ("hotpatch_disabled", "enableHotpatching is false on an Azure Edition machine")
    ]


@pytest.mark.parametrize(
    ("version", "shown"),
    [("10.0.17763.1", "10.0.17763.1"), (DELETE, "none"), ("", "none")],
    ids=["a WS2019 build", "no version", "empty"],
)
def test_an_azure_edition_guest_whose_build_names_no_release_is_unknown(
    version: object, shown: str
) -> None:
    verdict = judge(_azure_edition(**{"properties.osVersion": version}))
    assert (verdict.state.value, verdict.os) == ("unknown", None)
    assert said(verdict) == [
        (
            "missing_image_data",
            f"an Azure Edition machine ({AZURE_EDITION}) whose reported osVersion ({shown}) is "
            "not a Windows Server 2022 or 2025 build",
        )
    ]


# -- builds --------------------------------------------------------------------------------------


def test_a_machine_on_a_regular_cumulative_update_is_told_what_it_took_and_when_it_is_back() -> (
    None
):
    verdict = judge(
        vm_row(build="10.0.20348.4893"), assessment_row(vm_id("vm1"), assessed=MAY), now=MAY
    )
    assert said(verdict)[0] == (
        "regular_channel_build",
        "it took KB5078766 (build 10.0.20348.4893, the regular cumulative update of 2026-03) "
        "instead of the hotpatch: current on security as of 2026-03 but off the hotpatch track, "
        "restarting every month until the 2026-04 baseline brings it back; something outside "
        "the hotpatch process is installing updates",
    )


def test_a_release_behind_inside_the_grace_says_which_release_is_due_and_by_when() -> None:
    verdict = judge(vm_row(build="10.0.20348.4648"), assessment_row(vm_id("vm1")))
    assert said(verdict) == [
        (
            "update_available",
            "build 10.0.20348.4648 is at 2026-01; the 2026-02 release (KB5075943, build "
            "10.0.20348.4711) is due by 2026-02-17T18:00Z",
        )
    ]


def test_a_build_newer_than_the_catalog_is_judged_on_its_assessment_alone() -> None:
    verdict = judge(vm_row(build="10.0.20348.99999"), assessment_row(vm_id("vm1")))
    assert said(verdict) == [
        (
            "build_not_in_catalog",
            "build 10.0.20348.99999 is newer than every ws2022 build in the release catalog "
            "(which covers releases through 2026-05): it is judged on its assessment alone; "
            "update the catalog to judge its build",
        )
    ]
    assert verdict.releases_behind is None  # never called behind


# -- when a machine next restarts, and why ---------------------------------------------------


@pytest.mark.parametrize(
    ("rows", "now", "policy", "restart", "cause"),
    [
        pytest.param(
            [vm_row(build=FEB_2026), quiet_assessment(vm_id("vm1"), reboot_pending=True)],
            NOW,
            None,
            NOW,
            "a restart is pending now: installed updates wait for it",
            id="a pending reboot",
        ),
        pytest.param(
            [vm_row(build="10.0.20348.4893"), quiet_assessment(vm_id("vm1"), assessed=MAY)],
            MAY,
            None,
            datetime(2026, 6, 9, 17, 0, tzinfo=UTC),
            "off the hotpatch track: the 2026-06 update restarts it, as every monthly update "
            "does until the 2026-07 baseline",
            id="a regular-channel build",
        ),
        pytest.param(
            [vm_row(build="10.0.20348.4467"), quiet_assessment(vm_id("vm1"))],
            NOW,
            None,
            NOW,
            "off the cycle: installing the current baseline restarts it",
            id="off the cycle",
        ),
        pytest.param(
            [vm_row(build=FEB_2026), assessment_row(vm_id("vm1"))],  # "other": 1 available
            NOW,
            None,
            NOW,
            "non-security updates available (.NET, drivers, rollups) can restart it when "
            "installed, even in a hotpatch month",
            id="restart-capable updates available",
        ),
        pytest.param(
            [vm_row(build=FEB_2026), quiet_assessment(vm_id("vm1"))],
            NOW,
            None,
            datetime(2026, 4, 14, 17, 0, tzinfo=UTC),
            "the 2026-04 release (baseline)",
            id="the next planned baseline",
        ),
        pytest.param(
            [vm_row(build=FEB_2026), quiet_assessment(vm_id("vm1"))],
            NOW,
            Policy(
                month_overrides=(
                    MonthOverride(
                        YearMonth(2026, 3), MonthKind.UNPLANNED_BASELINE, OsFamily.WS2022
                    ),
                )
            ),
            datetime(2026, 3, 10, 17, 0, tzinfo=UTC),
            "the 2026-03 release (unplanned baseline)",
            id="an announced unplanned baseline",
        ),
        pytest.param(
            [
                vm_row(build="10.0.20348.99999"),
                quiet_assessment(vm_id("vm1"), assessed=datetime(2027, 10, 20, tzinfo=UTC)),
            ],
            datetime(2027, 10, 20, 12, 0, tzinfo=UTC),
            None,
            datetime(2027, 11, 9, 18, 0, tzinfo=UTC),
            "the 2027-11 release (end of the hotpatch program)",
            id="the end of the program",
        ),
    ],
)
def test_the_next_restart_comes_from_the_machine_first_and_the_calendar_second(
    rows: list[dict[str, Any]],
    now: datetime,
    policy: Policy | None,
    restart: datetime,
    cause: str,
) -> None:
    verdict = judge(*rows, now=now, policy=policy)
    assert (verdict.next_restart, verdict.restart_cause) == (restart, cause)


def test_a_machine_that_is_not_eligible_has_no_restart_forecast() -> None:
    row = vm_row(image=("MicrosoftWindowsServer", "WindowsServer", "2019-datacenter"))
    verdict = judge(row, quiet_assessment(vm_id("vm1")))
    assert (verdict.next_restart, verdict.restart_cause) == (None, None)


# -- the assessment and the updates it found ---------------------------------------------------

LATER = datetime(2026, 2, 20, 12, 0, tzinfo=UTC)  # past the 2026-02 grace (2026-02-17 18:00Z)


@pytest.mark.parametrize(
    ("rows", "now", "reasons"),
    [
        pytest.param(
            [vm_row(build=FEB_2026)],
            NOW,
            [("never_assessed", "no patch assessment on record")],
            id="never assessed",
        ),
        pytest.param(
            [vm_row(build=FEB_2026), quiet_assessment(vm_id("vm1"), status="Failed")],
            NOW,
            [("assessment_failed", "the latest assessment failed")],
            id="failed",
        ),
        pytest.param(
            [
                vm_row(build=FEB_2026),
                quiet_assessment(vm_id("vm1"), assessed=datetime(2026, 2, 1, tzinfo=UTC)),
            ],
            NOW,
            [
                (
                    "assessment_stale",
                    "the latest assessment is older than 72 h (the policy's maximum age)",
                )
            ],
            id="stale",
        ),
        pytest.param(
            [vm_row(build="10.0.20348.1000"), quiet_assessment(vm_id("vm1"))],
            NOW,
            [
                (
                    "off_cycle",
                    "build 10.0.20348.1000 is older than every published ws2022 hotpatch release; "
                    "it needs the current baseline",
                )
            ],
            id="older than the catalog",
        ),
        pytest.param(
            [vm_row(build="10.0.20348.4467"), quiet_assessment(vm_id("vm1"))],
            NOW,
            [
                (
                    "off_cycle",
                    "build 10.0.20348.4467 is at 2025-12, behind the 2026-01 baseline: it cannot "
                    "take hotpatches until it is back on a baseline (2 release(s) behind the "
                    "2026-02 release (KB5075943, build 10.0.20348.4711))",
                )
            ],
            id="behind the baseline",
        ),
        pytest.param(
            [vm_row(build="10.0.20348.4648"), quiet_assessment(vm_id("vm1"), assessed=LATER)],
            LATER,
            [
                (
                    "build_behind",
                    "build 10.0.20348.4648 is at 2026-01, 1 release(s) behind the 2026-02 release "
                    "(KB5075943, build 10.0.20348.4711)",
                )
            ],
            id="behind past the grace",
        ),
        pytest.param(
            [vm_row(build=FEB_2026), quiet_assessment(vm_id("vm1"), critical=2)],
            NOW,
            [
                (
                    "updates_pending",
                    "2 critical and 0 security update(s) missing; grace period ends "
                    "2026-02-17T18:00Z",
                )
            ],
            id="updates inside the grace",
        ),
        pytest.param(
            [vm_row(build=FEB_2026), quiet_assessment(vm_id("vm1"), assessed=LATER, security=1)],
            LATER,
            [
                (
                    "missing_security_updates",
                    "0 critical and 1 security update(s) missing past the grace period (ended "
                    "2026-02-17T18:00Z)",
                )
            ],
            id="updates past the grace",
        ),
    ],
)
def test_the_assessment_rules_say_what_they_found_word_for_word(
    rows: list[dict[str, Any]], now: datetime, reasons: list[tuple[str, str]]
) -> None:
    assert said(judge(*rows, now=now)) == reasons


def test_a_machine_that_reports_no_build_takes_missing_updates_as_a_hotpatch() -> None:
    verdict = judge(vm_row(build=None), quiet_assessment(vm_id("vm1"), security=1))
    assert (verdict.state.value, verdict.action.value) == ("pending", "install_hotpatch")


# -- signals: facts beside the verdict that do not change it ----------------------------------


def test_the_signals_of_a_vm_say_what_to_watch_word_for_word() -> None:
    row = vm_row(
        **{
            f"{PATCH}.assessmentMode": "ImageDefault",
            f"{PATCH}.automaticByPlatformSettings.bypassPlatformSafetyChecksOnUserSchedule": True,
            "properties.securityProfile": DELETE,
        }
    )
    assessment = assessment_row(vm_id("vm1"))  # "other": 1
    assessment["properties"]["availablePatchCountByClassification"]["updateRollUp"] = 2
    assert signalled(judge(row, assessment)) == [
        (
            "periodic_assessment_off",
            "assessmentMode is ImageDefault: no periodic assessment every 24 h, so assessments "
            "go stale unless one is started (set it to AutomaticByPlatform)",
        ),
        (
            "customer_managed_schedule",
            "bypassPlatformSafetyChecksOnUserSchedule is true: installs run only on its Update "
            "Manager maintenance schedule; without one, installs are skipped",
        ),
        (
            "security_type",
            "security type Standard (no Trusted Launch); reported as a signal, not a documented "
            "hotpatch requirement",
        ),
        (
            "restart_capable_updates",
            "3 non-security update(s) available (.NET, drivers, rollups): they can need a restart "
            "even in a hotpatch month",
        ),
    ]


def test_a_vm_set_up_as_hotpatch_expects_shows_only_its_security_type() -> None:
    verdict = judge(vm_row(), quiet_assessment(vm_id("vm1")))
    assert signalled(verdict) == [
        (
            "security_type",
            "security type TrustedLaunch; reported as a signal, not a documented hotpatch "
            "requirement",
        )
    ]


def test_signals_shared_between_machines_follow_each_machines_own_updates() -> None:
    """The evaluator makes signals once per combination of facts: the count of restart-capable
    updates (and whether there is an assessment at all) must be one of them."""
    policy = Policy()
    evaluator = Evaluator(shipped_image_catalog(), Calendar(shipped_release_catalog()), policy, NOW)
    rows = [
        vm_row("one"),
        assessment_row(vm_id("one")),  # "other": 1
        vm_row("none"),
        quiet_assessment(vm_id("none")),
        vm_row("two"),
        assessment_row(vm_id("two")),
        vm_row("unassessed"),
    ]
    rows[5]["properties"]["availablePatchCountByClassification"]["other"] = 2
    restart_capable = {
        v.name: [s.message.split()[0] for s in v.signals if s.code == "restart_capable_updates"]
        for v in evaluator.evaluate_all(parse_rows(rows))
    }
    assert restart_capable == {"one": ["1"], "none": [], "two": ["2"], "unassessed": []}


def test_restart_forecasts_shared_between_machines_follow_each_machines_own_updates() -> None:
    evaluator = Evaluator(
        shipped_image_catalog(), Calendar(shipped_release_catalog()), Policy(), NOW
    )
    rows = [
        vm_row("some"),
        assessment_row(vm_id("some")),  # "other": 1
        vm_row("none"),
        quiet_assessment(vm_id("none")),
    ]
    causes = {
        v.name: v.restart_cause.split()[0] if v.restart_cause else None
        for v in evaluator.evaluate_all(parse_rows(rows))
    }
    assert causes == {"some": "non-security", "none": "the"}


def test_a_regular_build_is_back_on_the_track_at_an_announced_unplanned_baseline() -> None:
    march = MonthOverride(YearMonth(2026, 3), MonthKind.UNPLANNED_BASELINE, OsFamily.WS2022)
    verdict = judge(
        vm_row(build="10.0.20348.4773"),  # February's regular cumulative update
        quiet_assessment(vm_id("vm1")),
        policy=Policy(month_overrides=(march,)),
    )
    (code, message) = said(verdict)[0]
    assert code == "regular_channel_build"
    assert "restarting every month until the 2026-03 baseline brings it back" in message


def test_a_build_released_after_now_is_judged_as_the_catalog_stood_at_now() -> None:
    # At NOW (2026-02-14) the newest WS2022 release is February's; March's build is not known
    # yet, and neither is any build past it.
    # March's regular cumulative update (20348.4893) is not known yet either.
    for build in ("10.0.20348.4830", "10.0.20348.4893", "10.0.20348.99999"):
        verdict = judge(vm_row(build=build), quiet_assessment(vm_id("vm1")))
        assert [code for code, _ in said(verdict)] == ["build_not_in_catalog"], build
        assert (verdict.release_month, verdict.releases_behind) == ("2026-02", None), build


# -- the other sentences of the evaluator -----------------------------------------------------


def test_a_pending_reboot_and_a_disconnected_arc_agent_say_so_word_for_word() -> None:
    reboot = judge(vm_row(), quiet_assessment(vm_id("vm1"), reboot_pending=True))
    assert said(reboot) == [
        (
            "reboot_pending",
            "installed updates wait for a restart; restart it inside its maintenance window",
        )
    ]
    arc = judge(arc_row(**{"properties.status": "Expired"}), quiet_assessment(arc_id("arc1")))
    assert said(arc) == [
        ("arc_disconnected", "the Arc agent is Expired; its data may be out of date")
    ]


def test_a_machine_whose_release_left_the_hotpatch_program_is_told_what_to_do() -> None:
    # WS2022's program runs through 2027-10; the November 2027 release ends it.
    now = datetime(2027, 11, 20, 12, 0, tzinfo=UTC)
    verdict = judge(vm_row(), quiet_assessment(vm_id("vm1"), assessed=now), now=now)
    assert (verdict.state.value, verdict.eligible) == ("not_eligible", False)
    assert said(verdict) == [
        (
            "hotpatch_program_ended",
            "Microsoft's hotpatch program for ws2022 ended with the 2027-10 release: the machine "
            "takes regular monthly updates (each needs a restart); plan its move to a release "
            "still in the program",
        )
    ]


def test_the_evaluator_refuses_a_naive_instant_saying_why() -> None:
    with pytest.raises(ValueError, match=r"^now must be timezone-aware \(UTC\)$"):
        judge(vm_row(), now=datetime(2026, 2, 14, 12, 0))
