"""The inventory port: what to list (a scope), the pages of raw rows, and what listing cost.

No Azure SDK type crosses it, so this module imports none. The real adapter is
`hotpatch.azure.resource_graph.ResourceGraphInventory`; the fake is
`hotpatch.fakes.InMemoryInventory`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from hotpatch.core.models import as_utc
from hotpatch.core.resource_types import machine_id_of

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


# ---------------------------------------------------------------------------------------------
# Installations: what a machine's recent installs were, for reconciling the journal
# ---------------------------------------------------------------------------------------------

#: Azure's installation statuses that mean it has not ended yet.
_RUNNING = frozenset({"inprogress", "notstarted"})


@dataclass(frozen=True, slots=True)
class InstallationRecord:
    """One patch installation Resource Graph lists for a machine (`patchinstallationresources`).

    Azure lists an installation while it runs (status `InProgress`), so a caller that lost an
    operation's URL can still tell whether its request was accepted.
    """

    machine_id: str
    status: str
    started: datetime | None
    activity_id: str | None
    #: KBs it installed ("KB5075943"); empty while it runs.
    kbs: tuple[str, ...] = ()

    @property
    def running(self) -> bool:
        return self.status.casefold() in _RUNNING

    @property
    def succeeded(self) -> bool:
        return self.status.casefold() in {"succeeded", "completedwithwarnings"}


class InstallationHistory(Protocol):
    """The installations of the machines in a scope that started at or after an instant."""

    def installations_since(self, scope: Scope, since: datetime) -> list[InstallationRecord]: ...


def installation_records(rows: Iterable[RawRow], since: datetime) -> list[InstallationRecord]:
    """Raw `patchinstallationresources` rows (summaries and their software patches) -> the
    installations that started at or after `since`, with the KBs each installed."""
    summaries: dict[str, tuple[str, dict[str, Any]]] = {}
    installed: dict[str, list[str]] = {}
    for row in rows:
        row_id = str(row.get("id") or "")
        kind = str(row.get("type") or "").casefold()
        properties = row.get("properties")
        if not isinstance(properties, dict):
            continue
        if kind.endswith("/patchinstallationresults"):
            summaries[row_id.casefold()] = (row_id, properties)
        elif kind.endswith("/patchinstallationresults/softwarepatches"):
            parent = row_id.casefold().rsplit("/softwarepatches/", 1)[0]
            kb = str(properties.get("kbId") or "").strip().upper().removeprefix("KB")
            state = str(properties.get("installationState") or "").casefold()
            if kb.isdigit() and state == "installed":
                installed.setdefault(parent, []).append(f"KB{kb}")
    records: list[InstallationRecord] = []
    for key, (row_id, properties) in summaries.items():
        started = _instant(properties.get("startDateTime"))
        machine = machine_id_of(row_id)
        if machine is None or started is None or started < since:
            continue
        activity = properties.get("installationActivityId")
        records.append(
            InstallationRecord(
                machine_id=machine,
                status=str(properties.get("status") or "Unknown"),
                started=started,
                activity_id=str(activity) if activity else None,
                kbs=tuple(sorted(set(installed.get(key, ())))),
            )
        )
    return records


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except ValueError:
        return None
