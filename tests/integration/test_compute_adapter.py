"""The patch operations adapter (ComputePatchOperations) against the sandbox, and its contract."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import AsyncHTTPPolicy
from azure.core.rest import AsyncHttpResponse, HttpRequest
from azure.mgmt.compute.aio import ComputeManagementClient

from hotpatch.azure.compute import (
    ARC_API_VERSION,
    ComputePatchOperations,
    Limits,
    Policy,
    WriteBudget,
)
from hotpatch.data import shipped_release_catalog
from hotpatch.fakes import FakePatchOperations
from hotpatch.ports.patch_operations import (
    Classification,
    InstallParameters,
    MachineRef,
    OperationKind,
    OperationOutcome,
    OutcomeStatus,
    PatchOperations,
    RebootSetting,
    RebootStatus,
)
from hotpatch.sandbox.arm import Quota
from hotpatch.sandbox.estate import Estate, EstateSpec, generate_estate
from hotpatch.sandbox.request_log import LoggedRequest, read_requests
from hotpatch.sandbox.server import Sandbox
from tests.integration.conftest import (
    SUB_A,
    SUB_B,
    AsyncStaticToken,
    ManualClock,
    arc_row,
    vm_row,
)

pytestmark = pytest.mark.sandbox

Start = Callable[..., Sandbox]
#: A week after the May 2026 release, the newest the shipped catalog knows.
AS_OF = datetime(2026, 5, 19, 12, 0, tzinfo=UTC)
JANUARY = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)
ON_JANUARY_BASELINE = "10.0.20348.4648"
DECEMBER_HOTPATCH = "10.0.20348.4467"
FEBRUARY_HOTPATCH_KB = "5075943"
#: Windows Server 2025 (the Arc machines of `arc_row`): January baseline and February hotpatch.
ARC_ON_JANUARY_BASELINE = "10.0.26100.32230"
ARC_FEBRUARY_HOTPATCH = "10.0.26100.32313"
ARC_FEBRUARY_HOTPATCH_KB = "KB5075942"
#: Quick polls: the sandboxes here answer `Retry-After: 0`, so the poll interval decides.
QUICK = Limits(poll_interval=timedelta(seconds=0.01))


@pytest.fixture
def start(start_sandbox: Start) -> Start:
    """Sandboxes with short operations whose 202s say `Retry-After: 0`."""

    def starter(rows: Estate, **changes: Any) -> Sandbox:
        settings = {"operation_retry_after_seconds": 0, "operation_latency_seconds": 0.05}
        return start_sandbox(rows, **{**settings, **changes})

    return starter


def adapter(sandbox: Sandbox, clock: ManualClock, limits: Limits = QUICK) -> ComputePatchOperations:
    return ComputePatchOperations(
        credential=AsyncStaticToken(),
        base_url=sandbox.base_url,
        connection_verify=str(sandbox.ca_path),
        limits=limits,
        clock=clock.now,
    )


def machine(name: str, subscription: str = SUB_A) -> MachineRef:
    return MachineRef.parse(vm_row(name, subscription=subscription)["id"])


def logged(sandbox: Sandbox) -> list[LoggedRequest]:
    """The assess and install requests the sandbox answered, from its request log."""
    assert sandbox.state_dir is not None
    return read_requests(sandbox.state_dir)


def arc(name: str) -> MachineRef:
    return MachineRef.parse(arc_row(name)["id"])


def arcs(*names: str, **fields: Any) -> Estate:
    return Estate([arc_row(name, **fields) for name in names], [], [])


def vms(*names: str, **fields: Any) -> Estate:
    return Estate([vm_row(name, **fields) for name in names], [], [])


def running_vms(estate: Estate) -> list[MachineRef]:
    found = []
    for row in estate.resources:
        if row["type"].lower() != "microsoft.compute/virtualmachines":
            continue
        power = row["properties"]["extended"]["instanceView"].get("powerState", {}).get("code")
        if power == "PowerState/running":
            found.append(MachineRef.parse(row["id"]))
    return found


def latest_assessments(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    """Each machine's latest assessment summary in the sandbox's tables, by lower-case id."""
    result = sandbox.store.query(
        "patchassessmentresources "
        "| where type =~ 'microsoft.compute/virtualmachines/patchassessmentresults' "
        "| project id, properties",
        sandbox.readable_subscriptions,
        False,
    )
    rows = [json.loads(text) for text in result.rows]
    return {
        row["id"].lower().removesuffix("/patchassessmentresults/latest"): row["properties"]
        for row in rows
    }


def os_version(sandbox: Sandbox, name: str) -> str:
    """The build Resource Graph reports for the VM or Arc machine `name`."""
    result = sandbox.store.query(
        f"Resources | where name == '{name}' | project v = tostring(iff(type =~ "
        "'microsoft.hybridcompute/machines', properties.osVersion, "
        "properties.extended.instanceView.osVersion))",
        sandbox.readable_subscriptions,
        False,
    )
    return str(json.loads(result.rows[0])["v"])


async def wait_until(condition: Callable[[], bool]) -> None:
    """Let the event loop run until `condition` holds (a synchronisation, not a timing check)."""
    async with asyncio.timeout(30):
        while not condition():
            await asyncio.sleep(0.01)


# -- assess ---------------------------------------------------------------------------------------


async def test_assessments_of_a_batch_all_succeed_and_become_the_machines_latest_assessments(
    start: Start, clock: ManualClock
) -> None:
    clock.now_at = AS_OF
    estate = generate_estate(
        EstateSpec(machines=24, subscriptions=2, seed=11, as_of=AS_OF), shipped_release_catalog()
    )
    machines = running_vms(estate)
    sandbox = start(estate)
    async with adapter(sandbox, clock) as operations:
        outcomes = await operations.assess(machines)

    assert [o.machine_id for o in outcomes] == [m.id for m in machines]
    assert {o.status for o in outcomes} == {OutcomeStatus.SUCCEEDED}
    latest = latest_assessments(sandbox)
    for outcome in outcomes:
        summary = latest[outcome.machine_id.lower()]
        assert summary["assessmentActivityId"] == outcome.activity_id
        assert summary["rebootPending"] is outcome.reboot_pending
        counts = summary["availablePatchCountByClassification"]
        assert counts["critical"] + counts["security"] == outcome.critical_and_security


async def test_an_assessment_reports_the_months_hotpatch_as_a_missing_security_update(
    start: Start, clock: ManualClock
) -> None:
    sandbox = start(vms("vm-1", os_version=ON_JANUARY_BASELINE))
    async with adapter(sandbox, clock) as operations:
        [outcome] = await operations.assess([machine("vm-1")])
    assert (outcome.status, outcome.critical_and_security, outcome.other) == (
        OutcomeStatus.SUCCEEDED,
        1,
        0,
    )
    assert (outcome.attempts, outcome.retries, outcome.resume_token) == (1, 0, None)
    assert outcome.started <= outcome.finished


# -- install --------------------------------------------------------------------------------------


async def test_installing_the_months_hotpatch_moves_the_build_without_a_restart(
    start: Start, clock: ManualClock
) -> None:
    sandbox = start(vms("vm-1", os_version=ON_JANUARY_BASELINE))
    hotpatch_month = InstallParameters(reboot_setting=RebootSetting.NEVER)
    async with adapter(sandbox, clock) as operations:
        [outcome] = await operations.install([machine("vm-1")], hotpatch_month)
    assert (outcome.status, outcome.installed, outcome.reboot_status) == (
        OutcomeStatus.SUCCEEDED,
        1,
        RebootStatus.NOT_NEEDED,
    )
    assert outcome.maintenance_window_exceeded is False
    assert (outcome.installed_kbs, outcome.installed_kbs_complete) == (
        (f"KB{FEBRUARY_HOTPATCH_KB}",),
        True,
    )
    assert os_version(sandbox, "vm-1") == "10.0.20348.4711"


async def test_installing_a_baseline_with_reboot_never_leaves_the_machine_pending_a_reboot(
    start: Start, clock: ManualClock
) -> None:
    clock.now_at = JANUARY  # a baseline month
    sandbox = start(vms("vm-1", os_version=DECEMBER_HOTPATCH))
    no_restart = InstallParameters(reboot_setting=RebootSetting.NEVER)
    async with adapter(sandbox, clock) as operations:
        [outcome] = await operations.install([machine("vm-1")], no_restart)
    assert outcome.status is OutcomeStatus.SUCCEEDED
    assert outcome.reboot_status is RebootStatus.REQUIRED
    assert os_version(sandbox, "vm-1") == DECEMBER_HOTPATCH
    assert latest_assessments(sandbox)[machine("vm-1").key]["rebootPending"] is True


async def test_an_excluded_kb_is_passed_to_azure_and_not_installed(
    start: Start, clock: ManualClock
) -> None:
    sandbox = start(vms("vm-1", os_version=ON_JANUARY_BASELINE))
    parameters = InstallParameters(
        reboot_setting=RebootSetting.IF_REQUIRED,
        classifications=(Classification.SECURITY,),
        kb_exclude=(f"KB{FEBRUARY_HOTPATCH_KB}",),
    )
    async with adapter(sandbox, clock) as operations:
        [outcome] = await operations.install([machine("vm-1")], parameters)
    assert (outcome.installed, outcome.excluded) == (0, 1)
    assert outcome.installed_kbs == ()
    assert os_version(sandbox, "vm-1") == ON_JANUARY_BASELINE
    [request] = logged(sandbox)
    assert request.install is not None
    assert request.install.kbs_excluded == {f"KB{FEBRUARY_HOTPATCH_KB}"}


# -- failures isolated per machine ----------------------------------------------------------------


async def test_an_unknown_vm_is_a_not_found_outcome_and_the_batch_goes_on(
    start: Start, clock: ManualClock
) -> None:
    sandbox = start(vms("vm-1"))
    async with adapter(sandbox, clock) as operations:
        missing, present = await operations.assess([machine("no-such-vm"), machine("vm-1")])
    assert (missing.status, missing.error_code) == (OutcomeStatus.NOT_FOUND, "ResourceNotFound")
    assert "no-such-vm" in missing.message
    assert missing.resume_token is None
    assert present.status is OutcomeStatus.SUCCEEDED


async def test_a_deallocated_vm_is_a_conflict_outcome_naming_its_state(
    start: Start, clock: ManualClock
) -> None:
    sandbox = start(
        Estate([vm_row("vm-1", power="PowerState/deallocated"), vm_row("vm-2")], [], [])
    )
    async with adapter(sandbox, clock) as operations:
        stopped, running = await operations.assess([machine("vm-1"), machine("vm-2")])
    assert (stopped.status, stopped.error_code) == (OutcomeStatus.CONFLICT, "OperationNotAllowed")
    assert "deallocated" in stopped.message
    assert running.status is OutcomeStatus.SUCCEEDED


async def test_an_operation_still_running_at_its_timeout_is_recorded_with_a_resume_token(
    start: Start, clock: ManualClock
) -> None:
    clock.freeze()  # the assessment cannot finish until the clock moves
    sandbox = start(vms("vm-1"), operation_latency_seconds=5.0)
    impatient = Limits(
        poll_interval=timedelta(seconds=0.01), operation_timeout=timedelta(seconds=0.2)
    )
    async with adapter(sandbox, clock, impatient) as operations:
        [running] = await operations.assess([machine("vm-1")])
    assert (running.status, running.error_code) == (OutcomeStatus.TIMED_OUT, "OperationTimedOut")
    assert running.resume_token is not None
    assert running.critical_and_security is None

    clock.advance(5.0)
    async with adapter(sandbox, clock) as later:  # a later run, with a new adapter
        [finished] = await later.resume([running])
    assert finished.status is OutcomeStatus.SUCCEEDED
    assert (finished.started, finished.attempts) == (running.started, running.attempts)
    assert finished.resume_token is None
    assert latest_assessments(sandbox)[machine("vm-1").key]["assessmentActivityId"] == (
        finished.activity_id
    )


async def test_a_second_operation_on_a_busy_machine_is_a_conflict_outcome(
    start: Start, clock: ManualClock
) -> None:
    clock.freeze()
    sandbox = start(vms("vm-1"), operation_latency_seconds=5.0)
    impatient = Limits(
        poll_interval=timedelta(seconds=0.01), operation_timeout=timedelta(seconds=0.2)
    )
    async with adapter(sandbox, clock, impatient) as operations:
        [assessing] = await operations.assess([machine("vm-1")])
        [refused] = await operations.install(
            [machine("vm-1")], InstallParameters(reboot_setting=RebootSetting.NEVER)
        )
        clock.advance(5.0)
        [assessed] = await operations.resume([assessing])
    assert (refused.status, refused.error_code) == (OutcomeStatus.CONFLICT, "OperationNotAllowed")
    assert "assessPatches" in refused.message
    assert refused.resume_token is None
    assert assessed.status is OutcomeStatus.SUCCEEDED


async def test_cancelling_a_batch_reports_every_started_operation_with_its_resume_token(
    start: Start, clock: ManualClock
) -> None:
    clock.freeze()
    sandbox = start(vms("vm-1", "vm-2", "vm-3"), operation_latency_seconds=5.0)
    heard: list[OperationOutcome] = []
    machines = [machine("vm-1"), machine("vm-2"), machine("vm-3")]
    async with adapter(sandbox, clock) as operations:
        batch = asyncio.create_task(operations.assess(machines, on_outcome=heard.append))
        await wait_until(lambda: sandbox.counters().operations_started == 3)
        batch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await batch
        clock.advance(5.0)
        resumed = await operations.resume(heard)

    assert sorted(o.machine_id for o in heard) == sorted(m.id for m in machines)
    assert {(o.status, o.error_code) for o in heard} == {(OutcomeStatus.ERROR, "Cancelled")}
    assert all(o.resume_token for o in heard)
    assert {o.status for o in resumed} == {OutcomeStatus.SUCCEEDED}


async def test_cancelling_a_batch_while_starts_wait_for_the_write_pace_sends_none_of_them(
    start: Start, clock: ManualClock
) -> None:
    clock.freeze()
    names = [f"vm-{i}" for i in range(8)]
    sandbox = start(vms(*names), operation_latency_seconds=5.0, write_quota=None)
    # Three starts spend the budget; the other five wait for the window to pass.
    paced = Limits(
        poll_interval=timedelta(seconds=0.01),
        write_budget=WriteBudget(3, timedelta(seconds=6), margin=timedelta(0)),
    )
    heard: list[OperationOutcome] = []
    async with adapter(sandbox, clock, paced) as operations:
        batch = asyncio.create_task(
            operations.assess([machine(n) for n in names], on_outcome=heard.append)
        )
        await wait_until(lambda: sandbox.counters().operations_started == 3)
        batch.cancel()
        with pytest.raises(asyncio.CancelledError):
            await batch

    assert sandbox.counters().requests["compute.assessPatches"] == 3
    assert sandbox.counters().operations_started == 3
    started = [o for o in heard if o.resume_token]
    waiting = [o for o in heard if not o.resume_token]
    assert {(o.status, o.error_code) for o in started} == {(OutcomeStatus.ERROR, "Cancelled")}
    assert len(started) == 3
    assert {(o.status, o.error_code, o.attempts) for o in waiting} == {
        (OutcomeStatus.SKIPPED, "Cancelled", 0)
    }
    assert len(waiting) == 5


class UnreadableRetryAfter(AsyncHTTPPolicy[HttpRequest, AsyncHttpResponse]):
    """A per-retry policy spoiling the `Retry-After` of one method's 202 answers, so that the
    SDK fails reading them with an error that is no AzureError."""

    def __init__(self, method: str) -> None:
        super().__init__()
        self.method = method

    async def send(
        self, request: PipelineRequest[HttpRequest]
    ) -> PipelineResponse[HttpRequest, AsyncHttpResponse]:
        response = await self.next.send(request)
        answer = response.http_response
        if request.http_request.method == self.method and answer.status_code == 202:
            answer.headers["Retry-After"] = "soon"
        return response


def spoiled_in_sub_b(sandbox: Sandbox, method: str) -> Callable[..., ComputeManagementClient]:
    """Clients for the sandbox; SUB_B's answers to `method` cannot be read."""

    def client(subscription: str, policies: Sequence[Policy]) -> ComputeManagementClient:
        extra = [UnreadableRetryAfter(method)] if subscription == SUB_B else []
        return ComputeManagementClient(
            AsyncStaticToken(),
            subscription,
            base_url=sandbox.base_url,
            connection_verify=str(sandbox.ca_path),
            per_retry_policies=[*policies, *extra],
        )

    return client


async def test_a_start_answer_the_sdk_cannot_read_is_an_error_of_that_machine_not_a_bad_token(
    start: Start, clock: ManualClock
) -> None:
    sandbox = start(Estate([vm_row("vm-1"), vm_row("vm-2", subscription=SUB_B)], [], []))
    async with ComputePatchOperations(
        client_factory=spoiled_in_sub_b(sandbox, "POST"), limits=QUICK, clock=clock.now
    ) as operations:
        fine, unread = await operations.assess([machine("vm-1"), machine("vm-2", SUB_B)])
    assert fine.status is OutcomeStatus.SUCCEEDED
    assert unread.status is OutcomeStatus.ERROR
    assert unread.error_code == "ValueError"  # not "InvalidResumeToken": no token was read
    assert unread.attempts == 1


async def test_a_poll_answer_the_sdk_cannot_read_ends_only_that_machines_operation(
    start: Start, clock: ManualClock
) -> None:
    clock.freeze()  # the operations run until the clock moves: every poll answers 202
    sandbox = start(
        Estate([vm_row("vm-1"), vm_row("vm-2", subscription=SUB_B)], [], []),
        operation_latency_seconds=5.0,
    )
    impatient = Limits(
        poll_interval=timedelta(seconds=0.01), operation_timeout=timedelta(seconds=0.5)
    )
    async with ComputePatchOperations(
        client_factory=spoiled_in_sub_b(sandbox, "GET"), limits=impatient, clock=clock.now
    ) as operations:
        running, unread = await operations.assess([machine("vm-1"), machine("vm-2", SUB_B)])
    assert running.status is OutcomeStatus.TIMED_OUT
    assert (unread.status, unread.error_code) == (OutcomeStatus.ERROR, "ValueError")
    assert unread.resume_token is not None

    clock.advance(5.0)
    async with adapter(sandbox, clock) as later:
        resumed = await later.resume([running, unread])
    assert {o.status for o in resumed} == {OutcomeStatus.SUCCEEDED}


# -- throttling and bounds ------------------------------------------------------------------------


async def test_a_burst_of_write_throttling_is_waited_out_and_counted(
    start: Start, clock: ManualClock
) -> None:
    names = [f"vm-{i}" for i in range(6)]
    sandbox = start(vms(*names), write_quota=Quota(3, 1.0))
    # No budget of its own: the adapter learns the quota from ARM's answers only.
    unpaced = Limits(poll_interval=timedelta(seconds=0.01), write_budget=None)
    async with adapter(sandbox, clock, unpaced) as operations:
        outcomes = await operations.assess([machine(n) for n in names])
        events = operations.throttle_events()

    assert {o.status for o in outcomes} == {OutcomeStatus.SUCCEEDED}
    throttled = sum(o.throttled_answers for o in outcomes)
    assert throttled == sandbox.counters().throttled == len(events)
    assert throttled > 0
    assert sum(o.retries for o in outcomes) == throttled
    assert {(e.subscription, e.write) for e in events} == {(SUB_A, True)}


class ThrottledFirstPoll(AsyncHTTPPolicy[HttpRequest, AsyncHttpResponse]):
    """A per-retry policy turning the first status poll's answer into a long read 429."""

    def __init__(self) -> None:
        super().__init__()
        self.throttled = False

    async def send(
        self, request: PipelineRequest[HttpRequest]
    ) -> PipelineResponse[HttpRequest, AsyncHttpResponse]:
        response = await self.next.send(request)
        if request.http_request.method == "GET" and not self.throttled:
            self.throttled = True
            response.http_response.status_code = 429
            response.http_response.headers["Retry-After"] = "3600"
        return response


async def test_a_throttled_status_poll_does_not_hold_the_subscriptions_starts(
    start: Start, clock: ManualClock
) -> None:
    sandbox = start(vms("vm-1", "vm-2"))

    def client(subscription: str, policies: Sequence[Policy]) -> ComputeManagementClient:
        return ComputeManagementClient(
            AsyncStaticToken(),
            subscription,
            base_url=sandbox.base_url,
            connection_verify=str(sandbox.ca_path),
            per_retry_policies=[*policies, ThrottledFirstPoll()],
            retry_total=0,  # the poll's 429 ends its operation's run instead of a long wait
        )

    async with ComputePatchOperations(
        client_factory=client, limits=QUICK, clock=clock.now
    ) as operations:
        [throttled] = await operations.assess([machine("vm-1")])
        # ARM budgets reads apart from writes: the next start need not wait an hour.
        next_batch = asyncio.create_task(operations.assess([machine("vm-2")]))
        try:
            await wait_until(next_batch.done)
        finally:
            next_batch.cancel()
        [started] = next_batch.result()
        events = operations.throttle_events()

    assert throttled.status is OutcomeStatus.THROTTLED
    assert throttled.resume_token is not None
    assert started.status is OutcomeStatus.SUCCEEDED
    assert [(e.subscription, e.write) for e in events] == [(SUB_A, False)]


async def test_pacing_keeps_a_batch_inside_the_subscription_write_quota(
    start: Start, clock: ManualClock
) -> None:
    names = [f"vm-{i}" for i in range(10)]
    sandbox = start(vms(*names), write_quota=Quota(4, 1.0))
    paced = Limits(
        poll_interval=timedelta(seconds=0.01),
        write_budget=WriteBudget(4, timedelta(seconds=1), margin=timedelta(seconds=0.3)),
    )
    async with adapter(sandbox, clock, paced) as operations:
        outcomes = await operations.assess([machine(n) for n in names])
    assert {o.status for o in outcomes} == {OutcomeStatus.SUCCEEDED}
    assert sandbox.counters().throttled == 0
    assert sum(o.retries for o in outcomes) == 0


class InFlightMeter:
    """Operations between their accepted start (202) and final answer (200), seen on the wire."""

    def __init__(self) -> None:
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.peak_overall = 0

    def started(self, subscription: str) -> None:
        self.now[subscription] += 1
        self.peak[subscription] = max(self.peak[subscription], self.now[subscription])
        self.peak_overall = max(self.peak_overall, self.now.total())

    def finished(self, subscription: str) -> None:
        self.now[subscription] -= 1


class Metered(AsyncHTTPPolicy[HttpRequest, AsyncHttpResponse]):
    """A per-retry policy telling the meter about one subscription's operations."""

    def __init__(self, meter: InFlightMeter, subscription: str) -> None:
        super().__init__()
        self.meter, self.subscription = meter, subscription

    async def send(
        self, request: PipelineRequest[HttpRequest]
    ) -> PipelineResponse[HttpRequest, AsyncHttpResponse]:
        response = await self.next.send(request)
        method, status = request.http_request.method, response.http_response.status_code
        if (method, status) == ("POST", 202):
            self.meter.started(self.subscription)
        elif (method, status) == ("GET", 200):
            self.meter.finished(self.subscription)
        return response


async def test_operations_in_flight_stay_within_the_overall_and_per_subscription_bounds(
    start: Start, clock: ManualClock
) -> None:
    names = [(f"vm-{i}", SUB_A if i % 2 else SUB_B) for i in range(10)]
    sandbox = start(
        Estate([vm_row(n, subscription=s) for n, s in names], [], []),
        operation_latency_seconds=0.2,
    )
    meter = InFlightMeter()

    def client(subscription: str, policies: Sequence[Policy]) -> ComputeManagementClient:
        return ComputeManagementClient(
            AsyncStaticToken(),
            subscription,
            base_url=sandbox.base_url,
            connection_verify=str(sandbox.ca_path),
            per_retry_policies=[*policies, Metered(meter, subscription)],
        )

    bounded = Limits(max_concurrency=3, per_subscription=2, poll_interval=timedelta(seconds=0.01))
    async with ComputePatchOperations(
        client_factory=client, limits=bounded, clock=clock.now
    ) as operations:
        outcomes = await operations.assess([machine(n, s) for n, s in names])

    assert {o.status for o in outcomes} == {OutcomeStatus.SUCCEEDED}
    assert meter.peak_overall == 3
    assert max(meter.peak.values()) == 2
    assert sum(meter.now.values()) == 0


# -- Azure Arc machines ---------------------------------------------------------------------------


def latest_arc_assessment(sandbox: Sandbox, name: str) -> dict[str, Any]:
    result = sandbox.store.query(
        "patchassessmentresources "
        "| where type =~ 'microsoft.hybridcompute/machines/patchassessmentresults' "
        f"| where id contains '/machines/{name}/' | project properties",
        sandbox.readable_subscriptions,
        False,
    )
    [row] = [json.loads(text) for text in result.rows]
    properties: dict[str, Any] = row["properties"]
    return properties


async def test_an_arc_machine_is_assessed_through_hybrid_compute_and_its_result_read_back(
    start: Start, clock: ManualClock
) -> None:
    sandbox = start(arcs("arc-1", os_version=ARC_ON_JANUARY_BASELINE))
    async with adapter(sandbox, clock) as operations:
        [outcome] = await operations.assess([arc("arc-1")])
    assert (outcome.status, outcome.critical_and_security, outcome.other) == (
        OutcomeStatus.SUCCEEDED,
        1,
        0,
    )
    assert (outcome.reboot_pending, outcome.attempts) == (False, 1)
    assert latest_arc_assessment(sandbox, "arc-1")["assessmentActivityId"] == outcome.activity_id
    [operation] = sandbox.operations.operations.values()
    assert (operation.provider, operation.api_version) == (
        "Microsoft.HybridCompute",
        ARC_API_VERSION,
    )


async def test_an_arc_machine_installs_its_hotpatch_and_its_new_build_is_read_back(
    start: Start, clock: ManualClock
) -> None:
    sandbox = start(arcs("arc-1", os_version=ARC_ON_JANUARY_BASELINE))
    async with adapter(sandbox, clock) as operations:
        [outcome] = await operations.install(
            [arc("arc-1")], InstallParameters(reboot_setting=RebootSetting.NEVER)
        )
    assert (outcome.status, outcome.installed, outcome.reboot_status) == (
        OutcomeStatus.SUCCEEDED,
        1,
        RebootStatus.NOT_NEEDED,
    )
    # Hybrid Compute's install result counts patches without naming them.
    assert (outcome.installed_kbs, outcome.installed_kbs_complete) == ((), False)
    assert os_version(sandbox, "arc-1") == ARC_FEBRUARY_HOTPATCH
    assert (
        latest_arc_assessment(sandbox, "arc-1")["availablePatchCountByClassification"]["security"]
        == 0
    )


async def test_an_arc_install_passes_its_filters_to_hybrid_compute(
    start: Start, clock: ManualClock
) -> None:
    sandbox = start(arcs("arc-1", os_version=ARC_ON_JANUARY_BASELINE))
    parameters = InstallParameters(
        reboot_setting=RebootSetting.NEVER, kb_exclude=(ARC_FEBRUARY_HOTPATCH_KB,)
    )
    async with adapter(sandbox, clock) as operations:
        [outcome] = await operations.install([arc("arc-1")], parameters)
    assert (outcome.installed, outcome.excluded) == (0, 1)
    assert outcome.installed_kbs_complete
    assert os_version(sandbox, "arc-1") == ARC_ON_JANUARY_BASELINE
    [request] = logged(sandbox)
    assert request.install is not None
    assert request.path.endswith("/providers/Microsoft.HybridCompute/machines/arc-1/installPatches")
    assert request.install.kbs_excluded == {ARC_FEBRUARY_HOTPATCH_KB}


async def test_arc_refusals_become_outcomes_by_the_same_table_as_vms(
    start: Start, clock: ManualClock
) -> None:
    sandbox = start(
        Estate([arc_row("arc-1", status="Disconnected"), arc_row("arc-2"), vm_row("vm-1")], [], [])
    )
    async with adapter(sandbox, clock) as operations:
        outcomes = await operations.assess([arc("arc-1"), arc("no-such-arc"), machine("vm-1")])
    disconnected, missing, vm = outcomes
    assert (disconnected.status, disconnected.error_code) == (
        OutcomeStatus.CONFLICT,
        "OperationNotAllowed",
    )
    assert "Disconnected" in disconnected.message
    assert (missing.status, missing.error_code) == (OutcomeStatus.NOT_FOUND, "ResourceNotFound")
    assert "Microsoft.HybridCompute/machines/no-such-arc" in missing.message
    assert vm.status is OutcomeStatus.SUCCEEDED


async def test_an_arc_operation_still_running_at_its_timeout_is_resumed_from_its_token(
    start: Start, clock: ManualClock
) -> None:
    clock.freeze()
    sandbox = start(
        arcs("arc-1", os_version=ARC_ON_JANUARY_BASELINE), operation_latency_seconds=5.0
    )
    impatient = Limits(
        poll_interval=timedelta(seconds=0.01), operation_timeout=timedelta(seconds=0.2)
    )
    async with adapter(sandbox, clock, impatient) as operations:
        [running] = await operations.install(
            [arc("arc-1")], InstallParameters(reboot_setting=RebootSetting.NEVER)
        )
        [busy] = await operations.assess([arc("arc-1")])
    assert (running.status, busy.status) == (OutcomeStatus.TIMED_OUT, OutcomeStatus.CONFLICT)
    assert running.resume_token is not None

    clock.advance(5.0)
    async with adapter(sandbox, clock) as later:
        [finished] = await later.resume([running])
    assert (finished.status, finished.installed) == (OutcomeStatus.SUCCEEDED, 1)
    assert [r.operation for r in logged(sandbox)] == [
        "installPatches",
        "assessPatches",
    ]


# -- client request ids ----------------------------------------------------------------------------


async def test_each_start_request_carries_the_client_request_id_given_for_its_machine(
    start: Start, clock: ManualClock
) -> None:
    sandbox = start(Estate([vm_row("vm-1"), vm_row("vm-2"), arc_row("arc-1")], [], []))
    machines = [machine("vm-1"), machine("vm-2"), arc("arc-1")]
    ids = {machine("vm-1").key: "journal-vm-1", arc("arc-1").key: "journal-arc-1"}
    async with adapter(sandbox, clock) as operations:
        outcomes = await operations.install(
            machines,
            InstallParameters(reboot_setting=RebootSetting.NEVER),
            client_request_ids=ids,
        )
    assert {o.status for o in outcomes} == {OutcomeStatus.SUCCEEDED}
    sent = {r.machine_key: r.client_request_id for r in logged(sandbox)}
    assert sent[machine("vm-1").key] == "journal-vm-1"
    assert sent[arc("arc-1").key] == "journal-arc-1"
    # A machine given no id gets the SDK's own, never another machine's.
    assert sent[machine("vm-2").key] not in {None, "journal-vm-1", "journal-arc-1"}


async def test_a_start_retried_after_throttling_carries_the_same_client_request_id(
    start: Start, clock: ManualClock
) -> None:
    sandbox = start(vms("vm-1", "vm-2"), write_quota=Quota(1, 1.0))
    unpaced = Limits(poll_interval=timedelta(seconds=0.01), write_budget=None)
    ids = {machine("vm-1").key: "journal-1", machine("vm-2").key: "journal-2"}
    async with adapter(sandbox, clock, unpaced) as operations:
        outcomes = await operations.assess(
            [machine("vm-1"), machine("vm-2")], client_request_ids=ids
        )
    assert {o.status for o in outcomes} == {OutcomeStatus.SUCCEEDED}
    requests = logged(sandbox)
    assert any(r.status == 429 for r in requests)
    assert {(r.machine_key, r.client_request_id) for r in requests} == set(ids.items())


# -- the contract both implementations keep -------------------------------------------------------

CONTRACT_VMS = ("vm-1", "vm-2", "vm-3")


@pytest.fixture(params=["fake", "sandbox"])
async def implementation(
    request: pytest.FixtureRequest, start: Start, clock: ManualClock
) -> AsyncIterator[PatchOperations]:
    if request.param == "fake":
        yield FakePatchOperations(clock=clock.now)
        return
    sandbox = start(Estate([*vms(*CONTRACT_VMS).resources, arc_row("arc-1")], [], []))
    async with adapter(sandbox, clock) as operations:
        yield operations


def contract_machines() -> list[MachineRef]:
    arc = MachineRef.parse(arc_row("arc-1")["id"])
    return [machine("vm-2"), arc, machine("vm-1"), machine("vm-3")]


async def test_a_batch_answers_one_outcome_per_machine_in_the_order_given(
    implementation: PatchOperations,
) -> None:
    machines = contract_machines()
    heard: list[OperationOutcome] = []
    outcomes = await implementation.install(
        machines, InstallParameters(reboot_setting=RebootSetting.NEVER), on_outcome=heard.append
    )
    assert [o.machine_id for o in outcomes] == [m.id for m in machines]
    assert sorted(heard, key=lambda o: o.machine_id) == sorted(outcomes, key=lambda o: o.machine_id)
    assert {o.operation for o in outcomes} == {OperationKind.INSTALL}
    assert {o.status for o in outcomes} == {OutcomeStatus.SUCCEEDED}
    assert all(o.reboot_status is not None for o in outcomes)


async def test_a_batch_naming_a_machine_twice_is_refused_before_anything_starts(
    implementation: PatchOperations,
) -> None:
    twice = [machine("vm-1"), MachineRef.parse(machine("vm-1").id.upper())]
    with pytest.raises(ValueError, match="more than once"):
        await implementation.assess(twice)


async def test_resuming_a_machine_twice_in_one_batch_is_refused_before_anything_starts(
    implementation: PatchOperations, clock: ManualClock
) -> None:
    unfinished = OperationOutcome(
        machine_id=machine("vm-1").id,
        operation=OperationKind.ASSESS,
        status=OutcomeStatus.TIMED_OUT,
        started=clock.now(),
        finished=clock.now(),
        resume_token="token",
    )
    with pytest.raises(ValueError, match="more than once"):
        await implementation.resume([unfinished, unfinished])


async def test_resuming_an_outcome_that_has_no_token_is_refused(
    implementation: PatchOperations,
) -> None:
    [finished] = await implementation.assess([machine("vm-1")])
    with pytest.raises(ValueError, match="nothing to resume"):
        await implementation.resume([finished])


async def test_a_client_request_id_for_a_machine_outside_the_batch_is_refused(
    implementation: PatchOperations,
) -> None:
    with pytest.raises(ValueError, match="not in the batch"):
        await implementation.install(
            [machine("vm-1")],
            InstallParameters(reboot_setting=RebootSetting.NEVER),
            client_request_ids={machine("vm-2").key: "journal-vm-2"},
        )
