"""The local ARM sandbox: an HTTPS server that speaks Resource Graph and Compute patch operations.

The real Azure SDK clients run against it unchanged (`base_url=sandbox.base_url`,
`connection_verify=sandbox.ca_path`, any bearer token). It answers with Azure's shapes, paging
(`$skipToken`), quota headers, 429s and long-running operations, so that the service's real code
paths run without a subscription; seeded fault injection adds the trouble production brings.

It runs on its own thread and event loop; `Sandbox` is usable from synchronous code and from
tests that run their own event loop.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import math
import re
import signal
import ssl
import tempfile
import threading
import time
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import trustme
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from hotpatch.core.calendar import Calendar
from hotpatch.core.releases import ReleaseCatalog
from hotpatch.data import load_release_catalog, shipped_release_catalog
from hotpatch.sandbox.arm import (
    COMPUTE_API_VERSIONS,
    GRAPH_API_VERSIONS,
    HYBRID_COMPUTE_API_VERSIONS,
    ApiVersionRange,
    Clock,
    Fault,
    FaultConfig,
    FaultInjector,
    Quota,
    QuotaDecision,
    WindowQuota,
    arm_error,
    corrupt_row,
    fault_error,
    graph_error,
)
from hotpatch.sandbox.graph import GraphStore, LoadReport, QueryError, QueryResult, RowSource
from hotpatch.sandbox.operations import OperationKind, PatchOperations, StartRefusal
from hotpatch.sandbox.patching import InstallParameters, InvalidParameterError

#: Resource Graph answers at most this many subscriptions per request.
MAX_SUBSCRIPTIONS_PER_QUERY = 1000
#: Response header naming the scopes left out of a partial-scope answer (a sandbox addition).
SKIPPED_SCOPES_HEADER = "x-ms-sandbox-skipped-scopes"

_GRAPH_PATH = re.compile(r"^/providers/microsoft\.resourcegraph/resources/?$", re.IGNORECASE)
_ACTION_PATH = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourcegroups/(?P<rg>[^/]+)/providers/"
    r"(?P<provider>microsoft\.compute/virtualmachines|microsoft\.hybridcompute/machines)/"
    r"(?P<name>[^/]+)/(?P<action>assesspatches|installpatches)/?$",
    re.IGNORECASE,
)
_OPERATION_PATH = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/providers/(?P<provider>microsoft\.compute|"
    r"microsoft\.hybridcompute)/locations/(?P<location>[^/]+)/operations/(?P<op>[^/]+)/?$",
    re.IGNORECASE,
)
_JSON = "application/json"
_log = logging.getLogger(__name__)


class SystemClock:
    """The real time. The sandbox is a shell around the service, so it may read the clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        # The core takes `now` as a parameter; the sandbox is a shell, so its default is the
        # system clock, and tests inject their own Clock instead.
        return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Every knob of the sandbox; the defaults behave like Azure on a quiet day."""

    host: str = "127.0.0.1"
    #: 0 picks a free port.
    port: int = 0
    #: Where `ca.pem` is written; None makes a temporary directory removed on stop.
    state_dir: Path | None = None
    #: Resource Graph's per-caller quota (key: the bearer token); None switches it off.
    graph_quota: Quota | None = field(default_factory=lambda: Quota(15, 5.0))
    #: ARM's write quota per subscription for assess/install; None switches it off.
    write_quota: Quota | None = field(default_factory=lambda: Quota(200, 20.0))
    #: Rows per Resource Graph page when the request gives no `$top`, and the most it may ask.
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
    #: Threads that evaluate queries, so a long query does not hold up other answers.
    query_workers: int = 4
    faults: FaultConfig = field(default_factory=FaultConfig)
    #: Release catalog deciding what installs do; None uses the shipped one.
    release_catalog_path: Path | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= self.max_page_size <= 1000:
            raise ValueError("page sizes must satisfy 1 <= page_size <= max_page_size <= 1000")
        if self.operation_latency_seconds < 0:
            raise ValueError("operation_latency_seconds cannot be negative")
        if self.query_workers < 1 or self.result_cache_size < 1:
            raise ValueError("query_workers and result_cache_size must be at least 1")


@dataclass(frozen=True, slots=True)
class SandboxCounters:
    """What the sandbox has seen and done, for benchmarks and tests."""

    requests: Mapping[str, int]
    throttled: int
    faults: Mapping[str, int]
    queries_evaluated: int
    operations_started: int
    operations_finished: int


@dataclass(frozen=True, slots=True)
class _Scope:
    subscriptions: frozenset[str]
    skipped: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _SkipToken:
    """What a `$skipToken` carries: the query and scope (hashed), the evaluation, the offset."""

    key: str
    evaluation: str
    offset: int
    page_size: int

    def encode(self) -> str:
        fields = {"v": 1, "k": self.key, "e": self.evaluation, "o": self.offset}
        text = json.dumps({**fields, "n": self.page_size}, separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode()).decode()


@dataclass(frozen=True, slots=True)
class _Route:
    name: str
    versions: ApiVersionRange
    match: re.Match[str] | None


class _AnswerNowError(Exception):
    """Raised inside a handler to answer at once with an error."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


class _TrackingServer(web.Server):
    """aiohttp's low-level server, remembering every connection's transport so stop() can cut
    those aiohttp has already let go of (a TLS close waiting for the peer's close_notify)."""

    def __init__(
        self, handler: Callable[[web.BaseRequest], Awaitable[web.StreamResponse]], **kwargs: Any
    ) -> None:
        super().__init__(handler, **kwargs)
        self._transports: weakref.WeakSet[asyncio.Transport] = weakref.WeakSet()

    def connection_made(self, handler: RequestHandler, transport: asyncio.Transport) -> None:
        super().connection_made(handler, transport)
        self._transports.add(transport)

    def abort_all(self) -> None:
        for transport in list(self._transports):
            transport.abort()


class Sandbox:
    """The sandbox server. Use as a context manager, or call start() and stop()."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        rows: RowSource | None = None,
        *,
        clock: Clock | None = None,
        catalog: ReleaseCatalog | None = None,
    ) -> None:
        self.config = config or SandboxConfig()
        self.clock: Clock = clock or SystemClock()
        if catalog is None:
            path = self.config.release_catalog_path
            catalog = load_release_catalog(path) if path else shipped_release_catalog()
        self.store = GraphStore()
        self.operations = PatchOperations(
            self.store, Calendar(catalog), self.clock, self.config.operation_latency_seconds
        )
        self._graph_quota = _quota(self.config.graph_quota, self.clock)
        self._write_quota = _quota(self.config.write_quota, self.clock)
        self._faults = FaultInjector(self.config.faults)
        self._results: OrderedDict[str, QueryResult] = OrderedDict()
        self._requests: dict[str, int] = {}
        self._fault_counts: dict[str, int] = {}
        self._throttled = 0
        self._evaluated = 0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.ServerRunner | None = None
        self._server: _TrackingServer | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        self._startup_error: BaseException | None = None
        self._port = 0
        self.ca_path = Path()
        if rows is not None:
            self.load(rows)

    # -- life cycle ---------------------------------------------------------------------------

    def load(self, rows: RowSource) -> LoadReport:
        """Replace the data with `rows` (three lists of raw Resource Graph rows)."""
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

    def start(self) -> Sandbox:
        if self._thread is not None:
            raise RuntimeError("the sandbox is already running")
        state_dir = self.config.state_dir
        if state_dir is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="hotpatch-sandbox-")
            state_dir = Path(self._temporary.name)
        state_dir.mkdir(parents=True, exist_ok=True)
        ssl_context = self._tls(state_dir)
        self._executor = ThreadPoolExecutor(
            max_workers=self.config.query_workers, thread_name_prefix="sandbox-query"
        )
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
            requests=dict(self._requests),
            throttled=self._throttled,
            faults=dict(self._fault_counts),
            queries_evaluated=self._evaluated,
            operations_started=self.operations.started,
            operations_finished=self.operations.finished,
        )

    def _tls(self, state_dir: Path) -> ssl.SSLContext:
        authority = trustme.CA(organization_name="hotpatch sandbox")
        certificate = authority.issue_cert(self.config.host, "localhost", "127.0.0.1")
        self.ca_path = state_dir / "ca.pem"
        authority.cert_pem.write_to_path(str(self.ca_path))
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
            if self._server is not None:
                # Clients may still hold keep-alive connections, and a TLS connection being
                # shut down waits for its peer: cut them all so no socket outlives the loop.
                self._server.abort_all()
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _listen(self, ssl_context: ssl.SSLContext) -> None:
        self._server = _TrackingServer(self._handle)
        self._runner = web.ServerRunner(self._server, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.config.host, self.config.port, ssl_context=ssl_context
        )
        await site.start()
        address = self._runner.addresses[0]
        self._port = int(address[1])

    def _cleanup(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._temporary is not None:
            self._temporary.cleanup()
            self._temporary = None
        self._runner = None
        self._server = None
        self._loop = None

    # -- dispatch -----------------------------------------------------------------------------

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        route = _route(request.method, request.path)
        self._count(self._requests, route.name)
        try:
            if route.match is None:
                return _json(
                    404,
                    arm_error(
                        "InvalidResourceType",
                        f"The sandbox does not serve {request.method} {request.path}.",
                    ),
                )
            token = _bearer(request)
            if token is None:
                return _unauthenticated()
            bad_version = route.versions.check(request.query.get("api-version"))
            if bad_version is not None:
                return _json(400, bad_version)
            injected = await self._inject(request, route.name)
            if injected is not None:
                return injected
            handler = self._handlers()[route.name]
            return await handler(request, route.match, token)
        except _AnswerNowError as answer:
            return answer.response
        except Exception:
            # A sandbox bug or an odd row: answer like ARM does and keep serving.
            _log.exception("sandbox failed on %s %s", request.method, request.path)
            return _json(
                500,
                arm_error("InternalServerError", "The sandbox failed to process the request."),
            )

    def _handlers(
        self,
    ) -> dict[str, Callable[[web.BaseRequest, re.Match[str], str], Awaitable[web.StreamResponse]]]:
        return {
            "graph.query": self._graph,
            "compute.assessPatches": self._action,
            "compute.installPatches": self._action,
            "compute.operation": self._operation,
        }

    async def _inject(self, request: web.BaseRequest, route: str) -> web.StreamResponse | None:
        delay = self._faults.delay()
        if delay > 0:
            await asyncio.sleep(delay)
        fault = self._faults.draw()
        if fault is None:
            return None
        self._count(self._fault_counts, fault.value)
        if fault is Fault.DROP:
            if request.transport is not None:
                request.transport.abort()
            # Nothing can be written any more; the client sees the connection reset.
            raise asyncio.CancelledError
        if fault is Fault.THROTTLE:
            self._throttled += 1
            retry = self.config.faults.throttle_retry_after_seconds
            body = (
                _graph_throttled(self.clock.now()) if route == "graph.query" else _write_throttled()
            )
            return _json(429, body, {"Retry-After": str(retry)})
        status, body = fault_error(fault)
        return _json(status, body, {"Retry-After": "1"} if status == 503 else None)

    @staticmethod
    def _count(counter: dict[str, int], key: str) -> None:
        counter[key] = counter.get(key, 0) + 1

    # -- Resource Graph -----------------------------------------------------------------------

    async def _graph(self, request: web.BaseRequest, _: re.Match[str], token: str) -> web.Response:
        headers: dict[str, str] = {}
        if self._graph_quota is not None:
            decision = self._graph_quota.take(token)
            headers = _quota_headers(decision)
            if not decision.allowed:
                self._throttled += 1
                headers["Retry-After"] = str(decision.retry_after)
                return _json(429, _graph_throttled(self.clock.now()), headers)
        self.operations.settle_due()
        body = await _read_json(request, headers)
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise _AnswerNowError(
                self._bad_request("The request must carry a non-empty query.", headers)
            )
        options = body.get("options") or {}
        if not isinstance(options, Mapping):
            raise _AnswerNowError(self._bad_request("options must be an object.", headers))
        result_format = options.get("resultFormat", "objectArray")
        if result_format not in ("objectArray", "table"):
            raise _AnswerNowError(
                self._bad_request("resultFormat must be objectArray or table.", headers)
            )
        try:
            top = _integer(options, "$top", 1, self.config.max_page_size)
            skip = _integer(options, "$skip", 0, None)
        except ValueError as error:
            raise _AnswerNowError(self._bad_request(str(error), headers)) from error
        scope = self._scope(body, bool(options.get("allowPartialScopes")), headers)
        if scope.skipped:
            headers[SKIPPED_SCOPES_HEADER] = ",".join(scope.skipped)
        key = _result_key(query, scope.subscriptions, result_format)

        offset, page_size = 0, self.config.page_size
        result: QueryResult | None = None
        evaluation = ""
        skip_token = options.get("$skipToken")
        if skip_token:
            decoded = _decode_token(skip_token)
            if decoded is None or decoded.key != key:
                raise _AnswerNowError(
                    _json(
                        400,
                        graph_error(
                            "BadRequest",
                            [
                                {
                                    "code": "InvalidSkipToken",
                                    "message": "The $skipToken does not belong to this query "
                                    "and scope; send the query and scopes of the first page.",
                                }
                            ],
                            self.clock.now(),
                        ),
                        headers,
                    )
                )
            offset, page_size, evaluation = decoded.offset, decoded.page_size, decoded.evaluation
            # Following pages come from the result the first page was cut from, so a caller
            # pages through one consistent snapshot (evicted: evaluated again).
            result = self._results.get(evaluation)
            if result is not None:
                self._results.move_to_end(evaluation)
        if top is not None:
            page_size = top
        if skip is not None:
            offset = skip
        if result is None:
            result = await self._evaluate(query, scope, result_format == "table", headers)
            evaluation = uuid.uuid4().hex
            self._results[evaluation] = result
            while len(self._results) > self.config.result_cache_size:
                self._results.popitem(last=False)

        total = len(result.rows)
        end = min(total, offset + page_size)
        page = [self._maybe_corrupt(key, index, result.rows[index]) for index in range(offset, end)]
        more = end < total
        parts = [
            f'"totalRecords":{total}',
            f'"count":{len(page)}',
            f'"resultTruncated":"{"true" if more and not result.has_id else "false"}"',
        ]
        if more and result.has_id:
            token = _SkipToken(key, evaluation, end, page_size).encode()
            parts.append(f'"$skipToken":{json.dumps(token)}')
        parts.append('"facets":[]')
        rows = "[" + ",".join(page) + "]"
        if result_format == "table":
            columns = json.dumps([{"name": c.name, "type": c.type} for c in result.columns])
            parts.append(f'"data":{{"columns":{columns},"rows":{rows}}}')
        else:
            parts.append(f'"data":{rows}')
        text = "{" + ",".join(parts) + "}"
        return web.Response(
            status=200, body=text.encode(), content_type=_JSON, headers=_with_ids(headers)
        )

    async def _evaluate(
        self, query: str, scope: _Scope, table: bool, headers: dict[str, str]
    ) -> QueryResult:
        loop = asyncio.get_running_loop()
        assert self._executor is not None
        try:
            result = await loop.run_in_executor(
                self._executor,
                self.store.query,
                query,
                scope.subscriptions,
                table,
                self.clock.now(),
            )
        except QueryError as error:
            raise _AnswerNowError(_json(400, self._query_error(error), headers)) from error
        self._evaluated += 1
        return result

    def _query_error(self, error: QueryError) -> dict[str, Any]:
        detail: dict[str, Any]
        if error.kind == "parse":
            detail = {"code": "ParserFailure", "message": str(error)}
        elif error.kind == "unsupported":
            detail = {
                "code": "UnsupportedQuery",
                "message": f"The sandbox's KQL engine (duckdb-kql) cannot run this: {error}",
            }
        else:
            detail = {"code": "InvalidQuery", "message": str(error)}
        if error.line is not None:
            detail["line"] = error.line
        if error.column is not None:
            detail["characterPositionInLine"] = error.column
        first = {
            "code": "InvalidQuery",
            "message": "Query is invalid. Please refer to the documentation for the Azure "
            "Resource Graph service and fix the error before retrying.",
        }
        return graph_error("BadRequest", [first, detail], self.clock.now())

    def _bad_request(self, message: str, headers: Mapping[str, str]) -> web.Response:
        return _json(
            400,
            graph_error(
                "BadRequest",
                [{"code": "InvalidRequestContent", "message": message}],
                self.clock.now(),
            ),
            headers,
        )

    def _scope(self, body: Mapping[str, Any], partial: bool, headers: dict[str, str]) -> _Scope:
        """The subscriptions a query may read, and the requested scopes it may not."""
        subscriptions = body.get("subscriptions") or []
        groups = body.get("managementGroups") or []
        if not isinstance(subscriptions, list) or not isinstance(groups, list):
            raise _AnswerNowError(
                self._bad_request("subscriptions and managementGroups must be lists.", headers)
            )
        if len(subscriptions) > MAX_SUBSCRIPTIONS_PER_QUERY:
            raise _AnswerNowError(
                self._bad_request(
                    f"At most {MAX_SUBSCRIPTIONS_PER_QUERY} subscriptions can be queried at "
                    f"once; got {len(subscriptions)}. Send them in batches.",
                    headers,
                )
            )
        readable = self.readable_subscriptions
        allowed: set[str] = set()
        skipped: list[str] = []
        if subscriptions:
            for subscription in map(str, subscriptions):
                if subscription.lower() in readable:
                    allowed.add(subscription.lower())
                else:
                    skipped.append(f"/subscriptions/{subscription}")
        elif groups:
            mapping = self._management_groups()
            for group in map(str, groups):
                members = mapping.get(group.lower())
                if members is None:
                    skipped.append(f"/providers/Microsoft.Management/managementGroups/{group}")
                else:
                    allowed |= members & readable
        else:
            allowed = set(readable)
        if skipped and not partial:
            scopes = "', '".join(skipped)
            raise _AnswerNowError(
                _json(
                    403,
                    arm_error(
                        "AuthorizationFailed",
                        "The client does not have authorization to perform action "
                        "'Microsoft.ResourceGraph/resources/read' over scope "
                        f"'{scopes}' or the scope is invalid. Set options.allowPartialScopes "
                        "to answer for the other scopes.",
                    ),
                    headers,
                )
            )
        return _Scope(frozenset(allowed), tuple(skipped))

    def _management_groups(self) -> dict[str, frozenset[str]]:
        configured = self.config.management_groups
        if configured is None:
            return {"root": self.readable_subscriptions}
        return {
            name.lower(): frozenset(s.lower() for s in members)
            for name, members in configured.items()
        }

    def _maybe_corrupt(self, key: str, index: int, text: str) -> str:
        if not self._faults.row_is_malformed(key, index):
            return text
        self._count(self._fault_counts, Fault.MALFORMED_ROW.value)
        row = json.loads(text)
        if not isinstance(row, dict):
            # A `table` row is a list of cells: break the first cell after the id.
            return json.dumps([*row[:1], "<<malformed>>", *row[2:]])
        return json.dumps(corrupt_row(row, index))

    # -- Compute ------------------------------------------------------------------------------

    async def _action(self, request: web.BaseRequest, match: re.Match[str], _: str) -> web.Response:
        subscription, group = match.group("sub"), match.group("rg")
        provider, name = match.group("provider"), match.group("name")
        kind = (
            OperationKind.ASSESS
            if match.group("action").lower() == "assesspatches"
            else OperationKind.INSTALL
        )
        headers: dict[str, str] = {}
        if self._write_quota is not None:
            decision = self._write_quota.take(subscription.lower())
            headers["x-ms-ratelimit-remaining-subscription-writes"] = str(decision.remaining)
            if not decision.allowed:
                self._throttled += 1
                headers["Retry-After"] = str(decision.retry_after)
                return _json(429, _write_throttled(), headers)
        parameters = None
        if kind is OperationKind.INSTALL:
            body = await _read_json(request, headers)
            try:
                parameters = InstallParameters.from_body(body)
            except InvalidParameterError as error:
                return _json(400, arm_error("InvalidParameter", str(error)), headers)
        candidate = (
            f"/subscriptions/{subscription}/resourceGroups/{group}/providers/{provider}/{name}"
        )
        started = self.operations.start(kind, candidate, request.query["api-version"], parameters)
        if started.refusal is StartRefusal.NOT_FOUND:
            hybrid = provider.lower().startswith("microsoft.hybridcompute")
            resource = (
                "Microsoft.HybridCompute/machines"
                if hybrid
                else ("Microsoft.Compute/virtualMachines")
            )
            return _json(
                404,
                arm_error(
                    "ResourceNotFound",
                    f"The Resource '{resource}/{name}' under resource group '{group}' was not "
                    "found. For more details please go to https://aka.ms/ARMResourceNotFoundFix",
                ),
                headers,
            )
        if started.refusal is StartRefusal.BUSY:
            return _json(
                409,
                arm_error(
                    "OperationNotAllowed",
                    f"Operation '{kind.value}' is not allowed on VM '{name}' since another "
                    f"operation ('{started.detail}') is in progress. Retry after it completes.",
                ),
                headers,
            )
        if started.refusal is StartRefusal.NOT_RUNNING:
            return _json(
                409,
                arm_error(
                    "OperationNotAllowed",
                    f"Operation '{kind.value}' is not allowed on VM '{name}' since "
                    f"{started.detail}.",
                ),
                headers,
            )
        operation = started.operation
        assert operation is not None
        location = (
            f"{request.url.origin()}/subscriptions/{subscription}/providers/"
            f"{operation.provider}/locations/{operation.location}/operations/{operation.id}"
            f"?monitor=true&api-version={operation.api_version}"
        )
        headers["Location"] = location
        headers["Retry-After"] = str(self._retry_after(self.config.operation_latency_seconds))
        return web.Response(status=202, headers=_with_ids(headers))

    async def _operation(
        self, request: web.BaseRequest, match: re.Match[str], _: str
    ) -> web.Response:
        operation = self.operations.get(match.group("op"))
        if operation is None:
            return _json(
                404,
                arm_error(
                    "OperationNotFound", f"The operation '{match.group('op')}' was not found."
                ),
            )
        if operation.result is None:
            left = self.operations.seconds_left(operation)
            return web.Response(
                status=202,
                headers=_with_ids(
                    {"Location": str(request.url), "Retry-After": str(self._retry_after(left))}
                ),
            )
        return _json(200, operation.result)

    def _retry_after(self, seconds_left: float) -> int:
        configured = self.config.operation_retry_after_seconds
        return configured if configured is not None else math.ceil(seconds_left)


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


# -- helpers ----------------------------------------------------------------------------------


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
    return _Route("unknown", GRAPH_API_VERSIONS, None)


def _quota(quota: Quota | None, clock: Clock) -> WindowQuota | None:
    return WindowQuota(quota, clock.monotonic) if quota is not None else None


def _bearer(request: web.BaseRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def _unauthenticated() -> web.Response:
    return _json(
        401,
        arm_error(
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing or is not a "
            "bearer token.",
        ),
        {
            "WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/common",'
            ' error="invalid_token", error_description="The authentication failed because of '
            "missing 'Authorization' header.\""
        },
    )


def _graph_throttled(now: datetime) -> dict[str, Any]:
    return graph_error(
        "RateLimiting",
        [
            {
                "code": "RateLimiting",
                "message": "Client application has been throttled and should not attempt to "
                "repeat the request until an amount of time has elapsed. Please see "
                "https://aka.ms/resourcegraph-throttling for help.",
            }
        ],
        now,
    )


def _write_throttled() -> dict[str, Any]:
    return arm_error(
        "TooManyRequests",
        "The request is being throttled as the limit has been reached for operation type - "
        "Write_Subscription. Retry after the time in the Retry-After header.",
    )


def _quota_headers(decision: QuotaDecision) -> dict[str, str]:
    return {
        "x-ms-user-quota-remaining": str(decision.remaining),
        "x-ms-user-quota-resets-after": decision.resets_after_text(),
    }


def _with_ids(headers: Mapping[str, str]) -> dict[str, str]:
    request_id = str(uuid.uuid4())
    return {**headers, "x-ms-request-id": request_id, "x-ms-correlation-request-id": request_id}


def _json(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(body).encode(),
        content_type=_JSON,
        headers=_with_ids(headers or {}),
    )


async def _read_json(request: web.BaseRequest, headers: Mapping[str, str]) -> Mapping[str, Any]:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        body = None
    if not isinstance(body, dict):
        raise _AnswerNowError(
            _json(
                400,
                arm_error(
                    "InvalidRequestContent",
                    "The request content was invalid and could not be "
                    "deserialized: expected a JSON object.",
                ),
                headers,
            )
        )
    return body


def _integer(options: Mapping[str, Any], name: str, low: int, high: int | None) -> int | None:
    """The option's value, or None when absent; ValueError says what is wrong with it."""
    value = options.get(name)
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < low
        or (high is not None and value > high)
    ):
        bound = f"between {low} and {high}" if high is not None else f"of at least {low}"
        raise ValueError(f"options.{name} must be an integer {bound}; got {value!r}.")
    return value


def _result_key(query: str, subscriptions: frozenset[str], result_format: str) -> str:
    material = json.dumps([query, sorted(subscriptions), result_format])
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def _decode_token(text: Any) -> _SkipToken | None:
    if not isinstance(text, str):
        return None
    try:
        fields = json.loads(base64.urlsafe_b64decode(text.encode()))
        key, evaluation, offset, size = fields["k"], fields["e"], fields["o"], fields["n"]
    except (ValueError, KeyError, TypeError):
        return None
    if not (isinstance(key, str) and isinstance(evaluation, str)):
        return None
    if not (isinstance(offset, int) and isinstance(size, int)):
        return None
    return _SkipToken(key, evaluation, max(0, offset), max(1, min(1000, size)))
