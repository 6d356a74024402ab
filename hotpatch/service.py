"""Use cases: the imperative shell that feeds inputs to the pure core and hands back results."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from hotpatch.bulk import collector_paused
from hotpatch.core.calendar import Calendar
from hotpatch.core.compliance import Evaluator, Summary, summarize
from hotpatch.core.images import ImageCatalog
from hotpatch.core.inventory import parse_rows
from hotpatch.core.models import Action, Verdict
from hotpatch.core.policy import Policy
from hotpatch.core.releases import ReleaseCatalog
from hotpatch.data import load_image_catalog, load_release_catalog
from hotpatch.ports.inventory import Inventory, InventoryStats, ProgressCallback, Scope
from hotpatch.ports.patch_operations import (
    MachineRef,
    OperationOutcome,
    OutcomeCallback,
    PatchOperations,
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
    """A sweep: inventory, then evaluation; what it found and what it cost."""

    scope: str
    evaluation: Evaluation
    inventory: InventoryStats
    seconds: float

    def summary(self) -> dict[str, object]:
        return {
            "scope": self.scope,
            "machines": self.evaluation.summary.total,
            "seconds": round(self.seconds, 3),
            "inventory": self.inventory.as_dict(),
        }


def sweep(
    inventory: Inventory,
    scope: Scope,
    rules: Rules,
    *,
    now: datetime,
    on_progress: ProgressCallback | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> Sweep:
    """Inventory every machine in scope and judge each one as of `now`.

    Pages are judged as they arrive: the work fits in the waits for the Resource Graph quota.
    """
    started = monotonic()
    evaluator = Evaluator(rules.images, rules.calendar, rules.policy, now)
    pager = inventory.list_machines(scope)
    verdicts: list[Verdict] = []
    rows = ignored = 0
    duplicates: list[str] = []
    # A machine is judged once even when two pages name it (ids compare without regard to
    # case): the parser catches repeats within a page, this set those across pages.
    seen: set[str] = set()
    for page in pager.by_page():
        with collector_paused():
            parsed = parse_rows(page)
            judged = evaluator.evaluate_all(parsed)
        for verdict in judged:
            key = verdict.id.casefold()
            if key in seen:
                duplicates.append(verdict.id)
            else:
                seen.add(key)
                verdicts.append(verdict)
        rows += parsed.rows
        ignored += parsed.ignored
        duplicates.extend(parsed.duplicates)
        if on_progress is not None:
            on_progress(pager.stats.progress())
    summary = summarize(verdicts, evaluator.staleness)
    evaluation = Evaluation(now, verdicts, summary, rows, ignored, tuple(duplicates))
    return Sweep(scope.describe(), evaluation, pager.stats, monotonic() - started)


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


@dataclass(frozen=True, slots=True)
class AssessRun:
    """What `assess` did: outcomes by status, the journal holding each one, and whether the
    run was interrupted (the journal then holds what it learnt, resume tokens included)."""

    journal: Path
    counts: dict[str, int]
    resumable: int
    interrupted: bool

    def as_dict(self) -> dict[str, object]:
        return {
            "journal": str(self.journal),
            "outcomes": dict(sorted(self.counts.items())),
            "resumable": self.resumable,
            "interrupted": self.interrupted,
        }


def assess(
    patch_operations: Callable[[], AbstractAsyncContextManager[PatchOperations]],
    machines: Sequence[MachineRef],
    journal: Path,
    *,
    on_outcome: OutcomeCallback | None = None,
) -> AssessRun:
    """Start an assessment on every machine; one outcome per machine in the `journal` (JSON
    lines, written ahead as each is known, in a new file that no other run shares).

    Ctrl-C cancels the batch: each machine's task reports how far it got (with the resume
    token of an operation already started) before the run returns `interrupted`.
    """
    counts: Counter[str] = Counter()
    resumable = 0
    with journal.open("x", encoding="utf-8") as lines:

        def record(outcome: OperationOutcome) -> None:
            nonlocal resumable
            lines.write(outcome.model_dump_json() + "\n")
            lines.flush()
            counts[outcome.status.value] += 1
            resumable += outcome.resumable
            if on_outcome is not None:
                on_outcome(outcome)

        async def run() -> None:
            async with patch_operations() as operations:
                await operations.assess(machines, on_outcome=record)

        interrupted = False
        try:
            asyncio.run(run())
        except KeyboardInterrupt:
            interrupted = True
    return AssessRun(journal, dict(counts), resumable, interrupted)
