"""The hotpatch calendar against Microsoft's published releases and the quarterly rule."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotpatch.core.calendar import (
    Calendar,
    MonthOverride,
    YearMonth,
    patch_tuesday,
    release_instant,
)
from hotpatch.core.models import MonthKind, OsFamily, parse_build
from hotpatch.core.releases import ReleaseCatalog
from hotpatch.data import shipped_release_catalog
from tests.unit.published import KIND_LETTERS, OUT_OF_BAND, PUBLISHED, Published

DOMAIN_MD = Path(__file__).resolve().parents[2].parent / "shared" / "DOMAIN.md"
PACIFIC = ZoneInfo("America/Los_Angeles")

WS2022, WS2025 = OsFamily.WS2022, OsFamily.WS2025
BASELINE, HOTPATCH, UNPLANNED = (
    MonthKind.BASELINE,
    MonthKind.HOTPATCH,
    MonthKind.UNPLANNED_BASELINE,
)

years = st.integers(min_value=1900, max_value=2400)
months = st.integers(min_value=1, max_value=12)
year_months = st.builds(YearMonth, years, months)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.fixture(scope="module")
def catalog() -> ReleaseCatalog:
    return shipped_release_catalog()


@pytest.fixture(scope="module")
def calendar(catalog: ReleaseCatalog) -> Calendar:
    return Calendar(catalog)


# --- Microsoft's published calendar ---------------------------------------------------------

by_row = pytest.mark.parametrize("row", PUBLISHED, ids=[row.id for row in PUBLISHED])


@by_row
def test_every_published_release_falls_on_patch_tuesday(row: Published) -> None:
    assert patch_tuesday(row.date.year, row.date.month) == row.date


@by_row
def test_every_published_month_has_its_published_kind(calendar: Calendar, row: Published) -> None:
    month = YearMonth.of(row.date)
    assert calendar.kind(OsFamily(row.os), month) == MonthKind(KIND_LETTERS[row.kind])


@by_row
def test_every_published_month_has_its_published_kb_and_build(
    calendar: Calendar, row: Published
) -> None:
    slot = calendar.slot(OsFamily(row.os), YearMonth.of(row.date))
    assert (slot.kb, slot.build, slot.source) == (row.kb, row.build, "catalog")
    assert slot.patch_tuesday == row.date


def _parse_domain_tables(text: str) -> set[Published]:
    """The two side-by-side release tables of DOMAIN.md §1, as rows."""
    section = text.split("### Published releases", 1)[1].split("\n## ", 1)[0]
    found: set[Published] = set()
    os: str | None = None
    for line in section.splitlines():
        heading = re.match(r"Windows Server (2022|2025)\b", line)
        if heading:
            os = f"ws{heading.group(1)}"
            continue
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        for half in (cells[0:4], cells[5:9]):
            if len(half) == 4 and re.fullmatch(r"\d{4}-\d{2}-\d{2}", half[0]):
                assert os is not None, f"table row before an OS heading: {line}"
                day, kind, build, kb = half
                found.add(Published(os, date.fromisoformat(day), kind, build, kb))
    return found


def test_the_transcribed_table_matches_domain_md() -> None:
    if not DOMAIN_MD.exists():
        pytest.skip(f"{DOMAIN_MD} is absent: cannot check the PUBLISHED transcription against it")
    parsed = _parse_domain_tables(DOMAIN_MD.read_text(encoding="utf-8"))
    published = set(PUBLISHED)
    assert len(published) == len(PUBLISHED), "PUBLISHED repeats a row"
    assert sorted(parsed - published) == [], "rows in DOMAIN.md §1 missing from PUBLISHED"
    assert sorted(published - parsed) == [], "rows in PUBLISHED that DOMAIN.md §1 does not list"


def test_an_out_of_band_release_does_not_change_its_months_release(calendar: Calendar) -> None:
    slot = calendar.slot(WS2022, YearMonth.of(OUT_OF_BAND.date))
    assert (slot.kind, slot.kb, slot.build) == (BASELINE, "KB5073457", "20348.4648")


# --- Patch Tuesday and the release instant ----------------------------------------------------


@pytest.mark.parametrize(
    ("year", "month", "expected"),
    [
        pytest.param(2026, 9, date(2026, 9, 8), id="month-starting-on-a-tuesday"),
        pytest.param(2026, 7, date(2026, 7, 14), id="month-starting-on-a-wednesday"),
        pytest.param(2026, 6, date(2026, 6, 9), id="month-starting-on-a-monday"),
        pytest.param(2027, 1, date(2027, 1, 12), id="month-starting-on-a-friday"),
        pytest.param(2024, 2, date(2024, 2, 13), id="leap-february"),
    ],
)
def test_patch_tuesday_is_the_second_tuesday(year: int, month: int, expected: date) -> None:
    assert patch_tuesday(year, month) == expected


@pytest.mark.parametrize(
    ("year", "month", "expected"),
    [
        pytest.param(2026, 3, utc(2026, 3, 10, 17), id="2026-03-10-PDT-after-the-switch"),
        pytest.param(2026, 1, utc(2026, 1, 13, 18), id="2026-01-13-PST"),
        pytest.param(2027, 3, utc(2027, 3, 9, 18), id="2027-03-09-PST-before-the-switch"),
        pytest.param(2025, 11, utc(2025, 11, 11, 18), id="2025-11-11-PST-after-the-fall-back"),
        pytest.param(2025, 10, utc(2025, 10, 14, 17), id="2025-10-14-PDT"),
    ],
)
def test_release_instant_is_ten_am_pacific_in_utc(
    year: int, month: int, expected: datetime
) -> None:
    instant = release_instant(year, month)
    assert instant == expected
    assert instant.utcoffset() == timedelta(0)


@settings(deadline=None)
@given(years, months)
def test_patch_tuesday_is_a_tuesday_between_the_8th_and_the_14th(year: int, month: int) -> None:
    day = patch_tuesday(year, month)
    assert (day.year, day.month) == (year, month)
    assert day.weekday() == 1
    assert 8 <= day.day <= 14


@settings(deadline=None)
@given(years, months)
def test_release_instant_is_ten_am_in_los_angeles_on_patch_tuesday(year: int, month: int) -> None:
    local = release_instant(year, month).astimezone(PACIFIC)
    assert local.date() == patch_tuesday(year, month)
    assert (local.hour, local.minute) == (10, 0)


@settings(deadline=None)
@given(year_months)
def test_release_instant_strictly_increases_month_by_month(month: YearMonth) -> None:
    following = month.shift(1)
    assert release_instant(month.year, month.month) < release_instant(
        following.year, following.month
    )


@settings(deadline=None)
@given(st.sampled_from(OsFamily), years, st.integers(min_value=0, max_value=3))
def test_each_quarter_has_exactly_one_planned_baseline(
    calendar: Calendar, os: OsFamily, year: int, quarter: int
) -> None:
    quarter_months = [YearMonth(year, 3 * quarter + offset) for offset in (1, 2, 3)]
    kinds = [calendar.kind(os, month) for month in quarter_months]
    assert kinds.count(BASELINE) == 1, f"{os} {year} Q{quarter + 1}: {kinds}"
    assert kinds[0] == BASELINE, f"{os} {year} Q{quarter + 1}: baseline not in the first month"


@settings(deadline=None)
@given(year_months, st.integers(min_value=-1200, max_value=1200))
def test_year_month_shift_round_trips(month: YearMonth, months_: int) -> None:
    shifted = month.shift(months_)
    assert shifted.shift(-months_) == month
    assert shifted - month == months_
    assert 1 <= shifted.month <= 12


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("2026-03", YearMonth(2026, 3), id="plain"),
        pytest.param(" 2026-12 ", YearMonth(2026, 12), id="surrounding-blanks"),
    ],
)
def test_year_month_parses_yyyy_mm(text: str, expected: YearMonth) -> None:
    assert YearMonth.parse(text) == expected
    assert str(expected) == text.strip()


@pytest.mark.parametrize("text", ["2026-3", "2026/03", "March 2026", "2026-13", "2026-00"])
def test_year_month_rejects_anything_else(text: str) -> None:
    with pytest.raises(ValueError, match=r"YYYY-MM|month must be 1-12"):
        YearMonth.parse(text)


# --- the release in force ----------------------------------------------------------------------

MARCH_2026 = release_instant(2026, 3)  # 2026-03-10 17:00Z


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        pytest.param(MARCH_2026 - timedelta(microseconds=1), "2026-02", id="just-before"),
        pytest.param(MARCH_2026, "2026-03", id="at-the-instant"),
        pytest.param(MARCH_2026 + timedelta(microseconds=1), "2026-03", id="just-after"),
        pytest.param(utc(2026, 3, 1), "2026-02", id="first-of-the-month"),
        pytest.param(utc(2026, 3, 31, 23, 59), "2026-03", id="end-of-the-month"),
        pytest.param(utc(2026, 1, 2), "2025-12", id="new-year-before-the-release"),
        pytest.param(datetime(2026, 3, 10, 9, 59, tzinfo=PACIFIC), "2026-02", id="pacific-09-59"),
        pytest.param(datetime(2026, 3, 10, 10, 0, tzinfo=PACIFIC), "2026-03", id="pacific-10-00"),
    ],
)
def test_the_release_in_force_changes_at_the_release_instant(
    calendar: Calendar, now: datetime, expected: str
) -> None:
    assert str(calendar.in_force(WS2022, now).month) == expected


def test_in_force_rejects_a_naive_datetime(calendar: Calendar) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        calendar.in_force(WS2022, datetime(2026, 3, 10, 18))


def test_restart_forecast_rejects_a_naive_datetime(calendar: Calendar) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        calendar.restart_forecast(WS2022, datetime(2026, 3, 10, 18), 2)


# --- months the catalog does not know, and operator overrides -----------------------------------


@pytest.mark.parametrize(
    ("os", "month", "kind"),
    [
        pytest.param(WS2022, YearMonth(2026, 9), HOTPATCH, id="ws2022-2026-09"),
        pytest.param(WS2022, YearMonth(2027, 1), BASELINE, id="ws2022-2027-01"),
        pytest.param(WS2022, YearMonth(2026, 6), HOTPATCH, id="ws2022-2026-06-after-the-last-row"),
        pytest.param(WS2025, YearMonth(2026, 7), BASELINE, id="ws2025-2026-07"),
        pytest.param(WS2025, YearMonth(2024, 10), BASELINE, id="ws2025-before-the-first-row"),
        pytest.param(WS2022, YearMonth(2023, 12), HOTPATCH, id="ws2022-before-the-first-row"),
    ],
)
def test_a_month_the_catalog_lacks_follows_the_quarterly_rule_without_a_kb(
    calendar: Calendar, os: OsFamily, month: YearMonth, kind: MonthKind
) -> None:
    slot = calendar.slot(os, month)
    assert (slot.kind, slot.kb, slot.build, slot.source) == (kind, None, None, "rule")
    assert slot.release_utc == release_instant(month.year, month.month)


@pytest.mark.parametrize(
    ("overrides", "os", "month", "kind"),
    [
        pytest.param(
            [MonthOverride(YearMonth(2026, 9), UNPLANNED, WS2022)],
            WS2022,
            YearMonth(2026, 9),
            UNPLANNED,
            id="per-os-beats-the-rule",
        ),
        pytest.param(
            [MonthOverride(YearMonth(2026, 2), UNPLANNED, WS2025)],
            WS2025,
            YearMonth(2026, 2),
            UNPLANNED,
            id="per-os-beats-the-catalog",
        ),
        pytest.param(
            [MonthOverride(YearMonth(2024, 8), HOTPATCH, WS2022)],
            WS2022,
            YearMonth(2024, 8),
            HOTPATCH,
            id="per-os-beats-a-catalog-unplanned-baseline",
        ),
        pytest.param(
            [MonthOverride(YearMonth(2026, 9), UNPLANNED)],
            WS2025,
            YearMonth(2026, 9),
            UNPLANNED,
            id="all-os-beats-the-rule",
        ),
        pytest.param(
            [MonthOverride(YearMonth(2026, 3), UNPLANNED)],
            WS2022,
            YearMonth(2026, 3),
            UNPLANNED,
            id="all-os-beats-the-catalog",
        ),
        pytest.param(
            [
                MonthOverride(YearMonth(2026, 8), UNPLANNED),
                MonthOverride(YearMonth(2026, 8), HOTPATCH, WS2025),
            ],
            WS2025,
            YearMonth(2026, 8),
            HOTPATCH,
            id="per-os-beats-all-os",
        ),
    ],
)
def test_an_operator_override_beats_the_rule_and_the_catalog(
    catalog: ReleaseCatalog,
    overrides: list[MonthOverride],
    os: OsFamily,
    month: YearMonth,
    kind: MonthKind,
) -> None:
    plain = Calendar(catalog).slot(os, month)
    slot = Calendar(catalog, overrides).slot(os, month)
    assert (slot.kind, slot.source) == (kind, "override")
    # The override changes the kind, never the published KB and build.
    assert (slot.kb, slot.build) == (plain.kb, plain.build)


def test_a_per_os_override_leaves_the_other_os_alone(catalog: ReleaseCatalog) -> None:
    calendar = Calendar(catalog, [MonthOverride(YearMonth(2026, 9), UNPLANNED, WS2022)])
    other = calendar.slot(WS2025, YearMonth(2026, 9))
    assert (other.kind, other.source) == (HOTPATCH, "rule")


def test_an_override_applies_only_to_its_month(catalog: ReleaseCatalog) -> None:
    calendar = Calendar(catalog, [MonthOverride(YearMonth(2026, 9), UNPLANNED)])
    assert calendar.slot(WS2022, YearMonth(2026, 8)).kind == HOTPATCH
    assert calendar.slot(WS2022, YearMonth(2027, 9)).kind == HOTPATCH


# --- restart forecast --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "os", "now", "expected"),
    [
        pytest.param(
            [], WS2022, utc(2026, 5, 20), ["2026-07", "2026-10", "2027-01"], id="rule-only"
        ),
        pytest.param(
            [MonthOverride(YearMonth(2026, 8), UNPLANNED, WS2022)],
            WS2022,
            utc(2026, 5, 20),
            ["2026-07", "2026-08", "2026-10"],
            id="operator-announced-unplanned-baseline",
        ),
        pytest.param(
            [MonthOverride(YearMonth(2026, 8), UNPLANNED)],
            WS2025,
            utc(2026, 5, 20),
            ["2026-07", "2026-08", "2026-10"],
            id="all-os-unplanned-baseline",
        ),
        pytest.param(
            [], WS2022, utc(2024, 7, 20), ["2024-08", "2024-10", "2025-01"], id="catalog-unplanned"
        ),
        pytest.param(
            [],
            WS2022,
            release_instant(2026, 4) - timedelta(microseconds=1),
            ["2026-04", "2026-07", "2026-10"],
            id="just-before-a-baseline",
        ),
        pytest.param(
            [],
            WS2022,
            release_instant(2026, 4),
            ["2026-07", "2026-10", "2027-01"],
            id="at-a-baseline-instant-it-is-past",
        ),
        pytest.param(
            [], WS2025, utc(2026, 11, 30), ["2027-01", "2027-04", "2027-07"], id="across-a-year"
        ),
    ],
)
def test_restart_forecast_lists_the_next_restarts_strictly_after_now(
    catalog: ReleaseCatalog,
    overrides: list[MonthOverride],
    os: OsFamily,
    now: datetime,
    expected: list[str],
) -> None:
    forecast = Calendar(catalog, overrides).restart_forecast(os, now, 3)
    assert [str(slot.month) for slot in forecast] == expected
    assert all(slot.restart for slot in forecast)
    assert all(slot.release_utc > now for slot in forecast)
    assert all(slot.os is os for slot in forecast)


@settings(deadline=None)
@given(
    st.sampled_from(OsFamily),
    st.datetimes(
        min_value=datetime(1950, 1, 1), max_value=datetime(2300, 12, 31), timezones=st.just(UTC)
    ),
    st.integers(min_value=0, max_value=8),
)
def test_restart_forecast_is_n_restarts_in_order_after_now(
    calendar: Calendar, os: OsFamily, now: datetime, count: int
) -> None:
    forecast = calendar.restart_forecast(os, now, count)
    assert len(forecast) == count
    assert all(slot.restart and slot.release_utc > now for slot in forecast)
    instants = [slot.release_utc for slot in forecast]
    assert instants == sorted(set(instants))
    if forecast:
        # Nothing restart-worthy was skipped between now and the first forecast release.
        skipped = calendar.in_force(os, now).month.shift(1)
        while skipped < forecast[0].month:
            assert not calendar.slot(os, skipped).restart, f"{skipped} was skipped"
            skipped = skipped.shift(1)


# --- locating a build -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "reference", "expected"),
    [
        pytest.param(
            "10.0.20348.4711",
            "2026-05",
            ("2026-02", "KB5075943", True, 3, False),
            id="exact-three-behind-off-the-current-baseline",
        ),
        pytest.param(
            "20348.5020",
            "2026-05",
            ("2026-04", "KB5082142", True, 1, True),
            id="exact-one-behind-on-the-current-baseline",
        ),
        pytest.param(
            "20348.5074",
            "2026-05",
            ("2026-05", "KB5087424", True, 0, True),
            id="exact-current",
        ),
        pytest.param(
            "20348.2655",
            "2024-09",
            ("2024-08", "KB5041160", True, 1, True),
            id="unplanned-baseline-is-the-current-baseline",
        ),
        pytest.param(
            "20348.2582",
            "2024-09",
            ("2024-07", "KB5040437", True, 2, False),
            id="planned-baseline-superseded-by-an-unplanned-one",
        ),
        pytest.param(
            "20348.4800",
            "2026-05",
            ("2026-02", None, False, 3, False),
            id="between-february-and-march",
        ),
        pytest.param(
            "20348.4655",
            "2026-02",
            ("2026-01", "KB5078238", True, 1, True),
            id="ws2022-out-of-band-2026-01-24",
        ),
        pytest.param(
            "20348.1000",
            "2026-05",
            (None, None, False, None, False),
            id="older-than-the-catalog",
        ),
        pytest.param(
            "20348.9999",
            "2026-07",
            ("2026-05", None, False, None, None),
            id="newer-than-the-catalog-reference-unknown",
        ),
        pytest.param(
            "20348.9999",
            "2026-05",
            ("2026-05", None, False, None, None),
            id="newer-than-the-catalog-is-never-placed-even-when-the-reference-is-the-latest",
        ),
        pytest.param(
            "26100.32230",
            "2026-03",
            ("2026-01", "KB5073379", True, 2, True),
            id="ws2025-32xxx-baseline",
        ),
        pytest.param(
            "26100.7392",
            "2026-03",
            ("2025-12", "KB5072014", True, 3, False),
            id="ws2025-7392-is-before-the-32xxx-series",
        ),
        pytest.param(
            "26100.32300",
            "2026-03",
            ("2026-01", None, False, 2, True),
            id="ws2025-between-32230-and-32313",
        ),
    ],
)
def test_locate_places_a_build_against_the_reference_release(
    calendar: Calendar,
    build: str,
    reference: str,
    expected: tuple[str | None, str | None, bool, int | None, bool | None],
) -> None:
    parsed = parse_build(build)
    assert parsed is not None
    os = parsed[0]
    assert os is not None
    position = calendar.locate(build, calendar.slot(os, YearMonth.parse(reference)))
    assert position is not None
    assert (position.os, position.build) == (os, build)
    actual = (
        position.release_month,
        position.kb,
        position.exact,
        position.releases_behind,
        position.on_current_baseline,
    )
    assert actual == expected, "(release_month, kb, exact, releases_behind, on_current_baseline)"


@pytest.mark.parametrize(
    "build",
    [
        pytest.param("10.0.17763.1", id="windows-server-2019"),
        pytest.param("10.0.14393.7259", id="windows-server-2016"),
        pytest.param("not a build", id="text"),
        pytest.param("", id="empty"),
    ],
)
def test_locate_returns_none_for_a_build_outside_the_hotpatch_program(
    calendar: Calendar, build: str
) -> None:
    assert calendar.locate(build, calendar.slot(WS2022, YearMonth(2026, 5))) is None


@settings(deadline=None)
@given(st.integers(min_value=7393, max_value=32229))
def test_ws2025_32xxx_builds_order_after_26100_7392(revision: int) -> None:
    calendar = Calendar(shipped_release_catalog())
    reference = calendar.slot(WS2025, YearMonth(2026, 1))
    december = calendar.locate("26100.7392", reference)
    january = calendar.locate("26100.32230", reference)
    between = calendar.locate(f"26100.{revision}", reference)
    assert december is not None
    assert january is not None
    assert between is not None
    assert december.release_month == between.release_month == "2025-12"
    assert january.release_month == "2026-01"
    assert (between.releases_behind, between.exact) == (1, False)
