"""The OpenAPI 3.1 document of the HTTP API, written by hand to say exactly what it answers.

Tests validate it against the OpenAPI specification and run schemathesis against the server
that serves it: every response must match what is written here.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from hotpatch import __version__
from hotpatch.api.access import KEY_HEADER, KEY_PARAMETER, OPERATE_ROLE, READ_ROLE
from hotpatch.api.params import (
    MONTHS_DEFAULT,
    MONTHS_MAX,
    PAGE_DEFAULT,
    PAGE_MAX,
    RING_MAX,
    RUN_ID,
    RUNS_DEFAULT,
    RUNS_MAX,
    TREND_DEFAULT,
    TREND_MAX,
)
from hotpatch.core.models import Action, MonthKind, OsFamily, State
from hotpatch.core.reasons import ReasonCode
from hotpatch.ports.store import JournalStatus, RunKind

Schema = dict[str, Any]

_GUID = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _string(**more: Any) -> Schema:
    return {"type": "string", **more}


def _object(properties: dict[str, Schema], *, closed: bool = True) -> Schema:
    return {
        "type": "object",
        "required": list(properties),
        "properties": properties,
        "additionalProperties": not closed,
    }


def _enum(values: Any) -> Schema:
    return {"type": "string", "enum": [v.value for v in values]}


def _counts() -> Schema:
    return {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}


_TIME = _nullable(_string(format="date-time"))

SCHEMAS: dict[str, Schema] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details; bad input names each parameter and why.",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": _string(format="uri-reference"),
            "title": _string(),
            "status": {"type": "integer", "minimum": 400, "maximum": 599},
            "detail": _string(),
            "instance": _string(),
            "invalid-params": {"type": "array", "items": _ref("InvalidParam")},
            "candidates": {"type": "array", "items": _string()},
            "required_role": _string(),
        },
        "additionalProperties": True,
    },
    "InvalidParam": _object({"name": _string(), "reason": _string()}),
    "Snapshot": _object(
        {"run_id": _string(), "taken_at": _string(format="date-time")},
    ),
    "Reason": _object({"code": _string(), "message": _string()}),
    "Verdict": _object(
        {
            "id": _string(),
            "name": _string(),
            "state": _enum(State),
            "eligible": {"type": "boolean"},
            "action": _enum(Action),
            "os": _nullable(_enum(OsFamily)),
            "subscription_id": _nullable(_string()),
            "resource_group": _nullable(_string()),
            "ring": _nullable(_string()),
            "tags": {"type": "object", "additionalProperties": _string()},
            "build": _nullable(_string()),
            "release_month": _nullable(_string()),
            "last_assessed": _TIME,
            "next_restart": _TIME,
            "reasons": {"type": "array", "items": _ref("Reason")},
        }
    ),
    "CompliancePage": _object(
        {
            "snapshot": _nullable(_ref("Snapshot")),
            "value": {"type": "array", "items": _ref("Verdict")},
            "continuationToken": _nullable(_string()),
            "nextLink": _nullable(_string(format="uri")),
        }
    ),
    "TrendPoint": _object(
        {
            "run_id": _string(),
            "taken_at": _string(format="date-time"),
            "machines": {"type": "integer", "minimum": 0},
            "eligible": {"type": "integer", "minimum": 0},
            "by_state": _counts(),
        }
    ),
    "Summary": _object(
        {
            "snapshot": _nullable(_ref("Snapshot")),
            "machines": {"type": "integer", "minimum": 0},
            "eligible": {"type": "integer", "minimum": 0},
            "by_state": _counts(),
            "by_subscription": _counts(),
            "by_os": _counts(),
            "by_ring": _counts(),
            "trend": {"type": "array", "items": _ref("TrendPoint")},
        }
    ),
    "Transition": _object(
        {
            "at": _string(format="date-time"),
            "from": _nullable(_enum(State)),
            "to": _nullable(_enum(State)),
            "run_id": _string(),
            "reasons": {"type": "array", "items": _string()},
        }
    ),
    "Operation": {
        "type": "object",
        "description": "A journalled operation (assessment or install) of the machine.",
        "required": ["key", "machine_id", "release", "action", "status", "started_at"],
        "properties": {
            "key": _string(),
            "machine_id": _string(),
            "release": _string(),
            "action": _string(),
            "status": _enum(JournalStatus),
            "client_request_id": _string(),
            "run_id": _nullable(_string()),
            "ring": _nullable(_string()),
            "started_at": _string(format="date-time"),
            "updated_at": _string(format="date-time"),
            "finished_at": _TIME,
            "kbs": {"type": "array", "items": _string()},
            "requests": {"type": "integer", "minimum": 0},
        },
        "additionalProperties": True,
    },
    "MachineDetail": _object(
        {
            "machine": _string(),
            "known": {"type": "boolean"},
            "latest_snapshot": _nullable(_ref("Snapshot")),
            "verdict": _nullable(_ref("Verdict")),
            "transitions": {"type": "array", "items": _ref("Transition")},
            "operations": {"type": "array", "items": _ref("Operation")},
        }
    ),
    "CalendarMonth": _object(
        {
            "month": _string(pattern="^[0-9]{4}-[0-9]{2}$"),
            "kind": _enum(MonthKind),
            "patch_tuesday": _string(format="date"),
            "release_utc": _string(format="date-time"),
            "kb": _nullable(_string()),
            "build": _nullable(_string()),
            "restart": {"type": "boolean"},
            "status": {
                "type": "string",
                "enum": ["published", "not_in_catalog", "beyond_catalog", "outside_program"],
            },
        }
    ),
    "Calendar": _object(
        {
            "os": _enum(OsFamily),
            "from": _string(pattern="^[0-9]{4}-[0-9]{2}$"),
            "months": {"type": "integer", "minimum": 1},
            "value": {"type": "array", "items": _ref("CalendarMonth")},
        }
    ),
    "ImageCheckRequest": {
        "oneOf": [
            {
                "type": "object",
                "required": ["publisher", "offer", "sku"],
                "properties": {
                    "publisher": _string(minLength=1, maxLength=256, pattern=r"\S"),
                    "offer": _string(minLength=1, maxLength=256, pattern=r"\S"),
                    "sku": _string(minLength=1, maxLength=256, pattern=r"\S"),
                },
                "additionalProperties": False,
            },
            {
                "type": "object",
                "required": ["urn"],
                "properties": {
                    "urn": _string(
                        maxLength=256,
                        pattern=r"^[^:\s]+:[^:\s]+:[^:\s]+(:[^:\s]*)?$",
                        description="publisher:offer:sku[:version], as az vm create takes it",
                    )
                },
                "additionalProperties": False,
            },
        ]
    },
    "ImageCheck": _object(
        {
            "image": _object(
                {
                    "publisher": _nullable(_string()),
                    "offer": _nullable(_string()),
                    "sku": _nullable(_string()),
                }
            ),
            "eligible": {"type": "boolean"},
            "os": _nullable(_enum(OsFamily)),
            "reasons": {"type": "array", "items": _ref("Reason")},
        }
    ),
    "Run": {
        "type": "object",
        "required": ["id", "kind", "who", "started_at", "figures"],
        "properties": {
            "id": _string(),
            "kind": _enum(RunKind),
            "who": _string(),
            "started_at": _string(format="date-time"),
            "finished_at": _TIME,
            "scope": _string(),
            "figures": {"type": "object"},
            "outcome": _nullable(_string()),
        },
        "additionalProperties": False,
    },
    "Runs": _object({"value": {"type": "array", "items": _ref("Run")}}),
    "Plan": {
        "type": "object",
        "description": "What the next remediation would start now under the policy, over the "
        "latest snapshot; nothing is started or recorded.",
        "required": ["release", "mode", "now", "operations", "skipped", "rings", "notices"],
        "properties": {
            "release": _nullable(_string()),
            "mode": _string(),
            "now": _string(format="date-time"),
            "operations": {
                "type": "array",
                "items": _object(
                    {
                        "key": _string(),
                        "machine": _string(),
                        "ring": _nullable(_string()),
                        "release": _string(),
                        "action": _string(),
                        "reason": _string(),
                    }
                ),
            },
            "skipped": _counts(),
            "skips": {
                "type": "array",
                "items": _object({"machine": _string(), "code": _string(), "message": _string()}),
            },
            "rings": {"type": "array", "items": {"type": "object"}},
            "notices": {"type": "array", "items": _string()},
            "snapshot": _nullable(_ref("Snapshot")),
        },
        "additionalProperties": False,
    },
    "AssessmentRequest": {
        "type": "object",
        "description": "Name at least one subscription or machine.",
        "properties": {
            "subscriptions": {
                "type": "array",
                "maxItems": 1000,
                "items": _string(pattern=_GUID),
            },
            "machines": {
                "type": "array",
                "maxItems": 1000,
                "items": _string(
                    description="ARM id of a VM (Microsoft.Compute/virtualMachines) or an Arc "
                    "machine (Microsoft.HybridCompute/machines)"
                ),
            },
        },
        "anyOf": [
            {"required": ["subscriptions"], "properties": {"subscriptions": {"minItems": 1}}},
            {"required": ["machines"], "properties": {"machines": {"minItems": 1}}},
        ],
        "additionalProperties": False,
    },
    "AssessmentAccepted": _object(
        {
            "id": _string(),
            "status": {"type": "string", "const": "accepted"},
            "detail": _string(),
            "subscriptions": {"type": "array", "items": _string()},
            "machines": {"type": "array", "items": _string()},
            "requested_by": _nullable(_string()),
        }
    ),
    "Health": _object(
        {
            "status": {"type": "string", "const": "ok"},
            "version": _string(),
            "snapshot": _nullable(_ref("Snapshot")),
        }
    ),
}


def _problem(description: str) -> Schema:
    return {
        "description": description,
        "content": {"application/problem+json": {"schema": _ref("Problem")}},
    }


RESPONSES: dict[str, Schema] = {
    "BadRequest": _problem("A parameter or body field is wrong: invalid-params names it."),
    "Unauthorized": {
        **_problem(
            "No API key, a wrong one, or (with app roles required) no readable "
            "X-MS-CLIENT-PRINCIPAL."
        ),
        "headers": {"WWW-Authenticate": {"schema": _string()}},
    },
    "Forbidden": _problem(
        f"App roles are required and the principal lacks {READ_ROLE} (reads) or "
        f"{OPERATE_ROLE} (starting assessments)."
    ),
    "NotFound": _problem("Nothing at this path, or the store knows nothing of it."),
    "TooLarge": _problem("The body is larger than 256 KiB."),
    "UnsupportedMediaType": _problem("The body is not application/json."),
    "Unavailable": _problem("The store cannot be read, or the feature is not configured here."),
    "Internal": _problem("The server failed; its log holds the error, the answer does not."),
}


def _parameter(
    name: str, where: str, schema: Schema, description: str, *, many: bool = False
) -> Schema:
    if many:
        schema = {"type": "array", "items": schema}
    found: Schema = {"name": name, "in": where, "description": description, "schema": schema}
    if where == "path":
        found["required"] = True
    if many:
        found["style"] = "form"
        found["explode"] = True
    return found


def _json(schema: Schema, description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: str) -> dict[str, Schema]:
    names = {
        "400": "BadRequest",
        "401": "Unauthorized",
        "403": "Forbidden",
        "404": "NotFound",
        "413": "TooLarge",
        "415": "UnsupportedMediaType",
        "503": "Unavailable",
        "500": "Internal",
    }
    return {code: {"$ref": f"#/components/responses/{names[code]}"} for code in codes}


_READ_ERRORS = ("400", "401", "403", "500")

_FILTERS: list[Schema] = [
    _parameter("subscription", "query", _string(pattern=_GUID), "subscription id(s)", many=True),
    _parameter(
        "resourceGroup",
        "query",
        _string(pattern=r"^[-\w.()]{0,89}[-\w()]$"),
        "resource group name(s), any case",
        many=True,
    ),
    _parameter("state", "query", _enum(State), "compliance state(s)", many=True),
    _parameter("os", "query", _enum(OsFamily), "OS family(ies)", many=True),
    _parameter(
        "ring", "query", _string(minLength=1, maxLength=RING_MAX), "rollout ring(s)", many=True
    ),
    _parameter(
        "tag",
        "query",
        _string(pattern="^[^=]+=", maxLength=769),
        "key=value; every tag given must match",
        many=True,
    ),
    _parameter("eligible", "query", {"type": "boolean"}, "eligible for hotpatches or not"),
    _parameter("reason", "query", _enum(ReasonCode), "reason code(s)", many=True),
    _parameter(
        "top",
        "query",
        {"type": "integer", "minimum": 1, "maximum": PAGE_MAX, "default": PAGE_DEFAULT},
        "machines per page",
    ),
    _parameter(
        "continuationToken",
        "query",
        _string(),
        "the previous page's continuationToken (with the same filters)",
    ),
    _parameter(
        "format",
        "query",
        {"type": "string", "enum": ["json", "csv"], "default": "json"},
        "json, or csv (the token of the next page is then in X-Continuation-Token)",
    ),
]


def _paths() -> dict[str, Schema]:
    open_access: list[dict[str, list[str]]] = []
    return {
        "/api/health": {
            "get": {
                "operationId": "health",
                "summary": "Is the API up; the snapshot it serves, if loaded (no store read)",
                "security": open_access,
                "responses": {"200": _json(_ref("Health"), "up"), **_errors("400", "500")},
            }
        },
        "/api/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "security": open_access,
                "responses": {
                    "200": _json({"type": "object"}, "the OpenAPI document"),
                    **_errors("400", "500"),
                },
            }
        },
        "/api/compliance": {
            "get": {
                "operationId": "listCompliance",
                "summary": "Machines of the latest snapshot, filtered, a page at a time",
                "parameters": _FILTERS,
                "responses": {
                    "200": {
                        "description": "a page",
                        "headers": {
                            "X-Continuation-Token": {
                                "description": "csv only: the next page's token",
                                "schema": _string(),
                            },
                            "Link": {
                                "description": 'csv only: <next page>; rel="next"',
                                "schema": _string(),
                            },
                        },
                        "content": {
                            "application/json": {"schema": _ref("CompliancePage")},
                            "text/csv": {"schema": _string()},
                        },
                    },
                    "410": _problem(
                        "The continuation token belongs to a snapshot a newer sweep replaced: "
                        "start again from the first page."
                    ),
                    **_errors(*_READ_ERRORS, "503"),
                },
            }
        },
        "/api/compliance/summary": {
            "get": {
                "operationId": "complianceSummary",
                "summary": "Counts by state, subscription, OS and ring; the trend over recent runs",
                "parameters": [
                    _parameter(
                        "trend",
                        "query",
                        {
                            "type": "integer",
                            "minimum": 0,
                            "maximum": TREND_MAX,
                            "default": TREND_DEFAULT,
                        },
                        "how many recent snapshots the trend shows",
                    )
                ],
                "responses": {
                    "200": _json(_ref("Summary"), "the summary"),
                    **_errors(*_READ_ERRORS, "503"),
                },
            }
        },
        "/api/compliance/{machine}": {
            "get": {
                "operationId": "machineCompliance",
                "summary": "One machine: verdict, reasons, state transitions and operations",
                "parameters": [
                    _parameter(
                        "machine",
                        "path",
                        _string(minLength=1),
                        "its ARM id, URL-encoded, or its name when one machine has it (a "
                        "machine named summary is asked for by its id: /api/compliance/summary "
                        "is the summary)",
                    )
                ],
                "responses": {
                    "200": _json(_ref("MachineDetail"), "the machine"),
                    "409": _problem("Several machines have this name: ask by ARM id."),
                    **_errors(*_READ_ERRORS, "404", "503"),
                },
            }
        },
        "/api/calendar": {
            "get": {
                "operationId": "calendar",
                "summary": "Baseline and hotpatch months for an OS",
                "parameters": [
                    {**_parameter("os", "query", _enum(OsFamily), "the OS"), "required": True},
                    _parameter(
                        "months",
                        "query",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": MONTHS_MAX,
                            "default": MONTHS_DEFAULT,
                        },
                        "how many months",
                    ),
                    _parameter(
                        "from",
                        "query",
                        _string(pattern="^[0-9]{4}-[0-9]{2}$"),
                        "first month, YYYY-MM (default: this month)",
                    ),
                ],
                "responses": {
                    "200": _json(_ref("Calendar"), "the months"),
                    **_errors(*_READ_ERRORS),
                },
            }
        },
        "/api/images/check": {
            "post": {
                "operationId": "checkImage",
                "summary": "Can a marketplace image take hotpatches?",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("ImageCheckRequest")}},
                },
                "responses": {
                    "200": _json(_ref("ImageCheck"), "the image's eligibility"),
                    **_errors(*_READ_ERRORS, "413", "415"),
                },
            }
        },
        "/api/runs": {
            "get": {
                "operationId": "listRuns",
                "summary": "Sweeps, plans and remediations, newest first",
                "parameters": [
                    _parameter("kind", "query", _enum(RunKind), "only this kind"),
                    _parameter(
                        "limit",
                        "query",
                        {
                            "type": "integer",
                            "minimum": 1,
                            "maximum": RUNS_MAX,
                            "default": RUNS_DEFAULT,
                        },
                        "how many runs",
                    ),
                ],
                "responses": {
                    "200": _json(_ref("Runs"), "the runs"),
                    **_errors(*_READ_ERRORS, "503"),
                },
            }
        },
        "/api/runs/{id}": {
            "get": {
                "operationId": "getRun",
                "summary": "One run record",
                "parameters": [
                    _parameter("id", "path", _string(pattern=RUN_ID.pattern), "the run id")
                ],
                "responses": {
                    "200": _json(_ref("Run"), "the run"),
                    **_errors(*_READ_ERRORS, "404", "503"),
                },
            }
        },
        "/api/plan": {
            "get": {
                "operationId": "plan",
                "summary": "What the next remediation would start now (starts nothing)",
                "parameters": [
                    _parameter(
                        "skips",
                        "query",
                        {"type": "boolean", "default": False},
                        "list every machine the plan skips, with its reason",
                    )
                ],
                "responses": {
                    "200": _json(_ref("Plan"), "the plan"),
                    **_errors(*_READ_ERRORS, "503"),
                },
            }
        },
        "/api/assessments": {
            "post": {
                "operationId": "startAssessments",
                "summary": "Assess the machines of a scope now (needs a configured starter)",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("AssessmentRequest")}},
                },
                "responses": {
                    "202": _json(_ref("AssessmentAccepted"), "accepted"),
                    **_errors(*_READ_ERRORS, "413", "415", "503"),
                },
            }
        },
    }


@cache
def document() -> dict[str, Any]:
    """The OpenAPI document `GET /api/openapi.json` serves."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "hotpatch compliance API",
            "version": __version__,
            "description": (
                "Which machines are on the hotpatch cycle, which are not, and why. Every "
                "error is application/problem+json (RFC 9457). Authorization: a function key "
                f"in the {KEY_HEADER} header or the {KEY_PARAMETER} query parameter; with "
                "HOTPATCH_REQUIRE_ROLES the App Service principal (X-MS-CLIENT-PRINCIPAL) "
                f"must also hold {READ_ROLE} for reads (checking an image is one) and "
                f"{OPERATE_ROLE} for starting assessments. "
                "/api/health and this document are open."
            ),
        },
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "responses": RESPONSES,
            "securitySchemes": {
                "functionKey": {"type": "apiKey", "in": "header", "name": KEY_HEADER},
                "functionKeyQuery": {"type": "apiKey", "in": "query", "name": KEY_PARAMETER},
                "appServicePrincipal": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "X-MS-CLIENT-PRINCIPAL",
                    "description": "Set by App Service Authentication (never by a client) when "
                    "HOTPATCH_REQUIRE_ROLES is on: base64 JSON whose claims of type roles are "
                    "the app roles.",
                },
            },
        },
        "security": [{"functionKey": []}, {"functionKeyQuery": []}],
    }
