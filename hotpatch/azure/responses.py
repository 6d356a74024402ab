"""What Azure's error answers say, read one way for every adapter: the wait it asks for
(`Retry-After`), the status, and ARM's error code and message.

Each adapter keeps its own table from azure-core's exception classes to what it does about
them (retry, a domain error, a per-machine outcome), in the manner of httpx's
`map_httpcore_exceptions`; this module is the reading they share.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

from azure.core.exceptions import AzureError, HttpResponseError

_V = TypeVar("_V")

#: Milliseconds first (more precise), then the standard header: seconds or an HTTP date.
#: https://learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling
_RETRY_AFTER_MS = ("retry-after-ms", "x-ms-retry-after-ms")


def lookup(table: Mapping[type[AzureError], _V], error: AzureError) -> _V:
    """The table's entry for the error's class, or for its nearest listed base class.

    Every azure-core class is listed by name (a test walks `azure.core.exceptions`), so the
    base-class fallback serves only classes a later azure-core adds.
    """
    for kind in type(error).__mro__:
        if kind in table:
            return table[kind]
    return table[AzureError]


def headers_of(error: HttpResponseError) -> dict[str, str]:
    """The answer's headers, names in lower case; empty when there was no answer."""
    response: Any = error.response
    if response is None:
        return {}
    return {str(k).lower(): str(v) for k, v in response.headers.items()}


def lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the service asks to wait (`retry-after-ms`, or `Retry-After` in seconds or as an
    HTTP date), never negative; None when it asks nothing or says nothing readable."""
    lowered = lower_keys(headers)
    for name in _RETRY_AFTER_MS:
        value = lowered.get(name)
        if value:
            with contextlib.suppress(ValueError):
                return max(0.0, float(value) / 1000)
    value = lowered.get("retry-after")
    if not value:
        return None
    with contextlib.suppress(ValueError):
        return max(0.0, float(value))
    with contextlib.suppress(TypeError, ValueError, IndexError):
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    return None


def status_code(error: AzureError) -> int | None:
    return error.status_code if isinstance(error, HttpResponseError) else None


def error_details(error: AzureError) -> tuple[str, str]:
    """ARM's error code and message when it sent them; else the exception's kind and text."""
    if isinstance(error, HttpResponseError):
        body = error.error
        if body is not None and body.code:
            return body.code, body.message or str(error.reason or "")
        if error.status_code is not None:
            return f"Http{error.status_code}", str(error.reason or error.message)
    return type(error).__name__, first_line(error.message)


def error_message(error: AzureError) -> str:
    """The service's own words: the innermost detail messages say what is wrong (Resource
    Graph puts the parser's complaint in `details`)."""
    inner = getattr(error, "error", None)
    messages: list[str] = []
    if inner is not None:
        if getattr(inner, "message", None):
            messages.append(str(inner.message))
        for detail in getattr(inner, "details", None) or []:
            if getattr(detail, "message", None):
                messages.append(str(detail.message))
    if not messages:
        return first_line(error.message or error)
    return " / ".join(messages[-2:]) if len(messages) > 1 else messages[0]


def first_line(value: object) -> str:
    text = str(value).strip() if value is not None else ""
    return text.splitlines()[0] if text else ""
