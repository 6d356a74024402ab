"""The timers, called as the host calls them: a sweep recorded in the store with its telemetry,
the release catalog refreshed into the store (a failed refresh only warns), overlapping runs
that end quietly, and a late timer that says it was late."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest

from hotpatch.bootstrap import Target
from hotpatch.ports import Scope
from hotpatch.ports.inventory import Inventory, InventoryPager
from hotpatch.ports.store import RunKind
from hotpatch.sandbox.estate import Estate
from hotpatch.scheduled import CATALOG_LEASE, RELEASE_CATALOG
from hotpatch.settings import Settings
from hotpatch.telemetry import (
    CATALOG_REFRESH_FAILED,
    CATALOG_REFRESHES,
    CATALOG_STALENESS,
    MACHINES,
    RUN_FINISHED,
    RUN_SKIPPED,
    RUNS_SKIPPED,
    STATE_CHANGED,
    SWEEP_AGE,
    TIMER_PAST_DUE,
)
from tests.functions.conftest import ESTATE, RELEASE_PAGES, SUB_B, App, timer, together

pytestmark = pytest.mark.sandbox


def test_a_sweep_stores_a_snapshot_and_reports_machines_by_state_subscription_os_and_ring(
    function_app: App,
) -> None:
    function_app.call("sweep", timer())

    (run,) = function_app.store.runs(RunKind.SWEEP)
    assert run.outcome == "succeeded"
    snapshot = function_app.store.latest_snapshot()
    assert snapshot is not None
    assert snapshot.run_id == run.id
    assert snapshot.counts.machines == len(ESTATE.machine_ids())
    machines = function_app.telemetry.metric(MACHINES.name)
    assert sum(value for _, value in machines) == len(ESTATE.machine_ids())
    assert {tuple(sorted(attributes)) for attributes, _ in machines} == {
        ("os", "ring", "state", "subscription")
    }
    assert {a["subscription"] for a, _ in machines} == {
        "11111111-1111-1111-1111-111111111111",
        SUB_B,
    }
    assert {a["ring"] for a, _ in machines} == {"ring0"}
    assert function_app.telemetry.metric(SWEEP_AGE.name) == [({}, 0.0)]
    assert [e["kind"] for e in function_app.telemetry.named(RUN_FINISHED.name)] == ["sweep"]
    # The first sweep changes nothing: no machine had a state before it.
    assert function_app.telemetry.named(STATE_CHANGED.name) == []
    assert function_app.telemetry.named(TIMER_PAST_DUE.name) == []


def test_a_second_sweep_logs_only_the_machines_whose_state_changed(function_app: App) -> None:
    function_app.call("sweep", timer())
    # A machine is deallocated between the sweeps: its state changes, the others' do not.
    rows = copy.deepcopy(ESTATE.resources)
    gone = rows[0]
    gone["properties"]["extended"]["instanceView"]["powerState"]["code"] = "PowerState/deallocated"
    function_app.sandbox.load(Estate(rows, [], []))
    function_app.clock.advance(3600)
    function_app.call("sweep", timer())

    changes = function_app.telemetry.named(STATE_CHANGED.name)
    assert [c["machine_id"].casefold() for c in changes] == [gone["id"].casefold()]
    (change,) = changes
    assert change["to_state"] == "unknown"
    assert change["from_state"] != change["to_state"]
    assert change["subscription"] == gone["subscriptionId"]
    assert change["run_id"] == function_app.store.runs(RunKind.SWEEP)[0].id


def test_a_late_sweep_runs_and_says_it_was_late(function_app: App) -> None:
    function_app.call("sweep", timer(past_due=True))

    assert function_app.telemetry.named(TIMER_PAST_DUE.name) == [{"function": "sweep"}]
    assert [r.outcome for r in function_app.store.runs(RunKind.SWEEP)] == ["succeeded"]


class HeldInventory:
    """An inventory whose first page waits until `release` is set: the sweep that got the lease
    is still writing when the other one starts."""

    def __init__(self, inner: Inventory, release: threading.Event) -> None:
        self._inner = inner
        self._release = release

    def list_machines(self, scope: Scope) -> InventoryPager:
        return HeldPager(self._inner.list_machines(scope), self._release)  # type: ignore[return-value]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class HeldPager:
    def __init__(self, inner: InventoryPager, release: threading.Event) -> None:
        self._inner = inner
        self._release = release

    def by_page(self) -> Iterator[Any]:
        assert self._release.wait(60), "the other sweep never ended"
        yield from self._inner.by_page()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_two_sweeps_started_together_make_one_run_and_the_other_ends_quietly(
    function_app: App,
) -> None:
    release = threading.Event()
    opener = function_app.host.target

    @contextmanager
    def held_target(settings: Settings) -> Iterator[Target]:
        with opener(settings) as target:
            yield Target(
                HeldInventory(target.inventory, release),
                target.scope,
                target.patch_operations,
                target.installations,
                target.sandbox,
            )

    function_app.host.target = held_target

    def sweep() -> None:
        try:
            function_app.call("sweep", timer())
        finally:
            release.set()  # whichever ends first lets the other go on

    results = together(sweep, sweep)

    assert results == [None, None]
    runs = function_app.store.runs(RunKind.SWEEP)
    assert [r.outcome for r in runs] == ["succeeded"]
    assert function_app.telemetry.metric(RUNS_SKIPPED.name) == [
        ({"kind": "sweep", "reason": "lease_held"}, 1.0)
    ]
    (skipped,) = function_app.telemetry.named(RUN_SKIPPED.name)
    assert skipped["reason"] == "lease_held"


def test_the_catalog_timer_keeps_the_refreshed_catalog_in_the_store_and_sweeps_use_it(
    function_app: App,
) -> None:
    function_app.call("catalog", timer())

    stored = function_app.store.catalog(RELEASE_CATALOG)
    assert stored is not None
    assert stored.document["covers_through"] == "2026-07"
    assert stored.source == str(RELEASE_PAGES / "through-2026-07.html")
    assert stored.refreshed_at == function_app.clock.now()
    assert function_app.telemetry.metric(CATALOG_REFRESHES.name) == [
        ({"outcome": "succeeded"}, 1.0)
    ]

    function_app.clock.advance(600)
    function_app.call("sweep", timer())
    staleness = function_app.telemetry.metric(CATALOG_STALENESS.name)
    assert staleness[-1] == ({"source": "store"}, 600.0)


def test_a_failed_catalog_refresh_is_a_warning_and_a_metric_and_the_sweep_goes_on(
    function_app: App, caplog: pytest.LogCaptureFixture
) -> None:
    function_app.environ["HOTPATCH_CATALOG_SOURCE"] = str(RELEASE_PAGES / "changed-layout.html")

    function_app.call("catalog", timer())
    function_app.call("sweep", timer())

    assert function_app.store.catalog(RELEASE_CATALOG) is None
    assert function_app.telemetry.metric(CATALOG_REFRESHES.name) == [({"outcome": "failed"}, 1.0)]
    (failed,) = function_app.telemetry.named(CATALOG_REFRESH_FAILED.name)
    assert failed["source"].endswith("changed-layout.html")
    assert "no column" in failed["error"]
    assert any(
        r.levelname == "WARNING" and "not refreshed" in r.getMessage() for r in caplog.records
    )
    assert [r.outcome for r in function_app.store.runs(RunKind.SWEEP)] == ["succeeded"]
    assert function_app.telemetry.metric(CATALOG_STALENESS.name)[-1][0] == {"source": "shipped"}


def test_a_page_that_contradicts_the_catalog_is_not_kept(function_app: App) -> None:
    function_app.environ["HOTPATCH_CATALOG_SOURCE"] = str(RELEASE_PAGES / "conflict.html")

    function_app.call("catalog", timer())

    assert function_app.store.catalog(RELEASE_CATALOG) is None
    assert function_app.telemetry.metric(CATALOG_REFRESHES.name) == [({"outcome": "failed"}, 1.0)]


def test_while_another_refresh_holds_the_catalog_lease_the_timer_ends_quietly(
    function_app: App,
) -> None:
    function_app.store.acquire_lease(
        CATALOG_LEASE, "another instance", now=function_app.clock.now(), ttl=timedelta(minutes=5)
    )

    function_app.call("catalog", timer())

    assert function_app.store.catalog(RELEASE_CATALOG) is None
    assert function_app.telemetry.metric(RUNS_SKIPPED.name) == [
        ({"kind": "catalog", "reason": "lease_held"}, 1.0)
    ]
