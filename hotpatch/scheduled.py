"""The Function App's use cases: a recorded sweep and its telemetry, the release catalog refreshed
into the store, remediation fanned out into batches, and one batch applied through the journal.

Each is one call the function bodies in `hotpatch.functions` make after translating their
trigger; they take the world, the store and the target from the composition root and report
through `hotpatch.telemetry`. Overlapping runs of the same kind meet at the store's leases and
end quietly (`Skipped`); a message delivered twice meets the journal's keys.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict

from hotpatch.bootstrap import (
    RELEASE_CATALOG,
    CatalogInForce,
    Target,
    World,
    catalog_in_force,
    operator,
)
from hotpatch.core.calendar import Calendar
from hotpatch.core.models import OsFamily
from hotpatch.core.plan import (
    ASSESS_PREFIX,
    Mode,
    OperationKind,
    PlannedOperation,
    RemediationPolicy,
)
from hotpatch.errors import HotpatchError, LeaseHeldError, StoreError
from hotpatch.ports import Clock, Scope, Store
from hotpatch.ports.patch_operations import MachineRef
from hotpatch.ports.store import (
    JournalStatus,
    RunKind,
    RunRecord,
    StoredCatalog,
    VerdictRow,
    new_run_id,
    operation_key,
)
from hotpatch.remediation import Applied, Batch, Prepared, Remediation, batches
from hotpatch.service import Recording, Sweep, sweep
from hotpatch.telemetry import SweepCounts, Telemetry

_log = logging.getLogger(__name__)

#: The most machines read from the latest snapshot per page when a remediation plans.
PAGE = 1000


@dataclass(frozen=True, slots=True)
class Skipped:
    """A run that did nothing on purpose, and why (`reason` is a metric dimension)."""

    kind: str
    reason: str
    detail: str


# ---------------------------------------------------------------------------------------------
# sweep
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SweepDone:
    sweep: Sweep
    #: Per-machine state changes written as log records.
    changes: int


def recorded_sweep(
    world: World,
    target: Target,
    store: Store,
    telemetry: Telemetry,
    *,
    clock: Clock,
    monotonic: Callable[[], float] = time.monotonic,
) -> SweepDone | Skipped:
    """Inventory -> evaluate -> snapshot in the store, under the store's `sweep` lease, then
    telemetry: machines by state, subscription, OS and ring; each machine whose state changed
    since the previous snapshot (none for the first: it changes nothing); the sweep's age."""
    started = monotonic()
    in_force = catalog_in_force(world, store)
    telemetry.catalog_staleness(in_force.source, in_force.since, clock())
    counts = SweepCounts()
    record = Recording(store, operator(world.settings), clock)
    try:
        result = sweep(
            target.inventory,
            target.scope,
            in_force.rules,
            now=clock(),
            on_verdicts=counts.add,
            keep_verdicts=False,
            record=record,
        )
    except LeaseHeldError as error:
        return _skipped(telemetry, "sweep", "lease_held", str(error))
    except BaseException:
        telemetry.run_finished("sweep", "", "failed", monotonic() - started)
        _report_sweep_age(telemetry, store, clock)
        raise
    changes = 0
    if result.snapshot is not None:
        telemetry.swept(counts)
        if result.snapshot.previous is not None:
            changes = telemetry.state_changes(store.transitions(result.snapshot.run_id))
    run = result.run
    telemetry.run_finished(
        "sweep",
        run.id if run is not None else "",
        (run.outcome or "failed") if run is not None else "failed",
        monotonic() - started,
    )
    _report_sweep_age(telemetry, store, clock)
    return SweepDone(result, changes)


def _report_sweep_age(telemetry: Telemetry, store: Store, clock: Clock) -> None:
    try:
        latest = store.latest_snapshot()
    except StoreError as error:
        _log.warning("cannot read the latest snapshot for its age: %s", error)
        return
    telemetry.sweep_age(latest.taken_at if latest is not None else None, clock())


def _skipped(telemetry: Telemetry, kind: str, reason: str, detail: str) -> Skipped:
    telemetry.run_skipped(kind, reason, detail)
    return Skipped(kind, reason, detail)


# ---------------------------------------------------------------------------------------------
# catalog
# ---------------------------------------------------------------------------------------------

#: The lease a catalog refresh holds: two refreshes at once would write the same document.
CATALOG_LEASE = "catalog"
CATALOG_LEASE_TTL = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class CatalogRefreshed:
    """A refresh that read the page: what it added, and whether the store's copy changed."""

    added: int
    completed: int
    saved: bool
    covers_through: str | None


def refresh_catalog(
    world: World,
    store: Store,
    telemetry: Telemetry,
    *,
    clock: Clock,
    read: Callable[[str], str] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> CatalogRefreshed | Skipped | None:
    """Read Microsoft's release information page (HOTPATCH_CATALOG_SOURCE) and keep the catalog
    it completes in the store, where every later sweep reads it (`catalog_in_force`).

    The catalog refreshed is the one in force (the store's, else the configured or shipped
    one). A page that cannot be read or parsed, or that contradicts the catalog, is a logged
    warning and a `failed` refresh: the catalog in force stays, and None is returned.
    """
    from hotpatch.catalog_update import conflict_message, load_base, plan_update, read_source

    source = world.settings.catalog_source
    started = monotonic()
    try:
        lease = store.acquire_lease(
            CATALOG_LEASE, _holder(world), now=clock(), ttl=CATALOG_LEASE_TTL
        )
    except LeaseHeldError as error:
        return _skipped(telemetry, "catalog", "lease_held", str(error))
    outcome = "failed"
    try:
        stored = store.catalog(RELEASE_CATALOG)
        if stored is not None:
            label, document = f"the store's {RELEASE_CATALOG}", stored.document
        else:
            label, document = load_base([world.settings.release_catalog])
        html = (read or read_source)(source)
        update = plan_update(html, label, document, source)
        if update.conflicts:
            raise HotpatchError(conflict_message(update))
        saved = update.changes or stored is None
        if saved:
            store.save_catalog(
                StoredCatalog(
                    name=RELEASE_CATALOG,
                    document=update.document,
                    source=source,
                    refreshed_at=clock(),
                )
            )
        elif stored is not None:
            # Nothing new on the page: the catalog is as fresh as the page says it is.
            store.save_catalog(stored.model_copy(update={"refreshed_at": clock()}))
            saved = True
        outcome = "succeeded"
        telemetry.catalog_refreshed()
        result = CatalogRefreshed(
            added=len(update.added),
            completed=len(update.completed),
            saved=saved,
            covers_through=update.covers_after,
        )
    except (HotpatchError, OSError, ValueError) as error:
        said = " ".join(str(error).split())
        _log.warning("the release catalog was not refreshed from %s: %s", source, said)
        telemetry.catalog_refresh_failed(source, said)
        result = None
    finally:
        try:
            store.release_lease(lease)
        except StoreError as error:
            _log.warning("could not give the catalog lease back (it lapses): %s", error)
        telemetry.run_finished("catalog", "", outcome, monotonic() - started)
    in_force = catalog_in_force(world, store)
    telemetry.catalog_staleness(in_force.source, in_force.since, clock())
    return result


def _holder(world: World) -> str:
    return f"{operator(world.settings)} (run {uuid.uuid4().hex[:8]})"


# ---------------------------------------------------------------------------------------------
# remediate: plan and fan out
# ---------------------------------------------------------------------------------------------


def latest_machines(store: Store) -> Iterator[VerdictRow]:
    """Every machine of the latest complete sweep, page by page."""
    continuation: str | None = None
    while True:
        page = store.latest_verdicts(page_size=PAGE, continuation=continuation)
        yield from page.rows
        continuation = page.continuation
        if continuation is None:
            return


def dispatch_remediation(
    remediation: Remediation,
    store: Store,
    telemetry: Telemetry,
    *,
    clock: Clock,
    monotonic: Callable[[], float] = time.monotonic,
) -> Prepared | Skipped:
    """Plan from the latest complete sweep and cut the operations into batches (one queue
    message each, by subscription); nothing is started here, the workers do it.

    Nothing at all in report mode, before the first complete sweep, or while another
    remediation holds the store's `remediation` lease.
    """
    started = monotonic()
    if remediation.policy.mode is Mode.REPORT:
        return _skipped(
            telemetry, "remediate", "report_mode", "the remediation policy is in report mode"
        )
    _report_sweep_age(telemetry, store, clock)
    if store.latest_snapshot() is None:
        return _skipped(telemetry, "remediate", "no_sweep", "no complete sweep is stored yet")
    try:
        prepared = remediation.prepare(lambda: latest_machines(store))
    except LeaseHeldError as error:
        return _skipped(telemetry, "remediate", "lease_held", str(error))
    telemetry.run_finished(
        "remediate", prepared.run.id, prepared.run.outcome or "failed", monotonic() - started
    )
    return prepared


def report_mode(policy: RemediationPolicy | None) -> bool:
    return policy is None or policy.mode is Mode.REPORT


# ---------------------------------------------------------------------------------------------
# a batch: the queue worker
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BatchDone:
    batch: Batch
    applied: Applied
    run: RunRecord


def apply_batch(
    remediation: Remediation,
    batch: Batch,
    telemetry: Telemetry,
    *,
    dequeue_count: int,
    monotonic: Callable[[], float] = time.monotonic,
) -> BatchDone:
    """Start and follow a batch's operations through the journal (each written ahead of its
    request); a redelivered message starts only what no delivery journalled before. The batch
    is recorded as a run of its own (`batch_of` names the remediation that planned it)."""
    started = monotonic()
    delivery = "redelivered" if dequeue_count > 1 else "first"
    if dequeue_count > 1:
        telemetry.batch_redelivered(batch.run_id, batch.number, dequeue_count)
    applied = remediation.apply_batch(batch)
    kind = batch.kind.value
    telemetry.operations(kind, applied.started, applied.outcomes)
    outcome = "stopped" if applied.stopped else "succeeded"
    if not applied.started and (batch.operations or batch.resend):
        outcome = "duplicate"  # every operation was journalled by an earlier delivery or run
    run = _batch_run(
        remediation,
        batch,
        applied,
        delivery=delivery,
        dequeue_count=dequeue_count,
        outcome=outcome,
    )
    telemetry.batch(delivery, outcome)
    telemetry.run_finished("batch", run.id, outcome, monotonic() - started)
    return BatchDone(batch, applied, run)


def _batch_run(
    remediation: Remediation,
    batch: Batch,
    applied: Applied,
    *,
    delivery: str,
    dequeue_count: int,
    outcome: str,
) -> RunRecord:
    now = remediation.clock()
    figures: dict[str, Any] = {
        "batch_of": batch.run_id,
        "batch": batch.number,
        "subscription": batch.subscription,
        "delivery": delivery,
        "dequeue_count": dequeue_count,
        "operations": [op.key for op in batch.operations],
        "resend": [record.key for record in batch.resend],
        "applied": applied.as_dict(),
    }
    run = RunRecord(
        id=new_run_id(now),
        kind=RunKind.REMEDIATION,
        who=remediation.who,
        started_at=now,
        finished_at=now,
        scope=f"batch {batch.number} of remediation {batch.run_id}",
        figures=figures,
        outcome=outcome,
    )
    try:
        remediation.store.save_run(run)
    except StoreError as error:
        _log.warning("could not save the record of batch %s: %s", batch.number, error)
    return run


def poisoned_batch(
    store: Store, batch: Batch, telemetry: Telemetry, *, who: str, clock: Clock
) -> RunRecord:
    """A batch that failed every delivery: recorded with where each of its operations stands
    in the journal (those never journalled were never sent; those left open are settled by the
    next remediation's reconciliation)."""
    keys = [op.key for op in batch.operations] + [record.key for record in batch.resend]
    statuses: dict[str, str] = {}
    for key in keys:
        record = store.journal_get(key)
        statuses[key] = record.status.value if record is not None else "not journalled"
    open_operations = sum(
        1
        for s in statuses.values()
        if s in (JournalStatus.STARTED.value, JournalStatus.ACCEPTED.value)
    )
    now = clock()
    run = RunRecord(
        id=new_run_id(now),
        kind=RunKind.REMEDIATION,
        who=who,
        started_at=now,
        finished_at=now,
        scope=f"batch {batch.number} of remediation {batch.run_id}",
        figures={"batch_of": batch.run_id, "batch": batch.number, "journal": statuses},
        outcome="poisoned",
    )
    store.save_run(run)
    telemetry.batch("poisoned", "poisoned")
    telemetry.batch_poisoned(batch.run_id, batch.number, len(keys), open_operations)
    return run


# ---------------------------------------------------------------------------------------------
# on-demand assessments (POST /api/assessments)
# ---------------------------------------------------------------------------------------------


class AssessmentOrder(BaseModel):
    """An on-demand assessment asked through the API, as its queue message carries it: the
    machines of these subscriptions (in the latest sweep) and these machines."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The run id its record is kept under (what the API answers with).
    id: str
    subscriptions: tuple[str, ...] = ()
    machines: tuple[str, ...] = ()
    requested_by: str | None = None
    asked_at: datetime


@dataclass(frozen=True, slots=True)
class AssessmentsQueued:
    run: RunRecord
    batches: tuple[Batch, ...]


def queue_assessments(
    order: AssessmentOrder,
    store: Store,
    calendar: Calendar,
    scope: Scope,
    *,
    clock: Clock,
) -> AssessmentsQueued:
    """The assessments an order asks for, as batches for the queue worker, and its run record.

    Each machine is assessed under the key the planner would give today's assessment of it
    (machine, release in force, `assess:<date>`), so an on-demand and a planned assessment of
    the same day start once. Machines outside the configured scope are left out and listed.
    """
    now = clock()
    action = f"{ASSESS_PREFIX}{now.date().isoformat()}"
    subscriptions = {s.casefold() for s in order.subscriptions}
    named = {m.casefold(): m for m in order.machines}
    in_scope = {s.casefold() for s in scope.subscriptions}
    asked_by = order.requested_by or "an API caller"
    operations: list[PlannedOperation] = []
    outside: list[str] = []

    def add(machine_id: str, os_family: OsFamily | None, ring: str | None) -> None:
        try:
            machine = MachineRef.parse(machine_id)
        except ValueError:
            return  # a scale set or another resource: patch operations address none
        if in_scope and machine.subscription.casefold() not in in_scope:
            outside.append(machine_id)
            return
        release = str(calendar.in_force(os_family, now).month) if os_family else "unknown"
        operations.append(
            PlannedOperation(
                key=operation_key(machine_id, release, action),
                machine_id=machine_id,
                ring=ring,
                release=release,
                action=action,
                kind=OperationKind.ASSESS,
                install=None,
                reason=f"on-demand assessment asked by {asked_by}",
                window_end=None,
            )
        )

    for row in latest_machines(store):
        if (row.subscription or "").casefold() in subscriptions or row.key in named:
            named.pop(row.key, None)
            add(row.id, row.os, row.ring)
    for machine_id in named.values():
        add(machine_id, None, None)
    cut = batches(order.id, operations)
    run = RunRecord(
        id=order.id,
        kind=RunKind.REMEDIATION,
        who=asked_by,
        started_at=order.asked_at,
        finished_at=now,
        scope="on-demand assessment",
        figures={
            "on_demand_assessment": order.model_dump(mode="json"),
            "operations": [op.key for op in operations],
            "outside_scope": outside,
            "batches": [(b.number, b.subscription, len(b.operations)) for b in cut],
        },
        outcome="queued",
    )
    store.save_run(run)
    return AssessmentsQueued(run, cut)


__all__ = [
    "RELEASE_CATALOG",
    "AssessmentOrder",
    "AssessmentsQueued",
    "BatchDone",
    "CatalogInForce",
    "CatalogRefreshed",
    "Skipped",
    "SweepDone",
    "apply_batch",
    "catalog_in_force",
    "dispatch_remediation",
    "latest_machines",
    "poisoned_batch",
    "queue_assessments",
    "recorded_sweep",
    "refresh_catalog",
    "report_mode",
]
