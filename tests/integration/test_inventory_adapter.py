"""The inventory adapter: the same contract for the in-memory fake and Resource Graph (sandbox),
then what only the real adapter does (paging, quota pacing, retries, partial scopes, errors)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from hotpatch.azure.credentials import StaticTokenCredential
from hotpatch.azure.resource_graph import (
    MAX_SUBSCRIPTIONS_PER_QUERY,
    ResourceGraphInventory,
    RetryPolicy,
    query_batches,
    resource_graph_client,
)
from hotpatch.core.inventory import parse_rows
from hotpatch.core.models import Machine
from hotpatch.data import shipped_release_catalog
from hotpatch.errors import AzureAccessError, QueryRejectedError
from hotpatch.fakes import InMemoryInventory
from hotpatch.ports import Inventory, InventoryProgress, Scope, read_inventory
from hotpatch.sandbox.arm import FaultConfig, Quota
from hotpatch.sandbox.estate import Estate, EstateSpec, generate_estate
from hotpatch.sandbox.server import Sandbox

AS_OF = datetime(2026, 5, 19, 12, 0, tzinfo=UTC)


def estate_of(machines: int, seed: int = 5, subscriptions: int = 3) -> Estate:
    spec = EstateSpec(machines=machines, subscriptions=subscriptions, seed=seed, as_of=AS_OF)
    return generate_estate(spec, shipped_release_catalog())


def adapter_for(
    sandbox: Sandbox, token: str = "contract", **options: Any
) -> ResourceGraphInventory:
    client = resource_graph_client(
        StaticTokenCredential(token),
        base_url=sandbox.base_url,
        connection_verify=str(sandbox.ca_path),
    )
    return ResourceGraphInventory(client, **options)


def machines_of(rows: list[dict[str, Any]]) -> dict[str, Machine]:
    return {m.id: m for m in parse_rows(rows).machines if isinstance(m, Machine)}


ESTATE = estate_of(1200)


@pytest.fixture(params=["in-memory", "resource-graph"])
def inventory(
    request: pytest.FixtureRequest, start_sandbox: Callable[..., Sandbox]
) -> Iterator[Inventory]:
    if request.param == "in-memory":
        yield InMemoryInventory(ESTATE.rows())
    else:
        yield adapter_for(start_sandbox(ESTATE, graph_quota=None))


class TestContract:
    """What callers may rely on, whichever inventory they hold."""

    def test_every_machine_in_scope_comes_back_once(self, inventory: Inventory) -> None:
        snapshot = read_inventory(inventory, Scope())
        expected = {machine_id.casefold() for machine_id in ESTATE.machine_ids()}
        parsed = parse_rows(snapshot.rows)
        ids = [m.id for m in parsed.machines]
        assert len(ids) == len(set(ids)) == len(expected)
        assert set(ids) == expected

    def test_machines_arrive_with_their_latest_patch_summaries(self, inventory: Inventory) -> None:
        expected = parse_rows(ESTATE.rows())
        got = parse_rows(read_inventory(inventory, Scope()).rows)
        # Every field of each machine's summaries: time, status, counts, reboot state.
        assert dict(got.assessments) == dict(expected.assessments)
        assert dict(got.installations) == dict(expected.installations)
        assert len(expected.assessments) > 0
        assert len(expected.installations) > 0
        assert machines_of(read_inventory(inventory, Scope()).rows) == {
            m.id: m for m in expected.machines if isinstance(m, Machine)
        }

    def test_a_subscription_scope_returns_only_that_subscription(
        self, inventory: Inventory
    ) -> None:
        subscription = str(ESTATE.resources[0]["subscriptionId"])
        rows = read_inventory(inventory, Scope(subscriptions=(subscription,))).rows
        machines = machines_of(rows)
        assert machines
        assert {m.subscription_id for m in machines.values()} == {subscription}

    def test_progress_is_reported_page_by_page(self, inventory: Inventory) -> None:
        seen: list[InventoryProgress] = []
        snapshot = read_inventory(inventory, Scope(), seen.append)
        assert [p.pages for p in seen] == list(range(1, snapshot.stats.pages + 1))
        assert [p.rows for p in seen] == sorted(p.rows for p in seen)

    def test_a_machines_rows_never_straddle_two_pages(self, inventory: Inventory) -> None:
        pager = inventory.list_machines(Scope())
        seen: dict[str, int] = {}
        for number, page in enumerate(pager.by_page()):
            parsed = parse_rows(page)
            for machine in parsed.machines:
                assert seen.setdefault(machine.id, number) == number
            # Every patch summary on the page belongs to a machine on the same page.
            assert set(parsed.assessments) <= {m.id for m in parsed.machines}
        assert pager.stats.pages >= 2


def test_subscriptions_go_in_batches_of_at_most_1000() -> None:
    scope = Scope(subscriptions=tuple(f"sub-{n}" for n in range(2500)))
    sizes = [len(batch["subscriptions"]) for batch in query_batches(scope)]
    assert sizes == [MAX_SUBSCRIPTIONS_PER_QUERY, MAX_SUBSCRIPTIONS_PER_QUERY, 500]


def test_a_scope_is_subscriptions_or_management_groups_not_both() -> None:
    with pytest.raises(ValueError, match="not both"):
        Scope(subscriptions=("a",), management_groups=("b",))


class TestResourceGraph:
    def test_pages_are_followed_to_the_end(self, start_sandbox: Callable[..., Sandbox]) -> None:
        estate = estate_of(2600)
        snapshot = read_inventory(adapter_for(start_sandbox(estate, graph_quota=None)), Scope())
        assert snapshot.stats.pages == 3
        assert len(machines_of(snapshot.rows)) == len(estate.machine_ids())

    def test_the_quota_is_paced_so_no_429_is_ever_received(
        self, start_sandbox: Callable[..., Sandbox]
    ) -> None:
        estate = estate_of(2600)
        # A window long enough that even a loaded machine's slow pages meet the quota: six
        # requests at two per 6 s window must wait (how often depends on the pages' pace).
        sandbox = start_sandbox(estate, graph_quota=Quota(2, 6.0))
        adapter = adapter_for(sandbox)
        first = read_inventory(adapter, Scope())
        second = read_inventory(adapter, Scope())
        assert sandbox.counters().throttled == 0
        assert first.stats.retries == second.stats.retries == {}
        assert first.stats.quota_waits + second.stats.quota_waits >= 1
        assert len(machines_of(second.rows)) == len(estate.machine_ids())

    def test_a_429_burst_is_waited_out_with_retry_after(
        self, start_sandbox: Callable[..., Sandbox]
    ) -> None:
        faults = FaultConfig(
            seed=3, throttle_burst_rate=0.5, throttle_burst_length=2, throttle_retry_after_seconds=1
        )
        sandbox = start_sandbox(ESTATE, graph_quota=None, faults=faults)
        slept: list[float] = []
        adapter = adapter_for(sandbox, sleep=slept.append)
        snapshot = read_inventory(adapter, Scope())
        assert snapshot.stats.retries["throttled"] >= 1
        assert slept.count(1.0) >= snapshot.stats.retries["throttled"]
        assert len(machines_of(snapshot.rows)) == len(ESTATE.machine_ids())

    def test_server_errors_and_dropped_connections_are_retried(
        self, start_sandbox: Callable[..., Sandbox]
    ) -> None:
        faults = FaultConfig(seed=11, error_500_rate=0.2, error_503_rate=0.2, drop_rate=0.2)
        sandbox = start_sandbox(estate_of(2600), graph_quota=None, faults=faults)
        adapter = adapter_for(sandbox, sleep=lambda _: None, retry=RetryPolicy(attempts=20))
        snapshot = read_inventory(adapter, Scope())
        assert snapshot.stats.retries["server_error"] + snapshot.stats.retries["connection"] >= 1
        assert snapshot.stats.requests > snapshot.stats.pages
        assert len(machines_of(snapshot.rows)) == len(estate_of(2600).machine_ids())

    def test_partial_scopes_answer_for_the_readable_ones_and_name_the_rest(
        self, start_sandbox: Callable[..., Sandbox]
    ) -> None:
        subscriptions = sorted({str(r["subscriptionId"]) for r in ESTATE.resources})
        readable, unreadable = subscriptions[0], subscriptions[1]
        sandbox = start_sandbox(ESTATE, graph_quota=None, subscriptions=frozenset({readable}))
        snapshot = read_inventory(adapter_for(sandbox), Scope(subscriptions=(readable, unreadable)))
        assert snapshot.stats.skipped_scopes == [f"/subscriptions/{unreadable}"]
        assert {m.subscription_id for m in machines_of(snapshot.rows).values()} == {readable}

    def test_without_partial_scopes_an_unreadable_subscription_is_an_access_error(
        self, start_sandbox: Callable[..., Sandbox]
    ) -> None:
        subscriptions = sorted({str(r["subscriptionId"]) for r in ESTATE.resources})
        sandbox = start_sandbox(
            ESTATE, graph_quota=None, subscriptions=frozenset(subscriptions[:1])
        )
        adapter = adapter_for(sandbox, allow_partial_scopes=False)
        with pytest.raises(AzureAccessError, match="403"):
            read_inventory(adapter, Scope(subscriptions=tuple(subscriptions[:2])))

    def test_a_missing_token_is_an_access_error(
        self, start_sandbox: Callable[..., Sandbox]
    ) -> None:
        adapter = adapter_for(start_sandbox(ESTATE, graph_quota=None), token="")
        with pytest.raises(AzureAccessError, match="401"):
            read_inventory(adapter, Scope())

    def test_a_rejected_query_carries_resource_graphs_message(
        self, start_sandbox: Callable[..., Sandbox]
    ) -> None:
        client = resource_graph_client(
            StaticTokenCredential(),
            base_url=(s := start_sandbox(ESTATE)).base_url,
            connection_verify=str(s.ca_path),
        )
        adapter = ResourceGraphInventory(client, query="resources | wherex type == 1")
        with pytest.raises(QueryRejectedError) as rejected:
            read_inventory(adapter, Scope())
        message = str(rejected.value)
        assert message.startswith("Resource Graph rejected the query: ")
        # Resource Graph's own words follow: the service's summary, then the parser's complaint.
        summary, _, complaint = message.removeprefix(
            "Resource Graph rejected the query: "
        ).partition(" / ")
        assert summary.startswith("Query is invalid.")
        assert complaint.startswith("could not parse KQL at 1:10")

    def test_a_management_group_scope_reads_its_subscriptions(
        self, start_sandbox: Callable[..., Sandbox]
    ) -> None:
        sandbox = start_sandbox(ESTATE, graph_quota=None)
        snapshot = read_inventory(adapter_for(sandbox), Scope(management_groups=("root",)))
        assert len(machines_of(snapshot.rows)) == len(ESTATE.machine_ids())


class _FailingCredential:
    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.exceptions import ClientAuthenticationError

        raise ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token")

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        return self.get_token(*scopes)


def test_a_failed_sign_in_is_an_access_error_naming_the_cause(
    start_sandbox: Callable[..., Sandbox],
) -> None:
    sandbox = start_sandbox(ESTATE, graph_quota=None)
    client = resource_graph_client(
        _FailingCredential(), base_url=sandbox.base_url, connection_verify=str(sandbox.ca_path)
    )
    with pytest.raises(AzureAccessError, match=r"could not sign in.*failed to retrieve a token"):
        read_inventory(ResourceGraphInventory(client), Scope())


def test_the_total_counts_every_batch_of_subscriptions(
    start_sandbox: Callable[..., Sandbox],
) -> None:
    sandbox = start_sandbox(ESTATE, graph_quota=None)
    real = sorted({str(r["subscriptionId"]) for r in ESTATE.resources})
    # 1001 subscriptions: two queries, the second holding only the last real one.
    fillers = tuple(f"00000000-0000-0000-0000-{n:012d}" for n in range(1001 - len(real)))
    scope = Scope(subscriptions=(*real[:-1], *fillers, real[-1]))
    pager = adapter_for(sandbox).list_machines(scope)
    rows = list(pager)
    assert len(query_batches(scope)) == 2
    assert pager.stats.total_records == len(machines_of(rows)) + sum(
        1
        for r in ESTATE.resources
        if "virtualmachinescalesets" in str(r["type"]).lower()
        and (r.get("properties") or {}).get("orchestrationMode") == "Flexible"
    )
