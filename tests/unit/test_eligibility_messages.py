"""Eligibility, word for word: each reason names what was found and what hotpatch needs."""

from __future__ import annotations

from typing import Any

import pytest

from hotpatch.core.eligibility import eligibility
from hotpatch.core.inventory import parse_rows
from hotpatch.core.models import Eligibility, Machine, OsFamily
from hotpatch.core.policy import Policy
from hotpatch.data import shipped_image_catalog
from tests.builders import DELETE, arc_row, vm_row

WINDOWS_CONFIGURATION = "properties.osProfile.windowsConfiguration"
PATCH = f"{WINDOWS_CONFIGURATION}.patchSettings"
IMAGE = "properties.storageProfile.imageReference"
ARC_PATCH = "properties.osProfile.windowsConfiguration.patchSettings"


def machine_of(row: dict[str, Any]) -> Machine:
    (machine,) = parse_rows([row]).machines
    assert isinstance(machine, Machine), machine
    return machine


def judged(machine: Machine) -> tuple[OsFamily | None, list[tuple[str, str]]]:
    verdict: Eligibility = eligibility(machine, shipped_image_catalog(), Policy())
    return verdict.os, [(str(r.code), r.message) for r in verdict.reasons]


VM_CASES = [
    pytest.param(
        {IMAGE: DELETE},
        (None, [("missing_image_data", "no storageProfile.imageReference in the inventory")]),
        id="no image reference",
    ),
    pytest.param(
        {IMAGE: {"id": "/x/images/y"}},
        (
            None,
            [
                (
                    "custom_image",
                    "built from a custom, gallery or community image (/x/images/y); hotpatch "
                    "needs a marketplace Azure Edition image",
                )
            ],
        ),
        id="custom image",
    ),
    pytest.param(
        {IMAGE: {"publisher": "MicrosoftWindowsServer"}},
        (None, [("missing_image_data", "imageReference has no offer, sku")]),
        id="no offer or sku",
    ),
    pytest.param(
        {IMAGE: {"offer": "WindowsServer", "sku": "2022-datacenter-azure-edition"}},
        (None, [("missing_image_data", "imageReference has no publisher")]),
        id="no publisher",
    ),
    pytest.param(
        {f"{IMAGE}.sku": "2022-datacenter-azure-edition"},
        (OsFamily.WS2022, ["azure_edition_desktop_2022"]),
        id="the WS2022 Desktop Experience SKU keeps its release",
    ),
    pytest.param(
        {f"{PATCH}.patchMode": "Manual"},
        (
            OsFamily.WS2022,
            [
                (
                    "patch_mode_not_platform",
                    "patchMode is Manual; hotpatch needs AutomaticByPlatform",
                )
            ],
        ),
        id="manual patch mode",
    ),
    pytest.param(
        {f"{PATCH}.patchMode": DELETE},
        (
            OsFamily.WS2022,
            [
                (
                    "patch_mode_not_platform",
                    "patchMode is not set; hotpatch needs AutomaticByPlatform",
                )
            ],
        ),
        id="no patch mode",
    ),
    pytest.param(
        {f"{WINDOWS_CONFIGURATION}.enableAutomaticUpdates": False},
        (
            OsFamily.WS2022,
            [
                (
                    "automatic_updates_disabled",
                    "enableAutomaticUpdates is false; AutomaticByPlatform needs it (and the VM "
                    "agent)",
                )
            ],
        ),
        id="automatic updates off",
    ),
    pytest.param(
        {f"{WINDOWS_CONFIGURATION}.provisionVMAgent": False},
        (
            OsFamily.WS2022,
            [
                (
                    "vm_agent_not_provisioned",
                    "provisionVMAgent is false; AutomaticByPlatform needs the VM agent",
                )
            ],
        ),
        id="no VM agent",
    ),
    pytest.param(
        {f"{PATCH}.enableHotpatching": False},
        (
            OsFamily.WS2022,
            [("hotpatch_disabled", "enableHotpatching is false on a hotpatch image")],
        ),
        id="hotpatch off",
    ),
    pytest.param(
        {f"{PATCH}.enableHotpatching": DELETE},
        (
            OsFamily.WS2022,
            [("hotpatch_disabled", "enableHotpatching is not set on a hotpatch image")],
        ),
        id="hotpatch not set",
    ),
]


@pytest.mark.parametrize(("overrides", "expected"), VM_CASES)
def test_a_vm_is_told_word_for_word_why_it_cannot_or_does_not_take_hotpatches(
    overrides: dict[str, Any], expected: tuple[OsFamily | None, list[Any]]
) -> None:
    os, reasons = judged(machine_of(vm_row(**overrides)))
    expected_os, expected_reasons = expected
    assert os is expected_os
    if expected_reasons and isinstance(expected_reasons[0], str):
        assert [code for code, _ in reasons] == expected_reasons
    else:
        assert reasons == expected_reasons


@pytest.mark.parametrize(
    ("mode", "uniform"),
    [("Uniform", True), ("UNIFORM", True), ("uniform", True), ("Flexible", False), (None, False)],
)
def test_only_uniform_orchestration_in_any_case_blocks_a_vm(
    mode: str | None, uniform: bool
) -> None:
    machine = machine_of(vm_row()).model_copy(update={"orchestration_mode": mode})
    _, reasons = judged(machine)
    blocked = [
        ("uniform_scale_set", "Uniform scale sets cannot be hotpatched; use Flexible orchestration")
    ]
    assert reasons == (blocked if uniform else [])


ARC_CASES = [
    pytest.param(
        arc_row(**{"properties.osType": "linux", "properties.osVersion": "6.8.0"}),
        (None, [("not_windows", "OS type is linux")]),
        id="linux",
    ),
    pytest.param(
        arc_row(**{"properties.osVersion": DELETE}),
        (None, [("missing_image_data", "the Arc agent reported no usable osVersion (none)")]),
        id="no version",
    ),
    pytest.param(
        arc_row(**{"properties.osVersion": "banana"}),
        (None, [("missing_image_data", "the Arc agent reported no usable osVersion (banana)")]),
        id="not a version",
    ),
    pytest.param(
        arc_row(build="10.0.20348.4711", **{"properties.osSku": "Windows Server 2022 Datacenter"}),
        (
            OsFamily.WS2022,
            [
                (
                    "sku_not_hotpatchable",
                    "Arc hotpatch needs Windows Server 2025 Standard or Datacenter; this is "
                    "ws2022 build 20348.4711",
                )
            ],
        ),
        id="WS2022 through Arc",
    ),
    pytest.param(
        arc_row(build="10.0.17763.6054", **{"properties.osSku": "Windows Server 2019 Datacenter"}),
        (
            None,
            [
                (
                    "sku_not_hotpatchable",
                    "Arc hotpatch needs Windows Server 2025 Standard or Datacenter; this is "
                    "build 17763.6054",
                )
            ],
        ),
        id="WS2019 through Arc",
    ),
    pytest.param(
        arc_row(**{"properties.osSku": "Windows Server 2025 Essentials"}),
        (
            OsFamily.WS2025,
            [
                (
                    "sku_not_hotpatchable",
                    "Arc hotpatch needs Standard or Datacenter edition, not Windows Server 2025 "
                    "Essentials",
                )
            ],
        ),
        id="an Essentials edition",
    ),
    pytest.param(
        arc_row(**{"properties.osSku": "Windows Server 2025 Standard"}),
        (OsFamily.WS2025, []),
        id="a Standard edition",
    ),
    pytest.param(
        arc_row(**{"properties.osSku": DELETE}),
        (OsFamily.WS2025, []),
        id="an edition not reported",
    ),
    pytest.param(
        arc_row(build="10.0.26100.1000"),
        (
            OsFamily.WS2025,
            [
                (
                    "arc_build_too_old",
                    "build 26100.1000 is older than 26100.1742, the first release Arc hotpatch "
                    "supports",
                )
            ],
        ),
        id="too old",
    ),
    pytest.param(
        arc_row(**{"properties.licenseProfile": DELETE}),
        (
            OsFamily.WS2025,
            [
                (
                    "arc_not_enrolled",
                    "not enrolled in Arc hotpatch: no Hotpatch product feature in the license "
                    "profile",
                )
            ],
        ),
        id="no product feature",
    ),
    pytest.param(
        arc_row(enrolled=False),
        (
            OsFamily.WS2025,
            [
                (
                    "arc_not_enrolled",
                    "not enrolled in Arc hotpatch: Hotpatch subscription is Disabled; "
                    "enableHotpatching is not true; hotpatchEnablementStatus is Disabled",
                )
            ],
        ),
        id="every enrolment step missing",
    ),
    pytest.param(
        arc_row(**{f"{ARC_PATCH}.status.hotpatchEnablementStatus": "ActionRequired"}),
        (
            OsFamily.WS2025,
            [
                (
                    "arc_not_enrolled",
                    "not enrolled in Arc hotpatch: hotpatchEnablementStatus is ActionRequired "
                    "(check VBS: UEFI and Secure Boot)",
                )
            ],
        ),
        id="VBS action required",
    ),
]


@pytest.mark.parametrize(("row", "expected"), ARC_CASES)
def test_an_arc_machine_is_told_word_for_word_why_it_cannot_or_does_not_take_hotpatches(
    row: dict[str, Any], expected: tuple[OsFamily | None, list[tuple[str, str]]]
) -> None:
    assert judged(machine_of(row)) == expected


@pytest.mark.parametrize(
    ("features", "subscription"),
    [
        ([{"name": "Hotpatch", "subscriptionStatus": "Enabled"}], "Enabled"),
        ([{"name": "HOTPATCH", "subscriptionStatus": "Disabled"}], "Disabled"),
        (["Hotpatch", {"name": "Other", "subscriptionStatus": "Enabled"}], None),
        ([{"subscriptionStatus": "Enabled"}], None),
        ([], None),
    ],
    ids=["enabled", "any case", "not objects or another feature", "no name", "none"],
)
def test_the_hotpatch_subscription_is_read_from_the_feature_named_hotpatch(
    features: list[Any], subscription: str | None
) -> None:
    row = arc_row(**{"properties.licenseProfile.productProfile.productFeatures": features})
    assert machine_of(row).hotpatch_subscription_status == subscription


def test_product_features_that_are_not_a_list_make_the_row_malformed() -> None:
    row = arc_row(**{"properties.licenseProfile.productProfile.productFeatures": {"a": 1}})
    (machine,) = parse_rows([row]).machines
    assert not isinstance(machine, Machine)
    assert machine.error == (
        "resource row: properties.licenseProfile.productProfile.productFeatures: Value error, "
        "productFeatures must be a list"
    )


def test_a_linux_vm_and_an_allowed_preview_image_of_no_named_release_say_why() -> None:
    linux = vm_row(
        image=("Canonical", "ubuntu", "22_04"),
        **{"properties.storageProfile.osDisk.osType": "Linux"},
    )
    assert judged(machine_of(linux)) == (None, [("not_windows", "OS type is Linux")])
    preview = vm_row(
        image=(
            "MicrosoftWindowsServer",
            "WindowsServerHotpatch-previews",
            "windows-server-azure-edition-hotpatch",
        ),
        build=None,
    )
    verdict = eligibility(
        machine_of(preview), shipped_image_catalog(), Policy(allow_preview_images=True)
    )
    assert [(str(r.code), r.message) for r in verdict.reasons] == [
        (
            "missing_image_data",
            "neither the image nor the reported OS version says which Windows Server release "
            "this is",
        )
    ]
