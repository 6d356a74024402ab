"""The remediate timer and the queue worker, as the host runs them: the timer plans from the
latest sweep and queues one message per batch; the worker starts and follows a batch through
the journal; a message delivered again, or to two workers at once, starts nothing twice; a
poisoned message is recorded."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import azure.functions as func
import azure.functions.queue
import pytest

from hotpatch.ports.store import JournalStatus, RunKind
from hotpatch.remediation import LEASE_NAME, Batch
from hotpatch.telemetry import (
    BATCH_POISONED,
    BATCH_REDELIVERED,
    BATCHES,
    OPERATIONS,
    RUN_SKIPPED,
    RUNS_SKIPPED,
)
from tests.functions.conftest import SUB_B, App, Out, timer, together

pytestmark = pytest.mark.sandbox


def message(text: str, *, dequeue_count: int = 1, id: str = "m-1") -> func.QueueMessage:
    """A queue message as the worker hands it to a function."""
    return azure.functions.queue.QueueMessage(
        id=id, body=text.encode(), dequeue_count=dequeue_count, pop_receipt="receipt"
    )


def queued(app: App) -> list[Batch]:
    batches: Out[list[str]] = Out()
    app.call("remediate", timer(), batches)
    return [Batch.from_json(text) for text in (batches.value or [])]


def sweep_then_queue(app: App) -> list[Batch]:
    app.call("sweep", timer())
    return queued(app)


def operations_metric(app: App) -> Counter[tuple[str, str]]:
    totals: Counter[tuple[str, str]] = Counter()
    for attributes, value in app.telemetry.metric(OPERATIONS.name):
        totals[(attributes["kind"], attributes["status"])] += int(value)
    return totals


def test_in_report_mode_the_timer_queues_nothing_and_says_why(function_app: App) -> None:
    del function_app.environ["HOTPATCH_REMEDIATION_POLICY"]

    assert sweep_then_queue(function_app) == []
    assert function_app.store.runs(RunKind.REMEDIATION) == []
    assert function_app.telemetry.metric(RUNS_SKIPPED.name) == [
        ({"kind": "remediate", "reason": "report_mode"}, 1.0)
    ]


def test_before_any_sweep_the_timer_queues_nothing(function_app: App) -> None:
    assert queued(function_app) == []
    (skipped,) = function_app.telemetry.named(RUN_SKIPPED.name)
    assert skipped["reason"] == "no_sweep"


def test_the_timer_plans_from_the_latest_sweep_one_message_per_batch_by_subscription(
    function_app: App,
) -> None:
    batches = sweep_then_queue(function_app)

    assert [len(b.operations) for b in batches] == [4, 1]
    assert [b.subscription for b in batches] == ["11111111-1111-1111-1111-111111111111", SUB_B]
    (run,) = function_app.store.runs(RunKind.REMEDIATION)
    assert run.outcome == "queued"
    assert {b.run_id for b in batches} == {run.id}
    assert function_app.requests() == []  # the timer starts nothing: the workers do
    assert function_app.store.journal() == []


def test_the_worker_starts_and_follows_a_batch_through_the_journal(function_app: App) -> None:
    first, second = sweep_then_queue(function_app)

    function_app.call("remediate_batch", message(first.to_json()))
    function_app.call("remediate_batch", message(second.to_json(), id="m-2"))

    assert function_app.assessed() == ["far0", "vm0", "vm1", "vm2", "vm3"]
    journal = function_app.store.journal()
    assert {r.status for r in journal} == {JournalStatus.SUCCEEDED}
    sent = {r.client_request_id for r in function_app.requests()}
    assert sent == {r.client_request_id for r in journal}
    assert operations_metric(function_app) == {
        ("assess", "started"): 5,
        ("assess", "succeeded"): 5,
    }
    records = [r for r in function_app.store.runs(RunKind.REMEDIATION) if "batch_of" in r.figures]
    assert sorted(r.figures["batch"] for r in records) == [1, 2]
    assert {r.outcome for r in records} == {"succeeded"}


def test_a_redelivered_message_starts_nothing_again_and_is_recorded(function_app: App) -> None:
    first, _ = sweep_then_queue(function_app)

    function_app.call("remediate_batch", message(first.to_json()))
    function_app.call("remediate_batch", message(first.to_json(), dequeue_count=2))

    assert function_app.assessed() == ["vm0", "vm1", "vm2", "vm3"]
    records = [r for r in function_app.store.runs(RunKind.REMEDIATION) if "batch_of" in r.figures]
    again = next(r for r in records if r.figures["delivery"] == "redelivered")
    assert again.outcome == "duplicate"
    assert again.figures["applied"]["duplicates"] == 4
    assert again.figures["dequeue_count"] == 2
    assert function_app.telemetry.named(BATCH_REDELIVERED.name) == [
        {"run_id": first.run_id, "batch": 1, "dequeue_count": 2}
    ]
    assert sorted(
        (a["delivery"], a["outcome"]) for a, _ in function_app.telemetry.metric(BATCHES.name)
    ) == [("first", "succeeded"), ("redelivered", "duplicate")]


def test_two_workers_given_the_same_message_start_each_operation_once(function_app: App) -> None:
    first, _ = sweep_then_queue(function_app)
    text = first.to_json()

    results = together(
        lambda: function_app.call("remediate_batch", message(text)),
        lambda: function_app.call("remediate_batch", message(text, id="m-1-copy")),
    )

    assert results == [None, None]
    assert function_app.assessed() == ["vm0", "vm1", "vm2", "vm3"]
    assert (
        Counter(r.machine_id.casefold() for r in function_app.requests()).most_common(1)[0][1] == 1
    )
    assert operations_metric(function_app)[("assess", "started")] == 4


def test_a_message_that_is_not_a_batch_is_said_once_and_not_retried(
    function_app: App, caplog: pytest.LogCaptureFixture
) -> None:
    function_app.call("remediate_batch", message('{"hello": "world"}'))

    assert function_app.requests() == []
    assert any("not a batch of operations" in r.getMessage() for r in caplog.records)


def test_a_poisoned_message_is_recorded_with_where_each_operation_stands(function_app: App) -> None:
    first, second = sweep_then_queue(function_app)
    function_app.call("remediate_batch", message(first.to_json()))

    function_app.call("remediate_batch_poison", message(second.to_json(), dequeue_count=5))

    (run,) = [r for r in function_app.store.runs(RunKind.REMEDIATION) if r.outcome == "poisoned"]
    assert run.figures["batch"] == 2
    assert set(run.figures["journal"].values()) == {"not journalled"}
    (poisoned,) = function_app.telemetry.named(BATCH_POISONED.name)
    assert poisoned == {"run_id": second.run_id, "batch": 2, "operations": 1, "open_operations": 0}
    # The next remediation plans what the poisoned batch never started.
    again = queued(function_app)
    assert [op.machine_id.rsplit("/", 1)[-1] for b in again for op in b.operations] == ["far0"]


def test_a_batch_queued_before_the_policy_went_back_to_report_mode_starts_nothing(
    function_app: App,
) -> None:
    first, _ = sweep_then_queue(function_app)
    function_app.host.policy = lambda: None  # type: ignore[method-assign]

    function_app.call("remediate_batch", message(first.to_json()))

    assert function_app.requests() == []
    skipped: list[dict[str, Any]] = function_app.telemetry.named(RUN_SKIPPED.name)
    assert skipped[-1]["kind"] == "batch"


def test_while_another_remediation_holds_the_lease_the_timer_ends_quietly(
    function_app: App,
) -> None:
    function_app.call("sweep", timer())
    function_app.store.acquire_lease(
        LEASE_NAME, "another instance", now=function_app.clock.now(), ttl=timedelta(minutes=5)
    )

    assert queued(function_app) == []
    assert function_app.store.runs(RunKind.REMEDIATION) == []
    assert function_app.telemetry.metric(RUNS_SKIPPED.name) == [
        ({"kind": "remediate", "reason": "lease_held"}, 1.0)
    ]
