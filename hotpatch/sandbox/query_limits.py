"""How much one Resource Graph query may take: time, memory, rows; and how it is stopped.

A query runs on a DuckDB cursor in a worker thread. A `QueryTicket` lets other threads stop it:
the watchdog when its time is up or the process has grown past the memory bound, and the HTTP
side when the client went away. DuckDB checks for an interrupt between chunks of work, so a
stopped query ends within a chunk; the `memory_limit` DuckDB enforces covers its buffers (joins,
sorts, aggregates), and the watchdog's bound on the process's resident memory covers what DuckDB
allocates outside them.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass(frozen=True, slots=True)
class QueryLimits:
    """The budget of one query. The defaults let a 100,000-machine inventory query through."""

    #: Wall time a query may run before it is interrupted.
    seconds: float = 30.0
    #: Rows a result may hold; a query that makes more is refused rather than paged.
    max_rows: int = 1_000_000
    #: DuckDB's `memory_limit`, and how far the process may grow while queries run.
    memory_bytes: int = 4 * 1024**3
    #: DuckDB's worker threads per query.
    threads: int = 2

    def __post_init__(self) -> None:
        if self.seconds <= 0 or self.max_rows < 1 or self.memory_bytes < 64 * 1024**2:
            raise ValueError("query limits need positive seconds, rows, and at least 64 MiB")
        if self.threads < 1:
            raise ValueError("a query needs at least one thread")


class StopReason(StrEnum):
    TIME = "time"
    MEMORY = "memory"
    CLIENT_GONE = "client_gone"


class Interruptible(Protocol):
    def interrupt(self) -> None: ...


class QueryStoppedError(Exception):
    """The query was interrupted; `reason` says why."""

    def __init__(self, reason: StopReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


class QueryTicket:
    """One query's handle, shared by the thread running it and those that may stop it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cursor: Interruptible | None = None
        self.reason: StopReason | None = None
        self.deadline = float("inf")

    def bind(self, cursor: Interruptible, deadline: float) -> None:
        """Called by the worker when it starts: from now on `stop` interrupts `cursor`."""
        with self._lock:
            self._cursor = cursor
            self.deadline = deadline
            if self.reason is not None:
                cursor.interrupt()

    def unbind(self) -> None:
        with self._lock:
            self._cursor = None

    def stop(self, reason: StopReason) -> None:
        """Interrupt the query (now if it runs, at its start if it has not begun)."""
        with self._lock:
            if self.reason is None:
                self.reason = reason
            if self._cursor is not None:
                self._cursor.interrupt()

    def check(self) -> None:
        """Raise QueryStoppedError if the query was stopped (between its statements)."""
        if self.reason is not None:
            raise QueryStoppedError(self.reason)


def resident_bytes() -> int:
    """The process's resident memory, from /proc (0 where there is none)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


class Watchdog:
    """Stops running queries past their deadline, or all of them when the process grows too far.

    One daemon thread, polling only while queries run.
    """

    def __init__(self, limits: QueryLimits, poll_seconds: float = 0.02) -> None:
        self.limits = limits
        self.poll_seconds = poll_seconds
        self._lock = threading.Condition()
        self._running: set[QueryTicket] = set()
        self._baseline = 0
        self._thread: threading.Thread | None = None
        self._closed = False

    def enter(self, ticket: QueryTicket) -> None:
        with self._lock:
            if not self._running:
                # Memory is measured from where the process stood when queries began to run.
                self._baseline = resident_bytes()
            self._running.add(ticket)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._watch, name="sandbox-query-watchdog", daemon=True
                )
                self._thread.start()
            self._lock.notify()

    @property
    def running(self) -> int:
        """Queries running now."""
        with self._lock:
            return len(self._running)

    def leave(self, ticket: QueryTicket) -> None:
        with self._lock:
            self._running.discard(ticket)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._lock.notify()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _watch(self) -> None:
        while True:
            with self._lock:
                while not self._running and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                running = list(self._running)
                bound = self._baseline + self.limits.memory_bytes
            now = time.monotonic()
            for ticket in running:
                if ticket.reason is not None:
                    # Stopped already: interrupt again, in case the first interrupt landed
                    # between two statements, where DuckDB forgets it.
                    ticket.stop(ticket.reason)
                elif now >= ticket.deadline:
                    ticket.stop(StopReason.TIME)
            if resident_bytes() > bound:
                for ticket in running:
                    ticket.stop(StopReason.MEMORY)
            time.sleep(self.poll_seconds)
