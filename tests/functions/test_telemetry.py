"""Telemetry: every metric and log record the service emits has exactly a name and dimensions
of hotpatch.telemetry's lists (the alert rules and the workbook read those), and Azure Monitor
is switched on only by its connection string."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from hotpatch import telemetry
from hotpatch.core.calendar import Calendar
from hotpatch.core.compliance import Evaluator
from hotpatch.core.inventory import parse_rows
from hotpatch.core.models import State, Verdict
from hotpatch.core.policy import Policy
from hotpatch.data import shipped_image_catalog, shipped_release_catalog
from hotpatch.ports.store import Transition
from hotpatch.telemetry import EVENTS, METRICS, SweepCounts, Telemetry
from tests import builders
from tests.functions.conftest import ROOT, Recorded, in_memory_telemetry

NOW = datetime(2026, 5, 13, 0, 30, tzinfo=UTC)
VM = (
    "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/rg"
    "/providers/Microsoft.Compute/virtualMachines/vm1"
)


@pytest.fixture
def recorded() -> Iterator[tuple[Telemetry, Recorded]]:
    with in_memory_telemetry() as captured:
        yield captured


#: WS2022 builds (tests/unit/test_compliance.py): the release in force at builders.NOW, and one
#: behind January's baseline, which is off the hotpatch cycle.
IN_FORCE, BEHIND_THE_BASELINE = "10.0.20348.4711", "10.0.20348.4467"


def swept(*builds: str) -> list[Verdict]:
    """Freshly assessed VMs vm0, vm1, ... on these builds, judged at builders.NOW."""
    rows = []
    for number, build in enumerate(builds):
        rows += [
            builders.vm_row(f"vm{number}", build=build),
            builders.assessment_row(builders.vm_id(f"vm{number}")),
        ]
    evaluator = Evaluator(
        shipped_image_catalog(), Calendar(shipped_release_catalog()), Policy(), builders.NOW
    )
    return list(evaluator.evaluate_all(parse_rows(rows)))


def emit_everything(emitter: Telemetry) -> None:
    counts = SweepCounts()
    counts.add(swept(IN_FORCE, BEHIND_THE_BASELINE))
    emitter.swept(counts)
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


def test_a_sweep_counts_machines_off_the_cycle_by_reason_and_next_restarts_by_day(
    recorded: tuple[Telemetry, Recorded],
) -> None:
    emitter, seen = recorded
    verdicts = swept(IN_FORCE, BEHIND_THE_BASELINE, BEHIND_THE_BASELINE)
    counts = SweepCounts()
    counts.add(verdicts[:1])
    counts.add(verdicts[1:])  # page by page, as the sweep streams them

    emitter.swept(counts)

    points = seen.points()
    off_cycle = [(a, v) for name, a, v in points if name == telemetry.OFF_CYCLE.name]
    assert off_cycle == [
        ({"reason": "off_cycle", "subscription": builders.SUBSCRIPTION, "ring": "1"}, 2)
    ]
    restarts = {a["day"]: v for name, a, v in points if name == telemetry.NEXT_RESTART.name}
    expected: dict[str, int] = {}
    for verdict in verdicts:
        assert verdict.next_restart is not None
        day = verdict.next_restart.date().isoformat()
        expected[day] = expected.get(day, 0) + 1
    assert restarts == expected
    machines = sum(v for name, _, v in points if name == telemetry.MACHINES.name)
    assert machines == 3


def test_a_sweep_with_no_machine_off_the_cycle_records_no_off_cycle_point(
    recorded: tuple[Telemetry, Recorded],
) -> None:
    emitter, seen = recorded
    counts = SweepCounts()
    counts.add(swept(IN_FORCE))

    emitter.swept(counts)

    names = {name for name, _, _ in seen.points()}
    assert telemetry.OFF_CYCLE.name not in names
    assert {telemetry.MACHINES.name, telemetry.NEXT_RESTART.name} <= names


def test_the_off_cycle_reasons_are_reasons_of_the_core_that_take_a_machine_off_the_track() -> None:
    from hotpatch.core.reasons import ReasonCode

    assert set(telemetry.OFF_THE_CYCLE) <= set(ReasonCode)
    assert {ReasonCode(code).state for code in telemetry.OFF_THE_CYCLE} <= {
        State.NON_COMPLIANT,
        State.MISCONFIGURED,
    }


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
