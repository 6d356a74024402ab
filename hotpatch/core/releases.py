"""The release catalog: Microsoft's published releases, their track, its horizon and programs."""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections.abc import Iterable
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class _View:
    """The releases of one OS published up to a month, indexed by build revision."""

    #: Hotpatch-track releases, by build revision.
    track: tuple[Release, ...]
    revisions: tuple[int, ...]
    #: Every release (either track) by its exact build revision.
    exact: dict[int, Release]
    newest: int | None


class ReleaseCatalog:
    """Lookups over the release rows: by OS and month, by build, and the catalog's horizon.

    Build lookups take `through` (YYYY-MM): only releases of that month or earlier count, so a
    row for a release still to come never changes how a build is placed before it ships.
    """

    def __init__(
        self,
        releases: Iterable[Release],
        covers_through: YearMonth | None = None,
        programs: Iterable[Program] = (),
    ) -> None:
        self.releases: tuple[Release, ...] = tuple(sorted(releases, key=lambda r: (r.os, r.date)))
        self.programs: dict[OsFamily, Program] = {p.os: p for p in programs}
        self._monthly: dict[tuple[OsFamily, str], Release] = {}
        for release in self.releases:
            if release.on_track and not release.out_of_band:
                key = (release.os, release.month)
                if key in self._monthly:
                    raise ValueError(f"two releases for {release.os.value} in {release.month}")
                self._monthly[key] = release
        self._views: dict[tuple[OsFamily, str | None], _View] = {}
        self.covers_through: YearMonth | None = covers_through or self._newest_common_month()

    def _newest_common_month(self) -> YearMonth | None:
        """Without a stated horizon: the newest month every OS has a Patch Tuesday release for."""
        newest = [
            max(YearMonth.parse(month) for (os_, month) in self._monthly if os_ is os)
            for os in {os for os, _ in self._monthly}
        ]
        return min(newest) if newest else None

    def _view(self, os: OsFamily, through: str | None) -> _View:
        view = self._views.get((os, through))
        if view is None:
            rows = [
                r for r in self.releases if r.os is os and (through is None or r.month <= through)
            ]
            track = tuple(sorted((r for r in rows if r.on_track), key=lambda r: r.revision))
            exact: dict[int, Release] = {}
            for release in rows:
                exact.setdefault(release.revision, release)
            view = _View(
                track=track,
                revisions=tuple(r.revision for r in track),
                exact=exact,
                newest=max(exact) if exact else None,
            )
            self._views[(os, through)] = view
        return view

    def monthly(self, os: OsFamily, month: str) -> Release | None:
        """The Patch Tuesday hotpatch-track release of `os` in `month` (YYYY-MM), if published."""
        return self._monthly.get((os, month))

    def at_or_below(
        self, os: OsFamily, revision: int, through: str | None = None
    ) -> Release | None:
        """The newest hotpatch-track release whose build revision is at most `revision`."""
        view = self._view(os, through)
        index = bisect_right(view.revisions, revision)
        return view.track[index - 1] if index else None

    def exact(self, os: OsFamily, revision: int, through: str | None = None) -> Release | None:
        """The release (on either track) whose build is exactly this revision."""
        return self._view(os, through).exact.get(revision)

    def latest(self, os: OsFamily, through: str | None = None) -> Release | None:
        """The newest hotpatch-track release of `os`."""
        track = self._view(os, through).track
        return track[-1] if track else None

    def newest_revision(self, os: OsFamily, through: str | None = None) -> int | None:
        """The highest build revision the catalog knows for `os`, on either track."""
        return self._view(os, through).newest

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
