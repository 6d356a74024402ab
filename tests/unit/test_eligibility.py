"""Eligibility: every reason code, SKU casing, custom images, scale sets and Azure Arc."""

from __future__ import annotations

import pytest

from hotpatch.core.eligibility import eligibility, image_eligibility
from hotpatch.core.images import ImageCatalog
from hotpatch.core.inventory import parse_rows
from hotpatch.core.models import Eligibility, ImageRef, Machine, OsFamily
from hotpatch.core.policy import Policy
from hotpatch.data import shipped_image_catalog
from tests.builders import DELETE, arc_row, scale_set_row, vm_row

CATALOG: ImageCatalog = shipped_image_catalog()
POLICY = Policy()


def machine_from(row: dict[str, object]) -> Machine:
    (machine,) = parse_rows([row]).machines
    assert isinstance(machine, Machine), machine
    return machine


def judge(row: dict[str, object], policy: Policy = POLICY) -> Eligibility:
    return eligibility(machine_from(row), CATALOG, policy)


def codes(verdict: Eligibility) -> list[str]:
    return [reason.code for reason in verdict.reasons]


HOTPATCH_SKUS = [
    ("2022-datacenter-azure-edition-core", OsFamily.WS2022),
    ("2022-datacenter-azure-edition-core-smalldisk", OsFamily.WS2022),
    ("2022-datacenter-azure-edition-hotpatch", OsFamily.WS2022),
    ("2022-datacenter-azure-edition-hotpatch-smalldisk", OsFamily.WS2022),
    ("2025-datacenter-azure-edition", OsFamily.WS2025),
    ("2025-datacenter-azure-edition-smalldisk", OsFamily.WS2025),
    ("2025-datacenter-azure-edition-core", OsFamily.WS2025),
    ("2025-datacenter-azure-edition-core-smalldisk", OsFamily.WS2025),
]


@pytest.mark.parametrize(("sku", "os"), HOTPATCH_SKUS, ids=[s for s, _ in HOTPATCH_SKUS])
def test_every_documented_hotpatch_sku_is_eligible(sku: str, os: OsFamily) -> None:
    verdict = image_eligibility(
        ImageRef(publisher="MicrosoftWindowsServer", offer="WindowsServer", sku=sku),
        CATALOG,
        POLICY,
    )
    assert verdict.eligible
    assert verdict.os is os
    assert verdict.reasons == ()


@pytest.mark.parametrize(
    ("publisher", "offer", "sku"),
    [
        ("microsoftwindowsserver", "windowsserver", "2022-datacenter-azure-edition-core"),
        ("MICROSOFTWINDOWSSERVER", "WINDOWSSERVER", "2025-DATACENTER-AZURE-EDITION"),
        ("MicrosoftWindowsServer", "WindowsServer", "2022-Datacenter-Azure-Edition-Hotpatch"),
    ],
)
def test_publisher_offer_and_sku_compare_case_insensitively(
    publisher: str, offer: str, sku: str
) -> None:
    verdict = judge(vm_row(image=(publisher, offer, sku)))
    assert verdict.eligible, verdict.reasons


@pytest.mark.parametrize(
    "sku", ["2022-datacenter-azure-edition", "2022-Datacenter-Azure-Edition-smalldisk"]
)
def test_the_ws2022_desktop_azure_edition_is_called_out_by_name(sku: str) -> None:
    verdict = judge(vm_row(image=("MicrosoftWindowsServer", "WindowsServer", sku)))
    assert not verdict.eligible
    assert codes(verdict) == ["azure_edition_desktop_2022"]
    assert "hotpatch" in verdict.reasons[0].message


@pytest.mark.parametrize(
    "image",
    [
        ("MicrosoftWindowsServer", "WindowsServer", "2019-datacenter"),
        ("MicrosoftWindowsServer", "WindowsServer", "2022-datacenter-g2"),
        ("MicrosoftSQLServer", "sql2022-ws2022", "enterprise-gen2"),
    ],
)
def test_other_windows_images_are_not_hotpatchable(image: tuple[str, str, str]) -> None:
    verdict = judge(vm_row(image=image))
    assert codes(verdict) == ["sku_not_hotpatchable"]


@pytest.mark.parametrize(
    "reference",
    [
        {"id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/images/golden"},
        {"sharedGalleryImageId": "/SharedGalleries/g/Images/win/Versions/1.0.0"},
        {"communityGalleryImageId": "/CommunityGalleries/c/Images/win/Versions/latest"},
        {
            "id": "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/galleries/g/"
            "images/ws2022/versions/1.0.0"
        },
    ],
)
def test_custom_gallery_and_community_images_are_not_eligible(reference: dict[str, str]) -> None:
    row = vm_row(**{"properties.storageProfile.imageReference": reference})
    assert codes(judge(row)) == ["custom_image"]


def test_preview_offers_count_only_when_the_policy_allows_them() -> None:
    row = vm_row(
        image=(
            "MicrosoftWindowsServer",
            "MicrosoftServerOperatingSystems-previews",
            "windows-server-2025-azure-edition-hotpatch",
        )
    )
    assert codes(judge(row)) == ["preview_offer"]
    allowed = judge(row, Policy(allow_preview_images=True))
    assert allowed.eligible
    assert allowed.os is OsFamily.WS2025


def test_linux_is_not_windows() -> None:
    row = vm_row(
        image=("Canonical", "ubuntu-24_04-lts", "server"),
        **{"properties.storageProfile.osDisk.osType": "Linux"},
    )
    assert codes(judge(row)) == ["not_windows"]


def test_a_uniform_scale_set_is_not_eligible() -> None:
    row = scale_set_row(mode="Uniform")
    assert codes(judge(row)) == ["uniform_scale_set"]


def test_a_flexible_scale_set_member_is_judged_as_a_vm() -> None:
    scale_set = (
        "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachineScaleSets/f"
    )
    verdict = judge(vm_row(**{"properties.virtualMachineScaleSet": {"id": scale_set}}))
    assert verdict.eligible
    assert verdict.reasons == ()


def test_hotpatch_switched_off_on_a_hotpatch_image_is_a_configuration_problem() -> None:
    verdict = judge(
        vm_row(
            **{"properties.osProfile.windowsConfiguration.patchSettings.enableHotpatching": False}
        )
    )
    assert verdict.eligible
    assert codes(verdict) == ["hotpatch_disabled"]


@pytest.mark.parametrize("mode", ["AutomaticByOS", "Manual", DELETE])
def test_a_patch_mode_other_than_automatic_by_platform_is_a_configuration_problem(
    mode: object,
) -> None:
    row = vm_row(**{"properties.osProfile.windowsConfiguration.patchSettings.patchMode": mode})
    assert "patch_mode_not_platform" in codes(judge(row))


def test_no_image_reference_is_missing_data_not_a_verdict() -> None:
    verdict = judge(vm_row(**{"properties.storageProfile.imageReference": DELETE}))
    assert not verdict.eligible
    assert codes(verdict) == ["missing_image_data"]
    assert verdict.undecided


def test_an_image_reference_without_a_sku_is_missing_data() -> None:
    verdict = judge(vm_row(**{"properties.storageProfile.imageReference.sku": DELETE}))
    assert codes(verdict) == ["missing_image_data"]
    assert "sku" in verdict.reasons[0].message


class TestAzureArc:
    def test_an_enrolled_ws2025_machine_is_eligible_and_configured(self) -> None:
        verdict = judge(arc_row())
        assert verdict.eligible
        assert verdict.os is OsFamily.WS2025
        assert verdict.reasons == ()

    def test_a_machine_not_enrolled_says_what_is_missing(self) -> None:
        verdict = judge(arc_row(enrolled=False))
        assert verdict.eligible
        assert codes(verdict) == ["arc_not_enrolled"]
        assert "Disabled" in verdict.reasons[0].message

    def test_action_required_points_at_vbs(self) -> None:
        row = arc_row(
            **{
                "properties.osProfile.windowsConfiguration.patchSettings.status"
                ".hotpatchEnablementStatus": "ActionRequired"
            }
        )
        verdict = judge(row)
        assert codes(verdict) == ["arc_not_enrolled"]
        assert "VBS" in verdict.reasons[0].message

    def test_no_hotpatch_product_feature_is_not_enrolled(self) -> None:
        row = arc_row(**{"properties.licenseProfile": DELETE})
        assert codes(judge(row)) == ["arc_not_enrolled"]

    def test_a_build_older_than_26100_1742_is_too_old(self) -> None:
        assert codes(judge(arc_row(build="10.0.26100.1000"))) == ["arc_build_too_old"]

    def test_build_26100_1742_is_new_enough(self) -> None:
        assert judge(arc_row(build="10.0.26100.1742")).eligible

    def test_ws2022_through_arc_is_not_hotpatchable(self) -> None:
        row = arc_row(
            build="10.0.20348.4711", **{"properties.osSku": "Windows Server 2022 Datacenter"}
        )
        verdict = judge(row)
        assert codes(verdict) == ["sku_not_hotpatchable"]
        assert verdict.os is OsFamily.WS2022

    def test_a_linux_arc_machine_is_not_windows(self) -> None:
        row = arc_row(**{"properties.osType": "linux", "properties.osVersion": "6.8.0"})
        assert codes(judge(row)) == ["not_windows"]

    def test_an_unreadable_os_version_is_missing_data(self) -> None:
        row = arc_row(**{"properties.osVersion": DELETE})
        assert codes(judge(row)) == ["missing_image_data"]


def test_every_documented_reason_code_is_produced_somewhere() -> None:
    """The issue names these codes; the tests above each produce one. This guards the list."""
    required = {
        "not_windows",
        "custom_image",
        "sku_not_hotpatchable",
        "azure_edition_desktop_2022",
        "preview_offer",
        "uniform_scale_set",
        "hotpatch_disabled",
        "patch_mode_not_platform",
        "vm_agent_not_provisioned",
        "arc_build_too_old",
        "arc_not_enrolled",
        "missing_image_data",
    }
    rows: list[dict[str, object]] = [
        vm_row(
            image=("Canonical", "ubuntu", "22_04"),
            **{"properties.storageProfile.osDisk.osType": "Linux"},
        ),
        vm_row(**{"properties.storageProfile.imageReference": {"id": "/x/images/y"}}),
        vm_row(image=("MicrosoftWindowsServer", "WindowsServer", "2019-datacenter")),
        vm_row(image=("MicrosoftWindowsServer", "WindowsServer", "2022-datacenter-azure-edition")),
        vm_row(image=("MicrosoftWindowsServer", "WindowsServerHotpatch-previews", "any")),
        scale_set_row(mode="Uniform"),
        vm_row(
            **{"properties.osProfile.windowsConfiguration.patchSettings.enableHotpatching": False}
        ),
        vm_row(**{"properties.osProfile.windowsConfiguration.patchSettings.patchMode": "Manual"}),
        vm_row(**{"properties.osProfile.windowsConfiguration.provisionVMAgent": False}),
        arc_row(build="10.0.26100.100"),
        arc_row(enrolled=False),
        vm_row(**{"properties.storageProfile.imageReference": DELETE}),
    ]
    seen = {code for row in rows for code in codes(judge(row))}
    assert required <= seen, required - seen
