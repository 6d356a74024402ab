"""Seeded trouble: server errors, 429 bursts, dropped connections and malformed rows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from hotpatch.sandbox.arm import Fault, FaultConfig, FaultInjector
from hotpatch.sandbox.server import Sandbox
from tests.integration.conftest import StaticToken, numbered_vms

pytestmark = pytest.mark.sandbox

Start = Callable[..., Sandbox]
MIXED = FaultConfig(
    seed=7, error_500_rate=0.1, error_503_rate=0.1, drop_rate=0.05, throttle_burst_rate=0.05
)


def post(sandbox: Sandbox, query: str = "Resources | project id") -> requests.Response:
    return requests.post(
        f"{sandbox.base_url}/providers/Microsoft.ResourceGraph/resources?api-version=2022-10-01",
        json={"query": query},
        headers={"Authorization": "Bearer t"},
        verify=str(sandbox.ca_path),
        timeout=30,
    )


def malformed_ids(sandbox: Sandbox, count: int) -> set[str]:
    """Ids of the rows whose properties came back different from the ones loaded."""
    loaded = {row["id"]: row["properties"] for row in numbered_vms(count).resources}
    with ResourceGraphClient(
        StaticToken(), base_url=sandbox.base_url, connection_verify=str(sandbox.ca_path)
    ) as client:
        page = client.resources(
            QueryRequest(
                query="Resources | project id, properties", options=QueryRequestOptions(top=1000)
            )
        )
    rows: list[dict[str, Any]] = page.data
    return {row["id"] for row in rows if row["properties"] != loaded[row["id"]]}


def test_the_same_seed_draws_the_same_faults() -> None:
    first = FaultInjector(MIXED)
    second = FaultInjector(MIXED)
    other = FaultInjector(replace(MIXED, seed=8))
    drawn = [first.draw() for _ in range(300)]
    assert drawn == [second.draw() for _ in range(300)]
    assert drawn != [other.draw() for _ in range(300)]
    assert {Fault.DROP, Fault.ERROR_500, Fault.ERROR_503, Fault.THROTTLE} <= set(drawn)


def test_a_throttle_burst_lasts_its_length() -> None:
    injector = FaultInjector(FaultConfig(seed=3, throttle_burst_rate=0.05, throttle_burst_length=4))
    drawn = [injector.draw() for _ in range(400)]
    start = drawn.index(Fault.THROTTLE)
    assert drawn[start : start + 4] == [Fault.THROTTLE] * 4


def test_no_faults_are_injected_by_default() -> None:
    injector = FaultInjector(FaultConfig())
    assert {injector.draw() for _ in range(1000)} == {None}
    assert not any(injector.row_is_malformed("result", index) for index in range(1000))


def test_an_injected_server_error_reaches_the_client(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(3), faults=FaultConfig(error_500_rate=1.0))
    with (
        ResourceGraphClient(
            StaticToken(),
            base_url=sandbox.base_url,
            connection_verify=str(sandbox.ca_path),
            retry_total=0,
        ) as client,
        pytest.raises(HttpResponseError) as failed,
    ):
        client.resources(QueryRequest(query="Resources | project id"))
    assert failed.value.status_code == 500
    assert sandbox.counters().faults == {"error_500": 1}


def test_an_injected_503_asks_the_client_to_come_back(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(3), faults=FaultConfig(error_503_rate=1.0))
    answer = post(sandbox)
    assert answer.status_code == 503
    assert answer.headers["Retry-After"] == "1"


def test_an_injected_throttle_looks_like_resource_graphs(start_sandbox: Start) -> None:
    sandbox = start_sandbox(
        numbered_vms(3), faults=FaultConfig(throttle_burst_rate=1.0, throttle_retry_after_seconds=2)
    )
    answer = post(sandbox)
    assert answer.status_code == 429
    assert answer.headers["Retry-After"] == "2"
    assert answer.json()["error"]["code"] == "RateLimiting"
    assert sandbox.counters().throttled == 1


def test_a_dropped_connection_gets_no_answer_at_all(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(3), faults=FaultConfig(drop_rate=1.0))
    with pytest.raises(requests.ConnectionError):
        post(sandbox)
    assert sandbox.counters().faults == {"drop": 1}


def test_malformed_rows_are_the_same_for_the_same_seed(start_sandbox: Start) -> None:
    faults = FaultConfig(seed=5, malformed_row_rate=0.3)
    first = malformed_ids(start_sandbox(numbered_vms(200), graph_quota=None, faults=faults), 200)
    second = malformed_ids(start_sandbox(numbered_vms(200), graph_quota=None, faults=faults), 200)
    assert first == second
    assert 0 < len(first) < 200


def test_rows_are_intact_without_the_fault(start_sandbox: Start) -> None:
    assert malformed_ids(start_sandbox(numbered_vms(50), graph_quota=None), 50) == set()
