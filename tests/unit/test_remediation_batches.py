"""Remediation in two steps: `prepare` plans and cuts batches, `apply_batch` starts one batch
through the journal; a batch delivered twice starts nothing twice."""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta

import pytest

from hotpatch.core.plan import OperationKind, RingPolicy
from hotpatch.errors import LeaseHeldError
from hotpatch.ports.store import JournalStatus, RunKind, VerdictRow
from hotpatch.remediation import BATCH_SIZE, LEASE_NAME, Batch, batches
from tests.unit.test_remediation import (
    NOW,
    POLICY,
    SUB,
    World,
    behind,
    installs_sent,
    vm_id,
    world,
)

__all__ = ["world"]

OTHER_SUB = "22222222-2222-2222-2222-222222222222"
UNCAPPED = dataclasses.replace(
    POLICY, rings=(RingPolicy("ring0", max_concurrent=1000, max_per_run=1000),)
)


def elsewhere(name: str) -> VerdictRow:
    row = behind(name)
    return dataclasses.replace(row, id=row.id.replace(SUB, OTHER_SUB), subscription=OTHER_SUB)


def test_prepare_plans_and_cuts_batches_by_subscription_and_starts_nothing(world: World) -> None:
    machines = [*(behind(f"vm-{n}") for n in range(BATCH_SIZE + 2)), elsewhere("far-1")]
    prepared = world.remediation(UNCAPPED).prepare(lambda: machines)

    assert world.operations.calls == []
    assert world.store.journal() == []
    assert [(b.number, b.subscription, len(b.operations)) for b in prepared.batches] == [
        (1, SUB, BATCH_SIZE),
        (2, SUB, 2),
        (3, OTHER_SUB, 1),
    ]
    assert {b.run_id for b in prepared.batches} == {prepared.run.id}
    assert all(b.kind is OperationKind.INSTALL for b in prepared.batches)
    stored = world.store.run(prepared.run.id)
    assert stored is not None
    assert stored.kind is RunKind.REMEDIATION
    assert stored.outcome == "queued"
    assert [b["operations"] for b in stored.figures["batches"]] == [BATCH_SIZE, 2, 1]


def test_a_batch_survives_its_queue_message_whole(world: World) -> None:
    prepared = world.remediation().prepare(lambda: [behind("vm-1")])
    (batch,) = prepared.batches
    text = batch.to_json()

    assert Batch.from_json(text) == batch
    assert Batch.from_json(text.encode()) == batch
    assert len(text.encode()) * BATCH_SIZE * 4 / 3 < 64 * 1024


@pytest.mark.parametrize("text", ["", "{}", '{"run_id": "r", "number": 0}', "not json"])
def test_a_message_that_is_not_a_batch_is_refused_with_a_reason(text: str) -> None:
    with pytest.raises(ValueError, match="not a batch of operations"):
        Batch.from_json(text)


def test_applying_a_batch_journals_each_operation_before_its_request_and_settles_it(
    world: World,
) -> None:
    prepared = world.remediation().prepare(lambda: [behind("vm-1"), behind("vm-2")])
    (batch,) = prepared.batches
    applied = world.remediation().apply_batch(batch)

    assert applied.started == 2
    assert applied.outcomes == {"succeeded": 2}
    assert world.operations.journalled_before_sending == [True, True]  # type: ignore[attr-defined]
    assert {r.status for r in world.store.journal()} == {JournalStatus.SUCCEEDED}
    assert {r.run_id for r in world.store.journal()} == {prepared.run.id}


def test_a_batch_delivered_again_starts_nothing_again(world: World) -> None:
    (batch,) = world.remediation().prepare(lambda: [behind("vm-1"), behind("vm-2")]).batches
    first = world.remediation().apply_batch(batch)
    again = world.remediation().apply_batch(batch)

    assert first.started == 2
    assert again.started == 0
    assert again.duplicates == 2
    assert sorted(installs_sent(world)) == [vm_id("vm-1"), vm_id("vm-2")]


def test_two_workers_given_the_same_batch_at_once_start_each_operation_once(world: World) -> None:
    (batch,) = world.remediation().prepare(lambda: [behind(f"vm-{n}") for n in range(5)]).batches
    results = []
    gate = threading.Barrier(2)

    def worker() -> None:
        gate.wait()
        results.append(world.remediation().apply_batch(batch))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sum(r.started for r in results) == 5
    assert sum(r.duplicates for r in results) == 5
    assert sorted(installs_sent(world)) == sorted(vm_id(f"vm-{n}") for n in range(5))


def test_a_request_proved_lost_is_queued_to_be_sent_again_once(world: World) -> None:
    (batch,) = world.remediation().prepare(lambda: [behind("vm-1")]).batches
    # The worker journalled the install and died before its request left.
    remediation = world.remediation()
    remediation._journal_chunk(batch.operations, batch.run_id, batch.operations[0].install)
    world.clock.now = NOW + timedelta(hours=1)  # past the reconciliation's patience

    again = world.remediation().prepare(lambda: [behind("vm-1")])
    (resend,) = again.batches
    assert resend.operations == ()
    assert [r.machine_id for r in resend.resend] == [vm_id("vm-1")]
    sent = world.remediation().apply_batch(resend)
    twice = world.remediation().apply_batch(resend)

    assert (sent.started, twice.started, twice.duplicates) == (1, 0, 1)
    assert installs_sent(world) == [vm_id("vm-1")]
    (record,) = world.store.journal()
    assert record.requests == 2
    assert record.status is JournalStatus.SUCCEEDED


def test_prepare_waits_for_no_one_and_says_the_lease_is_held(world: World) -> None:
    world.store.acquire_lease(LEASE_NAME, "another run", now=NOW, ttl=timedelta(minutes=5))
    with pytest.raises(LeaseHeldError):
        world.remediation().prepare(lambda: [behind("vm-1")])


def test_batches_keep_plan_order_and_hold_at_most_their_size() -> None:
    assert batches("run-1", [], size=3) == ()
    with pytest.raises(ValueError, match="at least one"):
        batches("run-1", [], size=0)
