"""The embedded store (the default): SQLite for records, one file per snapshot beside it.

SQLite runs in WAL mode with `synchronous=FULL`, so a write is on disk when it returns, and
with a busy timeout, so processes sharing the file take turns; every read-modify-write is one
`BEGIN IMMEDIATE` transaction. A snapshot file is written as `<run>.part`, fsynced, renamed to
`<run>.snap` and its directory fsynced before the pointer moves (in the same transaction that
records its transitions), so a sweep that dies half-way leaves "latest" where it was.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

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
    machine_digest,
)
from hotpatch.store import snapshots
from hotpatch.store.snapshots import CHUNK_ROWS, ChunkedWriter, TransitionRow, check_run_id

#: Snapshot files kept (their counts stay in the trend after the file goes).
KEEP_SNAPSHOTS = 10
#: A snapshot being written that has not grown for this long was left by a dead sweep.
STALE_PART_S = 24 * 3600
#: How long a writer waits for another process's transaction before giving up.
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    run_id TEXT PRIMARY KEY, taken_at TEXT NOT NULL, info TEXT NOT NULL,
    has_data INTEGER NOT NULL DEFAULT 1);
CREATE TABLE IF NOT EXISTS pointer (name TEXT PRIMARY KEY, run_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS transitions (
    machine TEXT NOT NULL, at TEXT NOT NULL, run_id TEXT NOT NULL, machine_id TEXT NOT NULL,
    from_state TEXT, to_state TEXT, reasons TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS transitions_by_machine ON transitions (machine, at);
CREATE INDEX IF NOT EXISTS transitions_by_time ON transitions (at);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, started_at TEXT NOT NULL, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    key TEXT PRIMARY KEY, machine TEXT NOT NULL, status TEXT NOT NULL,
    started_at TEXT NOT NULL, version INTEGER NOT NULL, record TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS journal_by_machine ON journal (machine);
CREATE INDEX IF NOT EXISTS journal_by_status ON journal (status);
CREATE TABLE IF NOT EXISTS rings (
    ring TEXT NOT NULL, release TEXT NOT NULL, record TEXT NOT NULL, PRIMARY KEY (ring, release));
CREATE TABLE IF NOT EXISTS kb_blocks (kb TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS catalogs (name TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY, holder TEXT NOT NULL, expires TEXT NOT NULL);
"""


def _sortable(value: datetime) -> str:
    """A UTC time whose text sorts as the time does."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _fsync_directory(directory: Path) -> None:
    # A rename is durable only once the directory entry is (POSIX); Windows cannot open one.
    if os.name == "nt":
        return
    handle = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


class EmbeddedStore(snapshots.SnapshotReads):
    """SQLite database `database` and snapshot files in `snapshot_dir`."""

    def __init__(
        self,
        database: Path,
        snapshot_dir: Path | None = None,
        *,
        retention: timedelta = DEFAULT_RETENTION,
        chunk_rows: int = CHUNK_ROWS,
        keep_snapshots: int = KEEP_SNAPSHOTS,
    ) -> None:
        self.database = database
        self.snapshot_dir = snapshot_dir or database.with_name(database.stem + "-snapshots")
        self.retention = retention
        self.chunk_rows = chunk_rows
        self._lookup = snapshots.Lookup()
        self.keep_snapshots = keep_snapshots
        self._lock = threading.RLock()
        try:
            database.parent.mkdir(parents=True, exist_ok=True)
            self.snapshot_dir.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                database, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            self._journal_mode_wal()
            # FULL: in WAL mode NORMAL may lose the last commits on power loss; the journal
            # must not (https://www.sqlite.org/pragma.html#pragma_synchronous).
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            with self._write() as db:
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
        except (OSError, sqlite3.Error) as error:
            raise StoreError(f"store {database}: cannot be opened: {error}") from error

    # Plumbing ------------------------------------------------------------------------------

    def _journal_mode_wal(self) -> None:
        """Switch to WAL, waiting for another process that is opening the store at that instant:
        SQLite answers this pragma "database is locked" at once, without its busy handler."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.02)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once so that two processes never deadlock."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                raise StoreError(f"store {self.database}: {error}") from error
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException as error:
                with suppress(sqlite3.Error):  # SQLite may have rolled back already (disk full)
                    self._db.execute("ROLLBACK")
                if isinstance(error, sqlite3.Error):
                    raise StoreError(
                        f"store {self.database}: {error}: this write was not kept (is the "
                        "disk full, or the file read-only?); what was written before is"
                    ) from error
                raise

    def _read(self, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, parameters).fetchall()
            except sqlite3.Error as error:
                raise StoreError(f"store {self.database}: {error}") from error

    def _file(self, run_id: str, suffix: str = ".snap") -> Path:
        return self.snapshot_dir / f"{run_id}{suffix}"

    # Snapshots -------------------------------------------------------------------------------

    def begin_snapshot(self, run_id: str, taken_at: datetime) -> SnapshotWriter:
        check_run_id(run_id)
        previous = self.latest_snapshot()
        return _Writer(self, run_id, taken_at, previous, self._reader(previous))

    def latest_snapshot(self) -> SnapshotInfo | None:
        found = self._read(
            "SELECT s.info FROM pointer p JOIN snapshots s ON s.run_id = p.run_id"
            " WHERE p.name = 'latest'"
        )
        return SnapshotInfo.model_validate_json(str(found[0][0])) if found else None

    def trend(self, limit: int = 30) -> list[SnapshotInfo]:
        found = self._read(
            "SELECT info FROM snapshots ORDER BY taken_at DESC, run_id DESC LIMIT ?", (limit,)
        )
        return [SnapshotInfo.model_validate_json(str(info)) for (info,) in reversed(found)]

    def _reader(self, info: SnapshotInfo | None) -> snapshots.RangeReader:
        path = None if info is None else self._file(info.run_id)

        def read(start: int, end: int) -> bytes:
            if path is None:
                return b""
            try:
                with path.open("rb") as file:
                    file.seek(start)
                    return file.read(end - start)
            except OSError as error:
                raise StoreError(f"snapshot {path}: {error.strerror or error}") from error

        return read

    def _commit_snapshot(self, info: SnapshotInfo, moves: list[TransitionRow]) -> None:
        at = _sortable(info.taken_at)
        with self._write() as db:
            row = db.execute("SELECT run_id FROM pointer WHERE name = 'latest'").fetchone()
            latest = None if row is None else row[0]
            if latest != info.previous:
                raise StoreConflictError(
                    f"snapshot {latest} became latest while {info.run_id} was written"
                )
            try:
                db.execute(
                    "INSERT INTO snapshots (run_id, taken_at, info) VALUES (?, ?, ?)",
                    (info.run_id, at, info.model_dump_json()),
                )
            except sqlite3.IntegrityError as error:
                raise StoreConflictError(f"snapshot {info.run_id} already exists") from error
            db.executemany(
                "INSERT INTO transitions VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    (
                        machine_digest(machine_id),
                        at,
                        info.run_id,
                        machine_id,
                        before,
                        after,
                        ",".join(codes),  # reason codes hold no comma
                    )
                    for machine_id, before, after, codes in moves
                ),
            )
            db.execute(
                "INSERT INTO pointer (name, run_id) VALUES ('latest', ?)"
                " ON CONFLICT (name) DO UPDATE SET run_id = excluded.run_id",
                (info.run_id,),
            )
            db.execute(
                "DELETE FROM transitions WHERE at < ?", (_sortable(info.taken_at - self.retention),)
            )
        self._prune_files()

    def _prune_files(self) -> None:
        """Old snapshot files go (their counts stay for the trend); failing here loses nothing."""
        try:
            with self._write() as db:
                old = db.execute(
                    "SELECT run_id FROM snapshots WHERE has_data = 1"
                    " ORDER BY taken_at DESC, run_id DESC LIMIT -1 OFFSET ?",
                    (self.keep_snapshots,),
                ).fetchall()
                db.executemany("UPDATE snapshots SET has_data = 0 WHERE run_id = ?", old)
            for (run_id,) in old:
                self._file(run_id).unlink(missing_ok=True)
            # A live writer touches its .part with every chunk; one untouched for a day
            # belongs to a sweep that died.
            stale = time.time() - STALE_PART_S
            for part in self.snapshot_dir.glob("*.part"):
                if part.stat().st_mtime < stale:
                    part.unlink(missing_ok=True)
        except (OSError, StoreError):
            pass

    # History ---------------------------------------------------------------------------------

    def history(self, machine_id: str) -> list[Transition]:
        return self._transitions(
            "SELECT machine_id, from_state, to_state, at, run_id, reasons FROM transitions"
            " WHERE machine = ? ORDER BY at, rowid",
            (machine_digest(machine_id),),
        )

    def transitions(self, run_id: str) -> list[Transition]:
        # Through the index on `at`: a run's transitions all carry its snapshot's time.
        return self._transitions(
            "SELECT t.machine_id, t.from_state, t.to_state, t.at, t.run_id, t.reasons"
            " FROM snapshots s JOIN transitions t ON t.at = s.taken_at AND t.run_id = s.run_id"
            " WHERE s.run_id = ?",
            (run_id,),
        )

    def _transitions(self, sql: str, parameters: tuple[object, ...]) -> list[Transition]:
        found = self._read(sql, parameters)
        return [
            Transition(
                machine_id=str(mid),
                from_state=before,
                to_state=after,
                at=datetime.strptime(str(at), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC),
                run_id=str(run_id),
                reasons=tuple(str(reasons).split(",")) if reasons else (),
            )
            for mid, before, after, at, run_id, reasons in found
        ]

    # Runs ------------------------------------------------------------------------------------

    def save_run(self, run: RunRecord) -> None:
        check_run_id(run.id)
        with self._write() as db:
            db.execute(
                "INSERT INTO runs (id, kind, started_at, record) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET kind = excluded.kind,"
                " started_at = excluded.started_at, record = excluded.record",
                (run.id, run.kind.value, _sortable(run.started_at), run.model_dump_json()),
            )

    def run(self, run_id: str) -> RunRecord | None:
        found = self._read("SELECT record FROM runs WHERE id = ?", (run_id,))
        return RunRecord.model_validate_json(str(found[0][0])) if found else None

    def runs(self, kind: RunKind | None = None, limit: int = 50) -> list[RunRecord]:
        found = self._read(
            "SELECT record FROM runs WHERE ? IS NULL OR kind = ?"
            " ORDER BY started_at DESC, id DESC LIMIT ?",
            (kind, kind, limit),
        )
        return [RunRecord.model_validate_json(str(record)) for (record,) in found]

    # Journal ---------------------------------------------------------------------------------

    def journal_start(self, record: JournalRecord) -> JournalRecord:
        stored = record.model_copy(update={"version": "1"})
        with self._write() as db:
            try:
                db.execute(
                    "INSERT INTO journal (key, machine, status, started_at, version, record)"
                    " VALUES (?, ?, ?, ?, 1, ?)",
                    (
                        record.key,
                        machine_digest(record.machine_id),
                        record.status.value,
                        _sortable(record.started_at),
                        stored.model_dump_json(),
                    ),
                )
            except sqlite3.IntegrityError as error:
                raise StoreConflictError(
                    f"operation {record.key} is already in the journal"
                ) from error
        return stored

    def journal_update(self, record: JournalRecord) -> JournalRecord:
        try:
            expected = int(record.version or "")
        except ValueError:
            raise StoreConflictError(
                f"operation {record.key}: an update must carry the version it read"
            ) from None
        stored = record.model_copy(update={"version": str(expected + 1)})
        with self._write() as db:
            changed = db.execute(
                "UPDATE journal SET status = ?, version = ?, record = ?"
                " WHERE key = ? AND version = ?",
                (
                    record.status.value,
                    expected + 1,
                    stored.model_dump_json(),
                    record.key,
                    expected,
                ),
            ).rowcount
            if changed != 1:
                raise StoreConflictError(
                    f"operation {record.key} changed since it was read (or is not journalled)"
                )
        return stored

    def journal_get(self, key: str) -> JournalRecord | None:
        found = self._read("SELECT record FROM journal WHERE key = ?", (key,))
        return JournalRecord.model_validate_json(str(found[0][0])) if found else None

    def journal(
        self, *, status: JournalStatus | None = None, machine_id: str | None = None
    ) -> list[JournalRecord]:
        key = None if machine_id is None else machine_digest(machine_id)
        found = self._read(
            "SELECT record FROM journal WHERE (? IS NULL OR status = ?)"
            " AND (? IS NULL OR machine = ?) ORDER BY started_at, key",
            (status, status, key, key),
        )
        return [JournalRecord.model_validate_json(str(record)) for (record,) in found]

    # Rollout ---------------------------------------------------------------------------------

    def ring_state(self, ring: str, release: str) -> RingState | None:
        found = self._read(
            "SELECT record FROM rings WHERE ring = ? AND release = ?", (ring, release)
        )
        return RingState.model_validate_json(str(found[0][0])) if found else None

    def save_ring_state(self, state: RingState) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO rings (ring, release, record) VALUES (?, ?, ?)"
                " ON CONFLICT (ring, release) DO UPDATE SET record = excluded.record",
                (state.ring, state.release, state.model_dump_json()),
            )

    def ring_states(self, release: str | None = None) -> list[RingState]:
        found = self._read(
            "SELECT record FROM rings WHERE ? IS NULL OR release = ? ORDER BY release, ring",
            (release, release),
        )
        return [RingState.model_validate_json(str(record)) for (record,) in found]

    def block_kb(self, block: KbBlock) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO kb_blocks (kb, record) VALUES (?, ?)"
                " ON CONFLICT (kb) DO UPDATE SET record = excluded.record",
                (block.kb, block.model_dump_json()),
            )

    def unblock_kb(self, kb: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM kb_blocks WHERE kb = ?", (kb,))

    def kb_blocks(self) -> list[KbBlock]:
        found = self._read("SELECT record FROM kb_blocks ORDER BY kb")
        return [KbBlock.model_validate_json(str(record)) for (record,) in found]

    # Catalogs --------------------------------------------------------------------------------

    def save_catalog(self, catalog: StoredCatalog) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO catalogs (name, record) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET record = excluded.record",
                (catalog.name, catalog.model_dump_json()),
            )

    def catalog(self, name: str) -> StoredCatalog | None:
        found = self._read("SELECT record FROM catalogs WHERE name = ?", (name,))
        return StoredCatalog.model_validate_json(str(found[0][0])) if found else None

    # Leases ----------------------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, *, now: datetime, ttl: timedelta) -> Lease:
        lease = Lease(name=name, holder=holder, expires=now + ttl)
        with self._write() as db:
            row = db.execute(
                "SELECT holder, expires FROM leases WHERE name = ?", (name,)
            ).fetchone()
            if row is not None and row[0] != holder and _sortable(now) < row[1]:
                raise LeaseHeldError(f"lease {name} is held by {row[0]} until {row[1]}")
            db.execute(
                "INSERT INTO leases (name, holder, expires) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,"
                " expires = excluded.expires",
                (name, holder, _sortable(lease.expires)),
            )
        return lease

    def release_lease(self, lease: Lease) -> None:
        with self._write() as db:
            db.execute(
                "DELETE FROM leases WHERE name = ? AND holder = ?", (lease.name, lease.holder)
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Writer(ChunkedWriter):
    """Chunks appended to `<run>.part`; committed by fsync, rename, fsync of the directory."""

    def __init__(
        self,
        store: EmbeddedStore,
        run_id: str,
        taken_at: datetime,
        previous: SnapshotInfo | None,
        read_previous: snapshots.RangeReader,
    ) -> None:
        super().__init__(run_id, taken_at, previous, read_previous, store.chunk_rows)
        self._store = store
        self._part = store._file(run_id, ".part")

    def _put_chunk(self, number: int, data: bytes) -> None:
        # Opened per chunk, so that a writer dropped without commit or abort holds no file.
        try:
            with self._part.open("xb" if number == 0 else "ab") as file:
                file.write(data)
        except OSError as error:
            raise StoreError(
                f"snapshot {self._part}: cannot be written: {error.strerror or error}"
            ) from error

    def _finish(self, info: SnapshotInfo, transitions: list[TransitionRow]) -> None:
        final = self._store._file(self.run_id)
        try:
            with self._part.open("ab") as file:  # an empty sweep is a snapshot too
                os.fsync(file.fileno())
            if final.exists():
                raise StoreConflictError(f"snapshot {self.run_id} already exists")
            self._part.rename(final)
            _fsync_directory(final.parent)
        except OSError as error:
            raise StoreError(
                f"snapshot {self._part}: cannot be written: {error.strerror or error}"
            ) from error
        try:
            self._store._commit_snapshot(info, transitions)
        except BaseException:
            final.unlink(missing_ok=True)
            raise

    def _discard(self) -> None:
        self._part.unlink(missing_ok=True)
