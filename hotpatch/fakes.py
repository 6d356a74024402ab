"""The fakes of the ports, together: an in-memory inventory and in-memory patch operations.

For unit tests of callers (and for trying the use cases without a sandbox). Each follows its
port's contract: the same contract tests run against the fake and against the real adapter.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeVar

from hotpatch.core.resource_types import machine_id_of
from hotpatch.ports.inventory import (
    InstallationRecord,
    InventoryPager,
    InventoryStats,
    RawRow,
    Scope,
    installation_records,
)
from hotpatch.ports.patch_operations import (
    Clock,
    InstallParameters,
    MachineRef,
    OperationKind,
    OperationOutcome,
    OutcomeCallback,
    OutcomeStatus,
    RebootStatus,
    distinct_machines,
    kb_name,
    notify,
    request_ids_for,
    resumable_only,
)
from hotpatch.store.memory import MemoryStore  # the store's fake lives with the store

__all__ = ["FakePatchOperations", "InMemoryInventory", "MemoryStore", "RecordedCall", "Scripted"]

_T = TypeVar("_T")
#: Resource Graph's page size, which the fake imitates by default.
PAGE_SIZE = 1000


class InMemoryInventory:
    """The inventory fake: raw export rows held in memory, scoped by subscription, paged by
    machine (a machine's rows never straddle two pages, as the port promises)."""

    def __init__(self, rows: Sequence[RawRow], page_size: int = PAGE_SIZE) -> None:
        self.rows = list(rows)
        self.page_size = page_size

    def list_machines(self, scope: Scope) -> InventoryPager:
        if scope.management_groups:
            raise ValueError("the in-memory inventory knows no management groups")
        return InventoryPager(lambda stats: self._pages(scope, stats))

    def _pages(self, scope: Scope, stats: InventoryStats) -> Iterator[list[RawRow]]:
        wanted = {s.casefold() for s in scope.subscriptions}
        machines: dict[str, list[RawRow]] = {}
        for row in self.rows:
            if wanted and str(row.get("subscriptionId", "")).casefold() not in wanted:
                continue
            machines.setdefault(_machine_key(row), []).append(row)
        groups = list(machines.values())
        stats.total_records = len(groups)
        for start in range(0, len(groups), self.page_size):
            page = [row for group in groups[start : start + self.page_size] for row in group]
            stats.pages += 1
            stats.requests += 1
            stats.rows += len(page)
            yield page

    def installations_since(self, scope: Scope, since: datetime) -> list[InstallationRecord]:
        rows = [row for page in self._pages(scope, InventoryStats()) for row in page]
        return installation_records(rows, since)


def _machine_key(row: RawRow) -> str:
    """The machine a raw row belongs to: its own id, or the id its patch row hangs under."""
    key = str(row.get("id", ""))
    return machine_id_of(key) or key.casefold()


@dataclass(frozen=True, slots=True)
class Scripted:
    """One scripted answer of the fake for one machine. Unset counts stay None.

    The fake gives a resume token where the real adapter keeps one: to a `TIMED_OUT` answer,
    and to a `THROTTLED` or `ERROR` answer that is `unfinished` (the operation was started and
    the run did not see it end: polling failed, or the run was cancelled, error code
    "Cancelled"). Resuming plays the machine's next scripted answer for the same operation (or
    a plain success).
    """

    status: OutcomeStatus = OutcomeStatus.SUCCEEDED
    error_code: str | None = None
    message: str = ""
    attempts: int = 1
    throttled_answers: int = 0
    critical_and_security: int | None = None
    other: int | None = None
    reboot_pending: bool | None = None
    installed: int | None = None
    failed: int | None = None
    pending: int | None = None
    reboot_status: RebootStatus | None = None
    maintenance_window_exceeded: bool | None = None
    #: The KBs a finished install reports installed, in either spelling ("KB5075943" or
    #: "5075943"); `installed` defaults to their number.
    installed_kbs: tuple[str, ...] = ()
    #: The operation was started and may still run (always so for `TIMED_OUT`).
    unfinished: bool = False

    def __post_init__(self) -> None:
        for kb in self.installed_kbs:
            kb_name(kb)  # a ValueError names a KB that is no KB number
        if self.unfinished and self.status not in _MAY_BE_UNFINISHED:
            raise ValueError(
                f"a {self.status} outcome is never left unfinished by the real adapter: only "
                "timed_out, throttled and error ones carry a resume token"
            )

    @property
    def resumable(self) -> bool:
        return self.unfinished or self.status is OutcomeStatus.TIMED_OUT


@dataclass(frozen=True, slots=True)
class RecordedCall:
    """One call the fake received, in the caller's words."""

    method: str
    machine_ids: tuple[str, ...]
    parameters: InstallParameters | None = None
    #: Machine key -> the client request id the caller chose for its start request.
    client_request_ids: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class FakePatchOperations:
    """An in-memory `PatchOperations` for unit tests of callers: scripted answers, recorded calls.

    Every machine, Azure VM or Arc, succeeds unless scripted otherwise. Scripted answers are
    played in order, one per operation on that machine; when they run out the machine
    succeeds, installing nothing.
    """

    clock: Clock
    calls: list[RecordedCall] = field(default_factory=list)
    _scripts: dict[tuple[str, OperationKind], list[Scripted]] = field(default_factory=dict)
    _tokens: int = 0

    def script(
        self, machine: MachineRef | str, operation: OperationKind, *answers: Scripted
    ) -> FakePatchOperations:
        """Queue `answers` for `operation` on `machine` (a MachineRef or its ARM id)."""
        ref = machine if isinstance(machine, MachineRef) else MachineRef.parse(machine)
        self._scripts.setdefault((ref.key, operation), []).extend(answers)
        return self

    def operations_on(self, machine: MachineRef | str) -> list[str]:
        """The methods called with `machine` in the batch, in order."""
        ref = machine if isinstance(machine, MachineRef) else MachineRef.parse(machine)
        return [c.method for c in self.calls if ref.key in {m.lower() for m in c.machine_ids}]

    def client_request_id(self, machine: MachineRef | str, method: str) -> str | None:
        """The client request id the last `method` call naming `machine` gave it, if any."""
        ref = machine if isinstance(machine, MachineRef) else MachineRef.parse(machine)
        for call in reversed(self.calls):
            if call.method == method and ref.key in {m.lower() for m in call.machine_ids}:
                return call.client_request_ids.get(ref.key)
        return None

    async def assess(
        self,
        machines: Sequence[MachineRef],
        *,
        on_outcome: OutcomeCallback | None = None,
        client_request_ids: Mapping[str, str] | None = None,
    ) -> list[OperationOutcome]:
        distinct_machines(machines)
        ids = request_ids_for(machines, client_request_ids)
        self.calls.append(RecordedCall("assess", tuple(m.id for m in machines), None, ids))
        return self._play(machines, OperationKind.ASSESS, on_outcome)

    async def install(
        self,
        machines: Sequence[MachineRef],
        parameters: InstallParameters,
        *,
        on_outcome: OutcomeCallback | None = None,
        client_request_ids: Mapping[str, str] | None = None,
    ) -> list[OperationOutcome]:
        distinct_machines(machines)
        ids = request_ids_for(machines, client_request_ids)
        self.calls.append(RecordedCall("install", tuple(m.id for m in machines), parameters, ids))
        return self._play(machines, OperationKind.INSTALL, on_outcome)

    async def resume(
        self, outcomes: Sequence[OperationOutcome], *, on_outcome: OutcomeCallback | None = None
    ) -> list[OperationOutcome]:
        resumable_only(outcomes)
        distinct_machines([o.machine for o in outcomes])
        self.calls.append(RecordedCall("resume", tuple(o.machine_id for o in outcomes)))
        results = []
        for earlier in outcomes:
            answer = self._next(earlier.machine, earlier.operation)
            outcome = self._outcome(earlier.machine, earlier.operation, answer, earlier.started)
            # As the real adapter counts: resuming sends no start request; 429s add up.
            throttled = earlier.throttled_answers + answer.throttled_answers
            outcome = outcome.model_copy(
                update={"attempts": earlier.attempts, "throttled_answers": throttled}
            )
            notify(on_outcome, outcome)
            results.append(outcome)
        return results

    def _play(
        self,
        machines: Iterable[MachineRef],
        operation: OperationKind,
        on_outcome: OutcomeCallback | None,
    ) -> list[OperationOutcome]:
        results = []
        for machine in machines:
            answer = self._next(machine, operation)
            outcome = self._outcome(machine, operation, answer, self.clock())
            notify(on_outcome, outcome)
            results.append(outcome)
        return results

    def _next(self, machine: MachineRef, operation: OperationKind) -> Scripted:
        queue = self._scripts.get((machine.key, operation))
        return queue.pop(0) if queue else Scripted()

    def _outcome(
        self, machine: MachineRef, operation: OperationKind, answer: Scripted, started: datetime
    ) -> OperationOutcome:
        token = None
        if answer.resumable:
            self._tokens += 1
            token = f"fake:{operation}:{machine.key}:{self._tokens}"
        finished = answer.status in _FINISHED
        assess = finished and operation is OperationKind.ASSESS
        install = finished and operation is OperationKind.INSTALL
        values: Mapping[str, object] = {
            "critical_and_security": _default(answer.critical_and_security, 0, assess),
            "other": _default(answer.other, 0, assess),
            "reboot_pending": _default(answer.reboot_pending, False, assess),
            "installed": _default(answer.installed, len(answer.installed_kbs), install),
            "failed": _default(answer.failed, 0, install),
            "pending": _default(answer.pending, 0, install),
            "reboot_status": _default(answer.reboot_status, RebootStatus.NOT_NEEDED, install),
            "maintenance_window_exceeded": _default(
                answer.maintenance_window_exceeded, False, install
            ),
            "installed_kbs": answer.installed_kbs if install else (),
        }
        return OperationOutcome.model_validate(
            {
                "machine_id": machine.id,
                "operation": operation,
                "status": answer.status,
                "started": started,
                "finished": self.clock(),
                "error_code": answer.error_code,
                "message": answer.message,
                "attempts": answer.attempts,
                "throttled_answers": answer.throttled_answers,
                "resume_token": token,
                **values,
            }
        )


#: Statuses the real adapter gives to an operation it started and did not see end.
_MAY_BE_UNFINISHED = frozenset(
    {OutcomeStatus.TIMED_OUT, OutcomeStatus.THROTTLED, OutcomeStatus.ERROR}
)
#: Statuses after which Azure reports a result body (counts, reboot status).
_FINISHED = frozenset(
    {OutcomeStatus.SUCCEEDED, OutcomeStatus.COMPLETED_WITH_WARNINGS, OutcomeStatus.FAILED}
)


def _default(value: _T | None, fallback: _T, applies: bool) -> _T | None:
    if value is not None:
        return value
    return fallback if applies else None
