"""The planner's gates, windows and policies: when a ring halts, soaks and is promoted, when a
window opens and closes, what a refused policy says, and how a plan words what it decides."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from time import tzset
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotpatch.core.calendar import YearMonth
from hotpatch.core.models import Reason, State
from hotpatch.core.plan import (
    BlockedKb,
    Mode,
    PastOperation,
    RemediationPolicy,
    RingDecision,
    RingPolicy,
    RingStatus,
    RolloutState,
    SkipCode,
    TaggedWindow,
    Window,
    kb_form,
    month_in_force,
    plan,
)
from hotpatch.core.reasons import ReasonCode
from tests.unit.test_plan import (
    BLOCK,
    CALENDAR,
    DEFAULT_WINDOW,
    FEB_KB,
    FEB_RELEASE,
    IN_RING1_WINDOW,
    IN_RING2_WINDOW,
    IN_WINDOW,
    REMEDIATE,
    Row,
    operation_of,
    past,
    planned,
    skip_of,
    vm,
)

#: A KB number shorter than the February hotpatch's: numerically first, textually last.
OLD_KB = "KB987654"
#: What ring0 proves in these tests, in numeric order.
PROVEN = (OLD_KB, FEB_KB)
#: ring0 installed both KBs at IN_WINDOW; its three-day soak ended 2026-02-15 22:30Z.
RING0_PROOF = past(vm("a0"), kbs=(FEB_KB, OLD_KB))
#: The February default window (2 days after Patch Tuesday, 22:00 London, 3 h), in UTC.
FEB_OPENS = datetime(2026, 2, 12, 22, 0, tzinfo=UTC)
FEB_CLOSES = datetime(2026, 2, 13, 1, 0, tzinfo=UTC)
MAR_OPENS = datetime(2026, 3, 12, 22, 0, tzinfo=UTC)
_THREE_HOURS = timedelta(hours=3)


@pytest.fixture
def host_in_kolkata(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The host's local zone is UTC+05:30 (a Function App may run with TZ or
    WEBSITE_TIME_ZONE set): nothing the planner says may depend on it."""
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    tzset()
    yield
    monkeypatch.undo()
    tzset()


def ring1_decision(*operations: PastOperation, machines: tuple[Row, ...] = ()) -> RingDecision:
    """ring1's decision once ring0 has proven PROVEN and soaked."""
    result = planned(*machines, operations=(RING0_PROOF, *operations), now=IN_RING2_WINDOW)
    assert result.rings[0].status is RingStatus.PROMOTED
    return result.rings[1]


def ring1_past(
    status: str = "succeeded",
    *,
    finished: datetime = IN_WINDOW,
    kbs: tuple[str, ...] = (FEB_KB,),
) -> PastOperation:
    return past(vm("b0", ring="ring1"), status, finished=finished, kbs=kbs)


# -- where a ring stands ------------------------------------------------------------------------


#: ring1 with nothing of its own yet: every field the tables below do not name.
_RING1 = RingDecision(
    ring="ring1",
    release="2026-02",
    status=RingStatus.WAITING,
    kbs=(),
    machines=0,
    failures=0,
    soak_ends=None,
    reason="",
    kb_include=PROVEN,
)


def _decision(status: RingStatus, reason: str, **fields: Any) -> RingDecision:
    return replace(_RING1, status=status, reason=reason, **fields)


@pytest.mark.parametrize(
    ("operations", "machines", "expected"),
    [
        (
            (),
            (),
            _decision(
                RingStatus.WAITING, "ring1 has no install of 2026-02 to make or on record yet"
            ),
        ),
        (
            (ring1_past("started"), past(vm("b2", ring="ring1"), "unknown")),
            (vm("b1", ring="ring1"),),
            _decision(
                RingStatus.INSTALLING,
                "ring1 is installing 2026-02: 0 install(s) of 2026-02 finished, 0 failed, "
                "2 in flight, 1 machine(s) waiting",
                machines=1,
                in_flight=2,
                waiting=1,
            ),
        ),
        (
            (ring1_past(finished=datetime(2026, 2, 19, 12, 0, tzinfo=UTC), kbs=PROVEN),),
            (),
            _decision(
                RingStatus.SOAKING,
                "ring1 is soaking KB987654, KB5075943 until 2026-02-22T12:00Z: 1 install(s) of "
                "2026-02 finished, 0 failed, 0 in flight, 0 machine(s) waiting",
                kbs=PROVEN,
                soak_ends=datetime(2026, 2, 22, 12, 0, tzinfo=UTC),
                finished=1,
                succeeded=1,
            ),
        ),
        (
            (ring1_past(finished=datetime(2026, 2, 16, 23, 0, tzinfo=UTC), kbs=PROVEN),),
            (),
            _decision(
                RingStatus.PROMOTED,
                "ring1 is promoted: KB987654, KB5075943 proven by 1 install(s), 0 failed "
                "(within its 5% error budget), soaked until 2026-02-19T23:00Z",
                kbs=PROVEN,
                soak_ends=datetime(2026, 2, 19, 23, 0, tzinfo=UTC),
                finished=1,
                succeeded=1,
            ),
        ),
        (
            (ring1_past("failed"),),
            (),
            _decision(
                RingStatus.HALTED,
                "ring1 is halted: 1 of 1 finished install(s) of 2026-02 failed (100%), over its "
                "error budget of 5%; 0 in flight, 0 waiting",
                failures=1,
                finished=1,
            ),
        ),
        (
            (ring1_past(kbs=()),),
            (),
            _decision(
                RingStatus.HALTED,
                "ring1 proved no KB for 2026-02 (1 of 1 finished install(s) succeeded, none with "
                "a KB installed): nothing to promote",
                soak_ends=IN_WINDOW + timedelta(days=3),
                finished=1,
                succeeded=1,
            ),
        ),
    ],
    ids=["waiting", "installing", "soaking", "promoted", "over its budget", "proved no KB"],
)
def test_a_rings_decision_says_where_it_stands_and_what_its_installs_include(
    operations: tuple[PastOperation, ...], machines: tuple[Row, ...], expected: RingDecision
) -> None:
    assert ring1_decision(*operations, machines=machines) == expected


@pytest.mark.parametrize(
    ("succeeded", "failed", "budget", "status"),
    [
        (3, 1, 0.25, RingStatus.PROMOTED),
        (2, 1, 0.25, RingStatus.HALTED),
        (1, 0, 0.0, RingStatus.PROMOTED),
        (4, 1, 0.0, RingStatus.HALTED),
    ],
    ids=[
        "1 of 4 is its 25% budget",
        "1 of 3 is over it",
        "none of a 0% budget",
        "1 of 5 is over 0%",
    ],
)
def test_a_ring_halts_exactly_when_its_failures_exceed_its_error_budget(
    succeeded: int, failed: int, budget: float, status: RingStatus
) -> None:
    policy = replace(REMEDIATE, rings=(RingPolicy("ring0", error_budget=budget),))
    operations = (
        *(past(vm(f"s{i}")) for i in range(succeeded)),
        *(past(vm(f"f{i}"), "failed") for i in range(failed)),
    )
    result = planned(policy=policy, operations=operations, now=IN_RING1_WINDOW)
    assert result.rings[0].status is status


def test_a_ring_whose_installs_all_failed_has_no_soak_to_end() -> None:
    result = planned(operations=(past(vm("f0"), "failed"),), now=IN_RING1_WINDOW)
    assert (result.rings[0].status, result.rings[0].soak_ends) == (RingStatus.HALTED, None)


def test_a_halt_is_given_by_its_first_cause_in_every_later_ring() -> None:
    operations = (past(vm("a0")), past(vm("f0"), "failed"))
    first, second, third = planned(operations=operations, now=IN_RING1_WINDOW).rings
    assert first.reason.startswith("ring0 is halted: 1 of 2 finished install(s)")
    assert second.reason == f"ring1 starts nothing: {first.reason}"
    assert third.reason == f"ring2 starts nothing: {first.reason}"


def test_a_ring_whose_every_proven_kb_is_blocked_names_them_all() -> None:
    policy = replace(REMEDIATE, blocked_kbs=(BLOCK, BlockedKb(OLD_KB, "breaks printing")))
    proof = past(vm("a0"), kbs=(BLOCK.kb, OLD_KB))
    result = planned(policy=policy, operations=(proof,), now=IN_RING1_WINDOW)
    assert result.rings[1].reason == (
        "ring1 starts nothing: every KB ring0 proved for 2026-02 is blocked (KB987654, KB5062557)"
    )


def test_a_rings_decision_counts_every_machine_of_the_ring_and_every_one_waiting() -> None:
    machines = (vm("a0"), vm("a1"), vm("a2"), vm("a3", State.COMPLIANT), vm("x", ring=None))
    decision = planned(*machines).rings[0]
    assert (decision.machines, decision.waiting) == (4, 3)


# -- an install's reason and its KBs ------------------------------------------------------------

_HOTPATCH = (
    "the 2026-02 hotpatch installs without a restart (rebootSetting Never, critical and security "
    "updates only)"
)


@pytest.mark.parametrize(
    ("machine", "now", "reason"),
    [
        (
            vm("a1"),
            IN_WINDOW,
            f"behind: {_HOTPATCH}; ring0 installs updates published by 2026-02-10T18:00Z",
        ),
        (
            vm("a1", reasons=(Reason(ReasonCode.BUILD_BEHIND, "build 20348.3000 is behind"),)),
            IN_WINDOW,
            f"build 20348.3000 is behind: {_HOTPATCH}; ring0 installs updates published by "
            "2026-02-10T18:00Z",
        ),
        (
            vm("b1", ring="ring1"),
            IN_RING1_WINDOW,
            f"behind: {_HOTPATCH}; ring1 installs exactly KB987654, KB5075943 (proven in the "
            "ring before)",
        ),
    ],
    ids=["the first ring", "with the verdict's own reason", "a later ring"],
)
def test_an_installs_reason_says_why_and_what_its_ring_installs(
    machine: Row, now: datetime, reason: str
) -> None:
    op = operation_of(planned(machine, operations=(RING0_PROOF,), now=now), machine)
    assert op.reason == reason


def test_an_install_request_excludes_the_blocked_kbs_in_numeric_order() -> None:
    machine = vm("a1")
    policy = replace(REMEDIATE, blocked_kbs=(BLOCK, BlockedKb(OLD_KB, "breaks printing")))
    op = operation_of(planned(machine, policy=policy), machine)
    assert op.install is not None
    assert op.install.kb_exclude == (OLD_KB, BLOCK.kb)


def test_a_ring_proves_its_kbs_in_numeric_order_whatever_their_length() -> None:
    proof = past(vm("a0"), kbs=("KB10000", "kb9999", FEB_KB, "KB10000"))
    assert planned(operations=(proof,)).rings[0].kbs == ("KB9999", "KB10000", FEB_KB)


@pytest.mark.parametrize(
    ("text", "kb"),
    [
        ("KB5062557", "KB5062557"),
        ("kb5062557", "KB5062557"),
        (" 5062557 ", "KB5062557"),
        ("KB1234", "KB1234"),
        ("KB123", None),
        ("KB123456789", None),
        ("Q5062557", None),
        ("", None),
        # Another script's digits name no KB Azure reports: a block of them would block nothing.
        ("KB\u0665\u0660\u0666\u0662\u0665\u0665\u0667", None),
        ("\uff15\uff10\uff16\uff12\uff15\uff15\uff17", None),
    ],
    ids=[
        "KB and digits",
        "lower-case kb",
        "digits alone, spaced",
        "four digits",
        "three digits",
        "nine digits",
        "another letter",
        "nothing",
        "Arabic-Indic digits",
        "full-width digits",
    ],
)
def test_a_kb_is_written_kb_and_four_to_eight_digits(text: str, kb: str | None) -> None:
    assert kb_form(text) == kb


# -- windows: which one, and when it is open ----------------------------------------------------


def test_with_no_window_at_all_the_message_says_where_one_could_come_from() -> None:
    machine = vm("a1")
    skip = skip_of(planned(machine, policy=replace(REMEDIATE, default_window=None)), machine)
    assert (skip.code, skip.message) == (
        SkipCode.NO_WINDOW,
        "no maintenance window applies (no ring window, tagged window or default_window): "
        "nothing that changes it starts",
    )


@pytest.mark.parametrize(
    ("now", "message"),
    [
        (
            datetime(2026, 2, 13, 0, 46, tzinfo=UTC),
            "only 0h14m left in its window (an install needs at least 0h15m); it next opens "
            "2026-03-12T22:00Z",
        ),
        (
            datetime(2026, 2, 13, 0, 59, 30, tzinfo=UTC),
            "only 0h00m left in its window (an install needs at least 0h15m); it next opens "
            "2026-03-12T22:00Z",
        ),
    ],
    ids=["14 minutes left", "30 seconds left"],
)
def test_a_closing_window_says_how_little_is_left_and_when_the_next_opens(
    now: datetime, message: str
) -> None:
    machine = vm("a1")
    skip = skip_of(planned(machine, now=now), machine)
    assert (skip.code, skip.message) == (SkipCode.WINDOW_CLOSING, message)


_EARLY = TaggedWindow(
    "patch-window", "early", Window(1, time(2, 0), "UTC", timedelta(hours=1, minutes=30))
)
_RING0_OWN = RingPolicy("ring0", window=Window(6, time(22, 0), "Europe/London", _THREE_HOURS))


@pytest.mark.parametrize(
    ("policy", "tags", "message"),
    [
        (
            REMEDIATE,
            {},
            "outside its maintenance window (default: 2 day(s) after Patch Tuesday, 22:00 "
            "Europe/London for 3h00m); it next opens 2026-02-12T22:00Z until 2026-02-13T01:00Z",
        ),
        (
            replace(REMEDIATE, windows=(_EARLY,)),
            {"patch-window": "early"},
            "outside its maintenance window (tag patch-window=early: 1 day(s) after Patch "
            "Tuesday, 02:00 UTC for 1h30m); it next opens 2026-03-11T02:00Z until "
            "2026-03-11T03:30Z",
        ),
        (
            replace(REMEDIATE, rings=(_RING0_OWN,), windows=(_EARLY,)),
            {"patch-window": "early"},
            "outside its maintenance window (ring ring0: 6 day(s) after Patch Tuesday, 22:00 "
            "Europe/London for 3h00m); it next opens 2026-02-16T22:00Z until 2026-02-17T01:00Z",
        ),
    ],
    ids=["the default window", "a tagged window", "the ring's own window"],
)
def test_outside_its_window_a_machine_is_told_which_window_and_when_it_next_opens(
    policy: RemediationPolicy, tags: dict[str, str], message: str
) -> None:
    machine = vm("a1", tags=tags)
    skip = skip_of(
        planned(machine, policy=policy, now=datetime(2026, 2, 11, 9, 0, tzinfo=UTC)), machine
    )
    assert (skip.code, skip.message) == (SkipCode.OUTSIDE_WINDOW, message)


def test_an_assessment_inside_its_window_runs_until_the_window_closes() -> None:
    machine = vm("stale", State.ASSESSMENT_DUE)
    assert operation_of(planned(machine), machine).window_end == FEB_CLOSES


def test_an_assessment_where_no_window_applies_has_no_window_end() -> None:
    machine = vm("stale", State.ASSESSMENT_DUE, ring=None)
    result = planned(machine, policy=replace(REMEDIATE, default_window=None))
    assert operation_of(result, machine).window_end is None


@pytest.mark.parametrize(
    ("now", "open"),
    [
        (FEB_OPENS - timedelta(microseconds=1), False),
        (FEB_OPENS, True),
        (FEB_CLOSES - timedelta(microseconds=1), True),
        (FEB_CLOSES, False),
    ],
    ids=["just before it opens", "the instant it opens", "just before it closes", "as it closes"],
)
def test_a_window_is_open_from_its_opening_instant_until_just_before_it_closes(
    now: datetime, open: bool
) -> None:
    assert DEFAULT_WINDOW.containing(now) == ((FEB_OPENS, FEB_CLOSES) if open else None)


def test_an_install_starts_the_minute_its_window_opens_and_not_once_it_has_closed() -> None:
    machine = vm("a1")
    assert operation_of(planned(machine, now=FEB_OPENS), machine).window_end == FEB_CLOSES
    assert skip_of(planned(machine, now=FEB_CLOSES), machine).code is SkipCode.OUTSIDE_WINDOW


@pytest.mark.parametrize(
    ("now", "opens"),
    [
        (datetime(2026, 2, 11, 9, 0, tzinfo=UTC), FEB_OPENS),
        (FEB_OPENS, MAR_OPENS),
        (datetime(2026, 2, 20, 9, 0, tzinfo=UTC), MAR_OPENS),
        (datetime(2026, 12, 31, 23, 0, tzinfo=UTC), datetime(2027, 1, 14, 22, 0, tzinfo=UTC)),
    ],
    ids=["later this month", "at an opening: the next", "next month", "next year"],
)
def test_the_next_opening_is_the_first_strictly_after_now(now: datetime, opens: datetime) -> None:
    assert DEFAULT_WINDOW.next_after(now) == (opens, opens + timedelta(hours=3))


@pytest.mark.parametrize(
    ("window", "month", "opens"),
    [
        # The clocks in London went forward on 2026-03-29: 22:00 BST is 21:00Z.
        (
            Window(20, time(22, 0), "Europe/London", timedelta(hours=1)),
            YearMonth(2026, 3),
            datetime(2026, 3, 30, 21, 0, tzinfo=UTC),
        ),
        # 01:00 in Auckland (NZDT, +13) is noon the day before in UTC.
        (
            Window(0, time(1, 0), "Pacific/Auckland", timedelta(hours=2)),
            YearMonth(2026, 2),
            datetime(2026, 2, 9, 12, 0, tzinfo=UTC),
        ),
        # 27 days after January's Patch Tuesday (2026-01-13) is in February; 23:00 EST is 04:00Z.
        (
            Window(27, time(23, 0), "America/New_York", timedelta(hours=3)),
            YearMonth(2026, 1),
            datetime(2026, 2, 10, 4, 0, tzinfo=UTC),
        ),
    ],
    ids=["after the clocks go forward", "a zone ahead of UTC", "into the next month"],
)
def test_a_window_opens_at_its_wall_clock_time_across_zones_days_and_months(
    window: Window, month: YearMonth, opens: datetime
) -> None:
    assert window.occurrence(month) == (opens, opens + window.duration)
    assert window.containing(opens) == (opens, opens + window.duration)


def test_the_instants_a_plan_gives_are_utc_whatever_the_hosts_zone(host_in_kolkata: None) -> None:
    opens, closes = DEFAULT_WINDOW.occurrence(YearMonth(2026, 2))
    assert (opens.isoformat(), closes.isoformat()) == (
        "2026-02-12T22:00:00+00:00",
        "2026-02-13T01:00:00+00:00",
    )
    machine = vm("a1")
    skip = skip_of(planned(machine, now=datetime(2026, 2, 11, 9, 0, tzinfo=UTC)), machine)
    assert skip.message.endswith("it next opens 2026-02-12T22:00Z until 2026-02-13T01:00Z")


_ZONES = st.sampled_from(["UTC", "Europe/London", "America/Los_Angeles", "Pacific/Auckland"])
_WINDOWS = st.builds(
    Window,
    offset_days=st.integers(0, 27),
    start=st.times(),
    time_zone=_ZONES,
    duration=st.timedeltas(timedelta(minutes=1), timedelta(hours=3, minutes=54)),
)


@given(
    window=_WINDOWS,
    now=st.datetimes(datetime(2026, 1, 1), datetime(2028, 12, 31), timezones=st.just(UTC)),
)
def test_a_window_is_open_exactly_within_an_occurrence_and_next_opens_at_the_first_after(
    window: Window, now: datetime
) -> None:
    month = YearMonth.of(now)
    around = [window.occurrence(month.shift(shift)) for shift in range(-3, 4)]
    inside = [span for span in around if span[0] <= now < span[1]]
    assert window.containing(now) == (inside[0] if inside else None)
    assert window.next_after(now) == min(span for span in around if span[0] > now)


@pytest.mark.parametrize(
    ("tags", "matches"),
    [
        ({"Patch-Window": "EARLY"}, True),
        ({"patch-window": "late"}, False),
        ({"other": "early"}, False),
        ({"other": "early", "patch-window": "late"}, False),
        ({}, False),
    ],
)
def test_a_tagged_window_applies_only_when_both_its_tag_and_its_value_match(
    tags: dict[str, str], matches: bool
) -> None:
    tagged = TaggedWindow("patch-window", "early", DEFAULT_WINDOW)
    assert tagged.matches(tags) is matches


# -- the release in force and the clock's zone --------------------------------------------------


@pytest.mark.parametrize(
    ("now", "month"),
    [
        (FEB_RELEASE - timedelta(microseconds=1), YearMonth(2026, 1)),
        (FEB_RELEASE, YearMonth(2026, 2)),
        (datetime(2026, 2, 10, 10, 0, tzinfo=ZoneInfo("America/Los_Angeles")), YearMonth(2026, 2)),
        (datetime(2026, 1, 13, 17, 59, tzinfo=UTC), YearMonth(2025, 12)),
        (datetime(2026, 1, 1, tzinfo=UTC), YearMonth(2025, 12)),
    ],
    ids=[
        "just before the release",
        "the instant of the release",
        "the release in Redmond's time",
        "before January's release",
        "new year's day",
    ],
)
def test_a_release_is_in_force_from_its_release_instant(now: datetime, month: YearMonth) -> None:
    assert month_in_force(now) == month


_NAIVE = datetime(2026, 2, 12, 22, 30)


@pytest.mark.parametrize(
    "call",
    [
        lambda: plan([], REMEDIATE, RolloutState(), CALENDAR, _NAIVE),
        lambda: month_in_force(_NAIVE),
        lambda: DEFAULT_WINDOW.containing(_NAIVE),
        lambda: DEFAULT_WINDOW.next_after(_NAIVE),
    ],
    ids=["plan", "month_in_force", "containing", "next_after"],
)
def test_a_now_without_its_zone_is_refused_with_one_message(call: Callable[[], object]) -> None:
    with refused_with("now must be timezone-aware (UTC)"):
        call()


# -- policies: what is refused, in which words, and what is just accepted ----------------------


@contextmanager
def refused_with(message: str) -> Iterator[None]:
    """Expects a ValueError saying exactly `message`."""
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        yield


_HOUR = timedelta(hours=1)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: Window(28, time(22, 0), "UTC", _HOUR),
            "offset_days must be 0 to 27 days after Patch Tuesday, got 28",
        ),
        (
            lambda: Window(-1, time(22, 0), "UTC", _HOUR),
            "offset_days must be 0 to 27 days after Patch Tuesday, got -1",
        ),
        (
            lambda: Window(2, time(22, 0, tzinfo=UTC), "UTC", _HOUR),
            "start is a wall-clock time in time_zone: give it without a zone",
        ),
        (
            lambda: Window(2, time(22, 0), "Mars/Olympus", _HOUR),
            "unknown time zone 'Mars/Olympus' (an IANA name such as Europe/London)",
        ),
        (
            lambda: Window(2, time(22, 0), "UTC", timedelta(0)),
            "duration must be more than 0 and less than 3h55m (Azure's longest install), "
            "got 0:00:00",
        ),
        (
            lambda: Window(2, time(22, 0), "UTC", timedelta(hours=3, minutes=55)),
            "duration must be more than 0 and less than 3h55m (Azure's longest install), "
            "got 3:55:00",
        ),
        (lambda: RingPolicy(" "), "a ring needs a name (the value of its ring tag)"),
        (
            lambda: RingPolicy("ring0", soak=-timedelta(seconds=1)),
            "soak must not be negative, got -1 day, 23:59:59",
        ),
        (lambda: RingPolicy("ring0", error_budget=1.5), "error_budget must be 0 to 1, got 1.5"),
        (lambda: RingPolicy("ring0", error_budget=-0.01), "error_budget must be 0 to 1, got -0.01"),
        (
            lambda: RingPolicy("ring0", max_concurrent=-1),
            "max_concurrent and max_per_run must not be negative",
        ),
        (
            lambda: RingPolicy("ring0", max_per_run=-1),
            "max_concurrent and max_per_run must not be negative",
        ),
        (
            lambda: BlockedKb("KB5062557", "bad", datetime(2026, 9, 1)),
            "expires must be timezone-aware",
        ),
        (
            lambda: BlockedKb("5062557", "bad"),
            "a blocked KB is written KB and 4 to 8 digits, got '5062557'",
        ),
        (
            lambda: RemediationPolicy(rings=(RingPolicy("ring0"), RingPolicy("Ring0"))),
            "ring 'Ring0' is listed twice",
        ),
        (
            lambda: RemediationPolicy(max_starts_per_run=-1),
            "max_starts_per_run must not be negative",
        ),
        (lambda: RemediationPolicy(exclude_tag=" "), "exclude_tag must name a tag"),
        (
            lambda: RemediationPolicy(maximum_duration=timedelta(minutes=14)),
            "maximum_duration must be at least 0h15m and less than 3h55m (Azure's longest "
            "install), got 0:14:00",
        ),
        (
            lambda: RemediationPolicy(maximum_duration=timedelta(hours=3, minutes=55)),
            "maximum_duration must be at least 0h15m and less than 3h55m (Azure's longest "
            "install), got 3:55:00",
        ),
    ],
    ids=[
        "window 28 days after",
        "window before Patch Tuesday",
        "window start with a zone",
        "window in no zone",
        "window of no time",
        "window as long as Azure refuses",
        "ring without a name",
        "negative soak",
        "error budget over 1",
        "negative error budget",
        "negative max_concurrent",
        "negative max_per_run",
        "block expiring at a naive instant",
        "block of digits only",
        "ring listed twice",
        "negative blast radius",
        "blank exclude tag",
        "install under 15 minutes",
        "install as long as Azure refuses",
    ],
)
def test_a_policy_that_cannot_be_kept_is_refused_in_words_an_operator_can_act_on(
    build: Callable[[], object], message: str
) -> None:
    with refused_with(message):
        build()


_WINDOW = {"offset_days": 2, "start": time(22, 0), "time_zone": "UTC", "duration": _HOUR}


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        (Window, _WINDOW | {"offset_days": 0}),
        (Window, _WINDOW | {"offset_days": 27}),
        (Window, _WINDOW | {"duration": timedelta(microseconds=1)}),
        (Window, _WINDOW | {"duration": timedelta(hours=3, minutes=55, microseconds=-1)}),
        (RingPolicy, {"name": "ring0", "soak": timedelta(0)}),
        (RingPolicy, {"name": "ring0", "soak": timedelta(hours=12)}),
        (RingPolicy, {"name": "ring0", "error_budget": 0.0}),
        (RingPolicy, {"name": "ring0", "error_budget": 1.0}),
        (RingPolicy, {"name": "ring0", "max_concurrent": 0}),
        (RingPolicy, {"name": "ring0", "max_per_run": 0}),
        (BlockedKb, {"kb": "KB5062557", "reason": "bad", "expires": FEB_RELEASE}),
        (RemediationPolicy, {"rings": (RingPolicy("ring0"), RingPolicy("ring1"))}),
        (RemediationPolicy, {"max_starts_per_run": 0}),
        (RemediationPolicy, {"maximum_duration": timedelta(minutes=15)}),
        (RemediationPolicy, {"maximum_duration": timedelta(hours=3, minutes=54)}),
    ],
    ids=[
        "window on Patch Tuesday",
        "window 27 days after",
        "window of a microsecond",
        "window just under 3h55m",
        "no soak",
        "half a day's soak",
        "no failure allowed",
        "every failure allowed",
        "a paused ring",
        "a ring that starts nothing this run",
        "block expiring at an aware instant",
        "two rings",
        "a run that starts nothing",
        "installs of 15 minutes",
        "installs of 3h54m",
    ],
)
def test_the_boundary_values_of_a_policy_are_accepted_as_given(
    kind: Callable[..., object], fields: dict[str, object]
) -> None:
    built = kind(**fields)
    assert {name: getattr(built, name) for name in fields} == fields


@pytest.mark.parametrize(
    ("block", "description"),
    [
        (
            BlockedKb("KB5062557", "failover clusters restart in a loop"),
            "KB5062557 is blocked until removed: failover clusters restart in a loop",
        ),
        (
            BlockedKb(
                "KB5062557",
                "breaks IIS",
                datetime(2026, 12, 31, 1, 0, tzinfo=ZoneInfo("Europe/Paris")),
            ),
            "KB5062557 is blocked until 2026-12-31T00:00Z: breaks IIS",
        ),
    ],
    ids=["until removed", "until an instant, in UTC"],
)
def test_a_blocked_kb_says_until_when_and_why(block: BlockedKb, description: str) -> None:
    assert block.describe() == description


# -- caps and report mode -----------------------------------------------------------------------


def test_a_machine_a_cap_stops_is_the_one_named_in_the_skip() -> None:
    machines = [vm(f"a{i}") for i in range(3)]
    policy = replace(REMEDIATE, rings=(RingPolicy("ring0", max_per_run=2),))
    skip = skip_of(planned(*machines, policy=policy), machines[2])
    assert (skip.code, skip.message) == (
        SkipCode.CAP_REACHED,
        "ring ring0 started its max_per_run of 2 this run",
    )


def test_report_mode_repeats_the_skip_remediate_mode_would_give() -> None:
    machine = vm("current", State.COMPLIANT)
    skip = skip_of(planned(machine, policy=replace(REMEDIATE, mode=Mode.REPORT)), machine)
    assert (skip.code, skip.message, skip.would) == (
        SkipCode.MODE_REPORT,
        "mode report starts nothing; in remediate mode: compliant, compliant: nothing to do",
        "compliant",
    )
