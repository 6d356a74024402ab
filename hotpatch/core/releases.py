"""The release catalog: Microsoft's published releases, their track, its horizon and programs."""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hotpatch.core.calendar import YearMonth, patch_tuesday
from hotpatch.core.models import Channel, MonthKind, OsFamily, parse_build

_MONTH_PATTERN = r"^\d{4}-(0[1-9]|1[0-2])$"


class Release(BaseModel):
    """One published release of one OS, on the hotpatch track or the regular channel."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    os: OsFamily
    date: dt.date
    #: The month kind a hotpatch-track release sets; None for a regular-channel update.
    kind: MonthKind | None = None
    build: str = Field(description="build without the 10.0 prefix, e.g. 20348.4711")
    #: Every hotpatch-track row has its KB; a regular row may lack one when it was not recorded.
    kb: str | None = Field(default=None, pattern=r"^KB\d{6,8}$")
    out_of_band: bool = False
    channel: Channel = Channel.HOTPATCH

    @field_validator("build")
    @classmethod
    def _build_is_a_build(cls, value: str) -> str:
        if parse_build(value) is None:
            raise ValueError("must look like 20348.4711")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Release:
        parsed = parse_build(self.build)
        assert parsed is not None
        if parsed[0] is not self.os:
            raise ValueError(f"build {self.build} does not belong to {self.os.value}")
        if not self.out_of_band and self.date != patch_tuesday(self.date.year, self.date.month):
            raise ValueError(
                f"date {self.date} is not Patch Tuesday; mark out_of_band releases as such"
            )
        if self.channel is Channel.HOTPATCH:
            if self.kind is None:
                raise ValueError("kind: Field required for a hotpatch-track release")
            if self.kb is None:
                raise ValueError("kb: Field required for a hotpatch-track release")
        elif self.kind is not None:
            raise ValueError("a regular-channel update sets no month kind: leave kind null")
        return self

    @property
    def month(self) -> str:
        return f"{self.date.year:04d}-{self.date.month:02d}"

    @property
    def revision(self) -> int:
        return int(self.build.rsplit(".", 1)[1])

    @property
    def on_track(self) -> bool:
        return self.channel is Channel.HOTPATCH

    def describe(self) -> str:
        """`KB5087539 (build 10.0.26100.32860, the regular cumulative update of 2026-05)`."""
        if self.out_of_band:
            track = "hotpatch-track" if self.on_track else "regular"
            what = f"the {track} out-of-band update of {self.date}"
        elif self.on_track:
            kind = self.kind.value.replace("_", " ") if self.kind else "release"
            what = f"the {kind} of {self.month}"
        else:
            what = f"the regular cumulative update of {self.month}"
        return f"{self.kb or 'KB not recorded'} (build 10.0.{self.build}, {what})"


class Program(BaseModel):
    """When Microsoft runs the hotpatch program for one OS (months outside it have none)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    os: OsFamily
    first_month: str = Field(pattern=_MONTH_PATTERN)
    #: The last month with a hotpatch release; None while Microsoft has announced no end.
    last_month: str | None = Field(default=None, pattern=_MONTH_PATTERN)
    source: str | None = None

    @property
    def first(self) -> YearMonth:
        return YearMonth.parse(self.first_month)

    @property
    def last(self) -> YearMonth | None:
        return YearMonth.parse(self.last_month) if self.last_month else None

    def covers(self, month: YearMonth) -> bool:
        last = self.last
        return self.first <= month and (last is None or month <= last)


class ReleaseCatalog:
    """Lookups over the release rows: by OS and month, by build, and the catalog's horizon."""

    def __init__(
        self,
        releases: Iterable[Release],
        covers_through: YearMonth | None = None,
        programs: Iterable[Program] = (),
    ) -> None:
        self.releases: tuple[Release, ...] = tuple(sorted(releases, key=lambda r: (r.os, r.date)))
        self.programs: dict[OsFamily, Program] = {p.os: p for p in programs}
        self._monthly: dict[tuple[OsFamily, str], Release] = {}
        track: dict[OsFamily, list[Release]] = {}
        self._exact: dict[tuple[OsFamily, int], Release] = {}
        self._newest_revision: dict[OsFamily, int] = {}
        for release in self.releases:
            if release.on_track and not release.out_of_band:
                key = (release.os, release.month)
                if key in self._monthly:
                    raise ValueError(f"two releases for {release.os.value} in {release.month}")
                self._monthly[key] = release
            if release.on_track:
                track.setdefault(release.os, []).append(release)
            self._exact.setdefault((release.os, release.revision), release)
            newest = self._newest_revision.get(release.os, -1)
            self._newest_revision[release.os] = max(newest, release.revision)
        self._by_revision = {
            os: sorted(rows, key=lambda r: r.revision) for os, rows in track.items()
        }
        self._revisions = {os: [r.revision for r in rows] for os, rows in self._by_revision.items()}
        self.covers_through: YearMonth | None = covers_through or self._newest_common_month()

    def _newest_common_month(self) -> YearMonth | None:
        """Without a stated horizon: the newest month every OS has a Patch Tuesday release for."""
        newest = [
            max(YearMonth.parse(month) for (os_, month) in self._monthly if os_ is os)
            for os in {os for os, _ in self._monthly}
        ]
        return min(newest) if newest else None

    def monthly(self, os: OsFamily, month: str) -> Release | None:
        """The Patch Tuesday hotpatch-track release of `os` in `month` (YYYY-MM), if published."""
        return self._monthly.get((os, month))

    def at_or_below(self, os: OsFamily, revision: int) -> Release | None:
        """The newest hotpatch-track release whose build revision is at most `revision`."""
        revisions = self._revisions.get(os, [])
        index = bisect_right(revisions, revision)
        return self._by_revision[os][index - 1] if index else None

    def exact(self, os: OsFamily, revision: int) -> Release | None:
        """The release (on either track) whose build is exactly this revision."""
        return self._exact.get((os, revision))

    def latest(self, os: OsFamily) -> Release | None:
        """The newest hotpatch-track release of `os`."""
        rows = self._by_revision.get(os)
        return rows[-1] if rows else None

    def newest_revision(self, os: OsFamily) -> int | None:
        """The highest build revision the catalog knows for `os`, on either track."""
        return self._newest_revision.get(os)

    def program(self, os: OsFamily) -> Program | None:
        return self.programs.get(os)


class ReleaseCatalogFile(BaseModel):
    """The shape of `releases.json`."""

    model_config = ConfigDict(extra="ignore")

    sources: list[str] = []
    #: The last month whose releases the catalog holds, for every OS.
    covers_through: str | None = Field(default=None, pattern=_MONTH_PATTERN)
    programs: list[Program] = []
    releases: list[Release]
