"""The sandbox answers in the shapes of Azure's REST API specs (../shared/azure-specs)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from hotpatch.sandbox.estate import Estate
from hotpatch.sandbox.server import Sandbox
from tests.integration.conftest import SUB_A, numbered_vms, spec_validator, vm_row

pytestmark = [pytest.mark.sandbox, pytest.mark.specs]

Start = Callable[..., Sandbox]
BEARER = {"Authorization": "Bearer t"}
#: Untyped `type: object` schemas AutoRest (and Azure) read as "any JSON value".
QUERY_DATA = "QueryResponse/properties/data"
TABLE_CELL = "Row/items"
ERROR_EXTRAS = "ErrorDetails/additionalProperties"


def graph_spec(specs: Path) -> Path:
    return specs / "resourcegraph" / "resourcegraph.2024-04-01.json"


def patch_spec(specs: Path) -> Path:
    return specs / "compute" / "ComputeRP.2025-11-01.patch-definitions.json"


def query(sandbox: Sandbox, body: dict[str, Any]) -> requests.Response:
    return requests.post(
        f"{sandbox.base_url}/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01",
        json=body,
        headers=BEARER,
        verify=str(sandbox.ca_path),
        timeout=30,
    )


def run_operation(sandbox: Sandbox, action: str, body: dict[str, Any] | None) -> dict[str, Any]:
    started = requests.post(
        f"{sandbox.base_url}/subscriptions/{SUB_A}/resourceGroups/rg-hotpatch/providers/"
        f"Microsoft.Compute/virtualMachines/vm-1/{action}?api-version=2025-04-01",
        json=body,
        headers=BEARER,
        verify=str(sandbox.ca_path),
        timeout=30,
    )
    assert started.status_code == 202
    assert started.headers["Retry-After"].isdigit()
    finished = requests.get(
        started.headers["Location"], headers=BEARER, verify=str(sandbox.ca_path), timeout=30
    )
    assert finished.status_code == 200
    result: dict[str, Any] = finished.json()
    return result


def test_a_query_page_is_a_query_response(start_sandbox: Start, specs_dir: Path) -> None:
    sandbox = start_sandbox(numbered_vms(5), graph_quota=None)
    page = query(sandbox, {"query": "Resources | project id, tags", "options": {"$top": 2}})
    validator = spec_validator(graph_spec(specs_dir), "QueryResponse", (QUERY_DATA,))
    validator.validate(page.json())
    assert all(isinstance(row, dict) for row in page.json()["data"])


def test_a_table_page_carries_a_table(start_sandbox: Start, specs_dir: Path) -> None:
    sandbox = start_sandbox(numbered_vms(5), graph_quota=None)
    page = query(
        sandbox, {"query": "Resources | project id, tags", "options": {"resultFormat": "table"}}
    )
    spec = graph_spec(specs_dir)
    spec_validator(spec, "QueryResponse", (QUERY_DATA,)).validate(page.json())
    spec_validator(spec, "Table", (TABLE_CELL,)).validate(page.json()["data"])


def test_a_query_error_is_an_error_response(start_sandbox: Start, specs_dir: Path) -> None:
    sandbox = start_sandbox(numbered_vms(1))
    refused = query(sandbox, {"query": "Resources | where"})
    assert refused.status_code == 400
    spec_validator(graph_spec(specs_dir), "ErrorResponse", (ERROR_EXTRAS,)).validate(refused.json())


def test_an_assessment_result_is_a_virtual_machine_assess_patches_result(
    start_sandbox: Start, specs_dir: Path
) -> None:
    sandbox = start_sandbox(
        Estate([vm_row("vm-1", os_version="10.0.20348.4648")], [], []),
        operation_latency_seconds=0.0,
    )
    result = run_operation(sandbox, "assessPatches", None)
    spec_validator(patch_spec(specs_dir), "VirtualMachineAssessPatchesResult").validate(result)
    assert result["availablePatches"]


def test_an_installation_result_is_a_virtual_machine_install_patches_result(
    start_sandbox: Start, specs_dir: Path
) -> None:
    sandbox = start_sandbox(
        Estate([vm_row("vm-1", os_version="10.0.20348.4648")], [], []),
        operation_latency_seconds=0.0,
    )
    body = {
        "rebootSetting": "IfRequired",
        "maximumDuration": "PT2H",
        "windowsParameters": {"classificationsToInclude": ["Critical", "Security"]},
    }
    spec_validator(patch_spec(specs_dir), "VirtualMachineInstallPatchesParameters").validate(body)
    result = run_operation(sandbox, "installPatches", body)
    spec_validator(patch_spec(specs_dir), "VirtualMachineInstallPatchesResult").validate(result)
    assert result["patches"][0]["installationState"] == "Installed"


def test_the_validator_rejects_a_result_outside_the_spec(specs_dir: Path) -> None:
    validator = spec_validator(patch_spec(specs_dir), "VirtualMachineInstallPatchesResult")
    assert not validator.is_valid({"status": "Succeeded", "rebootStatus": "Maybe"})
    assert not validator.is_valid({"installedPatchCount": "three"})
