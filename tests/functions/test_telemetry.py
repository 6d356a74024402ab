"""Telemetry: every metric and log record the service emits has exactly a name and dimensions
of hotpatch.telemetry's lists (the alert rules and the workbook read those), and Azure Monitor
is switched on only by its connection string."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider

from hotpatch import telemetry
from hotpatch.core.models import State
from hotpatch.ports.store import Transition
from hotpatch.telemetry import EVENTS, METRICS, Telemetry
from tests.functions.conftest import ROOT, Recorded, delta_reader

NOW = datetime(2026, 5, 13, 0, 30, tzinfo=UTC)
VM = (
    "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg"
    "/providers/Microsoft.Compute/virtualMachines/vm1"
)


@pytest.fixture
def recorded() -> Iterator[tuple[Telemetry, Recorded]]:
    reader = delta_reader()
    meters = MeterProvider(metric_readers=[reader])
    exporter = InMemoryLogRecordExporter()
    loggers = LoggerProvider()
    loggers.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger("hotpatch.telemetry.names-test")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    handler = LoggingHandler(logger_provider=loggers)
    logger.addHandler(handler)
    try:
        yield Telemetry(meters, logger), Recorded(reader, exporter)
    finally:
        logger.removeHandler(handler)
        meters.shutdown()
        loggers.shutdown()


def emit_everything(emitter: Telemetry) -> None:
    emitter.machines({("non_compliant", "sub", "ws2022", "ring0"): 3})
    emitter.state_changes(
        [
            Transition(
                machine_id=VM,
                from_state=State.COMPLIANT,
                to_state=State.NON_COMPLIANT,
                at=NOW,
                run_id="20260513T003000Z-0001",
                reasons=("non_compliant",),
            )
        ]
    )
    emitter.operations("install", 2, {"succeeded": 1, "failed": 1})
    emitter.run_finished("sweep", "20260513T003000Z-0001", "succeeded", 1.5)
    emitter.run_skipped("remediate", "lease_held", "another remediation holds the lease")
    emitter.past_due("sweep")
    emitter.sweep_age(NOW - timedelta(hours=1), NOW)
    emitter.catalog_staleness("store", NOW - timedelta(days=1), NOW)
    emitter.catalog_refreshed()
    emitter.catalog_refresh_failed("https://example.test/page", "no column 'Type'")
    emitter.batch("redelivered", "duplicate")
    emitter.batch_redelivered("20260513T003000Z-0001", 2, 3)
    emitter.batch_poisoned("20260513T003000Z-0001", 2, 25, 1)


def test_every_metric_has_a_name_and_exactly_the_dimensions_of_the_names_module(
    recorded: tuple[Telemetry, Recorded],
) -> None:
    emitter, seen = recorded
    emit_everything(emitter)

    declared = {metric.name: set(metric.dimensions) for metric in METRICS}
    points = seen.points()
    assert {name for name, _, _ in points} == set(declared)
    for name, attributes, _ in points:
        assert set(attributes) == declared[name], name


def test_every_log_record_is_an_event_of_the_names_module_with_exactly_its_dimensions(
    recorded: tuple[Telemetry, Recorded],
) -> None:
    emitter, seen = recorded
    emit_everything(emitter)

    declared = {event.name: set(event.dimensions) for event in EVENTS}
    events = seen.events()
    assert {name for name, _ in events} == set(declared)
    for name, attributes in events:
        assert (
            set(attributes) - {"code.file.path", "code.function.name", "code.line.number"}
            == (declared[name])
        ), name


def test_a_state_change_names_the_machine_its_subscription_group_and_both_states(
    recorded: tuple[Telemetry, Recorded],
) -> None:
    emitter, seen = recorded
    emit_everything(emitter)

    (change,) = seen.named(telemetry.STATE_CHANGED.name)
    assert change["machine_id"] == VM
    assert change["subscription"] == "11111111-1111-1111-1111-111111111111"
    assert change["resource_group"] == "rg"
    assert (change["from_state"], change["to_state"]) == ("compliant", "non_compliant")
    assert change["reasons"] == "non_compliant"


def test_a_gauge_value_is_exported_once_not_at_every_export_interval(
    recorded: tuple[Telemetry, Recorded],
) -> None:
    emitter, seen = recorded
    emitter.machines({("compliant", "sub", "ws2025", "ring1"): 7})

    first = seen.metrics.get_metrics_data()
    again = seen.metrics.get_metrics_data()

    def values(data: object) -> list[float]:
        return [
            point.value
            for resource in getattr(data, "resource_metrics", ())
            for scope in resource.scope_metrics
            for metric in scope.metrics
            for point in metric.data.data_points
        ]

    assert values(first) == [7]
    assert values(again) == []


def test_names_are_unique_and_in_the_service_s_namespace() -> None:
    names = [m.name for m in METRICS] + [e.name for e in EVENTS]
    assert len(names) == len(set(names))
    assert all(name.startswith("hotpatch.") for name in names)


def test_a_dimension_outside_the_names_module_is_refused(
    recorded: tuple[Telemetry, Recorded],
) -> None:
    emitter, _ = recorded
    with pytest.raises(ValueError, match="not its own"):
        emitter.event(telemetry.TIMER_PAST_DUE, function="sweep", extra="x")


def test_azure_monitor_is_configured_only_with_a_connection_string() -> None:
    assert telemetry.configure({}) is False
    assert telemetry.configure({telemetry.CONNECTION_STRING_VARIABLE: "  "}) is False


def test_the_readme_lists_every_metric_and_log_record_with_its_dimensions() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Running as a Function App\n", 1)[1].split("\n## ", 1)[0]
    rows = {
        match.group(1): {d.strip("` ") for d in match.group(2).split(",") if d.strip("` ")}
        for match in re.finditer(r"^\| `(hotpatch\.[a-z_.]+)` \|[^|]*\|([^|]*)\|", section, re.M)
    }
    declared = {m.name: set(m.dimensions) for m in METRICS}
    declared.update({e.name: set(e.dimensions) for e in EVENTS})
    assert rows == declared
