"""One table of resource types: the parser reads exactly the types it declares."""

from __future__ import annotations

import pytest

from hotpatch.core import inventory
from hotpatch.core.models import MachineKind
from hotpatch.core.resource_types import (
    ASSESSMENT_TYPES,
    INSTALLATION_TYPES,
    MACHINE_TYPES,
    TABLES,
    machine_id_of,
    table_of,
)

VM = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"


def test_the_parser_has_a_model_for_every_declared_type_and_no_other() -> None:
    declared = set(MACHINE_TYPES) | set(ASSESSMENT_TYPES) | set(INSTALLATION_TYPES)
    assert set(inventory._MODELS) == declared


@pytest.mark.parametrize(
    ("resource_type", "table"),
    [
        ("microsoft.compute/virtualmachines", "resources"),
        ("Microsoft.HybridCompute/machines", "resources"),
        ("microsoft.compute/virtualmachinescalesets", "resources"),
        ("microsoft.compute/virtualmachinescalesets/virtualmachines", "computeresources"),
        ("microsoft.compute/virtualmachines/patchassessmentresults", "patchassessmentresources"),
        (
            "microsoft.hybridcompute/machines/patchassessmentresults/softwarepatches",
            "patchassessmentresources",
        ),
        (
            "microsoft.compute/virtualmachines/patchinstallationresults",
            "patchinstallationresources",
        ),
        ("microsoft.storage/storageaccounts", None),
    ],
)
def test_each_type_lives_in_the_table_azure_keeps_it_in(
    resource_type: str, table: str | None
) -> None:
    assert table_of(resource_type) == table


def test_every_type_is_in_exactly_one_table() -> None:
    listed = [t for types in TABLES.values() for t in types]
    assert len(listed) == len(set(listed))


def test_uniform_instances_are_judged_as_vms_but_never_patched_one_by_one() -> None:
    instance = MACHINE_TYPES["microsoft.compute/virtualmachinescalesets/virtualmachines"]
    assert (instance.kind, instance.patchable) == (MachineKind.VM, False)


@pytest.mark.parametrize(
    ("row_id", "machine"),
    [
        (f"{VM}/patchAssessmentResults/latest", VM.casefold()),
        (f"{VM}/patchAssessmentResults/latest/softwarePatches/abc", VM.casefold()),
        (f"{VM}/patchInstallationResults/0b1c", VM.casefold()),
        (VM, None),
        # A VM may itself be named like the segment: the last one is the patch row's.
        (
            f"{VM[:-3]}patchAssessmentResults/patchAssessmentResults/latest",
            f"{VM[:-3]}patchAssessmentResults".casefold(),
        ),
        ("/patchAssessmentResults/latest", None),
    ],
)
def test_a_patch_rows_id_gives_its_machines_id(row_id: str, machine: str | None) -> None:
    assert machine_id_of(row_id) == machine
