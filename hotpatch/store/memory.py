"""The in-memory store: the fake behind the store port, for tests of its callers.

It keeps snapshots in the same chunked format as the real stores, and answers conflicts,
leases and retention the way the contract says, under one lock (threads may share it).
"""

from __future__ import annotations

import itertools
import threading
from datetime import datetime, timedelta

from hotpatch.errors import LeaseHeldError, StoreConflictError, StoreError
from hotpatch.ports.store import (
    DEFAULT_RETENTION,
    JournalRecord,
    JournalStatus,
    KbBlock,
    Lease,
    RingState,
    RunKind,
    RunRecord,
    SnapshotInfo,
    SnapshotWriter,
    StoredCatalog,
    Transition,
    machine_key,
)
from hotpatch.store import snapshots
from hotpatch.store.snapshots import CHUNK_ROWS, ChunkedWriter, TransitionRow, check_run_id


class MemoryStore(snapshots.SnapshotReads):
    """Everything in dictionaries; nothing survives the process."""

    def __init__(
        self, *, retention: timedelta = DEFAULT_RETENTION, chunk_rows: int = CHUNK_ROWS
    ) -> None:
        self.retention = retention
        self.chunk_rows = chunk_rows
        self._lookup = snapshots.Lookup()
        self._lock = threading.RLock()
        self._data: dict[str, bytes] = {}
        self._snapshots: dict[str, SnapshotInfo] = {}
        self._latest: str | None = None
        self._transitions: list[Transition] = []
        self._runs: dict[str, RunRecord] = {}
        self._journal: dict[str, JournalRecord] = {}
        self._rings: dict[tuple[str, str], RingState] = {}
        self._blocks: dict[str, KbBlock] = {}
        self._leases: dict[str, Lease] = {}
        self._catalogs: dict[str, StoredCatalog] = {}
        self._versions = itertools.count(1)

    # Snapshots -------------------------------------------------------------------------------

    def begin_snapshot(self, run_id: str, taken_at: datetime) -> SnapshotWriter:
        check_run_id(run_id)
        previous = self.latest_snapshot()
        return _Writer(self, run_id, taken_at, previous, self._reader(previous))

    def latest_snapshot(self) -> SnapshotInfo | None:
        with self._lock:
            return None if self._latest is None else self._snapshots[self._latest]

    def trend(self, limit: int = 30) -> list[SnapshotInfo]:
        with self._lock:
            ordered = sorted(self._snapshots.values(), key=lambda info: info.taken_at)
        return ordered[-limit:]

    def _reader(self, info: SnapshotInfo | None) -> snapshots.RangeReader:
        data = b"" if info is None else self._data[info.run_id]
        return lambda start, end: data[start:end]

    # History ---------------------------------------------------------------------------------

    def history(self, machine_id: str) -> list[Transition]:
        key = machine_key(machine_id)
        with self._lock:
            found = [t for t in self._transitions if machine_key(t.machine_id) == key]
        return sorted(found, key=lambda t: t.at)

    def transitions(self, run_id: str) -> list[Transition]:
        with self._lock:
            return [t for t in self._transitions if t.run_id == run_id]

    # Runs ------------------------------------------------------------------------------------

    def save_run(self, run: RunRecord) -> None:
        check_run_id(run.id)
        with self._lock:
            self._runs[run.id] = run

    def run(self, run_id: str) -> RunRecord | None:
        with self._lock:
            return self._runs.get(run_id)

    def runs(self, kind: RunKind | None = None, limit: int = 50) -> list[RunRecord]:
        with self._lock:
            found = [r for r in self._runs.values() if kind is None or r.kind is kind]
        found.sort(key=lambda r: (r.started_at, r.id), reverse=True)
        return found[:limit]

    # Journal ---------------------------------------------------------------------------------

    def journal_start(self, record: JournalRecord) -> JournalRecord:
        with self._lock:
            if record.key in self._journal:
                raise StoreConflictError(f"operation {record.key} is already in the journal")
            stored = record.model_copy(update={"version": str(next(self._versions))})
            self._journal[record.key] = stored
            return stored

    def journal_update(self, record: JournalRecord) -> JournalRecord:
        with self._lock:
            current = self._journal.get(record.key)
            if current is None or current.version != record.version:
                raise StoreConflictError(
                    f"operation {record.key} changed since it was read (or is not journalled)"
                )
            stored = record.model_copy(update={"version": str(next(self._versions))})
            self._journal[record.key] = stored
            return stored

    def journal_get(self, key: str) -> JournalRecord | None:
        with self._lock:
            return self._journal.get(key)

    def journal(
        self, *, status: JournalStatus | None = None, machine_id: str | None = None
    ) -> list[JournalRecord]:
        key = None if machine_id is None else machine_key(machine_id)
        with self._lock:
            return sorted(
                (
                    r
                    for r in self._journal.values()
                    if (status is None or r.status is status)
                    and (key is None or machine_key(r.machine_id) == key)
                ),
                key=lambda r: (r.started_at, r.key),
            )

    # Rollout ---------------------------------------------------------------------------------

    def ring_state(self, ring: str, release: str) -> RingState | None:
        with self._lock:
            return self._rings.get((ring, release))

    def save_ring_state(self, state: RingState) -> None:
        with self._lock:
            self._rings[(state.ring, state.release)] = state

    def ring_states(self, release: str | None = None) -> list[RingState]:
        with self._lock:
            found = [s for s in self._rings.values() if release is None or s.release == release]
        return sorted(found, key=lambda s: (s.release, s.ring))

    def block_kb(self, block: KbBlock) -> None:
        with self._lock:
            self._blocks[block.kb] = block

    def unblock_kb(self, kb: str) -> None:
        with self._lock:
            self._blocks.pop(kb, None)

    def kb_blocks(self) -> list[KbBlock]:
        with self._lock:
            return sorted(self._blocks.values(), key=lambda b: b.kb)

    # Catalogs --------------------------------------------------------------------------------

    def save_catalog(self, catalog: StoredCatalog) -> None:
        with self._lock:
            self._catalogs[catalog.name] = catalog

    def catalog(self, name: str) -> StoredCatalog | None:
        with self._lock:
            return self._catalogs.get(name)

    # Leases ----------------------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, *, now: datetime, ttl: timedelta) -> Lease:
        lease = Lease(name=name, holder=holder, expires=now + ttl)
        with self._lock:
            current = self._leases.get(name)
            if current is not None and current.holder != holder and now < current.expires:
                until = f"{current.expires:%Y-%m-%dT%H:%M:%S}Z"
                raise LeaseHeldError(f"lease {name} is held by {current.holder} until {until}")
            self._leases[name] = lease
        return lease

    def release_lease(self, lease: Lease) -> None:
        with self._lock:
            current = self._leases.get(lease.name)
            if current is not None and current.holder == lease.holder:
                del self._leases[lease.name]

    def close(self) -> None:
        pass

    # For the writer --------------------------------------------------------------------------

    def _commit(self, info: SnapshotInfo, data: bytes, moves: list[TransitionRow]) -> None:
        with self._lock:
            if self._latest != info.previous:
                raise StoreConflictError(
                    f"snapshot {self._latest} became latest while {info.run_id} was written"
                )
            if info.run_id in self._snapshots:
                raise StoreError(f"snapshot {info.run_id} already exists")
            self._data[info.run_id] = data
            self._snapshots[info.run_id] = info
            self._latest = info.run_id
            self._transitions.extend(
                Transition(
                    machine_id=machine_id,
                    from_state=before,
                    to_state=after,
                    at=info.taken_at,
                    run_id=info.run_id,
                    reasons=codes,
                )
                for machine_id, before, after, codes in moves
            )
            horizon = info.taken_at - self.retention
            self._transitions = [t for t in self._transitions if t.at >= horizon]


class _Writer(ChunkedWriter):
    def __init__(
        self,
        store: MemoryStore,
        run_id: str,
        taken_at: datetime,
        previous: SnapshotInfo | None,
        read_previous: snapshots.RangeReader,
    ) -> None:
        super().__init__(run_id, taken_at, previous, read_previous, store.chunk_rows)
        self._store = store
        self._chunks: list[bytes] = []

    def _put_chunk(self, number: int, data: bytes) -> None:
        self._chunks.append(data)

    def _finish(self, info: SnapshotInfo, transitions: list[TransitionRow]) -> None:
        self._store._commit(info, b"".join(self._chunks), transitions)

    def _discard(self) -> None:
        self._chunks = []
