"""Assess and install patches on many Azure VMs through Azure Compute's long-running operations.

`ComputePatchOperations` follows `hotpatch.ports.PatchOperations`: it takes machines in
domain words and returns one `OperationOutcome` per machine, whatever happened to it. Inside:

- one `azure.mgmt.compute.aio.ComputeManagementClient` per subscription (the client is bound to
  one), all sharing one pooled aiohttp session;
- a bound on operations in flight overall and per subscription, held from the start request to
  the final result;
- every poller awaited to its end with the service's `Retry-After` honoured (azure-core does
  that); an operation still running at `operation_timeout` is recorded as `timed_out` with the
  poller's continuation token, and `resume` finishes it later; nothing is fire-and-forget;
- writes paced per subscription (`hotpatch.azure.write_pacing`): a start waits for its pace
  before its request is handed to the SDK, so cancelling a run while starts wait sends nothing;
- failures translated by one table (`START_FAILURES`) into the machine's outcome.

Naming: the adapter follows DESIGN's batch design rather than the Azure SDK's one-resource
verbs. `assess`/`install` take many machines and await every long-running operation to its
end (no `begin_*` handle escapes: each poller's continuation token is recorded in the
outcome instead, and `resume` follows it), because a batch that returned pollers would leave
the caller to await thousands of them under the same concurrency and pacing rules.

Azure Arc machines (`Microsoft.HybridCompute/machines`) take the same operations through the
Hybrid Compute resource provider, which azure-mgmt-compute cannot address: they are `skipped`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import aiohttp
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    IncompleteReadError,
    ODataV4Error,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ResourceNotModifiedError,
    ResponseNotReadError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
    StreamClosedError,
    StreamConsumedError,
    TooManyRedirectsError,
)
from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import AsyncHTTPPolicy
from azure.core.pipeline.transport import AioHttpTransport
from azure.core.polling import AsyncLROPoller
from azure.core.polling.base_polling import OperationFailed
from azure.core.rest import AsyncHttpResponse, HttpRequest
from azure.mgmt.compute.aio import ComputeManagementClient
from azure.mgmt.compute.models import (
    VirtualMachineAssessPatchesResult,
    VirtualMachineInstallPatchesParameters,
    VirtualMachineInstallPatchesResult,
    WindowsParameters,
)

from hotpatch.azure.responses import error_details, lookup, status_code
from hotpatch.azure.write_pacing import (
    PERMIT_OPTION,
    READ_METHODS,
    WRITES_REMAINING_HEADER,
    PacingPolicy,
    WriteBudget,
    WritePacer,
    WritePermit,
)
from hotpatch.core.models import MachineKind
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
    notify,
    resumable_only,
    skipped_arc,
)

__all__ = [
    "ARM_ENDPOINT",
    "WRITES_REMAINING_HEADER",
    "ClientFactory",
    "ComputePatchOperations",
    "Limits",
    "Policy",
    "ThrottleEvent",
    "WriteBudget",
    "install_body",
    "utc_now",
]

ARM_ENDPOINT = "https://management.azure.com"

_log = logging.getLogger(__name__)

Policy = AsyncHTTPPolicy[HttpRequest, AsyncHttpResponse]
#: Builds the client of one subscription. It must add `policies` to the client's
#: `per_retry_policies` (the adapter paces and observes each attempt through them); the
#: adapter closes every client it asked for when it is closed.
ClientFactory = Callable[[str, Sequence[Policy]], ComputeManagementClient]
_Poller = (
    AsyncLROPoller[VirtualMachineAssessPatchesResult]
    | AsyncLROPoller[VirtualMachineInstallPatchesResult]
)


@dataclass(frozen=True, slots=True)
class Limits:
    """How hard the adapter may push.

    `operation_timeout` bounds the wait for a started operation's result (the start itself is
    bounded by the SDK's retry policy); the default covers the longest install window.
    `poll_interval` is used when Azure's answer names no `Retry-After`. `write_budget` None
    paces by ARM's answers alone (the header and 429s).
    """

    max_concurrency: int = 50
    per_subscription: int = 20
    operation_timeout: timedelta = timedelta(hours=4)
    poll_interval: timedelta = timedelta(seconds=10)
    write_budget: WriteBudget | None = field(default_factory=WriteBudget)

    def __post_init__(self) -> None:
        if self.max_concurrency < 1 or self.per_subscription < 1:
            raise ValueError("max_concurrency and per_subscription must be at least 1")
        if self.operation_timeout <= timedelta(0) or self.poll_interval <= timedelta(0):
            raise ValueError("operation_timeout and poll_interval must be positive")


@dataclass(frozen=True, slots=True)
class ThrottleEvent:
    """One 429 answer the adapter met (retried by azure-core or not)."""

    subscription: str
    #: From the adapter's clock.
    at: datetime
    retry_after_seconds: float
    write: bool


@dataclass(frozen=True, slots=True)
class _Job:
    machine: MachineRef
    operation: OperationKind
    body: VirtualMachineInstallPatchesParameters | None = None
    #: The earlier outcome being resumed.
    earlier: OperationOutcome | None = None


@dataclass(slots=True)
class _Attempt:
    """How far one machine's operation got in this run: enough to report it at any point."""

    job: _Job
    tally: _Tally
    started: datetime
    #: Leave to send the start request (a new operation; a resumed one sends none).
    permit: WritePermit | None = None
    poller: _Poller | None = None

    @property
    def requested(self) -> bool:
        """The start request was sent and not refused with a 429: the operation may exist even
        without an answer."""
        return self.permit is not None and self.permit.sent and not self.permit.refused


@dataclass(slots=True)
class _Tally:
    """This machine's requests, seen through a per-call `raw_response_hook` (every attempt)."""

    attempts: int = 0
    throttled: int = 0

    def observe(self, response: PipelineResponse[Any, Any]) -> None:
        if response.http_request.method.upper() not in READ_METHODS:
            self.attempts += 1
        if response.http_response.status_code == 429:
            self.throttled += 1


def utc_now() -> datetime:
    """The clock an adapter stamps outcomes with unless given one (the shell reads the clock)."""
    return datetime.now(UTC)


class ComputePatchOperations:
    """`PatchOperations` on Azure Compute (or the sandbox). Use with `async with`, or `close()`.

    Give either a `credential` (with `base_url` and `connection_verify` for the sandbox: the
    path of its CA file) or a `client_factory`.
    """

    def __init__(
        self,
        *,
        credential: AsyncTokenCredential | None = None,
        base_url: str = ARM_ENDPOINT,
        connection_verify: bool | str = True,
        client_factory: ClientFactory | None = None,
        limits: Limits | None = None,
        clock: Clock | None = None,
    ) -> None:
        if credential is None and client_factory is None:
            raise ValueError("give a credential or a client_factory")
        self.limits = limits or Limits()
        self._credential = credential
        self._base_url = base_url
        self._verify = connection_verify
        self._factory = client_factory or self._client_for
        self._clock = clock or utc_now
        self._clients: dict[str, ComputeManagementClient] = {}
        self._pacers: dict[str, WritePacer] = {}
        self._subscription_slots: dict[str, asyncio.Semaphore] = {}
        self._slots: asyncio.Semaphore | None = None
        self._session: aiohttp.ClientSession | None = None
        self._throttles: list[ThrottleEvent] = []

    async def __aenter__(self) -> ComputePatchOperations:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the clients and the shared session (not the credential: the caller owns it)."""
        clients, self._clients = list(self._clients.values()), {}
        # Pacers and semaphores belong to the event loop that used them: start afresh.
        self._pacers.clear()
        self._subscription_slots.clear()
        self._slots = None
        for client in clients:
            await client.close()
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    def throttle_events(self) -> tuple[ThrottleEvent, ...]:
        """Every 429 met so far, in order."""
        return tuple(self._throttles)

    # -- PatchOperations ------------------------------------------------------------------------

    async def assess(
        self, machines: Sequence[MachineRef], *, on_outcome: OutcomeCallback | None = None
    ) -> list[OperationOutcome]:
        distinct_machines(machines)
        return await self._batch([_Job(m, OperationKind.ASSESS) for m in machines], on_outcome)

    async def install(
        self,
        machines: Sequence[MachineRef],
        parameters: InstallParameters,
        *,
        on_outcome: OutcomeCallback | None = None,
    ) -> list[OperationOutcome]:
        distinct_machines(machines)
        body = install_body(parameters)
        jobs = [_Job(m, OperationKind.INSTALL, body) for m in machines]
        return await self._batch(jobs, on_outcome)

    async def resume(
        self, outcomes: Sequence[OperationOutcome], *, on_outcome: OutcomeCallback | None = None
    ) -> list[OperationOutcome]:
        resumable_only(outcomes)
        distinct_machines([o.machine for o in outcomes])
        jobs = [_Job(o.machine, o.operation, earlier=o) for o in outcomes]
        return await self._batch(jobs, on_outcome)

    # -- one batch --------------------------------------------------------------------------------

    async def _batch(
        self, jobs: Sequence[_Job], on_outcome: OutcomeCallback | None
    ) -> list[OperationOutcome]:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limits.max_concurrency)
        # A TaskGroup: if the caller cancels the batch, every machine's task is cancelled and
        # reports what it had started (with its resume token) before the cancellation ends.
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._one(job, on_outcome)) for job in jobs]
        return [task.result() for task in tasks]

    async def _one(self, job: _Job, on_outcome: OutcomeCallback | None) -> OperationOutcome:
        machine = job.machine
        if machine.kind is MachineKind.ARC:
            outcome = skipped_arc(machine, job.operation, self._clock())
        else:
            started = job.earlier.started if job.earlier else self._clock()
            attempt = _Attempt(job, _Tally(), started)
            try:
                async with self._slot(machine.subscription):
                    outcome = await self._operate(attempt)
            except asyncio.CancelledError:
                # The caller gave up on the batch: say how far this machine got, with the
                # token of an operation already started, before the cancellation goes on.
                notify(on_outcome, self._cancelled(attempt))
                raise
            except Exception as error:
                # Anything not foreseen (an answer the SDK cannot read, a bug) ends this
                # machine's operation only: escaping, it would cancel every other machine's.
                _log.exception("the %s of %s failed unexpectedly", job.operation, machine.id)
                outcome = self._unexpected(attempt, error)
        notify(on_outcome, outcome)
        return outcome

    @contextlib.asynccontextmanager
    async def _slot(self, subscription: str) -> AsyncIterator[None]:
        key = subscription.lower()
        own = self._subscription_slots.setdefault(
            key, asyncio.Semaphore(self.limits.per_subscription)
        )
        assert self._slots is not None
        async with own:
            # Wait out the subscription's pace before taking one of the shared slots, so a
            # throttled subscription does not idle slots the others could use.
            await self._pacer(key).ready()
            async with self._slots:
                yield

    async def _operate(self, attempt: _Attempt) -> OperationOutcome:
        job = attempt.job
        client = self._client(job.machine.subscription)
        permit = None
        if job.earlier is None:
            attempt.started = self._clock()  # the wait for a slot is not the operation's time
            # Wait for the subscription's write pace here, before anything is handed to the
            # SDK: a cancellation during the wait ends it cleanly, with nothing sent.
            permit = attempt.permit = await self._pacer(job.machine.subscription.lower()).permit()
        start = asyncio.create_task(self._begin(client, job, attempt.tally, permit))
        if permit is not None:
            # However the start ends, a permit it never spent goes back to the pacer.
            start.add_done_callback(permit.release_after)
        try:
            attempt.poller = poller = await asyncio.shield(start)
        except asyncio.CancelledError:
            if permit is not None:
                # Not sent yet, or refused and waiting to be retried: send nothing more.
                permit.abandoned = True
            # A start request on the wire is let land, so that an operation it started is
            # reported with its resume token instead of being lost with the cancelled run.
            with contextlib.suppress(Exception):
                attempt.poller = await start
            raise
        except AzureError as error:
            return self._refused(attempt, error)
        except ValueError as error:
            if job.earlier is None:
                raise  # not a token's fault: the last resort in `_one` reports it
            # DeserializationError is a ValueError too, but resuming reads nothing from Azure
            # before the poller exists: this is the token that does not decode.
            return self._outcome(attempt, OutcomeStatus.ERROR, "InvalidResumeToken", str(error))
        timeout = self.limits.operation_timeout
        try:
            async with asyncio.timeout(timeout.total_seconds()):
                result = await poller.result()
        except TimeoutError:
            return self._unfinished(
                attempt,
                OutcomeStatus.TIMED_OUT,
                "OperationTimedOut",
                f"still running after {timeout}; resume it with its token",
            )
        except AzureError as error:
            return self._polling_failed(attempt, error)
        return self._finished(attempt, result)

    async def _begin(
        self,
        client: ComputeManagementClient,
        job: _Job,
        tally: _Tally,
        permit: WritePermit | None,
    ) -> _Poller:
        machine, operations = job.machine, client.virtual_machines
        options: dict[str, Any] = {
            "raw_response_hook": tally.observe,
            "polling_interval": self.limits.poll_interval.total_seconds(),
        }
        if permit is not None:
            options[PERMIT_OPTION] = permit
        if job.earlier is not None:
            options["continuation_token"] = job.earlier.resume_token
        group, name = machine.resource_group, machine.name
        if job.operation is OperationKind.ASSESS:
            return await operations.begin_assess_patches(group, name, **options)
        if job.body is None:
            # Resuming: the SDK's signature wants a body it does not send with a token.
            unsent = io.BytesIO(b"{}")
            return await operations.begin_install_patches(group, name, unsent, **options)
        return await operations.begin_install_patches(group, name, job.body, **options)

    # -- clients --------------------------------------------------------------------------------

    def _client(self, subscription: str) -> ComputeManagementClient:
        key = subscription.lower()
        client = self._clients.get(key)
        if client is None:
            client = self._factory(subscription, [PacingPolicy(self._pacer(key))])
            self._clients[key] = client
        return client

    def _pacer(self, key: str) -> WritePacer:
        pacer = self._pacers.get(key)
        if pacer is None:
            pacer = WritePacer(key, self.limits.write_budget, self._throttled)
            self._pacers[key] = pacer
        return pacer

    def _throttled(self, subscription: str, retry_after: float, write: bool) -> None:
        self._throttles.append(ThrottleEvent(subscription, self._clock(), retry_after, write))

    def _client_for(self, subscription: str, policies: Sequence[Policy]) -> ComputeManagementClient:
        assert self._credential is not None
        # One pooled session for every client: azure-core builds an SSL context per request
        # when given `connection_verify=<path>`, which defeats connection reuse.
        transport = AioHttpTransport(session=self._shared_session(), session_owner=False)
        return ComputeManagementClient(
            self._credential,
            subscription,
            base_url=self._base_url,
            transport=transport,
            per_retry_policies=list(policies),
            polling_interval=self.limits.poll_interval.total_seconds(),
        )

    def _shared_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            verify: ssl.SSLContext | bool
            if isinstance(self._verify, str):
                verify = ssl.create_default_context(cafile=self._verify)
            else:
                verify = ssl.create_default_context() if self._verify else False
            # One request at a time per operation in flight, so this many connections suffice.
            connector = aiohttp.TCPConnector(ssl=verify, limit=self.limits.max_concurrency)
            # As azure-core's own session: no cookies, decompression left to the pipeline.
            self._session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                trust_env=True,
            )
        return self._session

    # -- outcomes -------------------------------------------------------------------------------

    def _outcome(
        self,
        attempt: _Attempt,
        status: OutcomeStatus,
        code: str | None,
        message: str,
        **fields: Any,
    ) -> OperationOutcome:
        earlier, tally = attempt.job.earlier, attempt.tally
        return OperationOutcome.model_validate(
            {
                "machine_id": attempt.job.machine.id,
                "operation": attempt.job.operation,
                "status": status,
                "started": attempt.started,
                "finished": self._clock(),
                "error_code": code,
                "message": message,
                "attempts": tally.attempts + (earlier.attempts if earlier else 0),
                "throttled_answers": tally.throttled
                + (earlier.throttled_answers if earlier else 0),
                **fields,
            }
        )

    def _cancelled(self, attempt: _Attempt) -> OperationOutcome:
        earlier = attempt.job.earlier
        if attempt.poller is not None:
            return self._unfinished(
                attempt,
                OutcomeStatus.ERROR,
                "Cancelled",
                "the run was cancelled before the operation finished; resume it with its token",
            )
        if earlier is not None:
            return self._outcome(
                attempt,
                OutcomeStatus.SKIPPED,
                "Cancelled",
                "the run was cancelled before it followed this operation again; resume it with "
                "its token",
                resume_token=earlier.resume_token,
            )
        if attempt.requested:
            return self._outcome(
                attempt,
                OutcomeStatus.ERROR,
                "Cancelled",
                "the run was cancelled while the start request was out: the operation may or "
                "may not have started",
            )
        return self._outcome(
            attempt,
            OutcomeStatus.SKIPPED,
            "Cancelled",
            "the run was cancelled before this machine's operation was started",
        )

    def _unexpected(self, attempt: _Attempt, error: Exception) -> OperationOutcome:
        code, text = type(error).__name__, str(error).strip()
        message = text.splitlines()[0] if text else f"the operation failed with {code}"
        if attempt.poller is not None:
            # The operation was started and may still run: keep its token so it is not lost.
            with contextlib.suppress(Exception):
                return self._unfinished(attempt, OutcomeStatus.ERROR, code, message)
        earlier = attempt.job.earlier
        token = earlier.resume_token if earlier else None
        return self._outcome(attempt, OutcomeStatus.ERROR, code, message, resume_token=token)

    def _refused(self, attempt: _Attempt, error: AzureError) -> OperationOutcome:
        code, message = error_details(error)
        status = lookup(START_FAILURES, error)
        if status is None:
            status = _STATUS_OUTCOMES.get(status_code(error) or 0, OutcomeStatus.ERROR)
        return self._outcome(attempt, status, code, message)

    def _unfinished(
        self, attempt: _Attempt, status: OutcomeStatus, code: str, message: str
    ) -> OperationOutcome:
        assert attempt.poller is not None
        token = attempt.poller.continuation_token()
        return self._outcome(attempt, status, code, message, resume_token=token)

    def _polling_failed(self, attempt: _Attempt, error: AzureError) -> OperationOutcome:
        code, message = error_details(error)
        if isinstance(error.__cause__, OperationFailed):
            # Azure said the operation failed: it has ended, there is nothing to resume.
            return self._outcome(attempt, OutcomeStatus.FAILED, code, message)
        if status_code(error) == 404:
            # The status URL is gone (Azure keeps it for a while only): it cannot be resumed.
            return self._outcome(attempt, OutcomeStatus.NOT_FOUND, code, message)
        status = OutcomeStatus.THROTTLED if status_code(error) == 429 else OutcomeStatus.ERROR
        # The operation was started and may still run: keep its token so it is not lost.
        return self._unfinished(attempt, status, code, message)

    def _finished(
        self,
        attempt: _Attempt,
        result: VirtualMachineAssessPatchesResult | VirtualMachineInstallPatchesResult,
    ) -> OperationOutcome:
        reported = _text(result.status)
        status = _RESULT_STATUS.get(reported.lower())
        code, message = None, ""
        if result.error is not None:
            code, message = result.error.code, result.error.message or ""
        if status is None:
            status = OutcomeStatus.ERROR
            code = code or "UnexpectedStatus"
            message = message or f"the operation ended reporting status {reported or 'none'!r}"
        if isinstance(result, VirtualMachineAssessPatchesResult):
            return self._outcome(
                attempt,
                status,
                code,
                message,
                activity_id=result.assessment_activity_id,
                critical_and_security=result.critical_and_security_patch_count,
                other=result.other_patch_count,
                reboot_pending=result.reboot_pending,
            )
        return self._outcome(
            attempt,
            status,
            code,
            message,
            activity_id=result.installation_activity_id,
            installed=result.installed_patch_count,
            failed=result.failed_patch_count,
            pending=result.pending_patch_count,
            excluded=result.excluded_patch_count,
            not_selected=result.not_selected_patch_count,
            reboot_status=_reboot_status(result.reboot_status),
            maintenance_window_exceeded=result.maintenance_window_exceeded,
        )


def install_body(parameters: InstallParameters) -> VirtualMachineInstallPatchesParameters:
    """The `installPatches` body for `parameters` (the only place the SDK model is built)."""
    return VirtualMachineInstallPatchesParameters(
        maximum_duration=parameters.maximum_duration,
        reboot_setting=parameters.reboot_setting.value,
        windows_parameters=WindowsParameters(
            classifications_to_include=[c.value for c in parameters.classifications],
            kb_numbers_to_include=list(parameters.kb_include) or None,
            kb_numbers_to_exclude=list(parameters.kb_exclude) or None,
            exclude_kbs_requiring_reboot=parameters.exclude_kbs_requiring_reboot,
            max_patch_publish_date=parameters.max_patch_publish_date,
        ),
    )


#: The one translation of azure-core's exceptions for a start request that failed: the
#: machine's outcome, or None to read it from the HTTP status (`_STATUS_OUTCOMES`). Every
#: class azure-core defines is listed (a test walks `azure.core.exceptions`). Whatever the
#: failure, it is this machine's outcome and the batch goes on.
START_FAILURES: Mapping[type[AzureError], OutcomeStatus | None] = {
    AzureError: OutcomeStatus.ERROR,
    HttpResponseError: None,
    ClientAuthenticationError: None,
    ResourceNotFoundError: OutcomeStatus.NOT_FOUND,
    ResourceExistsError: OutcomeStatus.CONFLICT,
    ResourceModifiedError: None,
    ResourceNotModifiedError: None,
    ODataV4Error: None,
    DecodeError: None,
    IncompleteReadError: OutcomeStatus.ERROR,
    TooManyRedirectsError: OutcomeStatus.ERROR,
    # Lost on the way, after azure-core's own retries: the operation may or may not exist.
    ServiceRequestError: OutcomeStatus.ERROR,
    ServiceRequestTimeoutError: OutcomeStatus.ERROR,
    ServiceResponseError: OutcomeStatus.ERROR,
    ServiceResponseTimeoutError: OutcomeStatus.ERROR,
    StreamClosedError: OutcomeStatus.ERROR,
    StreamConsumedError: OutcomeStatus.ERROR,
    ResponseNotReadError: OutcomeStatus.ERROR,
}
_STATUS_OUTCOMES = {
    404: OutcomeStatus.NOT_FOUND,
    409: OutcomeStatus.CONFLICT,
    429: OutcomeStatus.THROTTLED,
}

_RESULT_STATUS = {
    "succeeded": OutcomeStatus.SUCCEEDED,
    "completedwithwarnings": OutcomeStatus.COMPLETED_WITH_WARNINGS,
    "failed": OutcomeStatus.FAILED,
}
_REBOOT_STATUS = {status.value.lower(): status for status in RebootStatus}


def _reboot_status(value: object) -> RebootStatus | None:
    if value is None:
        return None
    return _REBOOT_STATUS.get(_text(value).lower(), RebootStatus.UNKNOWN)


def _text(value: object) -> str:
    """The wire text of an SDK enum member or plain string (`str()` of a member is its name)."""
    if value is None:
        return ""
    return str(getattr(value, "value", value))
