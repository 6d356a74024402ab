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
    """An assessment that found nothing at all: no update of any class is available."""
    row = assessment_row(machine_id, **fields)
    row["properties"]["availablePatchCountByClassification"] = {"critical": 0, "security": 0}
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
