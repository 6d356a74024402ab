"""The patch operations port: machines, install parameters, outcomes, and the interface.

`PatchOperations` is what the service calls to assess and install patches on many machines.
Two implementations follow it: `hotpatch.azure.compute.ComputePatchOperations` (Azure Compute,
or the local sandbox) and `hotpatch.fakes.FakePatchOperations`, in memory, for unit tests of
callers. No Azure SDK type crosses this interface, so this module imports none.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Protocol, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from hotpatch.core.models import MachineKind, UtcDatetime
from hotpatch.core.plan import kb_form

__all__ = [
    "MAXIMUM_DURATION_LIMIT",
    "Classification",
    "Clock",
    "InstallParameters",
    "MachineRef",
    "OperationKind",
    "OperationOutcome",
    "OutcomeCallback",
    "OutcomeStatus",
    "PatchOperations",
    "RebootSetting",
    "RebootStatus",
    "distinct_machines",
    "kb_name",
    "notify",
    "request_ids_for",
    "resumable_only",
]

_log = logging.getLogger(__name__)

#: DOMAIN.md §5: keep `maximumDuration` under 3h55m (Azure refuses longer windows).
MAXIMUM_DURATION_LIMIT = timedelta(hours=3, minutes=55)

_VM_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)/providers/"
    r"(?P<provider>microsoft\.compute/virtualmachines|microsoft\.hybridcompute/machines)/"
    r"(?P<name>[^/]+)/?$",
    re.IGNORECASE,
)
_T = TypeVar("_T")

#: The time outcomes are stamped with; injected (by `hotpatch.bootstrap`, or a test).
Clock = Callable[[], datetime]


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
    """The KB's digits, written as the planner writes a KB (ASCII digits only)."""
    kb = kb_form(value)
    if kb is None:
        raise ValueError(f"{value!r} is not a KB number (e.g. 5075943 or KB5075943)")
    return kb.removeprefix("KB")


KbNumber = Annotated[str, AfterValidator(_kb_number)]


def kb_name(value: str) -> str:
    """A KB as people write it, "KB5075943", from either spelling (Azure's `kbId` has no
    prefix); ValueError when it is no KB number."""
    return f"KB{_kb_number(value)}"


KbName = Annotated[str, AfterValidator(kb_name)]


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
    #: The KBs a finished install reports `Installed` ("KB5075943"), in the order reported.
    #: Azure Arc's install result lists no patches, only counts: there it stays empty, and
    #: `installed_kbs_complete` says whether this names every installed patch.
    installed_kbs: tuple[KbName, ...] = ()

    @field_validator("installed_kbs")
    @classmethod
    def _each_kb_once(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(values))

    @property
    def installed_kbs_complete(self) -> bool:
        """Whether `installed_kbs` names every patch the install reports installed (a KB set
        can be proven from this outcome alone only then)."""
        return self.installed is not None and len(self.installed_kbs) >= self.installed

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

    Azure VMs and Azure Arc machines alike. Failures are isolated per machine: a refusal, a
    server error or a timeout becomes that machine's outcome and the batch goes on.
    `on_outcome` hears each outcome as it is known (for progress and journaling), before the
    batch as a whole returns. `client_request_ids` (machine key -> id) names the
    `x-ms-client-request-id` each machine's start request carries, so that a journal can record
    it before the request is sent; a machine without one gets an id of the SDK's choosing.
    """

    async def assess(
        self,
        machines: Sequence[MachineRef],
        *,
        on_outcome: OutcomeCallback | None = None,
        client_request_ids: Mapping[str, str] | None = None,
    ) -> list[OperationOutcome]: ...

    async def install(
        self,
        machines: Sequence[MachineRef],
        parameters: InstallParameters,
        *,
        on_outcome: OutcomeCallback | None = None,
        client_request_ids: Mapping[str, str] | None = None,
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


def request_ids_for(
    machines: Sequence[MachineRef], client_request_ids: Mapping[str, str] | None
) -> dict[str, str]:
    """The client request ids by machine key; ValueError for a key that names no machine of
    the batch, or an id that cannot be a header value."""
    if not client_request_ids:
        return {}
    batch = {machine.key for machine in machines}
    found: dict[str, str] = {}
    for key, request_id in client_request_ids.items():
        machine = key.strip().lower()
        if machine not in batch:
            raise ValueError(f"a client request id is given for {key!r}, which is not in the batch")
        if not isinstance(request_id, str) or not request_id or not request_id.isprintable():
            raise ValueError(f"the client request id for {key!r} is not a header value")
        if found.setdefault(machine, request_id) != request_id:
            raise ValueError(f"two client request ids are given for {key!r}")
    return found


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
