"""One typed settings object, read once from `HOTPATCH_*` environment variables."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hotpatch.core.calendar import MonthOverride, YearMonth
from hotpatch.core.models import MonthKind, OsFamily
from hotpatch.core.policy import Policy
from hotpatch.errors import ConfigurationError

PREFIX = "HOTPATCH_"
MAX_ASSESSMENT_AGE_HOURS = 24 * 366
#: A subscription id is a GUID (ARM rejects anything else in /subscriptions/{id}).
_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
#: The six fields of an NCRONTAB expression, as the Functions timer trigger reads them:
#: https://learn.microsoft.com/azure/azure-functions/functions-bindings-timer#ncrontab-expressions
_NCRONTAB_FIELDS = ("second", "minute", "hour", "day", "month", "day-of-week")
_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,-]+$")
#: Microsoft's Windows Server release information page (hotpatch.release_page reads it); the
#: same address here, so that reading the settings loads no HTML parser.
PAGE_URL = "https://learn.microsoft.com/windows/release-health/windows-server-release-info"
#: Management group ids: up to 90 letters, digits, hyphens, underscores, periods and
#: parentheses, not ending in a period.
#: (Microsoft.Management in
#: https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules)
_MANAGEMENT_GROUP = re.compile(r"^[A-Za-z0-9_().-]{0,89}[A-Za-z0-9_()-]$")


class Settings(BaseModel):
    """Every setting the service reads. The environment variable is `HOTPATCH_<NAME>`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_catalog: Path | None = Field(
        default=None, description="replacement for the shipped image catalog (JSON)"
    )
    release_catalog: Path | None = Field(
        default=None, description="replacement for the shipped release catalog (JSON)"
    )
    allow_preview_images: bool = Field(
        default=False, description="count preview hotpatch offers as eligible"
    )
    assessment_max_age_hours: int = Field(
        # A year at most: beyond that every assessment is stale anyway, and the hours must
        # still fit a timedelta (an enormous value used to crash instead of naming itself).
        default=72,
        gt=0,
        le=MAX_ASSESSMENT_AGE_HOURS,
        description="an older assessment is stale",
    )
    hotpatch_grace_days: int = Field(
        default=7, ge=0, le=27, description="days after a hotpatch release before non-compliant"
    )
    baseline_grace_days: int = Field(
        default=14, ge=0, le=27, description="days after a baseline release before non-compliant"
    )
    ring_tag: str = Field(
        default="hotpatch-ring", min_length=1, description="the tag naming a machine's ring"
    )
    month_overrides: tuple[MonthOverride, ...] = Field(
        default=(),
        description="operator month kinds: 'ws2022:2026-08=unplanned_baseline,2026-09=baseline'",
    )

    subscriptions: tuple[str, ...] = Field(
        default=(), description="subscription ids to sweep, comma-separated (default: tenant)"
    )
    management_groups: tuple[str, ...] = Field(
        default=(), description="management group names to sweep, comma-separated"
    )
    managed_identity_client_id: str | None = Field(
        default=None, description="client id of a user-assigned managed identity"
    )
    remediation_policy: Path | None = Field(
        default=None,
        description="the remediation policy file, YAML or JSON (unset: report mode, nothing "
        "is ever started; see examples/policy.yaml)",
    )
    require_roles: bool = Field(
        default=False,
        description="the HTTP API requires App Service Authentication's principal to hold app "
        "role Hotpatch.Read (reads) or Hotpatch.Operate (writes); off: function keys only",
    )
    store: str = Field(
        default=".hotpatch/store",
        min_length=1,
        description="the compliance store: a directory, sqlite:///path, an https:// blob "
        "endpoint or a storage connection string (hotpatch.store.open_store)",
    )

    sweep_schedule: str = Field(
        default="0 0 * * * *",
        description="when the Function App's `sweep` timer runs (NCRONTAB, six fields, UTC): "
        "hourly",
    )
    catalog_schedule: str = Field(
        default="0 30 5 * * *",
        description="when the `catalog` timer refreshes the release catalog (NCRONTAB): daily "
        "at 05:30 UTC",
    )
    remediate_schedule: str = Field(
        default="0 */30 * * * *",
        description="when the `remediate` timer plans and queues operations (NCRONTAB): every "
        "30 minutes",
    )
    catalog_source: str = Field(
        default=PAGE_URL,
        min_length=1,
        description="where the `catalog` timer reads the release information page (an https "
        "URL or a saved copy of the page)",
    )

    @field_validator("sweep_schedule", "catalog_schedule", "remediate_schedule")
    @classmethod
    def _ncrontab(cls, value: str) -> str:
        fields = value.split()
        if len(fields) != len(_NCRONTAB_FIELDS) or not all(map(_CRON_FIELD.match, fields)):
            raise ValueError(
                f"{value!r} is not an NCRONTAB schedule: six fields, "
                f"{' '.join(_NCRONTAB_FIELDS)} (e.g. '0 0 * * * *', hourly)"
            )
        return " ".join(fields)

    @field_validator("subscriptions", "management_groups", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("subscriptions")
    @classmethod
    def _guids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not _GUID.match(item):
                raise ValueError(
                    f"{item!r} is not a subscription id (a GUID such as "
                    "00000000-0000-0000-0000-000000000000)"
                )
        return value

    @field_validator("management_groups")
    @classmethod
    def _group_ids(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not _MANAGEMENT_GROUP.match(item):
                raise ValueError(
                    f"{item!r} is not a management group id (up to 90 letters, digits, "
                    "'-', '_', '.', '(' or ')', not ending in '.')"
                )
        return value

    @model_validator(mode="after")
    def _one_kind_of_scope(self) -> Settings:
        if self.subscriptions and self.management_groups:
            raise ValueError("set HOTPATCH_SUBSCRIPTIONS or HOTPATCH_MANAGEMENT_GROUPS, not both")
        return self

    @field_validator("month_overrides", mode="before")
    @classmethod
    def _parse_overrides(cls, value: Any) -> Any:
        if isinstance(value, str):
            return parse_month_overrides(value)
        return value

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read the settings; a bad value raises ConfigurationError naming the variable."""
        known = {name.upper(): name for name in cls.model_fields}
        values: dict[str, Any] = {}
        for variable, raw in environ.items():
            if not variable.startswith(PREFIX):
                continue
            name = known.get(variable.removeprefix(PREFIX))
            if name is None:
                # A typo must not quietly widen a sweep to the whole tenant, say.
                near = difflib.get_close_matches(
                    variable, [PREFIX + k for k in known], n=1, cutoff=0.6
                )
                hint = f"; did you mean {near[0]}?" if near else ""
                raise ConfigurationError(f"{variable}: not a hotpatch setting{hint}")
            if raw != "":
                values[name] = raw
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            problems = [
                f"{PREFIX}{str(item['loc'][0]).upper()}: "
                + item["msg"].removeprefix("Value error, ")
                if item["loc"]
                else item["msg"].removeprefix("Value error, ")
                for item in error.errors()
            ]
            raise ConfigurationError("; ".join(problems)) from error

    def policy(self) -> Policy:
        return Policy(
            assessment_max_age=timedelta(hours=self.assessment_max_age_hours),
            hotpatch_grace=timedelta(days=self.hotpatch_grace_days),
            baseline_grace=timedelta(days=self.baseline_grace_days),
            allow_preview_images=self.allow_preview_images,
            ring_tag=self.ring_tag,
            month_overrides=self.month_overrides,
        )


def parse_month_overrides(text: str) -> tuple[MonthOverride, ...]:
    """`[os:]YYYY-MM=kind` items separated by commas; ValueError says which item is wrong."""
    overrides = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        where, sep, kind_text = item.partition("=")
        os_text, _, month_text = where.rpartition(":")
        try:
            if not sep:
                raise ValueError("expected [os:]YYYY-MM=kind")
            kind = MonthKind(kind_text.strip())
            os = OsFamily(os_text.strip()) if os_text else None
            overrides.append(MonthOverride(YearMonth.parse(month_text), kind, os))
        except ValueError as error:
            kinds = ", ".join(k.value for k in MonthKind)
            raise ValueError(f"{item!r}: {error} (kinds: {kinds}; os: ws2022, ws2025)") from None
    return tuple(overrides)
