"""Who may call the API: an API key, app roles, or both; health and the OpenAPI document are open.

Two modes, as `HOTPATCH_REQUIRE_ROLES` says:

- **Function keys** (default). In Azure the Functions host checks the key before the app sees
  the request (auth level FUNCTION), so the app is built without a key of its own; `hotpatch
  serve` has no host in front of it and is built with one: the caller sends it in the
  `x-functions-key` header or the `code` query parameter, as a Functions caller does
  (https://learn.microsoft.com/azure/azure-functions/function-keys-how-to), and it is compared
  in constant time.
- **App roles** (`HOTPATCH_REQUIRE_ROLES=true`). App Service Authentication signs the caller in
  and passes its claims in `X-MS-CLIENT-PRINCIPAL`, base64 JSON `{"claims": [{"typ", "val"}],
  "role_typ"}`; it removes that header from what clients send, so only the platform can set it
  (https://learn.microsoft.com/azure/app-service/configure-authentication-user-identities).
  Reads need app role `Hotpatch.Read` (checking an image is one), writes (starting
  assessments) `Hotpatch.Operate`: 401 without a
  principal or with one that cannot be read, 403 without the role. Locally nothing strips the
  header, so `hotpatch serve` still requires its key in this mode.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from hotpatch.api.problems import FORBIDDEN, NOT_AUTHENTICATED, Problem

READ_ROLE = "Hotpatch.Read"
OPERATE_ROLE = "Hotpatch.Operate"
KEY_HEADER = "x-functions-key"
KEY_PARAMETER = "code"
PRINCIPAL_HEADER = "x-ms-client-principal"
#: The claim type App Service gives an app role (besides the principal's own `role_typ`).
ROLES_CLAIM = "roles"
#: A principal larger than this is not one App Service sent (a token's claims are far smaller).
MAX_PRINCIPAL_BYTES = 64 * 1024
#: What anyone may read: whether the service is up, and the description of the API.
OPEN_PATHS = frozenset({"/api/health", "/api/openapi.json"})
#: Methods that only read.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: POSTs that change nothing: a body is only how the question is asked.
READ_POSTS = frozenset({"/api/images/check"})


def required_role(method: str, path: str) -> str:
    """Hotpatch.Read for what only reads (GETs, and checking an image); Hotpatch.Operate for
    what acts (starting assessments) and for any other method."""
    verb = method.upper()
    if verb in READ_METHODS or (verb == "POST" and path in READ_POSTS):
        return READ_ROLE
    return OPERATE_ROLE


def principal_roles(header: str) -> frozenset[str]:
    """The app roles in an `X-MS-CLIENT-PRINCIPAL` value; ValueError says why it is unreadable."""
    if len(header) > MAX_PRINCIPAL_BYTES:
        raise ValueError("larger than any principal App Service sends")
    text = header.strip()
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=False)
        principal = json.loads(raw)
    except (binascii.Error, ValueError) as error:
        raise ValueError("not base64-encoded JSON") from error
    if not isinstance(principal, dict):
        raise ValueError("not a JSON object")
    claims = principal.get("claims")
    if not isinstance(claims, list):
        raise ValueError("no claims array")
    role_types = {ROLES_CLAIM}
    if isinstance(principal.get("role_typ"), str):
        role_types.add(principal["role_typ"])
    roles = set()
    for claim in claims:
        if not isinstance(claim, dict):
            raise ValueError("a claim is not an object")
        kind, value = claim.get("typ"), claim.get("val")
        if kind in role_types and isinstance(value, str):
            roles.add(value)
    return frozenset(roles)


@dataclass(frozen=True, slots=True)
class Access:
    """What a request must carry. `api_key` None: the app checks no key (the Functions host
    does); `require_roles`: the App Service principal must hold the method's app role."""

    api_key: str | None = None
    require_roles: bool = False

    def check(
        self, method: str, path: str, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> Problem | None:
        """None when the request may go on; else the 401 or 403 to answer."""
        if path in OPEN_PATHS:
            return None
        if self.api_key is not None:
            given = headers.get(KEY_HEADER) or query.get(KEY_PARAMETER)
            if given is None:
                return _unauthenticated(
                    f"send the API key in the {KEY_HEADER} header (or the {KEY_PARAMETER} "
                    "query parameter)",
                    scheme=f'ApiKey header="{KEY_HEADER}"',
                )
            if not hmac.compare_digest(given.encode(), self.api_key.encode()):
                return _unauthenticated(
                    "the API key is not this server's", scheme=f'ApiKey header="{KEY_HEADER}"'
                )
        if self.require_roles:
            header = headers.get(PRINCIPAL_HEADER)
            if not header:
                return _unauthenticated(
                    "no signed-in principal: App Service Authentication passes it in "
                    "X-MS-CLIENT-PRINCIPAL",
                    scheme="Bearer",
                )
            try:
                roles = principal_roles(header)
            except ValueError as error:
                return _unauthenticated(
                    f"X-MS-CLIENT-PRINCIPAL cannot be read: {error}", scheme="Bearer"
                )
            role = required_role(method, path)
            if role not in roles:
                return Problem(
                    403,
                    f"{method.upper()} needs app role {role}; the principal holds "
                    f"{', '.join(sorted(roles)) or 'no app role'}",
                    type=FORBIDDEN,
                    extensions={"required_role": role},
                )
        return None


def _unauthenticated(detail: str, *, scheme: str) -> Problem:
    return Problem(401, detail, type=NOT_AUTHENTICATED, headers={"WWW-Authenticate": scheme})


class AccessMiddleware:
    """Answers 401/403 before routing, so that a caller without access learns nothing else
    (not even which paths exist)."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {
                name.decode("latin-1").lower(): value.decode("latin-1")
                for name, value in scope["headers"]
            }
            query: dict[str, str] = {}
            if self.access.api_key is not None and KEY_HEADER not in headers:
                query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            problem = self.access.check(scope["method"], scope["path"], headers, query)
            if problem is not None:
                await problem.response(instance=scope["path"])(scope, receive, send)
                return
        await self.app(scope, receive, send)
