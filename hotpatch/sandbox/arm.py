"""Azure Resource Manager wire details the sandbox reproduces: errors, api-versions, quotas, faults.

Everything here is plain data and small state machines, independent of the HTTP server, so that
the throttling and fault behaviour can be reasoned about (and tested) without sockets.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol

#: What Resource Graph adds to every error message; clients show it verbatim.
SUPPORT_PREFIX = "Please provide below info when asking for support"

_API_VERSION = re.compile(r"^(\d{4}-\d{2}-\d{2})(-preview)?$")


class SandboxClock(Protocol):
    """The sandbox's time: a monotonic clock for windows and delays, a UTC wall clock for data."""

    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...


def arm_error(
    code: str, message: str, details: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """An ARM error body (`{"error": {"code", "message", "details"?}}`)."""
    error: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        error["details"] = details
    return {"error": error}


def graph_error(
    code: str, details: list[dict[str, Any]], now: datetime, correlation_id: str | None = None
) -> dict[str, Any]:
    """A Resource Graph error body: the support line on top, the real reasons in `details`."""
    correlation = correlation_id or str(uuid.uuid4())
    stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"
    message = f"{SUPPORT_PREFIX}: timestamp = {stamp}, correlationId = {correlation}."
    return arm_error(code, message, details)


@dataclass(frozen=True, slots=True)
class ApiVersionRange:
    """The api-versions a route accepts, inclusive; `-preview` versions count by their date."""

    oldest: str
    newest: str

    def check(self, value: str | None) -> dict[str, Any] | None:
        """None if `value` is accepted; otherwise the ARM error body to answer with."""
        if not value:
            return arm_error(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        match = _API_VERSION.match(value)
        if match is None or not self.oldest <= match.group(1) <= self.newest:
            return arm_error(
                "InvalidApiVersionParameter",
                f"The api-version '{value}' is invalid. The supported versions are those from "
                f"'{self.oldest}' to '{self.newest}'.",
            )
        return None


GRAPH_API_VERSIONS = ApiVersionRange("2021-03-01", "2024-04-01")
COMPUTE_API_VERSIONS = ApiVersionRange("2021-03-01", "2026-04-01")
HYBRID_COMPUTE_API_VERSIONS = ApiVersionRange("2020-08-02", "2026-04-01")


@dataclass(frozen=True, slots=True)
class Quota:
    """`limit` requests per fixed window of `window_seconds`, counted per key."""

    limit: int
    window_seconds: float

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window_seconds <= 0:
            raise ValueError("a quota needs a limit of at least 1 and a positive window")


@dataclass(frozen=True, slots=True)
class QuotaDecision:
    allowed: bool
    remaining: int
    resets_after: float

    @property
    def retry_after(self) -> int:
        """Whole seconds for a `Retry-After` header; at least 1 so a client never spins."""
        return max(1, self._whole_seconds())

    def resets_after_text(self) -> str:
        """`hh:mm:ss`, the form of `x-ms-user-quota-resets-after`."""
        total = self._whole_seconds()
        return f"{total // 3600:02d}:{total // 60 % 60:02d}:{total % 60:02d}"

    def _whole_seconds(self) -> int:
        # Rounded up, but to the microsecond first: (t + 60.0) - t is not always exactly 60.0
        # in floating point, and a hair over must not become a whole extra second.
        return math.ceil(round(self.resets_after, 6))


class WindowQuota:
    """A fixed-window counter per key, the model Resource Graph documents for its user quota.

    Each key's window opens with its first request and lasts `window_seconds`; a request that
    finds the window spent is refused and does not count.

    Keys are bearer tokens (or subscriptions) a client chooses, so the map is bounded: windows
    are kept in the order they opened, expired ones are dropped as requests come, and past
    `max_keys` the oldest open window is dropped too (that key starts a fresh window).
    """

    def __init__(
        self, quota: Quota, monotonic: Callable[[], float], max_keys: int = 10_000
    ) -> None:
        self.quota = quota
        self.max_keys = max_keys
        self._monotonic = monotonic
        #: key -> (window start, requests counted); insertion order is window-start order.
        self._windows: dict[str, tuple[float, int]] = {}

    def __len__(self) -> int:
        return len(self._windows)

    def take(self, key: str) -> QuotaDecision:
        now = self._monotonic()
        self._drop_expired(now)
        start, used = self._windows.get(key, (now, 0))
        if now - start >= self.quota.window_seconds:
            start, used = now, 0
        resets_after = max(0.0, start + self.quota.window_seconds - now)
        if used >= self.quota.limit:
            return QuotaDecision(False, 0, resets_after)
        used += 1
        if used == 1:
            # A new window: it goes to the end, so the oldest windows stay at the front.
            self._windows.pop(key, None)
        self._windows[key] = (start, used)
        while len(self._windows) > self.max_keys:
            del self._windows[next(iter(self._windows))]
        return QuotaDecision(True, self.quota.limit - used, resets_after)

    def _drop_expired(self, now: float) -> None:
        window = self.quota.window_seconds
        while self._windows:
            oldest = next(iter(self._windows))
            if now - self._windows[oldest][0] < window:
                return
            del self._windows[oldest]


class Fault(StrEnum):
    DROP = "drop"
    ERROR_500 = "error_500"
    ERROR_503 = "error_503"
    THROTTLE = "throttle"
    MALFORMED_ROW = "malformed_row"


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Injected trouble, all off by default. Rates are probabilities per request (or per row).

    The same seed and the same sequence of requests give the same faults.
    """

    seed: int = 0
    error_500_rate: float = 0.0
    error_503_rate: float = 0.0
    #: Probability that a request starts a burst of `throttle_burst_length` 429 answers.
    throttle_burst_rate: float = 0.0
    throttle_burst_length: int = 3
    throttle_retry_after_seconds: int = 1
    #: Probability that the connection is closed without an answer.
    drop_rate: float = 0.0
    #: Fraction of Resource Graph rows whose `properties` come back corrupted.
    malformed_row_rate: float = 0.0
    #: Extra latency added to every answer, plus up to `latency_jitter_seconds` more.
    latency_seconds: float = 0.0
    latency_jitter_seconds: float = 0.0

    def __post_init__(self) -> None:
        rates = (
            self.error_500_rate,
            self.error_503_rate,
            self.throttle_burst_rate,
            self.drop_rate,
            self.malformed_row_rate,
        )
        if any(not 0.0 <= rate <= 1.0 for rate in rates):
            raise ValueError("fault rates are probabilities between 0 and 1")
        if self.latency_seconds < 0 or self.latency_jitter_seconds < 0:
            raise ValueError("latencies cannot be negative")


@dataclass(slots=True)
class FaultInjector:
    """Draws the fault (if any) for each request from one seeded generator."""

    config: FaultConfig
    _random: random.Random = field(init=False)
    _burst_left: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._random = random.Random(self.config.seed)

    def draw(self) -> Fault | None:
        c = self.config
        if self._burst_left > 0:
            self._burst_left -= 1
            return Fault.THROTTLE
        roll = self._random.random()
        for fault, rate in (
            (Fault.DROP, c.drop_rate),
            (Fault.ERROR_500, c.error_500_rate),
            (Fault.ERROR_503, c.error_503_rate),
            (Fault.THROTTLE, c.throttle_burst_rate),
        ):
            if roll < rate:
                if fault is Fault.THROTTLE:
                    self._burst_left = max(0, c.throttle_burst_length - 1)
                return fault
            roll -= rate
        return None

    def delay(self) -> float:
        c = self.config
        if c.latency_jitter_seconds == 0:
            return c.latency_seconds
        return c.latency_seconds + self._random.random() * c.latency_jitter_seconds

    def row_is_malformed(self, salt: str, index: int) -> bool:
        """Whether row `index` of the result `salt` is corrupted: stable across pages and runs."""
        rate = self.config.malformed_row_rate
        if rate <= 0.0:
            return False
        digest = hashlib.blake2b(
            f"{self.config.seed}/{salt}/{index}".encode(), digest_size=8
        ).digest()
        return int.from_bytes(digest, "big") / 2**64 < rate


def corrupt_row(row: dict[str, Any], variant: int) -> dict[str, Any]:
    """Break a row the ways real inventories are broken: wrong types, missing or odd structure."""
    key = "properties" if "properties" in row else next((k for k in row if k != "id"), None)
    if key is None:
        return row
    broken: list[Any] = [
        "<<malformed>>",
        None,
        {"storageProfile": [], "extended": 42, "osProfile": "n/a"},
        [row.get(key)],
    ]
    return {**row, key: broken[variant % len(broken)]}


def fault_error(fault: Fault) -> tuple[int, dict[str, Any]]:
    """Status and body for an injected server error."""
    if fault is Fault.ERROR_503:
        return 503, arm_error(
            "ServiceUnavailable", "The service is temporarily unavailable (injected by sandbox)."
        )
    return 500, arm_error(
        "InternalServerError",
        "An unexpected error occurred while processing the request (injected by sandbox).",
    )
