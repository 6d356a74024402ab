"""Assess and install patches on many Azure VMs and Azure Arc machines through their
resource providers' long-running operations (Microsoft.Compute, Microsoft.HybridCompute).

`ComputePatchOperations` follows `hotpatch.ports.PatchOperations`: it takes machines in
domain words and returns one `OperationOutcome` per machine, whatever happened to it. Inside:

- one client per resource provider and subscription (a client is bound to one): Azure VMs
  through `azure.mgmt.compute.aio.ComputeManagementClient`, Azure Arc-enabled servers
  (`Microsoft.HybridCompute/machines`) through `azure.mgmt.hybridcompute.aio`'s; all share one
  pooled aiohttp session. What differs between the two (client, model classes, api-version,
  the shape of the results) is one `_Provider` each; everything else below is shared;
- a bound on operations in flight overall and per subscription, held from the start request to
  the final result;
- every poller awaited to its end with the service's `Retry-After` honoured (azure-core does
  that); an operation still running at `operation_timeout` is recorded as `timed_out` with the
  poller's continuation token, and `resume` finishes it later; nothing is fire-and-forget;
- writes paced per subscription (`hotpatch.azure.write_pacing`): a start waits for its pace
  before its request is handed to the SDK, so cancelling a run while starts wait sends nothing;
- failures translated by one table (`START_FAILURES`) into the machine's outcome;
- a machine's start request carries the `x-ms-client-request-id` the caller chose for it, if
  any (the journal records it before the request is sent).

Naming: the adapter follows DESIGN's batch design rather than the Azure SDK's one-resource
verbs. `assess`/`install` take many machines and await every long-running operation to its
end (no `begin_*` handle escapes: each poller's continuation token is recorded in the
outcome instead, and `resume` follows it), because a batch that returned pollers would leave
the caller to await thousands of them under the same concurrency and pacing rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import io
import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

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
from azure.mgmt.compute import models as compute_models
from azure.mgmt.compute.aio import ComputeManagementClient
from azure.mgmt.hybridcompute import models as hybrid_models
from azure.mgmt.hybridcompute.aio import HybridComputeManagementClient

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
    request_ids_for,
    resumable_only,
)

__all__ = [
    "ARC_API_VERSION",
    "ARM_ENDPOINT",
    "CLIENT_REQUEST_ID_HEADER",
    "WRITES_REMAINING_HEADER",
    "ClientFactory",
    "ComputePatchOperations",
    "HybridClientFactory",
    "Limits",
    "Policy",
    "ThrottleEvent",
    "WriteBudget",
    "install_body",
    "utc_now",
]

ARM_ENDPOINT = "https://management.azure.com"
#: The api-version Arc patch operations are sent with, whichever azure-mgmt-hybridcompute is
#: installed (9.x sends it by default, 10.x a newer one): a stable version with assessPatches
#: and installPatches (Azure/azure-rest-api-specs, specification/hybridcompute/resource-manager/
#: Microsoft.HybridCompute/stable/2024-07-10/examples/machine/Machine_InstallPatches.json).
ARC_API_VERSION = "2024-07-10"
CLIENT_REQUEST_ID_HEADER = "x-ms-client-request-id"

_log = logging.getLogger(__name__)

Policy = AsyncHTTPPolicy[HttpRequest, AsyncHttpResponse]
#: Builds the client of one subscription. It must add `policies` to the client's
#: `per_retry_policies` (the adapter paces and observes each attempt through them); the
#: adapter closes every client it asked for when it is closed.
ClientFactory = Callable[[str, Sequence[Policy]], ComputeManagementClient]
#: The same for the Azure Arc machines' client.
HybridClientFactory = Callable[[str, Sequence[Policy]], HybridComputeManagementClient]
_Poller = AsyncLROPoller[Any]
_Client = TypeVar("_Client", ComputeManagementClient, HybridComputeManagementClient)


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
    parameters: InstallParameters | None = None
    #: The earlier outcome being resumed.
    earlier: OperationOutcome | None = None
    #: The `x-ms-client-request-id` of the start request; None lets the SDK choose one.
    request_id: str | None = None


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
    """`PatchOperations` on Azure Compute and Azure Arc (or the sandbox). Use with `async with`,
    or `close()`.

    Give either a `credential` (with `base_url` and `connection_verify` for the sandbox: the
    path of its CA file), or client factories: `client_factory` for VMs,
    `hybrid_client_factory` for Arc machines (a kind given neither a factory nor a credential
    ends its machines' operations with an error outcome).
    """

    def __init__(
        self,
        *,
        credential: AsyncTokenCredential | None = None,
        base_url: str = ARM_ENDPOINT,
        connection_verify: bool | str = True,
        client_factory: ClientFactory | None = None,
        hybrid_client_factory: HybridClientFactory | None = None,
        limits: Limits | None = None,
        clock: Clock | None = None,
    ) -> None:
        if credential is None and client_factory is None and hybrid_client_factory is None:
            raise ValueError("give a credential or a client_factory")
        self.limits = limits or Limits()
        self._credential = credential
        self._base_url = base_url
        self._verify = connection_verify
        self._factories: dict[MachineKind, Callable[[str, Sequence[Policy]], _Closable]] = {}
        if client_factory is not None:
            self._factories[MachineKind.VM] = client_factory
        if hybrid_client_factory is not None:
            self._factories[MachineKind.ARC] = hybrid_client_factory
        self._clock = clock or utc_now
        self._clients: dict[tuple[MachineKind, str], _Closable] = {}
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
        self,
        machines: Sequence[MachineRef],
        *,
        on_outcome: OutcomeCallback | None = None,
        client_request_ids: Mapping[str, str] | None = None,
    ) -> list[OperationOutcome]:
        distinct_machines(machines)
        ids = request_ids_for(machines, client_request_ids)
        jobs = [_Job(m, OperationKind.ASSESS, request_id=ids.get(m.key)) for m in machines]
        return await self._batch(jobs, on_outcome)

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
        jobs = [
            _Job(m, OperationKind.INSTALL, parameters, request_id=ids.get(m.key)) for m in machines
        ]
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
        started = job.earlier.started if job.earlier else self._clock()
        attempt = _Attempt(job, _Tally(), started)
        try:
            # Writes are paced and bounded per subscription, whichever provider they go to:
            # ARM's write quota is the subscription's.
            async with self._slot(machine.subscription):
                outcome = await self._operate(attempt)
        except asyncio.CancelledError:
            # The caller gave up on the batch: say how far this machine got, with the token
            # of an operation already started, before the cancellation goes on.
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
        verbs = self._verbs(job.machine)
        permit = None
        if job.earlier is None:
            attempt.started = self._clock()  # the wait for a slot is not the operation's time
            # Wait for the subscription's write pace here, before anything is handed to the
            # SDK: a cancellation during the wait ends it cleanly, with nothing sent.
            permit = attempt.permit = await self._pacer(job.machine.subscription.lower()).permit()
        start = asyncio.create_task(self._begin(verbs, job, attempt.tally, permit))
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
        operations: _PatchVerbs,
        job: _Job,
        tally: _Tally,
        permit: WritePermit | None,
    ) -> _Poller:
        machine = job.machine
        options: dict[str, Any] = {
            "raw_response_hook": tally.observe,
            "polling_interval": self.limits.poll_interval.total_seconds(),
        }
        if permit is not None:
            options[PERMIT_OPTION] = permit
        if job.earlier is not None:
            options["continuation_token"] = job.earlier.resume_token
        elif job.request_id is not None:
            # The SDK's generated code hands `headers` to the start request only (its polls
            # get ids of their own); azure-core keeps a request id already set, retries too.
            options["headers"] = {CLIENT_REQUEST_ID_HEADER: job.request_id}
        group, name = machine.resource_group, machine.name
        if job.operation is OperationKind.ASSESS:
            return await operations.begin_assess_patches(group, name, **options)
        if job.parameters is None:
            # Resuming: the SDK's signature wants a body it does not send with a token.
            unsent = io.BytesIO(b"{}")
            return await operations.begin_install_patches(group, name, unsent, **options)
        body = install_body(job.parameters, machine.kind)
        return await operations.begin_install_patches(group, name, body, **options)

    # -- clients --------------------------------------------------------------------------------

    def _verbs(self, machine: MachineRef) -> _PatchVerbs:
        """The patch operations of the machine's provider, in the machine's subscription."""
        provider, key = _PROVIDERS[machine.kind], machine.subscription.lower()
        client = self._clients.get((machine.kind, key))
        if client is None:
            factory = self._factories.get(machine.kind)
            if factory is None:
                if self._credential is None:
                    raise ValueError(
                        f"no client for {provider.namespace}: give a credential or its factory"
                    )
                factory = functools.partial(self._client_for, provider)
            client = factory(machine.subscription, [PacingPolicy(self._pacer(key))])
            self._clients[(machine.kind, key)] = client
        return provider.verbs(client)

    def _pacer(self, key: str) -> WritePacer:
        pacer = self._pacers.get(key)
        if pacer is None:
            pacer = WritePacer(key, self.limits.write_budget, self._throttled)
            self._pacers[key] = pacer
        return pacer

    def _throttled(self, subscription: str, retry_after: float, write: bool) -> None:
        self._throttles.append(ThrottleEvent(subscription, self._clock(), retry_after, write))

    def _client_for(
        self, provider: _Provider[Any], subscription: str, policies: Sequence[Policy]
    ) -> _Closable:
        assert self._credential is not None
        # One pooled session for every client: azure-core builds an SSL context per request
        # when given `connection_verify=<path>`, which defeats connection reuse.
        transport = AioHttpTransport(session=self._shared_session(), session_owner=False)
        pinned = {"api_version": provider.api_version} if provider.api_version else {}
        client: _Closable = provider.client(
            self._credential,
            subscription,
            base_url=self._base_url,
            transport=transport,
            per_retry_policies=list(policies),
            polling_interval=self.limits.poll_interval.total_seconds(),
            **pinned,
        )
        return client

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

    def _finished(self, attempt: _Attempt, result: Any) -> OperationOutcome:
        job = attempt.job
        reading = _PROVIDERS[job.machine.kind].read(job.operation, result)
        status = _RESULT_STATUS.get(reading.status.lower())
        code, message = reading.error_code, reading.message
        if status is None:
            status = OutcomeStatus.ERROR
            code = code or "UnexpectedStatus"
            message = (
                message or f"the operation ended reporting status {reading.status or 'none'!r}"
            )
        return self._outcome(attempt, status, code, message, **reading.fields)


def install_body(parameters: InstallParameters, kind: MachineKind = MachineKind.VM) -> Any:
    """The `installPatches` body for `parameters`, as the SDK model of `kind`'s provider (the
    only place the SDK models are built; both providers read the same JSON)."""
    models = _PROVIDERS[kind].models
    return models.body(
        maximum_duration=parameters.maximum_duration,
        reboot_setting=parameters.reboot_setting.value,
        windows_parameters=models.windows(
            classifications_to_include=[c.value for c in parameters.classifications],
            kb_numbers_to_include=list(parameters.kb_include) or None,
            kb_numbers_to_exclude=list(parameters.kb_exclude) or None,
            exclude_kbs_requiring_reboot=parameters.exclude_kbs_requiring_reboot,
            max_patch_publish_date=parameters.max_patch_publish_date,
        ),
    )


# -- the two providers ---------------------------------------------------------------------------


class _Closable(Protocol):
    async def close(self) -> None: ...


class _PatchVerbs(Protocol):
    """What the adapter calls on either provider's machine operations (`virtual_machines` of
    the Compute client, `machines` of the Hybrid Compute client)."""

    # `*args: Any` on purpose: the two SDKs name the machine differently (`vm_name`, `name`),
    # and stubs with positional-only parameters do not match their traced methods.
    def begin_assess_patches(
        self, *group_and_name: Any, **options: Any
    ) -> Awaitable[AsyncLROPoller[Any]]: ...

    def begin_install_patches(
        self, *group_name_and_body: Any, **options: Any
    ) -> Awaitable[AsyncLROPoller[Any]]: ...


class _ResultError(Protocol):
    @property
    def code(self) -> str | None: ...

    @property
    def message(self) -> str | None: ...


class _InstallSummary(Protocol):
    """The counts both providers' install results carry under the same names."""

    @property
    def status(self) -> object: ...

    @property
    def installation_activity_id(self) -> str | None: ...

    @property
    def installed_patch_count(self) -> int | None: ...

    @property
    def failed_patch_count(self) -> int | None: ...

    @property
    def pending_patch_count(self) -> int | None: ...

    @property
    def excluded_patch_count(self) -> int | None: ...

    @property
    def not_selected_patch_count(self) -> int | None: ...

    @property
    def reboot_status(self) -> object: ...

    @property
    def maintenance_window_exceeded(self) -> bool | None: ...


@dataclass(frozen=True, slots=True)
class _Reading:
    """A finished operation's result, read into the outcome's words."""

    status: str
    error_code: str | None
    message: str
    fields: Mapping[str, Any]

    @classmethod
    def of(cls, status: object, error: _ResultError | None, **fields: Any) -> _Reading:
        code, message = (error.code, error.message or "") if error is not None else (None, "")
        return cls(_text(status), code, message, fields)


@dataclass(frozen=True, slots=True)
class _Models:
    """A provider's install body classes."""

    body: Callable[..., Any]
    windows: Callable[..., Any]


@dataclass(frozen=True, slots=True)
class _Provider(Generic[_Client]):
    """What differs between Azure VMs and Azure Arc machines: the rest is shared."""

    namespace: str
    client: Callable[..., _Client]
    #: The api-version the client is pinned to; None keeps the SDK's own.
    api_version: str | None
    verbs: Callable[[_Client], _PatchVerbs]
    models: _Models
    #: Reads a finished assess or install result.
    read: Callable[[OperationKind, Any], _Reading]


def _installation(result: _InstallSummary, error: _ResultError | None, **more: Any) -> _Reading:
    return _Reading.of(
        result.status,
        error,
        activity_id=result.installation_activity_id,
        installed=result.installed_patch_count,
        failed=result.failed_patch_count,
        pending=result.pending_patch_count,
        excluded=result.excluded_patch_count,
        not_selected=result.not_selected_patch_count,
        reboot_status=_reboot_status(result.reboot_status),
        maintenance_window_exceeded=result.maintenance_window_exceeded,
        **more,
    )


def _vm_verbs(client: ComputeManagementClient) -> _PatchVerbs:
    return client.virtual_machines


def _read_vm(operation: OperationKind, result: Any) -> _Reading:
    if operation is OperationKind.ASSESS:
        assessed: compute_models.VirtualMachineAssessPatchesResult = result
        return _Reading.of(
            assessed.status,
            assessed.error,
            activity_id=assessed.assessment_activity_id,
            critical_and_security=assessed.critical_and_security_patch_count,
            other=assessed.other_patch_count,
            reboot_pending=assessed.reboot_pending,
        )
    installed: compute_models.VirtualMachineInstallPatchesResult = result
    kbs = [
        patch.kb_id
        for patch in installed.patches or ()
        if patch.kb_id and _text(patch.installation_state).lower() == "installed"
    ]
    return _installation(installed, installed.error, installed_kbs=kbs)


def _arc_verbs(client: HybridComputeManagementClient) -> _PatchVerbs:
    return client.machines


def _read_arc(operation: OperationKind, result: Any) -> _Reading:
    """Hybrid Compute's results: an assessment counts by classification and lists no
    patches; an install counts and lists no patches either (no `installed_kbs`); errors are
    under `errorDetails`."""
    if operation is OperationKind.ASSESS:
        assessed: hybrid_models.MachineAssessPatchesResult = result
        counts = assessed.available_patch_count_by_classification
        urgent = other = None
        if counts is not None:
            urgent = (counts.critical or 0) + (counts.security or 0)
            other = sum(
                value or 0
                for value in (
                    counts.definition,
                    counts.update_rollup,
                    counts.feature_pack,
                    counts.service_pack,
                    counts.tools,
                    counts.updates,
                    counts.other,
                )
            )
        return _Reading.of(
            assessed.status,
            assessed.error_details,
            activity_id=assessed.assessment_activity_id,
            critical_and_security=urgent,
            other=other,
            reboot_pending=assessed.reboot_pending,
        )
    installed: hybrid_models.MachineInstallPatchesResult = result
    return _installation(installed, installed.error_details)


_PROVIDERS: Mapping[MachineKind, _Provider[Any]] = {
    MachineKind.VM: _Provider(
        namespace="Microsoft.Compute",
        client=ComputeManagementClient,
        api_version=None,
        verbs=_vm_verbs,
        models=_Models(
            compute_models.VirtualMachineInstallPatchesParameters, compute_models.WindowsParameters
        ),
        read=_read_vm,
    ),
    MachineKind.ARC: _Provider(
        namespace="Microsoft.HybridCompute",
        client=HybridComputeManagementClient,
        api_version=ARC_API_VERSION,
        verbs=_arc_verbs,
        models=_Models(
            hybrid_models.MachineInstallPatchesParameters, hybrid_models.WindowsParameters
        ),
        read=_read_arc,
    ),
}


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
