"""The hotpatch calendar: Patch Tuesdays, release instants, month kinds and build positions."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from hotpatch.core.models import BuildPosition, Channel, MonthKind, OsFamily, parse_build

if TYPE_CHECKING:
    from hotpatch.core.releases import ReleaseCatalog

#: Releases ship around 10:00 Pacific time on Patch Tuesday.
PACIFIC = ZoneInfo("America/Los_Angeles")
RELEASE_LOCAL_TIME = time(10, 0)
#: The quarterly rule: baselines in the first month of each quarter.
BASELINE_MONTHS = frozenset({1, 4, 7, 10})

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True, slots=True, order=True)
class YearMonth:
    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12:
            raise ValueError(f"month must be 1-12, got {self.month}")

    @classmethod
    def parse(cls, text: str) -> YearMonth:
        """Read `YYYY-MM`; raises ValueError naming the expected form."""
        match = _MONTH.match(text.strip())
        if match is None:
            raise ValueError(f"expected YYYY-MM, got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def of(cls, moment: date | datetime) -> YearMonth:
        return cls(moment.year, moment.month)

    def shift(self, months: int) -> YearMonth:
        index = self.year * 12 + (self.month - 1) + months
        return YearMonth(index // 12, index % 12 + 1)

    def __sub__(self, other: YearMonth) -> int:
        """Whole months from `other` to `self`."""
        return (self.year - other.year) * 12 + (self.month - other.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def patch_tuesday(year: int, month: int) -> date:
    """The second Tuesday of the month."""
    first = date(year, month, 1)
    # weekday(): Monday is 0, Tuesday 1.
    return date(year, month, 1 + (1 - first.weekday()) % 7 + 7)


@lru_cache(maxsize=1024)
def release_instant(year: int, month: int) -> datetime:
    """10:00 America/Los_Angeles on Patch Tuesday, in UTC (17:00 in PDT, 18:00 in PST)."""
    local = datetime.combine(patch_tuesday(year, month), RELEASE_LOCAL_TIME, tzinfo=PACIFIC)
    return local.astimezone(UTC)


def rule_kind(month: int) -> MonthKind:
    """The quarterly rule alone, before the catalog and operator overrides."""
    return MonthKind.BASELINE if month in BASELINE_MONTHS else MonthKind.HOTPATCH


@dataclass(frozen=True, slots=True)
class MonthOverride:
    """An operator's word on a month's kind (e.g. an announced unplanned baseline).

    `os` None applies to every OS.
    """

    month: YearMonth
    kind: MonthKind
    os: OsFamily | None = None


@dataclass(frozen=True, slots=True)
class ReleaseSlot:
    """One OS's Patch Tuesday release in one month; KB and build are None until published."""

    os: OsFamily
    month: YearMonth
    kind: MonthKind
    patch_tuesday: date
    release_utc: datetime
    kb: str | None
    build: str | None
    #: Where the kind came from: "rule", "catalog" or "override".
    source: str
    #: False before the OS's hotpatch program began or after it ended: every update restarts.
    in_program: bool = True
    #: Past the catalog's horizon: Microsoft may have published it, the catalog cannot say.
    beyond_catalog: bool = False

    @property
    def restart(self) -> bool:
        return self.kind.restart or not self.in_program

    @property
    def status(self) -> str:
        """How much is known of this release: what a calendar shows instead of a KB."""
        if not self.in_program:
            return "outside_program"
        if self.kb is not None:
            return "published"
        if self.beyond_catalog:
            return "beyond_catalog"
        return "not_in_catalog"


class Calendar:
    """The quarterly rule, overridden by the release catalog, overridden by the operator."""

    def __init__(self, catalog: ReleaseCatalog, overrides: Iterable[MonthOverride] = ()) -> None:
        self.catalog = catalog
        self._overrides: dict[tuple[OsFamily | None, YearMonth], MonthKind] = {
            (o.os, o.month): o.kind for o in overrides
        }

    def slot(self, os: OsFamily, month: YearMonth) -> ReleaseSlot:
        release = self.catalog.monthly(os, str(month))
        kind, source = rule_kind(month.month), "rule"
        if release is not None and release.kind is not None:
            kind, source = release.kind, "catalog"
        override = self._overrides.get((os, month)) or self._overrides.get((None, month))
        if override is not None:
            kind, source = override, "override"
        program = self.catalog.program(os)
        horizon = self.catalog.covers_through
        return ReleaseSlot(
            os=os,
            month=month,
            kind=kind,
            patch_tuesday=patch_tuesday(month.year, month.month),
            release_utc=release_instant(month.year, month.month),
            kb=release.kb if release else None,
            build=release.build if release else None,
            source=source,
            in_program=program is None or program.covers(month),
            beyond_catalog=horizon is not None and month > horizon,
        )

    def kind(self, os: OsFamily, month: YearMonth) -> MonthKind:
        return self.slot(os, month).kind

    def months(self, os: OsFamily, start: YearMonth, count: int) -> list[ReleaseSlot]:
        return [self.slot(os, start.shift(i)) for i in range(count)]

    def in_force(self, os: OsFamily, now: datetime) -> ReleaseSlot:
        """The newest release at `now`: before this month's release instant, last month's."""
        _require_aware(now)
        month = YearMonth.of(now.astimezone(UTC))
        if now < release_instant(month.year, month.month):
            month = month.shift(-1)
        return self.slot(os, month)

    def staleness(self, now: datetime) -> Staleness | None:
        """Whether a release instant has passed that the catalog cannot hold (past its horizon)."""
        _require_aware(now)
        horizon = self.catalog.covers_through
        if horizon is None:
            return None
        first = horizon.shift(1)
        since = release_instant(first.year, first.month)
        if now < since:
            return None
        current = YearMonth.of(now.astimezone(UTC))
        if now < release_instant(current.year, current.month):
            current = current.shift(-1)
        return Staleness(horizon, since, current - horizon)

    def program_ended(self, os: OsFamily, now: datetime) -> YearMonth | None:
        """The last month of `os`'s hotpatch program once its last release is superseded."""
        program = self.catalog.program(os)
        last = program.last if program else None
        if last is None:
            return None
        after = last.shift(1)
        return last if now >= release_instant(after.year, after.month) else None

    def next_baseline_after(self, os: OsFamily, month: YearMonth) -> ReleaseSlot:
        """The first restart release after `month`: what brings a machine back on the track."""
        current = self.slot(os, month.shift(1))
        while not current.restart:
            current = self.slot(os, current.month.shift(1))
        return current

    def baseline_at_or_before(self, slot: ReleaseSlot) -> ReleaseSlot:
        """The newest restart release (planned or unplanned) at or before `slot`."""
        current = slot
        while not current.restart:
            current = self.slot(slot.os, current.month.shift(-1))
        return current

    def restart_forecast(self, os: OsFamily, now: datetime, count: int) -> list[ReleaseSlot]:
        """The next `count` releases after `now` that need a restart."""
        _require_aware(now)
        found: list[ReleaseSlot] = []
        month = YearMonth.of(now.astimezone(UTC))
        while len(found) < count:
            slot = self.slot(os, month)
            if slot.restart and slot.release_utc > now:
                found.append(slot)
            month = month.shift(1)
        return found

    def locate(self, build: str, reference: ReleaseSlot) -> BuildPosition | None:
        """Where a reported OS version stands against `reference` (usually the release in force).

        None when the text is not a hotpatch OS build (e.g. a Windows Server 2019 version).
        """
        parsed = parse_build(build)
        if parsed is None:
            return None
        os, _, revision = parsed
        if os is None:
            return None
        # Only releases out by the reference month count: a row for a release still to come
        # never changes where a build stood before it.
        through = str(reference.month)
        exact = self.catalog.exact(os, revision, through)
        if exact is not None and not exact.on_track:
            # A regular cumulative (or out-of-band) update: current as of its month, but off the
            # hotpatch track until the next baseline.
            month = YearMonth.of(exact.date)
            return BuildPosition(
                os=os,
                build=build,
                release_month=str(month),
                kb=exact.kb,
                exact=True,
                releases_behind=max(0, reference.month - month),
                on_current_baseline=False,
                channel=Channel.REGULAR,
            )
        found = self.catalog.at_or_below(os, revision, through)
        newest = self.catalog.newest_revision(os, through)
        if newest is not None and revision > newest:
            # Newer than every build the catalog knows: it cannot say which release this is,
            # so the build is never called behind (the assessment still judges the machine).
            return BuildPosition(
                os=os,
                build=build,
                release_month=found.month if found else None,
                kb=None,
                exact=False,
                releases_behind=None,
                on_current_baseline=None,
                beyond_catalog=True,
            )
        if found is None:
            # Older than anything published for the hotpatch program: off the cycle.
            return BuildPosition(os, build, None, None, False, None, False)
        position = YearMonth.parse(found.month)
        baseline = self.baseline_at_or_before(reference)
        return BuildPosition(
            os=os,
            build=build,
            release_month=str(position),
            kb=found.kb if found.revision == revision else None,
            exact=found.revision == revision,
            releases_behind=max(0, reference.month - position),
            on_current_baseline=position >= baseline.month,
        )


@dataclass(frozen=True, slots=True)
class Staleness:
    """The catalog's horizon has passed: releases have shipped that it does not hold."""

    covers_through: YearMonth
    #: The release instant of the first month past the horizon.
    since: datetime
    #: How many Patch Tuesdays have passed since the horizon.
    releases_missing: int

    @property
    def message(self) -> str:
        return (
            f"the release catalog covers releases through {self.covers_through}, but "
            f"{self.releases_missing} Patch Tuesday release(s) have shipped since "
            f"{self.since.strftime('%Y-%m-%d')}: builds newer than the catalog are not judged "
            "by their build. Update it with `hotpatch catalog update --from URL|FILE --write` "
            "(HOTPATCH_RELEASE_CATALOG)"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "stale": True,
            "covers_through": str(self.covers_through),
            "since": self.since.isoformat().replace("+00:00", "Z"),
            "releases_missing": self.releases_missing,
            "message": self.message,
        }


def grace_deadline(
    slot: ReleaseSlot, hotpatch_grace: timedelta, baseline_grace: timedelta
) -> datetime:
    """When a machine that has not taken `slot` stops being pending and becomes non-compliant."""
    return slot.release_utc + (baseline_grace if slot.restart else hotpatch_grace)


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
