"""A generated estate goes into the sandbox's tables and comes back out row for row."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from hotpatch.data import shipped_release_catalog
from hotpatch.sandbox.estate import Estate, EstateSpec, generate_estate
from hotpatch.sandbox.graph import COLUMN_NAMES, TABLES
from hotpatch.sandbox.server import Sandbox
from tests.integration.conftest import FEBRUARY, StaticToken, numbered_vms

pytestmark = pytest.mark.sandbox

Start = Callable[..., Sandbox]


@pytest.fixture(scope="module")
def estate() -> Estate:
    return generate_estate(
        EstateSpec(machines=400, seed=3, as_of=FEBRUARY), shipped_release_catalog()
    )


def every_row(sandbox: Sandbox, table: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with ResourceGraphClient(
        StaticToken(), base_url=sandbox.base_url, connection_verify=str(sandbox.ca_path)
    ) as client:
        token = None
        while True:
            page = client.resources(
                QueryRequest(query=table, options=QueryRequestOptions(top=1000, skip_token=token))
            )
            rows.extend(page.data)
            token = page.skip_token
            if not token:
                return rows


def test_every_row_lands_in_its_table(start_sandbox: Start, estate: Estate) -> None:
    sandbox = start_sandbox()
    report = sandbox.load(estate)
    for table in TABLES:
        assert report.rows[table] == len(getattr(estate, table)) == sandbox.store.count(table)


@pytest.mark.parametrize("table", TABLES)
def test_rows_come_back_as_they_went_in_with_resource_graphs_columns(
    start_sandbox: Start, estate: Estate, table: str
) -> None:
    sandbox = start_sandbox(estate, graph_quota=None)
    returned = {row["id"]: row for row in every_row(sandbox, table)}
    loaded: list[dict[str, Any]] = getattr(estate, table)
    assert len(returned) == len(loaded)
    for row in loaded:
        back = returned[row["id"]]
        assert set(back) == set(COLUMN_NAMES)
        assert {key: back[key] for key in row} == row


def test_loading_again_replaces_the_rows(start_sandbox: Start, estate: Estate) -> None:
    sandbox = start_sandbox(estate, graph_quota=None)
    sandbox.load(numbered_vms(7))
    assert len(every_row(sandbox, "resources")) == 7
    assert every_row(sandbox, "patchassessmentresources") == []


def test_the_estates_machines_are_found_whatever_the_case_of_their_id(
    start_sandbox: Start, estate: Estate
) -> None:
    sandbox = start_sandbox(estate)
    machines = [m for m in estate.machine_ids() if "/virtualmachinescalesets/" not in m.lower()]
    found = [sandbox.store.machine(m.upper()) for m in machines]
    assert [f.id if f else None for f in found] == machines
