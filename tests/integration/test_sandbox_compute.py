"""The real async ComputeManagementClient's patch pollers against the sandbox."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.mgmt.compute.aio import ComputeManagementClient
from azure.mgmt.compute.models import VirtualMachineInstallPatchesParameters, WindowsParameters
from azure.mgmt.hybridcompute.models import (
    MachineAssessPatchesResult,
    MachineInstallPatchesResult,
)
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest

from hotpatch.sandbox.arm import Quota
from hotpatch.sandbox.estate import Estate
from hotpatch.sandbox.server import Sandbox
from tests.integration.conftest import (
    SUB_A,
    AsyncStaticToken,
    ManualClock,
    StaticToken,
    arc_row,
    vm_row,
)

pytestmark = pytest.mark.sandbox

Start = Callable[..., Sandbox]
GROUP = "rg-hotpatch"
#: January 2026 baseline (20348.4648) in force; February's hotpatch is 20348.4711.
ON_JANUARY_BASELINE = "10.0.20348.4648"
DECEMBER_HOTPATCH = "10.0.20348.4467"


@pytest.fixture
def start(start_sandbox: Start) -> Start:
    """Sandboxes whose 202s say `Retry-After: 0`, so pollers use their own short interval."""

    def starter(rows: Estate, **changes: Any) -> Sandbox:
        return start_sandbox(rows, **{"operation_retry_after_seconds": 0, **changes})

    return starter


def compute_client(sandbox: Sandbox, **kwargs: Any) -> ComputeManagementClient:
    return ComputeManagementClient(
        AsyncStaticToken(),
        SUB_A,
        base_url=sandbox.base_url,
        connection_verify=str(sandbox.ca_path),
        polling_interval=0.01,
        **kwargs,
    )


def one_vm(**fields: Any) -> Estate:
    return Estate([vm_row("vm-1", **fields)], [], [])


def hotpatch_only(reboot: str = "IfRequired") -> VirtualMachineInstallPatchesParameters:
    return VirtualMachineInstallPatchesParameters(
        reboot_setting=reboot,
        maximum_duration="PT2H",
        windows_parameters=WindowsParameters(classifications_to_include=["Critical", "Security"]),
    )


def graph_rows(sandbox: Sandbox, query: str) -> list[dict[str, Any]]:
    with ResourceGraphClient(
        StaticToken(), base_url=sandbox.base_url, connection_verify=str(sandbox.ca_path)
    ) as client:
        data: list[dict[str, Any]] = client.resources(QueryRequest(query=query)).data
        return data


def os_version(sandbox: Sandbox) -> str:
    rows = graph_rows(
        sandbox, "Resources | project v = tostring(properties.extended.instanceView.osVersion)"
    )
    return str(rows[0]["v"])


def latest_assessment(sandbox: Sandbox) -> dict[str, Any]:
    rows = graph_rows(
        sandbox,
        "patchassessmentresources "
        "| where type =~ 'microsoft.compute/virtualmachines/patchassessmentresults' "
        "| project properties",
    )
    assert len(rows) == 1
    properties: dict[str, Any] = rows[0]["properties"]
    return properties


async def test_an_assessment_runs_to_completion_and_finds_the_months_hotpatch(
    start: Start,
) -> None:
    sandbox = start(one_vm(os_version=ON_JANUARY_BASELINE))
    async with compute_client(sandbox) as client:
        poller = await client.virtual_machines.begin_assess_patches(GROUP, "vm-1")
        result = await poller.result()
    assert result.status == "Succeeded"
    assert result.critical_and_security_patch_count == 1
    patch = result.available_patches[0]
    assert (patch.kb_id, patch.reboot_behavior) == ("5075943", "NeverReboots")
    summary = latest_assessment(sandbox)
    assert summary["availablePatchCountByClassification"]["security"] == 1
    assert summary["rebootPending"] is False


async def test_installing_the_hotpatch_moves_the_build_without_a_restart(
    start: Start,
) -> None:
    sandbox = start(one_vm(os_version=ON_JANUARY_BASELINE))
    async with compute_client(sandbox) as client:
        poller = await client.virtual_machines.begin_install_patches(GROUP, "vm-1", hotpatch_only())
        result = await poller.result()
    assert (result.status, result.installed_patch_count, result.reboot_status) == (
        "Succeeded",
        1,
        "NotNeeded",
    )
    assert os_version(sandbox) == "10.0.20348.4711"
    installations = graph_rows(
        sandbox,
        "patchinstallationresources "
        "| where type =~ 'microsoft.compute/virtualmachines/patchinstallationresults' "
        "| project status = tostring(properties.status), installed = "
        "toint(properties.installedPatchCount)",
    )
    assert installations == [{"status": "Succeeded", "installed": 1}]
    assert latest_assessment(sandbox)["availablePatchCountByClassification"]["security"] == 0


async def test_a_baseline_installed_without_a_restart_leaves_the_machine_pending_a_reboot(
    start: Start, clock: ManualClock
) -> None:
    clock.now_at = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)  # January: a baseline month
    sandbox = start(one_vm(os_version=DECEMBER_HOTPATCH))
    async with compute_client(sandbox) as client:
        never = await client.virtual_machines.begin_install_patches(
            GROUP, "vm-1", hotpatch_only(reboot="Never")
        )
        pending = await never.result()
        assert pending.reboot_status == "Required"
        assert os_version(sandbox) == DECEMBER_HOTPATCH
        assert latest_assessment(sandbox)["rebootPending"] is True

        restart = await client.virtual_machines.begin_install_patches(
            GROUP, "vm-1", hotpatch_only(reboot="IfRequired")
        )
        restarted = await restart.result()
    assert restarted.reboot_status == "Completed"
    assert os_version(sandbox) == ON_JANUARY_BASELINE
    assert latest_assessment(sandbox)["rebootPending"] is False


async def test_a_reboot_pending_in_the_loaded_data_is_completed_by_the_next_install(
    start: Start,
) -> None:
    vm = vm_row("vm-1", os_version="10.0.20348.4711")
    latest = {
        # Spelled in lower case, as some exports do: it is still the machine's latest row.
        "id": vm["id"].lower() + "/patchassessmentresults/latest",
        "name": "latest",
        "type": "microsoft.compute/virtualmachines/patchassessmentresults",
        "subscriptionId": SUB_A,
        "properties": {"status": "Succeeded", "rebootPending": True},
    }
    sandbox = start(Estate([vm], [latest], []))
    async with compute_client(sandbox) as client:
        assessed = await (
            await client.virtual_machines.begin_assess_patches(GROUP, "vm-1")
        ).result()
        installed = await (
            await client.virtual_machines.begin_install_patches(GROUP, "vm-1", hotpatch_only())
        ).result()
    assert assessed.reboot_pending is True
    assert (installed.installed_patch_count, installed.reboot_status) == (0, "Completed")
    assert latest_assessment(sandbox)["rebootPending"] is False


async def test_an_excluded_kb_is_not_installed(start: Start) -> None:
    sandbox = start(one_vm(os_version=ON_JANUARY_BASELINE))
    parameters = VirtualMachineInstallPatchesParameters(
        reboot_setting="IfRequired",
        windows_parameters=WindowsParameters(
            classifications_to_include=["Security"], kb_numbers_to_exclude=["KB5075943"]
        ),
    )
    async with compute_client(sandbox) as client:
        poller = await client.virtual_machines.begin_install_patches(GROUP, "vm-1", parameters)
        result = await poller.result()
    assert (result.installed_patch_count, result.excluded_patch_count) == (0, 1)
    assert os_version(sandbox) == ON_JANUARY_BASELINE


async def test_an_unknown_machine_is_answered_404(start: Start) -> None:
    sandbox = start(one_vm())
    async with compute_client(sandbox) as client:
        with pytest.raises(ResourceNotFoundError) as missing:
            await client.virtual_machines.begin_assess_patches(GROUP, "no-such-vm")
    assert missing.value.error is not None
    assert missing.value.error.code == "ResourceNotFound"


async def test_a_second_operation_on_a_busy_machine_is_answered_409(
    start: Start, clock: ManualClock
) -> None:
    clock.freeze()  # the first operation cannot finish until the clock moves
    sandbox = start(one_vm(), operation_latency_seconds=5.0)
    async with compute_client(sandbox) as client:
        running = await client.virtual_machines.begin_assess_patches(GROUP, "vm-1")
        with pytest.raises(ResourceExistsError) as conflict:
            await client.virtual_machines.begin_install_patches(GROUP, "vm-1", hotpatch_only())
        clock.advance(5.0)
        finished = await running.result()
    assert conflict.value.status_code == 409
    assert conflict.value.error is not None
    assert conflict.value.error.code == "OperationNotAllowed"
    assert finished.status == "Succeeded"


async def test_a_deallocated_machine_cannot_be_assessed(start: Start) -> None:
    sandbox = start(one_vm(power="PowerState/deallocated"))
    async with compute_client(sandbox) as client:
        with pytest.raises(ResourceExistsError) as refused:
            await client.virtual_machines.begin_assess_patches(GROUP, "vm-1")
    assert "deallocated" in str(refused.value)


async def test_writes_over_the_subscription_quota_get_429_with_retry_after(
    start: Start, clock: ManualClock
) -> None:
    clock.freeze()
    estate = Estate([vm_row(f"vm-{i}") for i in range(3)], [], [])
    sandbox = start(estate, write_quota=Quota(2, 30.0), operation_latency_seconds=0.0)
    async with compute_client(sandbox, retry_total=0) as client:
        await client.virtual_machines.begin_assess_patches(GROUP, "vm-0")
        await client.virtual_machines.begin_assess_patches(GROUP, "vm-1")
        with pytest.raises(HttpResponseError) as throttled:
            await client.virtual_machines.begin_assess_patches(GROUP, "vm-2")
    assert throttled.value.status_code == 429
    assert throttled.value.response.headers["Retry-After"] == "30"
    assert sandbox.counters().throttled == 1


async def test_an_install_body_the_api_would_refuse_is_answered_400(start: Start) -> None:
    sandbox = start(one_vm())
    async with compute_client(sandbox) as client:
        with pytest.raises(HttpResponseError) as refused:
            await client.virtual_machines.begin_install_patches(
                GROUP, "vm-1", {"rebootSetting": "Sometimes"}
            )
    assert refused.value.status_code == 400


def test_paths_match_whatever_their_case(start: Start) -> None:
    sandbox = start(one_vm(), operation_latency_seconds=0.0)
    path = (
        f"/SUBSCRIPTIONS/{SUB_A.upper()}/RESOURCEGROUPS/RG-HOTPATCH/PROVIDERS/"
        "MICROSOFT.COMPUTE/VIRTUALMACHINES/VM-1/ASSESSPATCHES"
    )
    started = requests.post(
        f"{sandbox.base_url}{path}?api-version=2024-07-01",
        headers={"Authorization": "Bearer t"},
        verify=str(sandbox.ca_path),
        timeout=30,
    )
    assert started.status_code == 202
    finished = requests.get(
        started.headers["Location"],
        headers={"Authorization": "Bearer t"},
        verify=str(sandbox.ca_path),
        timeout=30,
    )
    assert finished.status_code == 200
    assert finished.json()["status"] == "Succeeded"


def test_an_api_version_compute_does_not_have_is_refused(start: Start) -> None:
    sandbox = start(one_vm())
    answer = requests.post(
        f"{sandbox.base_url}/subscriptions/{SUB_A}/resourceGroups/{GROUP}/providers/"
        "Microsoft.Compute/virtualMachines/vm-1/assessPatches?api-version=2027-01-01",
        headers={"Authorization": "Bearer t"},
        verify=str(sandbox.ca_path),
        timeout=30,
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "InvalidApiVersionParameter"


def test_an_arc_machine_takes_its_hotpatch_through_hybrid_compute(start: Start) -> None:
    sandbox = start(Estate([arc_row("arc-1")], [], []), operation_latency_seconds=0.0)
    started = requests.post(
        f"{sandbox.base_url}/subscriptions/{SUB_A}/resourceGroups/rg-arc/providers/"
        "Microsoft.HybridCompute/machines/arc-1/installPatches?api-version=2024-07-10",
        json={
            "rebootSetting": "IfRequired",
            "windowsParameters": {"classificationsToInclude": ["Security"]},
        },
        headers={"Authorization": "Bearer t"},
        verify=str(sandbox.ca_path),
        timeout=30,
    )
    assert "/providers/Microsoft.HybridCompute/locations/" in started.headers["Location"]
    finished = requests.get(
        started.headers["Location"],
        headers={"Authorization": "Bearer t"},
        verify=str(sandbox.ca_path),
        timeout=30,
    ).json()
    assert (finished["installedPatchCount"], finished["rebootStatus"]) == (1, "NotNeeded")
    rows = graph_rows(sandbox, "Resources | project v = tostring(properties.osVersion)")
    assert rows == [{"v": "10.0.26100.32313"}]


#: The properties of Hybrid Compute's `MachineAssessPatchesResult` and
#: `MachineInstallPatchesResult` (azure-rest-api-specs, specification/hybridcompute/
#: resource-manager/Microsoft.HybridCompute/stable/2024-07-10): counts, no patch lists, and the
#: error under `errorDetails`.
HYBRID_RESULT = {"status", "startDateTime", "lastModifiedDateTime", "startedBy", "osType"}
HYBRID_ASSESS_RESULT = HYBRID_RESULT | {
    "assessmentActivityId",
    "rebootPending",
    "availablePatchCountByClassification",
    "patchServiceUsed",
    "errorDetails",
}
HYBRID_INSTALL_RESULT = HYBRID_RESULT | {
    "installationActivityId",
    "rebootStatus",
    "maintenanceWindowExceeded",
    "excludedPatchCount",
    "notSelectedPatchCount",
    "pendingPatchCount",
    "installedPatchCount",
    "failedPatchCount",
    "patchServiceUsed",
    "errorDetails",
}


def arc_result(sandbox: Sandbox, action: str, body: dict[str, Any] | None = None) -> Any:
    started = requests.post(
        f"{sandbox.base_url}/subscriptions/{SUB_A}/resourceGroups/rg-arc/providers/"
        f"Microsoft.HybridCompute/machines/arc-1/{action}?api-version=2024-07-10",
        json=body,
        headers={"Authorization": "Bearer t"},
        verify=str(sandbox.ca_path),
        timeout=30,
    )
    assert started.status_code == 202
    return requests.get(
        started.headers["Location"],
        headers={"Authorization": "Bearer t"},
        verify=str(sandbox.ca_path),
        timeout=30,
    ).json()


def test_an_arc_machines_results_are_in_hybrid_computes_shapes_and_its_sdk_reads_them(
    start: Start,
) -> None:
    sandbox = start(
        Estate([arc_row("arc-1", os_version="10.0.26100.32230")], [], []),
        operation_latency_seconds=0.0,
    )
    assessed = arc_result(sandbox, "assessPatches")
    installed = arc_result(
        sandbox,
        "installPatches",
        {"rebootSetting": "Never", "windowsParameters": {"classificationsToInclude": ["Security"]}},
    )
    assert HYBRID_RESULT <= set(assessed) <= HYBRID_ASSESS_RESULT
    assert HYBRID_RESULT <= set(installed) <= HYBRID_INSTALL_RESULT
    assessment = MachineAssessPatchesResult(assessed)
    installation = MachineInstallPatchesResult(installed)
    assert assessment.available_patch_count_by_classification is not None
    assert assessment.available_patch_count_by_classification.security == 1
    assert (installation.installed_patch_count, installation.reboot_status) == (1, "NotNeeded")
    assert installation.installation_activity_id != assessment.assessment_activity_id
