"""The timers: `sweep`, `catalog` and `remediate`, each on the schedule its app setting holds.

The schedules are `%HOTPATCH_*_SCHEDULE%` references that the Functions host resolves from the
app settings when it indexes the app (so a schedule changes without a redeploy); settings.py
holds their defaults, and local.settings.example.json and the infrastructure set them. No timer
runs on startup. A late (past due) timer runs as usual and says so; a run that finds another of
its kind holding the store's lease ends quietly.
https://learn.microsoft.com/azure/azure-functions/functions-bindings-timer#ncrontab-expressions
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import azure.functions as func

from hotpatch import scheduled
from hotpatch.functions.host import current
from hotpatch.remediation import Prepared
from hotpatch.telemetry import Telemetry

#: The Storage Queue of the app's own storage account that carries batches of operations.
BATCH_QUEUE = "hotpatch-batches"
#: The connection the queue bindings use: the app's storage account (identity-based in Azure,
#: `AzureWebJobsStorage__accountName`; Azurite locally).
CONNECTION = "AzureWebJobsStorage"

SWEEP_SCHEDULE = "%HOTPATCH_SWEEP_SCHEDULE%"
CATALOG_SCHEDULE = "%HOTPATCH_CATALOG_SCHEDULE%"
REMEDIATE_SCHEDULE = "%HOTPATCH_REMEDIATE_SCHEDULE%"

_log = logging.getLogger(__name__)

blueprint = func.Blueprint()  # type: ignore[no-untyped-call]


@contextmanager
def _invocation(timer: func.TimerRequest, function: str) -> Iterator[Telemetry]:
    """One timer run's telemetry: a late run says so first, and everything recorded is
    exported before the function returns (its instance may be stopped right after)."""
    telemetry = current().telemetry()
    if timer.past_due:
        _log.warning("timer %s is past due: running now", function)
        telemetry.past_due(function)
    try:
        yield telemetry
    finally:
        telemetry.flush()


@blueprint.function_name("sweep")
@blueprint.timer_trigger(
    arg_name="timer", schedule=SWEEP_SCHEDULE, run_on_startup=False, use_monitor=True
)
def sweep(timer: func.TimerRequest) -> None:
    """Inventory -> evaluate -> snapshot in the store -> telemetry."""
    host = current()
    with _invocation(timer, "sweep") as telemetry:
        world = host.world()
        with host.target(world.settings) as target:
            result = scheduled.recorded_sweep(
                world, target, host.store(), telemetry, clock=host.clock
            )
    if isinstance(result, scheduled.Skipped):
        _log.info("sweep skipped (%s): %s", result.reason, result.detail)
        return
    run = result.sweep.run
    _log.info(
        "sweep %s %s: %d machine(s), %d state change(s)",
        run.id if run else "",
        run.outcome if run else "",
        result.sweep.evaluation.summary.total,
        result.changes,
    )


@blueprint.function_name("catalog")
@blueprint.timer_trigger(
    arg_name="timer", schedule=CATALOG_SCHEDULE, run_on_startup=False, use_monitor=True
)
def catalog(timer: func.TimerRequest) -> None:
    """Refresh the release catalog from Microsoft's release information page into the store.

    A failed refresh is a warning and a metric, never a failed function: the catalog in force
    stays, and the sweeps go on with it."""
    host = current()
    with _invocation(timer, "catalog") as telemetry:
        result = scheduled.refresh_catalog(host.world(), host.store(), telemetry, clock=host.clock)
    if isinstance(result, scheduled.CatalogRefreshed):
        _log.info(
            "release catalog refreshed: %d added, %d completed, covers through %s",
            result.added,
            result.completed,
            result.covers_through,
        )


@blueprint.function_name("remediate")
@blueprint.timer_trigger(
    arg_name="timer", schedule=REMEDIATE_SCHEDULE, run_on_startup=False, use_monitor=True
)
@blueprint.queue_output(arg_name="batches", queue_name=BATCH_QUEUE, connection=CONNECTION)
def remediate(timer: func.TimerRequest, batches: func.Out[list[str]]) -> None:
    """Plan from the latest sweep, one queue message per batch of operations (by subscription);
    nothing in report mode (no policy file, or a policy in report mode)."""
    host = current()
    with _invocation(timer, "remediate") as telemetry:
        policy = host.policy()
        if scheduled.report_mode(policy):
            telemetry.run_skipped("remediate", "report_mode", "report mode: nothing is started")
            return
        assert policy is not None
        with host.remediation(policy) as remediation:
            result = scheduled.dispatch_remediation(
                remediation, host.store(), telemetry, clock=host.clock
            )
    if isinstance(result, Prepared):
        messages = [batch.to_json() for batch in result.batches]
        if messages:
            batches.set(messages)
        _log.info(
            "remediation %s: %d operation(s) in %d batch(es)",
            result.run.id,
            sum(len(b.operations) + len(b.resend) for b in result.batches),
            len(messages),
        )
    else:
        _log.info("remediation skipped (%s): %s", result.reason, result.detail)
