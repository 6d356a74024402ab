"""Typed records the core decides on: machines, patch summaries, reasons, verdicts."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from operator import itemgetter
from typing import Annotated, NamedTuple

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

Count = Annotated[int, Field(ge=0)]


def as_utc(value: datetime) -> datetime:
    """A zone-less time read as UTC; any other offset converted to UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: A time in UTC, whatever the input wrote (for the service's own records, not the hot parse).
UtcDatetime = Annotated[datetime, AfterValidator(as_utc)]


class OsFamily(StrEnum):
    """Windows Server releases that take hotpatches."""

    WS2022 = "ws2022"
    WS2025 = "ws2025"


#: Build major number of each family (10.0.<major>.<revision>).
BUILD_MAJOR: dict[int, OsFamily] = {20348: OsFamily.WS2022, 26100: OsFamily.WS2025}

_BUILD = re.compile(r"^(?:10\.0\.)?(\d+)\.(\d+)$")


def parse_build(text: str) -> tuple[OsFamily | None, int, int] | None:
    """`10.0.20348.4711` or `20348.4711` -> (family, major, revision); None if it is no build."""
    match = _BUILD.match(text.strip())
    if match is None:
        return None
    major, revision = int(match.group(1)), int(match.group(2))
    return BUILD_MAJOR.get(major), major, revision


class MonthKind(StrEnum):
    """What a month's release is: a restart (baseline) or not (hotpatch)."""

    BASELINE = "baseline"
    HOTPATCH = "hotpatch"
    UNPLANNED_BASELINE = "unplanned_baseline"

    @property
    def restart(self) -> bool:
        return self is not MonthKind.HOTPATCH


class Channel(StrEnum):
    """Which update track a release belongs to.

    Microsoft ships, each month, the hotpatch-track release (a baseline or a hotpatch) and the
    regular cumulative update (LCU) at a build between the hotpatch builds; out-of-band updates
    may be on either. A machine on a regular build is current on security but off the hotpatch
    track until the next baseline.
    """

    HOTPATCH = "hotpatch"
    REGULAR = "regular"


class MachineKind(StrEnum):
    VM = "vm"
    ARC = "arc"
    SCALE_SET = "scale_set"


class State(StrEnum):
    """Compliance states, highest precedence first (see `STATE_PRECEDENCE`)."""

    UNKNOWN = "unknown"
    NOT_ELIGIBLE = "not_eligible"
    MISCONFIGURED = "misconfigured"
    ASSESSMENT_DUE = "assessment_due"
    NON_COMPLIANT = "non_compliant"
    REBOOT_PENDING = "reboot_pending"
    PENDING = "pending"
    COMPLIANT = "compliant"


STATE_PRECEDENCE: tuple[State, ...] = tuple(State)


class Action(StrEnum):
    """The next thing to do about a machine."""

    NONE = "none"
    ASSESS = "assess"
    INSTALL_HOTPATCH = "install_hotpatch"
    INSTALL_BASELINE = "install_baseline"
    FIX_CONFIGURATION = "fix_configuration"
    INVESTIGATE = "investigate"


@dataclass(frozen=True, slots=True)
class Reason:
    """A stable machine-readable code and the sentence an operator reads."""

    code: str
    message: str


class Record(BaseModel):
    """Base of the parsed records: immutable, built once at the boundary."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class ImageRef(Record):
    publisher: str | None = None
    offer: str | None = None
    sku: str | None = None
    version: str | None = None
    #: Set when the machine was built from a managed, gallery or community image.
    id: str | None = None
    shared_gallery_image_id: str | None = Field(default=None, alias="sharedGalleryImageId")
    community_gallery_image_id: str | None = Field(default=None, alias="communityGalleryImageId")

    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    @property
    def custom_image_id(self) -> str | None:
        return self.id or self.shared_gallery_image_id or self.community_gallery_image_id


class AssessmentSummary(Record):
    """The latest patch assessment of a machine (`patchassessmentresults/latest`)."""

    status: str | None = None
    last_modified: AwareDatetime | None = None
    reboot_pending: bool | None = None
    critical: Count = 0
    security: Count = 0
    #: Available updates of the classes that can need a restart even in a hotpatch month
    #: (update rollups, feature and service packs, tools, updates, other: .NET, drivers).
    restart_capable: Count = 0


class InstallationSummary(Record):
    """The latest patch installation of a machine (`patchinstallationresults`)."""

    status: str | None = None
    last_modified: AwareDatetime | None = None
    reboot_status: str | None = None


class Machine(Record):
    """One machine as the core sees it; every field but the identity is optional."""

    id: str
    name: str
    kind: MachineKind
    subscription_id: str | None = None
    tags: dict[str, str] | None = None
    os_type: str | None = None
    #: e.g. "10.0.20348.4711", from Resource Graph's instance view or the Arc agent.
    os_version: str | None = None
    power_state: str | None = None
    # The image reference, flat: a nested model per row cost a fifth of the parse time.
    image_publisher: str | None = None
    image_offer: str | None = None
    image_sku: str | None = None
    image_version: str | None = None
    image_id: str | None = None
    shared_gallery_image_id: str | None = None
    community_gallery_image_id: str | None = None
    patch_mode: str | None = None
    enable_hotpatching: bool | None = None
    provision_vm_agent: bool | None = None
    #: `osProfile.windowsConfiguration.enableAutomaticUpdates`: AutomaticByPlatform needs it.
    enable_automatic_updates: bool | None = None
    #: `patchSettings.assessmentMode`: ImageDefault or AutomaticByPlatform (every 24 h).
    assessment_mode: str | None = None
    #: `automaticByPlatformSettings.bypassPlatformSafetyChecksOnUserSchedule`: true means
    #: installs run only on the customer's Update Manager schedule.
    bypass_platform_safety_checks: bool | None = None
    #: `securityProfile.securityType` (TrustedLaunch, ConfidentialVM; absent is Standard).
    security_type: str | None = None
    #: "Uniform" for Uniform scale sets and their instances.
    orchestration_mode: str | None = None
    # Azure Arc only
    arc_status: str | None = None
    arc_os_sku: str | None = None
    #: The row's `kind` column: where an Arc machine runs ("HCI" for Azure Local).
    arc_kind: str | None = None
    hotpatch_enablement_status: str | None = None
    hotpatch_subscription_status: str | None = None

    @property
    def image(self) -> ImageRef | None:
        """The image reference, or None when the inventory has none."""
        fields = (
            self.image_publisher,
            self.image_offer,
            self.image_sku,
            self.image_version,
            self.image_id,
            self.shared_gallery_image_id,
            self.community_gallery_image_id,
        )
        if all(value is None for value in fields):
            return None
        return ImageRef(
            publisher=self.image_publisher,
            offer=self.image_offer,
            sku=self.image_sku,
            version=self.image_version,
            id=self.image_id,
            shared_gallery_image_id=self.shared_gallery_image_id,
            community_gallery_image_id=self.community_gallery_image_id,
        )


#: The fields that say *which* machine it is rather than *what* it is. No rule reads them.
IDENTITY_FIELDS = frozenset({"id", "name", "subscription_id", "tags"})
#: Facts that only explain a verdict (signals), never decide it: kept out of the profile, so a
#: fleet still shares few decisions (see `signal_facts`).
SIGNAL_FIELDS = ("assessment_mode", "bypass_platform_safety_checks", "security_type")

#: What a machine is: every field but its identity (see `machine_profile`).
Profile = tuple[object, ...]
#: A machine's profiled fields as they are (all but the image version), read from its
#: `__dict__` in one C call.
profile_fields = itemgetter(
    *(
        name
        for name in Machine.model_fields
        if name not in IDENTITY_FIELDS | {"image_version", *SIGNAL_FIELDS}
    )
)
#: The signal facts of a machine, read from its `__dict__` in one C call.
signal_facts = itemgetter(*SIGNAL_FIELDS)


def machine_profile(machine: Machine) -> Profile:
    """Every fact about a machine that a rule may read, as one hashable tuple.

    Machines with equal profiles get equal eligibility and, given equal patch summaries, equal
    decisions: a fleet has few profiles, so the evaluator decides each once. The image version
    counts only as present or absent (rules read no more of it).

    Read through `__dict__` in one C call: attribute access on pydantic models takes CPython's
    slow path (BaseModel defines `__getattr__`), and this runs once per machine. A pair (the
    fields, then the image version's absence): one flat tuple cost a list and a copy per
    machine. `inventory._parse` builds it inline: keep the two alike.
    """
    fields = machine.__dict__
    return profile_fields(fields), fields["image_version"] is None


@dataclass(frozen=True, slots=True)
class MalformedMachine:
    """A row that could not be parsed; it still gets a verdict (unknown)."""

    id: str
    name: str
    error: str
    subscription_id: str | None = None


@dataclass(frozen=True, slots=True)
class Eligibility:
    """Can this machine take hotpatches, and is it set up to?

    `blocking` reasons make the machine not eligible (the image or platform cannot be hotpatched);
    `configuration` reasons mean it could be, but is not set up for it.
    """

    os: OsFamily | None
    blocking: tuple[Reason, ...] = ()
    configuration: tuple[Reason, ...] = ()
    #: Data too incomplete to decide: the verdict is `unknown`, not `not_eligible`.
    undecided: tuple[Reason, ...] = ()
    #: Facts worth showing that change nothing (e.g. judged as Azure Edition on Azure Local).
    signals: tuple[Reason, ...] = ()

    @property
    def eligible(self) -> bool:
        return not self.blocking and not self.undecided

    @property
    def reasons(self) -> tuple[Reason, ...]:
        return self.undecided + self.blocking + self.configuration


@dataclass(frozen=True, slots=True)
class BuildPosition:
    """Where a reported OS build stands against the release calendar."""

    os: OsFamily
    build: str
    #: The release the build is (or, if it is not an exact catalog build, is at least) at.
    release_month: str | None
    kb: str | None
    exact: bool
    releases_behind: int | None
    on_current_baseline: bool | None
    #: The track of the exact catalog release the build is (hotpatch unless it is a regular
    #: cumulative or out-of-band update).
    channel: Channel = Channel.HOTPATCH
    #: Newer than every build the catalog knows: the catalog cannot place it.
    beyond_catalog: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    """What the rules concluded for one combination of facts; shared by every such machine."""

    state: State
    action: Action
    reasons: tuple[Reason, ...]
    eligible: bool
    os: OsFamily | None
    release_month: str | None = None
    releases_behind: int | None = None
    expected_build: str | None = None
    grace_ends: datetime | None = None
    #: Facts worth showing that do not change the state (assessment mode, security type, ...).
    signals: tuple[Reason, ...] = ()
    #: When the machine is next expected to restart, and why (None: not eligible or unknown).
    next_restart: datetime | None = None
    restart_cause: str | None = None


class Verdict(NamedTuple):
    """The compliance judgement for one machine at one instant.

    It points at the machine, the (shared) decision and the assessment instead of copying their
    fields, and is a tuple: a sweep builds one per machine, so it must be cheap to make.
    """

    machine: Machine | MalformedMachine
    decision: Decision
    assessment: AssessmentSummary | None = None
    ring: str | None = None
    #: Signals of this machine beyond its decision's (assessment mode, schedule, security type).
    machine_signals: tuple[Reason, ...] = ()

    @property
    def id(self) -> str:
        return self.machine.id

    @property
    def name(self) -> str:
        return self.machine.name or self.machine.id.rsplit("/", 1)[-1]

    @property
    def kind(self) -> MachineKind | None:
        return self.machine.kind if isinstance(self.machine, Machine) else None

    @property
    def subscription_id(self) -> str | None:
        return self.machine.subscription_id

    @property
    def build(self) -> str | None:
        return self.machine.os_version if isinstance(self.machine, Machine) else None

    @property
    def state(self) -> State:
        return self.decision.state

    @property
    def action(self) -> Action:
        return self.decision.action

    @property
    def reasons(self) -> tuple[Reason, ...]:
        return self.decision.reasons

    @property
    def eligible(self) -> bool:
        return self.decision.eligible

    @property
    def os(self) -> OsFamily | None:
        return self.decision.os

    @property
    def release_month(self) -> str | None:
        return self.decision.release_month

    @property
    def releases_behind(self) -> int | None:
        return self.decision.releases_behind

    @property
    def expected_build(self) -> str | None:
        return self.decision.expected_build

    @property
    def grace_ends(self) -> datetime | None:
        return self.decision.grace_ends

    @property
    def signals(self) -> tuple[Reason, ...]:
        return self.decision.signals + self.machine_signals

    @property
    def next_restart(self) -> datetime | None:
        return self.decision.next_restart

    @property
    def restart_cause(self) -> str | None:
        return self.decision.restart_cause

    @property
    def last_assessed(self) -> datetime | None:
        return self.assessment.last_modified if self.assessment else None

    @property
    def missing_critical_security(self) -> int | None:
        if self.assessment is None:
            return None
        return self.assessment.critical + self.assessment.security
