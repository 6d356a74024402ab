"""The remediation planner: verdicts, policy, rollout state, calendar and `now` in; a plan out.

Pure: it starts nothing and reads no clock. Every machine given comes out exactly once, either
as an operation to start (with the reason for it) or as a skip (with a code and a sentence);
ring decisions and notices say where the rollout stands. The shell applies the operations.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from enum import StrEnum
from typing import Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from hotpatch.core.calendar import Calendar, ReleaseSlot, YearMonth, patch_tuesday, release_instant
from hotpatch.core.models import Action, OsFamily, Reason, State
from hotpatch.core.reasons import ReasonCode

#: Azure refuses an install whose maximumDuration is 3h55m or more (DOMAIN.md §5); a window is
#: shorter too, so that one install may use all of it.
MAXIMUM_DURATION_LIMIT = timedelta(hours=3, minutes=55)
#: An install is not started with less than this left in its window.
MINIMUM_INSTALL_TIME = timedelta(minutes=15)
#: What a hotpatch-month install selects (and a first ring's install in any month).
SECURITY_CLASSIFICATIONS = ("Critical", "Security")
NEVER = "Never"
IF_REQUIRED = "IfRequired"

ASSESS_PREFIX = "assess:"
INSTALL_HOTPATCH = "install_hotpatch"
INSTALL_BASELINE = "install_baseline"
INSTALL_RESTART = "install_restart"

#: Journal statuses (`hotpatch.ports.store.JournalStatus` values) by what they mean here.
IN_FLIGHT = frozenset({"started", "accepted"})
SUCCEEDED = "succeeded"
FAILED = "failed"
UNKNOWN = "unknown"

#: ASCII digits only: without re.ASCII, \d also takes other scripts' digits (KB٥٠٦٢٥٥٧), which
#: name no KB Azure reports, so a block written with them would block nothing.
_KB = re.compile(r"^(?:KB)?(\d{4,8})$", re.IGNORECASE | re.ASCII)


def operation_key(machine_id: str, release: str, action: str) -> str:
    """The key of an operation: equal to `hotpatch.ports.store.operation_key` (a test checks)."""
    return f"{machine_id.casefold()}|{release}|{action}"


def kb_form(text: str) -> str | None:
    """`KB5062557`, `kb5062557` or `5062557` -> `KB5062557`; None for anything else."""
    match = _KB.match(text.strip())
    return f"KB{match.group(1)}" if match else None


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(
            f"unknown time zone {name!r} (an IANA name such as Europe/London)"
        ) from error


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


def _hm(span: timedelta) -> str:
    minutes = int(span.total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"


def _require_aware(now: datetime) -> None:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")


# ---------------------------------------------------------------------------------------------
# The policy
# ---------------------------------------------------------------------------------------------


class Mode(StrEnum):
    """What a run may start: nothing, assessments only, or assessments and installs."""

    REPORT = "report"
    ASSESS = "assess"
    REMEDIATE = "remediate"


@dataclass(frozen=True, slots=True)
class Window:
    """A maintenance window relative to Patch Tuesday: `offset_days` after it, from `start`
    (wall-clock time in `time_zone`) for `duration`. One occurrence a month."""

    offset_days: int
    start: time
    time_zone: str
    duration: timedelta

    def __post_init__(self) -> None:
        if not 0 <= self.offset_days <= 27:
            raise ValueError(
                f"offset_days must be 0 to 27 days after Patch Tuesday, got {self.offset_days}"
            )
        if self.start.tzinfo is not None:
            raise ValueError("start is a wall-clock time in time_zone: give it without a zone")
        _zone(self.time_zone)
        if not timedelta(0) < self.duration < MAXIMUM_DURATION_LIMIT:
            raise ValueError(
                f"duration must be more than 0 and less than 3h55m (Azure's longest install), "
                f"got {self.duration}"
            )

    def occurrence(self, month: YearMonth) -> tuple[datetime, datetime]:
        """The window of `month`, in UTC: [opens, closes)."""
        day = patch_tuesday(month.year, month.month) + timedelta(days=self.offset_days)
        opens = datetime.combine(day, self.start, tzinfo=_zone(self.time_zone)).astimezone(UTC)
        return opens, opens + self.duration

    def containing(self, now: datetime) -> tuple[datetime, datetime] | None:
        """The occurrence open at `now`, if any."""
        _require_aware(now)
        month = YearMonth.of(now.astimezone(UTC))
        # A window 27 days after Patch Tuesday opens in the next month: look a month back.
        for shift in (-2, -1, 0):
            opens, closes = self.occurrence(month.shift(shift))
            if opens <= now < closes:
                return opens, closes
        return None

    def next_after(self, now: datetime) -> tuple[datetime, datetime]:
        """The first occurrence that opens after `now`."""
        _require_aware(now)
        month = YearMonth.of(now.astimezone(UTC)).shift(-2)
        while True:
            opens, closes = self.occurrence(month)
            if opens > now:
                return opens, closes
            month = month.shift(1)

    def describe(self) -> str:
        return (
            f"{self.offset_days} day(s) after Patch Tuesday, {self.start:%H:%M} {self.time_zone} "
            f"for {_hm(self.duration)}"
        )


@dataclass(frozen=True, slots=True)
class TaggedWindow:
    """Machines whose tag `tag` has the value `value` (both without regard to case) use
    `window` unless their ring names one."""

    tag: str
    value: str
    window: Window

    def matches(self, tags: Mapping[str, str]) -> bool:
        wanted_tag, wanted_value = self.tag.casefold(), self.value.casefold()
        return any(
            key.casefold() == wanted_tag and value.casefold() == wanted_value
            for key, value in tags.items()
        )


@dataclass(frozen=True, slots=True)
class RingPolicy:
    """One rollout ring: the machines whose ring tag has the value `name` (without regard to
    case). A ring after the first installs exactly the KBs proven in the ring before it."""

    name: str
    soak: timedelta = timedelta(days=3)
    #: The largest fraction of the ring's finished installs of a release that may fail.
    error_budget: float = 0.05
    #: Operations in flight at once in this ring, those started by this run included.
    max_concurrent: int = 50
    #: Operations this ring may start in one run.
    max_per_run: int = 100
    #: None: the first matching tagged window, else the policy's default window.
    window: Window | None = None

    def __post_init__(self) -> None:
        if not self.name.strip():
            raise ValueError("a ring needs a name (the value of its ring tag)")
        if self.soak < timedelta(0):
            raise ValueError(f"soak must not be negative, got {self.soak}")
        if not 0.0 <= self.error_budget <= 1.0:
            raise ValueError(f"error_budget must be 0 to 1, got {self.error_budget}")
        if self.max_concurrent < 0 or self.max_per_run < 0:
            raise ValueError("max_concurrent and max_per_run must not be negative")


@dataclass(frozen=True, slots=True)
class BlockedKb:
    """A KB that no install may request while the block is active."""

    kb: str
    reason: str
    #: None: until removed.
    expires: datetime | None = None

    def __post_init__(self) -> None:
        if kb_form(self.kb) != self.kb:
            raise ValueError(f"a blocked KB is written KB and 4 to 8 digits, got {self.kb!r}")
        if self.expires is not None and self.expires.tzinfo is None:
            raise ValueError("expires must be timezone-aware")

    def active(self, now: datetime) -> bool:
        return self.expires is None or now < self.expires

    def describe(self) -> str:
        until = f"until {_iso(self.expires)}" if self.expires else "until removed"
        return f"{self.kb} is blocked {until}: {self.reason}"


@dataclass(frozen=True, slots=True)
class RemediationPolicy:
    """What remediation may start, where, when and how much. The defaults start nothing."""

    mode: Mode = Mode.REPORT
    #: In rollout order; machines with no ring, or one not listed, get no install ("no_ring").
    rings: tuple[RingPolicy, ...] = ()
    blocked_kbs: tuple[BlockedKb, ...] = ()
    #: None: a machine without a ring or tagged window has no window, so no install starts.
    default_window: Window | None = None
    windows: tuple[TaggedWindow, ...] = ()
    #: The blast radius: operations of every kind started in one run.
    max_starts_per_run: int = 200
    #: A machine whose tag of this name is "true" (without regard to case) is left alone.
    exclude_tag: str = "hotpatch-exclude"
    #: An install's maximumDuration, clipped to the time left in its window.
    maximum_duration: timedelta = timedelta(hours=2)
    #: Assessments change nothing on a machine: they may start outside windows.
    assess_anytime: bool = True
    #: Install on machines still inside the grace period (state pending) too; by default the
    #: platform's own patching has until the grace period ends.
    install_pending: bool = False

    def __post_init__(self) -> None:
        seen: set[str] = set()
        for ring in self.rings:
            folded = ring.name.casefold()
            if folded in seen:
                raise ValueError(f"ring {ring.name!r} is listed twice")
            seen.add(folded)
        if self.max_starts_per_run < 0:
            raise ValueError("max_starts_per_run must not be negative")
        if not self.exclude_tag.strip():
            raise ValueError("exclude_tag must name a tag")
        if not MINIMUM_INSTALL_TIME <= self.maximum_duration < MAXIMUM_DURATION_LIMIT:
            raise ValueError(
                f"maximum_duration must be at least {_hm(MINIMUM_INSTALL_TIME)} and less than "
                f"3h55m (Azure's longest install), got {self.maximum_duration}"
            )


# ---------------------------------------------------------------------------------------------
# What the planner reads
# ---------------------------------------------------------------------------------------------


class PlanMachine(Protocol):
    """One machine's verdict as the planner reads it (`hotpatch.ports.store.VerdictRow` is one)."""

    @property
    def id(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def os(self) -> OsFamily | None: ...
    @property
    def ring(self) -> str | None: ...
    @property
    def tags(self) -> Mapping[str, str]: ...
    @property
    def state(self) -> State: ...
    @property
    def action(self) -> Action: ...
    @property
    def eligible(self) -> bool: ...
    @property
    def reasons(self) -> tuple[Reason, ...]: ...
    @property
    def release_month(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class PastOperation:
    """An operation from the journal, as the planner needs it."""

    key: str
    machine_id: str
    ring: str | None
    release: str
    action: str
    #: `JournalStatus` values: started, accepted, succeeded, failed, unknown.
    status: str
    started_at: datetime
    finished_at: datetime | None = None
    #: The KBs a succeeded install installed ("KB5075943" form; digits are accepted too).
    kbs: tuple[str, ...] = ()

    @property
    def install(self) -> bool:
        return self.action.startswith("install")


@dataclass(frozen=True, slots=True)
class RolloutState:
    """What the store remembers that the plan depends on."""

    operations: tuple[PastOperation, ...] = ()
    #: Blocks kept in the store, in addition to the policy's.
    blocked_kbs: tuple[BlockedKb, ...] = ()
    #: Machine id (casefolded) -> KBs known to be installed on it.
    installed_kbs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# What the planner decides
# ---------------------------------------------------------------------------------------------


class OperationKind(StrEnum):
    ASSESS = "assess"
    INSTALL = "install"


@dataclass(frozen=True, slots=True)
class InstallSpec:
    """The parameters of one install (`installPatches`' body, in core words).

    `kbNumbersToInclude` adds to the classifications selected (as the sandbox models Azure), so
    an install of a proven KB set selects no classification: it installs those KBs and nothing
    else. `kb_exclude` holds every active blocked KB, always.
    """

    reboot_setting: str
    classifications: tuple[str, ...]
    kb_include: tuple[str, ...]
    kb_exclude: tuple[str, ...]
    maximum_duration: timedelta
    max_patch_publish_date: datetime | None


@dataclass(frozen=True, slots=True)
class PlannedOperation:
    key: str
    machine_id: str
    ring: str | None
    #: The release in force for the machine's OS ("2026-05").
    release: str
    #: "assess:<YYYY-MM-DD>" | "install_hotpatch" | "install_baseline" | "install_restart"
    action: str
    kind: OperationKind
    install: InstallSpec | None
    #: Why, in one sentence.
    reason: str
    #: When the window it runs in closes (None: an assessment started outside any window).
    window_end: datetime | None


class SkipCode(StrEnum):
    """Why a machine gets no operation in this run."""

    # the run's mode
    MODE_REPORT = "mode_report"
    MODE_ASSESS_ONLY = "mode_assess_only"
    # the machine
    EXCLUDED = "excluded"
    DEALLOCATED = "deallocated"
    UNKNOWN = "unknown"
    NOT_ELIGIBLE = "not_eligible"
    MISCONFIGURED = "misconfigured"
    COMPLIANT = "compliant"
    PENDING = "pending"
    NOTHING_TO_DO = "nothing_to_do"
    # the rollout
    NO_RING = "no_ring"
    RING_WAITING = "ring_waiting"
    RING_SOAKING = "ring_soaking"
    RING_HALTED = "ring_halted"
    BLOCKED = "blocked"
    # the window
    NO_WINDOW = "no_window"
    OUTSIDE_WINDOW = "outside_window"
    WINDOW_CLOSING = "window_closing"
    # caps and the journal
    CAP_REACHED = "cap_reached"
    IN_FLIGHT = "in_flight"
    ALREADY_DONE = "already_done"
    FAILED_BEFORE = "failed_before"
    OUTCOME_UNKNOWN = "outcome_unknown"


@dataclass(frozen=True, slots=True)
class Skip:
    machine_id: str
    code: SkipCode
    message: str
    #: For mode_report and mode_assess_only: the skip code or the action the machine would
    #: have had in remediate mode.
    would: str | None = None


class RingStatus(StrEnum):
    """Where a ring stands in a release's rollout (`hotpatch.ports.store.RingStatus` values)."""

    WAITING = "waiting"
    INSTALLING = "installing"
    SOAKING = "soaking"
    PROMOTED = "promoted"
    HALTED = "halted"


@dataclass(frozen=True, slots=True)
class RingDecision:
    ring: str
    release: str
    status: RingStatus
    #: The KBs this ring proved for the release (the union of its succeeded installs').
    kbs: tuple[str, ...]
    #: Machines of this ring among those planned.
    machines: int
    failures: int
    soak_ends: datetime | None
    reason: str
    #: What this ring's installs include: () for the first ring (the release itself, published
    #: by its release instant), the previous ring's proven KBs for the others.
    kb_include: tuple[str, ...] = ()
    #: Installs of the release in this ring that finished, succeeded, are in flight (or of
    #: unknown outcome), and machines still waiting for theirs.
    finished: int = 0
    succeeded: int = 0
    in_flight: int = 0
    waiting: int = 0


@dataclass(frozen=True, slots=True)
class Plan:
    now: datetime
    mode: Mode
    operations: tuple[PlannedOperation, ...]
    skips: tuple[Skip, ...]
    rings: tuple[RingDecision, ...]
    notices: tuple[str, ...]
    #: The release in force at `now` ("2026-05").
    release: str = ""


# ---------------------------------------------------------------------------------------------
# The planner
# ---------------------------------------------------------------------------------------------


def plan(
    machines: Iterable[PlanMachine],
    policy: RemediationPolicy,
    state: RolloutState,
    calendar: Calendar,
    now: datetime,
) -> Plan:
    """Decide what this run starts. Every machine given appears once, in operations or skips
    (machines given twice, by id without regard to case, are planned once)."""
    _require_aware(now)
    return _Planner(policy, state, calendar, now).plan(machines)


def month_in_force(now: datetime) -> YearMonth:
    """The newest release month at `now` (before this month's release instant, last month)."""
    _require_aware(now)
    month = YearMonth.of(now.astimezone(UTC))
    if now < release_instant(month.year, month.month):
        month = month.shift(-1)
    return month


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A machine that needs an operation, before the gates (journal, ring, window, caps)."""

    machine: PlanMachine
    kind: OperationKind
    slot: ReleaseSlot
    action: str
    key: str
    why: str


@dataclass(frozen=True, slots=True)
class _RingGate:
    """A ring's decision and what it means for its machines."""

    decision: RingDecision
    #: None: its installs may start; else what its machines are skipped with.
    closed: SkipCode | None
    #: What its installs include (the KBs proven in the ring before; () for the first ring).
    kb_include: tuple[str, ...]
    #: Why a halted ring halted, as first said: a halt stops every ring after it.
    cause: str


_RANK = {"started": 0, "accepted": 0, UNKNOWN: 1, FAILED: 2, SUCCEEDED: 3}


class _Planner:
    def __init__(
        self, policy: RemediationPolicy, state: RolloutState, calendar: Calendar, now: datetime
    ) -> None:
        self.policy = policy
        self.calendar = calendar
        self.now = now
        self.release = str(month_in_force(now))
        self.today = now.astimezone(UTC).date().isoformat()
        self.blocks: dict[str, BlockedKb] = {}
        for block in (*policy.blocked_kbs, *state.blocked_kbs):
            if block.active(now):
                self.blocks.setdefault(block.kb, block)
        self.kb_exclude = tuple(sorted(self.blocks, key=_kb_order))
        self.installed_kbs = state.installed_kbs
        self.rings = {ring.name.casefold(): (i, ring) for i, ring in enumerate(policy.rings)}
        # The journal, indexed: the strongest record of each key (in flight, then unknown,
        # failed, succeeded), what is in flight per machine and per ring, and this release's
        # installs per ring.
        self.by_key: dict[str, PastOperation] = {}
        self.in_flight_by_machine: dict[str, PastOperation] = {}
        self.in_flight_by_ring: Counter[str] = Counter()
        self.installs_by_ring: dict[str, list[PastOperation]] = {}
        for op in state.operations:
            known = self.by_key.get(op.key)
            if known is None or _RANK.get(op.status, 1) < _RANK.get(known.status, 1):
                self.by_key[op.key] = op
            if op.status in IN_FLIGHT:
                self.in_flight_by_machine.setdefault(op.machine_id.casefold(), op)
                if op.ring is not None:
                    self.in_flight_by_ring[op.ring.casefold()] += 1
            if op.install and op.release == self.release and op.ring is not None:
                self.installs_by_ring.setdefault(op.ring.casefold(), []).append(op)
        self.notices: list[str] = []

    # -- the run ------------------------------------------------------------------------------

    def plan(self, machines: Iterable[PlanMachine]) -> Plan:
        unique = self._unique(machines)
        triaged = [(machine, self._triage(machine)) for machine in unique]
        gates = self._ring_gates(unique, triaged)
        triaged.sort(key=lambda pair: self._order(pair[0]))
        results: list[PlannedOperation | Skip] = []
        counts = _Counts()
        mode = self.policy.mode
        for machine, outcome in triaged:
            if isinstance(outcome, Skip):
                results.append(outcome)
            elif mode is Mode.ASSESS and outcome.kind is OperationKind.INSTALL:
                results.append(
                    Skip(
                        machine.id,
                        SkipCode.MODE_ASSESS_ONLY,
                        f"mode assess starts only assessments; in remediate mode it would get "
                        f"{outcome.action}: {outcome.why}",
                        would=outcome.action,
                    )
                )
            else:
                results.append(self._gate(outcome, gates, counts))
        if mode is Mode.REPORT:
            results = [_reported(item) for item in results]
        operations = [item for item in results if isinstance(item, PlannedOperation)]
        skips = [item for item in results if isinstance(item, Skip)]
        self._blocked_installed(unique)
        return Plan(
            now=self.now,
            mode=mode,
            operations=tuple(operations),
            skips=tuple(skips),
            rings=tuple(gate.decision for gate in gates.values()),
            notices=tuple(self.notices),
            release=self.release,
        )

    def _unique(self, machines: Iterable[PlanMachine]) -> list[PlanMachine]:
        seen: dict[str, PlanMachine] = {}
        repeats: Counter[str] = Counter()
        for machine in machines:
            folded = machine.id.casefold()
            if folded in seen:
                repeats[folded] += 1
            else:
                seen[folded] = machine
        for folded, extra in sorted(repeats.items()):
            self.notices.append(
                f"machine {seen[folded].id} was given {extra + 1} times (ids compare without "
                "regard to case): it is planned once, from the first"
            )
        return list(seen.values())

    def _ring_of(self, machine: PlanMachine) -> tuple[int, RingPolicy] | None:
        return self.rings.get(machine.ring.casefold()) if machine.ring is not None else None

    def _order(self, machine: PlanMachine) -> tuple[int, str]:
        found = self._ring_of(machine)
        return (found[0] if found else len(self.rings), machine.id.casefold())

    # -- what each machine needs --------------------------------------------------------------

    def _triage(self, machine: PlanMachine) -> _Candidate | Skip:
        """The machine's own facts: a skip, or the operation it needs (before any gate)."""
        if self._excluded(machine):
            return Skip(
                machine.id,
                SkipCode.EXCLUDED,
                f"tagged {self.policy.exclude_tag}=true: remediation leaves it alone",
            )
        state, action = machine.state, machine.action
        codes = {reason.code for reason in machine.reasons}
        if state is State.UNKNOWN:
            if codes & {ReasonCode.DEALLOCATED, ReasonCode.STOPPED}:
                # One of its reasons says so: it has a first reason.
                return Skip(
                    machine.id,
                    SkipCode.DEALLOCATED,
                    f"{machine.reasons[0].message}: planned again when it runs",
                )
            return Skip(
                machine.id,
                SkipCode.UNKNOWN,
                f"{_first(machine, 'its state is unknown')}: nothing starts on a machine whose "
                "state is not known",
            )
        if not machine.eligible or state is State.NOT_ELIGIBLE:
            return Skip(
                machine.id,
                SkipCode.NOT_ELIGIBLE,
                f"{_first(machine, 'not eligible for hotpatch')}: remediation does not touch it",
            )
        if state is State.MISCONFIGURED or action in {
            Action.FIX_CONFIGURATION,
            Action.INVESTIGATE,
        }:
            return Skip(
                machine.id,
                SkipCode.MISCONFIGURED,
                f"{_first(machine, 'misconfigured')}: a person must fix it before anything starts",
            )
        if machine.os is None:
            return Skip(
                machine.id,
                SkipCode.UNKNOWN,
                "its OS release is not known, so neither is the release it should take",
            )
        slot = self.calendar.in_force(machine.os, self.now)
        release = str(slot.month)
        if state is State.ASSESSMENT_DUE or action is Action.ASSESS:
            act = f"{ASSESS_PREFIX}{self.today}"
            return _Candidate(
                machine,
                OperationKind.ASSESS,
                slot,
                act,
                operation_key(machine.id, release, act),
                f"{_first(machine, 'its assessment is due')}: a fresh assessment comes before "
                "any install",
            )
        if state is State.COMPLIANT:
            return Skip(machine.id, SkipCode.COMPLIANT, "compliant: nothing to do")
        if state is State.PENDING and not self.policy.install_pending:
            return Skip(
                machine.id,
                SkipCode.PENDING,
                f"{_first(machine, 'inside the grace period')}: the platform's own patching "
                "has until the grace period ends",
            )
        if action not in {Action.INSTALL_HOTPATCH, Action.INSTALL_BASELINE}:
            return Skip(
                machine.id,
                SkipCode.NOTHING_TO_DO,
                f"{state.value} with nothing for remediation to start",
            )
        if state is State.REBOOT_PENDING:
            act = INSTALL_RESTART
            why = (
                f"{_first(machine, 'a restart is pending')}: a restart-permitting install "
                "(rebootSetting IfRequired) in its window"
            )
        elif slot.restart or action is Action.INSTALL_BASELINE:
            act = INSTALL_BASELINE
            what = "baseline" if slot.restart else "hotpatch-month"
            reboot = (
                "restarting if required (rebootSetting IfRequired)"
                if slot.restart
                else "without a restart in a hotpatch month (rebootSetting Never); the restart "
                "follows in a later window"
            )
            why = f"{_first(machine, 'behind')}: the {release} {what} update installs {reboot}"
        else:
            act = INSTALL_HOTPATCH
            why = (
                f"{_first(machine, 'behind')}: the {release} hotpatch installs without a restart "
                "(rebootSetting Never, critical and security updates only)"
            )
        return _Candidate(
            machine,
            OperationKind.INSTALL,
            slot,
            act,
            operation_key(machine.id, release, act),
            why,
        )

    def _excluded(self, machine: PlanMachine) -> bool:
        wanted = self.policy.exclude_tag.casefold()
        return any(
            key.casefold() == wanted and value.strip().casefold() == "true"
            for key, value in machine.tags.items()
        )

    # -- rings --------------------------------------------------------------------------------

    def _ring_gates(
        self,
        machines: list[PlanMachine],
        triaged: list[tuple[PlanMachine, _Candidate | Skip]],
    ) -> dict[str, _RingGate]:
        """Each ring's decision for the release in force, in order."""
        members: Counter[str] = Counter()
        waiting: Counter[str] = Counter()
        for machine in machines:
            if machine.ring is not None:
                members[machine.ring.casefold()] += 1
        for machine, outcome in triaged:
            # A machine whose release is blocked waits for the block, not for its ring: it
            # must not hold the ring's promotion back.
            if (
                isinstance(outcome, _Candidate)
                and outcome.kind is OperationKind.INSTALL
                and machine.ring is not None
                and outcome.key not in self.by_key
                and not (outcome.slot.kb and outcome.slot.kb in self.blocks)
            ):
                waiting[machine.ring.casefold()] += 1
        gates: dict[str, _RingGate] = {}
        previous: tuple[RingPolicy, _RingGate] | None = None
        for ring in self.policy.rings:
            folded = ring.name.casefold()
            gate = self._ring_gate(ring, previous, members[folded], waiting[folded])
            gates[folded] = gate
            previous = (ring, gate)
        return gates

    def _ring_gate(
        self,
        ring: RingPolicy,
        previous: tuple[RingPolicy, _RingGate] | None,
        members: int,
        waiting: int,
    ) -> _RingGate:
        installs = self.installs_by_ring.get(ring.name.casefold(), [])
        succeeded = [op for op in installs if op.status == SUCCEEDED]
        failed = [op for op in installs if op.status == FAILED]
        finished = len(succeeded) + len(failed)
        # An install whose outcome is unknown may have done anything: it holds the ring back
        # like one in flight.
        in_flight = sum(1 for op in installs if op.status in IN_FLIGHT or op.status == UNKNOWN)
        proven = _kb_set(kb for op in succeeded for kb in op.kbs)
        last = max((op.finished_at or op.started_at for op in (*succeeded, *failed)), default=None)
        soak_ends = last + ring.soak if last is not None and succeeded else None
        name, release = ring.name, self.release
        figures = (
            f"{finished} install(s) of {release} finished, {len(failed)} failed, "
            f"{in_flight} in flight, {waiting} machine(s) waiting"
        )

        def decide(
            status: RingStatus,
            reason: str,
            *,
            closed: SkipCode | None = None,
            kb_include: tuple[str, ...] = (),
            cause: str | None = None,
        ) -> _RingGate:
            decision = RingDecision(
                ring=name,
                release=release,
                status=status,
                kbs=proven,
                machines=members,
                failures=len(failed),
                soak_ends=soak_ends,
                reason=reason,
                kb_include=kb_include,
                finished=finished,
                succeeded=len(succeeded),
                in_flight=in_flight,
                waiting=waiting,
            )
            return _RingGate(decision, closed, kb_include, cause or reason)

        # The gate: the ring before must be promoted, and its proven set is what this one gets.
        kb_include: tuple[str, ...] = ()
        if previous is not None:
            before, gate = previous
            status = gate.decision.status
            if status is RingStatus.HALTED:
                return decide(
                    RingStatus.HALTED,
                    f"{name} starts nothing: {gate.cause}",
                    closed=SkipCode.RING_HALTED,
                    cause=gate.cause,
                )
            if status is not RingStatus.PROMOTED:
                return decide(
                    RingStatus.WAITING,
                    f"{name} waits for {before.name}: {gate.decision.reason}",
                    closed=SkipCode.RING_SOAKING
                    if status is RingStatus.SOAKING
                    else SkipCode.RING_WAITING,
                )
            kb_include = tuple(kb for kb in gate.decision.kbs if kb not in self.blocks)
            for kb in gate.decision.kbs:
                if kb in self.blocks:
                    self.notices.append(
                        f"{kb}, proven in {before.name}, is left out of {name}'s installs: "
                        f"{self.blocks[kb].describe()}"
                    )
            if not kb_include:
                return decide(
                    RingStatus.HALTED,
                    f"{name} starts nothing: every KB {before.name} proved for {release} is "
                    f"blocked ({', '.join(gate.decision.kbs)})",
                    closed=SkipCode.RING_HALTED,
                )
        # The ring's own rollout of the release.
        if finished and len(failed) / finished > ring.error_budget:
            return decide(
                RingStatus.HALTED,
                f"{name} is halted: {len(failed)} of {finished} finished install(s) of {release} "
                f"failed ({len(failed) / finished:.0%}), over its error budget of "
                f"{ring.error_budget:.0%}; {in_flight} in flight, {waiting} waiting",
                closed=SkipCode.RING_HALTED,
                kb_include=kb_include,
            )
        if in_flight or waiting:
            return decide(
                RingStatus.INSTALLING,
                f"{name} is installing {release}: {figures}",
                kb_include=kb_include,
            )
        if not finished:
            return decide(
                RingStatus.WAITING,
                f"{name} has no install of {release} to make or on record yet",
                kb_include=kb_include,
            )
        if not proven or soak_ends is None:
            return decide(
                RingStatus.HALTED,
                f"{name} proved no KB for {release} ({len(succeeded)} of {finished} finished "
                "install(s) succeeded, none with a KB installed): nothing to promote",
                kb_include=kb_include,
            )
        if self.now < soak_ends:
            return decide(
                RingStatus.SOAKING,
                f"{name} is soaking {', '.join(proven)} until {_iso(soak_ends)}: {figures}",
                kb_include=kb_include,
            )
        return decide(
            RingStatus.PROMOTED,
            f"{name} is promoted: {', '.join(proven)} proven by {len(succeeded)} install(s), "
            f"{len(failed)} failed (within its {ring.error_budget:.0%} error budget), soaked "
            f"until {_iso(soak_ends)}",
            kb_include=kb_include,
        )

    # -- the gates of one operation -----------------------------------------------------------

    def _gate(
        self, candidate: _Candidate, gates: dict[str, _RingGate], counts: _Counts
    ) -> PlannedOperation | Skip:
        machine = candidate.machine
        skip = self._journal(candidate)
        if skip is not None:
            return skip
        found = self._ring_of(machine)
        install = candidate.kind is OperationKind.INSTALL
        gate: _RingGate | None = None
        if install:
            if found is None:
                return Skip(machine.id, SkipCode.NO_RING, self._no_ring(machine))
            blocked = self.blocks.get(candidate.slot.kb) if candidate.slot.kb else None
            if blocked is not None:
                return Skip(
                    machine.id,
                    SkipCode.BLOCKED,
                    f"the {candidate.slot.month} release for {candidate.slot.os.value} is "
                    f"{blocked.kb}, and {blocked.describe()}",
                )
            gate = gates[found[1].name.casefold()]
            if gate.closed is not None:
                return Skip(machine.id, gate.closed, gate.decision.reason)
        window, source = self._window(machine, found[1] if found else None)
        window_end: datetime | None = None
        if install or not self.policy.assess_anytime:
            if window is None:
                return Skip(
                    machine.id,
                    SkipCode.NO_WINDOW,
                    "no maintenance window applies (no ring window, tagged window or "
                    "default_window): nothing that changes it starts",
                )
            current = window.containing(self.now)
            if current is None:
                opens, closes = window.next_after(self.now)
                return Skip(
                    machine.id,
                    SkipCode.OUTSIDE_WINDOW,
                    f"outside its maintenance window ({source}); it next opens "
                    f"{_iso(opens)} until {_iso(closes)}",
                )
            window_end = current[1]
        elif window is not None:
            current = window.containing(self.now)
            window_end = current[1] if current else None
        spec: InstallSpec | None = None
        if install:
            assert window_end is not None
            assert gate is not None
            left = _whole_minutes(window_end - self.now)
            if left < MINIMUM_INSTALL_TIME:
                opens = window.next_after(self.now)[0] if window else window_end
                return Skip(
                    machine.id,
                    SkipCode.WINDOW_CLOSING,
                    f"only {_hm(left)} left in its window (an install needs at least "
                    f"{_hm(MINIMUM_INSTALL_TIME)}); it next opens {_iso(opens)}",
                )
            spec = self._install_spec(candidate, gate, min(self.policy.maximum_duration, left))
        capped = counts.capped(found[1] if found else None, self)
        if capped is not None:
            return Skip(machine.id, SkipCode.CAP_REACHED, capped)
        counts.add(found[1] if found else None)
        ring_name = found[1].name if found else machine.ring
        reason = candidate.why
        if spec is not None and found is not None:
            reason += (
                f"; {found[1].name} installs exactly {', '.join(spec.kb_include)} (proven in the "
                "ring before)"
                if spec.kb_include
                else f"; {found[1].name} installs updates published by "
                f"{_iso(candidate.slot.release_utc)}"
            )
        return PlannedOperation(
            key=candidate.key,
            machine_id=machine.id,
            ring=ring_name,
            release=str(candidate.slot.month),
            action=candidate.action,
            kind=candidate.kind,
            install=spec,
            reason=reason,
            window_end=window_end,
        )

    def _journal(self, candidate: _Candidate) -> Skip | None:
        machine_id = candidate.machine.id
        running = self.in_flight_by_machine.get(machine_id.casefold())
        if running is not None:
            return Skip(
                machine_id,
                SkipCode.IN_FLIGHT,
                f"{running.action} for {running.release} is in flight ({running.status} since "
                f"{_iso(running.started_at)}): one operation at a time on a machine",
            )
        past = self.by_key.get(candidate.key)
        if past is None:
            return None
        if past.status == SUCCEEDED:
            return Skip(
                machine_id,
                SkipCode.ALREADY_DONE,
                f"{past.action} for {past.release} already succeeded (started "
                f"{_iso(past.started_at)})",
            )
        if past.status == FAILED:
            return Skip(
                machine_id,
                SkipCode.FAILED_BEFORE,
                f"{past.action} for {past.release} failed before (started "
                f"{_iso(past.started_at)}): a failed operation is never retried automatically",
            )
        return Skip(
            machine_id,
            SkipCode.OUTCOME_UNKNOWN,
            f"{past.action} for {past.release} was started {_iso(past.started_at)} and its "
            "outcome is unknown: resolve it before anything else starts on this machine",
        )

    def _no_ring(self, machine: PlanMachine) -> str:
        if not self.policy.rings:
            return "the policy defines no rings: no install starts"
        names = ", ".join(ring.name for ring in self.policy.rings)
        if machine.ring is None:
            return f"it has no ring tag: installs start only in the policy's rings ({names})"
        return f"its ring {machine.ring!r} is not one of the policy's rings ({names})"

    def _window(self, machine: PlanMachine, ring: RingPolicy | None) -> tuple[Window | None, str]:
        if ring is not None and ring.window is not None:
            return ring.window, f"ring {ring.name}: {ring.window.describe()}"
        for tagged in self.policy.windows:
            if tagged.matches(machine.tags):
                return tagged.window, f"tag {tagged.tag}={tagged.value}: {tagged.window.describe()}"
        window = self.policy.default_window
        return window, f"default: {window.describe()}" if window else "none"

    def _install_spec(
        self, candidate: _Candidate, gate: _RingGate, duration: timedelta
    ) -> InstallSpec:
        slot = candidate.slot
        restart = candidate.action == INSTALL_RESTART or slot.restart
        return InstallSpec(
            reboot_setting=IF_REQUIRED if restart else NEVER,
            # A proven set is installed alone: kbNumbersToInclude adds to the classifications.
            classifications=() if gate.kb_include else SECURITY_CLASSIFICATIONS,
            kb_include=gate.kb_include,
            kb_exclude=self.kb_exclude,
            maximum_duration=duration,
            max_patch_publish_date=slot.release_utc,
        )

    # -- notices ------------------------------------------------------------------------------

    def _blocked_installed(self, machines: list[PlanMachine]) -> None:
        if not self.blocks:
            return
        for machine in sorted(machines, key=lambda m: m.id.casefold()):
            installed = _kb_set(self.installed_kbs.get(machine.id.casefold(), ()))
            for kb in installed:
                block = self.blocks.get(kb)
                if block is not None:
                    self.notices.append(
                        f"{machine.name} ({machine.id}) has {kb} installed, which is blocked: "
                        f"{block.reason}"
                    )


class _Counts:
    """Operations started by this run, per ring and in all; and the caps they meet."""

    def __init__(self) -> None:
        self.total = 0
        self.per_ring: Counter[str] = Counter()

    def capped(self, ring: RingPolicy | None, planner: _Planner) -> str | None:
        if ring is not None:
            folded = ring.name.casefold()
            started = self.per_ring[folded]
            in_flight = planner.in_flight_by_ring[folded] + started
            if in_flight >= ring.max_concurrent:
                return (
                    f"ring {ring.name} has {in_flight} operation(s) in flight, its "
                    f"max_concurrent of {ring.max_concurrent}"
                )
            if started >= ring.max_per_run:
                return f"ring {ring.name} started its max_per_run of {ring.max_per_run} this run"
        if self.total >= planner.policy.max_starts_per_run:
            return (
                f"this run started its max_starts_per_run of "
                f"{planner.policy.max_starts_per_run} (the blast radius of one run)"
            )
        return None

    def add(self, ring: RingPolicy | None) -> None:
        self.total += 1
        if ring is not None:
            self.per_ring[ring.name.casefold()] += 1


def _reported(item: PlannedOperation | Skip) -> Skip:
    """What mode report shows for a machine: nothing starts; what remediate mode would do."""
    if isinstance(item, Skip):
        return Skip(
            item.machine_id,
            SkipCode.MODE_REPORT,
            f"mode report starts nothing; in remediate mode: {item.code.value}, {item.message}",
            would=item.code.value,
        )
    return Skip(
        item.machine_id,
        SkipCode.MODE_REPORT,
        f"mode report starts nothing; in remediate mode it would get {item.action}: {item.reason}",
        would=item.action,
    )


def _first(machine: PlanMachine, default: str) -> str:
    return machine.reasons[0].message if machine.reasons else default


def _kb_order(kb: str) -> tuple[int, str]:
    digits = kb.removeprefix("KB")
    return (int(digits) if digits.isdigit() else -1, kb)


def _kb_set(kbs: Iterable[str]) -> tuple[str, ...]:
    """Distinct KBs in `KB…` form, in numeric order; text that is no KB is left out."""
    found = {normal for kb in kbs if (normal := kb_form(kb)) is not None}
    return tuple(sorted(found, key=_kb_order))


def _whole_minutes(span: timedelta) -> timedelta:
    return timedelta(minutes=max(0, int(span.total_seconds() // 60)))
