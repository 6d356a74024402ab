"""The ports: the interfaces the use cases call, in domain words; no Azure SDK type crosses them.

`hotpatch.bootstrap` builds the real adapters behind them; `hotpatch.fakes` holds the fakes.
"""

from hotpatch.ports.inventory import (
    Inventory,
    InventoryPager,
    InventoryProgress,
    InventorySnapshot,
    InventoryStats,
    ProgressCallback,
    RawRow,
    Scope,
    read_inventory,
)
from hotpatch.ports.patch_operations import (
    Clock,
    InstallParameters,
    MachineRef,
    OperationKind,
    OperationOutcome,
    OutcomeCallback,
    OutcomeStatus,
    PatchOperations,
)
from hotpatch.ports.store import Store as Store  # the records: hotpatch.ports.store

__all__ = [
    "Clock",
    "InstallParameters",
    "Inventory",
    "InventoryPager",
    "InventoryProgress",
    "InventorySnapshot",
    "InventoryStats",
    "MachineRef",
    "OperationKind",
    "OperationOutcome",
    "OutcomeCallback",
    "OutcomeStatus",
    "PatchOperations",
    "ProgressCallback",
    "RawRow",
    "Scope",
    "read_inventory",
]
