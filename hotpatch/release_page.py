"""Microsoft's Windows Server release information page, read into validated release rows."""

# The page: https://learn.microsoft.com/windows/release-health/windows-server-release-info
#
# As served (checked against a copy of 2026-05-13), the article body holds, in document order:
# - <h2>Windows Server release history</h2>, then per OS a bold label
#   "Windows Server 2025 (OS build 26100)" and a table with the columns
#   Servicing option | Update type | Availability date | Build | KB article,
#   e.g. "LTSC | 2026-05 B | 2026-05-12 | 26100.32860 | KB5087539". "B" is the Patch Tuesday
#   release, "OOB" out-of-band, "C"/"D" previews, "A" the RTM row (no KB). Windows Server 2019
#   and 2016 tables follow and are not ours.
# - <h2>Windows Server hotpatch calendar</h2>, then per OS a bold label
#   ("Windows Server 2025 (OS build 26100)", "Windows Server 2022 (OS build 20348)"), and per
#   year a bold "Calendar year 2026" over a table with the columns
#   Month | Update type | Type | Availability date | Build | KB article,
#   e.g. "May | 2026.05 B | Hotpatch | 2026-05-12 | 26100.32772 | KB5087423". Type is
#   "Baseline (Restart)" or "Hotpatch"; months Microsoft has not shipped yet are listed with
#   empty date, build and KB. The unplanned baseline of August 2024 is "2024.08 B<sup>*</sup> |
#   Baseline (Restart)" under the footnote "The releases marked with an * were initially
#   planned as hotpatch updates", and some rows carry one empty cell more than the header.
# Windows 11 shares build 26100 (24H2) but ships other KBs at other revisions: any section or
# label that is not Windows Server 2022/2025 is skipped, whatever build it names.

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from bs4 import BeautifulSoup, Tag

from hotpatch.core.calendar import patch_tuesday
from hotpatch.core.models import BUILD_MAJOR, MonthKind, OsFamily
from hotpatch.errors import ReleasePageError

PAGE_URL = "https://learn.microsoft.com/windows/release-health/windows-server-release-info"

Section = Literal["release history", "hotpatch calendar"]
ChannelName = Literal["hotpatch", "regular"]

#: Columns each kind of table is read by (by name: Microsoft has added columns before).
HISTORY_COLUMNS = ("Update type", "Availability date", "Build", "KB article")
CALENDAR_COLUMNS = ("Month", "Update type", "Type", "Availability date", "Build", "KB article")

_MAJOR_OF: dict[OsFamily, int] = {os: major for major, os in BUILD_MAJOR.items()}
_OS_LABEL = re.compile(r"^Windows Server (?P<year>2022|2025)\b(?P<rest>.*)$", re.IGNORECASE)
_OS_BUILD = re.compile(r"\(OS build (?P<major>\d+)\)", re.IGNORECASE)
_YEAR_LABEL = re.compile(r"^Calendar year (?P<year>\d{4})$", re.IGNORECASE)
_UPDATE_TYPE = re.compile(r"^(?P<year>\d{4})[.-](?P<month>\d{1,2}) +(?P<letter>[A-Z]+)$")
_BUILD = re.compile(r"^(?:10\.0\.)?(?P<major>\d+)\.(?P<revision>\d+)$")
_KB = re.compile(r"\bKB ?(?P<number>\d{6,8})\b", re.IGNORECASE)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: Footnote markers written inline after a letter or a word ("B*", "B¹", "Hotpatch †").
_FOOTNOTE = re.compile(r"\s*[*†‡§¹²³⁴⁵⁶⁷⁸⁹⁰]+$")
_MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_name) if name}
_QUARTER_STARTS = frozenset({1, 4, 7, 10})
_TYPES: dict[str, MonthKind] = {
    "baseline (restart)": MonthKind.BASELINE,
    "baseline": MonthKind.BASELINE,
    "b": MonthKind.BASELINE,
    "hotpatch": MonthKind.HOTPATCH,
    "h": MonthKind.HOTPATCH,
    "unplanned baseline (restart)": MonthKind.UNPLANNED_BASELINE,
    "unplanned baseline": MonthKind.UNPLANNED_BASELINE,
    "u": MonthKind.UNPLANNED_BASELINE,
}


@dataclass(frozen=True, slots=True)
class PageRow:
    """One release the page lists, in the release catalog's terms."""

    os: OsFamily
    date: date
    #: The month kind of a hotpatch-track row; None on the regular channel.
    kind: MonthKind | None
    build: str
    kb: str
    out_of_band: bool
    channel: ChannelName
    #: Where the row was read, for messages: `hotpatch calendar › Windows Server 2025 … › row 3`.
    where: str

    @property
    def month(self) -> str:
        return f"{self.date.year:04d}-{self.date.month:02d}"


@dataclass(frozen=True, slots=True)
class ReleasePage:
    """Everything read from one copy of the page."""

    rows: tuple[PageRow, ...]
    #: The page's own address (its canonical link), when it names one.
    canonical_url: str | None = None
    #: Calendar months listed with their kind but no release yet.
    planned: int = 0
    #: Release-history rows left out: older than the OS's hotpatch calendar, or without a KB.
    skipped: int = 0
    tables: tuple[str, ...] = field(default=())


@dataclass(slots=True)
class _Table:
    section: Section
    os: OsFamily
    label: str
    year: int | None
    element: Tag

    @property
    def name(self) -> str:
        year = f" › Calendar year {self.year}" if self.year is not None else ""
        return f"{self.section} › {self.label}{year}"


def parse_release_page(html: str, expect: Iterable[OsFamily] = tuple(OsFamily)) -> ReleasePage:
    """Read every row of the page's tables for `expect`; any doubt raises ReleasePageError.

    All or nothing: a changed layout or a row that fails validation raises, naming the table
    (and the row), so that no caller ever sees part of a page.
    """
    soup = BeautifulSoup(html, "html.parser")
    canonical = soup.find("link", rel="canonical")
    canonical_url = canonical.get("href") if isinstance(canonical, Tag) else None
    root = soup.find("main")
    tables = list(_tables(root if isinstance(root, Tag) else soup))

    calendar_rows: list[PageRow] = []
    history_rows: list[PageRow] = []
    planned = skipped = 0
    for table in tables:
        if table.section == "hotpatch calendar":
            rows, planned_here = _read_calendar(table)
            calendar_rows += rows
            planned += planned_here
        else:
            rows, skipped_here = _read_history(table)
            history_rows += rows
            skipped += skipped_here

    for os in expect:
        for section in ("hotpatch calendar", "release history"):
            if not any(t.os is os and t.section == section for t in tables):
                found = ", ".join(sorted({t.name for t in tables})) or "none"
                raise ReleasePageError(
                    f"the page has no {section} table for Windows Server "
                    f"{_year_of(os)} (tables found: {found}); the page layout has changed"
                )

    merged, older = _merge(calendar_rows, history_rows)
    return ReleasePage(
        rows=merged,
        canonical_url=canonical_url if isinstance(canonical_url, str) else None,
        planned=planned,
        skipped=skipped + older,
        tables=tuple(t.name for t in tables),
    )


def _year_of(os: OsFamily) -> str:
    return os.value.removeprefix("ws")


def _text(element: Tag) -> str:
    return " ".join(element.get_text(" ", strip=True).split())


def _tables(root: Tag) -> Iterator[_Table]:
    """Our tables in document order, each with the section, OS and year labels above it.

    A table's label is not its ancestor: Microsoft writes it as bold text (or a heading) loose
    in the prose above, so labels and tables are walked together.
    """
    section: Section | None = None
    os: OsFamily | None = None
    label = ""
    year: int | None = None
    for element in root.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "strong", "b", "table"]):
        if element.find_parent("table") is not None:
            continue  # emphasis inside a cell, or a table inside a table
        if element.name == "table":
            if section is not None and os is not None:
                yield _Table(section, os, label, year, element)
            continue
        text = _FOOTNOTE.sub("", _text(element))
        lowered = text.lower()
        heading = element.name.startswith("h")
        if "release history" in lowered or "hotpatch calendar" in lowered:
            # "Windows 11 hotpatch calendar" and the like are somebody else's sections.
            ours = lowered.startswith("windows server")
            section = (
                ("hotpatch calendar" if "hotpatch calendar" in lowered else "release history")
                if ours
                else None
            )
            os, label, year = None, "", None
        elif (matched := _YEAR_LABEL.match(text)) is not None:
            year = int(matched["year"])
        elif (found := _os_label(text)) is not None:
            os, label, year = found, text, None
        elif heading or lowered.startswith("windows"):
            # Another product ("Windows 11, version 24H2 (OS build 26100)", Windows Server
            # 2019) or another part of the article: its tables are not read.
            if heading and element.name in ("h1", "h2"):
                section = None
            os, label, year = None, "", None


def _os_label(text: str) -> OsFamily | None:
    """The OS a label names, if it is Windows Server 2022 or 2025 (checked against its build)."""
    matched = _OS_LABEL.match(text)
    if matched is None:
        return None
    os = OsFamily(f"ws{matched['year']}")
    build = _OS_BUILD.search(matched["rest"])
    if build is not None and int(build["major"]) != _MAJOR_OF[os]:
        raise ReleasePageError(
            f"the label {text!r} names OS build {build['major']}, not {_MAJOR_OF[os]}; "
            "the page layout has changed"
        )
    return os


def _cells(row: Tag) -> list[str]:
    texts = []
    for cell in row.find_all(["td", "th"], recursive=False):
        for mark in cell.find_all("sup"):
            mark.replace_with("*")  # footnote markers; kept as one, read by _FOOTNOTE
        texts.append(_text(cell))
    return texts


def _rows(table: _Table, columns: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Each body row as {column: text}; the header must name every column we read."""
    rows = [r for r in table.element.find_all("tr") if r.find_parent("table") is table.element]
    if not rows:
        raise ReleasePageError(f"table {table.name!r}: no rows; the page layout has changed")
    header = [_FOOTNOTE.sub("", text) for text in _cells(rows[0])]
    missing = [c for c in columns if c not in header]
    if missing:
        raise ReleasePageError(
            f"table {table.name!r}: no column {', '.join(map(repr, missing))} "
            f"(the header is {' | '.join(header)}); the page layout has changed"
        )
    for number, row in enumerate(rows[1:], start=1):
        cells = _cells(row)
        if not any(cells):
            continue
        if len(cells) < len(header):
            raise ReleasePageError(
                f"table {table.name!r}, row {number}: {len(cells)} cells where the header "
                f"names {len(header)}; the page layout has changed"
            )
        if any(cells[len(header) :]):
            # An empty cell past the header is a known quirk of the page; a filled one means
            # the columns no longer line up.
            raise ReleasePageError(
                f"table {table.name!r}, row {number}: a filled cell past the header's "
                f"{len(header)} columns ({' | '.join(cells)}); the page layout has changed"
            )
        yield number, dict(zip(header, cells, strict=False))


def _where(table: _Table, number: int) -> str:
    return f"{table.name} › row {number}"


def _fail(table: _Table, number: int, problem: str) -> ReleasePageError:
    return ReleasePageError(f"table {table.name!r}, row {number}: {problem}")


def _update_type(table: _Table, number: int, text: str) -> tuple[int, int, str]:
    matched = _UPDATE_TYPE.match(_FOOTNOTE.sub("", text))
    if matched is None:
        raise _fail(table, number, f"update type {text!r} is not like '2026-05 B'")
    month = int(matched["month"])
    if not 1 <= month <= 12:
        raise _fail(table, number, f"update type {text!r} names no month")
    return int(matched["year"]), month, matched["letter"]


def _release_fields(table: _Table, number: int, cells: dict[str, str]) -> tuple[date, str, str]:
    """The availability date, build (without 10.0.) and KB of a row that names all three."""
    when = cells["Availability date"]
    if not _DATE.match(when):
        raise _fail(table, number, f"availability date {when!r} is not YYYY-MM-DD")
    try:
        day = date.fromisoformat(when)
    except ValueError:
        raise _fail(table, number, f"availability date {when!r} is no date") from None
    build = _BUILD.match(cells["Build"])
    if build is None:
        raise _fail(table, number, f"build {cells['Build']!r} is not like 26100.32772")
    if int(build["major"]) != _MAJOR_OF[table.os]:
        raise _fail(
            table,
            number,
            f"build {cells['Build']} is not a Windows Server {_year_of(table.os)} build "
            f"({_MAJOR_OF[table.os]}.x)",
        )
    kb = _KB.search(cells["KB article"])
    if kb is None:
        raise _fail(table, number, f"KB article {cells['KB article']!r} names no KB")
    return day, f"{build['major']}.{int(build['revision'])}", f"KB{kb['number']}"


def _check_patch_tuesday(table: _Table, number: int, day: date) -> None:
    expected = patch_tuesday(day.year, day.month)
    if day != expected:
        raise _fail(
            table,
            number,
            f"a B release ships on Patch Tuesday ({expected}), the row says {day}",
        )


def _read_calendar(table: _Table) -> tuple[list[PageRow], int]:
    if table.year is None:
        raise ReleasePageError(
            f"table {table.name!r}: a hotpatch calendar without its 'Calendar year' label; "
            "the page layout has changed"
        )
    rows: list[PageRow] = []
    planned = 0
    for number, cells in _rows(table, CALENDAR_COLUMNS):
        year, month, letter = _update_type(table, number, cells["Update type"])
        month_name = _FOOTNOTE.sub("", cells["Month"]).lower()
        if _MONTHS.get(month_name) != month or year != table.year:
            raise _fail(
                table,
                number,
                f"month {cells['Month']!r} and update type {cells['Update type']!r} do not "
                f"agree with the calendar year {table.year}",
            )
        kind = _TYPES.get(_FOOTNOTE.sub("", cells["Type"]).lower())
        if kind is None:
            raise _fail(table, number, f"type {cells['Type']!r} is neither baseline nor hotpatch")
        given = [cells[c] for c in ("Availability date", "Build", "KB article")]
        if not any(given):
            planned += 1  # a month on the calendar that Microsoft has not shipped yet
            continue
        if not all(given):
            raise _fail(table, number, "names some of date, build and KB but not all three")
        day, build, kb = _release_fields(table, number, cells)
        out_of_band = letter != "B"
        if not out_of_band:
            if (day.year, day.month) != (year, month):
                raise _fail(table, number, f"released {day}, outside {year}-{month:02d}")
            _check_patch_tuesday(table, number, day)
        if kind is MonthKind.BASELINE and month not in _QUARTER_STARTS:
            # A baseline outside January/April/July/October replaced a hotpatch (the page
            # footnotes it: "initially planned as hotpatch updates"). The month decides, not
            # the marker, whose meaning the page may reuse for other notes.
            kind = MonthKind.UNPLANNED_BASELINE
        rows.append(
            PageRow(
                os=table.os,
                date=day,
                kind=kind,
                build=build,
                kb=kb,
                out_of_band=out_of_band,
                channel="hotpatch",
                where=_where(table, number),
            )
        )
    return rows, planned


def _read_history(table: _Table) -> tuple[list[PageRow], int]:
    rows: list[PageRow] = []
    skipped = 0
    for number, cells in _rows(table, HISTORY_COLUMNS):
        year, month, letter = _update_type(table, number, cells["Update type"])
        if not cells["KB article"]:
            skipped += 1  # the RTM row ("2024-10 A"): the release itself, not an update
            continue
        day, build, kb = _release_fields(table, number, cells)
        first = date(year, month, 1)
        if letter == "B":
            if (day.year, day.month) != (year, month):
                raise _fail(table, number, f"released {day}, outside {year}-{month:02d}")
            _check_patch_tuesday(table, number, day)
        elif not first <= day < _month_after_next(first):
            # An OOB of one month can ship early the next ("2026-02 OOB" on 2026-03-02).
            raise _fail(table, number, f"released {day}, far from {year}-{month:02d}")
        rows.append(
            PageRow(
                os=table.os,
                date=day,
                kind=None,
                build=build,
                kb=kb,
                # Previews (C, D) and out-of-band updates ship off Patch Tuesday.
                out_of_band=letter != "B",
                channel="regular",
                where=_where(table, number),
            )
        )
    return rows, skipped


def _month_after_next(first: date) -> date:
    months = first.year * 12 + first.month + 1  # zero-based month index of the month after next
    return date(months // 12, months % 12 + 1, 1)


def _merge(
    calendar_rows: list[PageRow], history_rows: list[PageRow]
) -> tuple[tuple[PageRow, ...], int]:
    """Calendar rows, then the history rows that are not also on the calendar.

    A baseline is the month's cumulative update too, so its KB sits in both tables: it is one
    release, on the hotpatch track. History rows older than the OS's first calendar month are
    outside the hotpatch program and are left out (counted).
    """
    by_kb: dict[tuple[OsFamily, str], PageRow] = {}
    by_build: dict[tuple[OsFamily, str], PageRow] = {}

    def check(row: PageRow) -> PageRow | None:
        same = by_kb.get((row.os, row.kb)) or by_build.get((row.os, row.build))
        if same is None:
            return None
        if (same.kb, same.build) != (row.kb, row.build):
            raise ReleasePageError(
                f"the page contradicts itself: {same.kb} is build {same.build} in "
                f"{same.where!r} but {row.kb} is build {row.build} in {row.where!r}"
            )
        return same

    merged: list[PageRow] = []
    for row in calendar_rows:
        same = check(row)
        if same is not None:
            if (same.date, same.kind) != (row.date, row.kind):
                raise ReleasePageError(
                    f"the page lists {row.kb} twice, differently: {same.where!r} and {row.where!r}"
                )
            continue
        by_kb[(row.os, row.kb)] = by_build[(row.os, row.build)] = row
        merged.append(row)
    first_month = {
        os: min(r.date.replace(day=1) for r in calendar_rows if r.os is os)
        for os in {r.os for r in calendar_rows}
    }
    older = 0
    for row in history_rows:
        if check(row) is not None:
            continue
        start = first_month.get(row.os)
        if start is None or row.date < start:
            older += 1
            continue
        by_kb[(row.os, row.kb)] = by_build[(row.os, row.build)] = row
        merged.append(row)
    monthly: dict[tuple[OsFamily, str, str], PageRow] = {}
    for row in merged:
        if row.out_of_band:
            continue
        other = monthly.setdefault((row.os, row.channel, row.month), row)
        if other is not row:
            raise ReleasePageError(
                f"the page lists two {row.channel}-channel Patch Tuesday releases of "
                f"{row.os.value} in {row.month}: {other.kb} ({other.where!r}) and {row.kb} "
                f"({row.where!r})"
            )
    merged.sort(key=lambda r: (r.os, r.date, r.channel, int(r.build.split(".")[1])))
    return tuple(merged), older
