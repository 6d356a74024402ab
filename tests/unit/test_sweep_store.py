"""A sweep recorded in the store, through the use case and the in-memory store: a complete sweep
becomes the latest snapshot and a succeeded run; a failed, interrupted, partial or refused one
changes nothing but its run record."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from hotpatch.core.compliance import summarize
from hotpatch.core.models import State, Verdict
from hotpatch.errors import AzureUnavailableError, LeaseHeldError
from hotpatch.fakes import InMemoryInventory
from hotpatch.ports import InventoryPager, InventoryStats, RawRow, Scope
from hotpatch.ports.store import JournalRecord, Lease, RunKind, RunRecord
from hotpatch.service import (
    Recording,
    Rules,
    machine_history,
    machines_named,
    run_records,
    sweep,
)
from hotpatch.settings import Settings
from hotpatch.store.memory import MemoryStore
from tests.builders import NOW, SUBSCRIPTION, assessment_row, vm_id, vm_row

RULES = Rules.from_settings(Settings())
#: The wall clock of the run records: a day after the instant the machines are judged at.
WALL = NOW + timedelta(days=1)
DEALLOCATED: dict[str, Any] = {
    "properties__extended__instanceView__powerState__code": "PowerState/deallocated"
}


def estate(*names: str, deallocated: tuple[str, ...] = ()) -> list[RawRow]:
    rows: list[RawRow] = []
    for name in names:
        rows.append(vm_row(name, **DEALLOCATED) if name in deallocated else vm_row(name))
        rows.append(assessment_row(vm_id(name)))
    return rows


class Ticking:
    """A wall clock that moves on by `step` each time it is read."""

    def __init__(self, start: datetime = WALL, step: timedelta = timedelta(seconds=1)) -> None:
        self.now = start
        self.step = step

    def __call__(self) -> datetime:
        self.now += self.step
        return self.now


#: The wall clock every recorded sweep of these tests reads: runs start in the order made.
CLOCK = Ticking()


def recording(store: MemoryStore, **options: Any) -> Recording:
    return Recording(store, "alice@host", CLOCK, **options)


def swept(store: MemoryStore, rows: list[RawRow], *, now: datetime = NOW, **options: Any) -> Any:
    return sweep(
        InMemoryInventory(rows, page_size=2),
        Scope(),
        RULES,
        now=now,
        record=recording(store, **options),
    )


def test_a_complete_sweep_becomes_the_latest_snapshot_and_a_succeeded_run() -> None:
    store = MemoryStore()
    result = swept(store, estate("vm-a", "vm-b", "vm-c", deallocated=("vm-c",)))
    assert result.run is not None
    assert result.snapshot is not None
    assert store.latest_snapshot() == result.snapshot
    assert result.snapshot.run_id == result.run.id
    assert result.snapshot.taken_at == NOW  # the instant judged, not the wall clock
    assert result.snapshot.counts.machines == 3
    for verdict in result.evaluation.verdicts:
        stored = store.verdict(verdict.id)
        assert stored is not None
        assert stored.state is verdict.state
    (run,) = store.runs()
    assert run == result.run
    assert (run.kind, run.who, run.outcome, run.scope) == (
        RunKind.SWEEP,
        "alice@host",
        "succeeded",
        "the tenant",
    )
    assert WALL < run.started_at < run.finished_at  # type: ignore[operator]
    assert run.figures["machines"] == 3
    assert run.figures["by_state"] == result.evaluation.summary.by_state
    assert run.figures["inventory"]["pages"] == 2  # two machines a page
    assert result.summary()["run_id"] == run.id


def test_the_run_record_names_the_scope_in_full_or_as_the_caller_describes_it() -> None:
    store = MemoryStore()
    other = "00000000-0000-0000-0000-000000000002"
    sweep(
        InMemoryInventory(estate("vm-a")),
        Scope(subscriptions=(SUBSCRIPTION, other)),
        RULES,
        now=NOW,
        record=recording(store),
    )
    swept(store, estate("vm-a"), scope="in-process sandbox (1 machine, seed 1)")
    assert [run.scope for run in store.runs()] == [
        "in-process sandbox (1 machine, seed 1)",
        f"subscriptions {SUBSCRIPTION}, {other}",
    ]


def test_a_second_sweep_records_a_transition_only_for_the_machine_that_changed() -> None:
    store = MemoryStore()
    first = swept(store, estate("vm-a", "vm-b"))
    second = swept(
        store, estate("vm-a", "vm-b", deallocated=("vm-b",)), now=NOW + timedelta(hours=1)
    )
    before = {v.name: v.state for v in first.evaluation.verdicts}
    assert before["vm-b"] is not State.UNKNOWN
    assert [(t.from_state, t.to_state) for t in store.history(vm_id("vm-a"))] == [
        (None, before["vm-a"])
    ]
    changes = store.history(vm_id("vm-b"))
    assert [(t.from_state, t.to_state, t.run_id) for t in changes] == [
        (None, before["vm-b"], first.run.id),
        (before["vm-b"], State.UNKNOWN, second.run.id),
    ]


def test_a_streamed_sweep_keeps_no_verdict_yet_counts_and_hands_over_every_machine_once() -> None:
    rows = estate("vm-a", "vm-b", "vm-c", "vm-d", "vm-e", deallocated=("vm-d",))
    shouted = {**rows[0], "id": str(rows[0]["id"]).upper()}  # vm-a again, on a later page
    pages: list[list[Verdict]] = []
    store = MemoryStore()
    result = sweep(
        InMemoryInventory([*rows, shouted], page_size=2),
        Scope(),
        RULES,
        now=NOW,
        on_verdicts=lambda verdicts: pages.append(list(verdicts)),
        keep_verdicts=False,
        record=recording(store),
    )
    handed = [verdict for page in pages for verdict in page]
    assert result.evaluation.verdicts == []
    assert sorted(v.name for v in handed) == ["vm-a", "vm-b", "vm-c", "vm-d", "vm-e"]
    assert result.evaluation.summary == summarize(
        handed, result.evaluation.summary.catalog_staleness
    )
    assert len(result.evaluation.duplicates) == 1
    assert result.snapshot is not None
    assert result.snapshot.counts.machines == 5


class FailingInventory:
    """Serves its pages, then fails (or is interrupted) where the real inventory might."""

    def __init__(self, rows: list[RawRow], error: BaseException, after_pages: int = 1) -> None:
        self.inner = InMemoryInventory(rows, page_size=2)
        self.error = error
        self.after_pages = after_pages

    def list_machines(self, scope: Scope) -> InventoryPager:
        def pages(stats: InventoryStats) -> Iterator[list[RawRow]]:
            served = self.inner.list_machines(scope).by_page()
            for number, page in enumerate(served):
                if number == self.after_pages:
                    raise self.error
                stats.pages += 1
                yield page

        return InventoryPager(pages)


@pytest.mark.parametrize(
    ("error", "outcome"),
    [
        (AzureUnavailableError("Resource Graph: 503 after 6 attempts"), "failed"),
        (KeyboardInterrupt(), "interrupted"),
    ],
)
def test_a_sweep_cut_short_leaves_the_previous_snapshot_latest_and_says_how_it_ended(
    error: BaseException, outcome: str
) -> None:
    store = MemoryStore()
    first = swept(store, estate("vm-a", "vm-b"))
    rows = estate("vm-a", "vm-b", "vm-c", "vm-d", deallocated=("vm-a", "vm-b"))
    with pytest.raises(type(error)):
        sweep(FailingInventory(rows, error), Scope(), RULES, now=NOW, record=recording(store))
    assert store.latest_snapshot() == first.snapshot
    assert len(store.history(vm_id("vm-a"))) == 1  # the cut sweep's change was not recorded
    cut, _ = store.runs()
    assert cut.outcome == outcome
    assert cut.finished_at is not None
    assert cut.figures["machines"] == 2  # the page judged before it was cut short
    assert cut.figures["error"] == (str(error) or "KeyboardInterrupt")
    # The lease went with it: the next sweep is not refused.
    assert swept(store, estate("vm-a")).run.outcome == "succeeded"


def test_a_sweep_while_another_holds_the_lease_is_refused_and_records_nothing() -> None:
    store = MemoryStore()
    store.acquire_lease("sweep", "bob@other (run x)", now=WALL, ttl=timedelta(hours=1))
    with pytest.raises(
        LeaseHeldError,
        match=r"^another sweep is writing the store \(lease sweep "
        r"is held by bob@other \(run x\)",
    ):
        swept(store, estate("vm-a"))
    assert store.runs() == []
    assert store.latest_snapshot() is None


class LeaseCounting(MemoryStore):
    """The in-memory store, remembering every lease it granted."""

    def __init__(self) -> None:
        super().__init__()
        self.granted: list[Lease] = []

    def acquire_lease(self, name: str, holder: str, *, now: datetime, ttl: timedelta) -> Lease:
        lease = super().acquire_lease(name, holder, now=now, ttl=ttl)
        self.granted.append(lease)
        return lease


def test_a_long_sweep_renews_its_lease_as_pages_arrive_and_gives_it_back_at_the_end() -> None:
    store = LeaseCounting()
    slow = Recording(store, "alice@host", Ticking(step=timedelta(minutes=4)))
    sweep(
        InMemoryInventory(estate("vm-a", "vm-b", "vm-c", "vm-d"), page_size=1),
        Scope(),
        RULES,
        now=NOW,
        record=slow,
    )
    assert len(store.granted) > 1
    assert len({lease.holder for lease in store.granted}) == 1
    expiries = [lease.expires for lease in store.granted]
    assert expiries == sorted(expiries)
    assert len(set(expiries)) == len(expiries)
    # Given back: another sweep takes it before the last renewal would have run out.
    store.acquire_lease(
        "sweep", "bob", now=store.granted[-1].expires - timedelta(minutes=1), ttl=timedelta(1)
    )


class PartialInventory(InMemoryInventory):
    """Lists what it can, and says one configured subscription could not be read."""

    def list_machines(self, scope: Scope) -> InventoryPager:
        inner = super().list_machines(scope)

        def pages(stats: InventoryStats) -> Iterator[list[RawRow]]:
            stats.skipped_scopes.append("/subscriptions/unreadable")
            yield from inner.by_page()

        return InventoryPager(pages)


def test_a_sweep_that_could_not_read_a_scope_is_not_made_latest_unless_partial_is_allowed() -> None:
    store = MemoryStore()
    refused = sweep(
        PartialInventory(estate("vm-a")), Scope(), RULES, now=NOW, record=recording(store)
    )
    assert refused.snapshot is None
    assert store.latest_snapshot() is None
    assert refused.run is not None
    assert refused.run.outcome == "failed"
    assert "not made the latest" in refused.run.figures["error"]
    accepted = sweep(
        PartialInventory(estate("vm-a")),
        Scope(),
        RULES,
        now=NOW,
        record=recording(store, allow_partial=True),
    )
    assert accepted.snapshot is not None
    assert store.latest_snapshot() == accepted.snapshot
    assert accepted.run is not None
    assert accepted.run.outcome == "succeeded"
    assert accepted.run.figures["inventory"]["skipped_scopes"] == ["/subscriptions/unreadable"]


def test_a_machines_history_holds_its_latest_verdict_its_transitions_and_its_operations() -> None:
    store = MemoryStore()
    swept(store, estate("vm-a"))
    swept(store, estate("vm-a", deallocated=("vm-a",)), now=NOW + timedelta(hours=1))
    store.journal_start(
        JournalRecord.start(vm_id("vm-a"), "2026-02", "assess", client_request_id="r1", now=WALL)
    )
    history = machine_history(store, vm_id("vm-a").upper())  # ARM ids compare in any case
    assert history.known
    assert history.verdict is not None
    assert history.verdict.id.casefold() == vm_id("vm-a").casefold()
    assert history.verdict.state is State.UNKNOWN
    assert [t.to_state for t in history.transitions][-1] is State.UNKNOWN
    assert [t.at for t in history.transitions] == [NOW, NOW + timedelta(hours=1)]
    assert [(op.action, op.release) for op in history.operations] == [("assess", "2026-02")]
    assert history.snapshot == store.latest_snapshot()


def test_a_machine_the_store_never_saw_has_an_empty_history_that_says_so() -> None:
    store = MemoryStore()
    assert not machine_history(store, vm_id("nowhere")).known
    swept(store, estate("vm-a"))
    history = machine_history(store, vm_id("nowhere"))
    assert not history.known
    assert history.snapshot is not None
    assert (history.verdict, history.transitions, history.operations) == (None, [], [])


def test_a_name_finds_every_machine_of_the_latest_snapshot_called_so_in_any_case() -> None:
    store = MemoryStore()
    twin = vm_row("VM-A", id=vm_id("VM-A").replace("rg-hp", "rg-other"))
    swept(store, [*estate("vm-a", "vm-b"), twin])
    found = machines_named(store, "vm-a", page_size=1)
    assert sorted(row.id.casefold() for row in found) == sorted(
        [vm_id("vm-a").casefold(), str(twin["id"]).casefold()]
    )
    assert machines_named(store, "vm-z") == []


def test_run_records_are_the_newest_first_of_one_kind_or_all() -> None:
    store = MemoryStore()
    for hour, kind in enumerate([RunKind.SWEEP, RunKind.PLAN, RunKind.SWEEP]):
        store.save_run(
            RunRecord(id=f"run-{hour}", kind=kind, who="x", started_at=WALL + timedelta(hours=hour))
        )
    assert [run.id for run in run_records(store)] == ["run-2", "run-1", "run-0"]
    assert [run.id for run in run_records(store, RunKind.SWEEP)] == ["run-2", "run-0"]
    assert [run.id for run in run_records(store, limit=1)] == ["run-2"]
