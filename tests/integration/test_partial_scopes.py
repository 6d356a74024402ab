"""Scopes that cannot be read are found as in Azure: by asking `resourcecontainers`.

Under `allowPartialScopes` Resource Graph answers for the readable subscriptions and names none
of the others; the adapter asks which of the requested subscriptions it can see and reports the
difference. The sandbox serves a subscription row per subscription of its estate, scoped like
every other table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests

from hotpatch.azure.credentials import StaticTokenCredential
from hotpatch.azure.resource_graph import ResourceGraphInventory, resource_graph_client
from hotpatch.errors import AzureAccessError
from hotpatch.ports.inventory import Scope
from hotpatch.sandbox.graph import SUBSCRIPTION_TYPE
from hotpatch.sandbox.server import Sandbox
from tests.integration.conftest import SUB_A, SUB_B, numbered_vms

pytestmark = pytest.mark.sandbox

Start = Callable[..., Sandbox]
STRANGER = "99999999-9999-9999-9999-999999999999"
SUB_C = "33333333-3333-3333-3333-333333333333"


def inventory(sandbox: Sandbox, **options: Any) -> ResourceGraphInventory:
    client = resource_graph_client(
        StaticTokenCredential("partial"),
        base_url=sandbox.base_url,
        connection_verify=str(sandbox.ca_path),
    )
    return ResourceGraphInventory(client, **options)


def graph(sandbox: Sandbox, body: dict[str, Any]) -> requests.Response:
    return requests.post(
        f"{sandbox.base_url}/providers/Microsoft.ResourceGraph/resources?api-version=2024-04-01",
        json=body,
        headers={"Authorization": "Bearer t"},
        verify=str(sandbox.ca_path),
        timeout=60,
    )


def test_the_sandbox_lists_a_subscription_row_for_each_subscription_of_its_estate(
    start_sandbox: Start,
) -> None:
    sandbox = start_sandbox(numbered_vms(6, (SUB_A, SUB_B, SUB_C)), graph_quota=None)
    rows = graph(sandbox, {"query": "resourcecontainers"}).json()["data"]
    assert sorted(row["subscriptionId"] for row in rows) == [SUB_A, SUB_B, SUB_C]
    for row in rows:
        assert row["id"] == f"/subscriptions/{row['subscriptionId']}"
        assert row["type"] == SUBSCRIPTION_TYPE
        assert row["properties"]["state"] == "Enabled"
        assert row["tenantId"] == "00000000-0000-0000-0000-0000000000aa"


def test_subscription_rows_are_scoped_like_every_table(start_sandbox: Start) -> None:
    sandbox = start_sandbox(
        numbered_vms(6, (SUB_A, SUB_B, SUB_C)),
        graph_quota=None,
        subscriptions=frozenset({SUB_A, SUB_C}),
    )
    answer = graph(
        sandbox,
        {
            "query": "resourcecontainers | project subscriptionId",
            "subscriptions": [SUB_A, SUB_B],
            "options": {"allowPartialScopes": True},
        },
    )
    assert answer.json()["data"] == [{"subscriptionId": SUB_A}]


def test_no_answer_names_the_scopes_it_left_out(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(4), graph_quota=None)
    answer = graph(
        sandbox,
        {
            "query": "Resources | project id",
            "subscriptions": [SUB_A, STRANGER],
            "options": {"allowPartialScopes": True},
        },
    )
    assert answer.status_code == 200
    assert STRANGER not in answer.text
    assert all(STRANGER not in value for value in answer.headers.values())
    assert not any(name.lower().startswith("x-ms-sandbox") for name in answer.headers)


def test_the_adapter_reports_the_requested_subscriptions_it_cannot_see(
    start_sandbox: Start,
) -> None:
    sandbox = start_sandbox(
        numbered_vms(6, (SUB_A, SUB_B, SUB_C)),
        graph_quota=None,
        subscriptions=frozenset({SUB_A, SUB_C}),
    )
    pager = inventory(sandbox).list_machines(Scope(subscriptions=(SUB_A, SUB_B, SUB_C, STRANGER)))
    rows = list(pager)
    assert pager.stats.skipped_scopes == [f"/subscriptions/{SUB_B}", f"/subscriptions/{STRANGER}"]
    assert {str(row["subscriptionId"]) for row in rows} == {SUB_A, SUB_C}


def test_a_subscription_spelled_in_another_case_is_the_same_subscription(
    start_sandbox: Start,
) -> None:
    sandbox = start_sandbox(numbered_vms(4), graph_quota=None)
    pager = inventory(sandbox).list_machines(Scope(subscriptions=(SUB_A.upper(), SUB_B)))
    assert len(list(pager)) == 4
    assert pager.stats.skipped_scopes == []


def test_a_fully_readable_scope_reports_nothing_skipped(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(4), graph_quota=None)
    pager = inventory(sandbox).list_machines(Scope(subscriptions=(SUB_A, SUB_B)))
    assert len(list(pager)) == 4
    assert pager.stats.skipped_scopes == []


def test_a_tenant_wide_scope_asks_nothing_more(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(4), graph_quota=None)
    pager = inventory(sandbox).list_machines(Scope())
    list(pager)
    assert pager.stats.skipped_scopes == []
    assert sandbox.counters().queries_evaluated == 1


def test_without_partial_scopes_an_unreadable_subscription_still_fails_the_query(
    start_sandbox: Start,
) -> None:
    sandbox = start_sandbox(numbered_vms(4), graph_quota=None)
    pager = inventory(sandbox, allow_partial_scopes=False).list_machines(
        Scope(subscriptions=(SUB_A, STRANGER))
    )
    with pytest.raises(AzureAccessError):
        list(pager)
