"""Patch operations in domain words: machines, install parameters, outcomes, and the interface.

`PatchOperations` is what the service calls to assess and install patches on many machines.
Two implementations follow it: `hotpatch.azure.compute.ComputePatchOperations` (Azure Compute,
or the local sandbox) and `FakePatchOperations` here, in memory, for unit tests of callers.
No Azure SDK type crosses this interface, so this module imports none.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Protocol, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from hotpatch.core.models import MachineKind, UtcDatetime

__all__ = [
    "ARC_NOT_SUPPORTED",
    "MAXIMUM_DURATION_LIMIT",
    "Classification",
    "Clock",
    "FakePatchOperations",
    "InstallParameters",
    "MachineRef",
    "OperationKind",
    "OperationOutcome",
    "OutcomeCallback",
    "OutcomeStatus",
    "PatchOperations",
    "RebootSetting",
    "RebootStatus",
    "RecordedCall",
    "Scripted",
    "notify",
    "system_clock",
]

_log = logging.getLogger(__name__)

#: DOMAIN.md §5: keep `maximumDuration` under 3h55m (Azure refuses longer windows).
MAXIMUM_DURATION_LIMIT = timedelta(hours=3, minutes=55)
#: The message of the outcome recorded for an Azure Arc machine.
ARC_NOT_SUPPORTED = "Azure Arc patch operations are not supported yet"

_VM_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)/providers/"
    r"(?P<provider>microsoft\.compute/virtualmachines|microsoft\.hybridcompute/machines)/"
    r"(?P<name>[^/]+)/?$",
    re.IGNORECASE,
)
_KB = re.compile(r"^(?:KB)?(\d{4,8})$", re.IGNORECASE)
_T = TypeVar("_T")

#: The time outcomes are stamped with; injected so that tests and replays control it.
Clock = Callable[[], datetime]


def system_clock() -> datetime:
    # The adapters are the imperative shell: reading the clock is their job, not the core's.
    return datetime.now(UTC)


class RebootSetting(StrEnum):
    """When an install may restart the machine (`rebootSetting`)."""

    IF_REQUIRED = "IfRequired"
    NEVER = "Never"
    ALWAYS = "Always"


class Classification(StrEnum):
    """Windows update classifications an install may include (`classificationsToInclude`)."""

    CRITICAL = "Critical"
    SECURITY = "Security"
    UPDATE_ROLLUP = "UpdateRollUp"
    FEATURE_PACK = "FeaturePack"
    SERVICE_PACK = "ServicePack"
    DEFINITION = "Definition"
    TOOLS = "Tools"
    UPDATES = "Updates"


class OperationKind(StrEnum):
    ASSESS = "assess"
    INSTALL = "install"


class OutcomeStatus(StrEnum):
    """How one machine's operation ended, as far as this run knows."""

    SUCCEEDED = "succeeded"
    COMPLETED_WITH_WARNINGS = "completed_with_warnings"
    #: The operation ran and reported failure (its `error` says why).
    FAILED = "failed"
    #: Still answered 429 after every retry the policy allows.
    THROTTLED = "throttled"
    #: Started, not finished within the timeout: the outcome carries a resume token.
    TIMED_OUT = "timed_out"
    NOT_FOUND = "not_found"
    #: Refused with 409: another operation runs on the machine, or it is not running.
    CONFLICT = "conflict"
    #: Not attempted on purpose (the message says why).
    SKIPPED = "skipped"
    #: Anything else: a refusal, a server error, a dropped connection, a cancelled run.
    ERROR = "error"


class RebootStatus(StrEnum):
    """`rebootStatus` of an install result."""

    NOT_NEEDED = "NotNeeded"
    REQUIRED = "Required"
    STARTED = "Started"
    FAILED = "Failed"
    COMPLETED = "Completed"
    UNKNOWN = "Unknown"


class MachineRef(BaseModel):
    """A machine patch operations can address: an Azure VM or an Azure Arc-enabled server."""

    model_config = ConfigDict(frozen=True)

    subscription: str = Field(min_length=1)
    resource_group: str = Field(min_length=1)
    name: str = Field(min_length=1)
    kind: MachineKind

    @field_validator("kind")
    @classmethod
    def _vm_or_arc(cls, kind: MachineKind) -> MachineKind:
        if kind is MachineKind.SCALE_SET:
            raise ValueError("patch operations address VMs and Arc machines, not scale sets")
        return kind

    @classmethod
    def parse(cls, resource_id: str) -> MachineRef:
        """Read an ARM resource id; ValueError names the id when it is not a VM or Arc machine."""
        match = _VM_ID.match(resource_id.strip()) if isinstance(resource_id, str) else None
        if match is None:
            raise ValueError(
                f"{resource_id!r} is not the ARM id of a virtual machine "
                "(Microsoft.Compute/virtualMachines) or an Azure Arc machine "
                "(Microsoft.HybridCompute/machines)"
            )
        hybrid = match.group("provider").lower().startswith("microsoft.hybridcompute")
        return cls(
            subscription=match.group("sub"),
            resource_group=match.group("rg"),
            name=match.group("name"),
            kind=MachineKind.ARC if hybrid else MachineKind.VM,
        )

    @property
    def id(self) -> str:
        """The ARM id, with the provider spelled the way ARM spells it."""
        provider = (
            "Microsoft.HybridCompute/machines"
            if self.kind is MachineKind.ARC
            else "Microsoft.Compute/virtualMachines"
        )
        return (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/{provider}/{self.name}"
        )

    @property
    def key(self) -> str:
        """ARM ids compare without regard to case: this is the id to compare and dedupe by."""
        return self.id.lower()


def _kb_number(value: str) -> str:
    match = _KB.match(value.strip())
    if match is None:
        raise ValueError(f"{value!r} is not a KB number (e.g. 5075943 or KB5075943)")
    return match.group(1)


KbNumber = Annotated[str, AfterValidator(_kb_number)]


class InstallParameters(BaseModel):
    """What an install may do; the adapter turns it into `installPatches`' body.

    KB numbers are kept as digits (`kbId` in Azure's results has no "KB" prefix).
    """

    model_config = ConfigDict(frozen=True)

    reboot_setting: RebootSetting
    classifications: tuple[Classification, ...] = (
        Classification.CRITICAL,
        Classification.SECURITY,
    )
    kb_include: tuple[KbNumber, ...] = ()
    kb_exclude: tuple[KbNumber, ...] = ()
    exclude_kbs_requiring_reboot: bool = False
    maximum_duration: timedelta = timedelta(hours=2)
    max_patch_publish_date: UtcDatetime | None = None

    @field_validator("maximum_duration")
    @classmethod
    def _inside_the_limit(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("maximum_duration must be positive")
        if value >= MAXIMUM_DURATION_LIMIT:
            raise ValueError(
                f"maximum_duration must be under 3h55m (Azure refuses longer); got {value}"
            )
        return value

    @field_validator("classifications", "kb_include", "kb_exclude")
    @classmethod
    def _distinct(cls, values: tuple[_T, ...]) -> tuple[_T, ...]:
        # Order is kept (it is what the caller wrote); repeats say nothing more.
        return tuple(dict.fromkeys(values))


class OperationOutcome(BaseModel):
    """What happened to one machine's assess or install: one record per machine, always.

    `resume_token` is set when the operation was started but this run did not see it end
    (timed out, polling failed, the run was cancelled): pass the outcome to `resume` later.
    The assessment fields are set for a finished assess, the installation fields for a
    finished install; both are None otherwise.
    """

    model_config = ConfigDict(frozen=True)

    machine_id: str
    operation: OperationKind
    status: OutcomeStatus
    started: UtcDatetime
    finished: UtcDatetime
    error_code: str | None = None
    message: str = ""
    #: Requests that tried to start the operation (1 unless retried; 0 when none was sent).
    attempts: int = Field(default=0, ge=0)
    #: 429 answers met on this machine's requests (each was waited out or ended the attempt).
    throttled_answers: int = Field(default=0, ge=0)
    resume_token: str | None = None
    #: `assessmentActivityId` / `installationActivityId`: ties the outcome to Azure's records.
    activity_id: str | None = None
    critical_and_security: int | None = None
    other: int | None = None
    reboot_pending: bool | None = None
    installed: int | None = None
    failed: int | None = None
    pending: int | None = None
    excluded: int | None = None
    not_selected: int | None = None
    reboot_status: RebootStatus | None = None
    maintenance_window_exceeded: bool | None = None

    @property
    def retries(self) -> int:
        return max(0, self.attempts - 1)

    @property
    def resumable(self) -> bool:
        return self.resume_token is not None

    @property
    def machine(self) -> MachineRef:
        return MachineRef.parse(self.machine_id)


OutcomeCallback = Callable[[OperationOutcome], None]


class PatchOperations(Protocol):
    """Assess and install patches on many machines; one outcome per machine, in input order.

    Failures are isolated per machine: a refusal, a server error or a timeout becomes that
    machine's outcome and the batch goes on. `on_outcome` hears each outcome as it is known
    (for progress and journaling), before the batch as a whole returns.
    """

    async def assess(
        self, machines: Sequence[MachineRef], *, on_outcome: OutcomeCallback | None = None
    ) -> list[OperationOutcome]: ...

    async def install(
        self,
        machines: Sequence[MachineRef],
        parameters: InstallParameters,
        *,
        on_outcome: OutcomeCallback | None = None,
    ) -> list[OperationOutcome]: ...

    async def resume(
        self, outcomes: Sequence[OperationOutcome], *, on_outcome: OutcomeCallback | None = None
    ) -> list[OperationOutcome]:
        """Follow operations an earlier run left unfinished (outcomes with a resume token)."""
        ...


def distinct_machines(machines: Sequence[MachineRef]) -> None:
    """ValueError naming the first machine that appears twice: a batch touches each once."""
    seen: set[str] = set()
    for machine in machines:
        if machine.key in seen:
            raise ValueError(f"{machine.id} appears more than once in the batch")
        seen.add(machine.key)


def resumable_only(outcomes: Sequence[OperationOutcome]) -> None:
    """ValueError naming the first outcome that has nothing to resume."""
    for outcome in outcomes:
        if outcome.resume_token is None:
            raise ValueError(
                f"the {outcome.operation} outcome of {outcome.machine_id} has no resume token "
                f"(status {outcome.status}): there is nothing to resume"
            )


def notify(on_outcome: OutcomeCallback | None, outcome: OperationOutcome) -> None:
    """Tell the caller's callback; a failing callback is logged, never allowed to stop a batch
    (which would abandon operations already started)."""
    if on_outcome is None:
        return
    try:
        on_outcome(outcome)
    except Exception:
        _log.exception("the on_outcome callback failed for %s", outcome.machine_id)


def skipped_arc(machine: MachineRef, operation: OperationKind, now: datetime) -> OperationOutcome:
    """azure-mgmt-compute cannot address Arc machines (they need Microsoft.HybridCompute)."""
    return OperationOutcome(
        machine_id=machine.id,
        operation=operation,
        status=OutcomeStatus.SKIPPED,
        started=now,
        finished=now,
        error_code="ArcNotSupported",
        message=ARC_NOT_SUPPORTED,
    )


# -- the in-memory fake --------------------------------------------------------------------------


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
    #: The operation was started and may still run (always so for `TIMED_OUT`).
    unfinished: bool = False

    def __post_init__(self) -> None:
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


@dataclass(slots=True)
class FakePatchOperations:
    """An in-memory `PatchOperations` for unit tests of callers: scripted answers, recorded calls.

    Every machine succeeds unless scripted otherwise; Arc machines are skipped, as the real
    adapter skips them. Scripted answers are played in order, one per operation on that
    machine; when they run out the machine succeeds.
    """

    clock: Clock = system_clock
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

    async def assess(
        self, machines: Sequence[MachineRef], *, on_outcome: OutcomeCallback | None = None
    ) -> list[OperationOutcome]:
        distinct_machines(machines)
        self.calls.append(RecordedCall("assess", tuple(m.id for m in machines)))
        return self._play(machines, OperationKind.ASSESS, on_outcome)

    async def install(
        self,
        machines: Sequence[MachineRef],
        parameters: InstallParameters,
        *,
        on_outcome: OutcomeCallback | None = None,
    ) -> list[OperationOutcome]:
        distinct_machines(machines)
        self.calls.append(RecordedCall("install", tuple(m.id for m in machines), parameters))
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
            if machine.kind is MachineKind.ARC:
                outcome = skipped_arc(machine, operation, self.clock())
            else:
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
            "installed": _default(answer.installed, 0, install),
            "failed": _default(answer.failed, 0, install),
            "pending": _default(answer.pending, 0, install),
            "reboot_status": _default(answer.reboot_status, RebootStatus.NOT_NEEDED, install),
            "maintenance_window_exceeded": _default(
                answer.maintenance_window_exceeded, False, install
            ),
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
