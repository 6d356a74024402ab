"""The store's contract: one suite, run against the in-memory fake, the embedded store (SQLite
and files) and the Azure store talking to Azurite."""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hotpatch.core.models import Action, OsFamily, Reason, State
from hotpatch.errors import LeaseHeldError, StoreConflictError, StoreError
from hotpatch.ports.store import (
    DEFAULT_RETENTION,
    JournalRecord,
    JournalStatus,
    KbBlock,
    RingState,
    RingStatus,
    RunKind,
    RunRecord,
    Store,
    StoredCatalog,
    VerdictQuery,
    VerdictRow,
    operation_key,
)
from hotpatch.store.embedded import EmbeddedStore
from hotpatch.store.memory import MemoryStore
from tests.integration.azurite import azurite_connection_string

__all__ = ["azurite_connection_string"]

T0 = datetime(2026, 5, 19, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SUBSCRIPTIONS = ("11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222")
#: A small chunk size, so that a few dozen rows already span several chunks.
CHUNK_ROWS = 7

#: Opens a handle on one store (the same one each call): (retention) -> Store.
Opener = Callable[[timedelta], Store]


@pytest.fixture(params=["memory", "embedded", "azure"])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    opened: list[Store] = []
    kind = request.param
    if kind == "memory":
        shared: dict[timedelta, MemoryStore] = {}

        def opener(retention: timedelta) -> Store:
            return shared.setdefault(
                retention, MemoryStore(retention=retention, chunk_rows=CHUNK_ROWS)
            )

    elif kind == "embedded":

        def opener(retention: timedelta) -> Store:
            store = EmbeddedStore(tmp_path / "store.db", retention=retention, chunk_rows=CHUNK_ROWS)
            opened.append(store)
            return store

    else:
        from hotpatch.store.azure import AzureStore

        connection = request.getfixturevalue("azurite_connection_string")
        prefix = "t" + secrets.token_hex(6)  # each test its own container and tables

        def opener(retention: timedelta) -> Store:
            store = AzureStore.from_connection_string(
                connection, prefix=prefix, retention=retention, chunk_rows=CHUNK_ROWS
            )
            opened.append(store)
            return store

    yield opener
    for store in opened:
        store.close()


@pytest.fixture
def store(open_store: Opener) -> Store:
    return open_store(DEFAULT_RETENTION)


def machine(number: int, state: State = State.COMPLIANT, **changes: object) -> VerdictRow:
    """Machine `number` of a small estate: subscriptions, groups, OS and rings vary with it."""
    subscription = SUBSCRIPTIONS[number % 2]
    group = f"rg-{number % 3}"
    fields: dict[str, object] = {
        "id": f"/subscriptions/{subscription}/resourceGroups/{group}/providers/"
        f"Microsoft.Compute/virtualMachines/vm-{number:04d}",
        "name": f"vm-{number:04d}",
        "subscription": subscription,
        "resource_group": group,
        "os": (OsFamily.WS2022, OsFamily.WS2025, None)[number % 3],
        "ring": (None, "ring0", "ring1", "ring2")[number % 4],
        "tags": {"env": ("prod", "test")[number % 2], "team": f"t{number % 5}"},
        "state": state,
        "action": Action.NONE if state is State.COMPLIANT else Action.INVESTIGATE,
        "eligible": number % 7 != 0,
        "reasons": () if state is State.COMPLIANT else (Reason(state.value, f"is {state}"),),
        "build": "10.0.26100.32313",
        "release_month": "2026-05",
        "last_assessed": T0 - timedelta(hours=number % 48),
        "next_restart": T0 + timedelta(days=30) if number % 2 else None,
    }
    fields.update(changes)
    return VerdictRow(**fields)  # type: ignore[arg-type]


def estate(size: int, states: dict[int, State] | None = None) -> list[VerdictRow]:
    chosen = states or {}
    cycle = tuple(State)
    return [machine(n, chosen.get(n, cycle[n % len(cycle)])) for n in range(size)]


def snapshot(store: Store, run_id: str, rows: list[VerdictRow], at: datetime = T0) -> None:
    writer = store.begin_snapshot(run_id, at)
    for start in range(0, len(rows), 10):  # as a sweep streams pages
        writer.add(rows[start : start + 10])
    writer.commit()


def every_page(store: Store, query: VerdictQuery, page_size: int) -> list[VerdictRow]:
    rows: list[VerdictRow] = []
    page = store.latest_verdicts(query, page_size=page_size)
    rows.extend(page.rows)
    while page.continuation is not None:
        assert len(page.rows) == page_size  # only a full page promises more
        page = store.latest_verdicts(query, page_size=page_size, continuation=page.continuation)
        rows.extend(page.rows)
    return rows


# ---------------------------------------------------------------------------------------------
# Snapshots
# ---------------------------------------------------------------------------------------------


def test_an_empty_store_has_no_latest_snapshot_and_lists_nothing(store: Store) -> None:
    assert store.latest_snapshot() is None
    page = store.latest_verdicts()
    assert page.rows == ()
    assert page.continuation is None
    assert store.verdict(machine(1).id) is None
    assert store.trend() == []


def test_a_committed_snapshot_becomes_latest_and_gives_back_every_row_as_written(
    store: Store,
) -> None:
    rows = estate(40)
    snapshot(store, "run-1", rows)
    latest = store.latest_snapshot()
    assert latest is not None
    assert latest.run_id == "run-1"
    assert every_page(store, VerdictQuery(), page_size=1000) == rows


@pytest.mark.parametrize("page_size", [1, 3, 7, 8, 39, 40, 41])
def test_pages_follow_the_continuation_token_to_the_end_once_each(
    store: Store, page_size: int
) -> None:
    rows = estate(40)
    snapshot(store, "run-1", rows)
    assert every_page(store, VerdictQuery(), page_size) == rows


QUERIES: list[tuple[str, VerdictQuery, Callable[[VerdictRow], bool]]] = [
    ("state", VerdictQuery(states=frozenset({State.COMPLIANT})), lambda r: r.state == "compliant"),
    (
        "two states",
        VerdictQuery(states=frozenset({State.PENDING, State.UNKNOWN})),
        lambda r: r.state in ("pending", "unknown"),
    ),
    (
        "subscription, in another case",
        VerdictQuery(subscriptions=frozenset({SUBSCRIPTIONS[1].upper()})),
        lambda r: r.subscription == SUBSCRIPTIONS[1],
    ),
    (
        "resource group, in another case",
        VerdictQuery(resource_groups=frozenset({"RG-2"})),
        lambda r: r.resource_group == "rg-2",
    ),
    ("os", VerdictQuery(os=frozenset({OsFamily.WS2025})), lambda r: r.os == "ws2025"),
    ("ring", VerdictQuery(rings=frozenset({"ring1"})), lambda r: r.ring == "ring1"),
    ("tag", VerdictQuery(tags=(("env", "prod"),)), lambda r: r.tags["env"] == "prod"),
    (
        "two tags",
        VerdictQuery(tags=(("env", "test"), ("team", "t3"))),
        lambda r: r.tags["env"] == "test" and r.tags["team"] == "t3",
    ),
    ("eligible", VerdictQuery(eligible=True), lambda r: r.eligible),
    ("not eligible", VerdictQuery(eligible=False), lambda r: not r.eligible),
    (
        "state and ring and eligible",
        VerdictQuery(
            states=frozenset({State.COMPLIANT}), rings=frozenset({"ring2"}), eligible=True
        ),
        lambda r: r.state == "compliant" and r.ring == "ring2" and r.eligible,
    ),
    ("a tag no machine has", VerdictQuery(tags=(("env", "none"),)), lambda r: False),
]


@pytest.mark.parametrize(("query", "wanted"), [q[1:] for q in QUERIES], ids=[q[0] for q in QUERIES])
def test_the_latest_verdicts_are_filtered_by_each_field_across_pages(
    store: Store, query: VerdictQuery, wanted: Callable[[VerdictRow], bool]
) -> None:
    rows = estate(60)
    snapshot(store, "run-1", rows)
    expected = [row for row in rows if wanted(row)]
    assert every_page(store, query, page_size=4) == expected
    if query != VerdictQuery(tags=(("env", "none"),)):
        assert expected, "a filter case that matches nothing proves little"


def test_one_machine_s_verdict_is_found_whatever_the_case_of_its_id(store: Store) -> None:
    rows = estate(20)
    snapshot(store, "run-1", rows)
    assert store.verdict(rows[13].id.upper()) == rows[13]
    assert store.verdict(rows[0].id.replace("vm-0000", "vm-9999")) is None
    changed = [machine(n, State.REBOOT_PENDING) for n in range(20)]
    snapshot(store, "run-2", changed, T0 + timedelta(days=1))
    assert store.verdict(rows[13].id) == changed[13]  # the newer snapshot's, not a cached one


def test_a_snapshot_never_committed_leaves_latest_where_it_was(store: Store) -> None:
    first = estate(10)
    snapshot(store, "run-1", first)
    crashed = store.begin_snapshot("run-2", T0 + timedelta(days=1))
    crashed.add(estate(30, {n: State.NON_COMPLIANT for n in range(30)}))
    del crashed  # the sweep died: no commit, no abort
    latest = store.latest_snapshot()
    assert latest is not None
    assert latest.run_id == "run-1"
    assert every_page(store, VerdictQuery(), 100) == first
    assert all(len(store.history(row.id)) == 1 for row in first)  # only their first sighting
    snapshot(store, "run-3", first, T0 + timedelta(days=2))  # and the next sweep commits


def test_an_aborted_snapshot_is_not_latest_and_cannot_be_committed(store: Store) -> None:
    snapshot(store, "run-1", estate(10))
    writer = store.begin_snapshot("run-2", T0)
    writer.add(estate(5))
    writer.abort()
    with pytest.raises(StoreError):
        writer.commit()
    latest = store.latest_snapshot()
    assert latest is not None
    assert latest.run_id == "run-1"


def test_a_snapshot_committed_after_another_became_latest_is_refused(
    open_store: Opener,
) -> None:
    one, two = open_store(DEFAULT_RETENTION), open_store(DEFAULT_RETENTION)
    slow = one.begin_snapshot("run-slow", T0)
    slow.add(estate(10))
    snapshot(two, "run-fast", estate(12), T0 + timedelta(minutes=1))
    with pytest.raises(StoreConflictError):
        slow.commit()
    latest = one.latest_snapshot()
    assert latest is not None
    assert latest.run_id == "run-fast"


def test_a_machine_listed_twice_in_one_sweep_is_kept_once(store: Store) -> None:
    rows = estate(5)
    snapshot(store, "run-1", [*rows, rows[2]])
    assert every_page(store, VerdictQuery(), 100) == rows


def test_counts_add_up_by_state_subscription_os_and_ring(store: Store) -> None:
    rows = estate(50)
    snapshot(store, "run-1", rows)
    latest = store.latest_snapshot()
    assert latest is not None
    counts = latest.counts
    assert counts.machines == len(rows)
    assert counts.eligible == sum(row.eligible for row in rows)
    assert counts.by_state == Counter(row.state.value for row in rows)
    assert counts.by_subscription == Counter(row.subscription for row in rows)
    assert counts.by_os == Counter(row.os.value if row.os else "" for row in rows)
    assert counts.by_ring == Counter(row.ring or "" for row in rows)


def test_the_trend_lists_each_committed_snapshot_s_counts_oldest_first(store: Store) -> None:
    sizes = [10, 14, 9]
    for day, size in enumerate(sizes):
        snapshot(store, f"run-{day}", estate(size), T0 + timedelta(days=day))
    trend = store.trend()
    assert [info.run_id for info in trend] == ["run-0", "run-1", "run-2"]
    assert [info.counts.machines for info in trend] == sizes
    assert [info.run_id for info in store.trend(limit=2)] == ["run-1", "run-2"]


def test_a_token_of_a_replaced_snapshot_or_a_forged_one_is_refused(store: Store) -> None:
    snapshot(store, "run-1", estate(20))
    token = store.latest_verdicts(page_size=5).continuation
    assert token is not None
    snapshot(store, "run-2", estate(20), T0 + timedelta(days=1))
    with pytest.raises(StoreError, match="older snapshot"):
        store.latest_verdicts(page_size=5, continuation=token)
    with pytest.raises(StoreError):
        store.latest_verdicts(page_size=5, continuation="not-a-token")


# ---------------------------------------------------------------------------------------------
# History
# ---------------------------------------------------------------------------------------------


def test_history_holds_what_changed_not_every_sweep(store: Store) -> None:
    steady = {n: State.COMPLIANT for n in range(6)}
    snapshot(store, "run-1", estate(6, steady), T0)
    snapshot(store, "run-2", estate(6, steady), T0 + timedelta(days=1))
    changed = {**steady, 2: State.NON_COMPLIANT}
    snapshot(store, "run-3", estate(6, changed), T0 + timedelta(days=2))
    snapshot(store, "run-4", estate(5, changed), T0 + timedelta(days=3))  # machine 5 gone

    quiet = store.history(machine(0).id)
    assert [(t.from_state, t.to_state, t.run_id) for t in quiet] == [
        (None, State.COMPLIANT, "run-1")
    ]
    moved = store.history(machine(2).id.upper())
    assert [(t.from_state, t.to_state, t.run_id) for t in moved] == [
        (None, State.COMPLIANT, "run-1"),
        (State.COMPLIANT, State.NON_COMPLIANT, "run-3"),
    ]
    assert moved[1].at == T0 + timedelta(days=2)
    assert moved[1].reasons == ("non_compliant",)
    gone = store.history(machine(5).id)
    assert [(t.from_state, t.to_state) for t in gone] == [
        (None, State.COMPLIANT),
        (State.COMPLIANT, None),
    ]


def test_a_run_s_transitions_are_those_its_snapshot_recorded_and_no_other(store: Store) -> None:
    steady = {n: State.COMPLIANT for n in range(6)}
    snapshot(store, "run-1", estate(6, steady), T0)
    snapshot(store, "run-2", estate(6, steady), T0 + timedelta(days=1))
    snapshot(store, "run-3", estate(5, {**steady, 2: State.NON_COMPLIANT}), T0 + timedelta(days=2))

    assert len(store.transitions("run-1")) == 6
    assert store.transitions("run-2") == []
    moved = sorted(
        ((t.machine_id, t.from_state, t.to_state) for t in store.transitions("run-3")),
        key=str,
    )
    assert moved == sorted(
        [
            (machine(2).id, State.COMPLIANT, State.NON_COMPLIANT),
            (machine(5).id, State.COMPLIANT, None),
        ],
        key=str,
    )
    assert store.transitions("run-never") == []


def test_a_stored_catalog_is_kept_by_name_and_replaced_whole(store: Store) -> None:
    assert store.catalog("releases") is None
    first = StoredCatalog(
        name="releases",
        document={"releases": [{"os": "ws2025", "kb": "KB5000001"}], "covers_through": "2026-05"},
        source="https://example.test/page",
        refreshed_at=T0,
    )
    store.save_catalog(first)
    assert store.catalog("releases") == first
    second = first.model_copy(update={"document": {"releases": []}, "refreshed_at": T0 + DAY})
    store.save_catalog(second)
    assert store.catalog("releases") == second
    assert store.catalog("images") is None


def test_transitions_older_than_the_retention_are_dropped(open_store: Opener) -> None:
    store = open_store(timedelta(days=30))
    snapshot(store, "run-1", estate(3, {n: State.PENDING for n in range(3)}), T0)
    snapshot(
        store, "run-2", estate(3, {n: State.COMPLIANT for n in range(3)}), T0 + timedelta(days=20)
    )
    assert len(store.history(machine(1).id)) == 2
    snapshot(
        store, "run-3", estate(3, {n: State.PENDING for n in range(3)}), T0 + timedelta(days=45)
    )
    assert [t.run_id for t in store.history(machine(1).id)] == ["run-2", "run-3"]


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------


def test_runs_are_kept_updated_and_listed_newest_first(store: Store) -> None:
    sweep = RunRecord(id="r1", kind=RunKind.SWEEP, who="alice", started_at=T0, scope="tenant")
    plan = RunRecord(id="r2", kind=RunKind.PLAN, who="bob", started_at=T0 + timedelta(hours=1))
    store.save_run(sweep)
    store.save_run(plan)
    finished = sweep.model_copy(
        update={
            "finished_at": T0 + timedelta(minutes=5),
            "figures": {"machines": 40, "by_state": {"compliant": 30}},
            "outcome": "succeeded",
        }
    )
    store.save_run(finished)
    assert store.run("r1") == finished
    assert store.run("nope") is None
    assert [r.id for r in store.runs()] == ["r2", "r1"]
    assert [r.id for r in store.runs(RunKind.SWEEP)] == ["r1"]
    assert [r.id for r in store.runs(limit=1)] == ["r2"]


def test_a_run_record_with_thousands_of_decisions_is_kept_whole(store: Store) -> None:
    decisions = [
        {"machine": machine(n).id, "action": "install_hotpatch", "reason": "ring0 in its window"}
        for n in range(2000)
    ]
    plan = RunRecord(
        id="plan-1",
        kind=RunKind.PLAN,
        who="carol",
        started_at=T0,
        figures={"decisions": decisions},
    )
    store.save_run(plan)
    assert store.run("plan-1") == plan
    assert store.runs(RunKind.PLAN) == [plan]


# ---------------------------------------------------------------------------------------------
# Journal
# ---------------------------------------------------------------------------------------------


def started(number: int, action: str = "install_hotpatch") -> JournalRecord:
    return JournalRecord.start(
        machine(number).id,
        "2026-05",
        action,
        client_request_id=f"req-{number}",
        now=T0,
        run_id="run-1",
    )


def test_an_operation_is_journalled_then_updated_through_its_version(store: Store) -> None:
    record = store.journal_start(started(1))
    assert record.version
    assert store.journal_get(record.key) == record
    accepted = store.journal_update(
        record.model_copy(
            update={
                "status": JournalStatus.ACCEPTED,
                "operation_url": "https://management.azure.com/op/1",
                "updated_at": T0 + timedelta(seconds=2),
            }
        )
    )
    assert accepted.version != record.version
    assert store.journal_get(record.key) == accepted
    with pytest.raises(StoreConflictError):  # a writer that read the first version is too late
        store.journal_update(record.model_copy(update={"status": JournalStatus.FAILED}))
    assert store.journal_get(record.key) == accepted


def test_the_key_is_machine_release_and_action_and_is_journalled_once(store: Store) -> None:
    record = started(1)
    assert record.key == operation_key(machine(1).id.upper(), "2026-05", "install_hotpatch")
    store.journal_start(record)
    with pytest.raises(StoreConflictError):
        store.journal_start(record.model_copy(update={"client_request_id": "another"}))
    assert store.journal_get(record.key) is not None
    assert store.journal_get(operation_key(machine(2).id, "2026-05", "assess")) is None


def test_the_journal_lists_by_status_and_by_machine(store: Store) -> None:
    for number in range(4):
        store.journal_start(started(number))
    store.journal_start(started(1, "assess"))
    one = store.journal_get(started(0).key)
    assert one is not None
    store.journal_update(one.model_copy(update={"status": JournalStatus.SUCCEEDED}))
    assert {r.key for r in store.journal(status=JournalStatus.STARTED)} == {
        started(n).key for n in (1, 2, 3)
    } | {started(1, "assess").key}
    assert {r.action for r in store.journal(machine_id=machine(1).id.upper())} == {
        "install_hotpatch",
        "assess",
    }
    assert len(store.journal()) == 5


def test_of_two_writers_starting_the_same_operation_exactly_one_wins(open_store: Opener) -> None:
    handles = [open_store(DEFAULT_RETENTION) for _ in range(2)]
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def start(store: Store, request: str) -> None:
        barrier.wait()
        try:
            store.journal_start(started(7).model_copy(update={"client_request_id": request}))
            outcomes.append("won")
        except StoreConflictError:
            outcomes.append("conflict")

    threads = [
        threading.Thread(target=start, args=(handle, f"req-{index}"))
        for index, handle in enumerate(handles)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["conflict", "won"]


# ---------------------------------------------------------------------------------------------
# Rollout state and leases
# ---------------------------------------------------------------------------------------------


def test_ring_state_is_kept_per_ring_and_release(store: Store) -> None:
    soaking = RingState(
        ring="ring0",
        release="2026-05",
        status=RingStatus.SOAKING,
        kbs=("KB5058411",),
        started_at=T0,
        soak_ends=T0 + timedelta(days=2),
        machines=10,
        failures=1,
        updated_at=T0,
    )
    store.save_ring_state(soaking)
    store.save_ring_state(
        soaking.model_copy(update={"ring": "ring1", "status": RingStatus.WAITING})
    )
    store.save_ring_state(soaking.model_copy(update={"release": "2026-04"}))
    promoted = soaking.model_copy(update={"status": RingStatus.PROMOTED})
    store.save_ring_state(promoted)
    assert store.ring_state("ring0", "2026-05") == promoted
    assert store.ring_state("ring2", "2026-05") is None
    assert [(s.ring, s.release) for s in store.ring_states("2026-05")] == [
        ("ring0", "2026-05"),
        ("ring1", "2026-05"),
    ]
    assert len(store.ring_states()) == 3


def test_kb_blocks_are_kept_replaced_and_lifted(store: Store) -> None:
    block = KbBlock(kb="KB5062557", reason="breaks clusters", expires=T0 + timedelta(days=30))
    store.block_kb(block)
    store.block_kb(KbBlock(kb="KB5058411", reason="testing"))
    longer = block.model_copy(update={"expires": T0 + timedelta(days=60)})
    store.block_kb(longer)
    assert store.kb_blocks() == [KbBlock(kb="KB5058411", reason="testing"), longer]
    store.unblock_kb("KB5058411")
    assert store.kb_blocks() == [longer]


def test_a_lease_held_by_one_holder_is_not_taken_by_another_until_it_expires(
    open_store: Opener,
) -> None:
    one, two = open_store(DEFAULT_RETENTION), open_store(DEFAULT_RETENTION)
    ttl = timedelta(minutes=5)
    lease = one.acquire_lease("sweep", "host-a", now=T0, ttl=ttl)
    with pytest.raises(LeaseHeldError, match="host-a"):
        two.acquire_lease("sweep", "host-b", now=T0 + timedelta(minutes=4), ttl=ttl)
    renewed = one.acquire_lease("sweep", "host-a", now=T0 + timedelta(minutes=4), ttl=ttl)
    assert renewed.expires == T0 + timedelta(minutes=9)
    with pytest.raises(LeaseHeldError):
        two.acquire_lease("sweep", "host-b", now=T0 + timedelta(minutes=8), ttl=ttl)
    taken = two.acquire_lease("sweep", "host-b", now=T0 + timedelta(minutes=9), ttl=ttl)
    assert taken.holder == "host-b"
    one.release_lease(lease)  # no longer its lease: nothing happens
    with pytest.raises(LeaseHeldError):
        one.acquire_lease("sweep", "host-a", now=T0 + timedelta(minutes=10), ttl=ttl)
    two.release_lease(taken)
    assert one.acquire_lease("sweep", "host-a", now=T0 + timedelta(minutes=10), ttl=ttl)
