"""A large table is read in parts, one per DuckDB thread; every answer is the whole table's.

DuckDB gives a thread one row group (122,880 rows) at a time, so the sandbox cuts a smaller
table into rowid ranges to let a query use all its threads. Nothing a query sees may change:
not its rows, not their order, not its scope, not rows written after the cuts were made.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from hotpatch.azure.resource_graph import inventory_query
from hotpatch.data import shipped_release_catalog
from hotpatch.sandbox.estate import Estate, EstateSpec, generate_estate
from hotpatch.sandbox.graph import GraphStore, WriteBatch
from hotpatch.sandbox.query_limits import QueryLimits

pytestmark = pytest.mark.sandbox

AS_OF = datetime(2026, 5, 19, 12, 0, tzinfo=UTC)
#: Enough rows that each part spans several of DuckDB's vectors (2048 rows).
MACHINES = 6000
ROWS_PER_PART = 1000

QUERIES = (
    pytest.param(inventory_query(), id="the inventory query, ordered, with its joins"),
    pytest.param("resources | project id, name", id="every row, in storage order"),
    pytest.param("resources | take 7 | project id", id="the first rows, unordered"),
    pytest.param(
        "patchinstallationresources | summarize installs = count() by subscriptionId "
        "| order by subscriptionId asc",
        id="an aggregate",
    ),
    pytest.param(
        "resources | where name endswith '7' | project id, properties.storageProfile.osDisk",
        id="a filter and a dynamic path",
    ),
)


def store_of(estate: Estate, *, threads: int) -> GraphStore:
    store = GraphStore(QueryLimits(threads=threads), min_rows_per_part=ROWS_PER_PART)
    store.load(estate)
    return store


@pytest.fixture(scope="module")
def estate() -> Estate:
    spec = EstateSpec(machines=MACHINES, seed=11, as_of=AS_OF)
    return generate_estate(spec, shipped_release_catalog())


@pytest.fixture(scope="module")
def whole(estate: Estate) -> Iterator[GraphStore]:
    store = store_of(estate, threads=1)
    yield store
    store.close()


@pytest.fixture(scope="module")
def in_parts(estate: Estate) -> Iterator[GraphStore]:
    store = store_of(estate, threads=2)
    yield store
    store.close()


def answer(store: GraphStore, kql: str, subscriptions: list[str] | None = None) -> list[str]:
    scope = subscriptions if subscriptions is not None else sorted(store.subscriptions())
    return store.query(kql, scope, table_format=False, now=AS_OF).rows


def test_a_large_table_is_read_in_one_part_per_thread(
    whole: GraphStore, in_parts: GraphStore
) -> None:
    assert in_parts.parts("resources") == 2
    assert whole.parts("resources") == 1


def test_a_table_too_small_to_share_is_read_whole(estate: Estate) -> None:
    store = GraphStore(QueryLimits(threads=2), min_rows_per_part=MACHINES)
    try:
        store.load(estate)
        assert store.parts("resources") == 1
    finally:
        store.close()


@pytest.mark.parametrize("kql", QUERIES)
def test_a_table_read_in_parts_answers_as_the_whole_table_does(
    whole: GraphStore, in_parts: GraphStore, kql: str
) -> None:
    expected = answer(whole, kql)

    assert expected
    assert answer(in_parts, kql) == expected


def test_a_table_read_in_parts_keeps_to_the_querys_scope(
    whole: GraphStore, in_parts: GraphStore
) -> None:
    one = sorted(whole.subscriptions())[:1]

    rows = answer(in_parts, "resources | project id, subscriptionId", one)

    assert {json.loads(row)["subscriptionId"].lower() for row in rows} == set(one)
    assert rows == answer(whole, "resources | project id, subscriptionId", one)


def test_rows_written_after_the_cuts_are_read_in_both_parts(estate: Estate) -> None:
    stores = [store_of(estate, threads=1), store_of(estate, threads=2)]
    first, last = estate.resources[0], estate.resources[-1]
    added = {**first, "id": f"{first['id']}-added", "name": "added"}
    batch = WriteBatch(deletes={"resources": [last["id"]]}, inserts={"resources": [added]})
    try:
        for store in stores:
            store.write(batch)
        whole_answer, parts_answer = (answer(s, "resources | project id") for s in stores)

        ids = [json.loads(row)["id"] for row in parts_answer]
        assert added["id"] in ids
        assert last["id"] not in ids
        assert parts_answer == whole_answer
    finally:
        for store in stores:
            store.close()
