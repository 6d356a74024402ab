"""Remediation: plan, then journal, start, follow and journal again; a crash at any point loses
nothing and sends nothing twice.

The order of every operation is fixed:

1. its journal record is written, durably, as `started` (with the client request id it is sent
   with, and the install parameters) *before* the request leaves;
2. the request is sent through the patch-operations port and followed to its end;
3. the record is updated with the outcome (`succeeded`, `failed`), or `accepted` with the resume
   token when this run stopped following it.

Planning and applying are two public steps as well as one: `run` does both in one process (the
CLI); `prepare` settles, plans and cuts the operations into `Batch`es (one queue message each,
by subscription), and `apply_batch` journals, starts and follows one batch (a queue worker), so
that a batch delivered twice starts nothing twice: its operations' keys are already journalled.

A later run first settles every record an earlier run left open: a resume token is followed;
a record without one is reconciled against Azure, which lists each installation in Resource
Graph while it runs and after: found, it takes that installation's outcome; not found after
`reconcile_after`, the request never arrived and is sent again under the same key. Nothing is
re-sent blindly. A store that stops taking writes (a full disk) stops new starts at once; what
was written stays written.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hotpatch.core.calendar import Calendar
from hotpatch.core.plan import (
    BlockedKb,
    InstallSpec,
    OperationKind,
    PastOperation,
    Plan,
    PlanMachine,
    PlannedOperation,
    RemediationPolicy,
    RolloutState,
    plan,
)
from hotpatch.errors import StoreConflictError, StoreError
from hotpatch.ports.inventory import InstallationHistory, InstallationRecord, Scope
from hotpatch.ports.patch_operations import (
    Classification,
    Clock,
    InstallParameters,
    MachineRef,
    OperationOutcome,
    OutcomeStatus,
    PatchOperations,
    RebootSetting,
)
from hotpatch.ports.patch_operations import OperationKind as PortOperationKind
from hotpatch.ports.store import (
    JournalRecord,
    JournalStatus,
    KbBlock,
    Lease,
    RingState,
    RingStatus,
    RunKind,
    RunRecord,
    Store,
    new_run_id,
)

__all__ = [
    "BATCH_SIZE",
    "Applied",
    "Batch",
    "Prepared",
    "Reconciled",
    "Remediation",
    "RemediationRun",
    "batches",
    "install_parameters",
    "rollout_state",
]

_log = logging.getLogger(__name__)
_T = TypeVar("_T")

PatchOperationsOpener = Callable[[], AbstractAsyncContextManager[PatchOperations]]

#: The lease a remediation holds while it runs: one remediation at a time over a store.
LEASE_NAME = "remediation"
#: A lease lapses this long after its holder last renewed it (a crashed run's, too).
LEASE_TTL = timedelta(minutes=5)
#: Azure's clocks and ours may differ this much when matching an installation to a record.
CLOCK_SKEW = timedelta(minutes=5)
#: Resource Graph may list an accepted installation this late; until then an unseen request
#: is not known to be lost, and is not sent again.
RECONCILE_AFTER = timedelta(minutes=30)
#: Operations journalled together before their requests leave: the first requests go once the
#: first chunk is durable, while the next chunks are journalled.
JOURNAL_CHUNK = 50
#: How many count lines a run's progress says while its outcomes come in (one per tenth).
PROGRESS_STEPS = 10
#: Operations in one batch (one queue message) at most: a Storage Queue message holds 64 KiB,
#: 48 KiB of it once base64-encoded, and an operation takes under 1 KiB of JSON.
BATCH_SIZE = 25

_OUTCOME_STATUS: Mapping[OutcomeStatus, JournalStatus] = {
    OutcomeStatus.SUCCEEDED: JournalStatus.SUCCEEDED,
    OutcomeStatus.COMPLETED_WITH_WARNINGS: JournalStatus.SUCCEEDED,
    OutcomeStatus.FAILED: JournalStatus.FAILED,
}


def install_parameters(spec: InstallSpec) -> InstallParameters:
    """The planner's install, in the port's words."""
    return InstallParameters(
        reboot_setting=RebootSetting(spec.reboot_setting),
        classifications=tuple(Classification(c) for c in spec.classifications),
        kb_include=spec.kb_include,
        kb_exclude=spec.kb_exclude,
        maximum_duration=spec.maximum_duration,
        max_patch_publish_date=spec.max_patch_publish_date,
    )


def rollout_state(store: Store) -> RolloutState:
    """What the planner must know of the past: every journalled operation and the KB blocks
    kept in the store."""
    operations: list[PastOperation] = []
    installed: dict[str, set[str]] = {}
    for record in store.journal():
        operations.append(
            PastOperation(
                key=record.key,
                machine_id=record.machine_id,
                ring=record.ring,
                release=record.release,
                action=record.action,
                status=record.status.value,
                started_at=record.started_at,
                finished_at=record.finished_at,
                kbs=record.kbs,
            )
        )
        if record.status is JournalStatus.SUCCEEDED and record.kbs:
            installed.setdefault(record.machine_id.casefold(), set()).update(record.kbs)
    return RolloutState(
        operations=tuple(operations),
        blocked_kbs=tuple(_blocked(block) for block in store.kb_blocks()),
        installed_kbs={machine: tuple(sorted(kbs)) for machine, kbs in installed.items()},
    )


def _blocked(block: KbBlock) -> BlockedKb:
    return BlockedKb(kb=block.kb, reason=block.reason, expires=block.expires)


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Reconciled:
    """What a run learnt of operations earlier runs left open."""

    resumed: int = 0
    settled_from_azure: int = 0
    still_running: int = 0
    resent: int = 0
    abandoned_assessments: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "resumed": self.resumed,
            "settled_from_azure": self.settled_from_azure,
            "still_running": self.still_running,
            "resent": self.resent,
            "abandoned_assessments": self.abandoned_assessments,
        }


@dataclass(slots=True)
class Applied:
    """What applying a plan did: journal statuses reached, and why it stopped early if it did."""

    started: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    #: Set when new starts were stopped (the store failed, or Ctrl-C).
    stopped: str | None = None
    #: Operations not started because their key was journalled already (by another run, or an
    #: earlier delivery of the same batch): that one follows them.
    duplicates: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "started": self.started,
            "outcomes": dict(sorted(self.outcomes.items())),
            "stopped": self.stopped,
            "duplicates": self.duplicates,
        }


@dataclass(frozen=True, slots=True)
class RemediationRun:
    """One remediation: its run record, the plan it made, and what it did."""

    run: RunRecord
    plan: Plan
    reconciled: Reconciled
    applied: Applied | None

    @property
    def failed(self) -> bool:
        return self.applied is not None and self.applied.stopped is not None


class Batch(BaseModel):
    """Planned operations one worker starts together (one queue message): one subscription and
    one kind of operation, so that each subscription's write quota is shared fairly between
    workers. `resend` holds open install records a reconciliation proved lost: each is sent
    again under its key and request id, once (the record's version guards it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The remediation run that planned it (its journal records name it).
    run_id: str
    #: 1, 2, ... within that run.
    number: int = Field(ge=1)
    subscription: str
    kind: OperationKind
    operations: tuple[PlannedOperation, ...] = ()
    resend: tuple[JournalRecord, ...] = ()

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, data: str | bytes) -> Batch:
        """A batch read back; ValueError says why a text is not one."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(message)"
            raise ValueError(f"not a batch of operations: {where}: {first['msg']}") from None

    @property
    def keys(self) -> tuple[str, ...]:
        return (*(op.key for op in self.operations), *(r.key for r in self.resend))


@dataclass(frozen=True, slots=True)
class Prepared:
    """A remediation planned and cut into batches; nothing of it started yet."""

    run: RunRecord
    plan: Plan
    reconciled: Reconciled
    batches: tuple[Batch, ...]


def batches(
    run_id: str,
    operations: Sequence[PlannedOperation],
    resend: Sequence[JournalRecord] = (),
    *,
    size: int = BATCH_SIZE,
) -> tuple[Batch, ...]:
    """The operations in batches of at most `size`, by subscription and kind (installs also by
    their parameters), in plan order; then the records to send again, by subscription."""
    if size < 1:
        raise ValueError("a batch holds at least one operation")
    groups: dict[tuple[str, OperationKind, InstallSpec | None], list[PlannedOperation]] = {}
    for operation in operations:
        key = (_subscription(operation.machine_id), operation.kind, operation.install)
        groups.setdefault(key, []).append(operation)
    lost: dict[str, list[JournalRecord]] = {}
    for record in resend:
        lost.setdefault(_subscription(record.machine_id), []).append(record)
    cut: list[Batch] = []
    for (subscription, kind, _), group in groups.items():
        for at in range(0, len(group), size):
            cut.append(
                Batch(
                    run_id=run_id,
                    number=len(cut) + 1,
                    subscription=subscription,
                    kind=kind,
                    operations=tuple(group[at : at + size]),
                )
            )
    for subscription, records in lost.items():
        for at in range(0, len(records), size):
            cut.append(
                Batch(
                    run_id=run_id,
                    number=len(cut) + 1,
                    subscription=subscription,
                    kind=OperationKind.INSTALL,
                    resend=tuple(records[at : at + size]),
                )
            )
    return tuple(cut)


# ---------------------------------------------------------------------------------------------
# The use case
# ---------------------------------------------------------------------------------------------


ProgressCallback = Callable[[str], None]


@dataclass(slots=True)
class Remediation:
    """Plans and applies one policy over one store and one target.

    `clock` stamps the journal (a fixed `--now` plus the time elapsed, in rehearsals);
    `who` names the operator or identity in the run record and the lease.
    """

    store: Store
    patch_operations: PatchOperationsOpener
    installations: InstallationHistory
    scope: Scope
    policy: RemediationPolicy
    calendar: Calendar
    clock: Clock
    who: str
    reconcile_after: timedelta = RECONCILE_AFTER
    on_progress: ProgressCallback | None = None

    def plan(self, machines: Iterable[PlanMachine], *, record: bool = True) -> Plan:
        """The plan for these machines now, recorded as a `plan` run (nothing is started)."""
        started = self.clock()
        decided = plan(machines, self.policy, rollout_state(self.store), self.calendar, started)
        if record:
            run = RunRecord(
                id=new_run_id(started),
                kind=RunKind.PLAN,
                who=self.who,
                started_at=started,
                finished_at=self.clock(),
                scope=self.scope.describe(),
                figures=plan_figures(decided),
                outcome="planned",
            )
            self.store.save_run(run)
        return decided

    def run(
        self,
        machines: Callable[[], Iterable[PlanMachine]],
        *,
        apply: bool,
        after: Callable[[], Iterable[PlanMachine]] | None = None,
    ) -> RemediationRun:
        """Settle what earlier runs left open, judge the machines (`machines` is called after
        that, so the verdicts see it), plan, and, with `apply`, start the plan's operations and
        follow them. `after` re-reads the machines an apply touched, for the run record.

        Raises LeaseHeldError while another remediation holds the store's lease.
        """
        run = self._new_run(dry_run=not apply)
        with self._lease():
            self.store.save_run(run)
            reconciled = Reconciled()
            applied: Applied | None = None
            decided: Plan | None = None
            outcome = "failed"
            try:
                resend = self._reconcile(reconciled) if apply else []
                decided = plan(
                    machines(), self.policy, rollout_state(self.store), self.calendar, self.clock()
                )
                self._save_rings(decided)
                if apply:
                    applied = Applied()
                    self._apply(resend, decided.operations, run.id, applied)
                outcome = _outcome(applied)
            except KeyboardInterrupt:
                outcome = "interrupted"
                raise
            finally:
                figures: dict[str, Any] = {
                    "dry_run": not apply,
                    "reconciled": reconciled.as_dict(),
                }
                if decided is not None:
                    figures.update(plan_figures(decided))
                if applied is not None:
                    figures["applied"] = applied.as_dict()
                    if (
                        decided is not None
                        and after is not None
                        and applied.started
                        and outcome != "interrupted"
                    ):
                        figures["after"] = _states_after(after(), decided)
                run = run.model_copy(
                    update={"finished_at": self.clock(), "figures": figures, "outcome": outcome}
                )
                _save_quietly(self.store, run)
        assert decided is not None
        return RemediationRun(run, decided, reconciled, applied)

    def prepare(
        self, machines: Callable[[], Iterable[PlanMachine]], *, batch_size: int = BATCH_SIZE
    ) -> Prepared:
        """The first step alone: settle what earlier runs left open, plan (`machines` is called
        after that), save the rings, and cut the operations (and the lost requests to send
        again) into batches for `apply_batch`. Nothing is journalled or started: a batch never
        applied is planned again by the next run. Recorded as a remediation run with outcome
        `queued` and its batches.

        Raises LeaseHeldError while another remediation holds the store's lease.
        """
        run = self._new_run(dry_run=False)
        with self._lease():
            self.store.save_run(run)
            reconciled = Reconciled()
            decided: Plan | None = None
            cut: tuple[Batch, ...] = ()
            outcome = "failed"
            try:
                resend = self._reconcile(reconciled)
                decided = plan(
                    machines(), self.policy, rollout_state(self.store), self.calendar, self.clock()
                )
                self._save_rings(decided)
                cut = batches(run.id, decided.operations, resend, size=batch_size)
                outcome = "queued"
            except KeyboardInterrupt:
                outcome = "interrupted"
                raise
            finally:
                figures: dict[str, Any] = {"dry_run": False, "reconciled": reconciled.as_dict()}
                if decided is not None:
                    figures.update(plan_figures(decided))
                figures["batches"] = [
                    {
                        "number": b.number,
                        "subscription": b.subscription,
                        "kind": b.kind.value,
                        "operations": len(b.operations),
                        "resend": len(b.resend),
                    }
                    for b in cut
                ]
                run = run.model_copy(
                    update={"finished_at": self.clock(), "figures": figures, "outcome": outcome}
                )
                _save_quietly(self.store, run)
        assert decided is not None
        return Prepared(run, decided, reconciled, cut)

    def apply_batch(self, batch: Batch) -> Applied:
        """The second step: journal each operation of `batch` as started (durably, before its
        request leaves), start them, follow them and journal their outcomes, as `run` does.

        An operation whose key is journalled already (an earlier delivery of this batch, or
        another run) is not started (`Applied.duplicates`); a record to send again that another
        worker sent first is left to it. Holds no lease: batches of one run go in parallel.
        """
        applied = Applied()
        self._apply(batch.resend, batch.operations, batch.run_id, applied)
        return applied

    def _new_run(self, *, dry_run: bool) -> RunRecord:
        started = self.clock()
        return RunRecord(
            id=new_run_id(started),
            kind=RunKind.REMEDIATION,
            who=self.who,
            started_at=started,
            scope=self.scope.describe(),
            figures={"dry_run": dry_run},
        )

    # -- the lease ----------------------------------------------------------------------------

    @contextmanager
    def _lease(self) -> Iterator[Lease]:
        # The holder names this run, not only its operator: the same operator's second run on
        # the same host must wait too.
        holder = f"{self.who} (run {uuid.uuid4().hex[:8]})"
        lease = self.store.acquire_lease(LEASE_NAME, holder, now=self.clock(), ttl=LEASE_TTL)
        stop = threading.Event()

        def renew() -> None:
            while not stop.wait(LEASE_TTL.total_seconds() / 3):
                try:
                    self.store.acquire_lease(LEASE_NAME, holder, now=self.clock(), ttl=LEASE_TTL)
                except StoreError as error:  # LeaseHeldError too: the next renewal says so
                    _log.warning("could not renew the remediation lease: %s", error)

        keeper = threading.Thread(target=renew, name="remediation-lease", daemon=True)
        keeper.start()
        try:
            yield lease
        finally:
            stop.set()
            keeper.join()
            try:
                self.store.release_lease(lease)
            except StoreError as error:
                _log.warning("could not give the remediation lease back (it lapses): %s", error)

    # -- reconciliation -----------------------------------------------------------------------

    def _reconcile(self, reconciled: Reconciled) -> list[JournalRecord]:
        """Settle every record an earlier run left open; return those whose request never
        arrived (to be sent again)."""
        open_records = [
            *self.store.journal(status=JournalStatus.STARTED),
            *self.store.journal(status=JournalStatus.ACCEPTED),
        ]
        if not open_records:
            return []
        self._progress(f"settling {len(open_records)} operation(s) an earlier run left open")
        resumable = [r for r in open_records if r.resume_token]
        unresumable = [r for r in open_records if not r.resume_token]
        if resumable:
            self._resume(resumable, reconciled)
        installs = [r for r in unresumable if _kind(r) is OperationKind.INSTALL]
        for record in unresumable:
            if _kind(record) is OperationKind.ASSESS:
                # An assessment changes nothing on the machine, and the next sweep reads the
                # machine's latest one: it is not followed further.
                self._update(
                    record,
                    status=JournalStatus.UNKNOWN,
                    detail="its answer was not recorded; the machine's latest assessment tells",
                )
                reconciled.abandoned_assessments += 1
        if not installs:
            return []
        since = min(r.started_at for r in installs) - CLOCK_SKEW
        seen = _by_machine(self.installations.installations_since(self.scope, since))
        now = self.clock()
        resend: list[JournalRecord] = []
        for record in installs:
            found = _witness(record, seen.get(record.machine_id.casefold(), ()))
            if found is not None and found.running:
                if record.status is not JournalStatus.ACCEPTED:
                    self._update(
                        record,
                        status=JournalStatus.ACCEPTED,
                        detail=f"running in Azure (installation {found.activity_id})",
                    )
                reconciled.still_running += 1
            elif found is not None:
                self._update(
                    record,
                    status=JournalStatus.SUCCEEDED if found.succeeded else JournalStatus.FAILED,
                    finished_at=now,
                    kbs=found.kbs,
                    detail=f"settled from Azure: installation {found.activity_id} {found.status}",
                )
                reconciled.settled_from_azure += 1
            elif now - record.updated_at >= self.reconcile_after:
                resend.append(record)
            else:
                reconciled.still_running += 1
        return resend

    def _resume(self, records: Sequence[JournalRecord], reconciled: Reconciled) -> None:
        now = self.clock()
        unfinished = [
            OperationOutcome(
                machine_id=r.machine_id,
                operation=_port_kind(_kind(r)),
                status=OutcomeStatus.TIMED_OUT,
                started=r.started_at,
                finished=now,
                resume_token=r.resume_token,
            )
            for r in records
        ]
        by_machine = {r.machine_id.casefold(): r for r in records}

        def heard(outcome: OperationOutcome) -> None:
            record = by_machine.get(outcome.machine_id.casefold())
            if record is not None:
                self._record_outcome(record, outcome)

        async def follow() -> None:
            async with self.patch_operations() as operations:
                await operations.resume(unfinished, on_outcome=heard)

        asyncio.run(follow())
        reconciled.resumed += len(records)

    # -- applying -----------------------------------------------------------------------------

    def _apply(
        self,
        resend: Sequence[JournalRecord],
        operations: Sequence[PlannedOperation],
        run_id: str,
        applied: Applied,
    ) -> None:
        """Start every operation in one client session, the write-ahead kept per chunk: a
        chunk's records are durable before any of its requests leaves, and the next chunk is
        journalled while the ones before are sent and followed. Journal writes run on one thread
        of their own, so the event loop paces, sends and polls while the disk syncs."""
        total = len(resend) + len(operations)
        if not total:
            return
        self._progress(f"starting {total} operation(s)")
        #: Succeeded installs whose result did not list the KBs (Azure Arc's lists only counts).
        unlisted: list[JournalRecord] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="journal") as journal:
            try:
                asyncio.run(
                    _Starts(self, journal, run_id, applied, unlisted, total=total).run(
                        resend, operations
                    )
                )
            except KeyboardInterrupt:
                applied.stopped = "interrupted"
                raise
        if unlisted and not applied.stopped:
            self._read_installed_kbs(unlisted)

    def _journal_chunk(
        self, operations: Sequence[PlannedOperation], run_id: str, spec: InstallSpec | None
    ) -> tuple[list[JournalRecord], str | None]:
        """Journal these operations as started; the records written, and why it stopped early
        (the store failed) if it did."""
        records: list[JournalRecord] = []
        for operation in operations:
            try:
                records.append(self._journal_start(operation, run_id, spec))
            except StoreConflictError:
                continue  # another run journalled it first: it is that run's to follow
            except (StoreError, OSError) as error:
                return records, f"the journal could not be written: {error}"
        return records, None

    def _journal_start(
        self, operation: PlannedOperation, run_id: str, spec: InstallSpec | None
    ) -> JournalRecord:
        record = JournalRecord.start(
            operation.machine_id,
            operation.release,
            operation.action,
            client_request_id=str(uuid.uuid4()),
            now=self.clock(),
            run_id=run_id,
            ring=operation.ring,
        ).model_copy(
            update={
                "requests": 1,
                "parameters": (
                    install_parameters(spec).model_dump(mode="json") if spec is not None else None
                ),
            }
        )
        return self.store.journal_start(record)

    def _read_installed_kbs(self, records: Sequence[JournalRecord]) -> None:
        """The KBs of installs whose result only counted them, as Resource Graph lists them:
        a ring's proven KB set is built from these."""
        since = min(r.started_at for r in records) - CLOCK_SKEW
        seen = _by_machine(self.installations.installations_since(self.scope, since))
        for record in records:
            found = _witness(record, seen.get(record.machine_id.casefold(), ()))
            if found is not None and found.kbs:
                try:
                    self._update(record, kbs=found.kbs)
                except (StoreError, OSError) as error:
                    _log.warning(
                        "could not record the KBs installed on %s: %s", record.machine_id, error
                    )

    def _record_outcome(self, record: JournalRecord, outcome: OperationOutcome) -> JournalRecord:
        status = _OUTCOME_STATUS.get(outcome.status)
        if status is not None:
            return self._update(
                record,
                status=status,
                finished_at=self.clock(),
                kbs=outcome.installed_kbs,
                detail=outcome.message or None,
            )
        if outcome.resume_token is not None:
            return self._update(
                record,
                status=JournalStatus.ACCEPTED,
                resume_token=outcome.resume_token,
                detail=outcome.message or "accepted; not followed to its end by this run",
            )
        # Refused or never answered: nothing ran on the machine. The record is closed as
        # `unknown` with Azure's reason; it is not an install failure of the release.
        return self._update(
            record,
            status=JournalStatus.UNKNOWN,
            finished_at=self.clock(),
            detail=f"{outcome.status.value}: {outcome.error_code or ''} {outcome.message}".strip(),
        )

    def _update(self, record: JournalRecord, **changes: Any) -> JournalRecord:
        return self.store.journal_update(
            record.model_copy(update={**changes, "updated_at": self.clock()})
        )

    def _save_rings(self, decided: Plan) -> None:
        for ring in decided.rings:
            self.store.save_ring_state(
                RingState(
                    ring=ring.ring,
                    release=ring.release,
                    status=RingStatus(ring.status),
                    kbs=ring.kbs,
                    soak_ends=ring.soak_ends,
                    machines=ring.machines,
                    failures=ring.failures,
                    reason=ring.reason,
                    updated_at=decided.now,
                )
            )

    def _progress(self, message: str) -> None:
        if self.on_progress is not None:
            self.on_progress(message)


class _Starts:
    """One apply's starts, in one event loop and one patch-operations session (so that every
    batch shares the adapter's write pacing, concurrency and connections), with every journal
    write on the `journal` thread."""

    def __init__(
        self,
        remediation: Remediation,
        journal: ThreadPoolExecutor,
        run_id: str,
        applied: Applied,
        unlisted: list[JournalRecord],
        *,
        total: int,
    ) -> None:
        self._remediation = remediation
        self._journal = journal
        self._run_id = run_id
        self._applied = applied
        self._unlisted = unlisted
        self._total = total
        #: Outcomes journalled so far, and a count line each time another tenth of the total is.
        self._finished = 0
        self._every = max(1, total // PROGRESS_STEPS)
        #: Each outcome's journal write, with what it tells `applied`.
        self._settling: list[asyncio.Task[None]] = []

    async def _write(self, call: Callable[[], _T]) -> _T:
        return await asyncio.get_running_loop().run_in_executor(self._journal, call)

    async def run(
        self, resend: Sequence[JournalRecord], operations: Sequence[PlannedOperation]
    ) -> None:
        remediation, applied = self._remediation, self._applied
        try:
            async with remediation.patch_operations() as port, asyncio.TaskGroup() as sends:
                for lost in resend:
                    # Written ahead again: one more request, under the same key and request id.
                    try:
                        record = await self._write(
                            functools.partial(
                                remediation._update,
                                lost,
                                requests=lost.requests + 1,
                                detail="sent again",
                            )
                        )
                    except StoreConflictError:
                        # Another worker sent it again first (the version it read is gone).
                        applied.duplicates += 1
                        continue
                    except (StoreError, OSError) as error:
                        applied.stopped = f"the journal could not be written: {error}"
                        return
                    parameters = (
                        InstallParameters.model_validate(record.parameters)
                        if record.parameters
                        else None
                    )
                    applied.started += 1
                    sends.create_task(self._send(port, [record], parameters))
                for kind, spec, planned in _batches(operations):
                    parameters = (
                        install_parameters(spec)
                        if kind is OperationKind.INSTALL and spec is not None
                        else None
                    )
                    # The first chunks hold work for every subscription: each has a write quota
                    # and a share of the adapter's concurrency of its own.
                    group = _across_subscriptions(planned)
                    for at in range(0, len(group), JOURNAL_CHUNK):
                        if applied.stopped:
                            return
                        chunk = group[at : at + JOURNAL_CHUNK]
                        records, stopped = await self._write(
                            functools.partial(remediation._journal_chunk, chunk, self._run_id, spec)
                        )
                        if records:
                            applied.started += len(records)
                            sends.create_task(self._send(port, records, parameters))
                        if stopped is not None:
                            applied.stopped = stopped
                        else:
                            applied.duplicates += len(chunk) - len(records)
        finally:
            # Every outcome heard is journalled before the run ends, interrupted or not.
            if self._settling:
                await asyncio.gather(*self._settling, return_exceptions=True)

    async def _send(
        self,
        port: PatchOperations,
        records: Sequence[JournalRecord],
        parameters: InstallParameters | None,
    ) -> None:
        by_machine = {r.machine_id.casefold(): r for r in records}
        machines = [MachineRef.parse(r.machine_id) for r in records]
        request_ids = {MachineRef.parse(r.machine_id).key: r.client_request_id for r in records}

        def heard(outcome: OperationOutcome) -> None:
            record = by_machine.get(outcome.machine_id.casefold())
            if record is not None:
                self._settling.append(asyncio.create_task(self._settle(record, outcome)))

        if parameters is None:
            await port.assess(machines, on_outcome=heard, client_request_ids=request_ids)
        else:
            await port.install(
                machines, parameters, on_outcome=heard, client_request_ids=request_ids
            )

    async def _settle(self, record: JournalRecord, outcome: OperationOutcome) -> None:
        remediation, applied = self._remediation, self._applied
        try:
            updated = await self._write(
                functools.partial(remediation._record_outcome, record, outcome)
            )
        except (StoreError, OSError) as error:
            # The outcome is not lost for good: the record stays open, and the next run
            # reads it back from Azure. But nothing new starts on a failing store.
            applied.stopped = f"the journal could not be written: {error}"
            return
        applied.outcomes[updated.status.value] += 1
        if (
            updated.status is JournalStatus.SUCCEEDED
            and _kind(updated) is OperationKind.INSTALL
            and not outcome.installed_kbs_complete
        ):
            self._unlisted.append(updated)
        self._finished += 1
        if updated.status in (JournalStatus.FAILED, JournalStatus.UNKNOWN):
            # Each failure is named as it happens; successes are counted, not listed.
            remediation._progress(f"{updated.status.value}: {outcome.machine_id}")
        if self._finished % self._every == 0 or self._finished == self._total:
            counts = ", ".join(f"{n} {status}" for status, n in sorted(applied.outcomes.items()))
            remediation._progress(f"{self._finished} of {self._total} heard from ({counts})")


# ---------------------------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------------------------


def plan_figures(decided: Plan) -> dict[str, Any]:
    """Every decision of a plan, for its run record: operations, skips, rings and notices."""
    skips = Counter(skip.code.value for skip in decided.skips)
    return {
        "mode": decided.mode.value,
        "now": decided.now.isoformat(),
        "operations": [
            {
                "key": op.key,
                "machine": op.machine_id,
                "ring": op.ring,
                "release": op.release,
                "action": op.action,
                "reason": op.reason,
            }
            for op in decided.operations
        ],
        "skipped": dict(sorted(skips.items())),
        "skips": [
            {"machine": s.machine_id, "code": s.code.value, "message": s.message}
            for s in decided.skips
        ],
        "rings": [
            {
                "ring": r.ring,
                "release": r.release,
                "status": r.status,
                "kbs": list(r.kbs),
                "machines": r.machines,
                "failures": r.failures,
                "soak_ends": r.soak_ends.isoformat() if r.soak_ends else None,
                "reason": r.reason,
            }
            for r in decided.rings
        ],
        "notices": list(decided.notices),
    }


def _batches(
    operations: Sequence[PlannedOperation],
) -> list[tuple[OperationKind, InstallSpec | None, list[PlannedOperation]]]:
    """Operations grouped by what is sent: assessments together, installs by parameters."""
    groups: dict[tuple[OperationKind, InstallSpec | None], list[PlannedOperation]] = {}
    for operation in operations:
        groups.setdefault((operation.kind, operation.install), []).append(operation)
    return [(kind, spec, group) for (kind, spec), group in groups.items()]


def _across_subscriptions(operations: Sequence[PlannedOperation]) -> list[PlannedOperation]:
    """The operations taken in turn from each subscription, each subscription's in plan order."""
    queues: dict[str, list[PlannedOperation]] = {}
    for operation in operations:
        queues.setdefault(_subscription(operation.machine_id), []).append(operation)
    turns = list(queues.values())
    return [
        queue[index]
        for index in range(max((len(q) for q in turns), default=0))
        for queue in turns
        if index < len(queue)
    ]


def _subscription(machine_id: str) -> str:
    """`/subscriptions/<id>/...` -> the id, casefolded ("" for an id that names none)."""
    parts = machine_id.split("/")
    return parts[2].casefold() if len(parts) > 2 and parts[1].casefold() == "subscriptions" else ""


def _kind(record: JournalRecord) -> OperationKind:
    return OperationKind.ASSESS if record.action.startswith("assess") else OperationKind.INSTALL


def _port_kind(kind: OperationKind) -> PortOperationKind:
    return PortOperationKind.ASSESS if kind is OperationKind.ASSESS else PortOperationKind.INSTALL


def _by_machine(records: Iterable[InstallationRecord]) -> dict[str, list[InstallationRecord]]:
    found: dict[str, list[InstallationRecord]] = {}
    for record in records:
        found.setdefault(record.machine_id.casefold(), []).append(record)
    return found


def _witness(
    record: JournalRecord, installations: Sequence[InstallationRecord]
) -> InstallationRecord | None:
    """The installation Azure ran for this record: the first to start after it was written."""
    after = [
        i
        for i in installations
        if i.started is not None and i.started >= record.started_at - CLOCK_SKEW
    ]
    return min(after, key=lambda i: i.started or record.started_at, default=None)


def _outcome(applied: Applied | None) -> str:
    if applied is None:
        return "planned"
    return "stopped" if applied.stopped else "succeeded"


def _states_after(machines: Iterable[PlanMachine], decided: Plan) -> dict[str, str]:
    touched = {op.machine_id.casefold() for op in decided.operations}
    return {m.id: m.state.value for m in machines if m.id.casefold() in touched}


def _save_quietly(store: Store, run: RunRecord) -> None:
    try:
        store.save_run(run)
    except StoreError as error:
        _log.warning("could not save the run record %s: %s", run.id, error)
