"""Verdicts that stay right on real Azure rows and past the release catalog's horizon."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotpatch.core.calendar import Calendar, YearMonth, patch_tuesday, release_instant, rule_kind
from hotpatch.core.compliance import Evaluator
from hotpatch.core.inventory import parse_rows
from hotpatch.core.models import Action, Channel, MonthKind, OsFamily, State, Verdict
from hotpatch.core.policy import Policy
from hotpatch.core.reasons import RULES, ReasonCode
from hotpatch.core.releases import Release, ReleaseCatalog
from hotpatch.data import shipped_image_catalog, shipped_release_catalog
from hotpatch.sandbox.estate import EstateSpec, generate_estate
from tests.builders import (
    SUBSCRIPTION,
    arc_id,
    arc_row,
    assessment_row,
    installation_row,
    scale_set_row,
    vm_id,
    vm_row,
)

WS2025_CORE = ("MicrosoftWindowsServer", "WindowsServer", "2025-datacenter-azure-edition-core")
#: A week after the May 2026 releases: their grace periods are over.
MAY_19 = datetime(2026, 5, 19, 12, 0, tzinfo=UTC)
#: A year past the shipped catalog's horizon (it covers releases through 2026-05).
A_YEAR_ON = datetime(2027, 6, 1, 12, 0, tzinfo=UTC)
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"


def evaluate(
    *rows: dict[str, Any], now: datetime, catalog: ReleaseCatalog | None = None
) -> list[Verdict]:
    calendar = Calendar(catalog or shipped_release_catalog())
    return Evaluator(shipped_image_catalog(), calendar, Policy(), now).evaluate_all(
        parse_rows(rows)
    )


def one(*rows: dict[str, Any], now: datetime, catalog: ReleaseCatalog | None = None) -> Verdict:
    (verdict,) = evaluate(*rows, now=now, catalog=catalog)
    return verdict


def codes(verdict: Verdict) -> list[str]:
    return [reason.code for reason in verdict.reasons]


def signal_codes(verdict: Verdict) -> list[str]:
    return [signal.code for signal in verdict.signals]


def assessed(machine_id: str, at: datetime, **counts: Any) -> dict[str, Any]:
    return assessment_row(machine_id, assessed=at - timedelta(hours=6), **counts)


# --- rows as Resource Graph really returns them ----------------------------------------------

#: Every column of the `resources`-like tables, from Microsoft's table reference:
#: https://learn.microsoft.com/azure/governance/resource-graph/reference/supported-tables-resources
#: https://learn.microsoft.com/azure/governance/resource-graph/concepts/query-language#resource-graph-tables
FULL_COLUMNS = (
    "id",
    "name",
    "type",
    "tenantId",
    "kind",
    "location",
    "resourceGroup",
    "subscriptionId",
    "managedBy",
    "sku",
    "plan",
    "properties",
    "tags",
    "identity",
    "zones",
    "extendedLocation",
)


def full(row: dict[str, Any], kind: str = "") -> dict[str, Any]:
    """The row as `az graph query` or the portal exports it: every column, realistic values."""
    filled = copy.deepcopy(row)
    filled.setdefault("location", "westeurope")
    filled.setdefault("resourceGroup", "rg-hp")
    filled.update(
        tenantId=TENANT,
        kind=kind,
        managedBy="",
        sku=None,
        plan=None,
        identity={"type": "SystemAssigned", "principalId": "5b5a6c1e-0000-0000-0000-000000000001"},
        zones=["1"] if "virtualmachines" in row["type"] else None,
        extendedLocation=None,
    )
    filled.setdefault("tags", None)
    assert set(filled) == set(FULL_COLUMNS), set(filled) ^ set(FULL_COLUMNS)
    return filled


def _estate_of_row_shapes() -> list[dict[str, Any]]:
    vm, arc, stale = vm_id("vm-ok"), arc_id("arc-ok"), vm_id("vm-stale")
    uniform = vm_row("vmss_0", type="microsoft.compute/virtualmachinescalesets/virtualmachines")
    return [
        vm_row("vm-ok", build="10.0.20348.5074"),
        assessed(vm, MAY_19),
        installation_row(vm, MAY_19 - timedelta(days=2)),
        vm_row("vm-stale", build="10.0.20348.4830"),
        assessment_row(stale, assessed=MAY_19 - timedelta(days=9), security=2),
        vm_row(
            "vm-off",
            build="10.0.20348.5074",
            **{"properties.osProfile.windowsConfiguration.patchSettings.enableHotpatching": False},
        ),
        vm_row(
            "vm-desktop",
            image=("MicrosoftWindowsServer", "WindowsServer", "2022-datacenter-azure-edition"),
        ),
        arc_row("arc-ok", build="10.0.26100.32772"),
        assessed(arc, MAY_19),
        arc_row("arc-not-enrolled", enrolled=False),
        scale_set_row("ss-uniform"),
        uniform,
    ]


def _comparable(verdicts: list[Verdict]) -> dict[str, tuple[object, ...]]:
    return {v.id: (v.state, v.action, v.reasons, v.signals, v.os, v.eligible) for v in verdicts}


@pytest.mark.parametrize(
    "kind", ["", "HCI", "VMware"], ids=["kind-empty", "kind-HCI", "kind-VMware"]
)
def test_rows_with_every_documented_column_get_the_verdicts_of_minimal_rows(kind: str) -> None:
    minimal = _estate_of_row_shapes()
    # VM and patch rows carry an empty kind as Azure's do; Arc rows carry a real ArcKind value.
    exported = [
        full(row, kind if row["type"][-31:] == "hybridcompute/machines" else "") for row in minimal
    ]
    expected = _comparable(evaluate(*minimal, now=MAY_19))
    actual = _comparable(evaluate(*exported, now=MAY_19))
    assert actual == expected
    assert not any(
        v.state is State.UNKNOWN and "malformed_record" in codes(v)
        for v in evaluate(*exported, now=MAY_19)
    )


def test_the_kind_column_of_a_vm_row_never_becomes_the_machines_kind() -> None:
    for value in ("", "Microsoft.Compute", None, 7, {"x": 1}):
        (machine,) = parse_rows([full(vm_row("vm1"), "") | {"kind": value}]).machines
        assert machine.kind.value == "vm", value


def test_an_arc_rows_kind_column_is_kept_as_where_the_machine_runs() -> None:
    (machine,) = parse_rows([full(arc_row("arc1"), "HCI")]).machines
    assert (machine.kind.value, machine.arc_kind) == ("arc", "HCI")


# --- regular cumulative and out-of-band updates -----------------------------------------------

#: Every regular-channel row in the shipped catalog, from the release history tables of
#: https://learn.microsoft.com/windows/release-health/windows-server-release-info
REGULAR_ROWS = [
    # os, date, build, kb, out of band
    (OsFamily.WS2022, date(2026, 2, 10), "20348.4773", "KB5075906", False),
    (OsFamily.WS2022, date(2026, 3, 10), "20348.4893", "KB5078766", False),
    (OsFamily.WS2022, date(2026, 4, 19), "20348.5024", "KB5091575", True),
    (OsFamily.WS2022, date(2026, 5, 12), "20348.5139", "KB5087545", False),
    (OsFamily.WS2025, date(2025, 10, 20), "26100.6901", "KB5070773", True),
    (OsFamily.WS2025, date(2025, 10, 23), "26100.6905", "KB5070881", True),
    (OsFamily.WS2025, date(2026, 2, 10), "26100.32370", "KB5075899", False),
    (OsFamily.WS2025, date(2026, 3, 10), "26100.32522", "KB5078740", False),
    (OsFamily.WS2025, date(2026, 4, 19), "26100.32698", "KB5091157", True),
    (OsFamily.WS2025, date(2026, 5, 12), "26100.32860", "KB5087539", False),
]
#: The next baseline after each month (the quarterly rule; no unplanned baseline in between).
NEXT_BASELINE = {
    "2025-10": "2026-01",
    "2026-02": "2026-04",
    "2026-03": "2026-04",
    "2026-04": "2026-07",
    "2026-05": "2026-07",
}


def test_the_shipped_catalog_holds_exactly_the_regular_rows_listed_here() -> None:
    shipped = {
        (r.os, r.date, r.build, r.kb, r.out_of_band)
        for r in shipped_release_catalog().releases
        if r.channel is Channel.REGULAR
    }
    assert shipped == set(REGULAR_ROWS)


@pytest.mark.parametrize(("os", "day", "build", "kb", "out_of_band"), REGULAR_ROWS)
def test_each_regular_build_is_placed_on_the_regular_channel_in_its_month(
    os: OsFamily, day: date, build: str, kb: str | None, out_of_band: bool
) -> None:
    calendar = Calendar(shipped_release_catalog())
    month = YearMonth.of(day)
    position = calendar.locate(build, calendar.slot(os, month))
    assert position is not None
    assert (position.channel, position.release_month, position.kb, position.exact) == (
        Channel.REGULAR,
        str(month),
        kb,
        True,
    )
    assert position.on_current_baseline is False  # it cannot take the hotpatch


@pytest.mark.parametrize(("os", "day", "build", "kb", "out_of_band"), REGULAR_ROWS)
def test_a_machine_on_a_regular_build_is_misconfigured_and_told_which_update_and_when_back(
    os: OsFamily, day: date, build: str, kb: str | None, out_of_band: bool
) -> None:
    # Judged the day after its release: not behind yet, only off the track.
    now = datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(days=1, hours=20)
    image = (
        WS2025_CORE
        if os is OsFamily.WS2025
        else (*WS2025_CORE[:2], "2022-datacenter-azure-edition-core")
    )
    machine = vm_id("vm-lcu")
    verdict = one(
        vm_row("vm-lcu", image=image, build=f"10.0.{build}"), assessed(machine, now), now=now
    )
    assert (verdict.state, verdict.action) == (State.MISCONFIGURED, Action.INVESTIGATE)
    assert codes(verdict)[0] == ReasonCode.REGULAR_CHANNEL_BUILD
    message = verdict.reasons[0].message
    assert f"10.0.{build}" in message
    assert (kb or "KB not recorded") in message
    assert f"until the {NEXT_BASELINE[f'{day:%Y-%m}']} baseline" in message
    assert ("out-of-band" in message) is out_of_band
    assert verdict.restart_cause is not None
    assert "off the hotpatch track" in verdict.restart_cause


def test_a_regular_machine_is_also_behind_once_newer_releases_pass_their_grace() -> None:
    machine = vm_id("vm-lcu")
    verdict = one(vm_row("vm-lcu", build="10.0.20348.4773"), assessed(machine, MAY_19), now=MAY_19)
    assert codes(verdict) == ["regular_channel_build", "off_cycle"]
    assert verdict.state is State.MISCONFIGURED  # misconfigured outranks non_compliant
    assert verdict.release_month == "2026-02"


def test_an_out_of_band_release_on_the_hotpatch_track_stays_on_the_track() -> None:
    now = datetime(2026, 1, 26, 12, 0, tzinfo=UTC)
    machine = vm_id("vm-oob")
    verdict = one(vm_row("vm-oob", build="10.0.20348.4655"), assessed(machine, now), now=now)
    assert (verdict.state, verdict.reasons) == (State.COMPLIANT, ())
    position = Calendar(shipped_release_catalog()).locate(
        "20348.4655", Calendar(shipped_release_catalog()).slot(OsFamily.WS2022, YearMonth(2026, 1))
    )
    assert position is not None
    assert position.channel is Channel.HOTPATCH


# --- the catalog's horizon ----------------------------------------------------------------


def test_the_shipped_catalog_states_its_horizon_and_is_stale_a_year_on() -> None:
    calendar = Calendar(shipped_release_catalog())
    assert str(shipped_release_catalog().covers_through) == "2026-05"
    assert calendar.staleness(datetime(2026, 6, 9, 16, 59, tzinfo=UTC)) is None
    stale = calendar.staleness(A_YEAR_ON)
    assert stale is not None
    assert (str(stale.covers_through), stale.since, stale.releases_missing) == (
        "2026-05",
        release_instant(2026, 6),
        12,
    )
    assert "hotpatch catalog update" in stale.message


def test_a_build_newer_than_the_catalog_a_year_on_is_judged_on_its_assessment_alone() -> None:
    machine = vm_id("vm-new")
    clean = one(
        vm_row("vm-new", build="10.0.20348.5999"), assessed(machine, A_YEAR_ON), now=A_YEAR_ON
    )
    assert (clean.state, codes(clean)) == (State.COMPLIANT, ["build_not_in_catalog"])
    assert clean.releases_behind is None
    missing = one(
        vm_row("vm-new", build="10.0.20348.5999"),
        assessed(machine, A_YEAR_ON, security=3),
        now=A_YEAR_ON,
    )
    assert (missing.state, codes(missing)) == (
        State.NON_COMPLIANT,
        ["build_not_in_catalog", "missing_security_updates"],
    )


def test_a_machine_on_the_newest_known_build_a_year_on_is_behind() -> None:
    machine = vm_id("vm-old")
    verdict = one(
        vm_row("vm-old", build="10.0.20348.5074"), assessed(machine, A_YEAR_ON), now=A_YEAR_ON
    )
    assert verdict.state is State.NON_COMPLIANT
    assert "off_cycle" in codes(verdict)


def test_an_updated_catalog_judges_the_same_machine_on_its_release() -> None:
    newer = Release(
        os=OsFamily.WS2022,
        date=date(2027, 5, 11),
        kind=MonthKind.HOTPATCH,
        build="20348.5999",
        kb="KB5099999",
    )
    base = shipped_release_catalog()
    updated = ReleaseCatalog([*base.releases, newer], YearMonth(2027, 5), base.programs.values())
    machine = vm_id("vm-new")
    verdict = one(
        vm_row("vm-new", build="10.0.20348.5999"),
        assessed(machine, A_YEAR_ON),
        now=A_YEAR_ON,
        catalog=updated,
    )
    assert (verdict.state, verdict.reasons, verdict.release_month) == (
        State.COMPLIANT,
        (),
        "2027-05",
    )
    assert Calendar(updated).staleness(A_YEAR_ON) is None


# --- program dates --------------------------------------------------------------------------


def test_ws2025_months_before_november_2024_are_outside_the_program() -> None:
    calendar = Calendar(shipped_release_catalog())
    assert calendar.slot(OsFamily.WS2025, YearMonth(2024, 10)).status == "outside_program"
    assert calendar.slot(OsFamily.WS2025, YearMonth(2024, 11)).status == "published"
    assert calendar.slot(OsFamily.WS2022, YearMonth(2024, 10)).status == "published"


def test_months_past_the_horizon_are_not_invented() -> None:
    slot = Calendar(shipped_release_catalog()).slot(OsFamily.WS2025, YearMonth(2026, 8))
    assert (slot.status, slot.kb, slot.build) == ("beyond_catalog", None, None)


def test_ws2022_hotpatch_ends_after_october_2027() -> None:
    calendar = Calendar(shipped_release_catalog())
    assert calendar.slot(OsFamily.WS2022, YearMonth(2027, 10)).in_program
    after = calendar.slot(OsFamily.WS2022, YearMonth(2027, 11))
    assert (after.in_program, after.restart) == (False, True)
    assert calendar.program_ended(OsFamily.WS2022, datetime(2027, 11, 1, tzinfo=UTC)) is None
    assert str(calendar.program_ended(OsFamily.WS2022, datetime(2027, 11, 10, tzinfo=UTC))) == (
        "2027-10"
    )
    assert calendar.program_ended(OsFamily.WS2025, datetime(2030, 1, 1, tzinfo=UTC)) is None


def test_a_ws2022_machine_after_the_program_ends_is_told_so() -> None:
    now = datetime(2027, 12, 1, tzinfo=UTC)
    verdict = one(vm_row("vm1", build="10.0.20348.5074"), assessed(vm_id("vm1"), now), now=now)
    assert (verdict.state, verdict.eligible, codes(verdict)) == (
        State.NOT_ELIGIBLE,
        False,
        ["hotpatch_program_ended"],
    )
    assert "2027-10" in verdict.reasons[0].message


# --- platform facts -------------------------------------------------------------------------

PATCH = "properties.osProfile.windowsConfiguration.patchSettings"


def test_automatic_by_platform_without_automatic_updates_is_misconfigured() -> None:
    verdict = one(
        vm_row(
            "vm1",
            build="10.0.20348.5074",
            **{"properties.osProfile.windowsConfiguration.enableAutomaticUpdates": False},
        ),
        assessed(vm_id("vm1"), MAY_19),
        now=MAY_19,
    )
    assert (verdict.state, codes(verdict)) == (State.MISCONFIGURED, ["automatic_updates_disabled"])


def test_a_manual_mode_vm_with_automatic_updates_off_is_told_only_about_its_patch_mode() -> None:
    # Azure requires enableAutomaticUpdates false with patchMode Manual: that is no second fault.
    row = vm_row(
        "vm1",
        build="10.0.20348.5074",
        **{
            f"{PATCH}.patchMode": "Manual",
            "properties.osProfile.windowsConfiguration.enableAutomaticUpdates": False,
        },
    )
    verdict = one(row, assessed(vm_id("vm1"), MAY_19), now=MAY_19)
    assert (verdict.state, codes(verdict)) == (State.MISCONFIGURED, ["patch_mode_not_platform"])


@pytest.mark.parametrize(
    ("overrides", "signal"),
    [
        ({f"{PATCH}.assessmentMode": "ImageDefault"}, "periodic_assessment_off"),
        (
            {f"{PATCH}.automaticByPlatformSettings.bypassPlatformSafetyChecksOnUserSchedule": True},
            "customer_managed_schedule",
        ),
    ],
)
def test_assessment_mode_and_customer_schedules_are_signals_not_states(
    overrides: dict[str, Any], signal: str
) -> None:
    rows = [vm_row("vm1", build="10.0.20348.5074", **overrides), assessed(vm_id("vm1"), MAY_19)]
    plain = one(vm_row("vm1", build="10.0.20348.5074"), assessed(vm_id("vm1"), MAY_19), now=MAY_19)
    verdict = one(*rows, now=MAY_19)
    assert signal in signal_codes(verdict)
    assert signal not in signal_codes(plain)
    assert (verdict.state, verdict.reasons) == (plain.state, plain.reasons)


@pytest.mark.parametrize(
    ("security_type", "shown"),
    [
        ("TrustedLaunch", "security type TrustedLaunch;"),
        ("ConfidentialVM", "security type ConfidentialVM;"),
        (None, "security type Standard (no Trusted Launch)"),
    ],
)
def test_the_security_type_is_reported_as_a_signal(security_type: str | None, shown: str) -> None:
    row = vm_row(
        "vm1", build="10.0.20348.5074", **{"properties.securityProfile.securityType": security_type}
    )
    verdict = one(row, assessed(vm_id("vm1"), MAY_19), now=MAY_19)
    (signal,) = [s for s in verdict.signals if s.code == "security_type"]
    assert shown in signal.message
    assert verdict.state is State.COMPLIANT


@pytest.mark.parametrize(
    ("sku", "build", "os"),
    [
        ("Windows Server 2022 Datacenter: Azure Edition", "10.0.20348.5074", OsFamily.WS2022),
        ("Windows Server 2025 Datacenter: Azure Edition", "10.0.26100.32772", OsFamily.WS2025),
    ],
)
def test_azure_edition_on_azure_local_is_judged_by_the_azure_edition_rules(
    sku: str, build: str, os: OsFamily
) -> None:
    # No Arc hotpatch license, no enrolment status: neither applies to Azure Edition.
    row = full(
        arc_row(
            "local1",
            build=build,
            enrolled=False,
            **{
                "properties.osSku": sku,
                "properties.licenseProfile": None,
                f"{PATCH}.enableHotpatching": None,
                f"{PATCH}.status": None,
            },
        ),
        "HCI",
    )
    verdict = one(row, assessed(arc_id("local1"), MAY_19), now=MAY_19)
    assert (verdict.state, verdict.eligible, verdict.os, verdict.reasons) == (
        State.COMPLIANT,
        True,
        os,
        (),
    )
    assert "azure_local" in signal_codes(verdict)
    assert "Azure Local" in verdict.signals[0].message


def test_a_ws2025_standard_machine_on_azure_local_keeps_the_arc_licensing_rule() -> None:
    row = full(arc_row("local2", build="10.0.26100.32772", enrolled=False), "HCI")
    verdict = one(row, assessed(arc_id("local2"), MAY_19), now=MAY_19)
    assert (verdict.state, codes(verdict)) == (State.MISCONFIGURED, ["arc_not_enrolled"])


def test_an_azure_edition_machine_on_azure_local_with_hotpatch_off_is_misconfigured() -> None:
    row = full(
        arc_row(
            "local3",
            build="10.0.20348.5074",
            enrolled=False,
            **{"properties.osSku": "Windows Server 2022 Datacenter: Azure Edition"},
        ),
        "HCI",
    )
    verdict = one(row, assessed(arc_id("local3"), MAY_19), now=MAY_19)
    assert (verdict.state, codes(verdict)) == (State.MISCONFIGURED, ["hotpatch_disabled"])


# --- restart forecast ------------------------------------------------------------------------


def _forecast(now: datetime, build: str, **assessment: Any) -> Verdict:
    return one(
        vm_row("vm1", build=build),
        assessment_row(vm_id("vm1"), assessed=now - timedelta(hours=6), **assessment),
        now=now,
    )


def test_a_machine_on_the_track_next_restarts_at_the_next_baseline() -> None:
    # builders' assessment rows carry one "other" update; none here.
    verdict = one(
        vm_row("vm1", build="10.0.20348.5074"),
        {
            **assessed(vm_id("vm1"), MAY_19),
            "properties": {
                **assessed(vm_id("vm1"), MAY_19)["properties"],
                "availablePatchCountByClassification": {
                    "critical": 0,
                    "security": 0,
                    "definition": 4,
                },
            },
        },
        now=MAY_19,
    )
    assert verdict.next_restart == release_instant(2026, 7)
    assert verdict.restart_cause == "the 2026-07 release (baseline)"
    assert "restart_capable_updates" not in signal_codes(verdict)


def test_a_pending_reboot_means_a_restart_now() -> None:
    verdict = _forecast(MAY_19, "10.0.20348.5074", reboot_pending=True)
    assert verdict.next_restart == MAY_19
    assert "pending now" in (verdict.restart_cause or "")


def test_non_security_updates_can_restart_a_machine_in_a_hotpatch_month() -> None:
    verdict = _forecast(MAY_19, "10.0.20348.5074")  # one "other" update
    assert verdict.next_restart == MAY_19
    assert "non-security updates available" in (verdict.restart_cause or "")
    (signal,) = [s for s in verdict.signals if s.code == "restart_capable_updates"]
    assert signal.message.startswith("1 non-security update(s) available")
    assert verdict.state is State.COMPLIANT


# --- the reason table ---------------------------------------------------------------------------


def test_every_reason_code_has_a_rule_with_a_meaning() -> None:
    assert set(RULES) == set(ReasonCode)
    for code, rule in RULES.items():
        assert rule.meaning, code
        assert (rule.state is None) == (rule.actions == ()), code


def test_every_image_catalog_code_is_a_reason_code() -> None:
    catalog = shipped_image_catalog().document
    entries = [*catalog.not_hotpatchable, *catalog.hotpatchable, *catalog.preview]
    assert all(e.code is None or e.code in set(ReasonCode) for e in entries)


# --- a row for a release still to come changes nothing before it ------------------------------


def _future_release(
    now: datetime, months_ahead: int, revision: int, regular: bool, os: OsFamily
) -> Release:
    month = YearMonth.of(now).shift(months_ahead)
    prefix = "20348" if os is OsFamily.WS2022 else "26100"
    return Release(
        os=os,
        date=patch_tuesday(month.year, month.month),
        kind=None if regular else rule_kind(month.month),
        build=f"{prefix}.{revision}",
        kb=f"KB59{revision % 100000:05d}",
        channel=Channel.REGULAR if regular else Channel.HOTPATCH,
    )


_ESTATE_NOW = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
_ESTATE = generate_estate(
    EstateSpec(machines=400, seed=11, as_of=_ESTATE_NOW), shipped_release_catalog()
).rows()


def _machines_on(ws2022: int, ws2025: int) -> list[dict[str, Any]]:
    """Two machines on arbitrary builds (published, between releases, or beyond the catalog)."""
    ws2022_image = (*WS2025_CORE[:2], "2022-datacenter-azure-edition-core")
    return [
        vm_row("any-2022", image=ws2022_image, build=f"10.0.20348.{ws2022}"),
        assessed(vm_id("any-2022"), _ESTATE_NOW),
        vm_row("any-2025", image=WS2025_CORE, build=f"10.0.26100.{ws2025}"),
        assessed(vm_id("any-2025"), _ESTATE_NOW),
    ]


@settings(max_examples=40, deadline=None)
@given(
    months_ahead=st.integers(min_value=1, max_value=14),
    revision=st.integers(min_value=1, max_value=60000),
    regular=st.booleans(),
    os=st.sampled_from(list(OsFamily)),
    ws2022=st.integers(min_value=4000, max_value=60000),
    ws2025=st.integers(min_value=30000, max_value=60000),
)
def test_a_catalog_row_for_a_future_release_never_changes_an_earlier_verdict(
    months_ahead: int, revision: int, regular: bool, os: OsFamily, ws2022: int, ws2025: int
) -> None:
    base = shipped_release_catalog()
    future = _future_release(_ESTATE_NOW, months_ahead, revision, regular, os)
    if any((r.os, r.revision) == (future.os, future.revision) for r in base.releases):
        return  # a build the catalog already names is not a new release
    if not regular and base.monthly(os, future.month) is not None:
        return
    extended = ReleaseCatalog([*base.releases, future], base.covers_through, base.programs.values())
    rows = [*_ESTATE, *_machines_on(ws2022, ws2025)]
    before = evaluate(*rows, now=_ESTATE_NOW)
    after = evaluate(*rows, now=_ESTATE_NOW, catalog=extended)
    assert len(before) == len(after) > 300
    for old, new in zip(before, after, strict=True):
        assert (new.state, new.action, new.reasons, new.release_month, new.releases_behind) == (
            old.state,
            old.action,
            old.reasons,
            old.release_month,
            old.releases_behind,
        ), old.name


def test_the_duplicate_of_a_machine_is_reported_and_judged_once() -> None:
    row = vm_row("vm1", build="10.0.20348.5074")
    twin = copy.deepcopy(row)
    twin["id"] = twin["id"].upper()
    inventory = parse_rows([row, twin, assessed(vm_id("vm1"), MAY_19)])
    assert len(inventory.machines) == 1
    assert inventory.duplicates == (row["id"].casefold(),)
    assert SUBSCRIPTION in inventory.duplicates[0]
