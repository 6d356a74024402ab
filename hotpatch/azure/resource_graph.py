"""Inventory through Azure Resource Graph: one query, paged, paced by the caller's quota.

Resource Graph gives each caller a quota of queries per window (15 per 5 s in Microsoft's
example) and says how much is left on every answer (`x-ms-user-quota-remaining`,
`x-ms-user-quota-resets-after`). The adapter spends the quota and then waits for the reset,
so a sweep runs at the quota's pace without meeting a 429; when one comes anyway it waits
`Retry-After`. Queries are POSTs, which azure-core does not retry on 429 or dropped connections,
so the adapter retries them itself (they only read) and counts every retry for the run summary.
See https://learn.microsoft.com/azure/governance/resource-graph/concepts/guidance-for-throttled-requests
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from importlib import resources
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    IncompleteReadError,
    ODataV4Error,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ResourceNotModifiedError,
    ResponseNotReadError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
    StreamClosedError,
    StreamConsumedError,
    TooManyRedirectsError,
)
from azure.core.rest import HttpRequest
from azure.mgmt.core.exceptions import ARMErrorFormat
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from hotpatch.azure.responses import (
    error_message,
    first_line,
    headers_of,
    lookup,
    retry_after,
    status_code,
)
from hotpatch.core.resource_types import ASSESSMENT_RESULTS, INSTALLATION_RESULTS
from hotpatch.errors import (
    AzureAccessError,
    AzureUnavailableError,
    QueryRejectedError,
    ThrottledError,
)
from hotpatch.ports.inventory import (
    InstallationRecord,
    InventoryPager,
    InventoryStats,
    Scope,
    installation_records,
)

#: Resource Graph answers at most 1000 rows a page and takes at most 1000 subscriptions a query.
PAGE_SIZE = 1000
MAX_SUBSCRIPTIONS_PER_QUERY = 1000
#: Which of the requested subscriptions the caller can read. Under allowPartialScopes Resource
#: Graph answers for the readable scopes and names none of the others; the subscriptions it
#: lists in `resourcecontainers` are the readable ones, and the rest could not be read.
#: https://learn.microsoft.com/azure/governance/resource-graph/reference/supported-tables-resources#resourcecontainers
VISIBLE_SUBSCRIPTIONS_QUERY = (
    "resourcecontainers | where type =~ 'microsoft.resources/subscriptions' "
    "| project subscriptionId"
)
QUERY_PATH = "/providers/Microsoft.ResourceGraph/resources"
#: The newest stable version (the SDK itself sends 2021-03-01; both answer the same shape).
API_VERSION = "2024-04-01"
QUOTA_REMAINING_HEADER = "x-ms-user-quota-remaining"
QUOTA_RESETS_HEADER = "x-ms-user-quota-resets-after"


def inventory_query() -> str:
    """The KQL of the machine inventory (hotpatch/azure/queries/inventory.kql)."""
    return resources.files("hotpatch.azure").joinpath("queries/inventory.kql").read_text("utf-8")


def installations_query(since: datetime) -> str:
    """KQL: installation summaries and their patches modified since `since` (an installation's
    rows are all modified at or after its start)."""
    instant = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return (
        "patchinstallationresources"
        " | where type in~ ("
        "'microsoft.compute/virtualmachines/patchinstallationresults', "
        "'microsoft.hybridcompute/machines/patchinstallationresults', "
        "'microsoft.compute/virtualmachines/patchinstallationresults/softwarepatches', "
        "'microsoft.hybridcompute/machines/patchinstallationresults/softwarepatches')"
        f" | where todatetime(properties.lastModifiedDateTime) >= datetime({instant})"
        " | project id, type, properties"
    )


def query_batches(scope: Scope) -> list[dict[str, list[str]]]:
    """The scope of each query: subscriptions in batches of at most 1000."""
    if scope.subscriptions:
        unique = list(dict.fromkeys(scope.subscriptions))
        return [
            {"subscriptions": unique[start : start + MAX_SUBSCRIPTIONS_PER_QUERY]}
            for start in range(0, len(unique), MAX_SUBSCRIPTIONS_PER_QUERY)
        ]
    if scope.management_groups:
        return [{"management_groups": list(scope.management_groups)}]
    return [{}]


class _Answer(Enum):
    """What a query does about a failure (see QUERY_FAILURES)."""

    #: The credential could not get a token (or the service said 401/403): AzureAccessError.
    SIGN_IN = "sign_in"
    #: An HTTP answer: 429 waits Retry-After, 401/403 is access, 400 a rejected query, 5xx is
    #: retried with backoff, anything else AzureUnavailableError.
    BY_STATUS = "by_status"
    #: The request or its answer was lost on the way: retried with backoff (queries only read).
    RETRY = "retry"
    #: Nothing a retry can mend: AzureUnavailableError naming the failure.
    FAIL = "fail"


#: The one translation of azure-core's exceptions for Resource Graph queries, in the manner of
#: httpx's `map_httpcore_exceptions`: every class azure-core defines is listed (a test walks
#: `azure.core.exceptions`); `lookup` falls back to the nearest listed base for new ones.
QUERY_FAILURES: Mapping[type[AzureError], _Answer] = {
    AzureError: _Answer.FAIL,
    HttpResponseError: _Answer.BY_STATUS,
    ClientAuthenticationError: _Answer.SIGN_IN,
    ResourceNotFoundError: _Answer.BY_STATUS,
    ResourceExistsError: _Answer.BY_STATUS,
    ResourceModifiedError: _Answer.BY_STATUS,
    ResourceNotModifiedError: _Answer.BY_STATUS,
    ODataV4Error: _Answer.BY_STATUS,
    TooManyRedirectsError: _Answer.FAIL,
    # A body that does not decode was cut off on the way (or came from something else).
    DecodeError: _Answer.RETRY,
    IncompleteReadError: _Answer.RETRY,
    ServiceRequestError: _Answer.RETRY,
    ServiceRequestTimeoutError: _Answer.RETRY,
    ServiceResponseError: _Answer.RETRY,
    ServiceResponseTimeoutError: _Answer.RETRY,
    StreamClosedError: _Answer.RETRY,
    # The SDK read a body twice, or not at all: a bug, not the network.
    StreamConsumedError: _Answer.FAIL,
    ResponseNotReadError: _Answer.FAIL,
}


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one page is tried before the sweep gives up with a clear error."""

    #: Attempts per page for server errors and dropped connections.
    attempts: int = 6
    backoff: timedelta = timedelta(seconds=0.5)
    max_backoff: timedelta = timedelta(seconds=20)
    #: 429s per page before ThrottledError (each waits its Retry-After).
    throttled_attempts: int = 10


class ResourceGraphInventory:
    """The real adapter, over `azure-mgmt-resourcegraph`."""

    def __init__(
        self,
        client: ResourceGraphClient,
        *,
        retry: RetryPolicy | None = None,
        allow_partial_scopes: bool = True,
        query: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        jitter: random.Random | None = None,
    ) -> None:
        self.client = client
        self.retry = retry or RetryPolicy()
        self.allow_partial_scopes = allow_partial_scopes
        self.query = query or inventory_query()
        self._sleep = sleep
        self._jitter = jitter or random.Random(0)
        self._monotonic = monotonic
        self._quota = _QuotaWindow()

    def list_machines(self, scope: Scope) -> InventoryPager:
        """The scope's machines as raw export rows, a page per query answer, fetched lazily."""
        return InventoryPager(lambda stats: self._scope_pages(scope, stats))

    def _scope_pages(self, scope: Scope, stats: InventoryStats) -> Iterator[list[dict[str, Any]]]:
        counted = 0  # totals of the batches before this one (1000 subscriptions a query)
        for batch in query_batches(scope):
            for name in self._unreadable(batch, stats):
                if name not in stats.skipped_scopes:
                    stats.skipped_scopes.append(name)
            batch_total = 0
            for page, total in self._pages(batch, stats):
                rows = [row for joined in page for row in export_rows(joined)]
                stats.rows += len(rows)
                batch_total = total or batch_total
                stats.total_records = counted + batch_total
                yield rows
            counted += batch_total

    def installations_since(self, scope: Scope, since: datetime) -> list[InstallationRecord]:
        """The scope's patch installations that started at or after `since` (running ones
        included), with the KBs each installed: how the journal learns what became of a
        request whose answer it never recorded."""
        query = installations_query(since)
        stats = InventoryStats()
        rows = [
            row
            for batch in query_batches(scope)
            for page, _ in self._pages(batch, stats, query)
            for row in page
            if isinstance(row, dict)
        ]
        return installation_records(rows, since)

    def _pages(
        self, batch: dict[str, list[str]], stats: InventoryStats, query: str | None = None
    ) -> Iterator[tuple[list[dict[str, Any]], int | None]]:
        """Each page's rows and the query's total record count, following `$skipToken`."""
        skip_token: str | None = None
        while True:
            request = QueryRequest(
                query=query or self.query,
                options=QueryRequestOptions(
                    top=PAGE_SIZE,
                    skip_token=skip_token,
                    result_format="objectArray",
                    allow_partial_scopes=self.allow_partial_scopes,
                ),
                **batch,  # type: ignore[arg-type]
            )
            body, _ = self._query(request, stats)
            stats.pages += 1
            total = body.get("totalRecords")
            data = body.get("data")
            yield (
                (data if isinstance(data, list) else []),
                (total if isinstance(total, int) else None),
            )
            skip_token = body.get("$skipToken")
            if not skip_token:
                return

    def _unreadable(self, batch: dict[str, list[str]], stats: InventoryStats) -> list[str]:
        """The batch's subscriptions Resource Graph cannot read, as scope ids.

        Only asked under allowPartialScopes (without it an unreadable one fails the query), and
        only for subscriptions: a batch of management groups is read as a whole.
        """
        requested = batch.get("subscriptions")
        if not requested or not self.allow_partial_scopes:
            return []
        request = QueryRequest(
            query=VISIBLE_SUBSCRIPTIONS_QUERY,
            subscriptions=requested,
            options=QueryRequestOptions(
                top=PAGE_SIZE, result_format="objectArray", allow_partial_scopes=True
            ),
        )
        body, _ = self._query(request, stats)
        data = body.get("data")
        visible = {
            str(row.get("subscriptionId", "")).lower()
            for row in (data if isinstance(data, list) else [])
            if isinstance(row, dict)
        }
        return [f"/subscriptions/{s}" for s in requested if s.lower() not in visible]

    def _query(
        self, request: QueryRequest, stats: InventoryStats
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """One page, retried: quota pacing first, then 429, 5xx and dropped connections."""
        failures = throttles = 0
        while True:
            wait = self._quota.wait(self._monotonic())
            if wait > 0:
                stats.quota_waits += 1
                stats.quota_wait_seconds += wait
                self._sleep(wait)
            stats.requests += 1
            try:
                body, headers = self._send(request)
            except AzureError as error:
                answer = lookup(QUERY_FAILURES, error)
                status = status_code(error)
                if answer is _Answer.SIGN_IN and status not in (401, 403):
                    raise AzureAccessError(
                        f"could not sign in to Azure: {first_line(error)}; the identity "
                        "needs Reader on the scope"
                    ) from error
                if answer is _Answer.RETRY:
                    failures += 1
                    self._give_up_after(failures, "connection failure", error)
                    stats.retries["connection"] += 1
                    self._sleep(self._backoff(failures))
                    continue
                if answer is _Answer.FAIL or status is None:
                    raise AzureUnavailableError(
                        f"Resource Graph query failed ({type(error).__name__}): "
                        f"{first_line(error) or 'no detail'}"
                    ) from error
                headers = headers_of(error) if isinstance(error, HttpResponseError) else {}
                self._pace(headers)
                if status == 429:
                    throttles += 1
                    if throttles > self.retry.throttled_attempts:
                        raise ThrottledError(
                            f"Resource Graph still throttled after {throttles} tries; "
                            "another client may be using the same identity's quota"
                        ) from error
                    stats.retries["throttled"] += 1
                    wait = retry_after(headers) or self._backoff(throttles)
                    stats.throttle_wait_seconds += wait
                    self._sleep(wait)
                    continue
                if status in (401, 403):
                    raise AzureAccessError(
                        f"Resource Graph refused access ({status}): {error_message(error)}; "
                        "the identity needs Reader on the scope"
                    ) from error
                if status == 400:
                    raise QueryRejectedError(
                        f"Resource Graph rejected the query: {error_message(error)}"
                    ) from error
                if status >= 500:
                    failures += 1
                    self._give_up_after(failures, f"server error {status}", error)
                    stats.retries["server_error"] += 1
                    self._sleep(retry_after(headers) or self._backoff(failures))
                    continue
                raise AzureUnavailableError(
                    f"Resource Graph answered {status}: {error_message(error)}"
                ) from error
            self._pace(headers)
            return body, headers

    def _send(self, request: QueryRequest) -> tuple[dict[str, Any], dict[str, str]]:
        """One POST through the client's own pipeline (credential, ARM policies, transport).

        Not `client.resources()`: its model deserializer walks every value of `data` (declared
        a plain object) and cost three times the request itself, about 0.3 s a page of 1000
        rows. The body is the SDK's own serialization of the same QueryRequest.
        """
        http_request = HttpRequest(
            "POST",
            QUERY_PATH,
            params={"api-version": API_VERSION},
            json=self.client._serialize.body(request, "QueryRequest"),  # type: ignore[no-untyped-call]
        )
        response = self.client._send_request(http_request)
        if response.status_code >= 400:
            raise HttpResponseError(response=response, error_format=ARMErrorFormat)
        headers = {key.lower(): value for key, value in response.headers.items()}
        try:
            body = response.json()
        except ValueError as error:
            raise DecodeError("Resource Graph answered with a body that is not JSON") from error
        if not isinstance(body, dict):
            raise DecodeError("Resource Graph answered with JSON that is not an object")
        return body, headers

    def _give_up_after(self, failures: int, what: str, error: Exception) -> None:
        if failures >= self.retry.attempts:
            raise AzureUnavailableError(
                f"Resource Graph query failed {failures} times ({what}): {error}"
            ) from error

    def _pace(self, headers: dict[str, str]) -> None:
        remaining = headers.get(QUOTA_REMAINING_HEADER)
        resets = headers.get(QUOTA_RESETS_HEADER)
        if remaining is None or resets is None:
            return
        try:
            left = int(remaining)
        except ValueError:
            return
        self._quota.observe(self._monotonic(), left, _hh_mm_ss(resets))

    def _backoff(self, attempt: int) -> float:
        base = self.retry.backoff.total_seconds() * 2.0 ** (attempt - 1)
        capped = min(base, self.retry.max_backoff.total_seconds())
        return float(capped * (0.5 + self._jitter.random() / 2))


@dataclass(slots=True)
class _QuotaWindow:
    """When the caller's quota window resets, narrowed from every answer's headers.

    `x-ms-user-quota-resets-after` is whole seconds, rounded up: an answer at `t` saying `T`
    puts the reset in (t + T - 1, t + T]. Taking the earliest upper bound over a window's
    answers pins the reset to within the spacing of the requests, where waiting the last
    answer's `T` alone would overshoot by up to a second every window (a fifth of a 5 s
    window). Waiting until an upper bound is never early, so it still meets no 429.
    """

    reset_at: float | None = None
    remaining: int | None = None

    def observe(self, now: float, remaining: int, resets_after: float) -> None:
        bound = now + resets_after
        # Every query a window counts lowers `remaining`; one that does not (above zero, where
        # refused queries leave it) was counted by a new window, e.g. after a slow answer.
        new_window = (
            self.reset_at is None
            or now >= self.reset_at
            or self.remaining is None
            or remaining > self.remaining
            or (remaining == self.remaining and remaining > 0)
        )
        self.reset_at = bound if new_window or self.reset_at is None else min(self.reset_at, bound)
        self.remaining = remaining

    def wait(self, now: float) -> float:
        """Seconds to wait before the next query: only once the window's quota is spent."""
        if self.remaining is None or self.remaining > 0 or self.reset_at is None:
            return 0.0
        return max(0.0, self.reset_at - now)


def _hh_mm_ss(text: str) -> float:
    """`00:00:03` -> 3.0; Resource Graph writes the reset as hh:mm:ss."""
    try:
        hours, minutes, seconds = (float(part) for part in text.split(":"))
    except ValueError:
        return 0.0
    return hours * 3600 + minutes * 60 + seconds


def export_rows(joined: dict[str, Any]) -> list[dict[str, Any]]:
    """One row of the inventory query -> the raw export rows it joins (machine, assessment,
    installation), so that the core parses a sweep exactly as it parses an export file.

    The machine row keeps the columns the query projects, from whichever table it came
    (`resources`, or `computeresources` for a Uniform scale set instance, which has no patch
    rows); `kind` is the row's column ("HCI" for an Arc machine on Azure Local)."""
    machine = {
        key: joined.get(key)
        for key in (
            "id",
            "name",
            "type",
            "tenantId",
            "kind",
            "subscriptionId",
            "resourceGroup",
            "location",
            "tags",
            "properties",
        )
    }
    rows = [machine]
    machine_type = joined.get("type")
    for id_key, body_key, table in (
        ("assessmentId", "assessment", ASSESSMENT_RESULTS),
        ("installationId", "installation", INSTALLATION_RESULTS),
    ):
        if joined.get(id_key) is not None and isinstance(machine_type, str):
            rows.append(
                {
                    "id": joined[id_key],
                    "type": f"{machine_type}/{table}",
                    "subscriptionId": joined.get("subscriptionId"),
                    "properties": joined.get(body_key),
                }
            )
    return rows


def resource_graph_client(
    credential: Any, *, base_url: str | None = None, connection_verify: str | None = None
) -> ResourceGraphClient:
    """A client whose own retries are off: the adapter retries, so each retry is counted once."""
    options: dict[str, Any] = {"retry_total": 0}
    if base_url is not None:
        options["base_url"] = base_url
    if connection_verify is not None:
        options["connection_verify"] = connection_verify
    return ResourceGraphClient(credential, **options)
