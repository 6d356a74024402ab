"""The real ResourceGraphClient against the sandbox: paging, quota, auth, errors and scopes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions, QueryResponse

from hotpatch.sandbox.arm import Quota
from hotpatch.sandbox.server import Sandbox
from tests.integration.conftest import (
    SUB_A,
    SUB_B,
    ManualClock,
    StaticToken,
    numbered_vms,
)

pytestmark = pytest.mark.sandbox

Start = Callable[..., Sandbox]
ALL_VMS = "Resources | where type =~ 'microsoft.compute/virtualmachines' | project id, name"


def graph_client(sandbox: Sandbox, **kwargs: Any) -> ResourceGraphClient:
    return ResourceGraphClient(
        StaticToken(),
        base_url=sandbox.base_url,
        connection_verify=str(sandbox.ca_path),
        **kwargs,
    )


def ask(
    client: ResourceGraphClient, query: str, headers: list[Any] | None = None, **options: Any
) -> QueryResponse:
    scopes = {k: options.pop(k) for k in ("subscriptions", "management_groups") if k in options}
    request = QueryRequest(query=query, options=QueryRequestOptions(**options), **scopes)
    if headers is None:
        return client.resources(request)
    return client.resources(
        request, raw_response_hook=lambda response: headers.append(response.http_response.headers)
    )


def post_raw(sandbox: Sandbox, body: Any, *, token: str | None = "t", api: str = "2024-04-01"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.post(
        f"{sandbox.base_url}/providers/Microsoft.ResourceGraph/resources?api-version={api}",
        json=body,
        headers=headers,
        verify=str(sandbox.ca_path),
        timeout=30,
    )


def test_the_real_client_pages_through_every_row_with_skip_tokens(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(250), graph_quota=None)
    seen: list[str] = []
    counts: list[int] = []
    with graph_client(sandbox) as client:
        page = ask(client, ALL_VMS, top=100)
        while True:
            assert page.total_records == 250
            counts.append(page.count)
            seen.extend(row["id"] for row in page.data)
            if not page.skip_token:
                break
            page = ask(client, ALL_VMS, skip_token=page.skip_token)
    assert counts == [100, 100, 50]
    assert len(set(seen)) == 250


def test_a_query_is_evaluated_once_for_all_its_pages(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(30), graph_quota=None)
    with graph_client(sandbox) as client:
        page = ask(client, ALL_VMS, top=10)
        while page.skip_token:
            page = ask(client, ALL_VMS, skip_token=page.skip_token)
    assert sandbox.counters().requests["graph.query"] == 3
    assert sandbox.counters().queries_evaluated == 1


def test_following_pages_come_from_the_snapshot_the_first_page_was_cut_from(
    start_sandbox: Start,
) -> None:
    sandbox = start_sandbox(numbered_vms(30), graph_quota=None)
    with graph_client(sandbox) as client:
        first = ask(client, ALL_VMS, top=10)
        sandbox.load(numbered_vms(5))
        second = ask(client, ALL_VMS, skip_token=first.skip_token)
        fresh = ask(client, ALL_VMS, top=10)
    assert (second.total_records, second.count) == (30, 10)
    assert fresh.total_records == 5


def test_a_skip_token_from_another_query_is_refused(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(30), graph_quota=None)
    with graph_client(sandbox) as client:
        token = ask(client, ALL_VMS, top=10).skip_token
        with pytest.raises(HttpResponseError) as refused:
            ask(client, "Resources | project id", skip_token=token)
    assert refused.value.status_code == 400
    assert refused.value.response.json()["error"]["details"][0]["code"] == "InvalidSkipToken"


def test_a_query_that_does_not_project_id_is_truncated_instead_of_paged(
    start_sandbox: Start,
) -> None:
    sandbox = start_sandbox(numbered_vms(30), graph_quota=None)
    with graph_client(sandbox) as client:
        page = ask(client, "Resources | project name", top=10)
    assert (page.count, page.total_records, page.result_truncated) == (10, 30, "true")
    assert page.skip_token is None


def test_every_answer_carries_the_callers_quota(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(3), graph_quota=Quota(15, 5.0))
    headers: list[Any] = []
    with graph_client(sandbox) as client:
        ask(client, ALL_VMS, headers)
        ask(client, ALL_VMS, headers)
    assert [h["x-ms-user-quota-remaining"] for h in headers] == ["14", "13"]
    assert all(h["x-ms-user-quota-resets-after"].count(":") == 2 for h in headers)


def test_a_caller_over_quota_gets_429_with_retry_after(
    start_sandbox: Start, clock: ManualClock
) -> None:
    clock.freeze()  # the window cannot roll over while the test runs
    sandbox = start_sandbox(numbered_vms(3), graph_quota=Quota(2, 60.0))
    with graph_client(sandbox, retry_total=0) as client:
        ask(client, ALL_VMS)
        ask(client, ALL_VMS)
        with pytest.raises(HttpResponseError) as throttled:
            ask(client, ALL_VMS)
    response = throttled.value.response
    assert throttled.value.status_code == 429
    assert response.headers["Retry-After"] == "60"
    assert response.headers["x-ms-user-quota-remaining"] == "0"
    assert response.json()["error"]["code"] == "RateLimiting"
    assert sandbox.counters().throttled == 1


def test_the_quota_is_kept_per_caller(start_sandbox: Start, clock: ManualClock) -> None:
    clock.freeze()
    sandbox = start_sandbox(numbered_vms(3), graph_quota=Quota(1, 60.0))
    first = post_raw(sandbox, {"query": ALL_VMS}, token="caller-one")
    second = post_raw(sandbox, {"query": ALL_VMS}, token="caller-two")
    again = post_raw(sandbox, {"query": ALL_VMS}, token="caller-one")
    assert [first.status_code, second.status_code, again.status_code] == [200, 200, 429]


def test_the_real_client_waits_out_a_429_and_gets_its_answer(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(3), graph_quota=Quota(1, 1.0))
    with graph_client(sandbox) as client:
        ask(client, ALL_VMS)
        page = ask(client, ALL_VMS)  # throttled once, retried after Retry-After by azure-core
    assert page.count == 3
    assert sandbox.counters().throttled >= 1


def test_the_quota_can_be_switched_off(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(3), graph_quota=None)
    answers = [post_raw(sandbox, {"query": ALL_VMS}) for _ in range(20)]
    assert {a.status_code for a in answers} == {200}
    assert "x-ms-user-quota-remaining" not in answers[0].headers


def test_a_request_without_a_bearer_token_is_refused_with_401(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(3))
    answer = post_raw(sandbox, {"query": ALL_VMS}, token=None)
    assert answer.status_code == 401
    assert answer.json()["error"]["code"] == "AuthenticationFailed"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer ")


def test_an_api_version_resource_graph_does_not_have_is_refused(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(3))
    too_old = post_raw(sandbox, {"query": ALL_VMS}, api="2019-04-01")
    assert too_old.status_code == 400
    assert too_old.json()["error"]["code"] == "InvalidApiVersionParameter"


def test_the_newest_api_version_is_accepted(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(3))
    with graph_client(sandbox, api_version="2024-04-01") as client:
        assert ask(client, ALL_VMS).count == 3


def test_bad_kql_is_answered_400_with_the_parsers_message(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(3))
    with graph_client(sandbox) as client, pytest.raises(HttpResponseError) as refused:
        ask(client, "Resources | wherex type == 1")
    assert refused.value.status_code == 400
    error = refused.value.response.json()["error"]
    assert error["code"] == "BadRequest"
    assert error["message"].startswith("Please provide below info when asking for support")
    assert [d["code"] for d in error["details"]] == ["InvalidQuery", "ParserFailure"]
    assert error["details"][1]["line"] == 1


def test_kql_the_sandbox_cannot_run_says_so(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(3))
    answer = post_raw(
        sandbox,
        {"query": "Resources | summarize arg_max(todatetime(properties.x), *) by id"},
    )
    assert answer.status_code == 400
    assert answer.json()["error"]["details"][1]["code"] == "UnsupportedQuery"


def test_a_query_sees_only_the_subscriptions_it_names(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(10), graph_quota=None)
    with graph_client(sandbox) as client:
        only_a = ask(client, "Resources | project id, subscriptionId", subscriptions=[SUB_A])
        both = ask(client, "Resources | project id", subscriptions=[SUB_A, SUB_B.upper()])
        tenant = ask(client, "Resources | project id")
    assert {row["subscriptionId"] for row in only_a.data} == {SUB_A}
    assert only_a.total_records == 5
    assert both.total_records == tenant.total_records == 10


def test_a_query_cannot_reach_outside_its_scope_through_a_join(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(10), graph_quota=None)
    query = (
        "Resources | project id, name | join kind=leftouter "
        "(resources | project other = id, name) on name | where isnotempty(other)"
    )
    with graph_client(sandbox) as client:
        joined = ask(client, query, subscriptions=[SUB_A])
    assert all(f"/subscriptions/{SUB_A}/" in row["other"] for row in joined.data)


def test_an_unknown_subscription_is_refused_without_partial_scopes(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(4))
    stranger = "99999999-9999-9999-9999-999999999999"
    with graph_client(sandbox) as client, pytest.raises(HttpResponseError) as refused:
        ask(client, ALL_VMS, subscriptions=[SUB_A, stranger])
    assert refused.value.status_code == 403
    assert refused.value.response.json()["error"]["code"] == "AuthorizationFailed"


def test_partial_scopes_answer_for_the_readable_subscriptions_and_name_none_of_the_rest(
    start_sandbox: Start,
) -> None:
    sandbox = start_sandbox(numbered_vms(4))
    stranger = "99999999-9999-9999-9999-999999999999"
    headers: list[Any] = []
    with graph_client(sandbox) as client:
        page = ask(
            client,
            "Resources | project id, subscriptionId",
            headers,
            subscriptions=[SUB_A, stranger],
            allow_partial_scopes=True,
        )
    assert {row["subscriptionId"] for row in page.data} == {SUB_A}
    # As in Azure: the caller learns what it could not read from resourcecontainers.
    assert not any(stranger in value for value in headers[0].values())


def test_a_management_group_answers_for_its_subscriptions(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(6), management_groups={"Production": [SUB_B]})
    with graph_client(sandbox) as client:
        page = ask(client, "Resources | project subscriptionId", management_groups=["production"])
    assert {row["subscriptionId"] for row in page.data} == {SUB_B}


def test_the_default_root_management_group_holds_every_subscription(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(6))
    with graph_client(sandbox) as client:
        page = ask(client, "Resources | project subscriptionId", management_groups=["root"])
    assert {row["subscriptionId"] for row in page.data} == {SUB_A, SUB_B}


def test_now_in_a_query_is_the_sandboxs_clock(start_sandbox: Start, clock: ManualClock) -> None:
    sandbox = start_sandbox(numbered_vms(1))
    with graph_client(sandbox) as client:
        page = ask(client, "Resources | project today = format_datetime(now(), 'yyyy-MM-dd')")
    assert page.data == [{"today": clock.now().strftime("%Y-%m-%d")}]


def test_the_table_format_returns_columns_and_rows(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(3))
    with graph_client(sandbox) as client:
        page = ask(client, "Resources | project id, tags | order by id asc", result_format="table")
    assert page.data["columns"] == [
        {"name": "id", "type": "string"},
        {"name": "tags", "type": "object"},
    ]
    assert page.data["rows"][0][1] == {"hotpatch-ring": "1"}


def test_a_query_may_leave_out_the_table_as_resource_graph_allows(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(3))
    with graph_client(sandbox) as client:
        page = ask(client, "where name == 'vm-00001' | project name")
    assert page.data == [{"name": "vm-00001"}]


def test_a_query_cannot_reach_past_its_scope_through_database(start_sandbox: Start) -> None:
    sandbox = start_sandbox(numbered_vms(4), graph_quota=None, subscriptions=frozenset({SUB_A}))
    for query in ("database('store').resources | project id", "cluster('x').database('y').t"):
        answer = post_raw(sandbox, {"query": query, "subscriptions": [SUB_A]})
        assert answer.status_code == 400, query
        assert "not available in Resource Graph" in answer.text
