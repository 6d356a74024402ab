"""The use cases over the fakes: a sweep judges each machine once, assess journals each one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from hotpatch.core.plan import Mode, RemediationPolicy
from hotpatch.fakes import FakePatchOperations, InMemoryInventory, MemoryStore, Scripted
from hotpatch.ports import MachineRef, OperationKind, OutcomeStatus, PatchOperations, Scope
from hotpatch.ports.store import JournalStatus, VerdictRow
from hotpatch.remediation import Remediation
from hotpatch.service import Rules, assessment_targets, sweep
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
) -> Callable[[], AbstractAsyncContextManager[PatchOperations]]:
    @asynccontextmanager
    async def opened() -> AsyncIterator[PatchOperations]:
        yield operations

    return opened


def test_an_assess_only_remediation_journals_every_assessment_due_and_its_outcome() -> None:
    # What `hotpatch assess --yes` runs: each assessment is in the journal before it is sent.
    rows = [vm_row("vm-a", build=None), vm_row("vm-b", build=None), vm_row("vm-c")]
    swept = sweep(InMemoryInventory(rows), Scope(), RULES, now=NOW).evaluation.verdicts
    due = assessment_targets(swept)
    assert len(due) >= 2, "the builder's machines without a build have no assessment"
    fake = FakePatchOperations(clock=lambda: NOW)
    fake.script(
        due[1],
        OperationKind.ASSESS,
        Scripted(OutcomeStatus.CONFLICT, error_code="OperationNotAllowed"),
    )
    store = MemoryStore()
    remediation = Remediation(
        store=store,
        patch_operations=opener_of(fake),
        installations=InMemoryInventory([]),
        scope=Scope(),
        policy=RemediationPolicy(mode=Mode.ASSESS, max_starts_per_run=len(swept)),
        calendar=RULES.calendar,
        clock=lambda: NOW,
        who="test",
    )
    run = remediation.run(lambda: [VerdictRow.from_verdict(v) for v in swept], apply=True)

    journal = {r.machine_id.casefold(): r for r in store.journal()}
    assert sorted(journal) == sorted(m.key for m in due)
    assert journal[due[0].key].status is JournalStatus.SUCCEEDED
    # Refused: nothing ran on the machine, and the journal says so with Azure's reason.
    assert journal[due[1].key].status is JournalStatus.UNKNOWN
    assert "OperationNotAllowed" in (journal[due[1].key].detail or "")
    assert {fake.client_request_id(m, "assess") for m in due} == {
        r.client_request_id for r in journal.values()
    }
    assert run.applied is not None
    assert run.applied.outcomes == {"succeeded": len(due) - 1, "unknown": 1}
