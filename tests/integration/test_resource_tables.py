"""Each resource type lives in the Resource Graph table where Azure keeps it, in the sandbox too.

Uniform scale set instances are in `computeresources`; VMs (Flexible members included), Arc
machines and scale sets are in `resources`.
https://learn.microsoft.com/azure/governance/resource-graph/reference/supported-tables-resources
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from hotpatch.azure.resource_graph import export_rows, inventory_query
from hotpatch.core.inventory import parse_rows
from hotpatch.core.models import Machine
from hotpatch.data import shipped_release_catalog
from hotpatch.sandbox.estate import EstateSpec, generate_estate, split_rows
from hotpatch.sandbox.graph import TABLES, GraphStore

SUBSCRIPTION = "33333333-3333-3333-3333-333333333333"
GROUP = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg-tables/providers"
VM = "microsoft.compute/virtualmachines"
ARC = "microsoft.hybridcompute/machines"
SCALE_SET = "microsoft.compute/virtualmachinescalesets"
UNIFORM_INSTANCE = "microsoft.compute/virtualmachinescalesets/virtualmachines"

#: The table Resource Graph keeps each machine type the inventory query reads in.
TABLE_OF_TYPE: dict[str, str] = {
    VM: "resources",
    ARC: "resources",
    SCALE_SET: "resources",
    UNIFORM_INSTANCE: "computeresources",
}
ID_OF_TYPE: dict[str, str] = {
    VM: f"{GROUP}/Microsoft.Compute/virtualMachines/vm-1",
    ARC: f"{GROUP}/Microsoft.HybridCompute/machines/arc-1",
    SCALE_SET: f"{GROUP}/Microsoft.Compute/virtualMachineScaleSets/vmss-1",
    UNIFORM_INSTANCE: f"{GROUP}/Microsoft.Compute/virtualMachineScaleSets/vmss-1/virtualMachines/0",
}
PROPERTIES_OF_TYPE: dict[str, dict[str, Any]] = {
    VM: {
        "storageProfile": {
            "imageReference": {
                "publisher": "MicrosoftWindowsServer",
                "offer": "WindowsServer",
                "sku": "2025-datacenter-azure-edition",
            },
            "osDisk": {"osType": "Windows"},
        }
    },
    ARC: {"status": "Connected", "osType": "windows", "osVersion": "10.0.26100.32772"},
    SCALE_SET: {"orchestrationMode": "Uniform"},
    UNIFORM_INSTANCE: {
        "latestModelApplied": True,
        "storageProfile": {
            "imageReference": {
                "publisher": "MicrosoftWindowsServer",
                "offer": "WindowsServer",
                "sku": "2025-datacenter-azure-edition",
            },
            "osDisk": {"osType": "Windows"},
        },
    },
}


def row(kind: str, row_id: str | None = None) -> dict[str, Any]:
    """A row with every column of its table, as Resource Graph returns it."""
    name = (row_id or ID_OF_TYPE[kind]).rsplit("/", 1)[-1]
    return {
        "id": row_id or ID_OF_TYPE[kind],
        "name": name,
        "type": kind,
        "tenantId": "44444444-4444-4444-4444-444444444444",
        "kind": "",
        "location": "westeurope",
        "resourceGroup": "rg-tables",
        "subscriptionId": SUBSCRIPTION,
        "managedBy": "",
        "sku": None,
        "plan": None,
        "properties": PROPERTIES_OF_TYPE[kind],
        "tags": {},
        "identity": None,
        "zones": None,
        "extendedLocation": None,
    }


class _Tables:
    """A row source with rows put in whichever tables a test names."""

    def __init__(self, placed: dict[str, list[dict[str, Any]]]) -> None:
        self.resources = placed.get("resources", [])
        self.computeresources = placed.get("computeresources", [])
        self.patchassessmentresources = placed.get("patchassessmentresources", [])
        self.patchinstallationresources = placed.get("patchinstallationresources", [])


@pytest.fixture
def store() -> Iterator[GraphStore]:
    graph = GraphStore()
    yield graph
    graph.close()


def ids_of(result_rows: list[str]) -> list[str]:
    return [json.loads(text)["id"] for text in result_rows]


@pytest.mark.parametrize(("kind", "table"), sorted(TABLE_OF_TYPE.items()))
def test_the_inventory_query_reads_each_type_from_its_own_table(
    store: GraphStore, kind: str, table: str
) -> None:
    wrong = next(t for t in ("resources", "computeresources") if t != table)
    misplaced = row(kind, ID_OF_TYPE[kind] + "-misplaced")
    store.load(_Tables({table: [row(kind)], wrong: [misplaced]}))
    found = ids_of(store.query(inventory_query(), [SUBSCRIPTION], table_format=False).rows)
    assert found == [ID_OF_TYPE[kind]]


@pytest.mark.parametrize(("kind", "table"), sorted(TABLE_OF_TYPE.items()))
def test_the_sandbox_answers_a_type_only_from_the_table_azure_keeps_it_in(
    store: GraphStore, kind: str, table: str
) -> None:
    # Loaded as from a raw export: the rows are routed to their tables by type.
    store.load(split_rows([row(k) for k in TABLE_OF_TYPE]))
    for queried in TABLES:
        found = ids_of(
            store.query(
                f"{queried} | where type =~ '{kind}' | project id",
                [SUBSCRIPTION],
                table_format=False,
            ).rows
        )
        assert found == ([ID_OF_TYPE[kind]] if queried == table else []), queried


def test_a_raw_export_routes_uniform_instances_and_their_children_to_computeresources() -> None:
    nic = {"id": ID_OF_TYPE[UNIFORM_INSTANCE] + "/networkInterfaces/nic", "type": UNIFORM_INSTANCE}
    nic["type"] += "/networkinterfaces"
    estate = split_rows([row(VM), row(UNIFORM_INSTANCE), nic, row(SCALE_SET)])
    assert [r["id"] for r in estate.computeresources] == [ID_OF_TYPE[UNIFORM_INSTANCE], nic["id"]]
    assert [r["type"] for r in estate.resources] == [VM, SCALE_SET]


def test_a_swept_uniform_instance_comes_back_as_its_own_type_without_patch_rows(
    store: GraphStore,
) -> None:
    store.load(split_rows([row(k) for k in TABLE_OF_TYPE]))
    joined = [
        json.loads(text)
        for text in store.query(inventory_query(), [SUBSCRIPTION], table_format=False).rows
    ]
    by_type = {found["type"]: found for found in joined}
    assert set(by_type) == set(TABLE_OF_TYPE)
    rows = export_rows(by_type[UNIFORM_INSTANCE])
    assert [r["type"] for r in rows] == [UNIFORM_INSTANCE]
    assert rows[0]["kind"] == ""


def test_the_raw_export_accepts_rows_from_every_table_the_query_reads() -> None:
    parsed = parse_rows([row(k) for k in TABLE_OF_TYPE])
    assert all(isinstance(machine, Machine) for machine in parsed.machines)
    assert {machine.id for machine in parsed.machines} == {
        ID_OF_TYPE[k].casefold() for k in TABLE_OF_TYPE
    }


def test_a_generated_estate_keeps_uniform_instances_in_computeresources_only() -> None:
    estate = generate_estate(
        EstateSpec(machines=3000, as_of=datetime(2026, 5, 20, 12, tzinfo=UTC)),
        shipped_release_catalog(),
    )
    assert estate.computeresources
    assert {r["type"] for r in estate.computeresources} == {UNIFORM_INSTANCE}
    assert UNIFORM_INSTANCE not in {r["type"] for r in estate.resources}
    assert split_rows(estate.rows()) == estate
