"""Telemetry: every metric and log name the alert rules and the workbook read, and their emitter.

The names below are the contract with Azure Monitor: the scheduled query alert rules and the
workbook (infra/) are checked against `METRICS` and `EVENTS`. Metrics are counts per run, never
per machine; the only per-machine records are state *changes* (`hotpatch.machine.state_changed`,
read from the store's transitions), so a steady-state sweep of a large estate costs a few
records (bench/telemetry.py prints the volume).

OpenTelemetry carries them: `configure()` sends them to Application Insights through
azure-monitor-opentelemetry when APPLICATIONINSIGHTS_CONNECTION_STRING is set, and does nothing
otherwise (the API's no-op providers). Tests hand `Telemetry` their own in-memory providers.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from hotpatch.core.models import Verdict
from hotpatch.core.reasons import ReasonCode
from hotpatch.ports.store import Transition, resource_group_of

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider

#: The OpenTelemetry meter every metric is recorded on.
METER_NAME = "hotpatch"
#: The Python logger every event is written to (azure-monitor-opentelemetry exports it).
LOGGER_NAME = "hotpatch.telemetry"
#: The variable that switches Azure Monitor on (the Functions host sets it from the app setting).
CONNECTION_STRING_VARIABLE = "APPLICATIONINSIGHTS_CONNECTION_STRING"
#: How the exporter authenticates: "ClientId=<id>;Authorization=AAD" sends as that managed
#: identity (the deployment turns the resource's key off). The exporter reads it itself.
AUTHENTICATION_STRING_VARIABLE = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"


class Instrument(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"


@dataclass(frozen=True, slots=True)
class Metric:
    name: str
    instrument: Instrument
    unit: str
    description: str
    dimensions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Event:
    """A log record: its message is the event's name, its attributes the dimensions."""

    name: str
    level: int
    description: str
    dimensions: tuple[str, ...]


# -- metrics ----------------------------------------------------------------------------------

MACHINES = Metric(
    "hotpatch.machines",
    Instrument.GAUGE,
    "{machine}",
    "machines in each state after a complete sweep",
    ("state", "subscription", "os", "ring"),
)
OFF_CYCLE = Metric(
    "hotpatch.machines.off_cycle",
    Instrument.GAUGE,
    "{machine}",
    "machines off the hotpatch cycle after a complete sweep, by the reason that says so (behind "
    "the current baseline, or on a regular cumulative-update build); nothing when none is",
    ("reason", "subscription", "ring"),
)
NEXT_RESTART = Metric(
    "hotpatch.machines.next_restart",
    Instrument.GAUGE,
    "{machine}",
    "machines by the UTC day they are next expected to restart (the sweep's own day: a restart "
    "is pending or due now), after a complete sweep",
    ("day", "subscription", "ring"),
)
OPERATIONS = Metric(
    "hotpatch.operations",
    Instrument.COUNTER,
    "{operation}",
    "patch operations started, and their outcomes as journalled (succeeded, failed, unknown, "
    "accepted: still running when the worker stopped following it)",
    ("kind", "status"),
)
RUN_DURATION = Metric(
    "hotpatch.run.duration",
    Instrument.HISTOGRAM,
    "s",
    "wall time of one run of a function (sweep, catalog, remediate, batch)",
    ("kind", "outcome"),
)
SWEEP_AGE = Metric(
    "hotpatch.sweep.age",
    Instrument.GAUGE,
    "s",
    "time since the latest complete sweep was taken (recorded by every sweep and remediate run, "
    "whatever its outcome: it grows while sweeps fail)",
    (),
)
CATALOG_STALENESS = Metric(
    "hotpatch.catalog.staleness",
    Instrument.GAUGE,
    "s",
    "time since the release catalog in force last learnt of releases: since its refresh into "
    "the store, or, for the shipped catalog or a file, since the end of the month it covers",
    ("source",),
)
CATALOG_REFRESHES = Metric(
    "hotpatch.catalog.refreshes",
    Instrument.COUNTER,
    "{refresh}",
    "release catalog refreshes from Microsoft's release information page, by outcome",
    ("outcome",),
)
RUNS_SKIPPED = Metric(
    "hotpatch.runs.skipped",
    Instrument.COUNTER,
    "{run}",
    "runs that did nothing on purpose: another run of the same kind held the lease, report "
    "mode, no complete sweep yet",
    ("kind", "reason"),
)
BATCHES = Metric(
    "hotpatch.batches",
    Instrument.COUNTER,
    "{batch}",
    "queue messages of planned operations the worker handled, by delivery (first, redelivered, "
    "poisoned) and outcome",
    ("delivery", "outcome"),
)

METRICS: tuple[Metric, ...] = (
    MACHINES,
    OFF_CYCLE,
    NEXT_RESTART,
    OPERATIONS,
    RUN_DURATION,
    SWEEP_AGE,
    CATALOG_STALENESS,
    CATALOG_REFRESHES,
    RUNS_SKIPPED,
    BATCHES,
)

# -- events (log records) ---------------------------------------------------------------------

STATE_CHANGED = Event(
    "hotpatch.machine.state_changed",
    logging.INFO,
    "a machine's compliance state changed between two complete sweeps",
    ("machine_id", "subscription", "resource_group", "from_state", "to_state", "reasons", "run_id"),
)
RUN_FINISHED = Event(
    "hotpatch.run.finished",
    logging.INFO,
    "a function's run ended",
    ("kind", "run_id", "outcome", "seconds"),
)
RUN_SKIPPED = Event(
    "hotpatch.run.skipped",
    logging.INFO,
    "a run did nothing on purpose, and why",
    ("kind", "reason", "detail"),
)
TIMER_PAST_DUE = Event(
    "hotpatch.timer.past_due",
    logging.WARNING,
    "a timer fired later than its schedule (the host was down or busy)",
    ("function",),
)
CATALOG_REFRESH_FAILED = Event(
    "hotpatch.catalog.refresh_failed",
    logging.WARNING,
    "the release catalog could not be refreshed; the catalog in force stays",
    ("source", "error"),
)
BATCH_REDELIVERED = Event(
    "hotpatch.batch.redelivered",
    logging.WARNING,
    "a queue message was delivered again; its operations are settled through the journal keys",
    ("run_id", "batch", "dequeue_count"),
)
BATCH_POISONED = Event(
    "hotpatch.batch.poisoned",
    logging.ERROR,
    "a queue message failed every delivery and went to the poison queue",
    ("run_id", "batch", "operations", "open_operations"),
)

EVENTS: tuple[Event, ...] = (
    STATE_CHANGED,
    RUN_FINISHED,
    RUN_SKIPPED,
    TIMER_PAST_DUE,
    CATALOG_REFRESH_FAILED,
    BATCH_REDELIVERED,
    BATCH_POISONED,
)


#: The reasons that put a machine off the hotpatch cycle: it takes no hotpatch until a
#: baseline brings it back (`hotpatch.machines.off_cycle` counts the machines carrying each).
OFF_THE_CYCLE: frozenset[str] = frozenset({ReasonCode.OFF_CYCLE, ReasonCode.REGULAR_CHANNEL_BUILD})


class SweepCounts:
    """What a complete sweep reports, counted page by page as its verdicts stream past (no page
    is kept): machines by state, subscription, OS and ring; those off the cycle, by reason; and
    when each is next expected to restart."""

    def __init__(self) -> None:
        self.machines: Counter[tuple[str, str, str, str]] = Counter()
        self.off_cycle: Counter[tuple[str, str, str]] = Counter()
        #: By the instant itself: machines of one decision share it, so the day is made once.
        self._restarts: Counter[tuple[datetime, str, str]] = Counter()

    def add(self, page: Iterable[Verdict]) -> None:
        for verdict in page:
            subscription, ring = verdict.subscription_id or "", verdict.ring or ""
            self.machines[
                (verdict.state.value, subscription, verdict.os.value if verdict.os else "", ring)
            ] += 1
            for reason in verdict.reasons:
                if reason.code in OFF_THE_CYCLE:
                    self.off_cycle[(str(reason.code), subscription, ring)] += 1
            if verdict.next_restart is not None:
                self._restarts[(verdict.next_restart, subscription, ring)] += 1

    @property
    def next_restarts(self) -> Counter[tuple[str, str, str]]:
        """Machines by (UTC day, subscription, ring) of their next expected restart."""
        days: dict[datetime, str] = {}
        counts: Counter[tuple[str, str, str]] = Counter()
        for (at, subscription, ring), count in self._restarts.items():
            day = days.get(at)
            if day is None:
                day = days[at] = at.date().isoformat()
            counts[(day, subscription, ring)] += count
        return counts


class Telemetry:
    """Records the metrics and events above, with exactly their dimensions.

    `meter_provider` None: the global one (Azure Monitor's once `configure` ran, else no-op).
    """

    def __init__(
        self, meter_provider: MeterProvider | None = None, logger: logging.Logger | None = None
    ) -> None:
        from opentelemetry import metrics

        self._own_providers = meter_provider is not None
        meter = (
            meter_provider.get_meter(METER_NAME)
            if meter_provider is not None
            else metrics.get_meter(METER_NAME)
        )
        self._lock = threading.Lock()
        #: Gauge values recorded and not yet collected: each is exported once (a synchronous
        #: gauge would be exported again at every export interval while the instance lives).
        self._pending: dict[str, list[Any]] = {}
        self._instruments: dict[str, Any] = {}
        for metric in METRICS:
            if metric.instrument is Instrument.GAUGE:
                self._pending[metric.name] = []
                self._instruments[metric.name] = meter.create_observable_gauge(
                    metric.name,
                    callbacks=[self._observer(metric.name)],
                    unit=metric.unit,
                    description=metric.description,
                )
                continue
            create = (
                meter.create_counter
                if metric.instrument is Instrument.COUNTER
                else meter.create_histogram
            )
            self._instruments[metric.name] = create(
                metric.name, unit=metric.unit, description=metric.description
            )
        self._log = logger or logging.getLogger(LOGGER_NAME)

    def _observer(self, name: str) -> Callable[[Any], Iterable[Any]]:
        def observe(options: Any) -> Iterable[Any]:
            with self._lock:
                found, self._pending[name] = self._pending[name], []
            return found

        return observe

    def _record(self, metric: Metric, value: float, **dimensions: str) -> None:
        if set(dimensions) != set(metric.dimensions):
            raise ValueError(f"{metric.name}: dimensions {sorted(dimensions)} are not its own")
        if metric.instrument is Instrument.GAUGE:
            from opentelemetry.metrics import Observation

            with self._lock:
                self._pending[metric.name].append(Observation(value, dimensions))
            return
        instrument = self._instruments[metric.name]
        if metric.instrument is Instrument.COUNTER:
            instrument.add(value, dimensions)
        else:
            instrument.record(value, dimensions)

    def flush(self) -> None:
        """Export what was recorded now (a function's instance may be stopped once it returns);
        only for the process's providers, which Azure Monitor's exporters read."""
        if self._own_providers:
            return
        from opentelemetry import _logs, metrics

        for provider in (metrics.get_meter_provider(), _logs.get_logger_provider()):
            force_flush = getattr(provider, "force_flush", None)
            if force_flush is not None:
                force_flush()

    def event(self, event: Event, **dimensions: Any) -> None:
        if set(dimensions) != set(event.dimensions):
            raise ValueError(f"{event.name}: dimensions {sorted(dimensions)} are not its own")
        self._log.log(event.level, event.name, extra=dimensions)

    # -- what the functions report ------------------------------------------------------------

    def machines(self, counts: Mapping[tuple[str, str, str, str], int]) -> None:
        """Machines by (state, subscription, os, ring) after a complete sweep."""
        for (state, subscription, os_name, ring), count in sorted(counts.items()):
            self._record(
                MACHINES, count, state=state, subscription=subscription, os=os_name, ring=ring
            )

    def swept(self, counts: SweepCounts) -> None:
        """A complete sweep's gauges: machines by state, those off the cycle, next restarts."""
        self.machines(counts.machines)
        for (reason, subscription, ring), count in sorted(counts.off_cycle.items()):
            self._record(OFF_CYCLE, count, reason=reason, subscription=subscription, ring=ring)
        for (day, subscription, ring), count in sorted(counts.next_restarts.items()):
            self._record(NEXT_RESTART, count, day=day, subscription=subscription, ring=ring)

    def state_changes(self, transitions: Iterable[Transition]) -> int:
        """One record per machine whose state changed; how many were written."""
        written = 0
        for change in transitions:
            self.event(
                STATE_CHANGED,
                machine_id=change.machine_id,
                subscription=_subscription_of(change.machine_id),
                resource_group=resource_group_of(change.machine_id) or "",
                from_state=change.from_state.value if change.from_state else "",
                to_state=change.to_state.value if change.to_state else "",
                reasons=",".join(change.reasons),
                run_id=change.run_id,
            )
            written += 1
        return written

    def operations(self, kind: str, started: int, outcomes: Mapping[str, int]) -> None:
        if started:
            self._record(OPERATIONS, started, kind=kind, status="started")
        for status, count in sorted(outcomes.items()):
            if count:
                self._record(OPERATIONS, count, kind=kind, status=status)

    def run_finished(self, kind: str, run_id: str, outcome: str, seconds: float) -> None:
        self._record(RUN_DURATION, seconds, kind=kind, outcome=outcome)
        self.event(
            RUN_FINISHED, kind=kind, run_id=run_id, outcome=outcome, seconds=round(seconds, 3)
        )

    def run_skipped(self, kind: str, reason: str, detail: str) -> None:
        self._record(RUNS_SKIPPED, 1, kind=kind, reason=reason)
        self.event(RUN_SKIPPED, kind=kind, reason=reason, detail=detail)

    def past_due(self, function: str) -> None:
        self.event(TIMER_PAST_DUE, function=function)

    def sweep_age(self, taken_at: datetime | None, now: datetime) -> None:
        """Nothing while no sweep has ever completed: the alert on a missing metric says so."""
        if taken_at is not None:
            self._record(SWEEP_AGE, max(0.0, (now - taken_at).total_seconds()))

    def catalog_staleness(self, source: str, since: datetime, now: datetime) -> None:
        self._record(CATALOG_STALENESS, max(0.0, (now - since).total_seconds()), source=source)

    def catalog_refreshed(self) -> None:
        self._record(CATALOG_REFRESHES, 1, outcome="succeeded")

    def catalog_refresh_failed(self, source: str, error: str) -> None:
        self._record(CATALOG_REFRESHES, 1, outcome="failed")
        self.event(CATALOG_REFRESH_FAILED, source=source, error=error)

    def batch(self, delivery: str, outcome: str) -> None:
        self._record(BATCHES, 1, delivery=delivery, outcome=outcome)

    def batch_redelivered(self, run_id: str, batch: int, dequeue_count: int) -> None:
        self.event(BATCH_REDELIVERED, run_id=run_id, batch=batch, dequeue_count=dequeue_count)

    def batch_poisoned(
        self, run_id: str, batch: int, operations: int, open_operations: int
    ) -> None:
        self.event(
            BATCH_POISONED,
            run_id=run_id,
            batch=batch,
            operations=operations,
            open_operations=open_operations,
        )


def _subscription_of(resource_id: str) -> str:
    parts = resource_id.split("/")
    for index, part in enumerate(parts[:-1]):
        if part.casefold() == "subscriptions":
            return parts[index + 1]
    return ""


_configured = threading.Lock()
_done = False


def configure(environ: Mapping[str, str] = os.environ) -> bool:
    """Send telemetry to Application Insights when its connection string is set (once per
    process); False when it is not (nothing is exported)."""
    global _done  # noqa: PLW0603 (the exporter is process-wide: configured once)
    connection = environ.get(CONNECTION_STRING_VARIABLE, "").strip()
    if not connection:
        return False
    with _configured:
        if not _done:
            from azure.monitor.opentelemetry import configure_azure_monitor

            configure_azure_monitor(connection_string=connection, logger_name=LOGGER_NAME)
            # The Functions host forwards what reaches the root logger to Application Insights
            # too: the events go through the exporter alone, with their dimensions, once.
            logging.getLogger(LOGGER_NAME).propagate = False
            _done = True
    return True
