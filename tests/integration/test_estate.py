"""The seeded estate generator and the raw export format (docs/raw-export.md)."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotpatch.core.calendar import Calendar, release_instant
from hotpatch.core.models import OsFamily, parse_build
from hotpatch.core.releases import ReleaseCatalog
from hotpatch.data import shipped_release_catalog
from hotpatch.errors import InputError
from hotpatch.sandbox.estate import (
    ARC_TOO_OLD_BUILD,
    CATEGORY_SHARES,
    HOTPATCH_SKUS,
    Estate,
    EstateSpec,
    generate_estate,
    read_export,
    split_rows,
    write_export,
)
from hotpatch.sandbox.graph import COLUMN_NAMES

AS_OF = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)
HOTPATCH_SKU_SET = {sku for skus in HOTPATCH_SKUS.values() for sku in skus}
DESKTOP_SKU_SET = {"2022-datacenter-azure-edition", "2022-datacenter-azure-edition-smalldisk"}
PREVIEW_OFFERS = {"windowsserverhotpatch-previews", "microsoftserveroperatingsystems-previews"}
GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
#: KBs that are the same every month, so the catalog does not list them.
STANDING_KBS = {"890830", "2267602"}


@pytest.fixture(scope="module")
def releases() -> ReleaseCatalog:
    return shipped_release_catalog()


@pytest.fixture(scope="module")
def estate(releases: ReleaseCatalog) -> Estate:
    return generate_estate(EstateSpec(machines=10_000, as_of=AS_OF), releases)


# -- helpers: read rows the way the service would ------------------------------------------------


def image_of(row: dict[str, Any]) -> dict[str, Any]:
    properties = row["properties"]
    if row["type"] == "microsoft.compute/virtualmachinescalesets":
        return dict(properties["virtualMachineProfile"]["storageProfile"]["imageReference"])
    return dict(properties["storageProfile"]["imageReference"])


def is_marketplace_windows(image: dict[str, Any]) -> bool:
    return (
        str(image.get("publisher", "")).lower() == "microsoftwindowsserver"
        and str(image.get("offer", "")).lower() == "windowsserver"
    )


def category_of(row: dict[str, Any]) -> str | None:
    """The generator's category of a resources row, judged from the row alone."""
    kind = row["type"]
    if kind == "microsoft.hybridcompute/machines":
        return "azure_local" if row["kind"] == "HCI" else "arc"
    if kind == "microsoft.compute/virtualmachinescalesets/virtualmachines":
        return "uniform_scale_set"
    if kind == "microsoft.compute/virtualmachinescalesets":
        mode = row["properties"]["orchestrationMode"]
        return "uniform_scale_set" if mode == "Uniform" else None
    properties = row["properties"]
    image = image_of(row)
    sku = str(image.get("sku", "")).lower()
    if "virtualMachineScaleSet" in properties:
        return "flexible_member"
    if properties["storageProfile"]["osDisk"]["osType"] == "Linux":
        return "linux"
    if "sku" not in image:
        return "custom_image"
    if str(image.get("offer", "")).lower() in PREVIEW_OFFERS:
        return "preview_image"
    if is_marketplace_windows(image) and sku in HOTPATCH_SKU_SET:
        return "hotpatch_vm"
    if sku in DESKTOP_SKU_SET:
        return "azure_edition_desktop"
    return "other_windows"


def hotpatch_vms(estate: Estate) -> list[dict[str, Any]]:
    return [
        row
        for row in estate.resources
        if row["type"] == "microsoft.compute/virtualmachines"
        and category_of(row) in ("hotpatch_vm", "flexible_member")
    ]


def os_version(row: dict[str, Any]) -> str | None:
    properties = row["properties"]
    if "extended" in properties:
        value = properties["extended"]["instanceView"].get("osVersion")
    else:
        value = properties.get("osVersion")
    return str(value) if value is not None else None


def machine_of(patch_row_id: str) -> str:
    return patch_row_id.lower().split("/patch")[0]


def assessments_by_machine(estate: Estate) -> dict[str, dict[str, Any]]:
    return {
        machine_of(row["id"]): row
        for row in estate.patchassessmentresources
        if row["type"].endswith("/patchassessmentresults")
    }


def parse_time(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text[:-1] + "+00:00")


def share(count: int, total: int) -> float:
    assert total > 0
    return count / total


def time_fields(value: Any) -> Iterator[str]:
    """Every `...DateTime`, `timeCreated` and `lastStatusChange` string inside `value`."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str) and (
                key.endswith("DateTime") or key in ("timeCreated", "lastStatusChange")
            ):
                yield item
            else:
                yield from time_fields(item)
    elif isinstance(value, list):
        for item in value:
            yield from time_fields(item)


# -- determinism and shape -----------------------------------------------------------------------


def test_the_same_seed_gives_the_same_rows(releases: ReleaseCatalog) -> None:
    spec = EstateSpec(machines=500, seed=7, as_of=AS_OF, software_patches=True)
    first = json.dumps(generate_estate(spec, releases).rows())
    second = json.dumps(generate_estate(spec, releases).rows())
    assert first == second


def test_a_different_seed_gives_a_different_estate(releases: ReleaseCatalog) -> None:
    one = generate_estate(EstateSpec(machines=200, seed=1, as_of=AS_OF), releases)
    two = generate_estate(EstateSpec(machines=200, seed=2, as_of=AS_OF), releases)
    assert one.rows() != two.rows()


def test_machines_counts_the_machine_entries(estate: Estate) -> None:
    ids = estate.machine_ids()
    assert len(ids) == 10_000
    assert len({machine_id.lower() for machine_id in ids}) == len(ids)


def test_an_empty_estate_has_no_rows(releases: ReleaseCatalog) -> None:
    empty = generate_estate(EstateSpec(machines=0, as_of=AS_OF), releases)
    assert empty.rows() == []
    assert empty.machine_ids() == []


def test_subscriptions_and_resource_groups_follow_the_spec(releases: ReleaseCatalog) -> None:
    spec = EstateSpec(
        machines=2000, subscriptions=3, resource_groups_per_subscription=2, as_of=AS_OF
    )
    rows = generate_estate(spec, releases).resources
    assert len({row["subscriptionId"] for row in rows}) == 3
    assert {row["resourceGroup"] for row in rows} == {"rg-hp-01", "rg-hp-02"}


def test_every_row_carries_every_column_of_its_table_in_resource_graphs_order(
    estate: Estate,
) -> None:
    for row in estate.rows():
        assert tuple(row) == COLUMN_NAMES, row["id"]
        assert row["kind"] in ("", "HCI")
        assert isinstance(row["properties"], dict)
        assert row["type"] == row["type"].lower()
        assert f"/subscriptions/{row['subscriptionId']}/resourceGroups/" in row["id"]
        assert f"/resourceGroups/{row['resourceGroup']}/providers/Microsoft." in row["id"]
    for row in estate.resources:
        assert isinstance(row["tags"], dict)


def test_machine_ids_use_arm_casing(estate: Estate) -> None:
    providers = {
        "/".join(machine_id.split("/providers/")[1].split("/")[:2])
        for machine_id in estate.machine_ids()
    }
    assert set(providers) == {
        "Microsoft.Compute/virtualMachines",
        "Microsoft.HybridCompute/machines",
        "Microsoft.Compute/virtualMachineScaleSets",
    }


def test_patch_row_ids_hang_off_their_machine_id(estate: Estate) -> None:
    for row in estate.patchassessmentresources:
        if row["type"].endswith("/patchassessmentresults"):
            assert row["id"].endswith("/patchAssessmentResults/latest")
            assert row["name"] == "latest"
    for row in estate.patchinstallationresources:
        _machine, activity = row["id"].rsplit("/patchInstallationResults/", 1)
        assert row["name"] == activity
        assert re.fullmatch(GUID, activity)


def test_every_assessment_row_belongs_to_a_machine(estate: Estate) -> None:
    machines = {machine_id.lower() for machine_id in estate.machine_ids()}
    assert estate.patchassessmentresources
    for row in estate.patchassessmentresources:
        assert machine_of(row["id"]) in machines


def test_every_installation_row_belongs_to_a_machine(estate: Estate) -> None:
    machines = {machine_id.lower() for machine_id in estate.machine_ids()}
    assert estate.patchinstallationresources
    for row in estate.patchinstallationresources:
        assert machine_of(row["id"]) in machines


def test_patch_row_types_match_their_machine_type(estate: Estate) -> None:
    types = {row["id"].lower(): row["type"] for row in estate.resources}
    for row in [*estate.patchassessmentresources, *estate.patchinstallationresources]:
        assert row["type"].startswith(types[machine_of(row["id"])] + "/")


def test_times_are_utc_z_strings_no_later_than_as_of(estate: Estate) -> None:
    seen = 0
    for row in estate.rows():
        for text in time_fields(row["properties"]):
            assert parse_time(text) <= AS_OF
            seen += 1
    assert seen > len(estate.rows())


def test_as_of_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        EstateSpec(as_of=datetime(2026, 5, 20))


def test_an_as_of_before_the_catalog_is_refused(releases: ReleaseCatalog) -> None:
    with pytest.raises(ValueError, match="precedes every release"):
        generate_estate(EstateSpec(machines=10, as_of=datetime(2023, 6, 1, tzinfo=UTC)), releases)


# -- builds ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "as_of",
    [
        AS_OF,
        datetime(2024, 6, 1, tzinfo=UTC),  # before the first WS2025 release
        datetime(2026, 1, 30, tzinfo=UTC),  # after the WS2022 out-of-band release of 2026-01-24
        datetime(2026, 5, 12, 17, 30, tzinfo=UTC),  # half an hour after a release
        datetime(2027, 3, 1, tzinfo=UTC),  # past the end of the catalog
    ],
)
def test_builds_are_catalog_builds_or_newer_past_its_horizon(
    releases: ReleaseCatalog, as_of: datetime
) -> None:
    estate = generate_estate(
        EstateSpec(machines=3000, as_of=as_of, software_patches=True), releases
    )
    by_build = {release.build: release for release in releases.releases}
    catalog_kbs = {release.kb[2:] for release in releases.releases if release.kb}
    # Past the catalog's horizon machines run builds Microsoft published since: newer than
    # every build the catalog knows, never one in between.
    stale = Calendar(releases).staleness(as_of) is not None
    newest = {os: releases.newest_revision(os) or 0 for os in OsFamily}
    windows_builds = 0
    for row in estate.resources:
        version = os_version(row)
        if version is not None and version.startswith("10.0."):
            build = version.removeprefix("10.0.")
            windows_builds += 1
            position = parse_build(build)
            assert position is not None
            family, _major, revision = position
            if stale and build not in by_build and build != ARC_TOO_OLD_BUILD:
                assert family is not None
                assert revision > newest[family], row["id"]
                continue
            assert build in by_build or build == ARC_TOO_OLD_BUILD, row["id"]
            release = by_build.get(build)
            if release is not None:
                # Nothing from the future: every build was out by as_of.
                published = release_instant(release.date.year, release.date.month)
                if release.out_of_band:
                    published = datetime.combine(release.date, datetime.min.time(), UTC)
                assert published <= as_of, row["id"]
        if row["type"] == "microsoft.compute/virtualmachines":
            exact = image_of(row).get("exactVersion")
            if exact is not None:
                image_build = exact.rsplit(".", 1)[0]
                assert image_build in by_build or stale, row["id"]
    assert windows_builds > 0
    for row in estate.patchassessmentresources:
        if row["type"].endswith("/softwarepatches"):
            assert row["properties"]["kbId"] in catalog_kbs | STANDING_KBS


def test_before_ws2025_existed_every_hotpatch_machine_runs_ws2022(
    releases: ReleaseCatalog,
) -> None:
    estate = generate_estate(
        EstateSpec(machines=2000, as_of=datetime(2024, 6, 1, tzinfo=UTC)), releases
    )
    versions = {os_version(row) for row in hotpatch_vms(estate)} - {None}
    assert versions
    assert all(str(version).startswith("10.0.20348.") for version in versions)


def test_most_hotpatch_machines_run_the_build_in_force(
    estate: Estate, releases: ReleaseCatalog
) -> None:
    calendar = Calendar(releases)
    in_force = {f"10.0.{calendar.in_force(os, AS_OF).build}" for os in OsFamily}
    versions = [os_version(row) for row in hotpatch_vms(estate)]
    reported = [version for version in versions if version is not None]
    on_build = share(sum(version in in_force for version in reported), len(reported))
    assert 0.58 <= on_build <= 0.70
    # Deallocated machines and a few others report no OS version at all.
    assert 0.03 <= share(len(versions) - len(reported), len(versions)) <= 0.10


def test_some_hotpatch_machines_are_behind_the_current_baseline(
    estate: Estate, releases: ReleaseCatalog
) -> None:
    calendar = Calendar(releases)
    behind = 0
    versions = [v for v in map(os_version, hotpatch_vms(estate)) if v is not None]
    for version in versions:
        slot = calendar.in_force(OsFamily.WS2022, AS_OF)
        if version.startswith("10.0.26100."):
            slot = calendar.in_force(OsFamily.WS2025, AS_OF)
        position = calendar.locate(version, slot)
        assert position is not None
        behind += position.on_current_baseline is False
    # Off the cycle (0.08) plus those two releases behind, before this quarter's baseline, and
    # those that took a regular update instead of the hotpatch (0.06): off the track too.
    assert 0.15 <= share(behind, len(versions)) <= 0.32


def test_a_machine_behind_has_no_successful_installation_since_the_release_it_lacks(
    estate: Estate, releases: ReleaseCatalog
) -> None:
    calendar = Calendar(releases)
    regular_builds = {f"10.0.{r.build}" for r in releases.releases if not r.on_track}
    installations: dict[str, list[dict[str, Any]]] = {}
    for row in estate.patchinstallationresources:
        installations.setdefault(machine_of(row["id"]), []).append(row["properties"])
    checked = 0
    for row in hotpatch_vms(estate):
        version = os_version(row)
        if version is None:
            continue
        os = OsFamily.WS2025 if version.startswith("10.0.26100.") else OsFamily.WS2022
        slot = calendar.in_force(os, AS_OF)
        if version in (f"10.0.{slot.build}", *regular_builds):
            # In force, or the regular update that came out with it: not behind.
            continue
        for properties in installations.get(row["id"].lower(), []):
            checked += 1
            if properties["status"] == "Succeeded":
                assert parse_time(properties["startDateTime"]) < slot.release_utc
    assert checked > 100


def test_the_newest_successful_installation_follows_the_release_of_the_build(
    estate: Estate, releases: ReleaseCatalog
) -> None:
    released = {
        release.build: release_instant(release.date.year, release.date.month)
        for release in releases.releases
        if not release.out_of_band
    }
    newest: dict[str, datetime] = {}
    for row in estate.patchinstallationresources:
        if row["properties"]["status"] == "Succeeded":
            started = parse_time(row["properties"]["startDateTime"])
            key = machine_of(row["id"])
            newest[key] = max(newest.get(key, started), started)
    checked = 0
    for row in hotpatch_vms(estate):
        version = os_version(row)
        build = version.removeprefix("10.0.") if version else None
        if build in released and row["id"].lower() in newest:
            assert newest[row["id"].lower()] >= released[build]
            checked += 1
    assert checked > 1000


def test_most_hotpatch_machines_have_one_to_three_installation_rows(estate: Estate) -> None:
    counts = Counter(machine_of(row["id"]) for row in estate.patchinstallationresources)
    machines = [row["id"].lower() for row in hotpatch_vms(estate)]
    with_history = [counts[machine] for machine in machines if counts[machine]]
    assert share(len(with_history), len(machines)) >= 0.7
    assert set(with_history) <= {1, 2, 3}
    statuses = Counter(row["properties"]["status"] for row in estate.patchinstallationresources)
    assert statuses["Failed"] > 0
    assert statuses["Succeeded"] > statuses["Failed"]


# -- the mix --------------------------------------------------------------------------------------


def test_the_category_mix_matches_the_shares(estate: Estate) -> None:
    counts = Counter(category_of(row) for row in [*estate.resources, *estate.computeresources])
    counts.pop(None)  # Flexible scale set rows: not machines
    total = sum(counts.values())
    assert total == 10_000
    for category, target in CATEGORY_SHARES:
        assert share(counts[category], total) == pytest.approx(target, abs=0.005), category


def test_all_eight_hotpatch_skus_appear_in_mixed_spellings(estate: Estate) -> None:
    images = [image_of(row) for row in estate.resources if category_of(row) == "hotpatch_vm"]
    assert {str(image["sku"]).lower() for image in images} == HOTPATCH_SKU_SET
    assert {image["publisher"] for image in images} >= {
        "MicrosoftWindowsServer",
        "microsoftwindowsserver",
    }
    assert {image["offer"] for image in images} >= {"WindowsServer", "windowsserver"}
    assert any(image["sku"] == "2022-Datacenter-Azure-Edition-Core" for image in images)


def test_custom_images_use_managed_and_gallery_references(estate: Estate) -> None:
    images = [image_of(row) for row in estate.resources if category_of(row) == "custom_image"]
    ids = [str(image.get("id", "")) for image in images]
    assert any("/Microsoft.Compute/images/" in image_id for image_id in ids)
    assert any("/galleries/" in image_id for image_id in ids)
    assert any("sharedGalleryImageId" in image for image in images)


def test_hotpatch_machine_settings_mix(estate: Estate) -> None:
    rows = hotpatch_vms(estate)
    settings_of = [
        row["properties"]["osProfile"]["windowsConfiguration"]["patchSettings"] for row in rows
    ]
    power = Counter(
        row["properties"]["extended"]["instanceView"]["powerState"]["code"] for row in rows
    )
    off = sum(s["enableHotpatching"] is False for s in settings_of)
    wrong_mode = sum(s["patchMode"] in ("AutomaticByOS", "Manual") for s in settings_of)
    assert share(off, len(rows)) == pytest.approx(0.05, abs=0.015)
    assert share(wrong_mode, len(rows)) == pytest.approx(0.04, abs=0.015)
    assert share(power["PowerState/deallocated"], len(rows)) == pytest.approx(0.04, abs=0.015)
    assert share(power["PowerState/stopped"], len(rows)) == pytest.approx(0.01, abs=0.007)


def test_hotpatch_machine_assessment_mix(estate: Estate) -> None:
    assessments = assessments_by_machine(estate)
    machines = [row["id"].lower() for row in hotpatch_vms(estate)]
    assessed = [assessments[m]["properties"] for m in machines if m in assessments]
    never = len(machines) - len(assessed)
    stale = sum(
        AS_OF - parse_time(p["lastModifiedDateTime"]) > timedelta(hours=72) for p in assessed
    )
    reboot = sum(p["rebootPending"] for p in assessed)
    missing_security = sum(
        p["availablePatchCountByClassification"].get("security", 0) > 0 for p in assessed
    )
    without_counts = sum(
        "security" not in p["availablePatchCountByClassification"] for p in assessed
    )
    assert share(never, len(machines)) == pytest.approx(0.05, abs=0.015)
    # Stale on purpose (0.06), plus most of the deallocated machines.
    assert 0.06 <= share(stale, len(assessed)) <= 0.12
    assert share(reboot, len(assessed)) == pytest.approx(0.03, abs=0.012)
    assert 0.25 <= share(missing_security, len(assessed)) <= 0.45
    assert 0 < without_counts < 0.03 * len(assessed)


def test_ring_tags_follow_the_shares(estate: Estate) -> None:
    rings = Counter(row["tags"].get("hotpatch-ring") for row in estate.resources)
    total = sum(rings.values())
    assert share(rings["ring0"], total) == pytest.approx(0.05, abs=0.015)
    assert share(rings["ring1"], total) == pytest.approx(0.25, abs=0.02)
    assert share(rings[None], total) == pytest.approx(0.08, abs=0.015)
    assert share(rings["ring2"], total) == pytest.approx(0.62, abs=0.02)
    assert len({row["location"] for row in estate.resources}) >= 6


def test_arc_machines_cover_enrolled_not_enrolled_too_old_and_disconnected(
    estate: Estate,
) -> None:
    arc = [row["properties"] for row in estate.resources if category_of(row) == "arc"]
    enablement = Counter(
        p["osProfile"]["windowsConfiguration"]["patchSettings"]
        .get("status", {})
        .get("hotpatchEnablementStatus")
        for p in arc
    )
    assert {"Enabled", "Disabled", "ActionRequired", None} <= set(enablement)
    assert any(p.get("osVersion") == f"10.0.{ARC_TOO_OLD_BUILD}" for p in arc)
    assert any("licenseProfile" not in p for p in arc if "2025" in p["osSku"])
    assert any(p["status"] == "Disconnected" for p in arc)
    assert any(p["osSku"].startswith("Windows Server 2022") for p in arc)
    assert {p["osSku"].split()[-1] for p in arc} == {"Standard", "Datacenter"}


def test_flexible_members_point_at_a_flexible_scale_set_row(estate: Estate) -> None:
    scale_sets = {
        row["id"]: row["properties"]["orchestrationMode"]
        for row in estate.resources
        if row["type"] == "microsoft.compute/virtualmachinescalesets"
    }
    members = [row for row in estate.resources if category_of(row) == "flexible_member"]
    assert members
    for member in members:
        assert scale_sets[member["properties"]["virtualMachineScaleSet"]["id"]] == "Flexible"
    assert "Uniform" in scale_sets.values()
    uniform = [row for row in estate.resources if category_of(row) == "uniform_scale_set"]
    assert all(row["id"] in estate.machine_ids() for row in uniform[:5])


def test_some_hotpatch_machines_took_a_regular_update_from_the_catalog(
    estate: Estate, releases: ReleaseCatalog
) -> None:
    regular = {f"10.0.{r.build}": r for r in releases.releases if not r.on_track}
    versions = [v for v in map(os_version, hotpatch_vms(estate)) if v is not None]
    taken = [regular[v] for v in versions if v in regular]
    assert share(len(taken), len(versions)) == pytest.approx(0.06, abs=0.02)
    # This month's regular update mostly, and the April out-of-band update now and then.
    assert {r.month for r in taken} == {"2026-04", "2026-05"}
    assert any(r.out_of_band for r in taken)


def test_windows_machines_outside_the_program_mostly_run_this_months_regular_update(
    estate: Estate, releases: ReleaseCatalog
) -> None:
    # WS2022 Azure Edition with Desktop Experience takes monthly cumulative updates.
    lcu = next(
        r
        for r in releases.releases
        if r.os is OsFamily.WS2022 and not r.on_track and not r.out_of_band and r.month == "2026-05"
    )
    desktop = [row for row in estate.resources if category_of(row) == "azure_edition_desktop"]
    versions = [v for v in map(os_version, desktop) if v is not None]
    on_lcu = sum(v == f"10.0.{lcu.build}" for v in versions)
    assert share(on_lcu, len(versions)) == pytest.approx(0.6, abs=0.08)


def test_some_hotpatch_machines_run_an_out_of_band_hotpatch_track_build(
    releases: ReleaseCatalog,
) -> None:
    # 2026-01-24: KB5078238, 20348.4655, out of band on the WS2022 hotpatch track.
    as_of = datetime(2026, 2, 1, 12, 0, tzinfo=UTC)
    out_of_band = {
        f"10.0.{r.build}"
        for r in releases.releases
        if r.out_of_band and r.on_track and r.date <= as_of.date()
    }
    assert out_of_band
    estate = generate_estate(EstateSpec(machines=3000, as_of=as_of), releases)
    versions = [v for v in map(os_version, hotpatch_vms(estate)) if v is not None]
    assert 0 < sum(v in out_of_band for v in versions) < 0.3 * len(versions)


def test_past_the_catalog_most_hotpatch_machines_run_builds_newer_than_it_knows(
    releases: ReleaseCatalog,
) -> None:
    as_of = datetime(2027, 3, 1, tzinfo=UTC)
    assert Calendar(releases).staleness(as_of) is not None
    estate = generate_estate(EstateSpec(machines=3000, as_of=as_of), releases)
    newest = {os: releases.newest_revision(os) or 0 for os in OsFamily}
    newer = 0
    versions = [v for v in map(os_version, hotpatch_vms(estate)) if v is not None]
    for version in versions:
        family, _major, revision = parse_build(version) or (None, 0, 0)
        assert family is not None
        newer += revision > newest[family]
    # In force, one and two releases behind: all made-up months past the horizon.
    assert share(newer, len(versions)) >= 0.7
    # Before the horizon no build is newer than the catalog.
    assert not [
        v
        for v in map(
            os_version,
            hotpatch_vms(generate_estate(EstateSpec(machines=500, as_of=AS_OF), releases)),
        )
        if v is not None and (parse_build(v) or (None, 0, 0))[2] > max(newest.values())
    ]


def test_azure_local_machines_are_arc_rows_of_kind_hci_azure_edition_or_not(
    estate: Estate,
) -> None:
    local = [row for row in estate.resources if category_of(row) == "azure_local"]
    assert local
    assert {row["type"] for row in local} == {"microsoft.hybridcompute/machines"}
    skus = Counter(row["properties"]["osSku"] for row in local)
    assert skus["Windows Server 2025 Datacenter: Azure Edition"] > 0
    assert skus["Windows Server 2022 Datacenter: Azure Edition"] > 0
    not_azure_edition = [sku for sku in skus if not sku.endswith(": Azure Edition")]
    assert sum(skus[sku] for sku in not_azure_edition) == pytest.approx(0.3 * len(local), rel=0.35)
    for row in local:
        properties = row["properties"]
        azure_edition = properties["osSku"].endswith(": Azure Edition")
        assert (properties["osEdition"] == "serverturbine") is azure_edition
        assert "licenseProfile" not in properties
    # Ordinary Arc machines keep the empty kind column.
    assert {row["kind"] for row in estate.resources if category_of(row) == "arc"} == {""}


def test_uniform_instances_belong_to_a_uniform_scale_set_and_have_no_patch_rows(
    estate: Estate,
) -> None:
    scale_sets = {
        row["id"]: row
        for row in estate.resources
        if row["type"] == "microsoft.compute/virtualmachinescalesets"
    }
    instances = estate.computeresources
    assert instances
    for row in instances:
        scale_set_id, number = row["id"].split("/virtualMachines/")
        assert scale_sets[scale_set_id]["properties"]["orchestrationMode"] == "Uniform"
        assert row["name"] == f"{scale_sets[scale_set_id]['name']}_{number}"
        model = scale_sets[scale_set_id]["properties"]["virtualMachineProfile"]
        assert (
            row["properties"]["storageProfile"]["imageReference"]
            == (model["storageProfile"]["imageReference"])
        )
    patched = {machine_of(r["id"]) for r in estate.rows() if "/patch" in r["id"].lower()}
    assert not patched & {row["id"].lower() for row in instances}
    assert any(not row["properties"]["latestModelApplied"] for row in instances)


def test_hotpatch_machines_carry_the_platform_settings_the_rules_read(estate: Estate) -> None:
    rows = hotpatch_vms(estate)
    configurations = [row["properties"]["osProfile"]["windowsConfiguration"] for row in rows]
    platform = [
        c for c in configurations if c["patchSettings"]["patchMode"] == "AutomaticByPlatform"
    ]
    updates_off = sum(c["enableAutomaticUpdates"] is False for c in platform)
    assert share(updates_off, len(platform)) == pytest.approx(0.03, abs=0.012)
    modes = Counter(c["patchSettings"]["assessmentMode"] for c in configurations)
    assert share(modes["ImageDefault"], len(rows)) == pytest.approx(0.15, abs=0.03)
    settings = [c["patchSettings"]["automaticByPlatformSettings"] for c in platform]
    bypass = sum(s["bypassPlatformSafetyChecksOnUserSchedule"] for s in settings)
    assert share(bypass, len(settings)) == pytest.approx(0.3, abs=0.03)
    assert {s["rebootSetting"] for s in settings} == {"IfRequired", "Never", "Always", "Unknown"}
    security = Counter(
        row["properties"].get("securityProfile", {}).get("securityType") for row in rows
    )
    assert set(security) == {"TrustedLaunch", "ConfidentialVM", "Standard", None}
    assert share(security[None], len(rows)) == pytest.approx(0.30, abs=0.03)


def test_assessments_count_every_classification_some_of_them_beyond_security(
    estate: Estate,
) -> None:
    counts = [
        row["properties"]["availablePatchCountByClassification"]
        for row in estate.patchassessmentresources
        if row["type"].endswith("/patchassessmentresults")
        and row["properties"]["osType"] == "Windows"
    ]
    # The classification names of AvailablePatchCountByClassification (Microsoft's SDK model).
    names = {
        "critical",
        "security",
        "updateRollup",
        "featurePack",
        "servicePack",
        "definition",
        "tools",
        "updates",
        "other",
    }
    assert all(set(c) <= names for c in counts)
    for name in ("other", "tools", "featurePack", "servicePack", "updateRollup", "updates"):
        assert any(c.get(name, 0) > 0 for c in counts), name
    assert share(sum(c.get("other", 0) > 0 for c in counts), len(counts)) == pytest.approx(
        0.08, abs=0.02
    )


def test_software_patches_are_off_by_default_and_on_when_asked(
    estate: Estate, releases: ReleaseCatalog
) -> None:
    assert not any(row["type"].endswith("/softwarepatches") for row in estate.rows())
    spec = EstateSpec(machines=1000, as_of=AS_OF, software_patches=True)
    with_patches = generate_estate(spec, releases)
    assessments = assessments_by_machine(with_patches)
    patches = [
        row
        for row in with_patches.patchassessmentresources
        if row["type"].endswith("/softwarepatches")
    ]
    assert patches
    per_assessment = Counter(row["id"].split("/softwarePatches/")[0] for row in patches)
    assert max(per_assessment.values()) <= 3
    for row in patches:
        assessment = assessments[machine_of(row["id"])]
        assert row["id"].startswith(assessment["id"] + "/softwarePatches/")
        properties = row["properties"]
        assert {
            "kbId",
            "classifications",
            "rebootBehavior",
            "publishedDateTime",
            "msrcSeverity",
        } <= properties.keys()


# -- the raw export ------------------------------------------------------------------------------


def test_split_rows_routes_each_type_to_its_table() -> None:
    rows: list[dict[str, Any]] = [
        {"id": "a", "type": "microsoft.compute/virtualmachines"},
        {"id": "b", "type": "Microsoft.Compute/virtualMachines/patchAssessmentResults"},
        {
            "id": "c",
            "type": "microsoft.compute/virtualmachines/patchassessmentresults/softwarepatches",
        },
        {"id": "d", "type": "microsoft.hybridcompute/machines/patchinstallationresults"},
        {
            "id": "e",
            "type": "Microsoft.HybridCompute/machines/patchInstallationResults/softwarePatches",
        },
        {"id": "f", "type": "microsoft.hybridcompute/machines"},
        {"id": "g"},
        {"id": "h", "type": 42},
    ]
    estate = split_rows(rows)
    assert [row["id"] for row in estate.resources] == ["a", "f", "g", "h"]
    assert [row["id"] for row in estate.patchassessmentresources] == ["b", "c"]
    assert [row["id"] for row in estate.patchinstallationresources] == ["d", "e"]


def test_splitting_the_rows_of_an_estate_gives_it_back(releases: ReleaseCatalog) -> None:
    spec = EstateSpec(machines=300, as_of=AS_OF, software_patches=True)
    estate = generate_estate(spec, releases)
    assert split_rows(estate.rows()) == estate


@given(
    st.lists(
        st.fixed_dictionaries(
            {"id": st.text(max_size=5)},
            optional={
                "type": st.one_of(
                    st.none(),
                    st.integers(),
                    st.sampled_from(
                        [
                            "microsoft.compute/virtualmachines",
                            "Microsoft.Compute/virtualMachineScaleSets/virtualMachines",
                            "microsoft.compute/virtualmachinescalesets/virtualmachines/x",
                            "MICROSOFT.COMPUTE/VIRTUALMACHINES/PATCHASSESSMENTRESULTS",
                            "x/patchinstallationresults/softwarepatches",
                            "x/patchassessmentresults/other",
                        ]
                    ),
                    st.text(max_size=40),
                )
            },
        ),
        max_size=20,
    )
)
def test_split_rows_puts_every_row_in_exactly_one_table(rows: list[dict[str, Any]]) -> None:
    estate = split_rows(rows)
    assert sorted(map(id, estate.rows())) == sorted(map(id, rows))


def test_write_then_read_export_gives_the_same_estate(
    releases: ReleaseCatalog, tmp_path: Path
) -> None:
    estate = generate_estate(EstateSpec(machines=300, as_of=AS_OF), releases)
    path = tmp_path / "export.json"
    write_export(estate, path)
    document = json.loads(path.read_text(encoding="utf-8"))
    assert set(document) == {"data", "count", "totalRecords"}
    assert document["count"] == document["totalRecords"] == len(estate.rows())
    assert b"\n" not in path.read_bytes()
    assert b", " not in path.read_bytes()[:2000]
    assert read_export(path) == estate


def test_read_export_accepts_a_bare_list_and_the_rest_shape(tmp_path: Path) -> None:
    vm = "/subscriptions/s/resourceGroups/r/providers/Microsoft.Compute/virtualMachines/v"
    rows = [
        {"id": vm, "type": "microsoft.compute/virtualmachines"},
        {
            "id": f"{vm}/patchAssessmentResults/latest",
            "type": "microsoft.compute/virtualmachines/patchassessmentresults",
        },
    ]
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(rows), encoding="utf-8")
    rest = tmp_path / "rest.json"
    rest.write_text(
        json.dumps({"totalRecords": 2, "count": 2, "resultTruncated": "false", "data": rows}),
        encoding="utf-8",
    )
    az = tmp_path / "az.json"
    az.write_text(
        json.dumps({"count": 2, "data": rows, "skip_token": None, "total_records": 2}),
        encoding="utf-8",
    )
    for path in (bare, rest, az):
        estate = read_export(path)
        assert [row["id"] for row in estate.resources] == [rows[0]["id"]]
        assert [row["id"] for row in estate.patchassessmentresources] == [rows[1]["id"]]
        assert estate.patchinstallationresources == []


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b'[{"id": "a",', "not valid JSON at line 1"),
        (b"", "not valid JSON"),
        (b"\xff\xfe\x00garbage", "not valid JSON at line 1, column 1"),
        (b'"rows"', "expected a JSON list of rows or an object"),
        (b'{"value": []}', 'an object with a "data" list'),
        (b'{"data": {"columns": [], "rows": []}}', "resultFormat objectArray"),
        (b'{"data": 3}', '"data" is a number'),
        (b'[{"id": "a"}, ["b"]]', "row 1 is a list, expected an object"),
        (b"[null]", "row 0 is null"),
    ],
)
def test_read_export_names_the_file_on_bad_json(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "broken-export.json"
    path.write_bytes(content)
    with pytest.raises(InputError) as raised:
        read_export(path)
    message = str(raised.value)
    assert str(path) in message
    assert problem in message
    assert "\n" not in message


def test_read_export_names_the_file_when_it_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.json"
    with pytest.raises(InputError, match=r"nowhere\.json: cannot read"):
        read_export(path)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@settings(max_examples=60)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
        ),
        max_leaves=8,
    )
)
def test_read_export_either_reads_or_raises_input_error(scratch: Path, document: Any) -> None:
    path = scratch / "fuzz.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    outcome: Estate | InputError
    try:
        outcome = read_export(path)
    except InputError as error:
        outcome = error
    if isinstance(outcome, InputError):
        assert str(path) in str(outcome)
    else:
        assert all(isinstance(row, dict) for row in outcome.rows())
