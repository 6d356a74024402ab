"""The HTTP compliance API: a Starlette app over the store and the rules, built by `create_app`.

Handlers translate: parameters in (read strictly, see `params`), a use case or the snapshot
index called, a document out. Work that touches the store runs in a worker thread; a page of
the latest snapshot is answered from its in-memory index (`index`). Nothing is read before the
first request that needs it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any
from urllib.parse import quote_plus, unquote_plus

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hotpatch import __version__
from hotpatch.api import openapi
from hotpatch.api.access import PRINCIPAL_HEADER, Access, AccessMiddleware
from hotpatch.api.assessments import AssessmentStarter, assessment_request
from hotpatch.api.index import (
    TREND_LIMIT,
    ComplianceFilter,
    LatestIndex,
    SnapshotIndex,
    TokenError,
    decode_token,
    encode_token,
    every_row,
)
from hotpatch.api.params import (
    COMPLIANCE_PARAMETERS,
    LAST_MONTH,
    MONTHS_DEFAULT,
    MONTHS_MAX,
    PAGE_DEFAULT,
    PAGE_MAX,
    RUN_ID,
    RUNS_DEFAULT,
    RUNS_MAX,
    TREND_DEFAULT,
    Params,
    compliance_filter,
    month,
    run_kind,
)
from hotpatch.api.problems import (
    AMBIGUOUS,
    BAD_BODY,
    EXPIRED_TOKEN,
    INTERNAL,
    METHOD_NOT_ALLOWED,
    NOT_FOUND,
    TOO_LARGE,
    UNAVAILABLE,
    UNSUPPORTED_MEDIA_TYPE,
    InvalidParam,
    Problem,
    bad_body,
    bad_parameter,
)
from hotpatch.bootstrap import World
from hotpatch.core.calendar import YearMonth
from hotpatch.core.eligibility import image_eligibility
from hotpatch.core.models import ImageRef, OsFamily
from hotpatch.core.plan import plan
from hotpatch.errors import ConfigurationError, HotpatchError, StoreError
from hotpatch.plan_report import plan_json
from hotpatch.policy_file import load_policy
from hotpatch.ports.store import Store
from hotpatch.remediation import rollout_state
from hotpatch.report import (
    calendar_json,
    csv_text,
    iso,
    operation_json,
    run_json,
    transition_json,
)

_log = logging.getLogger(__name__)

#: The largest request body taken (an assessment request naming 1000 machines fits).
MAX_BODY_BYTES = 256 * 1024
#: Image fields are short names; longer ones are not an image.
IMAGE_FIELD_MAX = 256

CSV_COLUMNS = (
    "id",
    "name",
    "state",
    "eligible",
    "action",
    "reason_codes",
    "reasons",
    "os",
    "subscription_id",
    "resource_group",
    "ring",
    "tags",
    "build",
    "release_month",
    "last_assessed",
    "next_restart",
)
#: Parameters a next page's link does not repeat: the old token, and the API key.
_NOT_REPEATED = frozenset({"continuationToken", "code"})
#: A query parameter that may be repeated as it was written: nothing a URL would read otherwise.
_PLAIN_PARAMETER = re.compile(r"[\w.~%+=:,/@!$'()*;-]*", re.ASCII)
_ARM_ID = re.compile(r"^/*subscriptions/", re.IGNORECASE)


def create_app(
    store: Store,
    world: World,
    *,
    start_assessment: AssessmentStarter | None = None,
    api_key: str | None = None,
    refresh_seconds: float = 5.0,
) -> Starlette:
    """The API over `store`, judging with `world`'s rules and clock.

    `start_assessment`: what `POST /api/assessments` hands a request to (None: 503).
    `api_key`: a key every request but health and the OpenAPI document must carry (`hotpatch
    serve`); None when the Functions host checks function keys. `world.settings.require_roles`
    switches on the App Service app-role check. `refresh_seconds`: how often the store's latest
    pointer is looked at (0: every request). Builds nothing that does I/O: the store is first
    read by the first request that needs it.
    """
    api = _Api(store, world, start_assessment, LatestIndex(store, refresh_seconds=refresh_seconds))
    routes = [
        Route("/api/health", api.health, methods=["GET"]),
        Route("/api/openapi.json", api.openapi, methods=["GET"]),
        Route("/api/compliance", api.compliance, methods=["GET"]),
        Route("/api/compliance/summary", api.summary, methods=["GET"]),
        Route("/api/compliance/{machine:path}", api.machine, methods=["GET"]),
        Route("/api/calendar", api.calendar, methods=["GET"]),
        Route("/api/images/check", api.check_image, methods=["POST"]),
        Route("/api/runs", api.runs, methods=["GET"]),
        Route("/api/runs/{id}", api.run, methods=["GET"]),
        Route("/api/plan", api.plan, methods=["GET"]),
        Route("/api/assessments", api.assessments, methods=["POST"]),
    ]
    access = Access(api_key=api_key, require_roles=world.settings.require_roles)
    return Starlette(
        routes=routes,
        middleware=[Middleware(_Guard), Middleware(AccessMiddleware, access=access)],
        exception_handlers={Problem: _problem, HTTPException: _http_problem},
    )


class _Api:
    def __init__(
        self,
        store: Store,
        world: World,
        start_assessment: AssessmentStarter | None,
        latest: LatestIndex,
    ) -> None:
        self.store = store
        self.world = world
        self.start_assessment = start_assessment
        self.latest = latest
        self._planning: asyncio.Lock | None = None  # made on the serving loop

    # -- health and the description -----------------------------------------------------------

    async def health(self, request: Request) -> Response:
        Params(request.query_params.multi_items())
        index = self.latest.loaded
        return JSONResponse(
            {
                "status": "ok",
                "version": __version__,
                "snapshot": None if index is None else index.snapshot_json(),
            }
        )

    async def openapi(self, request: Request) -> Response:
        Params(request.query_params.multi_items())
        return JSONResponse(openapi.document())

    # -- compliance ---------------------------------------------------------------------------

    async def compliance(self, request: Request) -> Response:
        params = Params(request.query_params.multi_items(), COMPLIANCE_PARAMETERS)
        query = compliance_filter(params)
        size = params.whole("top", PAGE_DEFAULT, 1, PAGE_MAX)
        kind = params.choice("format", ("json", "csv"), "json")
        token = params.one("continuationToken")
        index = await self._index()
        start = 0
        if token is not None:
            index, start = await self._resume(token, query, index)
        page = index.page(query, start, size)
        next_token = None
        next_link = None
        if page.next_row is not None and index.run_id is not None:
            next_token = encode_token(index.run_id, page.next_row, query)
            next_link = _next_link(request, next_token)
        if kind == "csv":
            headers = {}
            if next_token is not None and next_link is not None:
                headers = {"X-Continuation-Token": next_token, "Link": f'<{next_link}>; rel="next"'}
            text = csv_text(CSV_COLUMNS, (_csv_row(index.document(row)) for row in page.rows))
            return Response(text, media_type="text/csv; charset=utf-8", headers=headers)
        # The rows' JSON was made when the snapshot was indexed: the body is one join of it.
        pieces = [b'{"snapshot":', index.snapshot_bytes, b',"value":[']
        pieces += index.item_pieces(page.rows)
        pieces += (
            b'],"continuationToken":',
            _json(next_token),
            b',"nextLink":',
            _json(next_link),
            b"}",
        )
        return Response(b"".join(pieces), media_type="application/json")

    async def summary(self, request: Request) -> Response:
        params = Params(request.query_params.multi_items(), {"trend"})
        limit = params.whole("trend", TREND_DEFAULT, 0, TREND_LIMIT)
        index = await self._index()
        info = index.info
        counts = info.counts if info is not None else None
        trend = index.trend[len(index.trend) - limit :] if limit else ()
        return JSONResponse(
            {
                "snapshot": index.snapshot_json(),
                "machines": counts.machines if counts else 0,
                "eligible": counts.eligible if counts else 0,
                "by_state": counts.by_state if counts else {},
                "by_subscription": counts.by_subscription if counts else {},
                "by_os": counts.by_os if counts else {},
                "by_ring": counts.by_ring if counts else {},
                "trend": [
                    {
                        "run_id": past.run_id,
                        "taken_at": iso(past.taken_at),
                        "machines": past.counts.machines,
                        "eligible": past.counts.eligible,
                        "by_state": past.counts.by_state,
                    }
                    for past in trend
                ],
            }
        )

    async def machine(self, request: Request) -> Response:
        Params(request.query_params.multi_items())
        asked: str = request.path_params["machine"].strip()
        index = await self._index()
        machine_id, row = _resolve(index, asked)
        transitions, operations = await run_in_threadpool(
            lambda: (self.store.history(machine_id), self.store.journal(machine_id=machine_id))
        )
        if row is None and not transitions and not operations:
            raise Problem(
                404,
                f"the store holds no verdict, transition or operation of {asked}",
                type=NOT_FOUND,
            )
        verdict = index.document(row) if row is not None else None
        return JSONResponse(
            {
                "machine": verdict["id"] if verdict is not None else machine_id,
                "known": True,
                "latest_snapshot": index.snapshot_json(),
                "verdict": verdict,
                "transitions": [transition_json(t) for t in transitions],
                "operations": [operation_json(record) for record in operations],
            }
        )

    # -- the rules ------------------------------------------------------------------------------

    async def calendar(self, request: Request) -> Response:
        params = Params(request.query_params.multi_items(), {"os", "months", "from"})
        os_name = params.choice("os", (o.value for o in OsFamily))
        if os_name is None:
            raise bad_parameter("os", "required: ws2022 or ws2025")
        months = params.whole("months", MONTHS_DEFAULT, 1, MONTHS_MAX)
        start = month(params, "from") or YearMonth.of(self.world.clock())
        if start.shift(months - 1) > LAST_MONTH:
            raise bad_parameter("months", f"from {start}, {months} months run past {LAST_MONTH}")
        slots = self.world.rules.calendar.months(OsFamily(os_name), start, months)
        return JSONResponse(
            {"os": os_name, "from": str(start), "months": months, "value": calendar_json(slots)}
        )

    async def check_image(self, request: Request) -> Response:
        Params(request.query_params.multi_items())
        image = _image(await _json_body(request))
        rules = self.world.rules
        verdict = image_eligibility(image, rules.images, rules.policy)
        return JSONResponse(
            {
                "image": {"publisher": image.publisher, "offer": image.offer, "sku": image.sku},
                "eligible": verdict.eligible,
                "os": verdict.os.value if verdict.os else None,
                "reasons": [{"code": r.code, "message": r.message} for r in verdict.reasons],
            }
        )

    # -- runs and the plan ----------------------------------------------------------------------

    async def runs(self, request: Request) -> Response:
        params = Params(request.query_params.multi_items(), {"kind", "limit"})
        kind = run_kind(params)
        limit = params.whole("limit", RUNS_DEFAULT, 1, RUNS_MAX)
        found = await run_in_threadpool(self.store.runs, kind, limit)
        return JSONResponse({"value": [run_json(run) for run in found]})

    async def run(self, request: Request) -> Response:
        Params(request.query_params.multi_items())
        run_id: str = request.path_params["id"]
        if not RUN_ID.match(run_id):
            raise bad_parameter(
                "id", f"{run_id!r} is not a run id (letters, digits, '.', '_', '-')"
            )
        found = await run_in_threadpool(self.store.run, run_id)
        if found is None:
            raise Problem(404, f"the store holds no run {run_id}", type=NOT_FOUND)
        return JSONResponse(run_json(found))

    async def plan(self, request: Request) -> Response:
        params = Params(request.query_params.multi_items(), {"skips"})
        with_skips = params.boolean("skips") or False
        if self._planning is None:
            self._planning = asyncio.Lock()
        # One plan at a time: each reads the whole snapshot and the journal.
        async with self._planning:
            document = await run_in_threadpool(self._plan)
        if not with_skips:
            document.pop("skips", None)
        return JSONResponse(document)

    def _plan(self) -> dict[str, Any]:
        try:
            policy = load_policy(self.world.settings.remediation_policy)
        except ConfigurationError as error:
            raise Problem(
                503,
                f"HOTPATCH_REMEDIATION_POLICY: {error}",
                type=UNAVAILABLE,
            ) from None
        snapshot = self.store.latest_snapshot()
        decided = plan(
            every_row(self.store),
            policy,
            rollout_state(self.store),
            self.world.rules.calendar,
            self.world.clock(),
        )
        document = plan_json(decided)
        document["snapshot"] = (
            None
            if snapshot is None
            else {"run_id": snapshot.run_id, "taken_at": iso(snapshot.taken_at)}
        )
        return document

    # -- on-demand assessments ------------------------------------------------------------------

    async def assessments(self, request: Request) -> Response:
        Params(request.query_params.multi_items())
        if self.start_assessment is None:
            raise Problem(
                503,
                "this server starts no assessments: the Function App takes them through its "
                "queue (hotpatch assess starts them from the command line)",
                type=UNAVAILABLE,
            )
        asked = assessment_request(
            await _json_body(request), request.headers.get(PRINCIPAL_HEADER + "-name")
        )
        starter = self.start_assessment
        try:
            accepted = await run_in_threadpool(starter, asked)
        except HotpatchError as error:
            raise Problem(
                503, f"the assessment could not be started: {error}", type=UNAVAILABLE
            ) from None
        return JSONResponse(
            {"id": accepted.id, "status": "accepted", "detail": accepted.detail, **asked.as_dict()},
            status_code=202,
        )

    # -- shared ---------------------------------------------------------------------------------

    async def _resume(
        self, token: str, query: ComplianceFilter, index: SnapshotIndex
    ) -> tuple[SnapshotIndex, int]:
        """The index and row a continuation token resumes at: 410 when its sweep was replaced,
        400 when this API never gave it (or gave it for other filters)."""
        try:
            try:
                return index, decode_token(token, index.run_id, query, len(index))
            except TokenError as error:
                if not error.expired:
                    raise
                # Another instance may have served a sweep this one has not seen yet.
                index = await self._index(fresh=True)
                return index, decode_token(token, index.run_id, query, len(index))
        except TokenError as error:
            if error.expired:
                raise Problem(
                    410,
                    str(error),
                    type=EXPIRED_TOKEN,
                    invalid_params=(InvalidParam("continuationToken", str(error)),),
                ) from None
            raise bad_parameter("continuationToken", str(error)) from None

    async def _index(self, *, fresh: bool = False) -> SnapshotIndex:
        try:
            return await self.latest.current(fresh=fresh)
        except StoreError as error:
            raise Problem(
                503, f"the compliance store cannot be read: {error}", type=UNAVAILABLE
            ) from None


def _resolve(index: SnapshotIndex, asked: str) -> tuple[str, int | None]:
    """The ARM id a path names (an id, URL-encoded or not, or a unique name) and its row."""
    if _ARM_ID.match(asked):
        machine_id = "/" + asked.lstrip("/")
        return machine_id, index.find_id(machine_id)
    if not asked or "/" in asked:
        raise bad_parameter(
            "machine", "give an ARM id (/subscriptions/.../virtualMachines/NAME) or a name"
        )
    rows = index.find_name(asked)
    if not rows:
        raise Problem(404, f"no machine of the latest sweep is named {asked!r}", type=NOT_FOUND)
    if len(rows) > 1:
        ids = [index.document(row)["id"] for row in rows]
        raise Problem(
            409,
            f"{len(ids)} machines of the latest sweep are named {asked!r}: ask by ARM id",
            type=AMBIGUOUS,
            extensions={"candidates": ids[:20]},
        )
    return index.document(rows[0])["id"], rows[0]


def _image(body: object) -> ImageRef:
    if not isinstance(body, dict):
        raise bad_body("(body)", "expected an object: {publisher, offer, sku} or {urn}")
    unknown = sorted(set(body) - {"publisher", "offer", "sku", "urn"})
    if unknown:
        raise bad_body(unknown[0], "not a field (publisher, offer, sku, urn)")
    for name, value in body.items():
        if not isinstance(value, str) or not value.strip() or len(value) > IMAGE_FIELD_MAX:
            raise bad_body(name, f"expected a non-empty string of at most {IMAGE_FIELD_MAX}")
    if "urn" in body:
        if len(body) > 1:
            raise bad_body("urn", "give the urn, or publisher, offer and sku; not both")
        parts = str(body["urn"]).split(":")
        if len(parts) not in (3, 4) or not all(p.strip() for p in parts[:3]):
            raise bad_body("urn", "expected publisher:offer:sku[:version]")
        return ImageRef(publisher=parts[0], offer=parts[1], sku=parts[2])
    for name in ("publisher", "offer", "sku"):
        if name not in body:
            raise bad_body(name, "required (or give the urn)")
    return ImageRef(publisher=body["publisher"], offer=body["offer"], sku=body["sku"])


async def _json_body(request: Request) -> object:
    """The request's JSON body: 415 unless JSON, 413 past MAX_BODY_BYTES, 400 unless it parses."""
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/json":
        raise Problem(
            415,
            f"send the body as application/json (got {kind or 'no content type'})",
            type=UNSUPPORTED_MEDIA_TYPE,
            headers={"Accept-Post": "application/json"},
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as error:
        raise Problem(
            400,
            f"the body is not JSON: {error}",
            type=BAD_BODY,
            invalid_params=(InvalidParam("(body)", "not JSON"),),
        ) from None


def _too_large() -> Problem:
    return Problem(413, f"the body is larger than {MAX_BODY_BYTES} bytes", type=TOO_LARGE)


def _next_link(request: Request, token: str) -> str:
    """This request's URL for the next page: the same filters, the new token, and never the
    API key (a key belongs in the header, not in a document that may be logged)."""
    # Each parameter as the client wrote it when that is plainly URL-safe (the usual case, and
    # cheaper than decoding and encoding them all), else encoded again; a token is URL-safe
    # base64 and needs no quoting.
    base, _, query = str(request.url).partition("?")
    kept: list[str] = []
    for part in query.split("&"):
        if not part:
            continue
        name, _, value = part.partition("=")
        name = unquote_plus(name)
        if name in _NOT_REPEATED:
            continue
        if _PLAIN_PARAMETER.fullmatch(part):
            kept.append(part)
        else:
            kept.append(f"{quote_plus(name)}={quote_plus(unquote_plus(value))}")
    kept.append(f"continuationToken={token}")
    return f"{base}?{'&'.join(kept)}"


def _csv_row(row: dict[str, Any]) -> list[object]:
    reasons = row["reasons"]
    return [
        row["id"],
        row["name"],
        row["state"],
        "true" if row["eligible"] else "false",
        row["action"],
        ";".join(r["code"] for r in reasons),
        " | ".join(r["message"] for r in reasons),
        row["os"] or "",
        row["subscription_id"] or "",
        row["resource_group"] or "",
        row["ring"] or "",
        ";".join(f"{key}={value}" for key, value in sorted(row["tags"].items())),
        row["build"] or "",
        row["release_month"] or "",
        row["last_assessed"] or "",
        row["next_restart"] or "",
    ]


def _json(value: str | None) -> bytes:
    # json.dumps with no options takes its cached encoder (a string has no separators to set)
    return json.dumps(value).encode()


# -- errors -------------------------------------------------------------------------------------


async def _problem(request: Request, error: Exception) -> Response:
    assert isinstance(error, Problem)
    return error.response(instance=request.url.path)


async def _http_problem(request: Request, error: Exception) -> Response:
    """Starlette's own 404 (no route) and 405 (a route without the method), as problems."""
    assert isinstance(error, HTTPException)
    headers = dict(error.headers or {})
    if error.status_code == 405:
        allowed = headers.get("Allow", "")
        problem = Problem(
            405,
            f"{request.method} is not allowed on {request.url.path} (allowed: {allowed})",
            type=METHOD_NOT_ALLOWED,
            headers=headers,
        )
    elif error.status_code == 404:
        problem = Problem(404, f"no endpoint at {request.url.path}", type=NOT_FOUND)
    else:
        problem = Problem(error.status_code, str(error.detail), headers=headers)
    return problem.response(instance=request.url.path)


class _Guard:
    """The outermost layer: an exception nothing else handled is logged here with its
    traceback and answered as a 500 problem that says nothing of the internals."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception:
            _log.exception("unhandled error answering %s %s", scope["method"], scope["path"])
            if started:
                raise
            problem = Problem(
                500,
                "the server failed to answer; the error is in its log",
                type=INTERNAL,
            )
            await problem.response(instance=scope["path"])(scope, receive, send)
