"""ARM's HTTP conventions as the sandbox answers them: ids, JSON bodies in and out, errors.

Every answer goes through `json_response`, which writes strict JSON (no NaN or Infinity, which
JSON has not and Azure never sends), and every request body through `read_json`, which refuses
bodies over the size limit (413) or nested deeper than any ARM body is (400) before they reach
the handlers.
"""

from __future__ import annotations

import asyncio
import json
import math
import uuid
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from hotpatch.sandbox.arm import arm_error

JSON = "application/json"
#: Deeper than any ARM request body: Resource Graph and installPatches bodies nest 3 levels.
MAX_JSON_DEPTH = 32


class AnswerNowError(Exception):
    """Raised inside a handler to answer at once with an error."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def with_ids(headers: Mapping[str, str]) -> dict[str, str]:
    request_id = str(uuid.uuid4())
    return {**headers, "x-ms-request-id": request_id, "x-ms-correlation-request-id": request_id}


def json_text(body: Any) -> str:
    """Strict JSON; a non-finite number becomes null (Azure's bodies carry none)."""
    try:
        return json.dumps(body, allow_nan=False)
    except ValueError:
        return json.dumps(_finite(body), allow_nan=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def json_response(
    status: int, body: Mapping[str, Any], headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status,
        body=json_text(body).encode(),
        content_type=JSON,
        headers=with_ids(headers or {}),
    )


def invalid_content(message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return json_response(400, arm_error("InvalidRequestContent", message), headers)


async def read_json(
    request: web.BaseRequest, headers: Mapping[str, str], timeout_seconds: float
) -> Mapping[str, Any]:
    """The body as a JSON object ({} when empty); answers 413, 408 or 400 when it cannot be."""
    try:
        raw = await asyncio.wait_for(request.read(), timeout_seconds)
    except web.HTTPRequestEntityTooLarge as error:
        raise AnswerNowError(
            json_response(
                413,
                arm_error(
                    "RequestEntityTooLarge",
                    f"The request body is larger than the {request.client_max_size:,} bytes "
                    "the sandbox accepts.",
                ),
                headers,
            )
        ) from error
    except TimeoutError as error:
        raise AnswerNowError(
            json_response(
                408,
                arm_error("RequestTimeout", "The request body did not arrive in time."),
                headers,
            )
        ) from error
    if not raw.strip():
        return {}
    if _depth_exceeds(raw, MAX_JSON_DEPTH):
        raise AnswerNowError(
            invalid_content(
                f"The request content is nested deeper than {MAX_JSON_DEPTH} levels.", headers
            )
        )
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        body = None
    if not isinstance(body, dict):
        raise AnswerNowError(
            invalid_content(
                "The request content was invalid and could not be deserialized: expected a "
                "JSON object.",
                headers,
            )
        )
    return body


def _depth_exceeds(raw: bytes, limit: int) -> bool:
    """Whether brackets outside strings nest deeper than `limit`, without parsing (a parser
    would recurse once per level)."""
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def bearer(request: web.BaseRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def unauthenticated() -> web.Response:
    return json_response(
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


def integer_option(options: Mapping[str, Any], name: str, low: int, high: int | None) -> int | None:
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
