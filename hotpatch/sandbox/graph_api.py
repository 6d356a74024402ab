"""The sandbox's Resource Graph protocol: `POST /providers/Microsoft.ResourceGraph/resources`.

Scope, paging with `$skipToken` over a cached result, the per-caller quota, and the query's
evaluation on a small pool of worker threads (the event loop never runs DuckDB work). A query
whose client goes away is stopped; one that runs past its limits is stopped by the store.

Which requested subscriptions a caller cannot read is not said in any header: as in Azure, a
caller asks the `resourcecontainers` table which of them it can see.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from aiohttp import web

from hotpatch.sandbox.arm import (
    Fault,
    FaultInjector,
    Quota,
    QuotaDecision,
    SandboxClock,
    WindowQuota,
    arm_error,
    corrupt_row,
    graph_error,
)
from hotpatch.sandbox.arm_http import (
    JSON,
    AnswerNowError,
    integer_option,
    json_response,
    read_json,
    with_ids,
)
from hotpatch.sandbox.graph import GraphStore, QueryError, QueryResult
from hotpatch.sandbox.query_limits import QueryStoppedError, QueryTicket, StopReason

#: Resource Graph answers at most this many subscriptions per request.
MAX_SUBSCRIPTIONS_PER_QUERY = 1000


class GraphSettings(Protocol):
    """What the protocol reads of the sandbox's configuration."""

    @property
    def page_size(self) -> int: ...

    @property
    def max_page_size(self) -> int: ...

    @property
    def result_cache_size(self) -> int: ...

    @property
    def body_timeout_seconds(self) -> float: ...


@dataclass(frozen=True, slots=True)
class GraphScope:
    """The subscriptions a query may read (lower case)."""

    subscriptions: frozenset[str]


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


class GraphCounters(Protocol):
    def count(self, counter: str, key: str) -> None: ...

    def throttled(self) -> None: ...

    def evaluated(self) -> None: ...


class ResourceGraphProtocol:
    """Answers Resource Graph queries over a GraphStore."""

    def __init__(
        self,
        store: GraphStore,
        *,
        settings: GraphSettings,
        clock: SandboxClock,
        quota: Quota | None,
        faults: FaultInjector,
        counters: GraphCounters,
        readable: Callable[[], frozenset[str]],
        management_groups: Callable[[], dict[str, frozenset[str]]],
    ) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self._quota = WindowQuota(quota, clock.monotonic) if quota is not None else None
        self._faults = faults
        self._counters = counters
        self._readable = readable
        self._management_groups = management_groups
        self._results: OrderedDict[str, QueryResult] = OrderedDict()

    async def query(
        self,
        request: web.BaseRequest,
        token: str,
        queries: Executor,
        settle: Callable[[], Any],
    ) -> web.Response:
        headers: dict[str, str] = {}
        if self._quota is not None:
            decision = self._quota.take(token)
            headers = _quota_headers(decision)
            if not decision.allowed:
                self._counters.throttled()
                headers["Retry-After"] = str(decision.retry_after)
                return json_response(429, graph_throttled(self.clock.now()), headers)
        await settle()
        body = await read_json(request, headers, self.settings.body_timeout_seconds)
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise AnswerNowError(
                self._bad_request("The request must carry a non-empty query.", headers)
            )
        options = body.get("options") or {}
        if not isinstance(options, Mapping):
            raise AnswerNowError(self._bad_request("options must be an object.", headers))
        result_format = options.get("resultFormat", "objectArray")
        if result_format not in ("objectArray", "table"):
            raise AnswerNowError(
                self._bad_request("resultFormat must be objectArray or table.", headers)
            )
        try:
            top = integer_option(options, "$top", 1, self.settings.max_page_size)
            skip = integer_option(options, "$skip", 0, None)
        except ValueError as error:
            raise AnswerNowError(self._bad_request(str(error), headers)) from error
        scope = self._scope(body, bool(options.get("allowPartialScopes")), headers)
        key = _result_key(query, scope.subscriptions, result_format)

        offset, page_size = 0, self.settings.page_size
        result: QueryResult | None = None
        evaluation = ""
        skip_token = options.get("$skipToken")
        if skip_token:
            decoded = _decode_token(skip_token)
            if decoded is None or decoded.key != key:
                raise AnswerNowError(
                    json_response(
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
            result = await self._evaluate(query, scope, result_format == "table", headers, queries)
            evaluation = uuid.uuid4().hex
            self._results[evaluation] = result
            while len(self._results) > self.settings.result_cache_size:
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
            next_token = _SkipToken(key, evaluation, end, page_size).encode()
            parts.append(f'"$skipToken":{json.dumps(next_token)}')
        parts.append('"facets":[]')
        rows = "[" + ",".join(page) + "]"
        if result_format == "table":
            columns = json.dumps([{"name": c.name, "type": c.type} for c in result.columns])
            parts.append(f'"data":{{"columns":{columns},"rows":{rows}}}')
        else:
            parts.append(f'"data":{rows}')
        text = "{" + ",".join(parts) + "}"
        return web.Response(
            status=200, body=text.encode(), content_type=JSON, headers=with_ids(headers)
        )

    async def _evaluate(
        self,
        query: str,
        scope: GraphScope,
        table: bool,
        headers: dict[str, str],
        queries: Executor,
    ) -> QueryResult:
        loop = asyncio.get_running_loop()
        ticket = QueryTicket()
        now = self.clock.now()
        future = loop.run_in_executor(
            queries,
            lambda: _run_query(
                self.store,
                query=query,
                subscriptions=scope.subscriptions,
                table=table,
                now=now,
                ticket=ticket,
            ),
        )
        try:
            result = await asyncio.shield(future)
        except asyncio.CancelledError:
            # The client went away: nobody is waiting for this result any more. The worker
            # ends with QueryStoppedError, which nobody reads either.
            ticket.stop(StopReason.CLIENT_GONE)
            future.add_done_callback(_forget_outcome)
            raise
        except QueryError as error:
            raise AnswerNowError(json_response(400, self._query_error(error), headers)) from error
        except QueryStoppedError as error:
            raise asyncio.CancelledError from error
        self._counters.evaluated()
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
        elif error.kind == "limit":
            # The sandbox's own limits; Azure's differ and are not documented as codes.
            detail = {"code": "SandboxQueryLimit", "message": str(error)}
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
        return json_response(
            400,
            graph_error(
                "BadRequest",
                [{"code": "InvalidRequestContent", "message": message}],
                self.clock.now(),
            ),
            headers,
        )

    def _scope(self, body: Mapping[str, Any], partial: bool, headers: dict[str, str]) -> GraphScope:
        """The subscriptions a query may read; 403 for unreadable ones unless `partial`.

        Under allowPartialScopes Azure answers for the readable scopes and names none of the
        others; neither does the sandbox.
        """
        subscriptions = body.get("subscriptions") or []
        groups = body.get("managementGroups") or []
        if not isinstance(subscriptions, list) or not isinstance(groups, list):
            raise AnswerNowError(
                self._bad_request("subscriptions and managementGroups must be lists.", headers)
            )
        if len(subscriptions) > MAX_SUBSCRIPTIONS_PER_QUERY:
            raise AnswerNowError(
                self._bad_request(
                    f"At most {MAX_SUBSCRIPTIONS_PER_QUERY} subscriptions can be queried at "
                    f"once; got {len(subscriptions)}. Send them in batches.",
                    headers,
                )
            )
        readable = self._readable()
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
            raise AnswerNowError(
                json_response(
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
        return GraphScope(frozenset(allowed))

    def _maybe_corrupt(self, key: str, index: int, text: str) -> str:
        if not self._faults.row_is_malformed(key, index):
            return text
        self._counters.count("faults", Fault.MALFORMED_ROW.value)
        row = json.loads(text)
        if not isinstance(row, dict):
            # A `table` row is a list of cells: break the first cell after the id.
            return json.dumps([*row[:1], "<<malformed>>", *row[2:]])
        return json.dumps(corrupt_row(row, index))


def _run_query(
    store: GraphStore,
    *,
    query: str,
    subscriptions: frozenset[str],
    table: bool,
    now: datetime,
    ticket: QueryTicket,
) -> QueryResult:
    return store.query(query, subscriptions, table, now, ticket)


def _forget_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def graph_throttled(now: datetime) -> dict[str, Any]:
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


def _quota_headers(decision: QuotaDecision) -> dict[str, str]:
    return {
        "x-ms-user-quota-remaining": str(decision.remaining),
        "x-ms-user-quota-resets-after": decision.resets_after_text(),
    }


def _result_key(query: str, subscriptions: frozenset[str], result_format: str) -> str:
    material = json.dumps([query, sorted(subscriptions), result_format])
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def _decode_token(text: Any) -> _SkipToken | None:
    if not isinstance(text, str):
        return None
    try:
        fields = json.loads(base64.urlsafe_b64decode(text.encode()))
        key, evaluation, offset, size = fields["k"], fields["e"], fields["o"], fields["n"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    if not (isinstance(key, str) and isinstance(evaluation, str)):
        return None
    if not (isinstance(offset, int) and isinstance(size, int)):
        return None
    return _SkipToken(key, evaluation, max(0, offset), max(1, min(1000, size)))
