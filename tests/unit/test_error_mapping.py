"""Each adapter translates azure-core's exceptions through one table, and misses none of them."""

from __future__ import annotations

import inspect
import json
from typing import Any

import azure.core.exceptions
import pytest
from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    DecodeError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
    StreamConsumedError,
    TooManyRedirectsError,
)
from azure.mgmt.core.exceptions import ARMErrorFormat

from hotpatch.azure.compute import START_FAILURES
from hotpatch.azure.resource_graph import QUERY_FAILURES, ResourceGraphInventory, RetryPolicy
from hotpatch.azure.responses import error_details, error_message, lookup, retry_after
from hotpatch.errors import (
    AzureAccessError,
    AzureServiceError,
    AzureUnavailableError,
    HotpatchError,
    QueryRejectedError,
    ThrottledError,
)
from hotpatch.ports import OutcomeStatus, Scope

AZURE_CORE_ERRORS = sorted(
    (
        kind
        for _, kind in inspect.getmembers(azure.core.exceptions, inspect.isclass)
        if issubclass(kind, AzureError)
    ),
    key=lambda kind: kind.__name__,
)
TABLES = {"resource graph queries": QUERY_FAILURES, "compute starts": START_FAILURES}


@pytest.mark.parametrize("table", TABLES.values(), ids=list(TABLES))
@pytest.mark.parametrize("kind", AZURE_CORE_ERRORS, ids=lambda kind: kind.__name__)
def test_every_azure_core_exception_class_is_named_in_each_adapters_table(
    table: dict[type[AzureError], object], kind: type[AzureError]
) -> None:
    assert kind in table


def test_the_walk_finds_the_classes_azure_core_is_known_to_have() -> None:
    assert {HttpResponseError, ServiceRequestError, StreamConsumedError} <= set(AZURE_CORE_ERRORS)


def test_a_class_azure_core_adds_later_falls_back_to_its_nearest_listed_base() -> None:
    class NewKindOfNotFoundError(ResourceNotFoundError):
        pass

    assert lookup(START_FAILURES, NewKindOfNotFoundError("gone")) is OutcomeStatus.NOT_FOUND


def test_the_project_error_no_longer_shadows_azure_cores() -> None:
    import hotpatch.errors

    assert not hasattr(hotpatch.errors, "AzureError")
    assert issubclass(AzureServiceError, HotpatchError)
    assert not issubclass(AzureServiceError, AzureError)


# -- answers read the same way everywhere ---------------------------------------------------------


class _Answer:
    """Just enough of an HTTP response for azure-core's HttpResponseError to read."""

    def __init__(self, status: int, body: object = None, headers: dict[str, str] | None = None):
        self.status_code = status
        self.reason = "Reason"
        self.headers = headers or {}
        self.content_type = "application/json"
        self.request = None
        self._body = json.dumps(body if body is not None else {}).encode()

    def text(self, encoding: str | None = None) -> str:
        return self._body.decode()

    def body(self) -> bytes:
        return self._body


def arm_error(code: str, message: str) -> dict[str, object]:
    return {"error": {"code": code, "message": message}}


def http_error(status: int, body: object = None, **headers: str) -> HttpResponseError:
    return HttpResponseError(
        response=_Answer(status, body, headers),  # type: ignore[arg-type]
        error_format=ARMErrorFormat,
    )


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after": "0"}, 0.0),
        ({"Retry-After": "-5"}, 0.0),
        ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5),
        ({"x-ms-retry-after-ms": "250"}, 0.25),
        ({"Retry-After": "soon"}, None),
        ({}, None),
    ],
)
def test_retry_after_is_read_in_seconds_from_any_of_its_spellings(
    headers: dict[str, str], seconds: float | None
) -> None:
    assert retry_after(headers) == seconds


def test_retry_after_as_an_http_date_already_past_means_no_wait() -> None:
    assert retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0


def test_arms_error_code_and_innermost_messages_are_what_the_operator_reads() -> None:
    error = http_error(
        400,
        {
            "error": {
                "code": "BadRequest",
                "message": "Please provide below info when asking for support",
                "details": [{"code": "ParserFailure", "message": "'wherex' is not valid"}],
            }
        },
    )
    assert error_details(error) == (
        "BadRequest",
        "Please provide below info when asking for support",
    )
    assert error_message(error) == (
        "Please provide below info when asking for support / 'wherex' is not valid"
    )
    assert error_details(ServiceRequestError("connection refused\nmore")) == (
        "ServiceRequestError",
        "connection refused",
    )


# -- the Resource Graph table, through the adapter -------------------------------------------------


class ScriptedInventory(ResourceGraphInventory):
    """The real adapter with its one POST replaced by a script of failures (then a page)."""

    def __init__(self, *failures: Exception, retry: RetryPolicy | None = None) -> None:
        super().__init__(
            None,  # type: ignore[arg-type]
            retry=retry or RetryPolicy(attempts=3, throttled_attempts=2),
            sleep=lambda _: None,
            allow_partial_scopes=False,
        )
        self.failures = list(failures)
        self.sent = 0

    def _send(self, request: Any) -> tuple[dict[str, Any], dict[str, str]]:
        self.sent += 1
        if self.failures:
            raise self.failures.pop(0)
        return {"data": [], "totalRecords": 0}, {}


@pytest.mark.parametrize(
    ("failure", "raised", "says"),
    [
        (ClientAuthenticationError("DefaultAzureCredential failed"), AzureAccessError, "sign in"),
        (
            http_error(403, {"error": {"code": "Forbidden", "message": "no"}}),
            AzureAccessError,
            "403",
        ),
        (http_error(401), AzureAccessError, "401"),
        (
            http_error(400, {"error": {"code": "BadRequest", "message": "bad"}}),
            QueryRejectedError,
            "bad",
        ),
        (http_error(404), AzureUnavailableError, "answered 404"),
        (StreamConsumedError(_Answer(200)), AzureUnavailableError, "StreamConsumedError"),  # type: ignore[arg-type]
        (TooManyRedirectsError([]), AzureUnavailableError, "TooManyRedirectsError"),
        (AzureError("something new"), AzureUnavailableError, "something new"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_a_failure_that_no_retry_mends_ends_the_sweep_at_once_as_a_domain_error(
    failure: Exception, raised: type[HotpatchError], says: str
) -> None:
    inventory = ScriptedInventory(failure, failure, failure)
    with pytest.raises(raised, match=says):
        list(inventory.list_machines(Scope()))
    assert inventory.sent == 1


@pytest.mark.parametrize(
    "failure",
    [
        ServiceRequestError("connection refused"),
        ServiceResponseError("connection reset"),
        DecodeError("half a body"),
        http_error(503),
    ],
    ids=lambda failure: type(failure).__name__,
)
def test_a_failure_on_the_way_is_retried_then_named_when_it_persists(failure: Exception) -> None:
    once = ScriptedInventory(failure)
    pager = once.list_machines(Scope())
    assert list(pager) == []
    assert sum(pager.stats.retries.values()) == 1

    always = ScriptedInventory(failure, failure, failure, failure)
    with pytest.raises(AzureUnavailableError, match="failed 3 times"):
        list(always.list_machines(Scope()))


def test_429s_wait_their_retry_after_then_end_as_throttled() -> None:
    throttled = http_error(429, **{"Retry-After": "2"})
    inventory = ScriptedInventory(throttled, throttled, throttled)
    with pytest.raises(ThrottledError, match="still throttled after 3 tries"):
        list(inventory.list_machines(Scope()))


# -- the Compute table ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("failure", "outcome"),
    [
        (ResourceNotFoundError("no such VM"), OutcomeStatus.NOT_FOUND),
        (ResourceExistsError("another operation runs"), OutcomeStatus.CONFLICT),
        (ServiceRequestError("connection refused"), OutcomeStatus.ERROR),
        (StreamConsumedError(_Answer(200)), OutcomeStatus.ERROR),  # type: ignore[arg-type]
        (http_error(429), None),
        (ClientAuthenticationError("no token"), None),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_a_failed_start_becomes_the_machines_outcome_by_class_or_else_by_status(
    failure: AzureError, outcome: OutcomeStatus | None
) -> None:
    assert lookup(START_FAILURES, failure) is outcome
