"""Write pacing for ARM: how many writes a subscription may start, and when.

ARM throttles writes per subscription (429 + `Retry-After`). azure-core's retry policy waits out
a 429, but only for the request that got it: the other operations of a large run would keep
meeting 429s. So `PacingPolicy`, a pipeline policy that runs after azure-core's retry policy,
paces every write attempt (retries included) to a `WriteBudget`, stops starting after the
`x-ms-ratelimit-remaining-subscription-writes` header says the window is spent (then one write
at a time probes for the reset), and holds the subscription's new starts until a 429 answered to
a write has passed its `Retry-After`. ARM budgets reads apart from writes, so a throttled status
poll holds nothing. A start takes a `WritePermit` before its request is handed to the SDK, so
cancelling a run while starts wait for one sends nothing more.
https://learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import AsyncHTTPPolicy
from azure.core.rest import AsyncHttpResponse, HttpRequest

from hotpatch.azure.responses import retry_after

__all__ = [
    "PERMIT_OPTION",
    "READ_METHODS",
    "WRITES_REMAINING_HEADER",
    "PacingPolicy",
    "StartAbandonedError",
    "WriteBudget",
    "WritePacer",
    "WritePermit",
]

#: ARM's count of writes the subscription has left in the current throttling window.
WRITES_REMAINING_HEADER = "x-ms-ratelimit-remaining-subscription-writes"
#: How long to hold a subscription after a 429 that names no Retry-After (ARM always does).
_DEFAULT_THROTTLE_HOLD = 5.0
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: The per-call option (and then pipeline context key) carrying a start's `WritePermit`.
PERMIT_OPTION = "hotpatch_write_permit"


@dataclass(frozen=True, slots=True)
class WriteBudget:
    """The writes the client lets itself start per subscription: at most `limit` in any
    `window` (+ `margin`, which covers the delay between sending and ARM counting)."""

    limit: int = 200
    window: timedelta = timedelta(seconds=20)
    margin: timedelta = timedelta(seconds=1)

    def __post_init__(self) -> None:
        if self.limit < 1 or self.window <= timedelta(0) or self.margin < timedelta(0):
            raise ValueError("a write budget needs limit >= 1, a positive window, margin >= 0")


class WritePacer:
    """One subscription's write pace, shared by all its requests.

    Three rules, the strictest wins: no more than the budget in any window (a sliding log of
    send times); after ARM said the window is spent (remaining writes, less the writes still
    unanswered, at 0), one write at a time until one is accepted again; after a 429 answered
    to a write, nothing until its Retry-After has passed. A 429 answered to a read (a status
    poll) spends ARM's read budget, not the write budget: it is recorded and holds nothing;
    azure-core's retry policy waits it out for that request.
    """

    def __init__(
        self,
        subscription: str,
        budget: WriteBudget | None,
        on_throttle: Callable[[str, float, bool], None],
    ) -> None:
        self._subscription = subscription
        self._limit = budget.limit if budget else None
        self._span = (budget.window + budget.margin).total_seconds() if budget else 0.0
        self._on_throttle = on_throttle
        self._sent: deque[float] = deque()
        self._hold_until = 0.0
        #: Writes ARM still allows in its window, less those sent since; None when unknown.
        self._left: int | None = None
        self._in_flight = 0
        self._turn = asyncio.Lock()
        self._changed = asyncio.Event()

    def delay(self) -> float:
        """Seconds until a write may go; infinite while a probe is out."""
        now = time.monotonic()
        delay = self._hold_until - now
        if self._limit is not None:
            while self._sent and self._sent[0] <= now - self._span:
                self._sent.popleft()
            if len(self._sent) >= self._limit:
                delay = max(delay, self._sent[0] + self._span - now)
        if self._left is not None and self._left <= 0 and self._in_flight > 0:
            return math.inf
        return delay

    async def ready(self) -> None:
        while (delay := self.delay()) > 0:
            await self._wait(delay)

    async def before_write(self) -> None:
        # One writer at a time decides, in arrival order, so the budget is never overdrawn.
        # Cancelled while waiting, it has counted nothing.
        async with self._turn:
            await self.ready()
            self._in_flight += 1
            if self._limit is not None:
                self._sent.append(time.monotonic())
            if self._left is not None:
                self._left -= 1

    async def permit(self) -> WritePermit:
        """Wait for the pace and count one write, as `before_write`, for a request not yet
        handed to the SDK: its first attempt spends the permit instead of waiting again."""
        await self.before_write()
        return WritePermit(self)

    def observe(self, status: int, headers: Mapping[str, str], write: bool) -> None:
        if write:
            self._in_flight -= 1
        if status == 429:
            hold = _hold_after_429(headers)
            if write:
                self._hold_until = max(self._hold_until, time.monotonic() + hold)
                # After the hold ARM opens a new window: what it said before no longer holds.
                self._left = None
            self._on_throttle(self._subscription, hold, write)
        elif write:
            remaining = _int_header(headers, WRITES_REMAINING_HEADER)
            if remaining is not None:
                # Writes still unanswered may not have been counted yet: assume they were not.
                self._left = remaining - self._in_flight
        self._changed.set()

    def write_lost(self) -> None:
        """A write counted by `before_write` got no answer at all (connection error,
        cancellation) or was never sent."""
        self._in_flight -= 1
        self._changed.set()

    async def _wait(self, delay: float) -> None:
        self._changed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(None if math.isinf(delay) else delay):
                await self._changed.wait()


class WritePermit:
    """One start request's leave to go, taken from the pacer before the request is handed to
    the SDK, and what became of the request since.

    The request's first attempt spends it; retries are paced on their own. A permit never
    spent goes back to the pacer (`release`). Once `abandoned` (the run was cancelled), an
    attempt not yet sent is not sent at all.
    """

    def __init__(self, pacer: WritePacer) -> None:
        self._pacer = pacer
        self._held = True
        self.abandoned = False
        #: An attempt was handed to the transport.
        self.sent = False
        #: The latest answer was a 429: no operation was started by it.
        self.refused = False

    def spend(self) -> bool:
        """True for the attempt that spends the permit; False once spent or released."""
        held, self._held = self._held, False
        return held

    def release(self) -> None:
        """Give an unspent permit back (its write was counted but is not sent)."""
        if self.spend():
            self._pacer.write_lost()

    def release_after(self, _: object) -> None:
        """`release`, as a done callback of the task sending the request."""
        self.release()


class StartAbandonedError(Exception):
    """A start request of a cancelled run is not sent (a first attempt, or a retry)."""


class PacingPolicy(AsyncHTTPPolicy[HttpRequest, AsyncHttpResponse]):
    """Runs after azure-core's retry policy, so it paces and observes every attempt."""

    def __init__(self, pacer: WritePacer) -> None:
        super().__init__()
        self._pacer = pacer

    async def send(
        self, request: PipelineRequest[HttpRequest]
    ) -> PipelineResponse[HttpRequest, AsyncHttpResponse]:
        write = request.http_request.method.upper() not in READ_METHODS
        permit = _permit_of(request)
        if write:
            if permit is not None and permit.abandoned:
                permit.release()
                raise StartAbandonedError(
                    "the run was cancelled before this start request was sent"
                )
            if permit is None or not permit.spend():
                await self._pacer.before_write()
            if permit is not None:
                permit.sent = True
        try:
            response = await self.next.send(request)
        except BaseException:
            if write:
                self._pacer.write_lost()
            raise
        answer = response.http_response
        self._pacer.observe(answer.status_code, answer.headers, write)
        if write and permit is not None:
            permit.refused = answer.status_code == 429
        return response


def _permit_of(request: PipelineRequest[HttpRequest]) -> WritePermit | None:
    """The start's permit: given as a per-call option (which must not reach the transport),
    kept in the pipeline context for the request's retries. Status polls carry it too."""
    permit = request.context.options.pop(PERMIT_OPTION, None)
    if isinstance(permit, WritePermit):
        request.context[PERMIT_OPTION] = permit
        return permit
    kept = request.context.get(PERMIT_OPTION)
    return kept if isinstance(kept, WritePermit) else None


def _int_header(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _hold_after_429(headers: Mapping[str, str]) -> float:
    """How long a 429 holds the subscription's writes: its Retry-After, else a default."""
    wait = retry_after(headers)
    return _DEFAULT_THROTTLE_HOLD if wait is None else wait
