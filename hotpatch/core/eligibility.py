"""Eligibility: can a machine take hotpatches, and is it set up to? A verdict with reasons."""

from __future__ import annotations

from hotpatch.core.images import ImageCatalog
from hotpatch.core.models import (
    BUILD_MAJOR,
    Eligibility,
    ImageRef,
    Machine,
    MachineKind,
    OsFamily,
    Reason,
    parse_build,
)
from hotpatch.core.policy import Policy
from hotpatch.core.reasons import ReasonCode

PLATFORM_PATCH_MODE = "automaticbyplatform"


def image_eligibility(image: ImageRef | None, catalog: ImageCatalog, policy: Policy) -> Eligibility:
    """What the image alone says: the `check-image` answer, and the first half of a VM's."""
    if image is None:
        return Eligibility(
            None,
            undecided=(
                Reason(
                    ReasonCode.MISSING_IMAGE_DATA,
                    "no storageProfile.imageReference in the inventory",
                ),
            ),
        )
    if image.custom_image_id:
        return Eligibility(
            None,
            blocking=(
                Reason(
                    ReasonCode.CUSTOM_IMAGE,
                    f"built from a custom, gallery or community image ({image.custom_image_id}); "
                    "hotpatch needs a marketplace Azure Edition image",
                ),
            ),
        )
    if not (image.publisher and image.offer and image.sku):
        missing = [
            name
            for name, value in (
                ("publisher", image.publisher),
                ("offer", image.offer),
                ("sku", image.sku),
            )
            if not value
        ]
        return Eligibility(
            None,
            undecided=(
                Reason(
                    ReasonCode.MISSING_IMAGE_DATA, f"imageReference has no {', '.join(missing)}"
                ),
            ),
        )
    match = catalog.match(image.publisher, image.offer, image.sku)
    if match.reason is None or (match.preview and policy.allow_preview_images):
        return Eligibility(match.os)
    return Eligibility(match.os, blocking=(match.reason,))


def eligibility(machine: Machine, catalog: ImageCatalog, policy: Policy) -> Eligibility:
    """The full verdict for a VM, a scale set or an Arc machine."""
    if machine.kind is MachineKind.ARC:
        return _arc_eligibility(machine, policy)
    if machine.kind is MachineKind.SCALE_SET or _is_uniform(machine.orchestration_mode):
        return Eligibility(
            None,
            blocking=(
                Reason(
                    ReasonCode.UNIFORM_SCALE_SET,
                    "Uniform scale sets cannot be hotpatched; use Flexible orchestration",
                ),
            ),
        )
    if machine.os_type is not None and machine.os_type.casefold() != "windows":
        return Eligibility(
            None, blocking=(Reason(ReasonCode.NOT_WINDOWS, f"OS type is {machine.os_type}"),)
        )
    verdict = image_eligibility(machine.image, catalog, policy)
    if not verdict.eligible:
        return verdict
    os = verdict.os
    if os is None:
        # An (allowed) preview image whose SKU names no release: the build says which it is.
        parsed = parse_build(machine.os_version) if machine.os_version else None
        os = parsed[0] if parsed else None
        if os is None:
            return Eligibility(
                None,
                undecided=(
                    Reason(
                        ReasonCode.MISSING_IMAGE_DATA,
                        "neither the image nor the reported OS version says which Windows "
                        "Server release this is",
                    ),
                ),
            )
    return Eligibility(os, configuration=tuple(_vm_configuration(machine)))


def _is_uniform(mode: str | None) -> bool:
    return mode is not None and mode.casefold() == "uniform"


def _vm_configuration(machine: Machine) -> list[Reason]:
    reasons = []
    mode = machine.patch_mode
    if mode is None or mode.casefold() != PLATFORM_PATCH_MODE:
        reasons.append(
            Reason(
                ReasonCode.PATCH_MODE_NOT_PLATFORM,
                f"patchMode is {mode or 'not set'}; hotpatch needs AutomaticByPlatform",
            )
        )
    # Manual patch mode requires enableAutomaticUpdates false: only the platform mode needs it on.
    # https://learn.microsoft.com/azure/virtual-machines/automatic-vm-guest-patching#patch-orchestration-modes
    platform = mode is not None and mode.casefold() == PLATFORM_PATCH_MODE
    if platform and machine.enable_automatic_updates is False:
        reasons.append(
            Reason(
                ReasonCode.AUTOMATIC_UPDATES_DISABLED,
                "enableAutomaticUpdates is false; AutomaticByPlatform needs it (and the VM agent)",
            )
        )
    if machine.provision_vm_agent is False:
        reasons.append(
            Reason(
                ReasonCode.VM_AGENT_NOT_PROVISIONED,
                "provisionVMAgent is false; AutomaticByPlatform needs the VM agent",
            )
        )
    if machine.enable_hotpatching is not True:
        state = "false" if machine.enable_hotpatching is False else "not set"
        reasons.append(
            Reason(
                ReasonCode.HOTPATCH_DISABLED, f"enableHotpatching is {state} on a hotpatch image"
            )
        )
    return reasons


def _arc_eligibility(machine: Machine, policy: Policy) -> Eligibility:
    if machine.os_type is not None and machine.os_type.casefold() != "windows":
        return Eligibility(
            None, blocking=(Reason(ReasonCode.NOT_WINDOWS, f"OS type is {machine.os_type}"),)
        )
    parsed = parse_build(machine.os_version) if machine.os_version else None
    if _azure_edition(machine.arc_os_sku):
        return _azure_edition_through_arc(machine, parsed)
    if parsed is None:
        return Eligibility(
            None,
            undecided=(
                Reason(
                    ReasonCode.MISSING_IMAGE_DATA,
                    f"the Arc agent reported no usable osVersion ({machine.os_version or 'none'})",
                ),
            ),
        )
    family, major, revision = parsed
    if family is not OsFamily.WS2025:
        shown = f"{family.value} " if family else ""
        return Eligibility(
            family,
            blocking=(
                Reason(
                    ReasonCode.SKU_NOT_HOTPATCHABLE,
                    f"Arc hotpatch needs Windows Server 2025 Standard or Datacenter; this is "
                    f"{shown}build {major}.{revision}",
                ),
            ),
        )
    sku = (machine.arc_os_sku or "").casefold()
    if sku and not ("standard" in sku or "datacenter" in sku):
        return Eligibility(
            family,
            blocking=(
                Reason(
                    ReasonCode.SKU_NOT_HOTPATCHABLE,
                    f"Arc hotpatch needs Standard or Datacenter edition, not {machine.arc_os_sku}",
                ),
            ),
        )
    if revision < policy.arc_min_revision:
        return Eligibility(
            family,
            blocking=(
                Reason(
                    ReasonCode.ARC_BUILD_TOO_OLD,
                    f"build {major}.{revision} is older than {major}.{policy.arc_min_revision}, "
                    "the first release Arc hotpatch supports",
                ),
            ),
        )
    return Eligibility(family, configuration=tuple(_arc_enrolment(machine)))


def _azure_edition(os_sku: str | None) -> bool:
    return os_sku is not None and "azure edition" in os_sku.casefold()


def _azure_edition_through_arc(
    machine: Machine, parsed: tuple[OsFamily | None, int, int] | None
) -> Eligibility:
    """Azure Edition guests on Azure Local appear in Resource Graph as Arc machines (`kind`
    "HCI"). They follow the Azure Edition rules (WS2022 and WS2025 alike), not the WS2025
    Arc licensing rule: hotpatch is part of Azure Edition there.

    https://learn.microsoft.com/azure/azure-local/manage/windows-server-azure-edition
    https://learn.microsoft.com/windows-server/get-started/hotpatch
    """
    family = parsed[0] if parsed else None
    if family is None:
        return Eligibility(
            None,
            undecided=(
                Reason(
                    ReasonCode.MISSING_IMAGE_DATA,
                    f"an Azure Edition machine ({machine.arc_os_sku}) whose reported osVersion "
                    f"({machine.os_version or 'none'}) is not a Windows Server 2022 or 2025 build",
                ),
            ),
        )
    where = "Azure Local" if (machine.arc_kind or "").casefold() == "hci" else "Azure Arc"
    signal = Reason(
        ReasonCode.AZURE_LOCAL,
        f"{machine.arc_os_sku} on {where}: judged by the Azure Edition rules, not the Windows "
        "Server 2025 Arc hotpatch licensing rule",
    )
    configuration: tuple[Reason, ...] = ()
    if machine.enable_hotpatching is False:
        configuration = (
            Reason(
                ReasonCode.HOTPATCH_DISABLED,
                "enableHotpatching is false on an Azure Edition machine",
            ),
        )
    return Eligibility(family, configuration=configuration, signals=(signal,))


def _arc_enrolment(machine: Machine) -> list[Reason]:
    problems = []
    if machine.hotpatch_subscription_status is None:
        problems.append("no Hotpatch product feature in the license profile")
    elif machine.hotpatch_subscription_status.casefold() != "enabled":
        problems.append(f"Hotpatch subscription is {machine.hotpatch_subscription_status}")
    if machine.enable_hotpatching is not True:
        problems.append("enableHotpatching is not true")
    status = machine.hotpatch_enablement_status
    if status is not None and status.casefold() != "enabled":
        hint = " (check VBS: UEFI and Secure Boot)" if status.casefold() == "actionrequired" else ""
        problems.append(f"hotpatchEnablementStatus is {status}{hint}")
    if not problems:
        return []
    return [
        Reason(ReasonCode.ARC_NOT_ENROLLED, "not enrolled in Arc hotpatch: " + "; ".join(problems))
    ]


__all__ = ["BUILD_MAJOR", "eligibility", "image_eligibility"]
