"""The local ARM sandbox's life cycle: start, serve, stop; and the routing of its requests.

An HTTPS server that speaks Resource Graph (`graph_api`) and Compute (`compute_api`), so that
the real Azure SDK clients run against it unchanged (`base_url=sandbox.base_url`,
`connection_verify=sandbox.ca_path`, any bearer token), with Azure's shapes, paging, quota
headers, 429s and long-running operations, plus seeded fault injection.

It loads real exports and listens on a port, so it is locked down: queries read only the
estate (`kql_guard`) under time, memory and row limits (`query_limits`), on worker threads,
never on the event loop; connections are capped and timed (`listener`); bodies are bounded in
size and depth (`arm_http`).

It runs on its own thread and event loop; `Sandbox` is usable from synchronous code and from
tests that run their own event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import secrets
import signal
import ssl
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import trustme
from aiohttp import web

from hotpatch.core.calendar import Calendar
from hotpatch.core.releases import ReleaseCatalog
from hotpatch.data import load_release_catalog, shipped_release_catalog
from hotpatch.sandbox.arm import (
    COMPUTE_API_VERSIONS,
    GRAPH_API_VERSIONS,
    HYBRID_COMPUTE_API_VERSIONS,
    ApiVersionRange,
    Fault,
    FaultConfig,
    FaultInjector,
    Quota,
    SandboxClock,
    WindowQuota,
    arm_error,
    fault_error,
)
from hotpatch.sandbox.arm_http import (
    AnswerNowError,
    bearer,
    json_response,
    read_json,
    unauthenticated,
)
from hotpatch.sandbox.compute_api import ComputeProtocol, write_throttled
from hotpatch.sandbox.graph import GraphStore, LoadReport, RowSource
from hotpatch.sandbox.graph_api import ResourceGraphProtocol, graph_throttled
from hotpatch.sandbox.listener import ListenedServer, Listener
from hotpatch.sandbox.operations import OperationTracker
from hotpatch.sandbox.query_limits import QueryLimits
from hotpatch.sandbox.request_log import LoggedInstall, LoggedRequest, RequestLog, install_fields

_GRAPH_PATH = re.compile(r"^/providers/microsoft\.resourcegraph/resources/?$", re.IGNORECASE)
_PROVIDER = r"(?P<provider>microsoft\.compute/virtualmachines|microsoft\.hybridcompute/machines)"
_ACTION_PATH = re.compile(
    rf"^/subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)/providers/{_PROVIDER}/"
    r"(?P<name>[^/]+)/(?P<action>assesspatches|installpatches)/?$",
    re.IGNORECASE,
)
_OPERATION_PATH = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/providers/(?P<provider>microsoft\.compute|"
    r"microsoft\.hybridcompute)/locations/(?P<location>[^/]+)/operations/(?P<op>[^/]+)/?$",
    re.IGNORECASE,
)
#: The plain ARM reads: list by subscription, list by resource group, get one.
_MACHINES_PATH = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)(?:/resourcegroups/(?P<rg>[^/]+))?/providers/"
    rf"{_PROVIDER}(?:/(?P<name>[^/]+))?/?$",
    re.IGNORECASE,
)
#: The routes whose every request goes into the request log (`request_log`).
_LOGGED_ROUTES = frozenset({"compute.assessPatches", "compute.installPatches"})
_log = logging.getLogger(__name__)


class SystemClock:
    """The real time. The sandbox is a shell around the service, so it may read the clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        # The core takes `now` as a parameter; the sandbox is a shell, so its default is the
        # system clock, and tests inject their own SandboxClock instead.
        return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Every knob of the sandbox; the defaults behave like Azure on a quiet day."""

    host: str = "127.0.0.1"
    #: 0 picks a free port.
    port: int = 0
    #: Where `ca.pem` and the request log (`requests.jsonl`, read with
    #: `hotpatch.sandbox.request_log.read_requests`) are written; None makes a temporary
    #: directory removed on stop.
    state_dir: Path | None = None
    #: Resource Graph's per-caller quota (key: the bearer token); None switches it off.
    graph_quota: Quota | None = field(default_factory=lambda: Quota(15, 5.0))
    #: ARM's write quota per subscription for assess/install; None switches it off.
    write_quota: Quota | None = field(default_factory=lambda: Quota(200, 20.0))
    #: Rows per Resource Graph page when the request gives no `$top`, and the most it may ask;
    #: also the page size of the ARM machine lists.
    page_size: int = 100
    max_page_size: int = 1000
    #: Subscriptions the caller may read; None means every subscription in the data.
    subscriptions: frozenset[str] | None = None
    #: Management group name -> its subscriptions; None means one group "root" holding all.
    management_groups: Mapping[str, Collection[str]] | None = None
    #: How long an assess or install runs before its result is ready.
    operation_latency_seconds: float = 0.2
    #: `Retry-After` on 202 answers; None sends the seconds left, rounded up.
    operation_retry_after_seconds: int | None = None
    #: Query results kept for the following pages (each up to a whole result).
    result_cache_size: int = 16
    #: Threads that evaluate queries, so a long query does not hold up other answers: a heavy
    #: query holds one for at most its time limit.
    query_workers: int = 4
    #: Each query's time, memory and row budget.
    query_limits: QueryLimits = field(default_factory=QueryLimits)
    faults: FaultConfig = field(default_factory=FaultConfig)
    #: Ids of machines whose installs fail (every patch the install selects), to rehearse a
    #: release that breaks a ring.
    failing_installs: frozenset[str] = frozenset()
    #: Release catalog deciding what installs do; None uses the shipped one.
    release_catalog_path: Path | None = None
    #: Open connections at most; at the cap the oldest idle one makes room.
    max_connections: int = 256
    #: Time for a TLS handshake, and for a request's headers to arrive (and for an idle
    #: keep-alive connection before it is closed).
    handshake_seconds: float = 10.0
    header_seconds: float = 15.0
    #: Largest request body (413 beyond), and time for it to arrive (408 beyond).
    max_body_bytes: int = 1024 * 1024
    body_timeout_seconds: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= self.max_page_size <= 1000:
            raise ValueError("page sizes must satisfy 1 <= page_size <= max_page_size <= 1000")
        if self.operation_latency_seconds < 0:
            raise ValueError("operation_latency_seconds cannot be negative")
        if self.query_workers < 1 or self.result_cache_size < 1:
            raise ValueError("query_workers and result_cache_size must be at least 1")
        if self.max_connections < 1 or self.max_body_bytes < 1024:
            raise ValueError("max_connections must be positive and max_body_bytes at least 1 KiB")
        if min(self.handshake_seconds, self.header_seconds, self.body_timeout_seconds) <= 0:
            raise ValueError("connection timeouts must be positive")


@dataclass(frozen=True, slots=True)
class SandboxCounters:
    """What the sandbox has seen and done, for benchmarks and tests."""

    requests: Mapping[str, int]
    throttled: int
    faults: Mapping[str, int]
    queries_evaluated: int
    operations_started: int
    operations_finished: int


class _Counters:
    """The mutable tallies behind SandboxCounters, written on the event loop only."""

    def __init__(self) -> None:
        self.requests: dict[str, int] = {}
        self.faults: dict[str, int] = {}
        self.throttled_count = 0
        self.evaluated_count = 0

    def count(self, counter: str, key: str) -> None:
        table = self.faults if counter == "faults" else self.requests
        table[key] = table.get(key, 0) + 1

    def throttled(self) -> None:
        self.throttled_count += 1

    def evaluated(self) -> None:
        self.evaluated_count += 1


@dataclass(frozen=True, slots=True)
class _Route:
    name: str
    versions: ApiVersionRange
    match: re.Match[str] | None


class Sandbox:
    """The sandbox server. Use as a context manager, or call start() and stop()."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        rows: RowSource | None = None,
        *,
        clock: SandboxClock | None = None,
        catalog: ReleaseCatalog | None = None,
    ) -> None:
        self.config = config or SandboxConfig()
        self.clock: SandboxClock = clock or SystemClock()
        if catalog is None:
            path = self.config.release_catalog_path
            catalog = load_release_catalog(path) if path else shipped_release_catalog()
        self.store = GraphStore(self.config.query_limits)
        self.operations = OperationTracker(
            self.store,
            Calendar(catalog),
            self.clock,
            self.config.operation_latency_seconds,
            failing_installs=frozenset(m.casefold() for m in self.config.failing_installs),
        )
        self._counters = _Counters()
        self._faults = FaultInjector(self.config.faults)
        self.graph = ResourceGraphProtocol(
            self.store,
            settings=self.config,
            clock=self.clock,
            quota=self.config.graph_quota,
            faults=self._faults,
            counters=self._counters,
            readable=lambda: self.readable_subscriptions,
            management_groups=self._management_groups,
        )
        write_quota = self.config.write_quota
        self.compute = ComputeProtocol(
            self.operations,
            store=self.store,
            settings=self.config,
            write_quota=(
                WindowQuota(write_quota, self.clock.monotonic) if write_quota is not None else None
            ),
            counters=self._counters,
            readable=lambda: self.readable_subscriptions,
        )
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: Listener | None = None
        self._server: ListenedServer | None = None
        self._tcp: asyncio.Server | None = None
        self._queries: ThreadPoolExecutor | None = None
        self._writes: ThreadPoolExecutor | None = None
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        self._request_log: RequestLog | None = None
        #: The state directory in use while the sandbox runs (a temporary one if none is set).
        self.state_dir: Path | None = None
        self._startup_error: BaseException | None = None
        self._port = 0
        self.ca_path = Path()
        if rows is not None:
            self.load(rows)

    # -- life cycle ---------------------------------------------------------------------------

    def load(self, rows: RowSource) -> LoadReport:
        """Replace the data with `rows` (a list of raw Resource Graph rows per table)."""
        report = self.store.load(rows)
        self.operations.forget_machines()
        return report

    @property
    def readable_subscriptions(self) -> frozenset[str]:
        """The subscriptions a caller may query (lower case)."""
        configured = self.config.subscriptions
        if configured is not None:
            return frozenset(s.lower() for s in configured)
        return self.store.subscriptions()

    @property
    def base_url(self) -> str:
        if self._thread is None:
            raise RuntimeError("the sandbox is not running; call start() first")
        return f"https://{self.config.host}:{self._port}"

    @property
    def open_connections(self) -> int:
        """Connections open now (read from another thread: a snapshot, for tests)."""
        return self._listener.open_connections if self._listener is not None else 0

    def start(self) -> Sandbox:
        if self._thread is not None:
            raise RuntimeError("the sandbox is already running")
        state_dir = self.config.state_dir
        if state_dir is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="hotpatch-sandbox-")
            state_dir = Path(self._temporary.name)
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = state_dir
        self._request_log = RequestLog(state_dir)
        ssl_context = self._tls(state_dir)
        self._queries = ThreadPoolExecutor(
            max_workers=self.config.query_workers, thread_name_prefix="sandbox-query"
        )
        # One writer: the operation book and its table writes are used by one thread only.
        self._writes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-write")
        ready = threading.Event()
        self._startup_error = None
        self._thread = threading.Thread(
            target=self._run, args=(ssl_context, ready), name="hotpatch-sandbox", daemon=True
        )
        self._thread.start()
        ready.wait()
        if self._startup_error is not None:
            error, self._startup_error = self._startup_error, None
            self._thread.join()
            self._thread = None
            self._cleanup()
            raise RuntimeError(f"the sandbox could not start: {error}") from error
        return self

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        self._thread = None
        self._cleanup()

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def counters(self) -> SandboxCounters:
        return SandboxCounters(
            requests=dict(self._counters.requests),
            throttled=self._counters.throttled_count,
            faults=dict(self._counters.faults),
            queries_evaluated=self._counters.evaluated_count,
            operations_started=self.operations.started,
            operations_finished=self.operations.finished,
        )

    def _tls(self, state_dir: Path) -> ssl.SSLContext:
        authority = trustme.CA(organization_name="hotpatch sandbox")
        certificate = authority.issue_cert(self.config.host, "localhost", "127.0.0.1")
        self.ca_path = state_dir / "ca.pem"
        write_without_following(self.ca_path, authority.cert_pem.bytes())
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        certificate.configure_cert(context)
        return context

    def _run(self, ssl_context: ssl.SSLContext, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._listen(ssl_context))
        except BaseException as error:  # reported to start() in the caller's thread
            self._startup_error = error
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            if self._tcp is not None:
                self._tcp.close()
            if self._listener is not None:
                # Clients may still hold keep-alive connections, and a TLS connection being
                # shut down waits for its peer: cut them all so no socket outlives the loop.
                self._listener.abort_all()
            if self._server is not None:
                loop.run_until_complete(self._server.shutdown(0.1))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _listen(self, ssl_context: ssl.SSLContext) -> None:
        config = self.config
        self._server = ListenedServer(
            self._handle,
            # A client that goes away cancels its handler, which stops its query.
            handler_cancellation=True,
            # aiohttp arms this when a connection opens and after each answer, and closes a
            # connection still waiting for its request headers when it fires: the header-read
            # timeout.
            keepalive_timeout=config.header_seconds,
            access_log=None,
        )
        self._listener = Listener(
            self._server,
            ssl_context,
            max_connections=config.max_connections,
            handshake_seconds=config.handshake_seconds,
        )
        self._server.listener = self._listener
        self._server.max_body_bytes = config.max_body_bytes
        self._tcp = await self._listener.listen(config.host, config.port)
        self._port = int(self._tcp.sockets[0].getsockname()[1])

    def _cleanup(self) -> None:
        for executor in (self._queries, self._writes):
            if executor is not None:
                executor.shutdown(wait=True)
        self._queries = self._writes = None
        if self._request_log is not None:
            self._request_log.close()
            self._request_log = None
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None
        self._listener = None
        self._server = None
        self._tcp = None
        self._loop = None

    def _management_groups(self) -> dict[str, frozenset[str]]:
        configured = self.config.management_groups
        if configured is None:
            return {"root": self.readable_subscriptions}
        return {
            name.lower(): frozenset(s.lower() for s in members)
            for name, members in configured.items()
        }

    # -- dispatch -----------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        route = _route(request.method, request.path)
        self._counters.count("requests", route.name)
        if route.name in _LOGGED_ROUTES:
            return await self._logged(request, route)
        return await self._answer(request, route)

    async def _logged(self, request: web.BaseRequest, route: _Route) -> web.StreamResponse:
        """Answer, then log the request with its answer (also when refused or dropped)."""
        install = route.name == "compute.installPatches"
        try:
            response = await self._answer(request, route)
            # A body too large or too slow was given up on: it is not waited for twice.
            readable = response.status not in {408, 413}
            body = await self._install_body(request) if install and readable else None
        except asyncio.CancelledError:
            # Dropped (a fault) or the client went away: no answer was given.
            self._log_request(request, route, None, None)
            raise
        self._log_request(request, route, response.status, body)
        return response

    async def _install_body(self, request: web.BaseRequest) -> LoggedInstall | None:
        # The handler has read the body already when it got that far (aiohttp keeps it); a
        # request refused before that is read here, so the log shows what it asked for.
        try:
            body = await read_json(request, {}, self.config.body_timeout_seconds)
        except AnswerNowError:
            return None
        except Exception:  # the connection broke: log the request without its body
            _log.debug("could not read the body of %s %s", request.method, request.path)
            return None
        return install_fields(body)

    def _log_request(
        self,
        request: web.BaseRequest,
        route: _Route,
        status: int | None,
        install: LoggedInstall | None,
    ) -> None:
        if self._request_log is None:
            return
        path = request.path.rstrip("/")
        try:
            self._request_log.append(
                LoggedRequest(
                    time=self.clock.now(),
                    method=request.method,
                    path=request.path,
                    machine_id=path.rsplit("/", 1)[0],
                    operation=route.name.removeprefix("compute."),
                    client_request_id=request.headers.get("x-ms-client-request-id"),
                    status=status,
                    install=install,
                )
            )
        except OSError:
            # A full disk must not stop the sandbox answering; its own log says what was lost.
            _log.exception("the request log could not be written")

    async def _answer(self, request: web.BaseRequest, route: _Route) -> web.StreamResponse:
        try:
            if route.match is None:
                return json_response(
                    404,
                    arm_error(
                        "InvalidResourceType",
                        f"The sandbox does not serve {request.method} {request.path}.",
                    ),
                )
            token = bearer(request)
            if token is None:
                return unauthenticated()
            bad_version = route.versions.check(request.query.get("api-version"))
            if bad_version is not None:
                return json_response(400, bad_version)
            injected = await self._inject(request, route.name)
            if injected is not None:
                return injected
            return await self._dispatch(route.name, request, route.match, token)
        except AnswerNowError as answer:
            return answer.response
        except Exception:
            # A sandbox bug or an odd row: answer like ARM does and keep serving.
            _log.exception("sandbox failed on %s %s", request.method, request.path)
            return json_response(
                500,
                arm_error("InternalServerError", "The sandbox failed to process the request."),
            )

    async def _dispatch(
        self, name: str, request: web.BaseRequest, match: re.Match[str], token: str
    ) -> web.Response:
        queries, writes = self._queries, self._writes
        assert queries is not None
        assert writes is not None
        if name == "graph.query":
            settle = _on_thread(writes, self.operations.settle_due)
            return await self.graph.query(request, token, queries, settle)
        if name == "compute.operation":
            return await self.compute.operation(request, match, writes)
        if name.startswith("compute.read"):
            return await self.compute.read_machines(request, match, queries)
        return await self.compute.action(request, match, writes)

    async def _inject(self, request: web.BaseRequest, route: str) -> web.StreamResponse | None:
        delay = self._faults.delay()
        if delay > 0:
            await asyncio.sleep(delay)
        fault = self._faults.draw()
        if fault is None:
            return None
        self._counters.count("faults", fault.value)
        if fault is Fault.DROP:
            if request.transport is not None:
                request.transport.abort()
            # Nothing can be written any more; the client sees the connection reset.
            raise asyncio.CancelledError
        if fault is Fault.THROTTLE:
            self._counters.throttled()
            retry = self.config.faults.throttle_retry_after_seconds
            body = (
                graph_throttled(self.clock.now()) if route == "graph.query" else write_throttled()
            )
            return json_response(429, body, {"Retry-After": str(retry)})
        status, body = fault_error(fault)
        return json_response(status, body, {"Retry-After": "1"} if status == 503 else None)


def write_without_following(path: Path, content: bytes) -> None:
    """Write `content` to `path` without following a symlink planted at it or at a temporary
    name: a new file (O_EXCL, O_NOFOLLOW) renamed over `path` (a rename replaces a link, it
    does not write through it)."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    descriptor = os.open(temporary, flags, 0o644)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _on_thread(
    executor: ThreadPoolExecutor, work: Callable[[], object]
) -> Callable[[], Awaitable[object]]:
    async def run() -> object:
        return await asyncio.get_running_loop().run_in_executor(executor, work)

    return run


def serve_forever(config: SandboxConfig | None = None, rows: RowSource | None = None) -> None:
    """Run a sandbox until Ctrl-C or SIGTERM, printing where it listens and its CA file."""
    stopped = threading.Event()
    previous = None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM (a service manager, `docker stop`) stops it as cleanly as Ctrl-C does.
        previous = signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    try:
        with Sandbox(config, rows) as sandbox:
            print(f"hotpatch sandbox listening on {sandbox.base_url}", flush=True)
            print(
                f"CA certificate: {sandbox.ca_path} "
                "(give it to clients as connection_verify, or set REQUESTS_CA_BUNDLE)",
                flush=True,
            )
            try:
                while not stopped.wait(1.0):
                    pass
            except KeyboardInterrupt:
                pass
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _route(method: str, path: str) -> _Route:
    if method == "POST" and (found := _GRAPH_PATH.match(path)):
        return _Route("graph.query", GRAPH_API_VERSIONS, found)
    if method == "POST" and (found := _ACTION_PATH.match(path)):
        hybrid = found.group("provider").lower().startswith("microsoft.hybridcompute")
        versions = HYBRID_COMPUTE_API_VERSIONS if hybrid else COMPUTE_API_VERSIONS
        assess = found.group("action").lower() == "assesspatches"
        return _Route(f"compute.{'assessPatches' if assess else 'installPatches'}", versions, found)
    if method == "GET" and (found := _OPERATION_PATH.match(path)):
        hybrid = found.group("provider").lower() == "microsoft.hybridcompute"
        versions = HYBRID_COMPUTE_API_VERSIONS if hybrid else COMPUTE_API_VERSIONS
        return _Route("compute.operation", versions, found)
    if method == "GET" and (found := _MACHINES_PATH.match(path)):
        hybrid = found.group("provider").lower().startswith("microsoft.hybridcompute")
        versions = HYBRID_COMPUTE_API_VERSIONS if hybrid else COMPUTE_API_VERSIONS
        kind = "get" if found.group("name") else "list"
        return _Route(f"compute.read.{kind}", versions, found)
    return _Route("unknown", GRAPH_API_VERSIONS, None)
