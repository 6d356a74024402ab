"""The latest snapshot, indexed in memory for the API: filters answer from posting lists.

A snapshot is read from the store once (page by page, never all its rows as records at
once) into a compact index: each machine's JSON (its reasons shared: a fleet has few reason
sets), a sorted array of row numbers per filter value (state, subscription, resource group,
OS, ring, eligibility, tag, reason code), and sorted digests of ids and names. A page is then
a walk along the shortest posting list that matches, checking the others by bisection, so a
page costs the same at the start of the snapshot as deep into it. `LatestIndex` rebuilds it
when the store's latest pointer moves, looking at the pointer at most every few seconds.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import heapq
import json
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

from starlette.concurrency import run_in_threadpool

from hotpatch.core.models import OsFamily, State
from hotpatch.errors import StoreError
from hotpatch.ports.store import SnapshotInfo, Store, VerdictRow, machine_key
from hotpatch.report import iso, verdict_row_json

#: Rows read from the store per call while an index is built.
BUILD_PAGE = 5000
#: Snapshots kept for the summary's trend.
TREND_LIMIT = 100
#: Times an index is rebuilt when a newer sweep commits while it is being read.
BUILD_ATTEMPTS = 3

#: What differs from machine to machine. The rest of a machine's JSON is kept in parts that
#: many machines share (a fleet has few distinct tag sets, reason sets, or combinations of
#: state, subscription, ring and build), each distinct part once: half the memory of whole rows.
_OWN = ("id", "name", "last_assessed")
_SHARED = (
    (
        "state",
        "eligible",
        "action",
        "os",
        "subscription_id",
        "resource_group",
        "ring",
        "build",
        "release_month",
        "next_restart",
    ),
    ("tags",),
    ("reasons",),
)


class _Interned:
    """One part of every row: each distinct value kept once, and which one each row has."""

    def __init__(self) -> None:
        self._of = array("I")
        self._values: list[bytes] = []
        self._numbers: dict[bytes, int] = {}

    def add(self, value: bytes) -> None:
        number = self._numbers.get(value)
        if number is None:
            number = self._numbers[value] = len(self._values)
            self._values.append(value)
        self._of.append(number)

    def of(self, row: int) -> bytes:
        return self._values[self._of[row]]


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.casefold().encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True, slots=True)
class ComplianceFilter:
    """Which machines of the snapshot to list. Values of one field are alternatives (any may
    match); fields, and each tag, must all match; an empty field does not filter.

    Subscriptions and resource groups compare without regard to case (ARM's rule); rings, tag
    keys and values exactly, as the store's own query does.
    """

    states: frozenset[State] = frozenset()
    subscriptions: frozenset[str] = frozenset()
    resource_groups: frozenset[str] = frozenset()
    os: frozenset[OsFamily] = frozenset()
    rings: frozenset[str] = frozenset()
    tags: tuple[tuple[str, str], ...] = ()
    eligible: bool | None = None
    reasons: frozenset[str] = frozenset()

    def fingerprint(self) -> str:
        """The same for the same filter however its parameters were ordered or cased."""
        return _fingerprint(self)


@lru_cache(maxsize=1024)
def _fingerprint(query: ComplianceFilter) -> str:
    # Remembered: every page of a listing (and its token) asks for it again.
    canonical = [
        sorted(s.value for s in query.states),
        sorted(s.casefold() for s in query.subscriptions),
        sorted(g.casefold() for g in query.resource_groups),
        sorted(o.value for o in query.os),
        sorted(query.rings),
        sorted(set(query.tags)),
        query.eligible,
        sorted(query.reasons),
    ]
    text = json.dumps(canonical, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Continuation tokens
# ---------------------------------------------------------------------------------------------


class TokenError(ValueError):
    """A continuation token this snapshot cannot continue; `expired`: it was given for an
    older snapshot (start again), else it is not a token for this query at all."""

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


def encode_token(run_id: str, row: int, query: ComplianceFilter) -> str:
    # {"s": run_id, "r": row, "f": fingerprint} as compact JSON, written out (every page has one)
    raw = f'{{"s":{json.dumps(run_id)},"r":{row:d},"f":"{query.fingerprint()}"}}'
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, run_id: str | None, query: ComplianceFilter, rows: int) -> int:
    """The row a token continues from; TokenError when it cannot be continued."""
    try:
        padded = token + "=" * (-len(token) % 4)
        content = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
        snapshot, row, fingerprint = content["s"], content["r"], content["f"]
        if (
            not isinstance(snapshot, str)
            or type(row) is not int
            or not isinstance(fingerprint, str)
        ):
            raise ValueError("bad fields")
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeError) as error:
        raise TokenError("not a continuation token this API gave") from error
    if snapshot != run_id:
        raise TokenError(
            f"the token belongs to snapshot {snapshot}, which a newer sweep has replaced"
            f"{'' if run_id is None else f' ({run_id})'}: start again from the first page",
            expired=True,
        )
    if fingerprint != query.fingerprint():
        raise TokenError("the token was given for other filters: repeat the first page's filters")
    if not 0 <= row <= rows:
        raise TokenError("not a continuation token this API gave")
    return row


# ---------------------------------------------------------------------------------------------
# The index
# ---------------------------------------------------------------------------------------------


class _Postings:
    """Sorted row numbers per value of each field, as they are added in row order."""

    def __init__(self) -> None:
        self.lists: dict[str, dict[str, array[int]]] = {}

    def add(self, name: str, value: str, row: int) -> None:
        values = self.lists.setdefault(name, {})
        found = values.get(value)
        if found is None:
            values[value] = array("I", (row,))
        elif found[-1] != row:
            found.append(row)

    def get(self, name: str, value: str) -> array[int] | None:
        return self.lists.get(name, {}).get(value)


def _contains(rows: array[int], row: int) -> bool:
    at = bisect_left(rows, row)
    return at < len(rows) and rows[at] == row


def _from(rows: array[int], start: int) -> Iterator[int]:
    return iter(memoryview(rows)[bisect_left(rows, start) :])


@dataclass(slots=True)
class _Lookup:
    """Sorted 64-bit digests of a text per row, and the rows in the same order."""

    digests: array[int] = field(default_factory=lambda: array("Q"))
    rows: array[int] = field(default_factory=lambda: array("I"))

    @classmethod
    def of(cls, pairs: list[tuple[int, int]]) -> _Lookup:
        pairs.sort()
        return cls(array("Q", (d for d, _ in pairs)), array("I", (r for _, r in pairs)))

    def find(self, text: str) -> list[int]:
        wanted = _digest(text)
        at = bisect_left(self.digests, wanted)
        found = []
        while at < len(self.digests) and self.digests[at] == wanted:
            found.append(self.rows[at])
            at += 1
        return found


@dataclass(frozen=True, slots=True)
class Page:
    """The rows of one page and the row the next page starts at (None: the last)."""

    rows: list[int]
    next_row: int | None


class SnapshotIndex:
    """One snapshot's rows as JSON, with posting lists for every filter."""

    def __init__(self, info: SnapshotInfo | None, trend: Sequence[SnapshotInfo] = ()) -> None:
        self.info = info
        self.trend = tuple(trend)
        #: Each machine's own fields (`_OWN`), as the start of its JSON object.
        self._owns: list[bytes] = []
        #: The rest of its JSON, in parts that many machines share (`_SHARED`).
        self._parts = tuple(_Interned() for _ in _SHARED)
        self._postings = _Postings()
        self._ids = _Lookup()
        self._names = _Lookup()

    @property
    def run_id(self) -> str | None:
        return None if self.info is None else self.info.run_id

    def __len__(self) -> int:
        return len(self._owns)

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def of_rows(
        cls,
        info: SnapshotInfo | None,
        rows: Iterable[VerdictRow],
        trend: Sequence[SnapshotInfo] = (),
    ) -> SnapshotIndex:
        index = cls(info, trend)
        ids: list[tuple[int, int]] = []
        names: list[tuple[int, int]] = []
        for row in rows:
            number = len(index._owns)
            index._add(number, row)
            ids.append((_digest(row.id), number))
            names.append((_digest(row.name), number))
        index._ids = _Lookup.of(ids)
        index._names = _Lookup.of(names)
        return index

    def _add(self, number: int, row: VerdictRow) -> None:
        document = verdict_row_json(row)
        self._owns.append(_dumps({name: document[name] for name in _OWN})[:-1])
        for part, names in zip(self._parts, _SHARED, strict=True):
            part.add(b"," + _dumps({name: document[name] for name in names})[1:-1])
        add = self._postings.add
        add("state", row.state.value, number)
        add("eligible", "true" if row.eligible else "false", number)
        if row.subscription:
            add("subscription", row.subscription.casefold(), number)
        if row.resource_group:
            add("resource_group", row.resource_group.casefold(), number)
        if row.os is not None:
            add("os", row.os.value, number)
        if row.ring is not None:
            add("ring", row.ring, number)
        for key, value in row.tags.items():
            add("tag", f"{key}\x00{value}", number)
        for reason in row.reasons:
            add("reason", reason.code, number)

    # -- reading ----------------------------------------------------------------------------

    def body(self, row: int) -> bytes:
        """Row `row` as the API shows a machine (`hotpatch.report.verdict_row_json`)."""
        return b"".join((self._owns[row], *(part.of(row) for part in self._parts), b"}"))

    def find_id(self, machine_id: str) -> int | None:
        """The row of a machine by its ARM id, compared without regard to case."""
        wanted = machine_key(machine_id)
        for row in self._ids.find(machine_id):
            if machine_key(self.document(row)["id"]) == wanted:
                return row
        return None

    def find_name(self, name: str) -> list[int]:
        """The rows of the machines called `name`, compared without regard to case."""
        wanted = name.casefold()
        return [r for r in self._names.find(name) if self.document(r)["name"].casefold() == wanted]

    def document(self, row: int) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.body(row))
        return found

    def page(self, query: ComplianceFilter, start: int, size: int) -> Page:
        """Up to `size` rows matching `query` from row `start` on, in snapshot order."""
        constraints = self._constraints(query)
        if constraints is None:
            return Page([], None)
        if not constraints:
            total = len(self)
            end = min(start + size, total)
            return Page(list(range(start, end)), end if end < total else None)
        if len(constraints) == 1 and len(constraints[0]) == 1:
            # One filter value (the usual question): the page is a slice of its list.
            (rows,) = constraints[0]
            at = bisect_left(rows, start)
            found = rows[at : at + size + 1].tolist()
            return Page(found[:size], found[size] if len(found) > size else None)
        constraints.sort(key=lambda lists: sum(len(rows) for rows in lists))
        driver, others = constraints[0], constraints[1:]
        chosen: list[int] = []
        for row in _merged(driver, start):
            if all(any(_contains(rows, row) for rows in lists) for lists in others):
                if len(chosen) == size:
                    return Page(chosen, row)
                chosen.append(row)
        return Page(chosen, None)

    def items(self, rows: Iterable[int]) -> bytes:
        """The JSON of these rows, comma-separated (the inside of a JSON array)."""
        return b"".join(self.item_pieces(rows))

    def item_pieces(self, rows: Iterable[int]) -> list[bytes]:
        """`items` in pieces, for a page to join once with its own parts."""
        owns = self._owns
        (first, first_of), (second, second_of), (third, third_of) = (
            (part._values, part._of) for part in self._parts
        )
        pieces: list[bytes] = []
        for row in rows:
            pieces += (
                owns[row],
                first[first_of[row]],
                second[second_of[row]],
                third[third_of[row]],
                b"},",
            )
        if pieces:
            pieces[-1] = b"}"
        return pieces

    def _constraints(self, query: ComplianceFilter) -> list[list[array[int]]] | None:
        """The posting lists each condition allows (any of a condition's, all conditions);
        None when a condition matches no row at all."""
        wanted: list[tuple[str, Iterable[str]]] = [
            ("state", (s.value for s in query.states)),
            ("subscription", (s.casefold() for s in query.subscriptions)),
            ("resource_group", (g.casefold() for g in query.resource_groups)),
            ("os", (o.value for o in query.os)),
            ("ring", query.rings),
            ("reason", query.reasons),
        ]
        wanted.extend(("tag", (f"{key}\x00{value}",)) for key, value in query.tags)
        if query.eligible is not None:
            wanted.append(("eligible", ("true" if query.eligible else "false",)))
        constraints: list[list[array[int]]] = []
        for name, values in wanted:
            given = list(values)
            if not given:
                continue
            lists = [rows for v in given if (rows := self._postings.get(name, v)) is not None]
            if not lists:
                return None
            constraints.append(lists)
        return constraints

    # -- what the summary shows -------------------------------------------------------------

    def snapshot_json(self) -> dict[str, Any] | None:
        """Which sweep this is: `{"run_id", "taken_at"}` (None before any sweep)."""
        if self.info is None:
            return None
        return {"run_id": self.info.run_id, "taken_at": iso(self.info.taken_at)}

    @cached_property
    def snapshot_bytes(self) -> bytes:
        """`snapshot_json` as JSON, made once (every page repeats it)."""
        return _dumps(self.snapshot_json())


def _merged(lists: list[array[int]], start: int) -> Iterator[int]:
    if len(lists) == 1:
        yield from _from(lists[0], start)
        return
    last = -1
    for row in heapq.merge(*(_from(rows, start) for rows in lists)):
        if row != last:  # a row with two of the reasons asked for is one row
            yield row
            last = row


def build_index(store: Store) -> SnapshotIndex:
    """The latest snapshot's index. The pointer is read before and after: a sweep that
    committed meanwhile may have served some pages, so the index is read again."""
    for _ in range(BUILD_ATTEMPTS):
        info = store.latest_snapshot()
        if info is None:
            return SnapshotIndex(None)
        try:
            index = SnapshotIndex.of_rows(info, every_row(store), store.trend(TREND_LIMIT))
        except StoreError:
            continue  # a token of the snapshot that was replaced while it was read
        after = store.latest_snapshot()
        if after is not None and after.run_id == info.run_id:
            return index
    raise StoreError("the latest snapshot kept changing while it was read; try again")


def every_row(store: Store) -> Iterator[VerdictRow]:
    """Every row of the store's latest snapshot, read a page at a time."""
    continuation: str | None = None
    while True:
        page = store.latest_verdicts(page_size=BUILD_PAGE, continuation=continuation)
        yield from page.rows
        continuation = page.continuation
        if continuation is None:
            return


class LatestIndex:
    """The index of the store's latest snapshot, rebuilt when the pointer moves.

    The pointer is read at most every `refresh_seconds` (0: on every request). A request that
    finds a check or a rebuild under way is answered from the index it replaces; only the first
    request of a process waits for an index. Rebuilds run in a worker thread.
    """

    def __init__(
        self,
        store: Store,
        *,
        refresh_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._refresh = refresh_seconds
        self._monotonic = monotonic
        self._index: SnapshotIndex | None = None
        self._checked = 0.0
        self._lock: asyncio.Lock | None = None

    @property
    def loaded(self) -> SnapshotIndex | None:
        """The index as it stands, without asking the store (None: not read yet)."""
        return self._index

    async def current(self, *, fresh: bool = False) -> SnapshotIndex:
        """The index to answer from; `fresh`: look at the pointer now, whenever it was last
        looked at (a token from a sweep this instance has not seen yet)."""
        index = self._index
        if index is not None and not fresh and self._monotonic() - self._checked < self._refresh:
            return index
        if self._lock is None:
            self._lock = asyncio.Lock()  # made on the loop that serves (not at import)
        if index is not None and not fresh and self._lock.locked():
            return index
        async with self._lock:
            index = self._index
            if (
                index is not None
                and not fresh
                and self._monotonic() - self._checked < self._refresh
            ):
                return index
            info = await run_in_threadpool(self._store.latest_snapshot)
            if index is None or _run_id(info) != index.run_id:
                index = await run_in_threadpool(build_index, self._store)
                self._index = index
            self._checked = self._monotonic()
            return index


def _run_id(info: SnapshotInfo | None) -> str | None:
    return None if info is None else info.run_id
