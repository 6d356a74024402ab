"""The sandbox's long-running patch operations: their life cycle and what they write back.

An operation is running from its start until `latency` has passed on the sandbox's monotonic
clock; the first request that arrives after that settles it: the outcome is decided (by the
pure functions in `patch_decisions`) as of the operation's start, the result body is stored for its
Location URL, and the Resource Graph tables are updated the way Azure updates them.
"""

from __future__ import annotations

import heapq
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from hotpatch.core.calendar import Calendar
from hotpatch.sandbox.arm import SandboxClock
from hotpatch.sandbox.graph import GraphStore, MachineFacts, WriteBatch
from hotpatch.sandbox.patch_decisions import (
    AssessmentOutcome,
    InstallationState,
    InstallOutcome,
    InstallRequest,
    MachineState,
    Patch,
    assess,
    decide_install,
    failed_install,
)


class PatchAction(StrEnum):
    ASSESS = "assessPatches"
    INSTALL = "installPatches"


class StartRefusal(StrEnum):
    NOT_FOUND = "not_found"
    BUSY = "busy"
    NOT_RUNNING = "not_running"


@dataclass(slots=True)
class Operation:
    id: str
    kind: PatchAction
    machine: MachineFacts
    provider: str
    api_version: str
    started_at: datetime
    due: float
    parameters: InstallRequest | None = None
    #: The final body for the Location URL; None while the operation runs.
    result: dict[str, Any] | None = None
    finished: float | None = None

    @property
    def location(self) -> str:
        return self.machine.location or "local"


@dataclass(frozen=True, slots=True)
class Started:
    operation: Operation | None
    refusal: StartRefusal | None = None
    detail: str = ""


class OperationTracker:
    """Starts, tracks and settles assess/install operations over a GraphStore."""

    def __init__(
        self,
        store: GraphStore,
        calendar: Calendar,
        clock: SandboxClock,
        latency_seconds: float,
        *,
        retention_seconds: float = 3600.0,
        failing_installs: frozenset[str] = frozenset(),
    ) -> None:
        self.store = store
        #: Machine ids (casefolded) whose installs fail: a rehearsal of a bad release.
        self.failing_installs = failing_installs
        self.calendar = calendar
        self.clock = clock
        self.latency_seconds = latency_seconds
        self.retention_seconds = retention_seconds
        self.operations: dict[str, Operation] = {}
        self.started = 0
        self.finished = 0
        self._running: dict[str, Operation] = {}
        #: (due time, operation id), earliest first.
        self._due: list[tuple[float, str]] = []
        #: (finish time, operation id), oldest first: results are kept `retention_seconds`.
        self._finished: deque[tuple[float, str]] = deque()
        #: Builds installed but waiting for a restart, by stored machine id. Azure keeps this
        #: inside the machine; the sandbox keeps it here.
        self._pending: dict[str, str | None] = {}

    def forget_machines(self) -> None:
        """Drop per-machine memory, e.g. after the tables were reloaded."""
        self._pending.clear()

    def start(
        self,
        kind: PatchAction,
        candidate_id: str,
        api_version: str,
        parameters: InstallRequest | None = None,
    ) -> Started:
        """Begin `kind` on the machine `candidate_id` names, or say why not."""
        self.settle_due()
        machine = self.store.machine(candidate_id)
        if machine is None:
            return Started(None, StartRefusal.NOT_FOUND)
        if machine.id in self._running:
            running = self._running[machine.id]
            return Started(None, StartRefusal.BUSY, running.kind.value)
        not_running = _not_running(machine)
        if not_running is not None:
            return Started(None, StartRefusal.NOT_RUNNING, not_running)
        operation = Operation(
            id=str(uuid.uuid4()),
            kind=kind,
            machine=machine,
            provider="Microsoft.HybridCompute" if machine.hybrid else "Microsoft.Compute",
            api_version=api_version,
            started_at=self.clock.now(),
            due=self.clock.monotonic() + self.latency_seconds,
            parameters=parameters,
        )
        self.operations[operation.id] = operation
        self._running[machine.id] = operation
        heapq.heappush(self._due, (operation.due, operation.id))
        self.started += 1
        if kind is PatchAction.INSTALL:
            # Azure lists an installation in Resource Graph while it runs (status InProgress):
            # that is how a caller that lost the operation's URL finds out it was accepted.
            batch = WriteBatch()
            batch.inserts["patchinstallationresources"] = [_installation_row(operation, None)]
            self.store.write(batch)
        return Started(operation)

    def get(self, operation_id: str) -> Operation | None:
        self.settle_due()
        return self.operations.get(operation_id)

    def seconds_left(self, operation: Operation) -> float:
        return max(0.0, operation.due - self.clock.monotonic())

    def settle_due(self) -> None:
        """Finish every operation whose time has come, oldest first, and forget old ones.

        The table changes of all of them go in one transaction: under load many operations
        come due between two requests.
        """
        now = self.clock.monotonic()
        batch = WriteBatch()
        while self._due and self._due[0][0] <= now:
            _, operation_id = heapq.heappop(self._due)
            operation = self.operations.get(operation_id)
            if operation is not None and operation.result is None:
                self._settle(operation, now, batch)
        self.store.write(batch)
        horizon = now - self.retention_seconds
        while self._finished and self._finished[0][0] < horizon:
            self.operations.pop(self._finished.popleft()[1], None)

    # -- settling ----------------------------------------------------------------------------

    def _settle(self, operation: Operation, now: float, batch: WriteBatch) -> None:
        machine = operation.machine
        state = self._machine_state(machine)
        finished_at = operation.started_at + timedelta(seconds=self.latency_seconds)
        if operation.kind is PatchAction.ASSESS:
            outcome = assess(state, self.calendar, operation.started_at)
            operation.result = assessment_result(operation, outcome, finished_at)
            self._write_assessment(operation, outcome, finished_at, batch)
        else:
            assert operation.parameters is not None
            installed = decide_install(
                state, operation.parameters, self.calendar, operation.started_at
            )
            if machine.id.casefold() in self.failing_installs:
                installed = failed_install(installed, state)
            operation.result = installation_result(operation, installed, finished_at)
            self._write_installation(operation, installed, finished_at, batch)
            after = installed.machine
            self._pending[machine.id] = after.pending_build
            if installed.new_os_version is not None:
                machine.os_version = installed.new_os_version
                batch.resource_patches.append((machine.id, _os_version_patch(machine)))
            # Azure assesses again after an install; the latest assessment shows what is left.
            remaining = assess(after, self.calendar, operation.started_at)
            self._write_assessment(operation, remaining, finished_at, batch)
        operation.finished = now
        self._finished.append((now, operation.id))
        self._running.pop(machine.id, None)
        self.finished += 1

    def _machine_state(self, machine: MachineFacts) -> MachineState:
        if machine.id in self._pending:
            pending = self._pending[machine.id]
        elif self.store.loaded_reboot_pending(machine) and machine.os_version:
            # The loaded data says a reboot pends without saying which build it brings: treat
            # it as a restart onto the build the machine already runs.
            pending = machine.os_version.removeprefix("10.0.")
        else:
            pending = None
        return MachineState(
            os_version=machine.os_version,
            os_type=machine.os_type or "Windows",
            hotpatch_enabled=machine.hotpatch_enabled,
            pending_build=pending,
        )

    def _write_assessment(
        self,
        operation: Operation,
        outcome: AssessmentOutcome,
        finished_at: datetime,
        batch: WriteBatch,
    ) -> None:
        machine = operation.machine
        base = machine.type
        latest_id = f"{machine.id}/patchAssessmentResults/latest"
        summary = _child_row(
            machine,
            latest_id,
            "latest",
            f"{base}/patchassessmentresults",
            {
                "status": "Succeeded",
                "rebootPending": outcome.reboot_pending,
                "osType": "Windows",
                "patchServiceUsed": "WU",
                "startedBy": "User",
                "assessmentActivityId": operation.id,
                "startDateTime": _iso(operation.started_at),
                "lastModifiedDateTime": _iso(finished_at),
                "availablePatchCountByClassification": _counts_by_classification(outcome),
            },
        )
        patches = [
            _child_row(
                machine,
                f"{latest_id}/softwarePatches/{patch.patch_id}",
                patch.patch_id,
                f"{base}/patchassessmentresults/softwarepatches",
                {
                    "patchName": patch.name,
                    "kbId": patch.kb_id,
                    "classifications": patch.classification_names(),
                    "rebootBehavior": patch.reboot_behavior.value,
                    "publishedDateTime": _iso(patch.published),
                    "msrcSeverity": "Important",
                    "patchAssessmentState": "Available",
                    "lastModifiedDateTime": _iso(finished_at),
                },
            )
            for patch in outcome.available
        ]
        table = "patchassessmentresources"
        new_rows = [summary, *patches]
        new_ids = [str(row["id"]) for row in new_rows]
        # Deletes run before inserts, so the new `latest` row may reuse the old one's id.
        batch.deletes.setdefault(table, []).extend(self.store.latest_assessment_ids(machine))
        batch.inserts.setdefault(table, []).extend(new_rows)
        self.store.remember_assessment(machine, new_ids)

    def _write_installation(
        self,
        operation: Operation,
        outcome: InstallOutcome,
        finished_at: datetime,
        batch: WriteBatch,
    ) -> None:
        machine = operation.machine
        base = machine.type
        summary = _installation_row(operation, (outcome, finished_at))
        row_id = summary["id"]
        # The row written as InProgress at the start is replaced by the final one.
        batch.deletes.setdefault("patchinstallationresources", []).append(row_id)
        patches = [
            _child_row(
                machine,
                f"{row_id}/softwarePatches/{patch.patch_id}",
                patch.patch_id,
                f"{base}/patchinstallationresults/softwarepatches",
                {
                    "patchName": patch.name,
                    "kbId": patch.kb_id,
                    "classifications": patch.classification_names(),
                    "installationState": state.value,
                    "lastModifiedDateTime": _iso(finished_at),
                },
            )
            for patch, state in outcome.patches
        ]
        # Installation history accumulates (Azure keeps 30 days): nothing is replaced.
        batch.inserts.setdefault("patchinstallationresources", []).extend([summary, *patches])


def assessment_result(
    operation: Operation, outcome: AssessmentOutcome, finished_at: datetime
) -> dict[str, Any]:
    """The result body of an assessment: a VM's `VirtualMachineAssessPatchesResult`, which lists
    the patches, or an Arc machine's `MachineAssessPatchesResult`, which only counts them."""
    if operation.machine.hybrid:
        return {
            "status": "Succeeded",
            "assessmentActivityId": operation.id,
            "rebootPending": outcome.reboot_pending,
            "availablePatchCountByClassification": _counts_by_classification(outcome),
            "startDateTime": _iso(operation.started_at),
            "lastModifiedDateTime": _iso(finished_at),
            "startedBy": "User",
            "patchServiceUsed": "WU",
            "osType": "Windows",
        }
    return {
        "status": "Succeeded",
        "assessmentActivityId": operation.id,
        "rebootPending": outcome.reboot_pending,
        "criticalAndSecurityPatchCount": outcome.critical_and_security_count,
        "otherPatchCount": outcome.other_count,
        "startDateTime": _iso(operation.started_at),
        "availablePatches": [
            {
                **_patch_body(patch),
                "rebootBehavior": patch.reboot_behavior.value,
                "activityId": operation.id,
                "publishedDate": _iso(patch.published),
                "lastModifiedDateTime": _iso(operation.started_at),
                "assessmentState": "Available",
            }
            for patch in outcome.available
        ],
    }


def installation_result(
    operation: Operation, outcome: InstallOutcome, finished_at: datetime
) -> dict[str, Any]:
    """The result body of an install: a VM's `VirtualMachineInstallPatchesResult`, which lists
    the patches with their `installationState`, or an Arc machine's
    `MachineInstallPatchesResult`, which only counts them (Arc's patch list is in Resource
    Graph's `patchinstallationresources`)."""
    counts = {
        "status": _install_status(outcome),
        "installationActivityId": operation.id,
        "rebootStatus": outcome.reboot_status.value,
        "maintenanceWindowExceeded": False,
        "excludedPatchCount": outcome.count(InstallationState.EXCLUDED),
        "notSelectedPatchCount": outcome.count(InstallationState.NOT_SELECTED),
        "pendingPatchCount": 0,
        "installedPatchCount": outcome.count(InstallationState.INSTALLED),
        "failedPatchCount": outcome.count(InstallationState.FAILED),
        "startDateTime": _iso(operation.started_at),
    }
    if operation.machine.hybrid:
        return {
            **counts,
            "lastModifiedDateTime": _iso(finished_at),
            "startedBy": "User",
            "patchServiceUsed": "WU",
            "osType": "Windows",
        }
    return {
        **counts,
        "patches": [
            {**_patch_body(patch), "installationState": state.value}
            for patch, state in outcome.patches
        ],
    }


def _counts_by_classification(outcome: AssessmentOutcome) -> dict[str, int]:
    """`availablePatchCountByClassification`, as Resource Graph and Hybrid Compute spell it."""
    counts = {
        key: 0
        for key in (
            "critical",
            "security",
            "updateRollup",
            "featurePack",
            "servicePack",
            "definition",
            "tools",
            "updates",
            "other",
        )
    }
    for patch in outcome.available:
        key = patch.classification[0].lower() + patch.classification[1:]
        key = "updateRollup" if key == "updateRollUp" else key
        counts[key if key in counts else "other"] += 1
    return counts


def _patch_body(patch: Patch) -> dict[str, Any]:
    return {
        "patchId": patch.patch_id,
        "name": patch.name,
        "version": "",
        "kbId": patch.kb_id,
        "classifications": patch.classification_names(),
    }


def _installation_row(
    operation: Operation, finished: tuple[InstallOutcome, datetime] | None
) -> dict[str, Any]:
    """The `patchinstallationresults` summary row: InProgress while the install runs."""
    machine = operation.machine
    row_id = f"{machine.id}/patchInstallationResults/{operation.id}"
    properties: dict[str, Any] = {
        "status": "InProgress",
        "maintenanceWindowExceeded": False,
        "osType": "Windows",
        "startedBy": "User",
        "installationActivityId": operation.id,
        "startDateTime": _iso(operation.started_at),
        "lastModifiedDateTime": _iso(operation.started_at),
    }
    if finished is not None:
        outcome, finished_at = finished
        properties.update(
            status=_install_status(outcome),
            rebootStatus=outcome.reboot_status.value,
            installedPatchCount=outcome.count(InstallationState.INSTALLED),
            failedPatchCount=outcome.count(InstallationState.FAILED),
            pendingPatchCount=0,
            excludedPatchCount=outcome.count(InstallationState.EXCLUDED),
            notSelectedPatchCount=outcome.count(InstallationState.NOT_SELECTED),
            lastModifiedDateTime=_iso(finished_at),
        )
    return _child_row(
        machine, row_id, operation.id, f"{machine.type}/patchinstallationresults", properties
    )


def _install_status(outcome: InstallOutcome) -> str:
    return "Failed" if outcome.count(InstallationState.FAILED) else "Succeeded"


def _child_row(
    machine: MachineFacts, row_id: str, name: str, kind: str, properties: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": row_id,
        "name": name,
        "type": kind,
        "tenantId": machine.tenant_id,
        "kind": "",
        "location": machine.location,
        "resourceGroup": machine.resource_group,
        "subscriptionId": machine.subscription_id,
        "managedBy": "",
        "sku": None,
        "plan": None,
        "properties": properties,
        "tags": None,
        "identity": None,
        "zones": None,
        "extendedLocation": None,
    }


def _os_version_patch(machine: MachineFacts) -> dict[str, Any]:
    if machine.hybrid:
        return {"osVersion": machine.os_version}
    return {"extended": {"instanceView": {"osVersion": machine.os_version}}}


def _not_running(machine: MachineFacts) -> str | None:
    """Why the machine cannot run a patch operation now, if it cannot."""
    if machine.hybrid:
        status = machine.arc_status
        if status is not None and status.lower() != "connected":
            return f"the machine is {status}"
        return None
    code = machine.power_state
    if code is not None and code.lower() != "powerstate/running":
        return "the VM is " + code.split("/", 1)[-1]
    return None


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
