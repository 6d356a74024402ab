"""The release catalog: Microsoft's published hotpatch releases, one row per release."""

from __future__ import annotations

import datetime as dt
from bisect import bisect_right
from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hotpatch.core.calendar import patch_tuesday
from hotpatch.core.models import MonthKind, OsFamily, parse_build


class Release(BaseModel):
    """One published release of one OS."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    os: OsFamily
    date: dt.date
    kind: MonthKind
    build: str = Field(description="build without the 10.0 prefix, e.g. 20348.4711")
    kb: str = Field(pattern=r"^KB\d{6,8}$")
    out_of_band: bool = False

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
        return self

    @property
    def month(self) -> str:
        return f"{self.date.year:04d}-{self.date.month:02d}"

    @property
    def revision(self) -> int:
        return int(self.build.rsplit(".", 1)[1])


class ReleaseCatalog:
    """Lookups over the release rows: by OS and month, and by build."""

    def __init__(self, releases: Iterable[Release]) -> None:
        self.releases: tuple[Release, ...] = tuple(sorted(releases, key=lambda r: (r.os, r.date)))
        self._monthly: dict[tuple[OsFamily, str], Release] = {}
        by_os: dict[OsFamily, list[Release]] = {}
        for release in self.releases:
            if not release.out_of_band:
                key = (release.os, release.month)
                if key in self._monthly:
                    raise ValueError(f"two releases for {release.os.value} in {release.month}")
                self._monthly[key] = release
            by_os.setdefault(release.os, []).append(release)
        self._by_revision = {
            os: sorted(rows, key=lambda r: r.revision) for os, rows in by_os.items()
        }
        self._revisions = {os: [r.revision for r in rows] for os, rows in self._by_revision.items()}

    def monthly(self, os: OsFamily, month: str) -> Release | None:
        """The Patch Tuesday release of `os` in `month` (YYYY-MM), if Microsoft published it."""
        return self._monthly.get((os, month))

    def at_or_below(self, os: OsFamily, revision: int) -> Release | None:
        """The newest release whose build revision is at most `revision`."""
        revisions = self._revisions.get(os, [])
        index = bisect_right(revisions, revision)
        return self._by_revision[os][index - 1] if index else None

    def latest(self, os: OsFamily) -> Release | None:
        rows = self._by_revision.get(os)
        return rows[-1] if rows else None


class ReleaseCatalogFile(BaseModel):
    """The shape of `releases.json`."""

    model_config = ConfigDict(extra="ignore")

    releases: list[Release]
