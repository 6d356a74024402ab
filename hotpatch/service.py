"""Use cases: the imperative shell that feeds inputs to the pure core and hands back results."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from hotpatch.bulk import collector_paused
from hotpatch.core.calendar import Calendar
from hotpatch.core.compliance import Evaluator, Summary, Tally, summarize
from hotpatch.core.images import ImageCatalog
from hotpatch.core.inventory import parse_rows
from hotpatch.core.models import Action, Verdict
from hotpatch.core.policy import Policy
from hotpatch.core.releases import ReleaseCatalog
from hotpatch.data import load_image_catalog, load_release_catalog
from hotpatch.errors import LeaseHeldError, StoreError
from hotpatch.ports.inventory import (
    Inventory,
    InventoryPager,
    InventoryStats,
    ProgressCallback,
    Scope,
)
from hotpatch.ports.patch_operations import (
    Clock,
    MachineRef,
)
from hotpatch.ports.store import (
    JournalRecord,
    Lease,
    RunKind,
    RunRecord,
    SnapshotInfo,
    SnapshotWriter,
    Store,
    Transition,
    VerdictRow,
    new_run_id,
)
from hotpatch.settings import Settings


@dataclass(frozen=True, slots=True)
class Rules:
    """Everything the core decides with, loaded once from the settings."""

    images: ImageCatalog
    releases: ReleaseCatalog
    calendar: Calendar
    policy: Policy

    @classmethod
    def from_settings(cls, settings: Settings) -> Rules:
        releases = load_release_catalog(settings.release_catalog)
        policy = settings.policy()
        return cls(
            images=load_image_catalog(settings.image_catalog),
            releases=releases,
            calendar=Calendar(releases, policy.month_overrides),
            policy=policy,
        )


@dataclass(frozen=True, slots=True)
class Evaluation:
    now: datetime
    verdicts: list[Verdict]
    summary: Summary
    rows: int
    ignored_rows: int
    #: Ids of machine rows that repeated an earlier machine: reported, judged once.
    duplicates: tuple[str, ...] = ()


def evaluate_rows(rows: Iterable[Any], rules: Rules, now: datetime) -> Evaluation:
    """Raw Resource Graph rows -> one verdict per machine, and the roll-ups."""
    with collector_paused():
        inventory = parse_rows(rows)
        evaluator = Evaluator(rules.images, rules.calendar, rules.policy, now)
        verdicts = evaluator.evaluate_all(inventory)
    return Evaluation(
        now,
        verdicts,
        summarize(verdicts, evaluator.staleness),
        inventory.rows,
        inventory.ignored,
        inventory.duplicates,
    )


@dataclass(frozen=True, slots=True)
class Sweep:
    """A sweep: inventory, then evaluation; what it found and what it cost.

    `evaluation.verdicts` is empty when the sweep was asked not to keep them (a streamed sweep
    hands each page to its caller instead). `run` and `snapshot` are set when it was recorded
    in a store: the run record as it ended, and the snapshot it made the latest (None when it
    could not read every scope and was not allowed to be partial).
    """

    scope: str
    evaluation: Evaluation
    inventory: InventoryStats
    seconds: float
    run: RunRecord | None = None
    snapshot: SnapshotInfo | None = None

    def summary(self) -> dict[str, object]:
        return {
            "scope": self.scope,
            "machines": self.evaluation.summary.total,
            "seconds": round(self.seconds, 3),
            "inventory": self.inventory.as_dict(),
            "run_id": self.run.id if self.run is not None else None,
        }


#: The store lease a sweep holds while it writes: one snapshot is written at a time.
SWEEP_LEASE = "sweep"
#: How long the lease lasts unless renewed; a sweep renews it as pages arrive, so one that
#: died leaves the store to the next sweep this long after its last page.
SWEEP_LEASE_TTL = timedelta(minutes=10)

#: Takes each page's verdicts as the sweep judges them: each machine once, in inventory order.
VerdictSink = Callable[[Sequence[Verdict]], None]


@dataclass(frozen=True, slots=True)
class Recording:
    """Where a sweep is remembered, and as whom.

    Its verdicts stream into a snapshot that becomes the latest only when the sweep completes;
    its run record is saved when it starts and again when it ends (succeeded, failed or
    interrupted). `clock` is the wall clock of the run record and the lease, which a sweep
    judged as of another instant (`now`) still needs.
    """

    store: Store
    who: str
    clock: Clock
    #: What the run record says was swept (default: the scope's own description).
    scope: str | None = None
    #: A sweep that could not read every scope still becomes the latest snapshot (the operator
    #: accepted a partial answer); otherwise it is recorded as failed and changes nothing.
    allow_partial: bool = False
    lease_ttl: timedelta = SWEEP_LEASE_TTL


def sweep(
    inventory: Inventory,
    scope: Scope,
    rules: Rules,
    *,
    now: datetime,
    on_progress: ProgressCallback | None = None,
    on_verdicts: VerdictSink | None = None,
    keep_verdicts: bool = True,
    record: Recording | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> Sweep:
    """Inventory every machine in scope and judge each one as of `now`.

    Pages are judged as they arrive: the work fits in the waits for the Resource Graph quota.
    Each page's verdicts go to `on_verdicts` and, with `record`, to the store's snapshot; the
    roll-ups are counted as they pass, so with `keep_verdicts=False` no stage holds the whole
    estate. A sweep that fails or is interrupted leaves the latest snapshot where it was.
    """
    started = monotonic()
    evaluator = Evaluator(rules.images, rules.calendar, rules.policy, now)
    pager = inventory.list_machines(scope)  # lazy: nothing is fetched before the first page
    # Last before the pages: from here on, any way out of the sweep ends its record.
    recorder = _Recorder(record, scope, now) if record is not None else None
    tally = Tally()
    verdicts: list[Verdict] = []
    rows = ignored = 0
    duplicates: list[str] = []
    # A machine is judged once even when two pages name it (ids compare without regard to
    # case): the parser catches repeats within a page, this set those across pages.
    seen: set[str] = set()
    try:
        for page in pager.by_page():
            with collector_paused():
                parsed = parse_rows(page)
                judged = evaluator.evaluate_all(parsed)
            fresh: list[Verdict] = []
            for verdict in judged:
                key = verdict.id.casefold()
                if key in seen:
                    duplicates.append(verdict.id)
                else:
                    seen.add(key)
                    fresh.append(verdict)
            tally.add(fresh)
            if keep_verdicts:
                verdicts.extend(fresh)
            if on_verdicts is not None:
                on_verdicts(fresh)
            rows += parsed.rows
            ignored += parsed.ignored
            duplicates.extend(parsed.duplicates)
            if recorder is not None:
                figures = _figures(
                    tally.summary(), pager, rows=rows, ignored=ignored, duplicates=duplicates
                )
                recorder.add(fresh, figures)
            if on_progress is not None:
                on_progress(pager.stats.progress())
        summary = tally.summary(evaluator.staleness)
        evaluation = Evaluation(now, verdicts, summary, rows, ignored, tuple(duplicates))
        seconds = monotonic() - started
        run = snapshot = None
        if recorder is not None:
            figures = _figures(
                summary, pager, rows=rows, ignored=ignored, duplicates=duplicates, seconds=seconds
            )
            run, snapshot = recorder.finish(figures, complete=not pager.stats.skipped_scopes)
    except BaseException as error:
        if recorder is not None:
            recorder.fail(error)
        raise
    return Sweep(scope.describe(), evaluation, pager.stats, seconds, run, snapshot)


def _figures(
    summary: Summary,
    pager: InventoryPager,
    *,
    rows: int,
    ignored: int,
    duplicates: Sequence[str],
    seconds: float | None = None,
) -> dict[str, Any]:
    """What a sweep's run record says it found and what it cost (small: a table row holds it)."""
    figures: dict[str, Any] = {
        "machines": summary.total,
        "by_state": summary.by_state,
        "by_action": summary.by_action,
        "rows": rows,
        "ignored_rows": ignored,
        "duplicate_rows": len(duplicates),
        "inventory": pager.stats.as_dict(),
    }
    if seconds is not None:
        figures["seconds"] = round(seconds, 3)
    return figures


def scope_text(scope: Scope) -> str:
    """A scope named in full, as a run record keeps it."""
    if scope.subscriptions:
        return "subscriptions " + ", ".join(scope.subscriptions)
    if scope.management_groups:
        return "management groups " + ", ".join(scope.management_groups)
    return "the tenant"


class _Recorder:
    """One sweep's record in the store: the lease, the run record, the snapshot being written."""

    def __init__(self, recording: Recording, scope: Scope, now: datetime) -> None:
        self._recording = recording
        self._store = recording.store
        begun = recording.clock()
        self.run = RunRecord(
            id=new_run_id(begun),
            kind=RunKind.SWEEP,
            who=recording.who,
            started_at=begun,
            scope=recording.scope or scope_text(scope),
        )
        self._lease = self._acquire(begun)
        self._writer: SnapshotWriter | None = None
        try:
            self._store.save_run(self.run)
            self._writer = self._store.begin_snapshot(self.run.id, now)
        except BaseException as error:
            self.fail(error)
            raise

    def _acquire(self, at: datetime) -> Lease:
        holder = f"{self.run.who} (run {self.run.id})"
        try:
            return self._store.acquire_lease(
                SWEEP_LEASE, holder, now=at, ttl=self._recording.lease_ttl
            )
        except LeaseHeldError as error:
            raise LeaseHeldError(
                f"another sweep is writing the store ({error}); try again when it has ended"
            ) from error

    def add(self, verdicts: Sequence[Verdict], figures: dict[str, Any]) -> None:
        assert self._writer is not None
        self._writer.add(map(VerdictRow.from_verdict, verdicts))
        self.run = self.run.model_copy(update={"figures": figures})
        at = self._recording.clock()
        if at >= self._lease.expires - self._recording.lease_ttl / 2:
            self._lease = self._acquire(at)

    def finish(
        self, figures: dict[str, Any], *, complete: bool
    ) -> tuple[RunRecord, SnapshotInfo | None]:
        assert self._writer is not None
        snapshot = None
        if complete or self._recording.allow_partial:
            snapshot = self._writer.commit()
            outcome = "succeeded"
        else:
            self._writer.abort()
            outcome = "failed"
            figures = {**figures, "error": "some scopes could not be read; not made the latest"}
        self.run = self.run.model_copy(
            update={"finished_at": self._recording.clock(), "figures": figures, "outcome": outcome}
        )
        try:
            self._store.save_run(self.run)
        finally:
            self._release()
        return self.run, snapshot

    def fail(self, error: BaseException) -> None:
        """The sweep ends without a snapshot: say how in the run record, as far as the store
        still answers (the error that ended the sweep is the one the caller sees)."""
        if self._writer is not None:
            with suppress(StoreError):
                self._writer.abort()
        interrupted = isinstance(error, KeyboardInterrupt)
        said = " ".join(str(error).split()) or type(error).__name__
        self.run = self.run.model_copy(
            update={
                "finished_at": self._recording.clock(),
                "outcome": "interrupted" if interrupted else "failed",
                "figures": {**self.run.figures, "error": said},
            }
        )
        with suppress(StoreError):
            self._store.save_run(self.run)
        self._release()

    def _release(self) -> None:
        with suppress(StoreError):
            self._store.release_lease(self._lease)


@dataclass(frozen=True, slots=True)
class MachineHistory:
    """What the store knows of one machine: its verdict in the latest snapshot, its state
    transitions (oldest first) and the operations journalled for it."""

    machine_id: str
    #: The latest snapshot (None: no sweep has been stored yet).
    snapshot: SnapshotInfo | None
    verdict: VerdictRow | None
    transitions: list[Transition]
    operations: list[JournalRecord]

    @property
    def known(self) -> bool:
        """The store has anything at all about the machine."""
        return self.verdict is not None or bool(self.transitions or self.operations)


def machine_history(store: Store, machine_id: str) -> MachineHistory:
    """One machine's record in the store; its ARM id compares without regard to case."""
    return MachineHistory(
        machine_id=machine_id,
        snapshot=store.latest_snapshot(),
        verdict=store.verdict(machine_id),
        transitions=store.history(machine_id),
        operations=store.journal(machine_id=machine_id),
    )


def machines_named(store: Store, name: str, *, page_size: int = 1000) -> list[VerdictRow]:
    """The machines of the latest snapshot called `name` (without regard to case): a name is
    unique only within a resource group, so there may be several. Reads the whole snapshot."""
    wanted = name.casefold()
    found: list[VerdictRow] = []
    continuation: str | None = None
    while True:
        page = store.latest_verdicts(page_size=page_size, continuation=continuation)
        found.extend(row for row in page.rows if row.name.casefold() == wanted)
        continuation = page.continuation
        if continuation is None:
            return found


def run_records(store: Store, kind: RunKind | None = None, limit: int = 20) -> list[RunRecord]:
    """The newest runs first, of one kind or of every kind."""
    return store.runs(kind, limit)


def assessment_targets(verdicts: Iterable[Verdict]) -> list[MachineRef]:
    """The machines whose next action is an assessment: the plan, as data, before anything runs.

    Each machine once: ARM ids compare without regard to case, and a batch touches a machine
    once (an export may name the same machine twice).
    """
    targets: dict[str, MachineRef] = {}
    for verdict in verdicts:
        if verdict.action is Action.ASSESS:
            machine = MachineRef.parse(verdict.id)
            targets.setdefault(machine.key, machine)
    return list(targets.values())
