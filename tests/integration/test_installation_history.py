"""Resource Graph lists each installation while it runs and when it ends: the journal's witness."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from hotpatch.azure.compute import ComputePatchOperations, Limits
from hotpatch.azure.resource_graph import ResourceGraphInventory, resource_graph_client
from hotpatch.ports.inventory import Scope
from hotpatch.ports.patch_operations import (
    InstallParameters,
    MachineRef,
    OutcomeStatus,
    RebootSetting,
)
from hotpatch.sandbox.estate import Estate
from hotpatch.sandbox.server import Sandbox
from tests.integration.conftest import (
    FEBRUARY,
    AsyncStaticToken,
    ManualClock,
    StaticToken,
    vm_row,
)
from tests.integration.test_compute_adapter import QUICK, Start, os_version

pytestmark = pytest.mark.sandbox

ON_JANUARY_BASELINE = "10.0.20348.4648"
HOTPATCH_MONTH = InstallParameters(reboot_setting=RebootSetting.NEVER)
#: Give up following an operation almost at once: it is still running in the sandbox.
SHORT_WAIT = replace(QUICK, operation_timeout=timedelta(seconds=0.2))


@pytest.fixture
def start(start_sandbox: Start) -> Start:
    def starter(rows: Estate, **changes: object) -> Sandbox:
        settings = {"operation_retry_after_seconds": 0, "operation_latency_seconds": 0.05}
        return start_sandbox(rows, **{**settings, **changes})

    return starter


def inventory(sandbox: Sandbox) -> ResourceGraphInventory:
    client = resource_graph_client(
        StaticToken(), base_url=sandbox.base_url, connection_verify=str(sandbox.ca_path)
    )
    return ResourceGraphInventory(client)


def operations(
    sandbox: Sandbox, clock: ManualClock, limits: Limits = QUICK
) -> ComputePatchOperations:
    return ComputePatchOperations(
        credential=AsyncStaticToken(),
        base_url=sandbox.base_url,
        connection_verify=str(sandbox.ca_path),
        limits=limits,
        clock=clock.now,
    )


def vm(name: str) -> MachineRef:
    return MachineRef.parse(vm_row(name)["id"])


async def test_an_install_is_listed_while_it_runs_and_then_with_the_kbs_it_installed(
    start: Start, clock: ManualClock
) -> None:
    sandbox = start(
        Estate([vm_row("vm-1", os_version=ON_JANUARY_BASELINE)], [], []),
        operation_latency_seconds=3600.0,
    )
    graph = inventory(sandbox)
    before = FEBRUARY - timedelta(minutes=1)
    assert graph.installations_since(Scope(), before) == []

    async with operations(sandbox, clock, SHORT_WAIT) as patching:
        [outcome] = await patching.install([vm("vm-1")], HOTPATCH_MONTH)
    assert outcome.status is OutcomeStatus.TIMED_OUT
    [running] = graph.installations_since(Scope(), before)
    assert (running.machine_id, running.status, running.running) == (
        vm("vm-1").key,
        "InProgress",
        True,
    )
    assert graph.installations_since(Scope(), FEBRUARY + timedelta(minutes=1)) == []


async def test_a_finished_install_is_listed_with_its_status_and_installed_kbs(
    start: Start, clock: ManualClock
) -> None:
    sandbox = start(Estate([vm_row("vm-1", os_version=ON_JANUARY_BASELINE)], [], []))
    async with operations(sandbox, clock) as patching:
        [outcome] = await patching.install([vm("vm-1")], HOTPATCH_MONTH)
    assert outcome.status is OutcomeStatus.SUCCEEDED
    [done] = inventory(sandbox).installations_since(Scope(), FEBRUARY - timedelta(minutes=1))
    assert (done.status, done.succeeded, done.running, done.kbs) == (
        "Succeeded",
        True,
        False,
        ("KB5075943",),
    )
    assert done.activity_id == outcome.activity_id


async def test_a_machine_set_to_fail_reports_a_failed_install_and_keeps_its_build(
    start: Start, clock: ManualClock
) -> None:
    sandbox = start(
        Estate([vm_row("vm-1", os_version=ON_JANUARY_BASELINE)], [], []),
        failing_installs=frozenset({vm("vm-1").id}),
    )
    async with operations(sandbox, clock) as patching:
        [outcome] = await patching.install([vm("vm-1")], HOTPATCH_MONTH)
    assert (outcome.status, outcome.installed, outcome.failed) == (OutcomeStatus.FAILED, 0, 1)
    assert os_version(sandbox, "vm-1") == ON_JANUARY_BASELINE
    [done] = inventory(sandbox).installations_since(Scope(), FEBRUARY - timedelta(minutes=1))
    assert (done.status, done.kbs) == ("Failed", ())
