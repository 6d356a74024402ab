"""What the sandbox's machines are offered and what an install does to them (pure decisions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hotpatch.core.calendar import Calendar, release_instant
from hotpatch.core.models import parse_build
from hotpatch.data import shipped_release_catalog
from hotpatch.sandbox.patch_decisions import (
    InstallationState,
    InstallRequest,
    InvalidParameterError,
    MachineState,
    RebootBehavior,
    RebootChoice,
    RebootOutcome,
    assess,
    available_patches,
    decide_install,
)

CALENDAR = Calendar(shipped_release_catalog())
FEBRUARY = datetime(2026, 2, 20, 12, 0, tzinfo=UTC)  # hotpatch month: 20348.4711, 26100.32313
JANUARY = datetime(2026, 1, 20, 12, 0, tzinfo=UTC)  # baseline month: 20348.4648, 26100.32230
#: Patch Tuesday of February 2026, when the month's updates are published.
FEBRUARY_RELEASE = release_instant(2026, 2)


def machine(version: str | None, hotpatch: bool = True, pending: str | None = None) -> MachineState:
    return MachineState(os_version=version, hotpatch_enabled=hotpatch, pending_build=pending)


def install(
    reboot: RebootChoice = RebootChoice.IF_REQUIRED,
    classifications: frozenset[str] = frozenset({"Critical", "Security"}),
    **changes: object,
) -> InstallRequest:
    return InstallRequest(
        reboot_setting=reboot,
        maximum_duration=timedelta(hours=2),
        classifications=classifications,
        **changes,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("case", "state", "now", "kb", "behavior"),
    [
        ("on the baseline, hotpatch on", machine("10.0.20348.4648"), FEBRUARY, "5075943",
         RebootBehavior.NEVER_REBOOTS),
        ("WS2025 on the baseline", machine("10.0.26100.32230"), FEBRUARY, "5075942",
         RebootBehavior.NEVER_REBOOTS),
        ("hotpatch off", machine("10.0.20348.4648", hotpatch=False), FEBRUARY, "5075943",
         RebootBehavior.ALWAYS_REQUIRES_REBOOT),
        ("behind the baseline", machine("10.0.20348.4467"), FEBRUARY, "5075943",
         RebootBehavior.ALWAYS_REQUIRES_REBOOT),
        ("baseline month", machine("10.0.20348.4467"), JANUARY, "5073457",
         RebootBehavior.ALWAYS_REQUIRES_REBOOT),
        ("past the catalog: newest published", machine("10.0.20348.4648"),
         datetime(2027, 3, 1, tzinfo=UTC), "5087424", RebootBehavior.ALWAYS_REQUIRES_REBOOT),
    ],
)  # fmt: skip
def test_an_assessment_offers_the_release_in_force(
    case: str, state: MachineState, now: datetime, kb: str, behavior: RebootBehavior
) -> None:
    (patch,) = available_patches(state, CALENDAR, now)
    assert (patch.kb_id, patch.reboot_behavior) == (kb, behavior), case


@pytest.mark.parametrize(
    ("case", "state"),
    [
        ("already on the month's build", machine("10.0.20348.4711")),
        ("newer than the catalog", machine("10.0.20348.9999")),
        ("not a hotpatch OS", machine("10.0.17763.6893")),
        ("no build reported", machine(None)),
        ("not a build at all", machine("Windows")),
        ("Linux", MachineState(os_version="5.15", os_type="Linux")),
        ("installed, waiting for a restart", machine("10.0.20348.4648", pending="20348.4711")),
    ],
)
def test_an_assessment_offers_nothing_when_nothing_applies(case: str, state: MachineState) -> None:
    assert available_patches(state, CALENDAR, FEBRUARY) == (), case


def test_a_hotpatch_moves_the_build_without_a_restart() -> None:
    outcome = decide_install(machine("10.0.20348.4648"), install(), CALENDAR, FEBRUARY)
    assert outcome.new_os_version == "10.0.20348.4711"
    assert outcome.reboot_status is RebootOutcome.NOT_NEEDED
    assert outcome.count(InstallationState.INSTALLED) == 1


def test_a_restart_update_with_reboot_never_leaves_the_build_and_a_pending_reboot() -> None:
    outcome = decide_install(
        machine("10.0.20348.4467"), install(RebootChoice.NEVER), CALENDAR, JANUARY
    )
    assert outcome.new_os_version is None
    assert outcome.reboot_status is RebootOutcome.REQUIRED
    assert outcome.machine.pending_build == "20348.4648"
    assert assess(outcome.machine, CALENDAR, JANUARY).reboot_pending


def test_a_later_install_that_may_restart_completes_the_pending_one() -> None:
    pending = machine("10.0.20348.4467", pending="20348.4648")
    outcome = decide_install(pending, install(), CALENDAR, JANUARY)
    assert outcome.new_os_version == "10.0.20348.4648"
    assert outcome.reboot_status is RebootOutcome.COMPLETED
    assert not outcome.machine.reboot_pending


def test_a_restart_update_with_reboot_if_required_restarts_onto_the_new_build() -> None:
    outcome = decide_install(machine("10.0.20348.4467"), install(), CALENDAR, JANUARY)
    assert outcome.new_os_version == "10.0.20348.4648"
    assert outcome.reboot_status is RebootOutcome.COMPLETED


def test_reboot_always_restarts_even_with_nothing_to_install() -> None:
    outcome = decide_install(
        machine("10.0.20348.4711"), install(RebootChoice.ALWAYS), CALENDAR, FEBRUARY
    )
    assert (outcome.reboot_status, outcome.new_os_version) == (RebootOutcome.COMPLETED, None)


@pytest.mark.parametrize(
    ("case", "parameters", "state"),
    [
        ("KB excluded", install(kb_exclude=frozenset({"5075943"})), InstallationState.EXCLUDED),
        ("restart KBs excluded", install(exclude_requiring_reboot=True),
         InstallationState.EXCLUDED),
        ("classification not asked for", install(classifications=frozenset({"Definition"})),
         InstallationState.NOT_SELECTED),
        ("KB asked for by number", install(classifications=frozenset(),
                                           kb_include=frozenset({"5075943"})),
         InstallationState.INSTALLED),
        ("published after the cut-off",
         install(max_publish_date=datetime(2026, 2, 1, tzinfo=UTC)),
         InstallationState.NOT_SELECTED),
        ("published on the cut-off", install(max_publish_date=FEBRUARY_RELEASE),
         InstallationState.INSTALLED),
        ("excluded and asked for by number: exclusion wins",
         install(kb_include=frozenset({"5075943"}), kb_exclude=frozenset({"5075943"})),
         InstallationState.EXCLUDED),
        ("asked for by number, published after the cut-off",
         install(classifications=frozenset(), kb_include=frozenset({"5075943"}),
                 max_publish_date=datetime(2026, 2, 1, tzinfo=UTC)),
         InstallationState.NOT_SELECTED),
        ("another KB asked for by number, no classification",
         install(classifications=frozenset(), kb_include=frozenset({"5062557"})),
         InstallationState.NOT_SELECTED),
        ("another KB asked for by number, with its classification",
         install(kb_include=frozenset({"5062557"})), InstallationState.INSTALLED),
        ("another KB excluded", install(kb_exclude=frozenset({"5062557"})),
         InstallationState.INSTALLED),
        ("nothing asked for", install(classifications=frozenset()),
         InstallationState.NOT_SELECTED),
    ],
)  # fmt: skip
def test_the_install_filters_decide_what_is_installed(
    case: str, parameters: InstallRequest, state: InstallationState
) -> None:
    # Behind the baseline with hotpatch off, so the update needs a restart.
    current = machine("10.0.20348.4648", hotpatch=False)
    outcome = decide_install(current, parameters, CALENDAR, FEBRUARY)
    assert [s for _, s in outcome.patches] == [state], case
    moved = state is InstallationState.INSTALLED
    assert (outcome.new_os_version is not None) == moved, case


@pytest.mark.parametrize(
    ("case", "body", "field"),
    [
        ("no reboot setting", {}, "rebootSetting"),
        ("unknown reboot setting", {"rebootSetting": "Sometimes"}, "rebootSetting"),
        ("duration not ISO 8601", {"rebootSetting": "Never", "maximumDuration": "2h"},
         "maximumDuration"),
        ("not a KB", {"rebootSetting": "Never",
                      "windowsParameters": {"kbNumbersToExclude": ["latest"]}},
         "kbNumbersToExclude"),
        ("unknown classification", {"rebootSetting": "Never",
                                    "windowsParameters": {"classificationsToInclude": ["Hot"]}},
         "classificationsToInclude"),
    ],
)  # fmt: skip
def test_an_install_body_the_api_would_refuse_names_the_field(
    case: str, body: dict[str, object], field: str
) -> None:
    with pytest.raises(InvalidParameterError, match=field):
        InstallRequest.from_body(body)


def test_an_install_body_is_read_with_kb_numbers_in_either_spelling() -> None:
    parameters = InstallRequest.from_body(
        {
            "rebootSetting": "IfRequired",
            "maximumDuration": "PT3H30M",
            "windowsParameters": {"kbNumbersToInclude": ["KB5075943", "5078737"]},
        }
    )
    assert parameters.kb_include == {"5075943", "5078737"}
    assert parameters.maximum_duration == timedelta(hours=3, minutes=30)


REVISIONS = st.sampled_from([2227, 3453, 4294, 4467, 4648, 4711, 4830, 5020, 5074])
MOMENTS = st.datetimes(
    min_value=datetime(2024, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC)
)


@given(
    revision=REVISIONS,
    pending=st.none() | REVISIONS,
    hotpatch=st.booleans(),
    reboot=st.sampled_from(list(RebootChoice)),
    now=MOMENTS,
)
def test_an_install_never_moves_a_build_backwards_and_never_restarts_when_told_not_to(
    revision: int, pending: int | None, hotpatch: bool, reboot: RebootChoice, now: datetime
) -> None:
    before = machine(
        f"10.0.20348.{revision}",
        hotpatch=hotpatch,
        pending=f"20348.{pending}" if pending is not None and pending > revision else None,
    )
    outcome = decide_install(before, install(reboot), CALENDAR, now)
    after = parse_build(outcome.machine.os_version or "")
    assert after is not None
    assert after[2] >= revision
    if reboot is RebootChoice.NEVER:
        assert outcome.reboot_status is not RebootOutcome.COMPLETED
        moved_by = [p for p, s in outcome.patches if s is InstallationState.INSTALLED]
        assert outcome.new_os_version is None or not any(p.requires_reboot for p in moved_by)


KBS = st.sampled_from(["5075943", "5075942", "5073457", "5062557"])


@given(
    revision=REVISIONS,
    hotpatch=st.booleans(),
    excluded=st.frozensets(KBS, min_size=1),
    included=st.frozensets(KBS),
    classifications=st.frozensets(st.sampled_from(["Critical", "Security", "Definition"])),
    now=MOMENTS,
)
def test_a_kb_named_for_exclusion_is_never_installed_whatever_else_the_install_asks(
    revision: int,
    hotpatch: bool,
    excluded: frozenset[str],
    included: frozenset[str],
    classifications: frozenset[str],
    now: datetime,
) -> None:
    parameters = install(classifications=classifications, kb_include=included, kb_exclude=excluded)
    outcome = decide_install(machine(f"10.0.20348.{revision}", hotpatch), parameters, CALENDAR, now)
    installed = {p.kb_id for p, s in outcome.patches if s is InstallationState.INSTALLED}
    assert not installed & excluded
    assert outcome.new_os_version is None or not {p.kb_id for p, _ in outcome.patches} <= excluded
