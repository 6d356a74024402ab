"""What the core hands to reports, word for word: summaries, the catalog's staleness, release
descriptions, malformed verdicts, and the lookups of catalogs built afresh."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from hotpatch.core.calendar import Calendar, MonthOverride, YearMonth, release_instant
from hotpatch.core.compliance import Evaluator, summarize
from hotpatch.core.images import ImageCatalog, ImageCatalogFile, ImageEntry
from hotpatch.core.inventory import ParsedInventory, parse_rows
from hotpatch.core.models import (
    Action,
    Channel,
    MalformedMachine,
    MonthKind,
    OsFamily,
    Reason,
    State,
    as_utc,
)
from hotpatch.core.policy import Policy
from hotpatch.core.reasons import ReasonCode
from hotpatch.core.releases import Release, ReleaseCatalog
from hotpatch.data import shipped_image_catalog, shipped_release_catalog
from tests.builders import (
    NOW,
    arc_id,
    arc_row,
    assessment_row,
    installation_row,
    vm_id,
    vm_row,
)

SUB = "00000000-0000-0000-0000-000000000001"  # the builders' subscription
WS2019 = ("MicrosoftWindowsServer", "WindowsServer", "2019-datacenter")


def evaluator(now: datetime = NOW) -> Evaluator:
    return Evaluator(shipped_image_catalog(), Calendar(shipped_release_catalog()), Policy(), now)


# -- the summary ---------------------------------------------------------------------------------


def test_the_summary_as_a_document_counts_every_machine_once_in_every_roll_up() -> None:
    rows = [
        vm_row("a"),
        assessment_row(vm_id("a")),
        vm_row("b"),
        assessment_row(vm_id("b")),
        vm_row("c", tags={}),  # never assessed, no ring
        vm_row("d", image=WS2019),
        vm_row("e", tags={}),  # compliant, no ring: a second combination with the same state
        assessment_row(vm_id("e")),
    ]
    summary = summarize(evaluator().evaluate_all(parse_rows(rows)))
    assert summary.as_dict() == {
        "total": 5,
        "by_state": {
            "unknown": 0,
            "not_eligible": 1,
            "misconfigured": 0,
            "assessment_due": 1,
            "non_compliant": 0,
            "reboot_pending": 0,
            "pending": 0,
            "compliant": 3,
        },
        "by_action": {
            "none": 4,
            "assess": 1,
            "install_hotpatch": 0,
            "install_baseline": 0,
            "fix_configuration": 0,
            "investigate": 0,
        },
        "by_subscription": {SUB: {"not_eligible": 1, "assessment_due": 1, "compliant": 3}},
        "by_os": {
            "(other)": {"not_eligible": 1},
            "ws2022": {"assessment_due": 1, "compliant": 3},
        },
        "by_ring": {
            "(untagged)": {"assessment_due": 1, "compliant": 1},
            "1": {"not_eligible": 1, "compliant": 2},
        },
    }
    assert summary.catalog_staleness is None


def test_a_summary_of_nothing_counts_zero_everywhere() -> None:
    summary = summarize([])
    assert summary.total == 0
    assert set(summary.by_state.values()) == {0}
    assert set(summary.by_action.values()) == {0}
    assert (summary.by_subscription, summary.by_os, summary.by_ring) == ({}, {}, {})


def test_the_summary_carries_the_staleness_it_is_given() -> None:
    stale = Calendar(shipped_release_catalog()).staleness(release_instant(2026, 6))
    assert stale is not None
    assert summarize([], stale).catalog_staleness == stale


# -- a malformed record -------------------------------------------------------------------------


def test_a_malformed_record_is_unknown_not_eligible_and_investigated_with_its_error() -> None:
    broken = MalformedMachine("/x/vm9", "vm9", "resource row: tags: not a dictionary", SUB)
    verdict = evaluator().evaluate(broken)
    assert (verdict.state, verdict.action, verdict.eligible, verdict.os) == (
        State.UNKNOWN,
        Action.INVESTIGATE,
        False,
        None,
    )
    assert verdict.reasons == (
        Reason(ReasonCode.MALFORMED_RECORD, "resource row: tags: not a dictionary"),
    )
    assert (verdict.subscription_id, verdict.name) == (SUB, "vm9")
    assert (verdict.release_month, verdict.expected_build, verdict.grace_ends) == (None, None, None)


# -- the catalog's horizon ----------------------------------------------------------------------

#: The shipped catalog covers releases through 2026-05; June's shipped 2026-06-09 17:00Z.
JUNE_RELEASE = datetime(2026, 6, 9, 17, 0, tzinfo=UTC)


def test_the_catalog_is_stale_from_the_first_release_instant_past_its_horizon() -> None:
    calendar = Calendar(shipped_release_catalog())
    assert calendar.staleness(JUNE_RELEASE - timedelta(seconds=1)) is None
    stale = calendar.staleness(JUNE_RELEASE)
    assert stale is not None
    assert (stale.covers_through, stale.since, stale.releases_missing) == (
        YearMonth(2026, 5),
        JUNE_RELEASE,
        1,
    )
    assert stale.as_dict() == {
        "stale": True,
        "covers_through": "2026-05",
        "since": "2026-06-09T17:00:00Z",
        "releases_missing": 1,
        "message": (
            "the release catalog covers releases through 2026-05, but 1 Patch Tuesday "
            "release(s) have shipped since 2026-06-09: builds newer than the catalog are not "
            "judged by their build. Update it with `hotpatch catalog update --from URL|FILE "
            "--write` (HOTPATCH_RELEASE_CATALOG)"
        ),
    }


@pytest.mark.parametrize(
    ("now", "missing"),
    [
        (datetime(2026, 7, 14, 16, 59, tzinfo=UTC), 1),  # July's release is at 17:00Z
        (datetime(2026, 7, 14, 17, 0, tzinfo=UTC), 2),
        (datetime(2026, 12, 31, 23, 59, tzinfo=UTC), 7),
    ],
)
def test_the_releases_missing_are_the_patch_tuesdays_passed_since_the_horizon(
    now: datetime, missing: int
) -> None:
    stale = Calendar(shipped_release_catalog()).staleness(now)
    assert stale is not None
    assert stale.releases_missing == missing


def test_a_catalog_without_a_horizon_is_never_stale() -> None:
    assert Calendar(ReleaseCatalog([])).staleness(datetime(2030, 1, 1, tzinfo=UTC)) is None


def test_the_evaluator_says_whether_the_catalog_is_stale_at_its_instant() -> None:
    assert evaluator(NOW).staleness is None
    stale = evaluator(JUNE_RELEASE).staleness
    assert stale is not None
    assert stale.releases_missing == 1


def test_staleness_and_forecasts_refuse_a_naive_now() -> None:
    calendar = Calendar(shipped_release_catalog())
    naive = datetime(2026, 6, 10, 12, 0)
    for call in (
        lambda: calendar.staleness(naive),
        lambda: calendar.in_force(OsFamily.WS2022, naive),
        lambda: calendar.restart_forecast(OsFamily.WS2022, naive, 1),
    ):
        with pytest.raises(ValueError, match=r"^now must be timezone-aware \(UTC\)$"):
            call()


# -- release descriptions -----------------------------------------------------------------------


def _release(**fields: object) -> Release:
    base: dict[str, object] = {
        "os": "ws2022",
        "date": date(2026, 3, 10),
        "kind": "hotpatch",
        "build": "20348.4830",
        "kb": "KB5078737",
    }
    return Release.model_validate({**base, **fields})


@pytest.mark.parametrize(
    ("fields", "described"),
    [
        ({}, "KB5078737 (build 10.0.20348.4830, the hotpatch of 2026-03)"),
        (
            {"date": date(2026, 1, 13), "kind": "baseline", "build": "20348.4648"},
            "KB5078737 (build 10.0.20348.4648, the baseline of 2026-01)",
        ),
        (
            {"kind": "unplanned_baseline"},
            "KB5078737 (build 10.0.20348.4830, the unplanned baseline of 2026-03)",
        ),
        (
            {"kind": None, "channel": "regular", "build": "20348.4893", "kb": None},
            "KB not recorded (build 10.0.20348.4893, the regular cumulative update of 2026-03)",
        ),
        (
            {"kind": None, "channel": "regular", "date": date(2026, 4, 19), "out_of_band": True},
            "KB5078737 (build 10.0.20348.4830, the regular out-of-band update of 2026-04-19)",
        ),
        (
            {"date": date(2026, 1, 24), "out_of_band": True},
            "KB5078737 (build 10.0.20348.4830, the hotpatch-track out-of-band update of "
            "2026-01-24)",
        ),
    ],
    ids=["hotpatch", "baseline", "unplanned", "regular", "regular oob", "track oob"],
)
def test_a_release_describes_itself_as_an_operator_reads_it(
    fields: dict[str, object], described: str
) -> None:
    assert _release(**fields).describe() == described


# -- the release catalog -------------------------------------------------------------------------


def test_the_latest_release_of_an_os_is_its_newest_on_the_hotpatch_track() -> None:
    shipped = shipped_release_catalog()
    catalog = ReleaseCatalog(shipped.releases, shipped.covers_through)
    latest = catalog.latest(OsFamily.WS2022)
    assert latest is not None
    # May 2026's regular cumulative update (20348.5139) is newer, but not on the track.
    assert (latest.month, latest.build, latest.channel) == (
        "2026-05",
        "20348.5074",
        Channel.HOTPATCH,
    )
    as_of_march = catalog.latest(OsFamily.WS2022, "2026-03")
    assert as_of_march is not None
    assert (as_of_march.month, as_of_march.build) == ("2026-03", "20348.4830")
    only_ws2022 = ReleaseCatalog([r for r in shipped.releases if r.os is OsFamily.WS2022])
    assert only_ws2022.latest(OsFamily.WS2025) is None


def test_without_a_stated_horizon_the_catalog_covers_the_newest_month_every_os_has() -> None:
    shipped = shipped_release_catalog()
    through_march_for_ws2025 = [
        r for r in shipped.releases if r.os is OsFamily.WS2022 or r.date < date(2026, 4, 1)
    ]
    assert ReleaseCatalog(through_march_for_ws2025).covers_through == YearMonth(2026, 3)
    assert ReleaseCatalog(shipped.releases).covers_through == YearMonth(2026, 5)
    assert ReleaseCatalog([]).covers_through is None


def test_two_patch_tuesday_releases_of_one_os_in_one_month_are_refused() -> None:
    twice = [_release(), _release(build="20348.4831", kb="KB5078738")]
    with pytest.raises(ValueError, match=r"^two releases for ws2022 in 2026-03$"):
        ReleaseCatalog(twice)


# -- the calendar -------------------------------------------------------------------------------


def test_months_are_consecutive_slots_from_the_start() -> None:
    calendar = Calendar(shipped_release_catalog())
    slots = calendar.months(OsFamily.WS2022, YearMonth(2025, 12), 3)
    assert [(str(s.month), s.kind, s.kb) for s in slots] == [
        ("2025-12", MonthKind.HOTPATCH, "KB5071413"),
        ("2026-01", MonthKind.BASELINE, "KB5073457"),
        ("2026-02", MonthKind.HOTPATCH, "KB5075943"),
    ]


@pytest.mark.parametrize(
    ("after", "baseline"),
    [((2026, 3), (2026, 4)), ((2026, 4), (2026, 7)), ((2025, 12), (2026, 1))],
)
def test_the_next_baseline_is_the_first_restart_release_after_a_month(
    after: tuple[int, int], baseline: tuple[int, int]
) -> None:
    calendar = Calendar(shipped_release_catalog())
    slot = calendar.next_baseline_after(OsFamily.WS2022, YearMonth(*after))
    assert (slot.month, slot.restart) == (YearMonth(*baseline), True)


def test_a_program_has_ended_once_its_last_release_is_superseded() -> None:
    # WS2022's program runs through 2027-10; November 2027's release ships 2027-11-09 18:00Z.
    calendar = Calendar(shipped_release_catalog())
    superseded = datetime(2027, 11, 9, 18, 0, tzinfo=UTC)
    assert calendar.program_ended(OsFamily.WS2022, superseded - timedelta(seconds=1)) is None
    assert calendar.program_ended(OsFamily.WS2022, superseded) == YearMonth(2027, 10)
    assert calendar.program_ended(OsFamily.WS2025, superseded) is None  # no end announced


# -- times read as UTC --------------------------------------------------------------------------


def test_a_time_without_a_zone_is_read_as_utc_and_any_other_zone_converted() -> None:
    assert as_utc(datetime(2026, 2, 14, 5, 0)) == datetime(2026, 2, 14, 5, 0, tzinfo=UTC)
    plus_two = datetime(2026, 2, 14, 5, 0, tzinfo=timezone(timedelta(hours=2)))
    converted = as_utc(plus_two)
    assert (converted, converted.tzinfo) == (datetime(2026, 2, 14, 3, 0, tzinfo=UTC), UTC)


# -- an image catalog built afresh --------------------------------------------------------------


def test_an_image_catalog_finds_each_kind_of_entry_whatever_the_case() -> None:
    catalog = ImageCatalog(
        ImageCatalogFile(
            hotpatchable=[ImageEntry(publisher="Pub", offer="Offer", sku="Hot-2025", os="ws2025")],
            not_hotpatchable=[
                ImageEntry(
                    publisher="Pub",
                    offer="Offer",
                    sku="Desk-2022",
                    os="ws2022",
                    code=ReasonCode.AZURE_EDITION_DESKTOP_2022,
                    reason="use the -hotpatch SKUs",
                ),
                ImageEntry(publisher="Pub", offer="Offer", sku="Plain"),
            ],
            preview=[ImageEntry(publisher="Pub", offer="Previews")],
        )
    )
    hot = catalog.match("PUB", "offer", "hot-2025")
    assert (hot.os, hot.reason, hot.preview) == (OsFamily.WS2025, None, False)
    desk = catalog.match("pub", "OFFER", "DESK-2022")
    assert (desk.os, desk.reason) == (
        OsFamily.WS2022,
        Reason(ReasonCode.AZURE_EDITION_DESKTOP_2022, "use the -hotpatch SKUs"),
    )
    plain = catalog.match("pub", "offer", "plain")
    assert (plain.os, plain.reason) == (
        None,
        Reason(ReasonCode.SKU_NOT_HOTPATCHABLE, "SKU plain cannot be hotpatched"),
    )
    preview = catalog.match("PUB", "PREVIEWS", "anything-2022")
    assert (preview.os, preview.preview) == (OsFamily.WS2022, True)
    assert preview.reason == Reason(
        ReasonCode.PREVIEW_OFFER,
        "PREVIEWS/anything-2022 is a preview offer, not in Microsoft's supported hotpatch list; "
        "counted only when the allow-preview-images policy is on",
    )
    unknown = catalog.match("Other", "Offer", "Hot-2025")
    assert (unknown.os, unknown.preview) == (None, False)
    assert unknown.reason == Reason(
        ReasonCode.SKU_NOT_HOTPATCHABLE,
        "Other/Offer/Hot-2025 is not a hotpatch image; supported: the Windows Server 2022/2025 "
        "Datacenter: Azure Edition hotpatch SKUs",
    )


def test_a_preview_entry_for_one_sku_covers_that_sku_only() -> None:
    document = ImageCatalogFile(
        hotpatchable=[ImageEntry(publisher="Pub", offer="Offer", sku="Hot-2025", os="ws2025")],
        preview=[ImageEntry(publisher="Pub", offer="Previews", sku="Only-2022")],
    )
    catalog = ImageCatalog(document)
    assert catalog.document is document
    assert catalog.match("pub", "previews", "only-2022").preview is True
    other = catalog.match("pub", "previews", "other-2022")
    assert other.preview is False
    assert other.reason is not None
    assert other.reason.code is ReasonCode.SKU_NOT_HOTPATCHABLE


# -- judging one machine at a time ------------------------------------------------------------


def test_judging_machines_one_by_one_gives_each_its_own_verdict() -> None:
    """`evaluate` (one machine, its summaries) decides like `evaluate_all`, machine by machine,
    on one evaluator: a decision made for one machine is not handed to a different one."""
    rows = [
        vm_row("current"),
        assessment_row(vm_id("current")),
        vm_row("behind", build="10.0.20348.4648"),
        assessment_row(vm_id("behind")),
        vm_row("restarting"),
        assessment_row(vm_id("restarting"), assessed=NOW - timedelta(hours=3)),
        installation_row(vm_id("restarting"), NOW - timedelta(hours=1), reboot_status="Required"),
        vm_row("old", image=WS2019),
    ]
    inventory = parse_rows(rows)
    one_by_one = evaluator()
    verdicts = [
        one_by_one.evaluate(
            machine, inventory.assessments.get(machine.id), inventory.installations.get(machine.id)
        )
        for machine in inventory.machines
    ]
    assert [(v.name, v.state) for v in verdicts] == [
        ("current", State.COMPLIANT),
        ("behind", State.PENDING),
        ("restarting", State.REBOOT_PENDING),
        ("old", State.NOT_ELIGIBLE),
    ]
    together = evaluator().evaluate_all(inventory)
    assert [v.decision for v in verdicts] == [v.decision for v in together]
    assert [v.assessment for v in verdicts] == [v.assessment for v in together]


# -- a machine in another time zone ------------------------------------------------------------


@pytest.fixture
def pacific_machine(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local zone is not UTC (as on an operator's laptop)."""
    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("pacific_machine")
def test_times_are_read_as_utc_whatever_the_local_zone() -> None:
    naive = as_utc(datetime(2026, 2, 14, 5, 0))
    assert (naive, naive.utcoffset()) == (datetime(2026, 2, 14, 5, 0, tzinfo=UTC), timedelta(0))
    plus_two = as_utc(datetime(2026, 2, 14, 5, 0, tzinfo=timezone(timedelta(hours=2))))
    assert plus_two.utcoffset() == timedelta(0)
    assert plus_two.hour == 3


@pytest.mark.parametrize(
    ("sku", "os"),
    [
        ("2025-datacenter-g2", OsFamily.WS2025),
        ("2022-datacenter-g2", OsFamily.WS2022),
        ("2019-datacenter", None),
    ],
)
def test_an_unlisted_windows_server_sku_keeps_the_release_its_name_says(
    sku: str, os: OsFamily | None
) -> None:
    catalog = ImageCatalog(
        ImageCatalogFile(
            hotpatchable=[ImageEntry(publisher="Pub", offer="Offer", sku="Hot-2025", os="ws2025")]
        )
    )
    match = catalog.match("MicrosoftWindowsServer", "WindowsServer", sku)
    assert (match.os, match.preview) == (os, False)


def test_the_next_baseline_follows_the_catalogs_unplanned_baselines() -> None:
    # WS2022's August 2024 release was an unplanned baseline (a restart in a hotpatch month).
    slot = Calendar(shipped_release_catalog()).next_baseline_after(
        OsFamily.WS2022, YearMonth(2024, 7)
    )
    assert (slot.os, slot.month, slot.kind) == (
        OsFamily.WS2022,
        YearMonth(2024, 8),
        MonthKind.UNPLANNED_BASELINE,
    )


def test_the_next_baseline_follows_an_operators_word_on_a_later_month() -> None:
    march = MonthOverride(YearMonth(2026, 3), MonthKind.UNPLANNED_BASELINE, OsFamily.WS2022)
    calendar = Calendar(shipped_release_catalog(), [march])
    slot = calendar.next_baseline_after(OsFamily.WS2022, YearMonth(2026, 1))
    assert (slot.month, slot.kind, slot.source) == (
        YearMonth(2026, 3),
        MonthKind.UNPLANNED_BASELINE,
        "override",
    )
    other = calendar.next_baseline_after(OsFamily.WS2025, YearMonth(2026, 1))
    assert other.month == YearMonth(2026, 4)  # the override names WS2022 only


def test_build_lookups_see_only_the_releases_published_through_a_month() -> None:
    # A catalog built here, not the shipped one whose lookups other tests have already made.
    shipped = shipped_release_catalog()
    catalog = ReleaseCatalog(shipped.releases, shipped.covers_through)
    ws2022 = OsFamily.WS2022
    march = catalog.exact(ws2022, 4830)
    assert march is not None
    assert (march.month, march.kb) == ("2026-03", "KB5078737")
    assert catalog.exact(ws2022, 4830, "2026-02") is None
    regular = catalog.exact(ws2022, 4773, "2026-02")  # February's regular cumulative update
    assert regular is not None
    assert regular.channel is Channel.REGULAR
    assert catalog.newest_revision(ws2022) == 5139  # May's regular update: either track counts
    assert catalog.newest_revision(ws2022, "2026-02") == 4773
    below = catalog.at_or_below(ws2022, 4900, "2026-02")
    assert below is not None
    assert below.build == "20348.4711"  # on the track, through February
    below_all = catalog.at_or_below(ws2022, 4900)
    assert below_all is not None
    assert below_all.build == "20348.4830"  # the regular 4893 is not on the track
    assert catalog.at_or_below(ws2022, 1) is None
    assert ReleaseCatalog([]).newest_revision(ws2022) is None


# -- the evaluator's shared decisions and its instant ------------------------------------------


def test_machines_that_differ_only_in_what_their_rows_say_get_their_own_verdicts() -> None:
    rows = [
        vm_row("plain"),
        vm_row("restarting"),
        installation_row(vm_id("restarting"), NOW, reboot_status="Required"),
        vm_row("standard", **{"properties.securityProfile": {}}),
        assessment_row(vm_id("standard")),
        vm_row("trusted"),
        assessment_row(vm_id("trusted")),
    ]
    verdicts = {v.name: v for v in evaluator().evaluate_all(parse_rows(rows))}
    assert [r.code for r in verdicts["plain"].reasons] == ["never_assessed"]
    assert [r.code for r in verdicts["restarting"].reasons] == ["never_assessed", "reboot_pending"]
    security = {
        name: [s.message.split(";")[0] for s in verdicts[name].signals if s.code == "security_type"]
        for name in ("standard", "trusted")
    }
    assert security == {
        "standard": ["security type Standard (no Trusted Launch)"],
        "trusted": ["security type TrustedLaunch"],
    }


def test_an_inventory_whose_profiles_were_not_taken_is_judged_machine_by_machine() -> None:
    parsed = parse_rows([vm_row("a"), vm_row("b", image=WS2019)])
    unprofiled = ParsedInventory(parsed.machines, profiles=[None, None])
    assert [v.state for v in evaluator().evaluate_all(unprofiled)] == [
        State.ASSESSMENT_DUE,
        State.NOT_ELIGIBLE,
    ]


def test_a_verdict_that_is_not_judged_on_patches_still_carries_the_assessment() -> None:
    assessed = datetime(2026, 2, 14, 3, 0, tzinfo=UTC)
    rows = [arc_row("arc1"), assessment_row(arc_id("arc1"), assessed=assessed)]
    (arc,) = evaluator().evaluate_all(parse_rows(rows))
    assert arc.last_assessed == assessed
    rows = [vm_row("old", image=WS2019), assessment_row(vm_id("old"), assessed=assessed)]
    (old,) = evaluator().evaluate_all(parse_rows(rows))
    assert (old.state, old.last_assessed) == (State.NOT_ELIGIBLE, assessed)


def test_an_unplanned_baseline_in_the_catalog_is_the_baseline_a_later_machine_needs() -> None:
    """2024-08 was an unplanned baseline for WS2022; inside September's grace period a machine
    still on July's baseline is behind August's, so it is off the cycle (not merely behind)."""
    now = datetime(2024, 9, 12, 12, 0, tzinfo=UTC)
    rows = [vm_row(build="10.0.20348.2582"), assessment_row(vm_id("vm1"), assessed=now)]
    (verdict,) = evaluator(now).evaluate_all(parse_rows(rows))
    assert [r.code for r in verdict.reasons][:1] == ["off_cycle"]
    assert "behind the 2024-08 baseline" in verdict.reasons[0].message


def test_in_a_restart_month_missing_updates_are_installed_with_a_restart() -> None:
    april = datetime(2026, 4, 20, 12, 0, tzinfo=UTC)  # the April baseline shipped 2026-04-14
    rows = [
        vm_row(build="10.0.20348.5020"),
        assessment_row(vm_id("vm1"), assessed=april, security=1),
    ]
    (verdict,) = evaluator(april).evaluate_all(parse_rows(rows))
    assert (verdict.state, verdict.action) == (State.PENDING, Action.INSTALL_BASELINE)


# -- the calendar's answers on edge cases -------------------------------------------------------


def test_a_catalog_without_programs_has_no_program_end() -> None:
    calendar = Calendar(ReleaseCatalog([]))
    assert calendar.program_ended(OsFamily.WS2022, datetime(2030, 1, 1, tzinfo=UTC)) is None


def test_a_regular_build_of_the_reference_month_is_located_as_it_is_written() -> None:
    calendar = Calendar(shipped_release_catalog())
    may = calendar.slot(OsFamily.WS2022, YearMonth(2026, 5))
    position = calendar.locate("10.0.20348.5139", may)  # May's regular cumulative update
    assert position is not None
    assert (position.build, position.release_month, position.releases_behind) == (
        "10.0.20348.5139",
        "2026-05",
        0,
    )
    assert (position.channel, position.on_current_baseline, position.exact) == (
        Channel.REGULAR,
        False,
        True,
    )


def test_a_build_past_a_catalog_of_regular_rows_only_is_at_no_release() -> None:
    regular = Release.model_validate(
        {"os": "ws2022", "date": "2026-03-10", "build": "20348.4893", "channel": "regular"}
    )
    calendar = Calendar(ReleaseCatalog([regular]))
    position = calendar.locate(
        "10.0.20348.9999", calendar.slot(OsFamily.WS2022, YearMonth(2026, 3))
    )
    assert position is not None
    assert (position.beyond_catalog, position.release_month) == (True, None)


def test_a_hand_built_inventory_of_malformed_machines_is_judged() -> None:
    broken = MalformedMachine("/x/vm9", "vm9", "resource row: tags: not a dictionary", SUB)
    (verdict,) = evaluator().evaluate_all(ParsedInventory([broken]))
    assert verdict.state is State.UNKNOWN


@pytest.mark.parametrize(
    ("month", "beyond", "status"),
    [((2026, 5), False, "published"), ((2026, 6), True, "beyond_catalog")],
)
def test_a_month_past_the_catalogs_horizon_is_beyond_it(
    month: tuple[int, int], beyond: bool, status: str
) -> None:
    slot = Calendar(shipped_release_catalog()).slot(OsFamily.WS2022, YearMonth(*month))
    assert (slot.beyond_catalog, slot.status) == (beyond, status)


def test_without_a_horizon_no_month_is_beyond_the_catalog() -> None:
    slot = Calendar(ReleaseCatalog([])).slot(OsFamily.WS2022, YearMonth(2030, 1))
    assert (slot.beyond_catalog, slot.status) == (False, "not_in_catalog")
