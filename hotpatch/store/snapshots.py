"""The snapshot format and the work every store shares: encode, diff, read back, page.

A snapshot is a run of gzip members, one per chunk of rows (a JSON array of row arrays): any
chunk can be read alone from its byte range, so a page deep into a snapshot costs one chunk,
and a blob or a file holds it equally well. While a sweep streams rows in, the writer compares
each with the previous latest snapshot through a compact index (a 64-bit digest of the machine
key -> a state number), so a 100,000-machine sweep never holds verdicts, only that index.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import hashlib
import json
import re
import threading
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from hotpatch.core.models import Action, OsFamily, Reason, State
from hotpatch.errors import StoreError
from hotpatch.ports.store import (
    Counts,
    SnapshotInfo,
    VerdictPage,
    VerdictQuery,
    VerdictRow,
    machine_key,
)

#: Rows per gzip member: a page of the API reads one or two.
CHUNK_ROWS = 1000
#: Fast enough to keep up with a sweep, and still 10-20x smaller than the JSON.
_GZIP_LEVEL = 6
_STATES: tuple[State, ...] = tuple(State)
_STATE_NUMBER = {state: number for number, state in enumerate(_STATES)}
_NO_STATE = -1

#: A transition before it has a time and run: (machine id, from, to, reason codes).
TransitionRow = tuple[str, State | None, State | None, tuple[str, ...]]


_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_run_id(run_id: str) -> None:
    """A run id names files and blobs: letters, digits, '.', '_' and '-' only."""
    if not _RUN_ID.match(run_id):
        raise ValueError(f"{run_id!r} is not a run id (letters, digits, '.', '_', '-')")


def digest(machine_id: str) -> int:
    """64 bits of the machine key: small in the index, and a collision is ~1e-10 at 100,000."""
    return int.from_bytes(
        hashlib.blake2b(machine_key(machine_id).encode(), digest_size=8).digest(), "big"
    )


# ---------------------------------------------------------------------------------------------
# Row codec
# ---------------------------------------------------------------------------------------------


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _time(value: datetime | None) -> int | None:
    """Microseconds since the epoch: exact, and ten times cheaper than isoformat()."""
    return None if value is None else (value - _EPOCH) // _MICROSECOND


def _from_time(value: int | None) -> datetime | None:
    return None if value is None else _EPOCH + timedelta(microseconds=value)


def encode_row(row: VerdictRow, reason_set: int) -> list[Any]:
    """A row as a JSON array; its reasons are the number of a set in the chunk's table."""
    return [
        row.id,
        row.name,
        row.subscription,
        row.resource_group,
        row.os,
        row.ring,
        dict(row.tags) if row.tags else None,
        row.state,  # a StrEnum: json writes it as its value
        row.action,
        row.eligible,
        reason_set,
        row.build,
        row.release_month,
        _time(row.last_assessed),
        _time(row.next_restart),
    ]


class RowDecoder:
    """Decodes chunks; shares equal reasons between rows (a fleet has few distinct ones)."""

    def __init__(self) -> None:
        self._reasons: dict[tuple[str, str], Reason] = {}

    def reason_sets(self, table: list[list[list[str]]]) -> list[tuple[Reason, ...]]:
        reasons = self._reasons
        decoded = []
        for entries in table:
            found = []
            for code, message in entries:
                reason = reasons.get((code, message))
                if reason is None:
                    reason = reasons[(code, message)] = Reason(code, message)
                found.append(reason)
            decoded.append(tuple(found))
        return decoded

    @staticmethod
    def decode(item: list[Any], reasons: tuple[Reason, ...]) -> VerdictRow:
        return VerdictRow(
            id=item[0],
            name=item[1],
            subscription=item[2],
            resource_group=item[3],
            os=None if item[4] is None else OsFamily(item[4]),
            ring=item[5],
            tags=item[6] or {},
            state=State(item[7]),
            action=Action(item[8]),
            eligible=bool(item[9]),
            reasons=reasons,
            build=item[11],
            release_month=item[12],
            last_assessed=_from_time(item[13]),
            next_restart=_from_time(item[14]),
        )


def encode_chunk(rows: list[VerdictRow]) -> bytes:
    """`{"reasons": [set, ...], "rows": [row, ...]}`, gzip'd: a sweep's rows share a few reason
    sets (verdicts share decisions), so each set is written once a chunk, not once a row."""
    sets: dict[tuple[Reason, ...], int] = {}
    encoded = []
    for row in rows:
        number = sets.get(row.reasons)
        if number is None:
            number = sets[row.reasons] = len(sets)
        encoded.append(encode_row(row, number))
    table = [[[reason.code, reason.message] for reason in reasons] for reasons in sets]
    text = json.dumps({"reasons": table, "rows": encoded}, separators=(",", ":"))
    return gzip.compress(text.encode(), compresslevel=_GZIP_LEVEL, mtime=0)


def _load_chunk(data: bytes) -> dict[str, Any]:
    try:
        chunk = json.loads(gzip.decompress(data))
        if not isinstance(chunk, dict):
            raise ValueError("a chunk is an object")
        return chunk
    except (OSError, EOFError, ValueError) as error:
        raise StoreError(f"a snapshot chunk cannot be read: {error}") from error


def decode_chunk(data: bytes, decoder: RowDecoder) -> list[VerdictRow]:
    chunk = _load_chunk(data)
    try:
        sets = decoder.reason_sets(chunk["reasons"])
        return [decoder.decode(item, sets[item[10]]) for item in chunk["rows"]]
    except (ValueError, TypeError, IndexError, KeyError) as error:
        raise StoreError(f"a snapshot chunk cannot be read: {error}") from error


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------

#: Reads bytes [start, end) of a snapshot's data.
RangeReader = Callable[[int, int], bytes]


def iter_items(info: SnapshotInfo, read: RangeReader) -> Iterator[list[Any]]:
    """The encoded rows of a snapshot, undecoded: what a diff needs is the id and the state."""
    for number in range(len(info.offsets) - 1):
        yield from _load_chunk(read(info.offsets[number], info.offsets[number + 1]))["rows"]


def iter_rows(info: SnapshotInfo, read: RangeReader, start_row: int = 0) -> Iterator[VerdictRow]:
    """The rows of a snapshot from `start_row` on, one chunk in memory at a time."""
    decoder = RowDecoder()
    first = start_row // info.chunk_rows
    for number in range(first, len(info.offsets) - 1):
        rows = decode_chunk(read(info.offsets[number], info.offsets[number + 1]), decoder)
        skip = start_row - number * info.chunk_rows if number == first else 0
        yield from rows[skip:]


def encode_token(run_id: str, row: int) -> str:
    raw = json.dumps({"s": run_id, "r": row}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str, latest: str) -> int:
    try:
        padded = token + "=" * (-len(token) % 4)
        content = json.loads(base64.urlsafe_b64decode(padded))
        run_id, row = content["s"], content["r"]
        if not isinstance(run_id, str) or not isinstance(row, int) or row < 0:
            raise ValueError("bad fields")
    except (binascii.Error, ValueError, TypeError, KeyError) as error:
        raise StoreError("the continuation token is not one this store gave") from error
    if run_id != latest:
        raise StoreError(
            "the continuation token belongs to an older snapshot: a newer sweep has "
            "replaced it, start again from the first page"
        )
    return row


def page(
    info: SnapshotInfo | None,
    read: RangeReader,
    query: VerdictQuery,
    page_size: int,
    continuation: str | None,
) -> VerdictPage:
    """One page of the rows of `info` that match `query`, and the token of the next."""
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    if info is None:
        if continuation is not None:
            raise StoreError("the continuation token names a snapshot this store does not have")
        return VerdictPage((), None)
    start = 0 if continuation is None else decode_token(continuation, info.run_id)
    found: list[VerdictRow] = []
    position = start
    for row in iter_rows(info, read, start):
        position += 1
        if query.matches(row):
            found.append(row)
            if len(found) == page_size:
                break
    more = position < info.counts.machines and len(found) == page_size
    return VerdictPage(tuple(found), encode_token(info.run_id, position) if more else None)


class Lookup:
    """Finds one machine's row in the latest snapshot: an index of digest -> row number, built
    once per snapshot (about 100 bytes a machine), then one chunk read per lookup."""

    def __init__(self) -> None:
        self._run_id: str | None = None
        self._rows: dict[int, int] = {}
        self._lock = threading.Lock()

    def find(
        self, info: SnapshotInfo | None, read: RangeReader, machine_id: str
    ) -> VerdictRow | None:
        if info is None:
            return None
        with self._lock:
            if self._run_id != info.run_id:
                self._rows = {
                    digest(item[0]): number for number, item in enumerate(iter_items(info, read))
                }
                self._run_id = info.run_id
            number = self._rows.get(digest(machine_id))
        if number is None:
            return None
        chunk, offset = divmod(number, info.chunk_rows)
        data = _load_chunk(read(info.offsets[chunk], info.offsets[chunk + 1]))
        try:
            decoder = RowDecoder()  # only this row's reasons and fields are decoded
            item = data["rows"][offset]
            (reasons,) = decoder.reason_sets([data["reasons"][item[10]]])
            row = decoder.decode(item, reasons)
        except (ValueError, TypeError, IndexError, KeyError) as error:
            raise StoreError(f"a snapshot chunk cannot be read: {error}") from error
        return row if row.key == machine_key(machine_id) else None


class SnapshotReads(ABC):
    """The read side every store shares: pages of the latest snapshot, and one machine in it."""

    _lookup: Lookup

    @abstractmethod
    def latest_snapshot(self) -> SnapshotInfo | None: ...

    @abstractmethod
    def _reader(self, info: SnapshotInfo | None) -> RangeReader: ...

    def latest_verdicts(
        self,
        query: VerdictQuery = VerdictQuery(),  # noqa: B008 (immutable)
        *,
        page_size: int = 1000,
        continuation: str | None = None,
    ) -> VerdictPage:
        info = self.latest_snapshot()
        return page(info, self._reader(info), query, page_size, continuation)

    def verdict(self, machine_id: str) -> VerdictRow | None:
        info = self.latest_snapshot()
        return self._lookup.find(info, self._reader(info), machine_id)


def previous_index(info: SnapshotInfo | None, read: RangeReader) -> dict[int, int]:
    """digest -> state number of every machine of a snapshot (about 100 bytes a machine)."""
    if info is None:
        return {}
    return {digest(item[0]): _STATE_NUMBER[State(item[7])] for item in iter_items(info, read)}


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


class ChunkedWriter(ABC):
    """Encodes rows into chunks, counts them and diffs them against the previous snapshot; the
    store says where chunks go and what committing means."""

    def __init__(
        self,
        run_id: str,
        taken_at: datetime,
        previous: SnapshotInfo | None,
        read_previous: RangeReader,
        chunk_rows: int = CHUNK_ROWS,
    ) -> None:
        self.run_id = run_id
        self.taken_at = taken_at
        self.previous = previous
        self._read_previous = read_previous
        self._chunk_rows = chunk_rows
        self._pending: list[VerdictRow] = []
        self._offsets = [0]
        self._index = previous_index(previous, read_previous)
        self._seen: set[int] = set()
        self._transitions: list[TransitionRow] = []
        self._state: Counter[str] = Counter()
        self._subscription: Counter[str] = Counter()
        self._os: Counter[str] = Counter()
        self._ring: Counter[str] = Counter()
        self._eligible = 0
        self._machines = 0
        self._closed = False

    # What a store provides ------------------------------------------------------------------

    @abstractmethod
    def _put_chunk(self, number: int, data: bytes) -> None:
        """Keep a chunk (not yet visible to readers)."""

    @abstractmethod
    def _finish(self, info: SnapshotInfo, transitions: list[TransitionRow]) -> None:
        """Make the chunks durable, record the info and transitions, move the pointer from
        `info.previous` to this snapshot (StoreConflictError if it moved meanwhile)."""

    @abstractmethod
    def _discard(self) -> None:
        """Drop the chunks kept so far."""

    # The writer -----------------------------------------------------------------------------

    def add(self, rows: Iterable[VerdictRow]) -> None:
        self._check_open()
        for row in rows:
            key = digest(row.id)
            if key in self._seen:
                continue  # a machine once per snapshot, as a sweep judges it once
            self._seen.add(key)
            self._count(row)
            before = self._index.pop(key, _NO_STATE)
            if before != _STATE_NUMBER[row.state]:
                self._transitions.append(
                    (
                        row.id,
                        None if before == _NO_STATE else _STATES[before],
                        row.state,
                        tuple(reason.code for reason in row.reasons),
                    )
                )
            self._pending.append(row)
            if len(self._pending) >= self._chunk_rows:
                self._flush()

    def commit(self) -> SnapshotInfo:
        self._check_open()
        try:
            self._flush()
            if self._index:  # machines of the previous snapshot that this one lacks
                gone = self._index
                assert self.previous is not None
                for item in iter_items(self.previous, self._read_previous):
                    if digest(item[0]) in gone:
                        self._transitions.append((item[0], State(item[7]), None, ("not_in_sweep",)))
            info = SnapshotInfo(
                run_id=self.run_id,
                taken_at=self.taken_at,
                counts=Counts(
                    machines=self._machines,
                    eligible=self._eligible,
                    by_state=dict(self._state),
                    by_subscription=dict(self._subscription),
                    by_os=dict(self._os),
                    by_ring=dict(self._ring),
                ),
                chunk_rows=self._chunk_rows,
                offsets=tuple(self._offsets),
                previous=None if self.previous is None else self.previous.run_id,
            )
            self._finish(info, self._transitions)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return info

    def abort(self) -> None:
        if not self._closed:
            self._closed = True
            self._discard()

    def _count(self, row: VerdictRow) -> None:
        self._machines += 1
        self._eligible += row.eligible
        self._state[row.state.value] += 1
        self._subscription[(row.subscription or "").casefold()] += 1
        self._os[row.os.value if row.os else ""] += 1
        self._ring[row.ring or ""] += 1

    def _flush(self) -> None:
        if not self._pending:
            return
        data = encode_chunk(self._pending)
        self._pending = []
        self._put_chunk(len(self._offsets) - 1, data)
        self._offsets.append(self._offsets[-1] + len(data))

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"snapshot {self.run_id} is already committed or aborted")
