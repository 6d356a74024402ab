"""The use cases over the fakes: a sweep judges each machine once, assess journals each one."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from hotpatch.fakes import FakePatchOperations, InMemoryInventory, Scripted
from hotpatch.ports import MachineRef, OperationKind, OutcomeStatus, PatchOperations, Scope
from hotpatch.service import Rules, assess, assessment_targets, sweep
from hotpatch.settings import Settings
from tests.builders import NOW, vm_id, vm_row

RULES = Rules.from_settings(Settings())


def test_a_machine_named_on_two_pages_is_judged_once_and_the_repeat_reported() -> None:
    first = vm_row("vm-a")
    again = {**first, "id": str(first["id"]).upper()}
    inventory = InMemoryInventory([first, vm_row("vm-b"), again], page_size=1)
    result = sweep(inventory, Scope(), RULES, now=NOW)
    assert sorted(v.name for v in result.evaluation.verdicts) == ["vm-a", "vm-b"]
    assert result.evaluation.summary.total == 2
    assert [d.casefold() for d in result.evaluation.duplicates] == [vm_id("vm-a").casefold()]


def test_assessment_targets_name_each_machine_once_whatever_its_case() -> None:
    rows = [vm_row("vm-a", build=None), vm_row("vm-b")]
    verdicts = sweep(InMemoryInventory(rows), Scope(), RULES, now=NOW).evaluation.verdicts
    due = [v for v in verdicts if v.action.value == "assess"]
    assert due, "the builder's first machine has no assessment on record"
    shouted = due[0].machine.model_copy(update={"id": due[0].id.upper()})
    twice = [*due, due[0]._replace(machine=shouted)]
    assert assessment_targets(twice) == [MachineRef.parse(v.id) for v in due]


def opener_of(
    operations: PatchOperations,
) -> object:
    @asynccontextmanager
    async def opened() -> AsyncIterator[PatchOperations]:
        yield operations

    return opened


def test_assess_writes_one_outcome_per_machine_to_a_journal_of_its_own(tmp_path: Path) -> None:
    fake = FakePatchOperations(clock=lambda: NOW)
    machines = [MachineRef.parse(vm_id("vm-a")), MachineRef.parse(vm_id("vm-b"))]
    fake.script(machines[1], OperationKind.ASSESS, _conflict())
    journal = tmp_path / "assess.jsonl"
    heard: list[str] = []
    run = assess(
        opener_of(fake),  # type: ignore[arg-type]
        machines,
        journal,
        on_outcome=lambda outcome: heard.append(outcome.machine_id),
    )
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [line["machine_id"] for line in lines] == heard == [m.id for m in machines]
    assert run.counts == {"succeeded": 1, "conflict": 1}
    assert not run.interrupted
    with pytest.raises(FileExistsError):
        assess(opener_of(fake), machines, journal)  # type: ignore[arg-type]


def _conflict() -> Scripted:
    return Scripted(OutcomeStatus.CONFLICT, error_code="OperationNotAllowed")
