"""Resource Graph rows for tests, shaped as docs/raw-export.md, with overrides by dotted path."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

SUBSCRIPTION = "00000000-0000-0000-0000-000000000001"
WS2022_CORE = ("MicrosoftWindowsServer", "WindowsServer", "2022-datacenter-azure-edition-core")
#: Four days after the 2026-02 hotpatch release (2026-02-10 18:00Z): inside its 7-day grace.
NOW = datetime(2026, 2, 14, 12, 0, tzinfo=UTC)
#: Past the 2026-02 grace period (it ended 2026-02-17 18:00Z).
LATER = datetime(2026, 2, 20, 12, 0, tzinfo=UTC)


def vm_id(name: str, subscription: str = SUBSCRIPTION) -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/rg-hp/providers/"
        f"Microsoft.Compute/virtualMachines/{name}"
    )


def arc_id(name: str, subscription: str = SUBSCRIPTION) -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/rg-arc/providers/"
        f"Microsoft.HybridCompute/machines/{name}"
    )


def _apply(row: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """`{"properties.osProfile.windowsConfiguration.patchSettings.patchMode": "Manual"}`;
    a value of `DELETE` removes the key."""
    for path, value in overrides.items():
        *parents, leaf = path.split(".")
        node = row
        for part in parents:
            node = node.setdefault(part, {})
        if value is DELETE:
            node.pop(leaf, None)
        else:
            node[leaf] = value
    return row


DELETE = object()


def vm_row(
    name: str = "vm1",
    image: tuple[str, str, str] = WS2022_CORE,
    build: str | None = "10.0.20348.4711",
    **overrides: Any,
) -> dict[str, Any]:
    publisher, offer, sku = image
    row: dict[str, Any] = {
        "id": vm_id(name),
        "name": name,
        "type": "microsoft.compute/virtualmachines",
        "location": "westeurope",
        "resourceGroup": "rg-hp",
        "subscriptionId": SUBSCRIPTION,
        "tags": {"hotpatch-ring": "1"},
        "properties": {
            "storageProfile": {
                "imageReference": {
                    "publisher": publisher,
                    "offer": offer,
                    "sku": sku,
                    "version": "latest",
                },
                "osDisk": {"osType": "Windows", "createOption": "FromImage"},
            },
            "osProfile": {
                "computerName": name,
                "windowsConfiguration": {
                    "provisionVMAgent": True,
                    "patchSettings": {
                        "patchMode": "AutomaticByPlatform",
                        "enableHotpatching": True,
                        "assessmentMode": "AutomaticByPlatform",
                        "automaticByPlatformSettings": {"rebootSetting": "IfRequired"},
                    },
                },
            },
            "securityProfile": {"securityType": "TrustedLaunch"},
            "extended": {
                "instanceView": {
                    "powerState": {"code": "PowerState/running"},
                    "osVersion": build,
                }
            },
        },
    }
    if build is None:
        del row["properties"]["extended"]["instanceView"]["osVersion"]
    return _apply(row, {k.replace("__", "."): v for k, v in overrides.items()})


def arc_row(
    name: str = "arc1",
    build: str = "10.0.26100.32313",
    enrolled: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    status = "Enabled" if enrolled else "Disabled"
    row: dict[str, Any] = {
        "id": arc_id(name),
        "name": name,
        "type": "microsoft.hybridcompute/machines",
        "location": "westeurope",
        "resourceGroup": "rg-arc",
        "subscriptionId": SUBSCRIPTION,
        "tags": {},
        "properties": {
            "status": "Connected",
            "osType": "windows",
            "osName": "windows",
            "osVersion": build,
            "osSku": "Windows Server 2025 Datacenter",
            "osProfile": {
                "windowsConfiguration": {
                    "patchSettings": {
                        "assessmentMode": "AutomaticByPlatform",
                        "patchMode": "AutomaticByPlatform",
                        "enableHotpatching": enrolled,
                        "status": {"hotpatchEnablementStatus": status},
                    }
                }
            },
            "licenseProfile": {
                "productProfile": {
                    "productFeatures": [{"name": "Hotpatch", "subscriptionStatus": status}]
                }
            },
        },
    }
    return _apply(row, {k.replace("__", "."): v for k, v in overrides.items()})


def assessment_row(
    machine_id: str,
    assessed: datetime = datetime(2026, 2, 14, 3, 0, tzinfo=UTC),
    critical: int = 0,
    security: int = 0,
    reboot_pending: bool = False,
    status: str = "Succeeded",
) -> dict[str, Any]:
    kind = (
        "microsoft.hybridcompute/machines/patchassessmentresults"
        if "hybridcompute" in machine_id.lower()
        else "microsoft.compute/virtualmachines/patchassessmentresults"
    )
    return {
        "id": f"{machine_id}/patchAssessmentResults/latest",
        "name": "latest",
        "type": kind,
        "subscriptionId": SUBSCRIPTION,
        "properties": {
            "status": status,
            "rebootPending": reboot_pending,
            "osType": "Windows",
            "lastModifiedDateTime": assessed.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "availablePatchCountByClassification": {
                "critical": critical,
                "security": security,
                "other": 1,
            },
        },
    }


def installation_row(
    machine_id: str,
    finished: datetime,
    activity: str = "a1",
    status: str = "Succeeded",
    reboot_status: str = "NotNeeded",
) -> dict[str, Any]:
    return {
        "id": f"{machine_id}/patchInstallationResults/{activity}",
        "name": activity,
        "type": "microsoft.compute/virtualmachines/patchinstallationresults",
        "subscriptionId": SUBSCRIPTION,
        "properties": {
            "status": status,
            "rebootStatus": reboot_status,
            "lastModifiedDateTime": finished.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "installedPatchCount": 1,
        },
    }


def copy_row(row: dict[str, Any]) -> dict[str, Any]:
    return copy.deepcopy(row)


def scale_set_row(name: str = "ss1", mode: str = "Uniform") -> dict[str, Any]:
    return {
        "id": (
            f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-hp/providers/"
            f"Microsoft.Compute/virtualMachineScaleSets/{name}"
        ),
        "name": name,
        "type": "microsoft.compute/virtualmachinescalesets",
        "subscriptionId": SUBSCRIPTION,
        "properties": {"orchestrationMode": mode},
    }
