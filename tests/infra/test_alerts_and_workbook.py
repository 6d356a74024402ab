"""The alert rules and the workbook, held to the code.

Every metric and event name their queries compare with `Name` or `Message` is one that
hotpatch.telemetry emits, and every dimension they read from `Properties` is one of those names'
own. Every query (an alert's as the Bicep composes it, a workbook item's as written) translates
and runs with the sandbox's KQL engine, duckdb-kql, over DuckDB tables shaped like the
workspace's AppMetrics and AppTraces. Their rows are telemetry the service really emitted
(hotpatch.telemetry into in-memory OpenTelemetry), turned into Azure Monitor envelopes by the
exporter's own conversion functions: a metric point's value is its row's Sum, its attributes
(as strings) its Properties; a log record's body is Message. Each alert returns a row exactly
when it should fire. Every threshold, severity, frequency and window is a main.bicep parameter.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb_kql
import pytest
from antlr4.tree.Tree import TerminalNode
from tree_sitter import Node

from hotpatch import telemetry
from hotpatch.core.models import State
from hotpatch.core.reasons import ReasonCode
from hotpatch.telemetry import EVENTS, METRICS, SweepCounts, Telemetry
from tests.functions.conftest import ROOT, in_memory_telemetry
from tests.functions.test_telemetry import BEHIND_THE_BASELINE, IN_FORCE, swept
from tests.infra.bicep import INFRA, Bicep, modules, params, parse, properties, variables

MAIN = parse(INFRA / "main.bicep")
ALERTS = parse(INFRA / "modules" / "alerts.bicep")
WORKBOOK_MODULE = parse(INFRA / "modules" / "workbook.bicep")
WORKBOOK = json.loads((INFRA / "workbook" / "hotpatch.workbook.json").read_text(encoding="utf-8"))

NOW = datetime(2026, 5, 13, 6, 0, tzinfo=UTC)
SUB = "11111111-1111-1111-1111-111111111111"

METRIC_DIMENSIONS = {metric.name: set(metric.dimensions) for metric in METRICS}
EVENT_DIMENSIONS = {event.name: set(event.dimensions) for event in EVENTS}


# -- the Bicep: rules, parameters, and the query text each rule deploys -----------------------


def _text(node: Node) -> str:
    return (node.text or b"").decode("utf-8")


def _object(node: Node) -> dict[str, Node]:
    """An object node's own properties: key -> value node."""
    found = {}
    for child in node.children:
        if child.type == "object_property":
            found[_text(child.children[0]).strip("'")] = child.children[-1]
    return found


@dataclass(frozen=True)
class Rule:
    name: str
    fields: dict[str, Node]

    def parameter(self, field: str) -> str:
        """The alerts module's parameter a field of the rule is (it must be one, no literal)."""
        value = self.fields[field]
        assert value.type == "identifier", f"{self.name}.{field} is {_text(value)!r}"
        return _text(value)


def rules() -> list[Rule]:
    array = variables(ALERTS)["rules"]
    found = []
    for item in array.children:
        if item.type == "object":
            fields = _object(item)
            found.append(Rule(_text(fields["name"]).strip("'"), fields))
    return found


RULES = {rule.name: rule for rule in rules()}


def _main_params() -> dict[str, Any]:
    return {param.name: param for param in params(MAIN)}


def _alerts_module_arguments() -> dict[str, str]:
    """The alerts module's parameters, each with the main.bicep expression passed to it."""
    (call,) = [module for module in modules(MAIN) if module.path == "modules/alerts.bicep"]
    (arguments,) = properties(call.node, "params")
    return {key: _text(value) for key, value in _object(arguments).items()}


def _value(default: str) -> Any:
    """A main.bicep default as a value: an int, a bool, a string, an empty array or object."""
    if re.fullmatch(r"-?\d+", default):
        return int(default)
    if default in ("true", "false"):
        return default == "true"
    if default == "[]":
        return []
    if default == "{}":
        return {}
    if default.startswith("'"):
        return default[1:-1]
    raise ValueError(f"not a literal default: {default}")


def module_defaults() -> dict[str, Any]:
    """What each alerts module parameter is when main.bicep is deployed with its defaults."""
    main = _main_params()
    found = {}
    for parameter, expression in _alerts_module_arguments().items():
        if expression in main and main[expression].default is not None:
            found[parameter] = _value(main[expression].default)
    return found


_ESCAPES = {"\\n": "\n", "\\t": "\t", "\\'": "'", "\\\\": "\\", "\\$": "$", "\\r": "\r"}


def evaluate_string(bicep: Bicep, node: Node, values: dict[str, Any]) -> str:
    """A Bicep string as ARM makes it: interpolations of parameters (from `values`) and of
    loadTextContent('<file beside the Bicep file>'); anything else is refused."""
    assert node.type == "string", _text(node)
    parts = []
    for child in node.children:
        if child.type == "string_content":
            parts.append(_text(child))
        elif child.type == "escape_sequence":
            parts.append(_ESCAPES[_text(child)])
        elif child.type == "interpolation":
            (inner,) = [c for c in child.children if c.is_named]
            if inner.type == "identifier":
                parts.append(str(values[_text(inner)]))
            else:
                call = re.fullmatch(r"loadTextContent\('([^']+)'\)", _text(inner))
                assert call is not None, f"cannot evaluate {_text(inner)!r}"
                parts.append((bicep.path.parent / call.group(1)).read_text(encoding="utf-8"))
    return "".join(parts)


def alert_query(name: str, **overrides: Any) -> str:
    """The query the rule deploys with main.bicep's defaults, some of them overridden."""
    values = {**module_defaults(), **overrides}
    return evaluate_string(ALERTS, RULES[name].fields["query"], values)


def workbook_queries() -> dict[str, str]:
    return {
        item["name"]: item["content"]["query"] for item in WORKBOOK["items"] if item["type"] == 3
    }


def all_queries() -> dict[str, str]:
    queries = {f"alert {name}": alert_query(name) for name in RULES}
    queries.update({f"workbook {name}": query for name, query in workbook_queries().items()})
    return queries


# -- KQL read through duckdb-kql's parser -------------------------------------------------------


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if not isinstance(node, TerminalNode):
        for child in node.getChildren():
            yield from _walk(child)


def _string_literals(node: Any) -> list[str]:
    found = []
    for each in _walk(node):
        if type(each).__name__ == "StringLiteralExpressionContext":
            found.append(json.loads(each.getText()))
    return found


@dataclass(frozen=True)
class Read:
    """What a query reads: (column, literal) pairs it compares, every string literal, and the
    keys it reads from Properties."""

    compared: set[tuple[str, str]]
    literals: list[str]
    dimensions: set[str]

    def names(self, column: str) -> set[str]:
        return {literal for compared, literal in self.compared if compared == column}


def read(kql: str) -> Read:
    parsed = duckdb_kql.parse(kql)
    assert parsed.ok, parsed.diagnostics
    compared: set[tuple[str, str]] = set()
    dimensions: set[str] = set()
    for node in _walk(parsed.tree):
        kind = type(node).__name__
        if kind == "EqualityExpressionContext" and node.getChildCount() > 1:
            left, *rest = list(node.getChildren())
            for other in rest:
                for literal in _string_literals(other):
                    compared.add((left.getText(), literal))
        if kind == "FunctionCallOrPathPathExpressionContext":
            root, *operations = list(node.getChildren())
            if root.getText() == "Properties":
                for operation in operations:
                    keys = _string_literals(operation)
                    dimensions.update(keys or [operation.getText().lstrip(".")])
    return Read(compared, _string_literals(parsed.tree), dimensions)


# -- a workspace: AppMetrics and AppTraces filled with the service's own telemetry -------------


class Workspace:
    """DuckDB tables shaped like a workspace-based Application Insights' AppMetrics and
    AppTraces (the columns the queries read), filled through hotpatch.telemetry.

    https://learn.microsoft.com/azure/azure-monitor/reference/tables/appmetrics
    https://learn.microsoft.com/azure/azure-monitor/reference/tables/apptraces
    """

    def __init__(self) -> None:
        self.connection = duckdb_kql.connect()
        self.connection.execute(
            "CREATE TABLE AppMetrics (TimeGenerated TIMESTAMPTZ, Name VARCHAR, Sum DOUBLE, "
            "Min DOUBLE, Max DOUBLE, ItemCount INTEGER, Properties JSON)"
        )
        self.connection.execute(
            "CREATE TABLE AppTraces (TimeGenerated TIMESTAMPTZ, Message VARCHAR, "
            "SeverityLevel INTEGER, Properties JSON)"
        )

    def emit(self, at: datetime, report: Callable[[Telemetry], object]) -> None:
        """What `report` records through a Telemetry, collected and exported once at `at` (as a
        function's flush does), into rows shaped as the exporter's envelopes say."""
        from azure.monitor.opentelemetry.exporter.export.logs._exporter import (
            _convert_log_to_envelope,
        )
        from azure.monitor.opentelemetry.exporter.export.metrics._exporter import (
            _convert_point_to_envelope,
        )

        with in_memory_telemetry(logging.DEBUG) as (telemetry, recorded):
            report(telemetry)
            data = recorded.metrics.get_metrics_data()
            for resource in data.resource_metrics if data is not None else ():
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        for point in metric.data.data_points:
                            envelope = _convert_point_to_envelope(point, metric.name)
                            base = envelope.data.base_data
                            (value,) = base.metrics
                            self.connection.execute(
                                "INSERT INTO AppMetrics VALUES (?, ?, ?, ?, ?, ?, ?)",
                                [
                                    at,
                                    value.name,
                                    value.value,
                                    value.min,
                                    value.max,
                                    value.count,
                                    json.dumps(base.properties or {}),
                                ],
                            )
            for record in recorded.logs.get_finished_logs():
                base = _convert_log_to_envelope(record).data.base_data
                self.connection.execute(
                    "INSERT INTO AppTraces VALUES (?, ?, ?, ?)",
                    [at, base.message, base.severity_level, json.dumps(base.properties or {})],
                )

    def run(self, kql: str, now: datetime = NOW) -> list[dict[str, Any]]:
        relation = duckdb_kql.kql(self.connection, kql, query_now=now)
        return [dict(zip(relation.columns, row, strict=True)) for row in relation.fetchall()]

    def fires(self, rule: str, now: datetime = NOW, **overrides: Any) -> list[dict[str, Any]]:
        return self.run(alert_query(rule, **overrides), now)


@pytest.fixture
def workspace() -> Workspace:
    return Workspace()


def sweep_of(*states: tuple[str, int], ring: str = "ring0") -> Callable[[Telemetry], object]:
    """A complete sweep's report: machines in these states, in one subscription and ring."""
    return lambda emitter: emitter.machines(
        {(state, SUB, "ws2022", ring): machines for state, machines in states}
    )


def real_sweep(*builds: str) -> Callable[[Telemetry], object]:
    """A complete sweep's report of freshly assessed VMs on these builds, judged by the core."""
    counts = SweepCounts()
    counts.add(swept(*builds))
    return lambda emitter: emitter.swept(counts)


def sweep_finished(outcome: str = "succeeded") -> Callable[[Telemetry], object]:
    return lambda emitter: emitter.run_finished("sweep", "20260513T050000Z-0001", outcome, 42.0)


# -- names and dimensions -----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(all_queries()))
def test_every_name_a_query_compares_is_a_metric_or_event_the_code_emits(name: str) -> None:
    query = read(all_queries()[name])

    assert query.names("Name") <= set(METRIC_DIMENSIONS)
    assert query.names("Message") <= set(EVENT_DIMENSIONS)
    assert query.names("Name") | query.names("Message"), "reads no metric and no event"
    unknown = {
        literal
        for literal in query.literals
        if literal.startswith("hotpatch.")
        and literal != "hotpatch."  # a prefix (startswith), not a name
        and literal not in METRIC_DIMENSIONS
        and literal not in EVENT_DIMENSIONS
    }
    assert unknown == set()


@pytest.mark.parametrize("name", sorted(all_queries()))
def test_every_dimension_a_query_reads_belongs_to_a_name_it_reads(name: str) -> None:
    query = read(all_queries()[name])
    theirs = set().union(
        *(METRIC_DIMENSIONS[metric] for metric in query.names("Name")),
        *(EVENT_DIMENSIONS[event] for event in query.names("Message")),
    )
    # `tostring(Properties)` reads the whole bag (the workbook's failure details), no key.
    assert query.dimensions - {""} <= theirs


@pytest.mark.parametrize("name", sorted(all_queries()))
def test_states_and_reasons_a_query_compares_are_the_core_s(name: str) -> None:
    query = read(all_queries()[name])
    states = {
        literal
        for column, literal in query.compared
        if column in ('tostring(Properties["state"])', "State")
    }
    reasons = {
        literal
        for column, literal in query.compared
        if column in ('tostring(Properties["reason"])', "Reason")
    }
    assert states <= {state.value for state in State}
    assert reasons <= {code.value for code in ReasonCode}


def test_the_reader_finds_names_dimensions_and_unknown_names() -> None:
    query = read(
        'AppMetrics | where Name == "hotpatch.nope" and tostring(Properties["x"]) in ("a")'
        ' | where Message in ("hotpatch.run.finished") | extend y = Properties.seconds'
    )
    assert query.names("Name") == {"hotpatch.nope"}
    assert query.names("Message") == {"hotpatch.run.finished"}
    assert query.dimensions == {"x", "seconds"}


def test_the_workbook_reads_every_name_the_alerts_need_and_shows_the_new_gauges() -> None:
    read_by_workbook: set[str] = set()
    for query in workbook_queries().values():
        parsed = read(query)
        read_by_workbook |= parsed.names("Name") | parsed.names("Message")
    assert {
        telemetry.MACHINES.name,
        telemetry.OFF_CYCLE.name,
        telemetry.NEXT_RESTART.name,
        telemetry.OPERATIONS.name,
        telemetry.STATE_CHANGED.name,
        telemetry.RUN_FINISHED.name,
    } <= read_by_workbook


# -- every query runs ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(all_queries()))
def test_every_query_translates_and_runs_over_an_empty_workspace(
    name: str, workspace: Workspace
) -> None:
    rows = workspace.run(all_queries()[name])
    # Only the heartbeat has anything to say about a workspace that heard nothing.
    assert (len(rows) == 1) is (name == "alert sweep-heartbeat")


def test_the_workbook_shows_a_real_sweep_by_state_ring_restart_and_off_cycle_reason(
    workspace: Workspace,
) -> None:
    workspace.emit(NOW - timedelta(hours=1), real_sweep(IN_FORCE, BEHIND_THE_BASELINE))
    queries = workbook_queries()

    by_state = {
        row["State"]: row["Machines"] for row in workspace.run(queries["compliance-by-state"])
    }
    by_ring = workspace.run(queries["compliance-by-ring"])
    restarts = workspace.run(queries["restarts"])
    off_cycle = workspace.run(queries["off-cycle"])

    assert sum(by_state.values()) == 2
    assert by_state.get("non_compliant") == 1
    assert [(row["Ring"], row["Machines"], row["NonCompliant"]) for row in by_ring] == [("1", 2, 1)]
    assert sum(row["Machines"] for row in restarts) == 2
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", row["Day"]) for row in restarts)
    assert [(row["Reason"], row["Machines"]) for row in off_cycle] == [("off_cycle", 1)]


def test_the_workbook_lists_state_changes_runs_and_failures(workspace: Workspace) -> None:
    from hotpatch.ports.store import Transition

    vm = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
    workspace.emit(
        NOW - timedelta(hours=1),
        lambda emitter: emitter.state_changes(
            [
                Transition(
                    machine_id=vm,
                    from_state=State.COMPLIANT,
                    to_state=State.NON_COMPLIANT,
                    at=NOW,
                    run_id="run-1",
                    reasons=("build_behind",),
                )
            ]
        ),
    )
    workspace.emit(NOW - timedelta(minutes=30), sweep_finished("failed"))
    workspace.emit(NOW - timedelta(minutes=20), lambda e: e.batch_poisoned("run-2", 3, 25, 1))
    queries = workbook_queries()

    (change,) = workspace.run(queries["state-changes"])
    (run,) = workspace.run(queries["runs"])
    failures = workspace.run(queries["failures"])

    assert (change["Machine"], change["From"], change["To"]) == (vm, "compliant", "non_compliant")
    assert change["Subscription"] == SUB
    assert (run["Kind"], run["Outcome"], run["Seconds"]) == ("sweep", "failed", 42.0)
    assert [row["Event"] for row in failures] == [
        telemetry.BATCH_POISONED.name,
        telemetry.RUN_FINISHED.name,
    ]


# -- each alert fires when it should, and only then ---------------------------------------------


def test_non_compliant_fires_above_its_threshold_and_not_at_it(workspace: Workspace) -> None:
    workspace.emit(NOW - timedelta(minutes=40), sweep_of(("non_compliant", 3), ("compliant", 9)))

    (row,) = workspace.fires("non-compliant", nonCompliantThreshold=2)
    assert row["NonCompliant"] == 3
    assert workspace.fires("non-compliant", nonCompliantThreshold=3) == []


def test_non_compliant_reads_the_latest_sweep_only(workspace: Workspace) -> None:
    workspace.emit(NOW - timedelta(minutes=100), sweep_of(("non_compliant", 50)))
    workspace.emit(NOW - timedelta(minutes=40), sweep_of(("compliant", 50)))

    assert workspace.fires("non-compliant") == []


def test_non_compliant_adds_up_every_subscription_and_ring_of_the_latest_sweep(
    workspace: Workspace,
) -> None:
    def sweep(emitter: Telemetry) -> None:
        emitter.machines(
            {
                ("non_compliant", SUB, "ws2022", "ring0"): 2,
                ("non_compliant", "other", "ws2025", "ring1"): 2,
            }
        )

    workspace.emit(NOW - timedelta(minutes=40), sweep)

    (row,) = workspace.fires("non-compliant", nonCompliantThreshold=3)
    assert row["NonCompliant"] == 4


def test_off_cycle_fires_for_a_machine_behind_the_baseline_in_a_real_sweep(
    workspace: Workspace,
) -> None:
    workspace.emit(NOW - timedelta(minutes=40), real_sweep(IN_FORCE, BEHIND_THE_BASELINE))

    (row,) = workspace.fires("off-cycle")
    assert row["OffCycle"] == 1


def test_off_cycle_ends_with_a_later_sweep_that_finds_none(workspace: Workspace) -> None:
    workspace.emit(NOW - timedelta(minutes=100), real_sweep(BEHIND_THE_BASELINE))
    workspace.emit(NOW - timedelta(minutes=40), real_sweep(IN_FORCE))

    assert workspace.fires("off-cycle") == []


def test_off_cycle_counts_only_the_latest_sweep_against_its_threshold(
    workspace: Workspace,
) -> None:
    workspace.emit(
        NOW - timedelta(minutes=40), real_sweep(BEHIND_THE_BASELINE, BEHIND_THE_BASELINE)
    )

    assert workspace.fires("off-cycle", offCycleThreshold=1) != []
    assert workspace.fires("off-cycle", offCycleThreshold=2) == []


def test_stale_assessments_fire_on_machines_whose_assessment_is_due(
    workspace: Workspace,
) -> None:
    workspace.emit(NOW - timedelta(minutes=40), sweep_of(("assessment_due", 4), ("compliant", 1)))

    (row,) = workspace.fires("stale-assessments")
    assert row["AssessmentDue"] == 4
    assert workspace.fires("stale-assessments", staleAssessmentsThreshold=4) == []


def test_stale_assessments_stay_quiet_when_every_assessment_is_fresh(
    workspace: Workspace,
) -> None:
    workspace.emit(NOW - timedelta(minutes=40), sweep_of(("compliant", 5), ("pending", 2)))

    assert workspace.fires("stale-assessments") == []


def test_remediation_failures_fire_on_a_failed_operation(workspace: Workspace) -> None:
    workspace.emit(
        NOW - timedelta(minutes=20),
        lambda emitter: emitter.operations("install", 2, {"succeeded": 1, "failed": 1}),
    )

    (row,) = workspace.fires("remediation-failures")
    assert row["Failures"] == 1


def test_remediation_failures_add_up_deltas_poisoned_batches_and_failed_runs(
    workspace: Workspace,
) -> None:
    workspace.emit(
        NOW - timedelta(minutes=50), lambda emitter: emitter.operations("install", 3, {"failed": 2})
    )
    workspace.emit(
        NOW - timedelta(minutes=30), lambda emitter: emitter.operations("assess", 1, {"failed": 1})
    )
    workspace.emit(NOW - timedelta(minutes=20), lambda e: e.batch_poisoned("run-2", 3, 25, 1))
    workspace.emit(
        NOW - timedelta(minutes=10), lambda e: e.run_finished("batch", "run-3", "failed", 1.0)
    )

    (row,) = workspace.fires("remediation-failures", remediationFailuresThreshold=4)
    assert row["Failures"] == 5
    assert workspace.fires("remediation-failures", remediationFailuresThreshold=5) == []


def test_remediation_failures_stay_quiet_for_successes_and_for_failures_before_the_window(
    workspace: Workspace,
) -> None:
    workspace.emit(
        NOW - timedelta(hours=3), lambda emitter: emitter.operations("install", 1, {"failed": 1})
    )
    workspace.emit(
        NOW - timedelta(minutes=20),
        lambda emitter: emitter.operations("install", 5, {"succeeded": 5}),
    )
    workspace.emit(
        NOW - timedelta(minutes=10), lambda e: e.run_finished("sweep", "run-4", "failed", 1.0)
    )

    assert workspace.fires("remediation-failures") == []


def test_a_stale_catalog_fires_past_its_days(workspace: Workspace) -> None:
    workspace.emit(
        NOW - timedelta(minutes=30),
        lambda emitter: emitter.catalog_staleness("store", NOW - timedelta(days=4), NOW),
    )

    (row,) = workspace.fires("stale-catalog")
    assert (round(row["StaleDays"]), row["Source"]) == (4, "store")
    assert workspace.fires("stale-catalog", staleCatalogDays=5) == []


def test_a_catalog_refreshed_since_ends_the_stale_catalog_alert(workspace: Workspace) -> None:
    workspace.emit(
        NOW - timedelta(hours=2),
        lambda emitter: emitter.catalog_staleness("shipped", NOW - timedelta(days=20), NOW),
    )
    workspace.emit(
        NOW - timedelta(minutes=30),
        lambda emitter: emitter.catalog_staleness("store", NOW - timedelta(hours=5), NOW),
    )

    assert workspace.fires("stale-catalog") == []


def test_the_heartbeat_fires_when_the_app_sent_nothing_at_all(workspace: Workspace) -> None:
    (row,) = workspace.fires("sweep-heartbeat")
    assert row["CompleteSweeps"] == 0


def test_the_heartbeat_fires_when_sweeps_run_but_none_completes(workspace: Workspace) -> None:
    workspace.emit(NOW - timedelta(hours=2), sweep_finished("failed"))
    workspace.emit(NOW - timedelta(hours=1), sweep_finished("failed"))
    workspace.emit(NOW - timedelta(minutes=30), lambda e: e.past_due("sweep"))

    assert len(workspace.fires("sweep-heartbeat")) == 1


def test_the_heartbeat_fires_when_the_last_complete_sweep_is_older_than_its_hours(
    workspace: Workspace,
) -> None:
    workspace.emit(NOW - timedelta(hours=5), sweep_finished())

    assert len(workspace.fires("sweep-heartbeat", sweepHeartbeatHours=4)) == 1
    assert workspace.fires("sweep-heartbeat", sweepHeartbeatHours=6) == []


def test_the_heartbeat_is_quiet_after_a_complete_sweep(workspace: Workspace) -> None:
    workspace.emit(NOW - timedelta(hours=1), sweep_finished())

    assert workspace.fires("sweep-heartbeat") == []


# -- the rules' parameters ----------------------------------------------------------------------

ALERT_NAMES = {
    "non-compliant",
    "off-cycle",
    "stale-assessments",
    "remediation-failures",
    "stale-catalog",
    "sweep-heartbeat",
}


def test_there_is_one_rule_per_alert_of_the_issue_each_with_a_query_file() -> None:
    assert set(RULES) == ALERT_NAMES
    for name in RULES:
        assert (INFRA / "alerts" / f"{name}.kql").is_file()
        assert f"{name}.kql" in _text(RULES[name].fields["query"])


@pytest.mark.parametrize("name", sorted(ALERT_NAMES))
def test_each_rule_s_severity_frequency_window_and_threshold_are_main_bicep_parameters(
    name: str,
) -> None:
    rule = RULES[name]
    module_params = {param.name for param in params(ALERTS)}
    passed = _alerts_module_arguments()
    main = _main_params()
    query = RULES[name].fields["query"]
    thresholds = [
        _text(child.children[1])
        for child in query.children
        if child.type == "interpolation" and child.children[1].type == "identifier"
    ]
    assert thresholds, "the query takes no parameter"

    for parameter in [
        rule.parameter("severity"),
        rule.parameter("frequencyMinutes"),
        rule.parameter("windowHours"),
        *thresholds,
    ]:
        assert parameter in module_params
        on_main = main[passed[parameter]]
        assert on_main.default is not None, on_main.name
        assert on_main.description, on_main.name


def test_every_rule_reads_at_least_one_frequency_s_worth_of_telemetry() -> None:
    values = module_defaults()
    for name, rule in RULES.items():
        frequency = values[rule.parameter("frequencyMinutes")]
        window = values[rule.parameter("windowHours")]
        severity = values[rule.parameter("severity")]
        assert window * 60 >= frequency, name
        assert severity in range(5), name


def test_the_rules_are_scheduled_query_rules_over_the_workspace_with_the_action_group() -> None:
    text = ALERTS.text
    assert "Microsoft.Insights/scheduledQueryRules@" in text
    assert "Microsoft.Insights/actionGroups@" in text
    (scopes,) = properties(ALERTS.root, "scopes")
    assert "workspaceId" in _text(scopes)
    (receivers,) = properties(ALERTS.root, "emailReceivers")
    assert "emails" in _text(receivers)
    (hooks,) = properties(ALERTS.root, "webhookReceivers")
    assert "webhooks" in _text(hooks)


def test_main_wires_both_modules_to_the_monitoring_outputs() -> None:
    passed = _alerts_module_arguments()
    assert passed["workspaceId"] == "monitoring.outputs.workspaceId"
    (call,) = [module for module in modules(MAIN) if module.path == "modules/workbook.bicep"]
    (arguments,) = properties(call.node, "params")
    wired = {key: _text(value) for key, value in _object(arguments).items()}
    assert wired["workspaceId"] == "monitoring.outputs.workspaceId"
    assert wired["appInsightsId"] == "monitoring.outputs.appInsightsId"
    assert set(passed) == {param.name for param in params(ALERTS)}
    assert set(wired) == {param.name for param in params(WORKBOOK_MODULE)}


# -- the workbook -------------------------------------------------------------------------------


def test_every_workbook_query_reads_the_workspace_over_the_chosen_time_range() -> None:
    placeholder = "__HOTPATCH_WORKSPACE_ID__"
    assert placeholder in WORKBOOK_MODULE.text
    (workspace_parameter,) = [
        parameter
        for item in WORKBOOK["items"]
        if item["type"] == 9
        for parameter in item["content"]["parameters"]
        if parameter["name"] == "Workspace"
    ]
    assert workspace_parameter["value"] == placeholder
    for item in WORKBOOK["items"]:
        if item["type"] == 3:
            content = item["content"]
            assert content["crossComponentResources"] == ["{Workspace}"], item["name"]
            assert content["timeContextFromParameter"] == "TimeRange", item["name"]
            assert "{" not in content["query"], item["name"]  # no workbook placeholder in KQL


# -- the README ---------------------------------------------------------------------------------


def test_the_readme_lists_each_alert_and_workbook_parameter_once_with_its_default() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- >>> alert parameters -->", 1)[1].split(
        "<!-- <<< alert parameters -->", 1
    )[0]
    rows = re.findall(r"^\| `(\w+)` \| ([^|]+) \|", section, re.M)
    main_text = MAIN.text
    mine = main_text.split("// >>> alerts and workbook", 1)[1].split("// <<< alerts and workbook")[
        0
    ]
    declared = {
        param.name: param.default
        for param in params(MAIN)
        if re.search(rf"^param {param.name} ", mine, re.M)
    }
    assert sorted(name for name, _ in rows) == sorted(declared)
    for name, default in rows:
        assert default.strip() == f"`{declared[name]}`", name
