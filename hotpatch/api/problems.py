"""Every error the HTTP API answers is an `application/problem+json` document (RFC 9457).

A handler raises `Problem`; the app turns it, Starlette's own 404/405, and anything unexpected
(a 500 that says nothing of the internals) into the same shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from starlette.responses import Response

MEDIA_TYPE = "application/problem+json"

#: Problem types: URNs, so that a type is an identifier and never a link that may break.
BAD_PARAMETER = "urn:hotpatch:problem:bad-parameter"
BAD_BODY = "urn:hotpatch:problem:bad-body"
EXPIRED_TOKEN = "urn:hotpatch:problem:continuation-expired"
NOT_AUTHENTICATED = "urn:hotpatch:problem:not-authenticated"
FORBIDDEN = "urn:hotpatch:problem:forbidden"
NOT_FOUND = "urn:hotpatch:problem:not-found"
AMBIGUOUS = "urn:hotpatch:problem:ambiguous-name"
METHOD_NOT_ALLOWED = "urn:hotpatch:problem:method-not-allowed"
TOO_LARGE = "urn:hotpatch:problem:body-too-large"
UNSUPPORTED_MEDIA_TYPE = "urn:hotpatch:problem:unsupported-media-type"
UNAVAILABLE = "urn:hotpatch:problem:unavailable"
INTERNAL = "urn:hotpatch:problem:internal"

_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Ambiguous",
    410: "Gone",
    413: "Body too large",
    415: "Unsupported media type",
    500: "Internal error",
    503: "Unavailable",
}


@dataclass(frozen=True, slots=True)
class InvalidParam:
    """One bad input: the parameter (or body field) and why it was refused."""

    name: str
    reason: str


@dataclass(eq=False)
class Problem(Exception):  # noqa: N818 (an answer to send, not a failure of the program)
    """An answer that is not a success; raised by a handler, rendered by the app."""

    status: int
    detail: str
    type: str = "about:blank"
    title: str | None = None
    invalid_params: Sequence[InvalidParam] = ()
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Extension members (RFC 9457 section 3.2), e.g. the candidates of an ambiguous name.
    extensions: Mapping[str, object] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.status} {self.detail}"

    def document(self, instance: str | None = None) -> dict[str, object]:
        body: dict[str, object] = {
            "type": self.type,
            "title": self.title or _TITLES.get(self.status, "Error"),
            "status": self.status,
            "detail": self.detail,
        }
        if instance is not None:
            body["instance"] = instance
        if self.invalid_params:
            body["invalid-params"] = [
                {"name": param.name, "reason": param.reason} for param in self.invalid_params
            ]
        body.update(self.extensions)
        return body

    def response(self, instance: str | None = None) -> Response:
        return Response(
            json.dumps(self.document(instance), separators=(",", ":"), ensure_ascii=False),
            status_code=self.status,
            media_type=MEDIA_TYPE,
            headers=dict(self.headers),
        )


def bad_parameter(name: str, reason: str) -> Problem:
    """400 for one query or path parameter."""
    return Problem(
        400,
        f"parameter {name}: {reason}",
        type=BAD_PARAMETER,
        invalid_params=(InvalidParam(name, reason),),
    )


def bad_body(name: str, reason: str) -> Problem:
    """400 for one field of a JSON body (`name` is its JSON pointer-like path)."""
    return Problem(
        400,
        f"body field {name}: {reason}",
        type=BAD_BODY,
        invalid_params=(InvalidParam(name, reason),),
    )
