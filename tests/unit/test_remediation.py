"""Remediation journals every operation before its request leaves, and settles what a crash left."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from hotpatch.core.calendar import Calendar
from hotpatch.core.models import Action, OsFamily, State
from hotpatch.core.plan import Mode, RemediationPolicy, RingPolicy, Window
from hotpatch.data import shipped_release_catalog
from hotpatch.errors import LeaseHeldError, StoreError
from hotpatch.fakes import FakePatchOperations, InMemoryInventory, MemoryStore, Scripted
from hotpatch.ports.inventory import Scope
from hotpatch.ports.patch_operations import (
    InstallParameters,
    MachineRef,
    OperationKind,
    OperationOutcome,
    OutcomeCallback,
    OutcomeStatus,
    RebootSetting,
)
from hotpatch.ports.store import JournalRecord, JournalStatus, RunKind, VerdictRow
from hotpatch.remediation import JOURNAL_CHUNK, Remediation

#: Two days after May 2026's Patch Tuesday (the 12th), inside the window opened at 22:00 UTC.
NOW = datetime(2026, 5, 14, 23, 0, tzinfo=UTC)
SUB = "11111111-1111-1111-1111-111111111111"
WINDOW = Window(offset_days=2, start=time(22, 0), time_zone="UTC", duration=timedelta(hours=3))
POLICY = RemediationPolicy(mode=Mode.REMEDIATE, rings=(RingPolicy("ring0"),), default_window=WINDOW)
MAY_HOTPATCH = "KB5087424"
SUMMARY_TYPE = "microsoft.compute/virtualmachines/patchinstallationresults"


def vm_id(name: str) -> str:
    return (
        f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/{name}"
    )


def behind(name: str, ring: str = "ring0") -> VerdictRow:
    """A Windows Server 2022 machine missing the month's hotpatch, past its grace period."""
    return VerdictRow(
        id=vm_id(name),
        name=name,
        subscription=SUB,
        resource_group="rg",
        os=OsFamily.WS2022,
        ring=ring,
        tags={"hotpatch-ring": ring},
        state=State.NON_COMPLIANT,
        action=Action.INSTALL_HOTPATCH,
        eligible=True,
        reasons=(),
        release_month="2026-04",
    )


@dataclass(slots=True)
class Clock:
    now: datetime = NOW

    def __call__(self) -> datetime:
        return self.now


@dataclass(slots=True)
class WitnessingOperations(FakePatchOperations):
    """The fake, noting for each install request whether its journal record was already there."""

    store: MemoryStore | None = None
    journalled_before_sending: list[bool] = field(default_factory=list)

    async def install(
        self,
        machines: Sequence[MachineRef],
        parameters: InstallParameters,
        *,
        on_outcome: OutcomeCallback | None = None,
        client_request_ids: Mapping[str, str] | None = None,
    ) -> list[OperationOutcome]:
        assert self.store is not None
        journal = {r.machine_id.casefold(): r for r in self.store.journal()}
        for machine in machines:
            record = journal.get(machine.key)
            self.journalled_before_sending.append(
                record is not None
                and record.status is JournalStatus.STARTED
                and record.client_request_id == (client_request_ids or {}).get(machine.key)
            )
        return await FakePatchOperations.install(
            self,
            machines,
            parameters,
            on_outcome=on_outcome,
            client_request_ids=client_request_ids,
        )


class FailingJournal(MemoryStore):
    """A store whose disk fills up after `room` journal records."""

    def __init__(self, room: int) -> None:
        super().__init__()
        self.room = room

    def journal_start(self, record: JournalRecord) -> JournalRecord:
        if self.room == 0:
            raise StoreError("store: database or disk is full: this write was not kept")
        self.room -= 1
        return super().journal_start(record)


@dataclass
class World:
    store: MemoryStore
    operations: FakePatchOperations
    clock: Clock
    installations: list[dict[str, Any]]

    def remediation(self, policy: RemediationPolicy = POLICY) -> Remediation:
        @asynccontextmanager
        async def opener() -> AsyncIterator[FakePatchOperations]:
            yield self.operations

        return Remediation(
            store=self.store,
            patch_operations=opener,
            installations=InMemoryInventory(self.installations),
            scope=Scope(),
            policy=policy,
            calendar=Calendar(shipped_release_catalog()),
            clock=self.clock,
            who="tester@host",
        )

    def installation_row(
        self, name: str, status: str, started: datetime, kbs: Sequence[str] = ()
    ) -> None:
        summary = f"{vm_id(name)}/patchInstallationResults/op-{name}"
        self.installations.append(
            {
                "id": summary,
                "type": SUMMARY_TYPE,
                "subscriptionId": SUB,
                "properties": {
                    "status": status,
                    "startDateTime": started.isoformat(),
                    "installationActivityId": f"op-{name}",
                },
            }
        )
        for kb in kbs:
            self.installations.append(
                {
                    "id": f"{summary}/softwarePatches/{kb}",
                    "type": f"{SUMMARY_TYPE}/softwarepatches",
                    "subscriptionId": SUB,
                    "properties": {"kbId": kb.removeprefix("KB"), "installationState": "Installed"},
                }
            )


@pytest.fixture
def world() -> World:
    clock = Clock()
    store = MemoryStore()
    operations = WitnessingOperations(clock=clock, store=store)
    return World(store, operations, clock, [])


def installs_sent(world: World) -> list[str]:
    return [
        m for call in world.operations.calls if call.method == "install" for m in call.machine_ids
    ]


def test_every_install_is_journalled_with_its_request_id_before_the_request_is_sent(
    world: World,
) -> None:
    world.operations.script(
        vm_id("vm-1"), OperationKind.INSTALL, Scripted(installed_kbs=(MAY_HOTPATCH,))
    )
    run = world.remediation().run(lambda: [behind("vm-1"), behind("vm-2")], apply=True)

    assert isinstance(world.operations, WitnessingOperations)
    assert world.operations.journalled_before_sending == [True, True]
    records = {r.machine_id: r for r in world.store.journal()}
    assert records[vm_id("vm-1")].status is JournalStatus.SUCCEEDED
    assert records[vm_id("vm-1")].kbs == (MAY_HOTPATCH,)
    assert records[vm_id("vm-1")].ring == "ring0"
    assert run.run.outcome == "succeeded"


def test_every_batch_goes_through_one_session_and_each_chunk_is_journalled_before_it_is_sent(
    world: World,
) -> None:
    due = [
        dataclasses.replace(behind(f"due-{n}"), state=State.ASSESSMENT_DUE, action=Action.ASSESS)
        for n in range(7)
    ]
    machines = [*(behind(f"vm-{n}") for n in range(2 * JOURNAL_CHUNK + 3)), *due]
    opened: list[int] = []

    @asynccontextmanager
    async def counted() -> AsyncIterator[FakePatchOperations]:
        opened.append(1)
        yield world.operations

    uncapped = RingPolicy("ring0", max_concurrent=1000, max_per_run=1000)
    remediation = world.remediation(dataclasses.replace(POLICY, rings=(uncapped,)))
    remediation.patch_operations = counted
    run = remediation.run(lambda: machines, apply=True)

    assert isinstance(world.operations, WitnessingOperations)
    assert world.operations.journalled_before_sending == [True] * (2 * JOURNAL_CHUNK + 3)
    assert {c.method for c in world.operations.calls} == {"assess", "install"}
    assert len(opened) == 1
    assert run.applied is not None
    assert run.applied.outcomes == {"succeeded": len(machines)}


def test_the_first_requests_to_leave_are_for_every_subscription_not_the_first_one_only(
    world: World,
) -> None:
    other = "22222222-2222-2222-2222-222222222222"
    elsewhere = [
        dataclasses.replace(
            behind(f"vm-{n}"), id=vm_id(f"vm-{n}").replace(SUB, other), subscription=other
        )
        for n in range(JOURNAL_CHUNK)
    ]
    machines = [*(behind(f"vm-{n}") for n in range(JOURNAL_CHUNK)), *elsewhere]
    uncapped = RingPolicy("ring0", max_concurrent=1000, max_per_run=1000)

    world.remediation(dataclasses.replace(POLICY, rings=(uncapped,))).run(
        lambda: machines, apply=True
    )

    first = world.operations.calls[0]
    assert {machine.split("/")[2] for machine in first.machine_ids} == {SUB, other}
    assert len(installs_sent(world)) == 2 * JOURNAL_CHUNK


def test_a_failed_install_is_journalled_as_failed(world: World) -> None:
    world.operations.script(
        vm_id("vm-1"), OperationKind.INSTALL, Scripted(OutcomeStatus.FAILED, failed=1)
    )
    world.remediation().run(lambda: [behind("vm-1")], apply=True)
    [record] = world.store.journal()
    assert record.status is JournalStatus.FAILED


def test_progress_names_each_failure_and_counts_the_rest_a_tenth_at_a_time(world: World) -> None:
    machines = [behind(f"vm-{n}") for n in range(40)]
    world.operations.script(
        vm_id("vm-7"), OperationKind.INSTALL, Scripted(OutcomeStatus.FAILED, failed=1)
    )
    uncapped = RingPolicy("ring0", max_concurrent=1000, max_per_run=1000, error_budget=1)
    remediation = world.remediation(dataclasses.replace(POLICY, rings=(uncapped,)))
    said: list[str] = []
    remediation.on_progress = said.append

    remediation.run(lambda: machines, apply=True)

    counts = [line for line in said if " heard from " in line]
    assert f"failed: {vm_id('vm-7')}" in said
    assert not any(line.startswith("succeeded:") for line in said)
    assert [line.split(" of ")[0] for line in counts] == [str(n) for n in range(4, 41, 4)]
    assert counts[-1] == "40 of 40 heard from (1 failed, 39 succeeded)"


def test_a_dry_run_starts_and_journals_nothing_but_records_its_plan(world: World) -> None:
    run = world.remediation().run(lambda: [behind("vm-1")], apply=False)

    assert world.operations.calls == []
    assert world.store.journal() == []
    [recorded] = world.store.runs(RunKind.REMEDIATION)
    assert recorded.figures["dry_run"] is True
    assert [op["machine"] for op in recorded.figures["operations"]] == [vm_id("vm-1")]
    assert run.applied is None


def test_a_second_run_does_not_install_the_same_release_again(world: World) -> None:
    world.remediation().run(lambda: [behind("vm-1")], apply=True)
    world.clock.now += timedelta(minutes=10)
    second = world.remediation().run(lambda: [behind("vm-1")], apply=True)

    assert installs_sent(world) == [vm_id("vm-1")]
    assert [s.code.value for s in second.plan.skips] == ["already_done"]


def test_a_full_disk_stops_new_starts_and_keeps_every_record_already_written() -> None:
    clock = Clock()
    store = FailingJournal(room=2)
    world = World(store, FakePatchOperations(clock=clock), clock, [])

    run = world.remediation().run(lambda: [behind(f"vm-{n}") for n in range(5)], apply=True)

    assert run.applied is not None
    assert run.applied.stopped is not None
    assert "disk is full" in run.applied.stopped
    assert run.run.outcome == "stopped"
    assert len(store.journal()) == 2
    assert sorted(installs_sent(world)) == sorted(r.machine_id for r in store.journal())


def open_record(world: World, name: str, *, minutes_ago: int) -> JournalRecord:
    """An install an earlier run journalled and then lost track of (it was killed)."""
    at = world.clock.now - timedelta(minutes=minutes_ago)
    record = JournalRecord.start(
        vm_id(name),
        "2026-05",
        "install_hotpatch",
        client_request_id=f"request-{name}",
        now=at,
        ring="ring0",
    ).model_copy(
        update={
            "requests": 1,
            "parameters": InstallParameters(reboot_setting=RebootSetting.NEVER).model_dump(
                mode="json"
            ),
        }
    )
    return world.store.journal_start(record)


def test_an_install_azure_lists_as_running_is_marked_accepted_and_not_sent_again(
    world: World,
) -> None:
    record = open_record(world, "vm-1", minutes_ago=60)
    world.installation_row("vm-1", "InProgress", record.started_at + timedelta(seconds=2))

    run = world.remediation().run(lambda: [behind("vm-1")], apply=True)

    assert installs_sent(world) == []
    assert world.store.journal_get(record.key).status is JournalStatus.ACCEPTED  # type: ignore[union-attr]
    assert run.reconciled.still_running == 1


def test_an_install_azure_lists_as_finished_takes_that_outcome_and_its_kbs(world: World) -> None:
    record = open_record(world, "vm-1", minutes_ago=60)
    world.installation_row(
        "vm-1", "Succeeded", record.started_at + timedelta(seconds=2), [MAY_HOTPATCH]
    )

    run = world.remediation().run(lambda: [behind("vm-1")], apply=True)

    settled = world.store.journal_get(record.key)
    assert settled is not None
    assert (settled.status, settled.kbs) == (JournalStatus.SUCCEEDED, (MAY_HOTPATCH,))
    assert installs_sent(world) == []
    assert run.reconciled.settled_from_azure == 1


def test_an_installation_older_than_the_record_is_not_taken_for_it(world: World) -> None:
    record = open_record(world, "vm-1", minutes_ago=60)
    world.installation_row(
        "vm-1", "Succeeded", record.started_at - timedelta(days=30), [MAY_HOTPATCH]
    )

    world.remediation().run(lambda: [behind("vm-1")], apply=True)

    assert installs_sent(world) == [vm_id("vm-1")]


def test_a_request_azure_never_listed_is_left_alone_until_the_reconcile_delay_has_passed(
    world: World,
) -> None:
    record = open_record(world, "vm-1", minutes_ago=5)

    run = world.remediation().run(lambda: [behind("vm-1")], apply=True)

    assert installs_sent(world) == []
    assert world.store.journal_get(record.key).status is JournalStatus.STARTED  # type: ignore[union-attr]
    assert [s.code.value for s in run.plan.skips] == ["in_flight"]


def test_a_request_azure_never_listed_is_sent_again_under_the_same_key_and_request_id(
    world: World,
) -> None:
    record = open_record(world, "vm-1", minutes_ago=45)

    run = world.remediation().run(lambda: [behind("vm-1")], apply=True)

    assert installs_sent(world) == [vm_id("vm-1")]
    assert world.operations.client_request_id(vm_id("vm-1"), "install") == "request-vm-1"
    settled = world.store.journal_get(record.key)
    assert settled is not None
    assert (settled.status, settled.requests) == (JournalStatus.SUCCEEDED, 2)
    assert run.plan.operations == ()


def test_an_accepted_install_with_a_resume_token_is_followed_to_its_end(world: World) -> None:
    world.operations.script(
        vm_id("vm-1"),
        OperationKind.INSTALL,
        Scripted(OutcomeStatus.TIMED_OUT),
        Scripted(installed_kbs=(MAY_HOTPATCH,)),
    )
    world.remediation().run(lambda: [behind("vm-1")], apply=True)
    [accepted] = world.store.journal()
    assert accepted.status is JournalStatus.ACCEPTED
    assert accepted.resume_token

    world.clock.now += timedelta(minutes=20)
    run = world.remediation().run(lambda: [behind("vm-1")], apply=True)

    [done] = world.store.journal()
    assert (done.status, done.kbs) == (JournalStatus.SUCCEEDED, (MAY_HOTPATCH,))
    assert [c.method for c in world.operations.calls] == ["install", "resume"]
    assert run.reconciled.resumed == 1


def test_a_second_remediation_is_refused_while_the_first_holds_the_lease(world: World) -> None:
    world.store.acquire_lease("remediation", "someone-else", now=NOW, ttl=timedelta(minutes=5))
    with pytest.raises(LeaseHeldError, match="someone-else"):
        world.remediation().run(lambda: [behind("vm-1")], apply=True)
    assert world.operations.calls == []


def test_an_install_whose_result_only_counted_its_kbs_takes_them_from_resource_graph(
    world: World,
) -> None:
    # Azure Arc's install result counts what it installed without naming it.
    world.operations.script(vm_id("vm-1"), OperationKind.INSTALL, Scripted(installed=1))
    world.installation_row("vm-1", "Succeeded", NOW, [MAY_HOTPATCH])

    world.remediation().run(lambda: [behind("vm-1")], apply=True)

    [record] = world.store.journal()
    assert (record.status, record.kbs) == (JournalStatus.SUCCEEDED, (MAY_HOTPATCH,))
