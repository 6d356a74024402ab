"""The estate's rows: the Resource Graph tables, and the raw export file they are read from."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hotpatch.core.resource_types import (
    ARC_MACHINE,
    COMPUTE_RESOURCES,
    PATCH_ASSESSMENTS,
    PATCH_INSTALLATIONS,
    SCALE_SET,
    SCALE_SET_INSTANCE,
    VIRTUAL_MACHINE,
    table_of,
)
from hotpatch.errors import InputError
from hotpatch.export import json_kind, read_rows, write_rows

# Every type and the table Azure keeps it in are declared once, in hotpatch.core.resource_types
# (Uniform scale set instances live in `computeresources`, Flexible members in `resources`).


@dataclass
class Estate:
    """Resource Graph rows of the four tables the service queries."""

    resources: list[dict[str, Any]]
    patchassessmentresources: list[dict[str, Any]]
    patchinstallationresources: list[dict[str, Any]]
    #: Uniform scale set instances (last, so that three lists still make an estate).
    computeresources: list[dict[str, Any]] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """All rows, the tables concatenated: the content of a raw export file."""
        return [
            *self.resources,
            *self.computeresources,
            *self.patchassessmentresources,
            *self.patchinstallationresources,
        ]

    def machine_ids(self) -> list[str]:
        """Ids of the machine entries: VMs, Arc machines, Uniform scale sets and their instances.

        Flexible scale sets are left out: they are not machines, they only inform their members.
        """
        ids: list[str] = []
        for row in self.computeresources:
            row_id, kind = row.get("id"), row.get("type")
            if (
                isinstance(row_id, str)
                and isinstance(kind, str)
                and kind.lower() == SCALE_SET_INSTANCE
            ):
                ids.append(row_id)
        for row in self.resources:
            row_id, kind = row.get("id"), row.get("type")
            if not isinstance(row_id, str) or not isinstance(kind, str):
                continue
            kind = kind.lower()
            if kind in (VIRTUAL_MACHINE, ARC_MACHINE):
                ids.append(row_id)
            elif kind == SCALE_SET:
                properties = row.get("properties")
                mode = properties.get("orchestrationMode") if isinstance(properties, dict) else None
                if not isinstance(mode, str) or mode.lower() != "flexible":
                    ids.append(row_id)
        return ids


def split_rows(rows: Iterable[dict[str, Any]]) -> Estate:
    """Route each row of a raw export to its Resource Graph table by its `type`."""
    estate = Estate([], [], [])
    for row in rows:
        kind = row.get("type")
        lowered = kind.lower() if isinstance(kind, str) else ""
        table = table_of(lowered)
        if table == PATCH_ASSESSMENTS:
            estate.patchassessmentresources.append(row)
        elif table == PATCH_INSTALLATIONS:
            estate.patchinstallationresources.append(row)
        elif table == COMPUTE_RESOURCES or lowered.startswith(SCALE_SET_INSTANCE + "/"):
            estate.computeresources.append(row)
        else:
            estate.resources.append(row)
    return estate


def read_export(path: Path) -> Estate:
    """Read a raw export (see `hotpatch.export.read_rows`) into the sandbox's tables.

    Raises InputError with a one-line message naming the file when it cannot be used at all;
    odd fields inside rows are the parser's business, not this function's.
    """
    rows = read_rows(path)
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InputError(f"{path}: row {index} is {json_kind(row)}, expected an object")
    return split_rows(rows)


def write_export(estate: Estate, path: Path) -> None:
    """Write the estate as a raw export file (the REST response shape)."""
    write_rows(path, estate.rows())
