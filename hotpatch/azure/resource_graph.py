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
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources
from typing import Any, Protocol

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.mgmt.resourcegraph import ResourceGraphClient
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from hotpatch.errors import (
    AzureAccessError,
    AzureUnavailableError,
    QueryRejectedError,
    ThrottledError,
)

#: Resource Graph answers at most 1000 rows a page and takes at most 1000 subscriptions a query.
PAGE_SIZE = 1000
MAX_SUBSCRIPTIONS_PER_QUERY = 1000
#: Where the sandbox names the scopes it skipped under allowPartialScopes (Azure documents none).
SKIPPED_SCOPES_HEADER = "x-ms-sandbox-skipped-scopes"
QUOTA_REMAINING_HEADER = "x-ms-user-quota-remaining"
QUOTA_RESETS_HEADER = "x-ms-user-quota-resets-after"


def inventory_query() -> str:
    """The KQL of the machine inventory (hotpatch/azure/queries/inventory.kql)."""
    return resources.files("hotpatch.azure").joinpath("queries/inventory.kql").read_text("utf-8")


@dataclass(frozen=True, slots=True)
class Scope:
    """What to inventory: subscriptions, management groups, or (neither) the whole tenant."""

    subscriptions: tuple[str, ...] = ()
    management_groups: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.subscriptions and self.management_groups:
            raise ValueError("a scope is subscriptions or management groups, not both")

    def batches(self) -> list[dict[str, list[str]]]:
        """The scope of each query: subscriptions in batches of at most 1000."""
        if self.subscriptions:
            unique = list(dict.fromkeys(self.subscriptions))
            return [
                {"subscriptions": unique[start : start + MAX_SUBSCRIPTIONS_PER_QUERY]}
                for start in range(0, len(unique), MAX_SUBSCRIPTIONS_PER_QUERY)
            ]
        if self.management_groups:
            return [{"management_groups": list(self.management_groups)}]
        return [{}]

    def describe(self) -> str:
        if self.subscriptions:
            return f"{len(self.subscriptions)} subscription(s)"
        if self.management_groups:
            return "management group(s) " + ", ".join(self.management_groups)
        return "the tenant"


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one page is tried before the sweep gives up with a clear error."""

    #: Attempts per page for server errors and dropped connections.
    attempts: int = 6
    backoff: timedelta = timedelta(seconds=0.5)
    max_backoff: timedelta = timedelta(seconds=20)
    #: 429s per page before ThrottledError (each waits its Retry-After).
    throttled_attempts: int = 10


@dataclass(frozen=True, slots=True)
class InventoryProgress:
    pages: int
    rows: int
    total_records: int | None


@dataclass(slots=True)
class InventoryStats:
    """What a sweep's inventory cost: for the run summary and the benchmarks."""

    pages: int = 0
    requests: int = 0
    rows: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    quota_waits: int = 0
    quota_wait_seconds: float = 0.0
    throttle_wait_seconds: float = 0.0
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


@dataclass(frozen=True, slots=True)
class InventorySnapshot:
    """Every machine in scope as raw export rows (docs/raw-export.md), and what it cost."""

    rows: list[dict[str, Any]]
    stats: InventoryStats


ProgressCallback = Callable[[InventoryProgress], None]


class Inventory(Protocol):
    """Lists the machines of a scope, with their latest patch summaries, as raw export rows."""

    def list_machines(
        self, scope: Scope, on_progress: ProgressCallback | None = None
    ) -> InventorySnapshot: ...


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
        jitter: random.Random | None = None,
    ) -> None:
        self.client = client
        self.retry = retry or RetryPolicy()
        self.allow_partial_scopes = allow_partial_scopes
        self.query = query or inventory_query()
        self._sleep = sleep
        self._jitter = jitter or random.Random(0)
        #: Seconds to wait before the next query: the quota is spent until its window resets.
        self._wait_before_next = 0.0

    def list_machines(
        self, scope: Scope, on_progress: ProgressCallback | None = None
    ) -> InventorySnapshot:
        stats = InventoryStats()
        rows: list[dict[str, Any]] = []
        for batch in scope.batches():
            for page, total in self._pages(batch, stats):
                for joined in page:
                    rows.extend(export_rows(joined))
                stats.rows = len(rows)
                if on_progress is not None:
                    on_progress(InventoryProgress(stats.pages, stats.rows, total))
        return InventorySnapshot(rows, stats)

    def _pages(
        self, batch: dict[str, list[str]], stats: InventoryStats
    ) -> Iterator[tuple[list[dict[str, Any]], int | None]]:
        """Each page's rows and the query's total record count, following `$skipToken`."""
        skip_token: str | None = None
        while True:
            request = QueryRequest(
                query=self.query,
                options=QueryRequestOptions(
                    top=PAGE_SIZE,
                    skip_token=skip_token,
                    result_format="objectArray",
                    allow_partial_scopes=self.allow_partial_scopes,
                ),
                **batch,  # type: ignore[arg-type]
            )
            body, headers = self._query(request, stats)
            stats.pages += 1
            total = body.get("totalRecords")
            skipped = headers.get(SKIPPED_SCOPES_HEADER)
            if skipped:
                for name in skipped.split(","):
                    if name.strip() and name.strip() not in stats.skipped_scopes:
                        stats.skipped_scopes.append(name.strip())
            data = body.get("data")
            yield (
                (data if isinstance(data, list) else []),
                (total if isinstance(total, int) else None),
            )
            skip_token = body.get("$skipToken")
            if not skip_token:
                return

    def _query(
        self, request: QueryRequest, stats: InventoryStats
    ) -> tuple[dict[str, Any], dict[str, str]]:
        """One page, retried: quota pacing first, then 429, 5xx and dropped connections."""
        failures = throttles = 0
        while True:
            if self._wait_before_next > 0:
                stats.quota_waits += 1
                stats.quota_wait_seconds += self._wait_before_next
                self._sleep(self._wait_before_next)
                self._wait_before_next = 0.0
            stats.requests += 1
            try:
                answer: Any = self.client.resources(request, cls=_raw_answer)
            except HttpResponseError as error:
                status = error.status_code or 0
                headers = _headers_of(error)
                self._pace(headers)
                if status == 429:
                    throttles += 1
                    if throttles > self.retry.throttled_attempts:
                        raise ThrottledError(
                            f"Resource Graph still throttled after {throttles} tries; "
                            "another client may be using the same identity's quota"
                        ) from error
                    stats.retries["throttled"] += 1
                    wait = _retry_after(headers) or self._backoff(throttles)
                    stats.throttle_wait_seconds += wait
                    self._sleep(wait)
                    continue
                if status in (401, 403):
                    raise AzureAccessError(
                        f"Resource Graph refused access ({status}): {_message(error)}; "
                        "the identity needs Reader on the scope"
                    ) from error
                if status == 400:
                    raise QueryRejectedError(
                        f"Resource Graph rejected the query: {_message(error)}"
                    ) from error
                if status >= 500:
                    failures += 1
                    self._give_up_after(failures, f"server error {status}", error)
                    stats.retries["server_error"] += 1
                    self._sleep(_retry_after(headers) or self._backoff(failures))
                    continue
                raise AzureUnavailableError(
                    f"Resource Graph answered {status}: {_message(error)}"
                ) from error
            except ClientAuthenticationError as error:
                raise AzureAccessError(f"could not get a token for Azure: {error}") from error
            except (ServiceRequestError, ServiceResponseError) as error:
                failures += 1
                self._give_up_after(failures, "connection failure", error)
                stats.retries["connection"] += 1
                self._sleep(self._backoff(failures))
                continue
            body, headers = answer
            self._pace(headers)
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
            spent = int(remaining) <= 0
        except ValueError:
            return
        if spent:
            self._wait_before_next = max(self._wait_before_next, _hh_mm_ss(resets))

    def _backoff(self, attempt: int) -> float:
        base = self.retry.backoff.total_seconds() * 2.0 ** (attempt - 1)
        capped = min(base, self.retry.max_backoff.total_seconds())
        return float(capped * (0.5 + self._jitter.random() / 2))


def _raw_answer(
    pipeline_response: Any, deserialized: Any, _headers: Any
) -> tuple[dict[str, Any], dict[str, str]]:
    """`cls` for the SDK call: the JSON body as sent, and the headers (for the quota)."""
    response = pipeline_response.http_response
    return response.json(), {k.lower(): v for k, v in response.headers.items()}


def _headers_of(error: HttpResponseError) -> dict[str, str]:
    response: Any = error.response
    if response is None:
        return {}
    return {str(k).lower(): str(v) for k, v in response.headers.items()}


def _retry_after(headers: dict[str, str]) -> float | None:
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _hh_mm_ss(text: str) -> float:
    """`00:00:03` -> 3.0; Resource Graph writes the reset as hh:mm:ss."""
    try:
        hours, minutes, seconds = (float(part) for part in text.split(":"))
    except ValueError:
        return 0.0
    return hours * 3600 + minutes * 60 + seconds


def _message(error: HttpResponseError) -> str:
    """Resource Graph's own words: the innermost detail message says what is wrong."""
    inner = getattr(error, "error", None)
    messages: list[str] = []
    if inner is not None:
        if getattr(inner, "message", None):
            messages.append(str(inner.message))
        for detail in getattr(inner, "details", None) or []:
            if getattr(detail, "message", None):
                messages.append(str(detail.message))
    if not messages:
        return str(error.message or error).splitlines()[0]
    return " / ".join(messages[-2:]) if len(messages) > 1 else messages[0]


def export_rows(joined: dict[str, Any]) -> list[dict[str, Any]]:
    """One row of the inventory query -> the raw export rows it joins (machine, assessment,
    installation), so that the core parses a sweep exactly as it parses an export file."""
    machine = {
        key: joined.get(key)
        for key in (
            "id",
            "name",
            "type",
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
        ("assessmentId", "assessment", "patchassessmentresults"),
        ("installationId", "installation", "patchinstallationresults"),
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


class InMemoryInventory:
    """The fake: raw export rows held in memory, scoped by subscription, paged like the real one."""

    def __init__(self, rows: Sequence[dict[str, Any]], page_size: int = PAGE_SIZE) -> None:
        self.rows = list(rows)
        self.page_size = page_size

    def list_machines(
        self, scope: Scope, on_progress: ProgressCallback | None = None
    ) -> InventorySnapshot:
        if scope.management_groups:
            raise ValueError("the in-memory inventory knows no management groups")
        wanted = {s.casefold() for s in scope.subscriptions}
        selected = [
            row
            for row in self.rows
            if not wanted or str(row.get("subscriptionId", "")).casefold() in wanted
        ]
        stats = InventoryStats()
        for start in range(0, len(selected), self.page_size):
            stats.pages += 1
            stats.requests += 1
            stats.rows = min(len(selected), start + self.page_size)
            if on_progress is not None:
                on_progress(InventoryProgress(stats.pages, stats.rows, len(selected)))
        return InventorySnapshot(selected, stats)


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
