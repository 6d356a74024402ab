"""The API's in-memory index lists what the store itself lists, for any filter and page size."""

from __future__ import annotations

import json
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from hotpatch.api.index import ComplianceFilter, SnapshotIndex, build_index
from hotpatch.core.models import OsFamily, State
from hotpatch.ports.store import VerdictQuery, VerdictRow
from hotpatch.report import verdict_row_json
from hotpatch.store.memory import MemoryStore
from tests.api.estate import ENVIRONMENTS, GROUPS, SUBSCRIPTIONS, fleet, store_snapshot

ROWS = fleet(600)
STORE = MemoryStore(chunk_rows=64)
store_snapshot(STORE, "run-index", ROWS)
INDEX = build_index(STORE)

filters = st.builds(
    ComplianceFilter,
    states=st.frozensets(st.sampled_from(list(State)), max_size=3),
    subscriptions=st.frozensets(
        st.sampled_from([*SUBSCRIPTIONS, SUBSCRIPTIONS[0].upper()]), max_size=2
    ),
    resource_groups=st.frozensets(st.sampled_from([*GROUPS, "RG-WEB", "rg-none"]), max_size=2),
    os=st.frozensets(st.sampled_from(list(OsFamily)), max_size=2),
    rings=st.frozensets(st.sampled_from(["ring0", "ring1", "ring2", "ring9"]), max_size=2),
    tags=st.lists(
        st.tuples(st.sampled_from(["env", "owner"]), st.sampled_from([*ENVIRONMENTS, "team-a"])),
        max_size=2,
    ).map(tuple),
    eligible=st.none() | st.booleans(),
)


def through_store(query: ComplianceFilter, size: int) -> list[VerdictRow]:
    asked = VerdictQuery(
        states=query.states,
        subscriptions=query.subscriptions,
        resource_groups=query.resource_groups,
        os=query.os,
        rings=query.rings,
        tags=query.tags,
        eligible=query.eligible,
    )
    found: list[VerdictRow] = []
    token: str | None = None
    while True:
        page = STORE.latest_verdicts(asked, page_size=size, continuation=token)
        found.extend(page.rows)
        token = page.continuation
        if token is None:
            return found


@settings(max_examples=200, deadline=None)
@given(query=filters, size=st.integers(1, 700))
def test_the_index_pages_through_exactly_the_rows_the_store_lists(
    query: ComplianceFilter, size: int
) -> None:
    expected = [row.id for row in through_store(query, size)]
    listed: list[str] = []
    start: int | None = 0
    while start is not None:
        page = INDEX.page(query, start, size)
        assert len(page.rows) <= size
        items = json.loads(b"[" + INDEX.items(page.rows) + b"]")
        assert len(items) == len(page.rows)
        listed.extend(item["id"] for item in items)
        start = page.next_row
    assert listed == expected


@given(
    codes=st.frozensets(
        st.sampled_from(["build_behind", "custom_image", "deallocated"]), min_size=1
    )
)
def test_a_reason_filter_lists_the_rows_holding_any_of_the_codes(codes: frozenset[str]) -> None:
    page = INDEX.page(ComplianceFilter(reasons=codes), 0, 1000)
    assert page.next_row is None
    assert [INDEX.document(row)["id"] for row in page.rows] == [
        row.id for row in ROWS if codes & {reason.code for reason in row.reasons}
    ]


def test_each_row_reads_back_as_the_report_shows_a_stored_verdict() -> None:
    for number in (0, 1, 299, 599):
        assert INDEX.document(number) == json.loads(json.dumps(verdict_row_json(ROWS[number])))


def test_a_machine_is_found_by_id_in_any_case_and_by_name() -> None:
    assert INDEX.find_id(ROWS[42].id.upper()) == 42
    assert INDEX.find_id(ROWS[42].id + "x") is None
    assert INDEX.find_name(ROWS[42].name.upper()) == [42]
    assert INDEX.find_name("nobody") == []


def test_an_empty_store_has_an_empty_index() -> None:
    index = build_index(MemoryStore())
    assert index.run_id is None
    assert index.page(ComplianceFilter(), 0, 10).rows == []
    assert len(SnapshotIndex(None)) == 0


def test_importing_the_api_loads_no_azure_module_and_no_server() -> None:
    probe = (
        "import sys, json, hotpatch.api\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('azure', 'uvicorn'))))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
