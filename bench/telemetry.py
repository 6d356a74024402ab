"""Benchmark: the telemetry a steady-state sweep of N machines sends to Application Insights.

Two sweeps of a generated estate go through the Function App's own use case
(`hotpatch.scheduled.recorded_sweep`: inventory -> evaluate -> snapshot in an embedded store ->
telemetry) over an in-memory inventory: the first fills the store (its machines have no earlier
state, so it logs no state change), the second, an hour later, sees 2% of the VMs deallocated
(the steady state bench/store.py measures too). The second sweep's telemetry is caught by
in-memory OpenTelemetry readers and each item is converted to the envelope the Azure Monitor
exporter sends (its own conversion functions), whose JSON size is what ingestion bills.

Prints records and bytes by kind (metric points, log records), what logging every verdict
would have cost instead, and one JSON line of the figures; asserts nothing.

    .venv/bin/python bench/telemetry.py [--machines 100000] [--seed 7]
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from hotpatch import bootstrap
from hotpatch.bootstrap import Target, World
from hotpatch.fakes import InMemoryInventory
from hotpatch.ports import PatchOperations, RawRow, Scope
from hotpatch.sandbox.estate import EstateSpec, generate_estate
from hotpatch.sandbox.session import default_as_of
from hotpatch.scheduled import SweepDone, recorded_sweep
from hotpatch.settings import Settings
from hotpatch.store.embedded import EmbeddedStore
from hotpatch.telemetry import STATE_CHANGED, Telemetry


def deallocate_some(rows: list[RawRow]) -> list[RawRow]:
    """The same rows with one VM in fifty deallocated (by a hash of its id, as bench/store.py)."""
    changed = []
    for row in rows:
        kind = str(row.get("type", "")).casefold()
        if kind == "microsoft.compute/virtualmachines" and not (
            zlib.crc32(str(row.get("id", "")).casefold().encode()) % 50
        ):
            copy = json.loads(json.dumps(row))
            view = copy.setdefault("properties", {}).setdefault("extended", {})
            view.setdefault("instanceView", {})["powerState"] = {"code": "PowerState/deallocated"}
            changed.append(copy)
        else:
            changed.append(row)
    return changed


class Caught:
    """One sweep's telemetry, caught in memory."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.meters = MeterProvider(metric_readers=[self.reader])
        self.exporter = InMemoryLogRecordExporter()
        self.loggers = LoggerProvider()
        self.loggers.add_log_record_processor(SimpleLogRecordProcessor(self.exporter))
        self.logger = logging.getLogger(f"hotpatch.telemetry.bench{id(self)}")
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        self.logger.addHandler(LoggingHandler(logger_provider=self.loggers))
        self.telemetry = Telemetry(self.meters, self.logger)

    def envelopes(self) -> tuple[list[int], list[int], Counter[str]]:
        """JSON sizes of the metric envelopes and the log envelopes, and log records by name."""
        from azure.monitor.opentelemetry.exporter.export.logs._exporter import (
            _convert_log_to_envelope,
        )
        from azure.monitor.opentelemetry.exporter.export.metrics._exporter import (
            _convert_point_to_envelope,
        )

        metric_sizes: list[int] = []
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data is not None else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    for point in metric.data.data_points:
                        envelope = _convert_point_to_envelope(
                            point, metric.name, resource.resource, scope.scope
                        )
                        metric_sizes.append(_size(envelope))
        log_sizes: list[int] = []
        names: Counter[str] = Counter()
        for record in self.exporter.get_finished_logs():
            log_sizes.append(_size(_convert_log_to_envelope(record)))
            names[str(record.log_record.body)] += 1
        return metric_sizes, log_sizes, names


def _size(envelope: Any) -> int:
    return len(json.dumps(envelope.as_dict(), default=str, separators=(",", ":")).encode())


def target_over(rows: list[RawRow]) -> Target:
    inventory = InMemoryInventory(rows)

    @asynccontextmanager
    async def no_operations() -> AsyncIterator[PatchOperations]:
        raise RuntimeError("a sweep starts no operation")
        yield  # pragma: no cover

    return Target(inventory, Scope(), no_operations, inventory)


def sweep_once(
    world: World, rows: list[RawRow], store: EmbeddedStore, caught: Caught, clock: Any
) -> tuple[SweepDone, float]:
    started = time.perf_counter()
    done = recorded_sweep(world, target_over(rows), store, caught.telemetry, clock=clock)
    assert isinstance(done, SweepDone)
    return done, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    settings = Settings()
    world = bootstrap.build(settings)
    as_of = default_as_of(world.rules.releases)
    started = time.perf_counter()
    estate = generate_estate(
        EstateSpec(machines=args.machines, seed=args.seed, as_of=as_of), world.rules.releases
    )
    rows = list(estate.rows())
    took = time.perf_counter() - started
    print(f"estate: {args.machines:,} machines, {len(rows):,} rows ({took:.1f} s)")

    with tempfile.TemporaryDirectory(prefix="hotpatch-bench-") as home:
        store = EmbeddedStore(Path(home) / "store.db", Path(home) / "snapshots")
        now = [as_of]
        clock = lambda: now[0]  # noqa: E731 (the sweeps' wall clock, set per sweep)
        first = Caught()
        judged = World(world.settings, world.rules, clock)
        done, first_s = sweep_once(judged, rows, store, first, clock)
        first_metrics, first_logs, first_names = first.envelopes()
        print(
            f"first sweep: {done.sweep.evaluation.summary.total:,} machines in {first_s:.1f} s; "
            f"{len(first_metrics)} metric points, {len(first_logs)} log records "
            f"({first_names[STATE_CHANGED.name]} state changes: none before a first snapshot)"
        )

        now[0] = as_of + timedelta(hours=1)
        steady = Caught()
        done, steady_s = sweep_once(judged, deallocate_some(rows), store, steady, clock)
        metric_sizes, log_sizes, names = steady.envelopes()
        store.close()

    changes = names[STATE_CHANGED.name]
    total_bytes = sum(metric_sizes) + sum(log_sizes)
    change_bytes = round(sum(log_sizes) / max(len(log_sizes), 1))
    machines = done.sweep.evaluation.summary.total
    per_verdict_bytes = change_bytes * machines
    print(f"steady sweep: {machines:,} machines in {steady_s:.1f} s, {changes:,} state changes")
    print(
        f"  metric points: {len(metric_sizes):>7,}  {sum(metric_sizes):>12,} bytes "
        "(machines by state x subscription x OS x ring, durations, ages)"
    )
    print(f"  log records:   {len(log_sizes):>7,}  {sum(log_sizes):>12,} bytes {dict(names)}")
    print(
        f"  total:         {len(metric_sizes) + len(log_sizes):>7,}  {total_bytes:>12,} bytes "
        f"({total_bytes / 1e6:.2f} MB a sweep, {total_bytes * 24 * 30 / 1e9:.2f} GB a month hourly)"
    )
    print(
        f"  a record per verdict instead: {machines:,} records, ~{per_verdict_bytes:,} bytes "
        f"({per_verdict_bytes / max(total_bytes, 1):.0f}x)"
    )
    print(
        json.dumps(
            {
                "machines": machines,
                "state_changes": changes,
                "metric_points": len(metric_sizes),
                "metric_bytes": sum(metric_sizes),
                "log_records": len(log_sizes),
                "log_bytes": sum(log_sizes),
                "telemetry_records": len(metric_sizes) + len(log_sizes),
                "telemetry_bytes": total_bytes,
                "per_verdict_bytes_estimate": per_verdict_bytes,
                "first_sweep_records": len(first_metrics) + len(first_logs),
                "steady_sweep_seconds": round(steady_s, 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
