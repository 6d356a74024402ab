"""What a sandbox assessment finds and what a sandbox install does: pure decisions, no I/O.

The sandbox's patch operations must answer the way a Windows machine on the hotpatch program
would, so that the service's remediation code meets realistic outcomes: the update on offer is
the release in force for the machine's OS (from the release catalog through the calendar), a
hotpatch needs no restart only when the machine already runs the current baseline with hotpatch
enabled, and a restart-requiring update installed with `rebootSetting=Never` leaves the machine
pending a reboot on its old build.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from hotpatch.core.calendar import Calendar, ReleaseSlot, YearMonth, release_instant
from hotpatch.core.models import MonthKind, OsFamily, parse_build

#: How far back the calendar is walked to find the newest catalogued release when the month in
#: force is not catalogued yet (Microsoft has not published it, or the catalog is old).
_CATALOG_LOOKBACK_MONTHS = 24

#: Windows Update classification names (as in results) for the API's classification names
#: (as in `classificationsToInclude`).
CLASSIFICATION_NAMES: Mapping[str, str] = {
    "Critical": "Critical Updates",
    "Security": "Security Updates",
    "UpdateRollUp": "Update Rollups",
    "FeaturePack": "Feature Packs",
    "ServicePack": "Service Packs",
    "Definition": "Definition Updates",
    "Tools": "Tools",
    "Updates": "Updates",
}

_OS_TITLES: Mapping[OsFamily, str] = {
    OsFamily.WS2022: "Microsoft server operating system version 21H2",
    OsFamily.WS2025: "Microsoft server operating system version 24H2",
}

#: The longest install Azure accepts: four hours, the duration the API reference gives for
#: `maximumDuration` ("such as PT4H (4 hours)") and Microsoft's own installPatches example
#: sends (../shared/azure-specs/compute/VirtualMachine_InstallPatches.2025-04-01.json).
#: https://learn.microsoft.com/rest/api/compute/virtual-machines/install-patches
#: (The service keeps its own requests under 3h55m, ../shared/DOMAIN.md §5.)
MAXIMUM_DURATION = timedelta(hours=4)

_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")
_KB = re.compile(r"^(?:KB)?(\d{4,8})$", re.IGNORECASE | re.ASCII)
_PATCH_NAMESPACE = uuid.UUID("6f0d5f9e-2b8e-4c55-9a57-8d1b0c5a1e01")


class RebootChoice(StrEnum):
    IF_REQUIRED = "IfRequired"
    NEVER = "Never"
    ALWAYS = "Always"


class RebootBehavior(StrEnum):
    NEVER_REBOOTS = "NeverReboots"
    ALWAYS_REQUIRES_REBOOT = "AlwaysRequiresReboot"


class InstallationState(StrEnum):
    INSTALLED = "Installed"
    FAILED = "Failed"
    EXCLUDED = "Excluded"
    NOT_SELECTED = "NotSelected"


class RebootOutcome(StrEnum):
    NOT_NEEDED = "NotNeeded"
    REQUIRED = "Required"
    COMPLETED = "Completed"


class InvalidParameterError(ValueError):
    """An installPatches body the real API would refuse; the message names the field."""


@dataclass(frozen=True, slots=True)
class MachineState:
    """What the patch decisions need to know about one machine."""

    #: The running build as Resource Graph reports it, e.g. "10.0.20348.4711"; None if unknown.
    os_version: str | None
    os_type: str = "Windows"
    hotpatch_enabled: bool = False
    #: A build installed but waiting for a restart (e.g. "20348.4830"); None when no reboot pends.
    pending_build: str | None = None

    @property
    def reboot_pending(self) -> bool:
        return self.pending_build is not None


@dataclass(frozen=True, slots=True)
class Patch:
    """One update on offer to a machine."""

    patch_id: str
    name: str
    kb_id: str
    #: The API classification name (`Security`), as `classificationsToInclude` spells it.
    classification: str
    reboot_behavior: RebootBehavior
    published: datetime
    #: The build the machine runs once this update is installed (and, if needed, restarted).
    build: str

    @property
    def requires_reboot(self) -> bool:
        return self.reboot_behavior is not RebootBehavior.NEVER_REBOOTS

    @property
    def critical_or_security(self) -> bool:
        return self.classification in ("Critical", "Security")

    def classification_names(self) -> list[str]:
        return [CLASSIFICATION_NAMES.get(self.classification, self.classification)]


@dataclass(frozen=True, slots=True)
class InstallRequest:
    """`VirtualMachineInstallPatchesParameters`, read and checked."""

    reboot_setting: RebootChoice
    maximum_duration: timedelta
    classifications: frozenset[str] = frozenset()
    kb_include: frozenset[str] = frozenset()
    kb_exclude: frozenset[str] = frozenset()
    exclude_requiring_reboot: bool = False
    max_publish_date: datetime | None = None

    @classmethod
    def from_body(cls, body: Any) -> InstallRequest:
        """Read the request body; raises InvalidParameterError naming the offending field."""
        if not isinstance(body, Mapping):
            raise InvalidParameterError("The request body must be a JSON object.")
        reboot_text = body.get("rebootSetting")
        try:
            reboot = RebootChoice(str(reboot_text))
        except ValueError:
            allowed = ", ".join(s.value for s in RebootChoice)
            raise InvalidParameterError(
                f"rebootSetting is required and must be one of {allowed}; got {reboot_text!r}."
            ) from None
        duration = parse_duration(body.get("maximumDuration", "PT3H55M"), "maximumDuration")
        if duration > MAXIMUM_DURATION:
            raise InvalidParameterError(
                "maximumDuration must be at most PT4H (4 hours); "
                f"got {body.get('maximumDuration')!s:.40}."
            )
        windows = body.get("windowsParameters") or {}
        if not isinstance(windows, Mapping):
            raise InvalidParameterError("windowsParameters must be an object.")
        classifications = frozenset(_strings(windows, "classificationsToInclude"))
        unknown = classifications - set(CLASSIFICATION_NAMES)
        if unknown:
            raise InvalidParameterError(
                f"windowsParameters.classificationsToInclude has unknown values {sorted(unknown)}."
            )
        max_date = windows.get("maxPatchPublishDate")
        return cls(
            reboot_setting=reboot,
            maximum_duration=duration,
            classifications=classifications,
            kb_include=frozenset(
                _kb(v, "kbNumbersToInclude") for v in _strings(windows, "kbNumbersToInclude")
            ),
            kb_exclude=frozenset(
                _kb(v, "kbNumbersToExclude") for v in _strings(windows, "kbNumbersToExclude")
            ),
            exclude_requiring_reboot=bool(windows.get("excludeKbsRequiringReboot", False)),
            max_publish_date=_datetime(max_date) if max_date else None,
        )


@dataclass(frozen=True, slots=True)
class AssessmentOutcome:
    available: tuple[Patch, ...]
    reboot_pending: bool

    @property
    def critical_and_security_count(self) -> int:
        return sum(1 for p in self.available if p.critical_or_security)

    @property
    def other_count(self) -> int:
        return len(self.available) - self.critical_and_security_count


@dataclass(frozen=True, slots=True)
class InstallOutcome:
    patches: tuple[tuple[Patch, InstallationState], ...]
    reboot_status: RebootOutcome
    #: The build the machine runs afterwards ("10.0.20348.4830"); None when it did not move.
    new_os_version: str | None
    #: The machine afterwards, for the assessment that follows the install.
    machine: MachineState

    def count(self, state: InstallationState) -> int:
        return sum(1 for _, s in self.patches if s is state)


def parse_duration(value: Any, field: str) -> timedelta:
    """An ISO 8601 duration such as PT3H or PT1H30M."""
    match = _DURATION.match(str(value)) if isinstance(value, str) else None
    if match is None or not any(match.groups()):
        raise InvalidParameterError(f"{field} must be an ISO 8601 duration such as PT3H.")
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    try:
        return timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
    except OverflowError:
        raise InvalidParameterError(f"{field} is longer than any duration.") from None


def offered_release(
    calendar: Calendar, os: OsFamily, now: datetime
) -> tuple[ReleaseSlot, ReleaseSlot] | None:
    """The catalogued release in force at `now` and the restart release it builds on.

    Walks back from the month in force when that month is not catalogued yet, so a sandbox
    running past the catalog still offers the newest release Microsoft has published.
    """
    slot = calendar.in_force(os, now)
    for _ in range(_CATALOG_LOOKBACK_MONTHS):
        if slot.build is not None:
            return slot, calendar.baseline_at_or_before(slot)
        slot = calendar.slot(os, slot.month.shift(-1))
    return None


def available_patches(
    machine: MachineState, calendar: Calendar, now: datetime
) -> tuple[Patch, ...]:
    """What an assessment at `now` finds: the release in force, unless the machine has it."""
    if machine.os_type.lower() != "windows" or machine.os_version is None:
        return ()
    running = parse_build(machine.os_version)
    if running is None:
        return ()
    os, major, revision = running
    if os is None:
        # Not a hotpatch OS (e.g. Windows Server 2019): the catalog knows nothing to offer.
        return ()
    installed = revision
    if machine.pending_build is not None:
        pending = parse_build(machine.pending_build)
        if pending is not None and pending[0] is os:
            installed = max(installed, pending[2])
    found = offered_release(calendar, os, now)
    if found is None:
        return ()
    slot, baseline = found
    assert slot.build is not None
    assert slot.kb is not None
    target = parse_build(slot.build)
    if target is None or target[2] <= installed:
        return ()
    baseline_build = parse_build(baseline.build) if baseline.build else None
    # A hotpatch applies in memory only on top of the baseline the machine is running now; a
    # machine behind it (or with hotpatch off) gets the restart-requiring cumulative update.
    on_baseline = baseline_build is not None and revision >= baseline_build[2]
    hotpatch = slot.kind is MonthKind.HOTPATCH and machine.hotpatch_enabled and on_baseline
    behavior = RebootBehavior.NEVER_REBOOTS if hotpatch else RebootBehavior.ALWAYS_REQUIRES_REBOOT
    return (_patch(os, slot, hotpatch, behavior, f"{major}.{target[2]}"),)


def assess(machine: MachineState, calendar: Calendar, now: datetime) -> AssessmentOutcome:
    """The result of an assessment started at `now`."""
    return AssessmentOutcome(available_patches(machine, calendar, now), machine.reboot_pending)


def decide_install(
    machine: MachineState, parameters: InstallRequest, calendar: Calendar, now: datetime
) -> InstallOutcome:
    """The result of an install started at `now`: what is installed, and where the build goes.

    A restart-requiring update installed with `Never` stays pending: the build does not move
    and the machine reports a pending reboot until an install that may restart it runs.
    """
    chosen: list[tuple[Patch, InstallationState]] = []
    for patch in available_patches(machine, calendar, now):
        chosen.append((patch, _selection(patch, parameters)))
    installed = [p for p, state in chosen if state is InstallationState.INSTALLED]
    may_restart = parameters.reboot_setting is not RebootChoice.NEVER
    newest = max(installed, key=lambda p: _revision(p.build), default=None)
    restart_needed = machine.reboot_pending or any(p.requires_reboot for p in installed)

    pending = machine.pending_build
    running = machine.os_version
    if newest is not None and not newest.requires_reboot and not machine.reboot_pending:
        running = f"10.0.{newest.build}"
    elif newest is not None:
        pending = _newer(pending, newest.build)

    if restart_needed and not may_restart:
        status = RebootOutcome.REQUIRED
    elif restart_needed or parameters.reboot_setting is RebootChoice.ALWAYS:
        status = RebootOutcome.COMPLETED
        if pending is not None:
            running = f"10.0.{pending}"
            pending = None
    else:
        status = RebootOutcome.NOT_NEEDED
    after = replace(machine, os_version=running, pending_build=pending)
    moved = running if running != machine.os_version else None
    return InstallOutcome(tuple(chosen), status, moved, after)


def failed_install(outcome: InstallOutcome, machine: MachineState) -> InstallOutcome:
    """The same install, failed: every patch it would have installed failed, nothing moved."""
    patches = tuple(
        (patch, InstallationState.FAILED if state is InstallationState.INSTALLED else state)
        for patch, state in outcome.patches
    )
    return InstallOutcome(patches, RebootOutcome.NOT_NEEDED, None, machine)


def _selection(patch: Patch, parameters: InstallRequest) -> InstallationState:
    if patch.kb_id in parameters.kb_exclude or (
        parameters.exclude_requiring_reboot and patch.requires_reboot
    ):
        return InstallationState.EXCLUDED
    wanted = patch.kb_id in parameters.kb_include or patch.classification in (
        parameters.classifications
    )
    too_new = parameters.max_publish_date is not None and patch.published > (
        parameters.max_publish_date
    )
    return InstallationState.INSTALLED if wanted and not too_new else InstallationState.NOT_SELECTED


def _patch(
    os: OsFamily, slot: ReleaseSlot, hotpatch: bool, behavior: RebootBehavior, build: str
) -> Patch:
    assert slot.kb is not None
    kind = "Security Hotpatch Update" if hotpatch else "Cumulative Update"
    name = f"{slot.month} {kind} for {_OS_TITLES[os]} for x64-based Systems ({slot.kb})"
    return Patch(
        patch_id=str(uuid.uuid5(_PATCH_NAMESPACE, f"{slot.kb}/{behavior.value}")),
        name=name,
        kb_id=slot.kb.removeprefix("KB"),
        classification="Security",
        reboot_behavior=behavior,
        published=_published(slot.month),
        build=build,
    )


def _published(month: YearMonth) -> datetime:
    return release_instant(month.year, month.month)


def _revision(build: str) -> int:
    return int(build.rsplit(".", 1)[1])


def _newer(current: str | None, candidate: str) -> str:
    if current is None or _revision(candidate) > _revision(current):
        return candidate
    return current


def _strings(parameters: Mapping[str, Any], field: str) -> list[str]:
    value = parameters.get(field) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidParameterError(f"windowsParameters.{field} must be a list of strings.")
    return value


def _kb(value: str, field: str) -> str:
    match = _KB.match(value.strip())
    if match is None:
        raise InvalidParameterError(
            f"windowsParameters.{field} holds {value!r}, which is not a KB number."
        )
    return match.group(1)


def _datetime(value: Any) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidParameterError(
            "windowsParameters.maxPatchPublishDate must be an ISO 8601 date-time."
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
