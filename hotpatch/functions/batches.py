"""The queue worker: each message is one batch of planned operations, started and followed
through the journal; and the poison queue's reader, which records a batch that failed every
delivery (host.json `maxDequeueCount`).

A message may arrive twice (a worker died before deleting it, or two instances got it): each
operation's journal record is written under its deterministic key before its request leaves,
so a second delivery starts only what no delivery journalled, and a record left open is settled
by the next remediation's reconciliation.
"""

from __future__ import annotations

import logging

import azure.functions as func

from hotpatch import scheduled
from hotpatch.errors import StoreError
from hotpatch.functions.host import current
from hotpatch.functions.timers import BATCH_QUEUE, CONNECTION
from hotpatch.remediation import Batch

#: Where the host moves a message after `maxDequeueCount` failed deliveries.
POISON_QUEUE = f"{BATCH_QUEUE}-poison"

_log = logging.getLogger(__name__)

blueprint = func.Blueprint()  # type: ignore[no-untyped-call]


def _batch(message: func.QueueMessage) -> Batch | None:
    try:
        return Batch.from_json(message.get_body())
    except ValueError as error:
        # Retrying cannot make it readable: said once, and the message is done with.
        _log.error("queue message %s is not a batch of operations: %s", message.id, error)
        return None


@blueprint.function_name("remediate_batch")
@blueprint.queue_trigger(arg_name="message", queue_name=BATCH_QUEUE, connection=CONNECTION)
def remediate_batch(message: func.QueueMessage) -> None:
    """Start and follow one batch through the journal; a store that fails fails the delivery
    (the message comes back, and what was journalled is not started again)."""
    batch = _batch(message)
    if batch is None:
        return
    host = current()
    telemetry = host.telemetry()
    try:
        policy = host.policy()
        if scheduled.report_mode(policy):
            # The policy went back to report mode after the batch was queued: nothing starts.
            telemetry.run_skipped("batch", "report_mode", f"batch {batch.number} of {batch.run_id}")
            return
        assert policy is not None
        with host.remediation(policy) as remediation:
            done = scheduled.apply_batch(
                remediation, batch, telemetry, dequeue_count=message.dequeue_count or 1
            )
    finally:
        telemetry.flush()
    _log.info(
        "batch %d of %s: %d started, outcomes %s",
        batch.number,
        batch.run_id,
        done.applied.started,
        dict(done.applied.outcomes),
    )
    if done.applied.stopped:
        raise StoreError(f"batch {batch.number} of {batch.run_id}: {done.applied.stopped}")


@blueprint.function_name("remediate_batch_poison")
@blueprint.queue_trigger(arg_name="message", queue_name=POISON_QUEUE, connection=CONNECTION)
def remediate_batch_poison(message: func.QueueMessage) -> None:
    """Record a batch that failed every delivery, with where each operation stands."""
    batch = _batch(message)
    if batch is None:
        return
    host = current()
    telemetry = host.telemetry()
    try:
        run = scheduled.poisoned_batch(
            host.store(), batch, telemetry, who=f"poison queue {POISON_QUEUE}", clock=host.clock
        )
    finally:
        telemetry.flush()
    _log.error("batch %d of %s failed every delivery: run %s", batch.number, batch.run_id, run.id)
