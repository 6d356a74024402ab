"""The plain ARM reads other tools use, answered from the same estate.

The real azure-mgmt-compute client lists VMs by subscription and resource group (following
`nextLink`) and gets one, with and without `$expand=instanceView`; bodies are checked against
the shapes of Microsoft's examples in ../shared/azure-specs with JSON Schema. Arc machines
(`Microsoft.HybridCompute/machines`) answer the same routes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.compute import ComputeManagementClient

from hotpatch.azure.credentials import StaticTokenCredential
from hotpatch.sandbox.estate import Estate
from hotpatch.sandbox.server import Sandbox
from tests.integration.conftest import SUB_A, SUB_B, arc_row, vm_row

pytestmark = pytest.mark.sandbox

Start = Callable[..., Sandbox]
BEARER = {"Authorization": "Bearer t"}
HYBRID_VERSION = "2024-07-10"
#: Resource Graph's own column and property, which ARM's body does not carry.
GRAPH_ONLY = ("subscriptionId", "resourceGroup", "tenantId", "extended")


def estate() -> Estate:
    rows = [
        *(vm_row(f"web-{i}", SUB_A, "rg-web") for i in range(5)),
        *(vm_row(f"db-{i}", SUB_A, "rg-db", power="PowerState/deallocated") for i in range(2)),
        *(vm_row(f"other-{i}", SUB_B, "rg-web") for i in range(3)),
        *(arc_row(f"arc-{i}") for i in range(4)),
    ]
    return Estate(rows, [], [])


@pytest.fixture
def sandbox(start_sandbox: Start) -> Sandbox:
    return start_sandbox(estate(), graph_quota=None, page_size=2)


@pytest.fixture
def compute(sandbox: Sandbox) -> Iterator[ComputeManagementClient]:
    client = ComputeManagementClient(
        StaticTokenCredential(),
        SUB_A,
        base_url=sandbox.base_url,
        connection_verify=str(sandbox.ca_path),
        retry_total=0,
    )
    with client:
        yield client


def get(sandbox: Sandbox, path: str, **params: str) -> requests.Response:
    return requests.get(
        f"{sandbox.base_url}{path}",
        params=params,
        headers=BEARER,
        verify=str(sandbox.ca_path),
        timeout=30,
    )


def example_body(specs: Path, name: str) -> dict[str, Any]:
    document = json.loads((specs / "compute" / name).read_text(encoding="utf-8"))
    body: dict[str, Any] = document["responses"]["200"]["body"]
    return body


def shape_of(example: Any, closed: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON Schema of the example's shape: its keys, and each value's JSON type.

    The objects at the places named in `closed` ("" for the top) accept no other key.
    """

    def walk(value: Any, place: str) -> dict[str, Any]:
        if isinstance(value, dict):
            schema: dict[str, Any] = {
                "type": "object",
                "properties": {
                    key: walk(item, f"{place}/{key}".lstrip("/")) for key, item in value.items()
                },
            }
            if place in closed:
                schema["additionalProperties"] = False
            return schema
        if isinstance(value, list):
            return {"type": "array", "items": walk(value[0], place) if value else {}}
        if isinstance(value, bool):
            return {"type": "boolean"}
        if isinstance(value, (int, float)):
            return {"type": "number"}
        return {"type": "string"} if isinstance(value, str) else {}

    return walk(example, "")


def validate(body: Any, schema: dict[str, Any]) -> None:
    from jsonschema import Draft4Validator

    Draft4Validator(schema).validate(body)


# -- virtual machines, through the real SDK ---------------------------------------------------


def test_list_all_pages_through_every_vm_of_the_subscription(
    sandbox: Sandbox, compute: ComputeManagementClient
) -> None:
    names = sorted(vm.name for vm in compute.virtual_machines.list_all())
    assert names == sorted([*(f"web-{i}" for i in range(5)), "db-0", "db-1"])
    # Seven VMs at two a page: the client followed nextLink three times.
    assert sandbox.counters().requests["compute.read.list"] == 4


def test_list_gives_the_vms_of_one_resource_group(compute: ComputeManagementClient) -> None:
    assert sorted(vm.name for vm in compute.virtual_machines.list("rg-db")) == ["db-0", "db-1"]


def test_get_gives_one_vm_without_its_instance_view(compute: ComputeManagementClient) -> None:
    vm = compute.virtual_machines.get("rg-web", "web-3")
    assert vm.name == "web-3"
    assert vm.location == "westeurope"
    assert vm.type == "Microsoft.Compute/virtualMachines"
    assert vm.storage_profile.image_reference.sku == "2022-datacenter-azure-edition-core"
    assert vm.os_profile.windows_configuration.patch_settings.enable_hotpatching is True
    assert vm.instance_view is None


def test_get_with_instance_view_gives_the_power_state_and_os_version(
    compute: ComputeManagementClient,
) -> None:
    running = compute.virtual_machines.get("rg-web", "web-3", expand="instanceView")
    stopped = compute.virtual_machines.get("rg-db", "db-1", expand="instanceView")
    assert running.instance_view.os_version == "10.0.20348.4648"
    assert "PowerState/running" in [s.code for s in running.instance_view.statuses]
    assert "PowerState/deallocated" in [s.code for s in stopped.instance_view.statuses]


def test_a_vm_that_is_not_there_is_not_found(compute: ComputeManagementClient) -> None:
    with pytest.raises(ResourceNotFoundError):
        compute.virtual_machines.get("rg-web", "nowhere")


def test_an_unreadable_subscription_is_refused(start_sandbox: Start) -> None:
    sandbox = start_sandbox(estate(), graph_quota=None, subscriptions=frozenset({SUB_A}))
    client = ComputeManagementClient(
        StaticTokenCredential(),
        SUB_B,
        base_url=sandbox.base_url,
        connection_verify=str(sandbox.ca_path),
        retry_total=0,
    )
    with client, pytest.raises(HttpResponseError) as refused:
        list(client.virtual_machines.list_all())
    assert refused.value.status_code == 403


def test_the_reads_come_from_the_same_estate_as_resource_graph(
    sandbox: Sandbox, compute: ComputeManagementClient
) -> None:
    answer = requests.post(
        f"{sandbox.base_url}/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01",
        json={
            "query": "Resources | where type =~ 'microsoft.compute/virtualmachines' | project id",
            "subscriptions": [SUB_A],
            "options": {"$top": 1000},
        },
        headers=BEARER,
        verify=str(sandbox.ca_path),
        timeout=30,
    )
    graph_ids = {row["id"].lower() for row in answer.json()["data"]}
    arm_ids = {str(vm.id).lower() for vm in compute.virtual_machines.list_all()}
    assert arm_ids == graph_ids


# -- shapes -----------------------------------------------------------------------------------


@pytest.mark.specs
def test_a_vm_body_has_the_shape_of_microsofts_example(sandbox: Sandbox, specs_dir: Path) -> None:
    body = get(
        sandbox,
        f"/subscriptions/{SUB_A}/resourceGroups/rg-web/providers/Microsoft.Compute/"
        "virtualMachines/web-1",
        **{"api-version": "2025-04-01"},
    ).json()
    example = example_body(specs_dir, "VirtualMachine_Get.2025-11-01.json")
    validate(body, shape_of(example, closed=("", "properties")))
    assert not any(key in body or key in body["properties"] for key in GRAPH_ONLY)


@pytest.mark.specs
def test_an_instance_view_has_the_shape_of_microsofts_example(
    sandbox: Sandbox, specs_dir: Path
) -> None:
    body = get(
        sandbox,
        f"/subscriptions/{SUB_A}/resourceGroups/rg-web/providers/Microsoft.Compute/"
        "virtualMachines/web-1",
        **{"api-version": "2025-04-01", "$expand": "instanceView"},
    ).json()
    example = example_body(specs_dir, "VirtualMachine_Get_InstanceView.2025-04-01.json")
    validate(body["properties"]["instanceView"], shape_of(example, closed=("",)))


def test_a_list_page_carries_a_next_link_until_the_last(sandbox: Sandbox) -> None:
    path = f"/subscriptions/{SUB_A}/providers/Microsoft.Compute/virtualMachines"
    page = get(sandbox, path, **{"api-version": "2025-04-01"}).json()
    seen = 0
    while True:
        assert set(page) <= {"value", "nextLink"}
        seen += len(page["value"])
        if "nextLink" not in page:
            break
        page = requests.get(
            page["nextLink"], headers=BEARER, verify=str(sandbox.ca_path), timeout=30
        ).json()
    assert seen == 7


# -- Arc machines -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"/subscriptions/{SUB_A}/providers/Microsoft.HybridCompute/machines", 4),
        (
            f"/subscriptions/{SUB_A}/resourceGroups/rg-arc/providers/Microsoft.HybridCompute/machines",
            4,
        ),
        (
            f"/subscriptions/{SUB_A}/resourceGroups/rg-web/providers/Microsoft.HybridCompute/machines",
            0,
        ),
    ],
    ids=["by subscription", "by resource group", "an empty group"],
)
def test_arc_machines_are_listed_page_by_page(sandbox: Sandbox, path: str, expected: int) -> None:
    page = get(sandbox, path, **{"api-version": HYBRID_VERSION}).json()
    machines = list(page["value"])
    while "nextLink" in page:
        page = requests.get(
            page["nextLink"], headers=BEARER, verify=str(sandbox.ca_path), timeout=30
        ).json()
        machines.extend(page["value"])
    assert len(machines) == expected
    assert all(m["type"] == "Microsoft.HybridCompute/machines" for m in machines)


@pytest.mark.parametrize("expand", [None, "instanceView"])
def test_an_arc_machine_is_read_with_its_status_and_os(
    sandbox: Sandbox, expand: str | None
) -> None:
    params = {"api-version": HYBRID_VERSION, **({"$expand": expand} if expand else {})}
    answer = get(
        sandbox,
        f"/subscriptions/{SUB_A}/resourceGroups/rg-arc/providers/Microsoft.HybridCompute/"
        "machines/arc-2",
        **params,
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["name"] == "arc-2"
    assert body["properties"]["status"] == "Connected"
    assert body["properties"]["osVersion"] == "10.0.26100.32230"
    assert not any(key in body for key in GRAPH_ONLY)


def test_an_arc_machine_that_is_not_there_is_not_found(sandbox: Sandbox) -> None:
    answer = get(
        sandbox,
        f"/subscriptions/{SUB_A}/resourceGroups/rg-arc/providers/Microsoft.HybridCompute/"
        "machines/nowhere",
        **{"api-version": HYBRID_VERSION},
    )
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "ResourceNotFound"


def test_a_bad_skip_token_is_a_400_not_a_500(sandbox: Sandbox) -> None:
    answer = get(
        sandbox,
        f"/subscriptions/{SUB_A}/providers/Microsoft.Compute/virtualMachines",
        **{"api-version": "2025-04-01", "$skiptoken": "-1; drop"},
    )
    assert answer.status_code == 400
