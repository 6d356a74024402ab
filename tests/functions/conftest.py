"""The Function App as the Functions host loads it, aimed at a sandbox through the host seam.

`function_app.py` is imported from its file as the Python worker imports it; its functions are
found through `app.get_functions()` and called with the azure-functions types. The app's host
(`hotpatch.functions.host`) is replaced for each test by one whose settings are the test's, whose
target is a sandbox started for the test, whose clock is the sandbox's, and whose telemetry goes
to in-memory OpenTelemetry readers.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Generic, TypeVar

import azure.functions as func
import azure.functions.timer
import pytest
from azure.functions.decorators.function_app import Function
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, InMemoryMetricReader

from hotpatch.bootstrap import SandboxEndpoint, sandbox_target, scope_of
from hotpatch.functions import host as hosting
from hotpatch.functions.host import FunctionHost
from hotpatch.ports import Store
from hotpatch.sandbox.estate import Estate
from hotpatch.sandbox.request_log import LoggedRequest, read_requests
from hotpatch.sandbox.server import Sandbox, SandboxConfig
from hotpatch.telemetry import Telemetry
from tests.integration.conftest import ManualClock, vm_row

ROOT = Path(__file__).resolve().parents[2]
RELEASE_PAGES = ROOT / "tests" / "fixtures" / "release-info"

#: The day after May 2026's Patch Tuesday (the 12th), inside ring 0's window below.
IN_WINDOW = datetime(2026, 5, 13, 0, 30, tzinfo=UTC)
WS2022_APRIL_BASELINE = "10.0.20348.5020"

POLICY = """
mode: remediate
install_pending: true
rings:
  - name: ring0
    window: {offset_days: 1, start: "00:00", time_zone: UTC, duration: 3h}
"""


def machine(name: str, subscription: str | None = None) -> dict[str, Any]:
    """A Windows Server 2022 VM on April's baseline, in ring 0, never assessed: an assessment
    is due before anything else."""
    row = vm_row(
        name,
        os_version=WS2022_APRIL_BASELINE,
        **({"subscription": subscription} if subscription else {}),
    )
    row["tags"] = {"hotpatch-ring": "ring0"}
    return row


SUB_B = "22222222-2222-2222-2222-222222222222"
ESTATE = Estate([*(machine(f"vm{n}") for n in range(4)), machine("far0", SUB_B)], [], [])


def delta_reader() -> InMemoryMetricReader:
    return InMemoryMetricReader(
        preferred_temporality={
            Counter: AggregationTemporality.DELTA,
            Histogram: AggregationTemporality.DELTA,
        }
    )


def load_function_app() -> ModuleType:
    """Import function_app.py from its file, as the Python worker does at indexing."""
    spec = importlib.util.spec_from_file_location("function_app", ROOT / "function_app.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def functions_of(module: ModuleType) -> dict[str, Function]:
    app = module.app
    return {f.get_function_name(): f for f in app.get_functions()}


T = TypeVar("T")


class Out(func.Out[T], Generic[T]):
    """An output binding as the worker hands it to a function."""

    def __init__(self) -> None:
        self.value: T | None = None

    def set(self, val: T) -> None:
        self.value = val

    def get(self) -> T:
        assert self.value is not None
        return self.value


class Recorded:
    """The telemetry one test's functions emitted, read from in-memory OpenTelemetry. Each
    collection hands over what was recorded since the one before (delta temporality, as Azure
    Monitor's exporter asks for counters and histograms; a gauge value is observed once), so
    the points are kept as they come."""

    def __init__(self, metrics: InMemoryMetricReader, logs: InMemoryLogRecordExporter) -> None:
        self.metrics = metrics
        self.logs = logs
        self._points: list[tuple[str, dict[str, Any], float]] = []

    def points(self) -> list[tuple[str, dict[str, Any], float]]:
        data = self.metrics.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        value = getattr(point, "value", None)
                        if value is None:
                            value = getattr(point, "sum", 0.0)
                        self._points.append(
                            (metric.name, dict(point.attributes or {}), float(value))
                        )
        return list(self._points)

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            (str(item.log_record.body), dict(item.log_record.attributes or {}))
            for item in self.logs.get_finished_logs()
        ]

    def named(self, event: str) -> list[dict[str, Any]]:
        return [attributes for name, attributes in self.events() if name == event]

    def metric(self, name: str) -> list[tuple[dict[str, Any], float]]:
        return [(attributes, value) for n, attributes, value in self.points() if n == name]


@dataclass
class App:
    """The loaded Function App, its host, the sandbox behind it and what it recorded."""

    module: ModuleType
    functions: dict[str, Function]
    host: FunctionHost
    sandbox: Sandbox
    clock: ManualClock
    telemetry: Recorded
    environ: dict[str, str]
    home: Path
    calls: list[str] = field(default_factory=list)

    @property
    def store(self) -> Store:
        return self.host.store()

    def call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(name)
        return self.functions[name].get_user_function()(*args, **kwargs)

    def requests(self, operation: str = "assessPatches") -> list[LoggedRequest]:
        assert self.sandbox.state_dir is not None
        return [r for r in read_requests(self.sandbox.state_dir) if r.operation == operation]

    def assessed(self) -> list[str]:
        """The machines the sandbox was asked to assess, by name, in order of name."""
        return sorted(r.machine_id.rsplit("/", 1)[-1] for r in self.requests())


_telemetry_loggers = iter(range(sys.maxsize))


@contextmanager
def in_memory_telemetry(level: int = logging.INFO) -> Iterator[tuple[Telemetry, Recorded]]:
    """A Telemetry over in-memory OpenTelemetry providers (a logger of its own, so that tests
    never hear each other), and what it recorded; shut down after the block."""
    reader = delta_reader()
    meters = MeterProvider(metric_readers=[reader])
    exporter = InMemoryLogRecordExporter()
    loggers = LoggerProvider()
    loggers.add_log_record_processor(SimpleLogRecordProcessor(exporter))
    logger = logging.getLogger(f"hotpatch.telemetry.test{next(_telemetry_loggers)}")
    logger.setLevel(level)
    logger.propagate = False
    handler = LoggingHandler(logger_provider=loggers)
    logger.addHandler(handler)
    try:
        yield Telemetry(meters, logger), Recorded(reader, exporter)
    finally:
        logger.removeHandler(handler)
        meters.shutdown()
        loggers.shutdown()


@pytest.fixture
def function_app(tmp_path: Path) -> Iterator[App]:
    clock = ManualClock(now_at=IN_WINDOW)
    config = SandboxConfig(
        state_dir=tmp_path / "sandbox",
        operation_latency_seconds=0.05,
        # One second between polls (with 0, azure-core falls back to the adapter's 10 s).
        operation_retry_after_seconds=1,
    )
    sandbox = Sandbox(config, ESTATE, clock=clock).start()
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY, encoding="utf-8")
    environ = {
        "HOTPATCH_STORE": str(tmp_path / "store"),
        "HOTPATCH_REMEDIATION_POLICY": str(policy),
        "HOTPATCH_CATALOG_SOURCE": str(RELEASE_PAGES / "through-2026-07.html"),
        "HOTPATCH_SWEEP_SCHEDULE": "0 0 * * * *",
    }
    stack = ExitStack()
    telemetry, recorded = stack.enter_context(in_memory_telemetry())
    endpoint = SandboxEndpoint(sandbox.base_url, sandbox.ca_path)
    host = FunctionHost(
        environ=environ,
        target=lambda settings: sandbox_target(endpoint, scope=scope_of(settings)),
        clock=clock.now,
        telemetry_factory=lambda: telemetry,
    )
    previous = hosting.use(host)
    try:
        module = load_function_app()
        yield App(
            module,
            functions_of(module),
            host,
            sandbox,
            clock,
            recorded,
            environ,
            tmp_path,
        )
    finally:
        hosting.use(previous)
        host.close()
        sandbox.stop()
        stack.close()


def timer(*, past_due: bool = False) -> func.TimerRequest:
    """A timer's invocation, as the worker builds it from the host's."""
    return azure.functions.timer.TimerRequest(past_due=past_due)


def together(*calls: Any, timeout: float = 60.0) -> list[Any]:
    """Run the calls on threads started together; their results (or exceptions), in order."""
    results: list[Any] = [None] * len(calls)
    gate = threading.Barrier(len(calls))

    def run(index: int) -> None:
        gate.wait()
        try:
            results[index] = calls[index]()
        except BaseException as error:  # handed back to the test
            results[index] = error

    threads = [threading.Thread(target=run, args=(n,)) for n in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return results
