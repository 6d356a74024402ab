"""Reading Microsoft's Windows Server release information page into release rows."""

from __future__ import annotations

import json
from datetime import date
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotpatch.core.models import MonthKind, OsFamily
from hotpatch.data import RELEASES_FILE
from hotpatch.errors import ReleasePageError
from hotpatch.release_page import PageRow, ReleasePage, parse_release_page

PAGES = Path(__file__).parent.parent / "fixtures" / "release-info"
WS2022, WS2025 = OsFamily.WS2022, OsFamily.WS2025


def _page(name: str) -> str:
    return (PAGES / name).read_text(encoding="utf-8")


@cache
def _read(name: str) -> ReleasePage:
    """Parsed once per test run: a ReleasePage is immutable."""
    return parse_release_page(_page(name))


def _row(page: ReleasePage, os: OsFamily, kb: str) -> PageRow:
    (row,) = [r for r in page.rows if r.os is os and r.kb == kb]
    return row


def _shipped_track() -> set[tuple[str, str, str | None, str, str]]:
    """The shipped catalog's Patch Tuesday hotpatch-track rows, as (os, date, kind, build, kb)."""
    path = Path(__file__).parent.parent.parent / "hotpatch" / "data" / RELEASES_FILE
    rows = json.loads(path.read_text(encoding="utf-8"))["releases"]
    return {
        (r["os"], r["date"], r["kind"], r["build"], r["kb"])
        for r in rows
        if r.get("channel", "hotpatch") == "hotpatch" and not r.get("out_of_band")
    }


# --- the page as served -------------------------------------------------------------------


def test_the_full_page_gives_every_hotpatch_track_release_of_the_shipped_catalog() -> None:
    page = _read("through-2026-05.html")
    read = {
        (r.os.value, r.date.isoformat(), r.kind.value if r.kind else None, r.build, r.kb)
        for r in page.rows
        if r.channel == "hotpatch"
    }
    assert read == _shipped_track()


def test_the_full_page_names_its_own_address_and_reads_only_windows_server_tables() -> None:
    page = _read("through-2026-05.html")
    assert page.canonical_url == (
        "https://learn.microsoft.com/en-us/windows/release-health/windows-server-release-info"
    )
    assert all(name.split(" › ")[1].startswith("Windows Server 20") for name in page.tables)
    assert not any("2019" in name for name in page.tables)


@pytest.mark.parametrize(
    ("os", "kb", "day", "build", "out_of_band"),
    [
        # The regular cumulative updates and out-of-band updates DOMAIN.md lists, from the page.
        (WS2022, "KB5087545", date(2026, 5, 12), "20348.5139", False),
        (WS2022, "KB5091575", date(2026, 4, 19), "20348.5024", True),
        (WS2022, "KB5075906", date(2026, 2, 10), "20348.4773", False),
        (WS2022, "KB5078766", date(2026, 3, 10), "20348.4893", False),
        (WS2025, "KB5087539", date(2026, 5, 12), "26100.32860", False),
        (WS2025, "KB5091157", date(2026, 4, 19), "26100.32698", True),
        (WS2025, "KB5075899", date(2026, 2, 10), "26100.32370", False),
        (WS2025, "KB5078740", date(2026, 3, 10), "26100.32522", False),
        (WS2025, "KB5070773", date(2025, 10, 20), "26100.6901", True),
        (WS2025, "KB5070881", date(2025, 10, 23), "26100.6905", True),
    ],
)
def test_release_history_rows_are_regular_channel_updates_without_a_month_kind(
    os: OsFamily, kb: str, day: date, build: str, out_of_band: bool
) -> None:
    row = _row(_read("through-2026-05.html"), os, kb)
    assert (row.channel, row.kind, row.date, row.build, row.out_of_band) == (
        "regular",
        None,
        day,
        build,
        out_of_band,
    )


def test_a_baseline_is_one_release_though_both_tables_list_its_kb() -> None:
    page = _read("through-2026-05.html")
    baselines = [r for r in page.rows if r.kb == "KB5082063"]  # WS2025 April 2026
    assert [(r.channel, r.kind) for r in baselines] == [("hotpatch", MonthKind.BASELINE)]


def test_history_rows_older_than_the_os_hotpatch_calendar_are_left_out_and_counted() -> None:
    page = _read("through-2026-05.html")
    assert min(r.date for r in page.rows if r.os is WS2022) == date(2024, 1, 9)
    assert min(r.date for r in page.rows if r.os is WS2025) == date(2024, 11, 12)
    # ws2022 2023-11, 2023-12 and 2022-11 C, and the WS2025 RTM row (no KB).
    assert page.skipped == 4


def test_calendar_months_not_shipped_yet_are_counted_not_invented() -> None:
    page = _read("through-2026-05.html")
    assert page.planned == 14  # June to December 2026, for each OS
    assert max(r.date for r in page.rows) == date(2026, 5, 12)


# --- the page's known quirks ---------------------------------------------------------------


def test_a_footnote_marker_after_the_letter_is_not_part_of_it() -> None:
    page = _read("quirks.html")
    # "2024.08 B*": the page's unplanned baseline; "2026.05 B¹ | Hotpatch<sup>1</sup>".
    assert _row(page, WS2022, "KB5041160").kind is MonthKind.UNPLANNED_BASELINE
    assert _row(page, WS2025, "KB5087423").kind is MonthKind.HOTPATCH


def test_the_sup_footnote_of_the_served_page_marks_the_unplanned_baseline() -> None:
    row = _row(_read("through-2026-05.html"), WS2022, "KB5041160")
    assert (row.kind, row.channel, row.date) == (
        MonthKind.UNPLANNED_BASELINE,
        "hotpatch",
        date(2024, 8, 13),
    )


def test_a_row_with_an_empty_cell_more_than_its_header_is_read() -> None:
    page = _read("quirks.html")
    assert _row(page, WS2022, "KB5042880").build == "20348.2695"
    assert _row(page, WS2025, "KB5087423").build == "26100.32772"


@settings(max_examples=30, deadline=None)
@given(
    marker=st.sampled_from(["*", " *", "¹", "²", "†", "<sup>*</sup>", "<sup>1</sup>"]),
    cell=st.sampled_from(
        [
            "<td>2026.04 B</td>",
            "<td>2024.09 B</td>",
            "<td>Hotpatch</td>",
            "<td>Baseline (Restart)</td>",
        ]
    ),
)
def test_a_footnote_marker_anywhere_after_a_letter_or_type_changes_nothing_read(
    marker: str, cell: str
) -> None:
    html = _page("quirks.html")
    marked = html.replace(cell, cell.replace("</td>", f"{marker}</td>"))
    assert parse_release_page(marked).rows == _read("quirks.html").rows


def test_windows_11_sections_that_share_build_26100_are_ignored() -> None:
    page = _read("quirks.html")
    kbs = {r.kb for r in page.rows}
    assert not kbs & {"KB5089549", "KB5087420"}
    assert not any("Windows 11" in name for name in page.tables)


def test_an_out_of_band_update_may_ship_early_the_next_month() -> None:
    row = _row(_read("quirks.html"), WS2022, "KB5082314")  # "2026-02 OOB" on 2026-03-02
    assert (row.date, row.out_of_band, row.channel) == (date(2026, 3, 2), True, "regular")


def test_the_azure_edition_label_names_windows_server_2022() -> None:
    page = _read("quirks.html")
    assert {r.os for r in page.rows} == {WS2022, WS2025}
    assert "release history › Windows Server 2022 Datacenter: Azure Edition (OS build 20348)" in (
        page.tables
    )


def test_reading_a_page_twice_gives_the_same_rows() -> None:
    assert parse_release_page(_page("quirks.html")) == parse_release_page(_page("quirks.html"))


# --- a page that changed: a clear error naming the table, never part of a page -------------

CALENDAR_2026 = "hotpatch calendar › Windows Server 2025 (OS build 26100) › Calendar year 2026"
HISTORY_2022 = "release history › Windows Server 2022 Datacenter: Azure Edition (OS build 20348)"


@pytest.mark.parametrize(
    ("change", "before", "after", "words"),
    [
        (
            "a calendar column renamed",
            "<th>Type</th>",
            "<th>Release kind</th>",
            [CALENDAR_2026, "no column 'Type'", "layout has changed"],
        ),
        (
            "a history column dropped",
            "<th>Servicing option</th><th>Update type</th><th>Availability date</th>"
            "<th>Build</th><th>KB article</th></tr></thead>",
            "<th>Servicing option</th><th>Update type</th><th>Availability date</th>"
            "<th>OS build</th><th>KB article</th></tr></thead>",
            [HISTORY_2022, "no column 'Build'"],
        ),
        (
            "a filled cell past the header",
            "<td>KB5087423</td><td></td>",
            "<td>KB5087423</td><td>26100.32772</td>",
            [CALENDAR_2026, "row 2", "filled cell past the header"],
        ),
        (
            "a row with a cell missing",
            "<td>2026-04-14</td><td>26100.32690</td><td>KB5082063</td></tr>",
            "<td>26100.32690</td><td>KB5082063</td></tr>",
            [CALENDAR_2026, "row 1", "5 cells where the header names 6"],
        ),
        (
            "a build of another OS",
            "<td>20348.5074</td>",
            "<td>26100.5074</td>",
            ["Calendar year 2026", "row 1", "not a Windows Server 2022 build"],
        ),
        (
            "a date that is no date",
            "<td>2026-05-12</td><td>26100.32772</td>",
            "<td>May 12, 2026</td><td>26100.32772</td>",
            [CALENDAR_2026, "row 2", "'May 12, 2026' is not YYYY-MM-DD"],
        ),
        (
            "a B release off Patch Tuesday",
            "<td>2026-05-12</td><td>26100.32772</td>",
            "<td>2026-05-13</td><td>26100.32772</td>",
            [CALENDAR_2026, "row 2", "Patch Tuesday (2026-05-12)"],
        ),
        (
            "an unknown type",
            "<td>Hotpatch<sup>1</sup></td>",
            "<td>Cold patch</td>",
            [CALENDAR_2026, "row 2", "'Cold patch' is neither baseline nor hotpatch"],
        ),
        (
            "a KB cell without a KB",
            "<td>KB5087424</td>",
            "<td>see release notes</td>",
            ["Calendar year 2026", "row 1", "names no KB"],
        ),
        (
            "a half-filled month",
            "<td>June</td><td>2026.06 B</td><td>Hotpatch</td><td></td><td></td><td></td>",
            "<td>June</td><td>2026.06 B</td><td>Hotpatch</td><td>2026-06-09</td><td></td><td></td>",
            [CALENDAR_2026, "row 3", "not all three"],
        ),
        (
            "a month that disagrees with its update type",
            "<td>April</td><td>2026.04 B</td>",
            "<td>March</td><td>2026.04 B</td>",
            [CALENDAR_2026, "row 1", "do not agree"],
        ),
        (
            "a calendar without its year label",
            "<p><strong>Calendar year 2026</strong></p>\n<table>\n<thead>",
            "<table>\n<thead>",
            ["hotpatch calendar › Windows Server 2025 (OS build 26100)", "'Calendar year' label"],
        ),
        (
            "an OS label with another build",
            "<p><strong>Windows Server 2025 (OS build 26100)</strong></p>\n<p><strong>Calendar",
            "<p><strong>Windows Server 2025 (OS build 26200)</strong></p>\n<p><strong>Calendar",
            ["'Windows Server 2025 (OS build 26200)'", "OS build 26200, not 26100"],
        ),
        (
            "the hotpatch calendar under a heading of its own",
            "<h2>Windows Server hotpatch calendar</h2>",
            "<h2>Windows Server hotpatch calendar</h2><h2>Hotpatch releases</h2>",
            ["no hotpatch calendar table for Windows Server 2022", "layout has changed"],
        ),
    ],
)
def test_a_changed_page_is_refused_with_the_table_named(
    change: str, before: str, after: str, words: list[str]
) -> None:
    html = _page("quirks.html")
    assert before in html, change
    with pytest.raises(ReleasePageError) as raised:
        parse_release_page(html.replace(before, after, 1))
    message = str(raised.value)
    assert "\n" not in message
    for word in words:
        assert word in message, f"{change}: {message}"


def test_the_committed_changed_layout_page_is_refused_naming_its_table() -> None:
    with pytest.raises(ReleasePageError, match=r"Calendar year 2026.*no column 'Type'"):
        _read("changed-layout.html")


def test_a_page_that_contradicts_itself_is_refused() -> None:
    # The baseline KB of April 2026 at another build in the release history.
    html = _page("quirks.html").replace(
        "<td>26100.32690</td><td><a", "<td>26100.32691</td><td><a", 1
    )
    with pytest.raises(ReleasePageError, match="contradicts itself: KB5082063"):
        parse_release_page(html)


def test_two_patch_tuesday_releases_of_one_month_are_refused() -> None:
    # A second WS2025 regular B release in May 2026, at another build and KB.
    second = (
        "<tr><td>LTSC</td><td>2026-05 B</td><td>2026-05-12</td><td>26100.32861</td>"
        "<td>KB5087540</td></tr>\n"
    )
    html = _page("quirks.html").replace(
        "<tr><td>LTSC</td><td>2026-05 B</td>", second + ("<tr><td>LTSC</td><td>2026-05 B</td>"), 1
    )
    with pytest.raises(ReleasePageError, match="two regular-channel Patch Tuesday releases"):
        parse_release_page(html)


def test_a_page_that_is_not_the_release_page_is_refused() -> None:
    with pytest.raises(ReleasePageError, match="no hotpatch calendar table"):
        parse_release_page("<html><body><p>Access Denied</p></body></html>")
