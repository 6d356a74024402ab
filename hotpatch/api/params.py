"""Query parameters read strictly: an unknown, repeated or malformed one is a 400 naming it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import TypeVar

from hotpatch.api.access import KEY_PARAMETER
from hotpatch.api.index import ComplianceFilter
from hotpatch.api.problems import bad_parameter
from hotpatch.core.calendar import YearMonth
from hotpatch.core.models import OsFamily, State
from hotpatch.core.reasons import ReasonCode
from hotpatch.ports.store import RunKind

_T = TypeVar("_T")

#: A subscription id is a GUID (ARM rejects anything else in /subscriptions/{id}).
GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
#: Resource group names: 1-90 letters, digits, '_', '-', '.', '(' or ')', not ending in '.'.
#: https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules
RESOURCE_GROUP = re.compile(r"^[-\w.()]{0,89}[-\w()]$")
#: Azure's limits on a tag's name and value.
TAG_NAME_MAX = 512
TAG_VALUE_MAX = 256
RING_MAX = 256
#: Run ids as the store writes them (letters, digits, '.', '_', '-').
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

PAGE_DEFAULT = 100
PAGE_MAX = 1000
RUNS_DEFAULT = 20
RUNS_MAX = 1000
TREND_DEFAULT = 30
TREND_MAX = 100
MONTHS_DEFAULT = 12
MONTHS_MAX = 1200
#: The months the calendar answers for (as `hotpatch calendar`).
FIRST_MONTH = YearMonth(2000, 1)
LAST_MONTH = YearMonth(9990, 12)

COMPLIANCE_PARAMETERS = frozenset(
    {
        "subscription",
        "resourceGroup",
        "state",
        "os",
        "ring",
        "tag",
        "eligible",
        "reason",
        "top",
        "continuationToken",
        "format",
    }
)


class Params:
    """A request's query parameters: those not `allowed` are refused (the API key's `code`
    is allowed everywhere)."""

    def __init__(self, items: Iterable[tuple[str, str]], allowed: Iterable[str] = ()) -> None:
        self._values: dict[str, list[str]] = {}
        known = {*allowed, KEY_PARAMETER}
        for name, value in items:
            if name not in known:
                listed = ", ".join(sorted(set(allowed))) or "none"
                raise bad_parameter(name, f"not a parameter of this endpoint (it takes: {listed})")
            self._values.setdefault(name, []).append(value)

    def many(self, name: str) -> list[str]:
        return self._values.get(name, [])

    def one(self, name: str) -> str | None:
        values = self.many(name)
        if len(values) > 1:
            raise bad_parameter(name, "given more than once")
        return values[0] if values else None

    def whole(self, name: str, default: int, low: int, high: int) -> int:
        text = self.one(name)
        if text is None:
            return default
        if not re.fullmatch(r"[0-9]{1,9}", text.strip()):
            raise bad_parameter(name, f"{text!r} is not a whole number ({low} to {high})")
        value = int(text)
        if not low <= value <= high:
            raise bad_parameter(name, f"must be from {low} to {high}, got {value}")
        return value

    def boolean(self, name: str) -> bool | None:
        text = self.one(name)
        if text is None:
            return None
        if text not in ("true", "false"):
            raise bad_parameter(name, f"{text!r} is neither true nor false")
        return text == "true"

    def choice(self, name: str, choices: Iterable[str], default: str | None = None) -> str | None:
        text = self.one(name)
        if text is None:
            return default
        return _member(name, text, choices, str)


def _member(name: str, text: str, choices: Iterable[str], make: Callable[[str], _T]) -> _T:
    options = choices if isinstance(choices, frozenset) else frozenset(choices)
    if text not in options:
        ordered = sorted(options)
        shown = ", ".join(ordered) if len(ordered) <= 12 else ", ".join(ordered[:12]) + ", ..."
        raise bad_parameter(name, f"{text!r} is not one of {shown}")
    return make(text)


_STATES = frozenset(m.value for m in State)
_OS = frozenset(m.value for m in OsFamily)
_REASONS = frozenset(m.value for m in ReasonCode)


def compliance_filter(params: Params) -> ComplianceFilter:
    """The filters of `GET /api/compliance`."""
    for subscription in params.many("subscription"):
        if not GUID.match(subscription):
            raise bad_parameter(
                "subscription",
                f"{subscription!r} is not a subscription id (a GUID such as "
                "00000000-0000-0000-0000-000000000000)",
            )
    for group in params.many("resourceGroup"):
        if not RESOURCE_GROUP.match(group):
            raise bad_parameter(
                "resourceGroup",
                f"{group!r} is not a resource group name (1-90 letters, digits, '_', '-', '.', "
                "'(' or ')', not ending in '.')",
            )
    rings = params.many("ring")
    for ring in rings:
        if not 0 < len(ring) <= RING_MAX:
            raise bad_parameter("ring", f"a ring name has 1 to {RING_MAX} characters")
    return ComplianceFilter(
        states=frozenset(_member("state", s, _STATES, State) for s in params.many("state")),
        subscriptions=frozenset(params.many("subscription")),
        resource_groups=frozenset(params.many("resourceGroup")),
        os=frozenset(_member("os", o, _OS, OsFamily) for o in params.many("os")),
        rings=frozenset(rings),
        tags=tuple(_tag(text) for text in params.many("tag")),
        eligible=params.boolean("eligible"),
        reasons=frozenset(_member("reason", r, _REASONS, str) for r in params.many("reason")),
    )


def _tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise bad_parameter("tag", f"{text!r} is not key=value (e.g. tag=env=prod)")
    if len(key) > TAG_NAME_MAX or len(value) > TAG_VALUE_MAX:
        raise bad_parameter(
            "tag", f"a tag name has at most {TAG_NAME_MAX} characters, a value {TAG_VALUE_MAX}"
        )
    return key, value


def run_kind(params: Params) -> RunKind | None:
    text = params.choice("kind", (k.value for k in RunKind))
    return None if text is None else RunKind(text)


def month(params: Params, name: str) -> YearMonth | None:
    text = params.one(name)
    if text is None:
        return None
    try:
        value = YearMonth.parse(text)
    except ValueError as error:
        raise bad_parameter(name, str(error)) from None
    if not FIRST_MONTH <= value <= LAST_MONTH:
        raise bad_parameter(name, f"{text} is outside the calendar ({FIRST_MONTH} to {LAST_MONTH})")
    return value
