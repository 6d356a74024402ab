"""The inventory port: what to list (a scope), the pages of raw rows, and what listing cost.

No Azure SDK type crosses it, so this module imports none. The real adapter is
`hotpatch.azure.resource_graph.ResourceGraphInventory`; the fake is
`hotpatch.fakes.InMemoryInventory`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

#: One raw export row (docs/raw-export.md): a machine, or a patch summary that hangs under one.
RawRow = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Scope:
    """What to inventory: subscriptions, management groups, or (neither) the whole tenant."""

    subscriptions: tuple[str, ...] = ()
    management_groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.subscriptions and self.management_groups:
            raise ValueError("a scope is subscriptions or management groups, not both")

    def describe(self) -> str:
        if self.subscriptions:
            return f"{len(self.subscriptions)} subscription(s)"
        if self.management_groups:
            return "management group(s) " + ", ".join(self.management_groups)
        return "the tenant"


@dataclass(frozen=True, slots=True)
class InventoryProgress:
    pages: int
    rows: int
    total_records: int | None


@dataclass(slots=True)
class InventoryStats:
    """What listing an inventory cost: for the run summary and the benchmarks.

    Filled by the pager that owns it, as its pages are fetched; callers only read it.
    """

    pages: int = 0
    requests: int = 0
    rows: int = 0
    #: The source's count of query rows (machines and Flexible scale sets), when known.
    total_records: int | None = None
    retries: Counter[str] = field(default_factory=Counter)
    quota_waits: int = 0
    quota_wait_seconds: float = 0.0
    throttle_wait_seconds: float = 0.0
    #: Scopes asked for that could not be read (the sweep says so, and fails without
    #: `--allow-partial`).
    skipped_scopes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pages": self.pages,
            "requests": self.requests,
            "rows": self.rows,
            "retries": dict(self.retries),
            "quota_waits": self.quota_waits,
            "quota_wait_seconds": round(self.quota_wait_seconds, 3),
            "throttle_wait_seconds": round(self.throttle_wait_seconds, 3),
            "skipped_scopes": list(self.skipped_scopes),
        }

    def progress(self) -> InventoryProgress:
        return InventoryProgress(self.pages, self.rows, self.total_records)


#: Produces the pages of one listing, recording its cost in the stats it is given.
PageSource = Callable[[InventoryStats], Iterator[list[RawRow]]]


class InventoryPager:
    """One listing of an inventory: its pages, fetched lazily, and the statistics of the
    fetching so far. The shape of the Azure SDK's `ItemPaged`: iterating gives every row,
    `by_page()` gives the pages (each fetched when asked for). A pager is iterated once.
    """

    __slots__ = ("_pages", "stats")

    def __init__(self, source: PageSource) -> None:
        self.stats = InventoryStats()
        self._pages = source(self.stats)

    def by_page(self) -> Iterator[list[RawRow]]:
        """The pages, in order. A machine's rows (resource, assessment, installation) never
        straddle two pages, so a caller may judge each page as it arrives."""
        return self._pages

    def __iter__(self) -> Iterator[RawRow]:
        for page in self._pages:
            yield from page


class Inventory(Protocol):
    """Lists the machines of a scope, with their latest patch summaries, as raw export rows."""

    def list_machines(self, scope: Scope) -> InventoryPager:
        """A pager over the scope's rows; nothing is fetched until it is iterated."""
        ...


ProgressCallback = Callable[[InventoryProgress], None]


@dataclass(frozen=True, slots=True)
class InventorySnapshot:
    """Every machine in scope as raw export rows (docs/raw-export.md), and what it cost."""

    rows: list[RawRow]
    stats: InventoryStats


def read_inventory(
    inventory: Inventory, scope: Scope, on_progress: ProgressCallback | None = None
) -> InventorySnapshot:
    """Every page at once, for callers that want the whole estate in memory."""
    pager = inventory.list_machines(scope)
    rows: list[RawRow] = []
    for page in pager.by_page():
        rows.extend(page)
        if on_progress is not None:
            on_progress(pager.stats.progress())
    return InventorySnapshot(rows, pager.stats)
