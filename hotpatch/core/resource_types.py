"""The Azure resource types the service reads, declared once: table, machine kind, patch rows.

Resource Graph keeps virtual machines, Arc machines and scale sets in `resources`, the instances
of Uniform scale sets in `computeresources`, and patch results in `patchassessmentresources` and
`patchinstallationresources`, as child types of the machine they belong to:
https://learn.microsoft.com/azure/governance/resource-graph/reference/supported-tables-resources
The parser, the inventory adapter and the estate generator read this table; the sandbox keeps its
own copy of the wire constants on purpose, as an independent check of it.
"""

from __future__ import annotations

from dataclasses import dataclass

from hotpatch.core.models import MachineKind

VIRTUAL_MACHINE = "microsoft.compute/virtualmachines"
SCALE_SET = "microsoft.compute/virtualmachinescalesets"
SCALE_SET_INSTANCE = "microsoft.compute/virtualmachinescalesets/virtualmachines"
ARC_MACHINE = "microsoft.hybridcompute/machines"

RESOURCES = "resources"
COMPUTE_RESOURCES = "computeresources"
PATCH_ASSESSMENTS = "patchassessmentresources"
PATCH_INSTALLATIONS = "patchinstallationresources"

#: Child type segments (lower case) and the id segment each row's id carries after the machine.
ASSESSMENT_RESULTS = "patchassessmentresults"
INSTALLATION_RESULTS = "patchinstallationresults"
SOFTWARE_PATCHES = "softwarepatches"


@dataclass(frozen=True, slots=True)
class MachineType:
    """One resource type the inventory reads, where Resource Graph keeps it, what it becomes."""

    type: str
    table: str
    kind: MachineKind
    #: Whether the type has patch results and takes assessPatches / installPatches.
    patchable: bool

    @property
    def assessment_type(self) -> str:
        return f"{self.type}/{ASSESSMENT_RESULTS}"

    @property
    def installation_type(self) -> str:
        return f"{self.type}/{INSTALLATION_RESULTS}"


MACHINE_TYPES: dict[str, MachineType] = {
    t.type: t
    for t in (
        MachineType(VIRTUAL_MACHINE, RESOURCES, MachineKind.VM, patchable=True),
        MachineType(ARC_MACHINE, RESOURCES, MachineKind.ARC, patchable=True),
        MachineType(SCALE_SET, RESOURCES, MachineKind.SCALE_SET, patchable=False),
        # Uniform instances are judged (not eligible) but are not patched one by one.
        MachineType(SCALE_SET_INSTANCE, COMPUTE_RESOURCES, MachineKind.VM, patchable=False),
    )
}
PATCHABLE: tuple[MachineType, ...] = tuple(t for t in MACHINE_TYPES.values() if t.patchable)
ASSESSMENT_TYPES: tuple[str, ...] = tuple(t.assessment_type for t in PATCHABLE)
INSTALLATION_TYPES: tuple[str, ...] = tuple(t.installation_type for t in PATCHABLE)

#: Every type the service reads, by the Resource Graph table that holds it.
TABLES: dict[str, tuple[str, ...]] = {
    RESOURCES: tuple(t.type for t in MACHINE_TYPES.values() if t.table == RESOURCES),
    COMPUTE_RESOURCES: tuple(
        t.type for t in MACHINE_TYPES.values() if t.table == COMPUTE_RESOURCES
    ),
    PATCH_ASSESSMENTS: (*ASSESSMENT_TYPES, *(f"{t}/{SOFTWARE_PATCHES}" for t in ASSESSMENT_TYPES)),
    PATCH_INSTALLATIONS: (
        *INSTALLATION_TYPES,
        *(f"{t}/{SOFTWARE_PATCHES}" for t in INSTALLATION_TYPES),
    ),
}


def table_of(resource_type: str) -> str | None:
    """The Resource Graph table that holds rows of this type (any case), None if none we read."""
    folded = resource_type.casefold()
    for table, types in TABLES.items():
        if folded in types:
            return table
    return None


def machine_id_of(patch_row_id: str) -> str | None:
    """`<machine id>/patchAssessmentResults/latest[/softwarePatches/x]` -> the machine's id,
    lower-cased (ids compare case-insensitively); None when the id is not a patch row's."""
    folded = patch_row_id.casefold()
    for segment in (ASSESSMENT_RESULTS, INSTALLATION_RESULTS):
        cut = folded.rfind(f"/{segment}/")
        if cut > 0:
            return folded[:cut]
    return None
