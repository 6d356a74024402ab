"""The compliance store's port: what the service remembers, in domain words; no SDK type here.

A store keeps each sweep's snapshot of verdicts (streamed in, never all in memory), the state
transitions between snapshots, run records, the operation journal, ring promotion state, KB
blocks and leases. `hotpatch.store.open_store` builds one from `HOTPATCH_STORE`.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from hotpatch.core.models import Action, OsFamily, Reason, State, UtcDatetime, Verdict

#: How long a machine's history is kept unless the store is told otherwise.
DEFAULT_RETENTION = timedelta(days=400)


def machine_key(machine_id: str) -> str:
    """The key of a machine: ARM ids compare without regard to case."""
    return machine_id.casefold()


def machine_digest(machine_id: str) -> str:
    """A fixed-length name for a machine that any backend accepts as a key (no '/')."""
    return hashlib.sha256(machine_key(machine_id).encode()).hexdigest()[:32]


def new_run_id(now: datetime) -> str:
    """A run id that sorts by start time (UTC, to the second) and never repeats."""
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


# ---------------------------------------------------------------------------------------------
# Verdict rows: what a snapshot holds per machine
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerdictRow:
    """One machine's verdict as stored: flat, and enough to filter and show without the sweep.

    A frozen dataclass rather than a pydantic model: a sweep makes one per machine.
    """

    id: str
    name: str
    subscription: str | None
    resource_group: str | None
    os: OsFamily | None
    ring: str | None
    tags: Mapping[str, str]
    state: State
    action: Action
    eligible: bool
    reasons: tuple[Reason, ...]
    build: str | None = None
    release_month: str | None = None
    last_assessed: datetime | None = None
    next_restart: datetime | None = None

    @property
    def key(self) -> str:
        return machine_key(self.id)

    @classmethod
    def from_verdict(cls, verdict: Verdict) -> VerdictRow:
        tags = getattr(verdict.machine, "tags", None) or {}
        return cls(
            id=verdict.id,
            name=verdict.name,
            subscription=verdict.subscription_id,
            resource_group=resource_group_of(verdict.id),
            os=verdict.os,
            ring=verdict.ring,
            tags=dict(tags),
            state=verdict.state,
            action=verdict.action,
            eligible=verdict.eligible,
            reasons=verdict.reasons,
            build=verdict.build,
            release_month=verdict.release_month,
            last_assessed=verdict.last_assessed,
            next_restart=verdict.next_restart,
        )


def resource_group_of(resource_id: str) -> str | None:
    """The resource group named in an ARM id (`/subscriptions/s/resourceGroups/rg/...`)."""
    parts = resource_id.split("/")
    for index, part in enumerate(parts[:-1]):
        if part.casefold() == "resourcegroups":
            return parts[index + 1] or None
    return None


@dataclass(frozen=True, slots=True)
class VerdictQuery:
    """Which rows of the latest snapshot to list; an empty field does not filter.

    Subscriptions and resource groups compare without regard to case (ARM's rule); a tag
    filter is `key=value`, and every one given must match.
    """

    states: frozenset[State] = frozenset()
    subscriptions: frozenset[str] = frozenset()
    resource_groups: frozenset[str] = frozenset()
    os: frozenset[OsFamily] = frozenset()
    rings: frozenset[str] = frozenset()
    tags: tuple[tuple[str, str], ...] = ()
    eligible: bool | None = None
    _folded: tuple[frozenset[str], frozenset[str]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        folded = (
            frozenset(s.casefold() for s in self.subscriptions),
            frozenset(g.casefold() for g in self.resource_groups),
        )
        object.__setattr__(self, "_folded", folded)

    def matches(self, row: VerdictRow) -> bool:
        subscriptions, groups = self._folded
        return (
            (not self.states or row.state in self.states)
            and (not subscriptions or (row.subscription or "").casefold() in subscriptions)
            and (not groups or (row.resource_group or "").casefold() in groups)
            and (not self.os or row.os in self.os)
            and (not self.rings or row.ring in self.rings)
            and all(row.tags.get(key) == value for key, value in self.tags)
            and (self.eligible is None or row.eligible is self.eligible)
        )


@dataclass(frozen=True, slots=True)
class VerdictPage:
    """A page of rows and the opaque token of the next page (None: this was the last)."""

    rows: tuple[VerdictRow, ...]
    continuation: str | None


# ---------------------------------------------------------------------------------------------
# Records
# ---------------------------------------------------------------------------------------------


class StoreRecord(BaseModel):
    """Base of the stored records: immutable, validated when read back."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Counts(StoreRecord):
    """A snapshot's roll-ups: machines by state, subscription, OS and ring."""

    machines: int = 0
    eligible: int = 0
    by_state: dict[str, int] = Field(default_factory=dict)
    by_subscription: dict[str, int] = Field(default_factory=dict)
    by_os: dict[str, int] = Field(default_factory=dict)
    by_ring: dict[str, int] = Field(default_factory=dict)


class SnapshotInfo(StoreRecord):
    """A committed snapshot: whose run, when, its counts and where its chunks start."""

    run_id: str
    taken_at: UtcDatetime
    counts: Counts
    #: Rows per compressed chunk (the last may hold fewer).
    chunk_rows: int
    #: Byte offset of each chunk, then the total size: chunk i is offsets[i]..offsets[i+1].
    offsets: tuple[int, ...]
    #: The snapshot the transitions were computed against (None: the first).
    previous: str | None = None


class Transition(StoreRecord):
    """A machine's state changed between two snapshots (None: not in that snapshot)."""

    machine_id: str
    from_state: State | None
    to_state: State | None
    at: UtcDatetime
    run_id: str
    reasons: tuple[str, ...] = ()


class RunKind(StrEnum):
    SWEEP = "sweep"
    PLAN = "plan"
    REMEDIATION = "remediation"


class RunRecord(StoreRecord):
    """A sweep, plan or remediation: who ran it, when, over what, what it found and how it ended."""

    id: str
    kind: RunKind
    who: str
    started_at: UtcDatetime
    finished_at: UtcDatetime | None = None
    scope: str = ""
    figures: dict[str, Any] = Field(default_factory=dict)
    #: None while running; then e.g. `succeeded`, `failed`, `interrupted`.
    outcome: str | None = None


class JournalStatus(StrEnum):
    """Where an operation stands, as far as the journal knows."""

    #: Written before the request is sent: it may or may not have reached Azure.
    STARTED = "started"
    #: Azure accepted it (a resume token is kept, or Resource Graph lists it running).
    ACCEPTED = "accepted"
    SUCCEEDED = "succeeded"
    #: It ran and failed: it counts against its ring's error budget.
    FAILED = "failed"
    #: Closed without a known result: refused, or an assessment whose answer was lost.
    UNKNOWN = "unknown"


_SETTLED = frozenset({JournalStatus.SUCCEEDED, JournalStatus.FAILED, JournalStatus.UNKNOWN})


def operation_key(machine_id: str, release: str, action: str) -> str:
    """The deterministic key of an operation: the same machine, release and action is the same
    operation, whichever run plans it."""
    return f"{machine_key(machine_id)}|{release}|{action}"


class JournalRecord(StoreRecord):
    """One operation, written before its request is sent and updated as it goes.

    `version` is the store's: set on every write, and an update must name the version it read.
    """

    key: str
    machine_id: str
    release: str
    action: str
    status: JournalStatus
    client_request_id: str
    run_id: str | None = None
    #: The rollout ring the machine was in when the operation was planned.
    ring: str | None = None
    operation_url: str | None = None
    resume_token: str | None = None
    started_at: UtcDatetime
    updated_at: UtcDatetime
    #: When the operation's outcome became known (None while it runs).
    finished_at: UtcDatetime | None = None
    #: KBs the operation installed ("KB5075943"), read from its result.
    kbs: tuple[str, ...] = ()
    #: Requests sent for it: 1, or more when a reconciliation proved a request never arrived.
    requests: int = Field(default=0, ge=0)
    #: What an install sends (the patch-operations port's install parameters, as JSON), so
    #: that a request proved lost is sent again exactly as planned.
    parameters: dict[str, Any] | None = None
    detail: str | None = None
    version: str | None = None

    @property
    def settled(self) -> bool:
        """Its outcome is known: nothing about it is still to be followed."""
        return self.status in _SETTLED

    @classmethod
    def start(
        cls,
        machine_id: str,
        release: str,
        action: str,
        *,
        client_request_id: str,
        now: datetime,
        run_id: str | None = None,
        ring: str | None = None,
    ) -> JournalRecord:
        return cls(
            key=operation_key(machine_id, release, action),
            machine_id=machine_id,
            release=release,
            action=action,
            status=JournalStatus.STARTED,
            client_request_id=client_request_id,
            run_id=run_id,
            ring=ring,
            started_at=now,
            updated_at=now,
        )


class RingStatus(StrEnum):
    WAITING = "waiting"
    INSTALLING = "installing"
    SOAKING = "soaking"
    PROMOTED = "promoted"
    HALTED = "halted"


class RingState(StoreRecord):
    """Where a ring stands in a release's rollout, and the KB set it proved."""

    ring: str
    release: str
    status: RingStatus
    kbs: tuple[str, ...] = ()
    started_at: UtcDatetime | None = None
    soak_ends: UtcDatetime | None = None
    machines: int = 0
    failures: int = 0
    reason: str | None = None
    updated_at: UtcDatetime


class KbBlock(StoreRecord):
    """A KB that must not be requested while the block is active, and why."""

    kb: str = Field(pattern=r"^KB\d{6,8}$")
    reason: str
    expires: UtcDatetime | None = None

    def active(self, now: datetime) -> bool:
        return self.expires is None or now < self.expires


class StoredCatalog(StoreRecord):
    """A data document the service refreshed into the store (the release catalog the `catalog`
    timer rebuilt from Microsoft's release page): it is in force over the shipped one."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")
    #: The document, as the catalog file holds it (`hotpatch/data/releases.json`'s shape).
    document: dict[str, Any]
    #: Where it was read from (the page's URL).
    source: str
    refreshed_at: UtcDatetime


class Lease(StoreRecord):
    """A named lease: only its holder may act until it expires."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
    holder: str
    expires: UtcDatetime


# ---------------------------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------------------------


class SnapshotWriter(Protocol):
    """Takes a sweep's verdict rows as pages arrive. Nothing is "latest" until `commit`."""

    def add(self, rows: Iterable[VerdictRow]) -> None: ...

    def commit(self) -> SnapshotInfo:
        """Make the snapshot durable, record its transitions and make it the latest.

        Raises StoreConflictError if another snapshot became latest since `begin_snapshot`
        (hold the `sweep` lease to avoid that)."""
        ...

    def abort(self) -> None: ...


class Snapshots(Protocol):
    def begin_snapshot(self, run_id: str, taken_at: datetime) -> SnapshotWriter: ...

    def latest_snapshot(self) -> SnapshotInfo | None: ...

    def latest_verdicts(
        self,
        query: VerdictQuery = VerdictQuery(),
        *,
        page_size: int = 1000,
        continuation: str | None = None,
    ) -> VerdictPage:
        """Rows of the latest snapshot matching `query`, in snapshot order. A token from an
        older snapshot raises StoreError (the caller starts again)."""
        ...

    def verdict(self, machine_id: str) -> VerdictRow | None: ...

    def trend(self, limit: int = 30) -> list[SnapshotInfo]:
        """The newest committed snapshots' counts, oldest first."""
        ...


class History(Protocol):
    def history(self, machine_id: str) -> list[Transition]:
        """A machine's transitions within the retention period, oldest first."""
        ...

    def transitions(self, run_id: str) -> list[Transition]:
        """The transitions the snapshot of sweep `run_id` recorded when it was committed
        (empty for a run that committed none), in no particular order."""
        ...


class RunLog(Protocol):
    def save_run(self, run: RunRecord) -> None: ...

    def run(self, run_id: str) -> RunRecord | None: ...

    def runs(self, kind: RunKind | None = None, limit: int = 50) -> list[RunRecord]:
        """The newest runs first."""
        ...


class Journal(Protocol):
    def journal_start(self, record: JournalRecord) -> JournalRecord:
        """Write a new operation durably; StoreConflictError if its key is already there."""
        ...

    def journal_update(self, record: JournalRecord) -> JournalRecord:
        """Replace the record whose version `record.version` names; StoreConflictError if it
        changed since (or is gone). Returns the record with its new version."""
        ...

    def journal_get(self, key: str) -> JournalRecord | None: ...

    def journal(
        self, *, status: JournalStatus | None = None, machine_id: str | None = None
    ) -> list[JournalRecord]: ...


class Rollout(Protocol):
    def ring_state(self, ring: str, release: str) -> RingState | None: ...

    def save_ring_state(self, state: RingState) -> None: ...

    def ring_states(self, release: str | None = None) -> list[RingState]: ...

    def block_kb(self, block: KbBlock) -> None: ...

    def unblock_kb(self, kb: str) -> None: ...

    def kb_blocks(self) -> list[KbBlock]: ...


class Leases(Protocol):
    def acquire_lease(self, name: str, holder: str, *, now: datetime, ttl: timedelta) -> Lease:
        """Take or renew a lease; LeaseHeldError while another holder's lease is unexpired."""
        ...

    def release_lease(self, lease: Lease) -> None:
        """Give a lease back (nothing happens if someone else holds it now)."""
        ...


class Catalogs(Protocol):
    def save_catalog(self, catalog: StoredCatalog) -> None:
        """Keep `catalog` under its name, replacing the one kept before."""
        ...

    def catalog(self, name: str) -> StoredCatalog | None: ...


class Store(Snapshots, History, RunLog, Journal, Rollout, Catalogs, Leases, Protocol):
    """Everything the service remembers."""

    def close(self) -> None: ...


def rows_of(verdicts: Sequence[Verdict]) -> Iterator[VerdictRow]:
    """Verdicts -> the rows a snapshot keeps."""
    return map(VerdictRow.from_verdict, verdicts)
