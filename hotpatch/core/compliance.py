"""Compliance: one state per machine, with every applicable reason and the next action."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone, tzinfo
from functools import lru_cache
from operator import itemgetter
from typing import Any

from pydantic_core import TzInfo

from hotpatch.core.calendar import Calendar, ReleaseSlot, Staleness, YearMonth, grace_deadline
from hotpatch.core.eligibility import eligibility
from hotpatch.core.images import ImageCatalog
from hotpatch.core.inventory import ParsedInventory
from hotpatch.core.models import (
    STATE_PRECEDENCE,
    Action,
    AssessmentSummary,
    BuildPosition,
    Channel,
    Decision,
    Eligibility,
    InstallationSummary,
    Machine,
    MachineKind,
    MalformedMachine,
    OsFamily,
    Profile,
    Reason,
    State,
    Verdict,
    machine_profile,
    parse_build,
    signal_facts,
)
from hotpatch.core.policy import Policy
from hotpatch.core.reasons import RULES, ReasonCode, ReasonRule

_RANK = {state: rank for rank, state in enumerate(STATE_PRECEDENCE)}
#: Each reason code's rule by its text: looked up once per reason a decision gives, without
#: making a `ReasonCode` of it first (an enum call).
_RULE_OF: dict[str, ReasonRule] = {code.value: rule for code, rule in RULES.items()}
_NOT_RUNNING = {
    "powerstate/deallocated": (ReasonCode.DEALLOCATED, "deallocated"),
    "powerstate/deallocating": (ReasonCode.DEALLOCATED, "deallocating"),
    "powerstate/stopped": (ReasonCode.STOPPED, "stopped (allocated, not running)"),
    "powerstate/stopping": (ReasonCode.STOPPED, "stopping"),
}
PLATFORM_ASSESSMENT = "automaticbyplatform"
#: Looked up once: an enum member read through its class costs a metaclass call each time.
_VM = MachineKind.VM
#: Makes a `Verdict` from all its fields in order: its NamedTuple constructor is a Python
#: function (a frame per machine) that only calls this.
_new_verdict = tuple.__new__
#: Time zone types whose every instance has one fixed offset (pydantic parses offsets to its
#: `TzInfo`): subclasses are left out, as they could vary it.
_FIXED_OFFSET_ZONES = (timezone, TzInfo)


#: One rule's conclusion: why, and what to do about it (the state comes from the reason code).
Finding = tuple[Reason, Action]
#: The decision of one combination of facts, twice: for a machine without restart-capable
#: updates available, then with some (they change only its restart forecast). Indexed by
#: `restart_capable > 0`, so that count stays out of the key and a fleet shares fewer decisions.
Decisions = tuple[Decision, Decision]


@dataclass(frozen=True, slots=True)
class OsContext:
    """What `now` means for one OS: computed once per evaluation, shared by every machine."""

    in_force: ReleaseSlot
    #: The newest release whose grace period is over: machines below it are non-compliant.
    required: ReleaseSlot
    #: The baseline under `required`: a build below it is off the cycle.
    required_baseline: ReleaseSlot
    grace_ends: datetime
    #: Whether the release in force needs a restart (looked up per machine: kept as a plain bool).
    restart_month: bool
    #: The next release that restarts a machine on the track, and the next Patch Tuesday.
    next_restart: ReleaseSlot
    next_release: ReleaseSlot
    #: Set once Microsoft's hotpatch program for the OS has ended: its last month.
    program_ended: YearMonth | None


class Evaluator:
    """Judges machines at one instant. Build it once per run; `evaluate` is the hot path."""

    def __init__(
        self, images: ImageCatalog, calendar: Calendar, policy: Policy, now: datetime
    ) -> None:
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware (UTC)")
        self.images = images
        self.calendar = calendar
        self.policy = policy
        self.now = now
        self.contexts = {os: self._context(os) for os in OsFamily}
        #: Set when releases have shipped past the catalog's horizon: every output says so.
        self.staleness: Staleness | None = calendar.staleness(now)
        self._ring_tag = policy.ring_tag
        #: An assessment older than this is stale.
        self._stale_before = now - policy.assessment_max_age
        #: The zone of the latest assessment time judged, and `_stale_before` in that zone.
        self._stale_zone: tzinfo | None = self._stale_before.tzinfo
        self._stale_limit = self._stale_before
        # Decisions, and the two costly steps inside one, each made once per distinct input.
        # Decisions by profile, then by the patch facts. Hashing a profile (a long tuple) on
        # every machine was the largest cost of evaluating: interned profiles are found by
        # identity instead, each kept alive by its entry so that its id is never reused.
        self._by_profile: dict[Profile, dict[tuple[object, ...], Decisions]] = {}
        self._by_identity: dict[int, tuple[Profile, dict[tuple[object, ...], Decisions]]] = {}
        #: The table a profile's decisions are in, by what a decision reads of a machine beyond
        #: its patch facts: profiles that differ only in facts eligibility alone reads (image,
        #: patch mode, ...) and are judged alike share one (100,000 generated machines: 5,334
        #: profiles, 1,883 tables; 12,059 decisions made before, 4,806 now).
        self._tables: dict[tuple[object, ...], dict[tuple[object, ...], Decisions]] = {}
        self._eligibilities: dict[tuple[object, ...], Eligibility] = {}
        self._builds: dict[tuple[OsFamily, str], tuple[BuildPosition | None, tuple[Finding, ...]]]
        self._builds = {}
        self._signals: dict[tuple[object, ...], tuple[Reason, ...]] = {}
        self._forecast_cache: dict[
            tuple[object, ...], tuple[tuple[datetime, str], tuple[datetime, str]]
        ] = {}

    def _context(self, os: OsFamily) -> OsContext:
        in_force = self.calendar.in_force(os, self.now)
        required = in_force
        while self.now < self._deadline(required):
            required = self.calendar.slot(os, required.month.shift(-1))
        return OsContext(
            in_force=in_force,
            required=required,
            required_baseline=self.calendar.baseline_at_or_before(required),
            grace_ends=self._deadline(in_force),
            restart_month=in_force.restart,
            next_restart=self.calendar.restart_forecast(os, self.now, 1)[0],
            next_release=self.calendar.slot(os, in_force.month.shift(1)),
            program_ended=self.calendar.program_ended(os, self.now),
        )

    def _deadline(self, slot: ReleaseSlot) -> datetime:
        return grace_deadline(slot, self.policy.hotpatch_grace, self.policy.baseline_grace)

    def evaluate(
        self,
        machine: Machine | MalformedMachine,
        assessment: AssessmentSummary | None = None,
        installation: InstallationSummary | None = None,
    ) -> Verdict:
        if isinstance(machine, MalformedMachine):
            reason = Reason(ReasonCode.MALFORMED_RECORD, machine.error)
            return Verdict(
                machine, Decision(State.UNKNOWN, Action.INVESTIGATE, (reason,), False, None)
            )
        profile = machine_profile(machine)
        decisions = self._by_profile.get(profile)
        if decisions is None:
            decisions = self._by_profile[profile] = self._table(machine, profile)
        return self._judge(machine, machine.__dict__, profile, decisions, assessment, installation)

    def evaluate_all(self, inventory: ParsedInventory) -> list[Verdict]:
        """Every machine of a parsed inventory, joined with its patch summaries."""
        machines, profiles, assessments, installations = (
            inventory.machines,
            inventory.profiles,
            inventory.assessments,
            inventory.installations,
        )
        # Each distinct profile's decisions, found once; a machine then finds its own by its
        # (interned) profile's id, which no other profile has while the inventory holds them all.
        decisions_of: dict[int, dict[tuple[object, ...], Decisions]] = {}
        judge, evaluate = self._judge, self.evaluate
        verdicts: list[Verdict] = []
        for machine, profile in zip(machines, profiles, strict=True):
            if profile is None or isinstance(machine, MalformedMachine):
                verdicts.append(evaluate(machine))
                continue
            decisions = decisions_of.get(id(profile))
            if decisions is None:
                decisions = decisions_of[id(profile)] = self._decisions_of(machine, profile)
            # Read from `__dict__`, which `_judge` reads too: pydantic attribute access is slow.
            fields = machine.__dict__
            key = fields["id"]
            verdicts.append(
                judge(
                    machine,
                    fields,
                    profile,
                    decisions,
                    assessments.get(key),
                    installations.get(key),
                )
            )
        return verdicts

    def _decisions_of(
        self, machine: Machine, profile: Profile
    ) -> dict[tuple[object, ...], Decisions]:
        """The decisions of machines with this (interned) profile, found by identity."""
        entry = self._by_identity.get(id(profile))
        if entry is not None and entry[0] is profile:
            return entry[1]
        decisions = self._by_profile.get(profile)
        if decisions is None:
            decisions = self._by_profile[profile] = self._table(machine, profile)
        self._by_identity[id(profile)] = (profile, decisions)
        return decisions

    def _table(self, machine: Machine, profile: Profile) -> dict[tuple[object, ...], Decisions]:
        """The decisions of a new profile: shared with every profile of equal eligibility and
        equal facts that `_decide` reads of the machine itself (power state, kind, Arc status,
        build), which are all it reads besides the patch facts."""
        fields = machine.__dict__
        key = (
            self._eligibility(machine, profile),
            fields["power_state"],
            fields["kind"],
            fields["arc_status"],
            fields["os_version"],
        )
        return self._tables.setdefault(key, {})

    def _judge(  # noqa: PLR0917 (called once per machine: keywords would cost more)
        self,
        machine: Machine,
        fields: dict[str, Any],
        profile: Profile,
        decisions: dict[tuple[object, ...], Decisions],
        assessment: AssessmentSummary | None,
        installation: InstallationSummary | None,
    ) -> Verdict:
        """The hot path: one key of every fact a rule reads, and one decision per key."""
        restart_required = False
        if installation is not None:
            status = installation.reboot_status
            # Most installations need no restart: told without a call per machine.
            if status is not None and status != "NotNeeded":
                restart_required = _install_needs_restart(assessment, installation)
        other = 0
        if assessment is None:
            facts: tuple[object, ...] = (restart_required,)
        else:
            # One C call for the fields: pydantic attribute access takes CPython's slow path.
            last, status, critical, security, reboot, other = _assessment_facts(assessment.__dict__)
            stale = False
            if last is not None:
                # Compared with the limit in the time's own zone: times in two zones compare by
                # asking each zone for its offset, by name (a fifth of this loop's cost).
                zone = last.tzinfo
                if zone is not self._stale_zone:
                    self._stale_zone, self._stale_limit = zone, self._stale_before_in(zone)
                stale = last < self._stale_limit
            facts = (
                restart_required,
                last is None,
                stale,
                status,
                critical,
                security,
                reboot,
            )
        decided = decisions.get(facts)
        if decided is None:
            # A verdict depends on these facts alone (and on whether restart-capable updates
            # are available), and a fleet shares few combinations of them: decide each once.
            decided = decisions[facts] = self._decide(
                machine, self._eligibility(machine, profile), assessment, restart_required
            )
        decision = decided[other > 0]
        tags = fields["tags"]
        ring = tags.get(self._ring_tag) if tags else None
        if not decision.eligible or fields["kind"] is not _VM:
            return _new_verdict(Verdict, (machine, decision, assessment, ring, ()))
        # Signals only explain: keyed on the few facts they read, made once per combination.
        key = (signal_facts(fields), other)
        signals = self._signals.get(key)
        if signals is None:
            signals = self._signals[key] = _machine_signals(machine, assessment)
        return _new_verdict(Verdict, (machine, decision, assessment, ring, signals))

    def _stale_before_in(self, zone: tzinfo | None) -> datetime:
        """`_stale_before` in `zone` if that zone has one fixed offset (two times in one zone
        then compare by their fields alone, as Python compares them), else as it is."""
        if type(zone) in _FIXED_OFFSET_ZONES:
            return self._stale_before.astimezone(zone)
        return self._stale_before

    def _eligibility(self, machine: Machine, profile: Profile) -> Eligibility:
        found = self._eligibilities.get(profile)
        if found is None:
            found = self._eligibilities[profile] = eligibility(machine, self.images, self.policy)
        return found

    def _decide(
        self,
        machine: Machine,
        verdict_of_eligibility: Eligibility,
        assessment: AssessmentSummary | None,
        restart_required: bool,
    ) -> Decisions:
        """The decision without restart-capable updates available, then with some: the facts
        decide both, and only the restart forecast can differ (the assessment's count of those
        updates is not read here)."""
        judged = _Judgement()
        os = verdict_of_eligibility.os
        eligible = verdict_of_eligibility.eligible
        self._availability(machine, judged)
        for reason in verdict_of_eligibility.undecided:
            judged.add(reason, Action.INVESTIGATE)
        for reason in verdict_of_eligibility.blocking:
            judged.add(reason, Action.NONE)
        context = self.contexts[os] if os is not None else None
        if eligible and context is not None and context.program_ended is not None:
            eligible = False
            judged.add(
                Reason(
                    ReasonCode.HOTPATCH_PROGRAM_ENDED,
                    f"Microsoft's hotpatch program for {os} ended with the "
                    f"{context.program_ended} release: the machine takes regular monthly updates "
                    "(each needs a restart); plan its move to a release still in the program",
                ),
                Action.NONE,
            )
        for reason in verdict_of_eligibility.configuration:
            judged.add(reason, Action.FIX_CONFIGURATION)
        position: BuildPosition | None = None
        forecast: tuple[datetime | None, str | None] = (None, None)
        capable_forecast = forecast
        if eligible and context is not None:
            self._assessment(assessment, judged)
            position = self._build(machine, context.in_force.os, context, judged)
            self._missing_updates(assessment, context, position, judged)
            reboot_pending = (assessment is not None and assessment.reboot_pending) or (
                restart_required
            )
            if reboot_pending:
                judged.add(
                    Reason(
                        ReasonCode.REBOOT_PENDING,
                        "installed updates wait for a restart; restart it inside its "
                        "maintenance window",
                    ),
                    Action.INSTALL_BASELINE,
                )
            forecast, capable_forecast = self._forecasts(context, position, reboot_pending)
        decision = Decision(
            state=judged.state,
            action=judged.action,
            reasons=tuple(judged.reasons),
            eligible=eligible,
            os=os,
            release_month=position.release_month if position else None,
            releases_behind=position.releases_behind if position else None,
            expected_build=_full_build(context.in_force.build) if context else None,
            grace_ends=context.grace_ends if context else None,
            signals=verdict_of_eligibility.signals,
            next_restart=forecast[0],
            restart_cause=forecast[1],
        )
        if capable_forecast == forecast:
            return decision, decision
        next_restart, restart_cause = capable_forecast
        return decision, replace(decision, next_restart=next_restart, restart_cause=restart_cause)

    def _forecasts(
        self, context: OsContext, position: BuildPosition | None, reboot_pending: bool
    ) -> tuple[tuple[datetime, str], tuple[datetime, str]]:
        """The restart forecast without restart-capable updates available, then with some:
        made once per combination of what it reads (few per evaluation)."""
        key = (
            context.in_force.os,
            position.channel if position is not None else None,
            position.on_current_baseline if position is not None else None,
            reboot_pending,
        )
        found = self._forecast_cache.get(key)
        if found is None:
            found = self._forecast_cache[key] = (
                self._restart_forecast(context, position, reboot_pending, False),
                self._restart_forecast(context, position, reboot_pending, True),
            )
        return found

    def _restart_forecast(
        self,
        context: OsContext,
        position: BuildPosition | None,
        reboot_pending: bool,
        restart_capable_updates: bool,
    ) -> tuple[datetime, str]:
        """When the machine next restarts, and why: the calendar's month kind, then its own
        state (a pending reboot, an off-track build, updates that restart in any month)."""
        if reboot_pending:
            return self.now, "a restart is pending now: installed updates wait for it"
        if position is not None and position.channel is Channel.REGULAR:
            slot = context.next_release
            return slot.release_utc, (
                f"off the hotpatch track: the {slot.month} update restarts it, as every "
                f"monthly update does until the {context.next_restart.month} baseline"
            )
        if position is not None and position.on_current_baseline is False:
            return self.now, "off the cycle: installing the current baseline restarts it"
        if restart_capable_updates:
            return self.now, (
                "non-security updates available (.NET, drivers, rollups) can restart it when "
                "installed, even in a hotpatch month"
            )
        slot = context.next_restart
        kind = "end of the hotpatch program" if not slot.in_program else slot.kind.value
        return slot.release_utc, f"the {slot.month} release ({kind.replace('_', ' ')})"

    # -- the rules, one concern each ------------------------------------------------------

    def _availability(self, machine: Machine, judged: _Judgement) -> None:
        if machine.power_state is not None:
            found = _NOT_RUNNING.get(machine.power_state.casefold())
            if found is not None:
                code, words = found
                judged.add(
                    Reason(code, f"the VM is {words}; it is judged again when it runs"),
                    Action.NONE,
                )
        arc_status = machine.arc_status if machine.kind is MachineKind.ARC else None
        if arc_status is not None and arc_status.casefold() != "connected":
            judged.add(
                Reason(
                    ReasonCode.ARC_DISCONNECTED,
                    f"the Arc agent is {arc_status}; its data may be out of date",
                ),
                Action.INVESTIGATE,
            )

    def _assessment(self, assessment: AssessmentSummary | None, judged: _Judgement) -> None:
        if assessment is None or assessment.last_modified is None:
            judged.add(
                Reason(ReasonCode.NEVER_ASSESSED, "no patch assessment on record"), Action.ASSESS
            )
            return
        if assessment.last_modified < self._stale_before:
            limit = int(self.policy.assessment_max_age.total_seconds() // 3600)
            judged.add(
                Reason(
                    ReasonCode.ASSESSMENT_STALE,
                    f"the latest assessment is older than {limit} h (the policy's maximum age)",
                ),
                Action.ASSESS,
            )
        if assessment.status is not None and assessment.status.casefold() == "failed":
            judged.add(
                Reason(ReasonCode.ASSESSMENT_FAILED, "the latest assessment failed"), Action.ASSESS
            )

    def _build(
        self, machine: Machine, os: OsFamily, context: OsContext, judged: _Judgement
    ) -> BuildPosition | None:
        if machine.os_version is None:
            return None
        key = (os, machine.os_version)
        found = self._builds.get(key)
        if found is None:
            found = self._builds[key] = self._judge_build(os, machine.os_version, context)
        position, findings = found
        judged.extend(findings)
        return position

    def _judge_build(
        self, os: OsFamily, build: str, context: OsContext
    ) -> tuple[BuildPosition | None, tuple[Finding, ...]]:
        position = self.calendar.locate(build, context.in_force)
        if position is None or position.os is not os:
            reason = Reason(
                ReasonCode.BUILD_NOT_RECOGNISED,
                f"reported OS version {build} is not a {os.value} build",
            )
            return None, ((reason, Action.INVESTIGATE),)
        if position.beyond_catalog:
            horizon = self.calendar.catalog.covers_through
            reason = Reason(
                ReasonCode.BUILD_NOT_IN_CATALOG,
                f"build {build} is newer than every {os.value} build in the release catalog"
                f"{f' (which covers releases through {horizon})' if horizon else ''}: it is "
                "judged on its assessment alone; update the catalog to judge its build",
            )
            return position, ((reason, Action.NONE),)
        if position.release_month is None:
            reason = Reason(
                ReasonCode.OFF_CYCLE,
                f"build {build} is older than every published {os.value} hotpatch release; "
                "it needs the current baseline",
            )
            return position, ((reason, Action.INSTALL_BASELINE),)
        findings: list[Finding] = []
        if position.channel is Channel.REGULAR:
            findings.append(self._regular_channel(os, build, position, context))
        if position.releases_behind is None or position.releases_behind == 0:
            return position, tuple(findings)
        at = f"at {position.release_month}"
        behind = f"{position.releases_behind} release(s) behind"
        expected = _expected(context.in_force)
        install = self._install_action(context, position)
        if position.release_month < str(context.required_baseline.month):
            reason = Reason(
                ReasonCode.OFF_CYCLE,
                f"build {build} is {at}, behind the {context.required_baseline.month} baseline: "
                f"it cannot take hotpatches until it is back on a baseline ({behind} "
                f"{expected})",
            )
            findings.append((reason, Action.INSTALL_BASELINE))
        elif position.release_month < str(context.required.month):
            reason = Reason(ReasonCode.BUILD_BEHIND, f"build {build} is {at}, {behind} {expected}")
            findings.append((reason, install))
        else:
            reason = Reason(
                ReasonCode.UPDATE_AVAILABLE,
                f"build {build} is {at}; {expected} is due by {_iso(context.grace_ends)}",
            )
            findings.append((reason, install))
        return position, tuple(findings)

    def _regular_channel(
        self, os: OsFamily, build: str, position: BuildPosition, context: OsContext
    ) -> Finding:
        """A machine that took the regular cumulative (or an out-of-band) update."""
        parsed = parse_build(build)
        through = str(context.in_force.month)
        release = self.calendar.catalog.exact(os, parsed[2], through) if parsed else None
        month = YearMonth.parse(position.release_month or "")
        back = self.calendar.next_baseline_after(os, month)
        took = release.describe() if release else f"build 10.0.{build}"
        reason = Reason(
            ReasonCode.REGULAR_CHANNEL_BUILD,
            f"it took {took} instead of the hotpatch: current on security as of {month} but off "
            f"the hotpatch track, restarting every month until the {back.month} baseline brings "
            "it back; something outside the hotpatch process is installing updates",
        )
        return reason, Action.INVESTIGATE

    def _missing_updates(
        self,
        assessment: AssessmentSummary | None,
        context: OsContext,
        position: BuildPosition | None,
        judged: _Judgement,
    ) -> None:
        if assessment is None or assessment.critical + assessment.security <= 0:
            return
        install = self._install_action(context, position)
        counts = f"{assessment.critical} critical and {assessment.security} security update(s)"
        grace = _iso(context.grace_ends)
        if self.now >= context.grace_ends:
            reason = Reason(
                ReasonCode.MISSING_SECURITY_UPDATES,
                f"{counts} missing past the grace period (ended {grace})",
            )
        else:
            reason = Reason(
                ReasonCode.UPDATES_PENDING, f"{counts} missing; grace period ends {grace}"
            )
        judged.add(reason, install)

    @staticmethod
    def _install_action(context: OsContext, position: BuildPosition | None) -> Action:
        """A machine on the current baseline takes the hotpatch; anything else needs a restart."""
        if context.restart_month:
            return Action.INSTALL_BASELINE
        if position is not None and position.on_current_baseline is False:
            return Action.INSTALL_BASELINE
        return Action.INSTALL_HOTPATCH


_assessment_facts = itemgetter(
    "last_modified", "status", "critical", "security", "reboot_pending", "restart_capable"
)


def _machine_signals(machine: Machine, assessment: AssessmentSummary | None) -> tuple[Reason, ...]:
    """Facts of an eligible VM that explain a verdict without changing it (stale assessments,
    skipped installs, restarts to expect)."""
    signals: list[Reason] = []
    mode = machine.assessment_mode
    if mode is not None and mode.casefold() != PLATFORM_ASSESSMENT:
        signals.append(
            Reason(
                ReasonCode.PERIODIC_ASSESSMENT_OFF,
                f"assessmentMode is {mode}: no periodic assessment every 24 h, so assessments "
                "go stale unless one is started (set it to AutomaticByPlatform)",
            )
        )
    if machine.bypass_platform_safety_checks is True:
        signals.append(
            Reason(
                ReasonCode.CUSTOMER_MANAGED_SCHEDULE,
                "bypassPlatformSafetyChecksOnUserSchedule is true: installs run only on its "
                "Update Manager maintenance schedule; without one, installs are skipped",
            )
        )
    security = machine.security_type or "Standard"
    signals.append(
        Reason(
            ReasonCode.SECURITY_TYPE,
            f"security type {security}"
            + ("" if security.casefold() != "standard" else " (no Trusted Launch)")
            + "; reported as a signal, not a documented hotpatch requirement",
        )
    )
    if assessment is not None and assessment.restart_capable > 0:
        signals.append(
            Reason(
                ReasonCode.RESTART_CAPABLE_UPDATES,
                f"{assessment.restart_capable} non-security update(s) available (.NET, drivers, "
                "rollups): they can need a restart even in a hotpatch month",
            )
        )
    return tuple(signals)


def _install_needs_restart(
    assessment: AssessmentSummary | None, installation: InstallationSummary
) -> bool:
    """An install said a restart is required, and no assessment has been made since."""
    status = installation.reboot_status
    if status is None or (status != "Required" and status.casefold() != "required"):
        return False
    if assessment is None or assessment.last_modified is None:
        return True
    return (
        installation.last_modified is not None
        and installation.last_modified >= assessment.last_modified
    )


@dataclass(slots=True)
class _Judgement:
    """Collects reasons; the state is the one of highest precedence among them."""

    reasons: list[Reason] = field(default_factory=list)
    state: State = State.COMPLIANT
    action: Action = Action.NONE

    def add(self, reason: Reason, action: Action) -> None:
        """Record a reason; its code's state decides whether it becomes the verdict's state."""
        rule = _RULE_OF[reason.code]
        state = rule.state
        assert state is not None, f"{reason.code} is a signal, not a reason"
        assert action in rule.actions, f"{reason.code} does not lead to {action}"
        self.reasons.append(reason)
        if _RANK[state] < _RANK[self.state]:
            self.state, self.action = state, action

    def extend(self, findings: Iterable[Finding]) -> None:
        for finding in findings:
            self.add(*finding)


def _full_build(build: str | None) -> str | None:
    return f"10.0.{build}" if build else None


def _expected(slot: ReleaseSlot) -> str:
    if slot.build is None:
        return f"the {slot.month} release (its build is not in the catalog yet)"
    return f"the {slot.month} release ({slot.kb}, build 10.0.{slot.build})"


@lru_cache(maxsize=64)  # a handful of instants (grace deadlines), each formatted once
def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%MZ")


@dataclass(frozen=True, slots=True)
class Summary:
    """Roll-ups of a set of verdicts."""

    total: int
    by_state: dict[str, int]
    by_action: dict[str, int]
    by_subscription: dict[str, dict[str, int]]
    by_os: dict[str, dict[str, int]]
    by_ring: dict[str, dict[str, int]]
    #: Set when releases have shipped past the catalog's horizon: every output says so.
    catalog_staleness: Staleness | None = None

    def as_dict(self) -> dict[str, object]:
        return {
            "total": self.total,
            "by_state": self.by_state,
            "by_action": self.by_action,
            "by_subscription": self.by_subscription,
            "by_os": self.by_os,
            "by_ring": self.by_ring,
        }


def summarize(verdicts: Iterable[Verdict], staleness: Staleness | None = None) -> Summary:
    tally = Tally()
    tally.add(verdicts)
    return tally.summary(staleness)


#: What a summary counts a machine by: state, action, subscription, OS and ring.
_Combo = tuple[State, Action, str | None, OsFamily | None, str | None]


class Tally:
    """A summary built page by page: a sweep counts its verdicts and keeps none of them.

    It counts distinct (state, action, subscription, os, ring) combinations, far fewer than
    machines; the roll-ups are made from those when asked for.
    """

    __slots__ = ("_combos",)

    def __init__(self) -> None:
        self._combos: Counter[_Combo] = Counter()

    def add(self, verdicts: Iterable[Verdict]) -> None:
        # Read through the decision and the machine: each verdict property is a Python call,
        # and this runs per machine.
        self._combos.update(
            (
                decision.state,
                decision.action,
                verdict.machine.subscription_id,
                decision.os,
                verdict.ring,
            )
            for verdict in verdicts
            for decision in [verdict.decision]
        )

    def summary(self, staleness: Staleness | None = None) -> Summary:
        return _roll_up(self._combos, staleness)


def _roll_up(combos: Counter[_Combo], staleness: Staleness | None) -> Summary:
    states: Counter[str] = Counter()
    actions: Counter[str] = Counter()
    groups: dict[str, dict[str, Counter[str]]] = {"subscription": {}, "os": {}, "ring": {}}
    for (state, action, subscription, os, ring), count in combos.items():
        states[state.value] += count
        actions[action.value] += count
        keys = {
            "subscription": subscription or "(none)",
            "os": os.value if os else "(other)",
            "ring": ring or "(untagged)",
        }
        for group, key in keys.items():
            groups[group].setdefault(key, Counter())[state.value] += count
    return Summary(
        total=sum(combos.values()),
        by_state={state.value: states[state.value] for state in STATE_PRECEDENCE},
        by_action={action.value: actions[action.value] for action in Action},
        by_subscription=_ordered(groups["subscription"]),
        by_os=_ordered(groups["os"]),
        by_ring=_ordered(groups["ring"]),
        catalog_staleness=staleness,
    )


def _ordered(groups: dict[str, Counter[str]]) -> dict[str, dict[str, int]]:
    return {
        key: {state.value: counts[state.value] for state in STATE_PRECEDENCE if counts[state.value]}
        for key, counts in sorted(groups.items())
    }
