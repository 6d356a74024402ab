"""The seeded generator: an estate of Azure and Arc machines observed at one instant."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time
from functools import cache
from typing import Any, TypeVar

from hotpatch.bulk import collector_paused
from hotpatch.core.calendar import Calendar, YearMonth, release_instant
from hotpatch.core.models import Channel, MonthKind, OsFamily
from hotpatch.core.releases import Release, ReleaseCatalog
from hotpatch.core.resource_types import (
    ARC_MACHINE,
    MACHINE_TYPES,
    SCALE_SET,
    SCALE_SET_INSTANCE,
    SOFTWARE_PATCHES,
    VIRTUAL_MACHINE,
)
from hotpatch.sandbox.estate.mix import (
    ARC,
    ARC_DISCONNECTED_SHARE,
    ARC_SHARES,
    ARC_TOO_OLD_BUILD,
    ARC_WS2022,
    ARC_WS2025_ENROLLED,
    ARC_WS2025_NOT_ENROLLED,
    ARC_WS2025_TOO_OLD,
    AUTOMATIC_UPDATES_OFF_SHARE,
    AZURE_EDITION_DESKTOP,
    AZURE_EDITION_EDITION_ID,
    AZURE_LOCAL,
    AZURE_LOCAL_SHARES,
    BEYOND_CATALOG_STEP,
    BUILD_POSITION_SHARES,
    CATEGORY_SHARES,
    CRITICAL_MISSING_SHARE,
    CUSTOM_IMAGE,
    CUSTOMER_SCHEDULE_SHARE,
    DEALLOCATED_SHARE,
    DESKTOP_SKUS,
    ENVIRONMENTS,
    FAILED_ASSESSMENT_SHARE,
    FAILED_INSTALL_SHARE,
    FEATURE_PACK_SHARE,
    FLEXIBLE_MEMBER,
    FLEXIBLE_SCALE_SET_SIZE,
    HOME_LOCATION_SHARE,
    HOTPATCH_OFF_SHARE,
    HOTPATCH_ON_UNSUPPORTED_IMAGE_SHARE,
    HOTPATCH_OS_SHARES,
    HOTPATCH_SKUS,
    HOTPATCH_VM,
    IN_FORCE,
    INSTALLATION_HISTORY,
    LINUX,
    LINUX_IMAGES,
    LOCAL_OTHER,
    LOCAL_WS2022_AZURE_EDITION,
    LOCATIONS,
    MAX_INSTALLATION_ROWS,
    MISSING_COUNTS_SHARE,
    MONTHLY_UPDATE_SHARE,
    NEVER_ASSESSED_SHARE,
    NO_OS_VERSION_SHARE,
    OFF_CYCLE,
    OFFER_SPELLINGS,
    ONE_BEHIND,
    OTHER_UPDATES_SHARE,
    OTHER_WINDOWS,
    OTHER_WINDOWS_SKUS,
    OUT_OF_BAND_SHARE,
    OWNERS,
    PERIODIC_ASSESSMENT_SHARE,
    PREVIEW_IMAGE,
    PREVIEW_IMAGES,
    PUBLISHER_SPELLINGS,
    REBOOT_PENDING_SHARE,
    REBOOT_SETTING_SHARES,
    REGULAR,
    RING_SHARES,
    RING_TAG,
    SECURITY_TYPE_SHARES,
    SERVICE_PACK_SHARE,
    SKU_TITLE_CASE_SHARE,
    STALE_AFTER,
    STALE_ASSESSMENT_SHARE,
    STOPPED_SHARE,
    TOOLS_SHARE,
    TWO_BEHIND,
    UNIFORM_OUTDATED_MODEL_SHARE,
    UNIFORM_SCALE_SET,
    UNIFORM_SCALE_SET_SIZE,
    VM_SIZES,
    WARNING_ASSESSMENT_SHARE,
    WRONG_PATCH_MODE_SHARE,
    _deal,
    _Mix,
)
from hotpatch.sandbox.estate.rows import Estate

_HISTORY_SECONDS = int(INSTALLATION_HISTORY.total_seconds())
#: rebootStatus of a successful installation of a release of each kind.
_REBOOT_AFTER = {
    MonthKind.BASELINE: "Completed",
    MonthKind.UNPLANNED_BASELINE: "Completed",
    MonthKind.HOTPATCH: "NotNeeded",
}

_OS_NAMES = {
    OsFamily.WS2022: "Windows Server 2022 Datacenter Azure Edition",
    OsFamily.WS2025: "Windows Server 2025 Datacenter Azure Edition",
}
_POWER_CODES = {
    "running": "PowerState/running",
    "deallocated": "PowerState/deallocated",
    "stopped": "PowerState/stopped",
}
_MSRT_KB = "890830"  # Windows Malicious Software Removal Tool: the same KB every month
_DEFENDER_KB = "2267602"  # Microsoft Defender security intelligence: the same KB every update
_HOUR = 3600
_DAY = 86400

_T = TypeVar("_T")


@dataclass(frozen=True)
class EstateSpec:
    """What to generate. The same spec and catalog always give byte-identical rows."""

    machines: int = 1000
    subscriptions: int = 4
    resource_groups_per_subscription: int = 3
    seed: int = 1
    #: The instant the estate is observed (timezone-aware); builds and times are relative to it.
    as_of: datetime = field(kw_only=True)
    #: Also emit `patchassessmentresults/softwarepatches` rows for machines with missing updates.
    software_patches: bool = False

    def __post_init__(self) -> None:
        if self.as_of.tzinfo is None or self.as_of.utcoffset() is None:
            raise ValueError("as_of must be timezone-aware (UTC)")
        if self.machines < 0:
            raise ValueError(f"machines must be 0 or more, got {self.machines}")
        if self.subscriptions < 1:
            raise ValueError(f"subscriptions must be 1 or more, got {self.subscriptions}")
        if self.resource_groups_per_subscription < 1:
            raise ValueError(
                "resource_groups_per_subscription must be 1 or more, "
                f"got {self.resource_groups_per_subscription}"
            )


def generate_estate(spec: EstateSpec, releases: ReleaseCatalog) -> Estate:
    """A seeded estate observed at `spec.as_of`; every Windows build comes from `releases`.

    Raises ValueError when `as_of` precedes every release of the catalog.
    """
    with collector_paused():
        return _Generator(spec, releases).run()


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------


#: Bits of a GUID that say "version 4, RFC 4122 variant".
_GUID_CLEAR = ~((0xF << 76) | (0x3 << 62))
_GUID_SET = (0x4 << 76) | (0x2 << 62)


def _title_case(sku: str) -> str:
    return "-".join(part.capitalize() if part.isalpha() else part for part in sku.split("-"))


def _released_at(release: Release) -> int:
    """When a release became available, in epoch seconds."""
    if release.out_of_band:
        # Out-of-band releases have no fixed hour; the Pacific morning is as good as any.
        return int(datetime.combine(release.date, time(18, 0), tzinfo=UTC).timestamp())
    return int(release_instant(release.date.year, release.date.month).timestamp())


@cache
def _times_of_day() -> tuple[str, ...]:
    """The `HH:MM:SSZ` text of every second of a day."""
    return tuple(
        f"{h:02d}:{m:02d}:{s:02d}Z" for h in range(24) for m in range(60) for s in range(60)
    )


class _Iso:
    """ISO-8601 'Z' strings for epoch seconds.

    strftime per timestamp would cost a fifth of the run: dates are cached as they come, and the
    time of day is looked up in a table of all 86,400 seconds.
    """

    def __init__(self) -> None:
        self._days: dict[int, str] = {}
        self._time_of_day = _times_of_day()

    def __call__(self, seconds: int) -> str:
        day, rest = divmod(seconds, _DAY)
        prefix = self._days.get(day)
        if prefix is None:
            prefix = datetime.fromtimestamp(day * _DAY, UTC).strftime("%Y-%m-%dT")
            self._days[day] = prefix
        return prefix + self._time_of_day[rest]


@dataclass(frozen=True)
class _Track:
    """One OS's catalog releases as seen at as_of."""

    os: OsFamily
    #: Patch Tuesday hotpatch-track releases up to the one in force, oldest first. Past the
    #: catalog's horizon the months after it have made-up builds, newer than every catalog build.
    chain: tuple[Release, ...]
    #: Restart releases of the chain: the builds of machines that take monthly cumulative updates
    #: (their hotpatch-month builds are not hotpatch builds, and the catalog does not list them).
    restarts: tuple[Release, ...]
    positions: dict[str, Release]
    off_cycle: tuple[Release, ...]
    #: Out-of-band releases published after the release in force and before as_of.
    out_of_band: tuple[Release, ...]
    #: Regular-channel updates (monthly cumulative and out-of-band) published since the current
    #: baseline and before as_of: what a machine that left the hotpatch track runs.
    regular: tuple[Release, ...]
    #: The made-up releases past the catalog's horizon (also at the end of `chain`).
    beyond_catalog: tuple[Release, ...]
    #: The regular cumulative update of the month in force, when the catalog lists it: what a
    #: machine outside the hotpatch program runs once it has taken this month's update.
    monthly_regular: Release | None
    previous: dict[str, Release | None]
    #: Image versions (build.yymmdd) a VM could have been created from.
    image_versions: tuple[str, ...]

    @property
    def in_force(self) -> Release:
        return self.positions[IN_FORCE]


def _track(
    os: OsFamily, releases: ReleaseCatalog, calendar: Calendar, as_of: datetime
) -> _Track | None:
    slot = calendar.in_force(os, as_of)
    # The release in force, or (the catalog does not have it yet) the newest one before it.
    chain = tuple(
        r
        for r in releases.releases
        if r.os is os and r.on_track and not r.out_of_band and r.date <= slot.patch_tuesday
    )
    if not chain:
        return None
    beyond = _beyond_catalog(os, releases, calendar, slot.month)
    chain += beyond
    baseline = calendar.baseline_at_or_before(slot).month

    def age(release: Release) -> int:
        return baseline - YearMonth(release.date.year, release.date.month)

    off_cycle = tuple(r for r in chain if 3 <= age(r) <= 9) or tuple(r for r in chain if age(r) > 0)
    as_of_seconds = as_of.timestamp()
    out_of_band = tuple(
        r
        for r in releases.releases
        if r.os is os
        and r.on_track
        and r.out_of_band
        and r.date > chain[-1].date
        and _released_at(r) < as_of_seconds
    )
    regular = tuple(
        r
        for r in releases.releases
        if r.os is os
        and not r.on_track
        and YearMonth(r.date.year, r.date.month) >= baseline
        and _released_at(r) < as_of_seconds
    )
    previous: dict[str, Release | None] = {}
    for index, release in enumerate(chain):
        previous[release.build] = chain[index - 1] if index else None
    for release in out_of_band:
        previous[release.build] = chain[-1]
    for release in regular:
        # The machine came from the hotpatch-track release before the update it took instead.
        previous[release.build] = next((r for r in reversed(chain) if r.date < release.date), None)
    return _Track(
        os=os,
        chain=chain,
        restarts=tuple(r for r in chain if _restarts(r)),
        positions={
            IN_FORCE: chain[-1],
            ONE_BEHIND: chain[max(0, len(chain) - 2)],
            TWO_BEHIND: chain[max(0, len(chain) - 3)],
        },
        off_cycle=off_cycle or chain[:1],
        out_of_band=out_of_band,
        regular=regular,
        beyond_catalog=beyond,
        monthly_regular=next(
            (r for r in reversed(regular) if not r.out_of_band and r.date >= chain[-1].date),
            None,
        ),
        previous=previous,
        image_versions=tuple(f"{r.build}.{r.date:%y%m%d}" for r in chain[-12:]),
    )


def _restarts(release: Release) -> bool:
    """Whether installing the release restarts the machine: a baseline, or any regular update."""
    return release.kind is None or release.kind.restart


def _beyond_catalog(
    os: OsFamily, releases: ReleaseCatalog, calendar: Calendar, in_force: YearMonth
) -> tuple[Release, ...]:
    """Made-up releases for the months after the catalog's horizon, up to the one in force.

    Microsoft has published them; the catalog cannot say at which build, so each gets a build
    newer than every build the catalog knows (and no KB: the estate never names one it made up).
    """
    horizon = releases.covers_through
    newest = releases.newest_revision(os)
    known = releases.latest(os)
    if horizon is None or newest is None or known is None or in_force <= horizon:
        return ()
    major = known.build.split(".", 1)[0]
    made_up: list[Release] = []
    month, step = horizon.shift(1), 1
    while month <= in_force:
        slot = calendar.slot(os, month)
        made_up.append(
            Release.model_construct(
                os=os,
                date=slot.patch_tuesday,
                kind=slot.kind,
                build=f"{major}.{newest + step * BEYOND_CATALOG_STEP}",
                kb=None,
                out_of_band=False,
                channel=Channel.HOTPATCH,
            )
        )
        month, step = month.shift(1), step + 1
    return tuple(made_up)


@dataclass(frozen=True)
class _Group:
    subscription: str
    resource_group: str
    location: str
    #: "/subscriptions/<sub>/resourceGroups/<rg>/providers/"
    prefix: str


@dataclass
class _Place:
    group: _Group
    location: str


@dataclass(slots=True)
class _Target:
    """A machine its patch rows are written for."""

    id: str
    place: _Place
    #: The machine's resource type; patch row types hang off it.
    base: str
    linux: bool
    started_by: str


#: (start, status, reboot status, installed, failed) of one installation run.
_Run = tuple[int, str, str, int, int]


@dataclass
class _UniformSet:
    """The Uniform scale set whose instances the next Uniform entries are."""

    id: str
    name: str
    place: _Place
    remaining: int
    row: dict[str, Any]
    instance: int = 0


@dataclass
class _FlexibleSet:
    id: str
    name: str
    place: _Place
    remaining: int


class _Generator:
    """One run: holds the seeded random source and the output lists."""

    def __init__(self, spec: EstateSpec, releases: ReleaseCatalog) -> None:
        self.spec = spec
        self.rng = random.Random(spec.seed)
        self.random = self.rng.random
        self.getrandbits = self.rng.getrandbits
        self.iso = _Iso()
        self.now = int(spec.as_of.timestamp())
        self.released = {r.build: _released_at(r) for r in releases.releases}
        calendar = Calendar(releases)
        tracks = {os: _track(os, releases, calendar, spec.as_of) for os in OsFamily}
        self.tracks: dict[OsFamily, _Track] = {os: t for os, t in tracks.items() if t is not None}
        for track in self.tracks.values():
            self.released.update((r.build, _released_at(r)) for r in track.beyond_catalog)
        if not self.tracks:
            raise ValueError(
                f"as_of {spec.as_of.isoformat()} precedes every release in the catalog"
            )
        self.hotpatch_os = _Mix([(os, s) for os, s in HOTPATCH_OS_SHARES if os in self.tracks])
        self.ws2022 = self.tracks.get(OsFamily.WS2022)
        self.ws2025 = self.tracks.get(OsFamily.WS2025)
        self.publisher = _Mix(PUBLISHER_SPELLINGS)
        self.offer = _Mix(OFFER_SPELLINGS)
        self.position = _Mix(BUILD_POSITION_SHARES)
        self.ring = _Mix(RING_SHARES)
        self.arc_kind = _Mix(ARC_SHARES)
        self.local_kind = _Mix(AZURE_LOCAL_SHARES)
        self.reboot_setting = _Mix(REBOOT_SETTING_SHARES)
        self.security_type = _Mix(SECURITY_TYPE_SHARES)
        self.location = _Mix(LOCATIONS)
        self.tenant = self.guid()
        self._template: dict[str, Any] = {
            "id": None,
            "name": None,
            "type": None,
            "tenantId": self.tenant,
            "kind": "",
            "location": None,
            "resourceGroup": None,
            "subscriptionId": None,
            "managedBy": "",
            "sku": None,
            "plan": None,
            "properties": None,
            "tags": None,
            "identity": None,
            "zones": None,
            "extendedLocation": None,
        }
        self.resources: list[dict[str, Any]] = []
        self.assessments: list[dict[str, Any]] = []
        self.installations: list[dict[str, Any]] = []
        self.groups = self._groups()
        self.computeresources: list[dict[str, Any]] = []
        self.flexible: _FlexibleSet | None = None
        self.uniform: _UniformSet | None = None
        self.flexible_count = 0
        self.digits = max(5, len(str(spec.machines)))

    # -- small draws ---------------------------------------------------------------------------

    def guid(self) -> str:
        """A version-4-shaped GUID."""
        # bytes.hex is twice as fast as formatting the integer.
        h = ((self.getrandbits(128) & _GUID_CLEAR) | _GUID_SET).to_bytes(16).hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"

    def pick(self, options: Sequence[_T]) -> _T:
        return options[int(self.random() * len(options))]

    def between(self, low: int, high: int) -> int:
        """A uniform integer in [low, high)."""
        return low + int(self.random() * (high - low)) if high > low else low

    def _groups(self) -> list[_Group]:
        groups = []
        for _ in range(self.spec.subscriptions):
            subscription = self.guid()
            for number in range(1, self.spec.resource_groups_per_subscription + 1):
                name = f"rg-hp-{number:02d}"
                groups.append(
                    _Group(
                        subscription=subscription,
                        resource_group=name,
                        location=self.location.pick(self.random()),
                        prefix=f"/subscriptions/{subscription}/resourceGroups/{name}/providers/",
                    )
                )
        return groups

    def place(self) -> _Place:
        group = self.pick(self.groups)
        if self.random() < HOME_LOCATION_SHARE:
            return _Place(group, group.location)
        return _Place(group, self.location.pick(self.random()))

    def tags(self) -> dict[str, str]:
        tags: dict[str, str] = {}
        if self.random() < 0.9:
            tags["env"] = self.pick(ENVIRONMENTS)
        ring = self.ring.pick(self.random())
        if ring is not None:
            tags[RING_TAG] = ring
        if self.random() < 0.6:
            tags["owner"] = self.pick(OWNERS)
        return tags

    def marketplace_image(self, sku: str, track: _Track | None) -> dict[str, Any]:
        if self.random() < SKU_TITLE_CASE_SHARE:
            sku = _title_case(sku)
        image: dict[str, Any] = {
            "publisher": self.publisher.pick(self.random()),
            "offer": self.offer.pick(self.random()),
            "sku": sku,
            "version": "latest",
        }
        if track is not None:
            exact = self.pick(track.image_versions)
            image["exactVersion"] = exact
            if self.random() < 0.1:
                image["version"] = exact
        return image

    def restart_build(self, track: _Track | None) -> Release | None:
        """The build of a machine taking monthly cumulative updates: this month's regular update
        when the catalog lists it, otherwise (or when the machine missed it) a restart release."""
        if track is None or not track.restarts:
            return None
        if track.monthly_regular is not None and self.random() < MONTHLY_UPDATE_SHARE:
            return track.monthly_regular
        draw, restarts = self.random(), track.restarts
        if draw < 0.7 or len(restarts) == 1:
            return restarts[-1]
        if draw < 0.9 or len(restarts) == 2:
            return restarts[-2]
        return self.pick(restarts[:-2])

    def hotpatch_build(self, track: _Track) -> Release:
        position = self.position.pick(self.random())
        if position == OFF_CYCLE:
            return self.pick(track.off_cycle)
        if position == REGULAR:
            # Mostly this month's regular update; now and then an earlier one of the quarter.
            if track.regular:
                return track.regular[-1] if self.random() < 0.7 else self.pick(track.regular)
            position = IN_FORCE
        release = track.positions[position]
        if position == IN_FORCE and track.out_of_band and self.random() < OUT_OF_BAND_SHARE:
            release = self.pick(track.out_of_band)
        return release

    @staticmethod
    def behind(track: _Track, build: Release) -> bool:
        """Whether a machine on `build` lacks the security fixes of the release in force."""
        if build is track.in_force or (build.out_of_band and build.on_track):
            return False
        # A regular update is current once it is as new as the hotpatch-track release in force.
        return build.on_track or build.date < track.in_force.date

    # -- rows ------------------------------------------------------------------------------------

    def row(
        self,
        row_id: str,
        name: str,
        kind: str,
        place: _Place,
        properties: dict[str, Any],
    ) -> dict[str, Any]:
        """A row with every column of its table, in Resource Graph's order, as an export from
        `az graph query` or the portal has them: `kind` "" and `managedBy` "" unless a caller
        sets them, the other columns null until a caller fills them in.
        https://learn.microsoft.com/azure/governance/resource-graph/concepts/query-language"""
        # Copying a template and setting the varying columns beats a 16-key dict literal.
        row = self._template.copy()
        row["id"] = row_id
        row["name"] = name
        row["type"] = kind
        row["location"] = place.location
        row["resourceGroup"] = place.group.resource_group
        row["subscriptionId"] = place.group.subscription
        row["properties"] = properties
        return row

    def vm(
        self,
        place: _Place,
        name: str,
        image: dict[str, Any],
        os_configuration: dict[str, Any],
        instance_view: dict[str, Any],
        *,
        linux: bool = False,
        scale_set_id: str | None = None,
        started_by: str = "Platform",
    ) -> _Target:
        # The fields of docs/raw-export.md and no more: at 100,000 machines every nested dict
        # the service never reads costs generation, loading and export time.
        vm_id = f"{place.group.prefix}Microsoft.Compute/virtualMachines/{name}"
        properties: dict[str, Any] = {
            "vmId": self.guid(),
            "hardwareProfile": {"vmSize": self.pick(VM_SIZES)},
            "storageProfile": {
                "imageReference": image,
                "osDisk": {
                    "osType": "Linux" if linux else "Windows",
                    "name": f"{name}_OsDisk_1",
                    "createOption": "FromImage",
                },
            },
            "osProfile": {
                "computerName": name[:15],
                "linuxConfiguration" if linux else "windowsConfiguration": os_configuration,
            },
        }
        security_type = self.security_type.pick(self.random())
        if security_type is not None:
            properties["securityProfile"] = {"securityType": security_type}
        if scale_set_id is not None:
            properties["virtualMachineScaleSet"] = {"id": scale_set_id}
        properties["provisioningState"] = "Succeeded"
        properties["extended"] = {"instanceView": instance_view}
        row = self.row(vm_id, name, VIRTUAL_MACHINE, place, properties)
        row["tags"] = self.tags()
        if self.random() < 0.4:
            row["zones"] = [self.pick(("1", "2", "3"))]
        self.resources.append(row)
        return _Target(vm_id, place, VIRTUAL_MACHINE, linux, started_by)

    def instance_view(
        self, power: str, os_name: str | None, os_version: str | None
    ) -> dict[str, Any]:
        view: dict[str, Any] = {"powerState": {"code": _POWER_CODES[power]}}
        # A deallocated VM has no guest agent to report its OS.
        if power != "deallocated":
            if os_name is not None:
                view["osName"] = os_name
            if os_version is not None:
                view["osVersion"] = os_version
        return view

    def power(self) -> str:
        draw = self.random()
        if draw < DEALLOCATED_SHARE:
            return "deallocated"
        if draw < DEALLOCATED_SHARE + STOPPED_SHARE:
            return "stopped"
        return "running"

    def name(self, prefix: str, index: int) -> str:
        return f"{prefix}-{index:0{self.digits}d}"

    # -- patch rows -------------------------------------------------------------------------------

    def assessment(
        self,
        target: _Target,
        *,
        when: int,
        counts: dict[str, int],
        reboot_pending: bool,
        missing: Release | None = None,
    ) -> None:
        status = "Succeeded"
        draw = self.random()
        if draw < FAILED_ASSESSMENT_SHARE:
            status = "Failed"
            counts = dict.fromkeys(counts, 0)
        elif draw < FAILED_ASSESSMENT_SHARE + WARNING_ASSESSMENT_SHARE:
            status = "CompletedWithWarnings"
        linux = target.linux
        properties: dict[str, Any] = {
            "status": status,
            "rebootPending": reboot_pending,
            "osType": "Linux" if linux else "Windows",
            "patchServiceUsed": "APT" if linux else "WU",
            "startedBy": "Platform" if self.random() < 0.9 else "User",
            "startDateTime": self.iso(when - 60 - int(self.random() * 540)),
            "lastModifiedDateTime": self.iso(when),
            "availablePatchCountByClassification": counts,
        }
        if status == "Failed":
            properties["errorDetails"] = {
                "code": "AssessmentFailed",
                "message": "Windows Update returned an error while searching for updates.",
            }
        assessment_id = f"{target.id}/patchAssessmentResults/latest"
        kind = MACHINE_TYPES[target.base].assessment_type
        self.assessments.append(self.row(assessment_id, "latest", kind, target.place, properties))
        if self.spec.software_patches and not linux and status != "Failed":
            self.software_patches(target, assessment_id, when, counts, missing)

    def software_patches(
        self,
        target: _Target,
        assessment_id: str,
        when: int,
        counts: dict[str, int],
        missing: Release | None,
    ) -> None:
        """0-3 `softwarepatches` rows of what the assessment counted, from catalog KBs only."""
        offered: list[tuple[str, str, str, str, str, int]] = []
        # A release past the catalog has no KB the estate could name: it is not offered.
        if missing is not None and missing.kb is not None:
            # Cumulative updates supersede each other: only the newest is offered.
            hotpatch = not _restarts(missing)
            label = "Security Hotpatch Update" if hotpatch else "Cumulative Update"
            offered.append(
                (
                    missing.kb[2:],
                    f"{missing.date:%Y-%m} {label} for Microsoft server operating system "
                    f"({missing.kb})",
                    "Security",
                    "NeverReboots" if hotpatch else "CanRequestReboot",
                    "Critical",
                    self.released[missing.build],
                )
            )
        if counts.get("updateRollup"):
            offered.append(
                (
                    _MSRT_KB,
                    f"Windows Malicious Software Removal Tool x64 (KB{_MSRT_KB})",
                    "UpdateRollUp",
                    "NeverReboots",
                    "",
                    when - 7 * _DAY,
                )
            )
        if counts.get("definition"):
            offered.append(
                (
                    _DEFENDER_KB,
                    "Security Intelligence Update for Microsoft Defender Antivirus - "
                    f"KB{_DEFENDER_KB}",
                    "Definition",
                    "NeverReboots",
                    "",
                    when - _DAY,
                )
            )
        kind = f"{MACHINE_TYPES[target.base].assessment_type}/{SOFTWARE_PATCHES}"
        for kb, title, classification, reboot, severity, published in offered[: self.between(0, 4)]:
            patch_id = self.guid()
            properties = {
                "patchId": patch_id,
                "patchName": title,
                "kbId": kb,
                "classifications": [classification],
                "rebootBehavior": reboot,
                "msrcSeverity": severity,
                "publishedDateTime": self.iso(published),
                "assessmentState": "Available",
                "lastModifiedDateTime": self.iso(when),
            }
            row_id = f"{assessment_id}/softwarePatches/{patch_id}"
            self.assessments.append(self.row(row_id, patch_id, kind, target.place, properties))

    def installation(self, target: _Target, run: _Run) -> int:
        """One installation row; returns when the run ended."""
        start, status, reboot_status, installed, failed = run
        random = self.random
        end = min(start + 300 + int(random() * 2700), self.now - 60)
        activity = self.guid()
        properties = {
            "status": status,
            "rebootStatus": reboot_status,
            "maintenanceWindowExceeded": status == "Failed" and random() < 0.3,
            "installedPatchCount": installed,
            "failedPatchCount": failed,
            "pendingPatchCount": 0,
            "excludedPatchCount": 0,
            "notSelectedPatchCount": int(random() * 3),
            "startedBy": target.started_by,
            "startDateTime": self.iso(start),
            "lastModifiedDateTime": self.iso(end),
        }
        row_id = f"{target.id}/patchInstallationResults/{activity}"
        kind = MACHINE_TYPES[target.base].installation_type
        self.installations.append(self.row(row_id, activity, kind, target.place, properties))
        return end

    def install_history(
        self,
        target: _Target,
        track: _Track,
        build: Release,
        *,
        behind: bool,
        reboot_pending: bool,
    ) -> int:
        """The installation rows of the last 30 days, the newest consistent with `build`.

        The run that brought `build` and the one before it, routine runs that change no build
        (definitions, the removal tool), and for a machine behind, a failed try at the release it
        lacks. Returns when the last successful run ended (0 if none is left in the window).
        """
        random, released, now = self.random, self.released, self.now
        window, latest = now - _HISTORY_SECONDS, now - 120
        runs: list[_Run] = []
        # Platform patching installs a release within days of it.
        published = released[build.build]
        built = published + int(random() * max(0, min(6 * _DAY, latest - published)))
        if built >= window:
            reboot = _REBOOT_AFTER[build.kind] if build.kind is not None else "Completed"
            runs.append((built, "Succeeded", reboot, 1 + int(random() * 3), 0))
            previous = track.previous.get(build.build)
            if previous is not None and random() < 0.8:
                start = released[previous.build] + int(random() * 6 * _DAY)
                if start >= window:
                    reboot = (
                        _REBOOT_AFTER[previous.kind] if previous.kind is not None else "Completed"
                    )
                    runs.append((start, "Succeeded", reboot, 1 + int(random() * 3), 0))
        low = max(window, built + _HOUR)
        # A machine behind ran fine only before the release it lacks; after it, it would have
        # taken that release too.
        lacking = released[track.in_force.build]
        high = lacking if behind else now - _HOUR
        if high - low > _HOUR:
            for _ in range(int(random() * 2.5)):  # 0, 1 or 2 routine runs
                start = low + int(random() * (high - low))
                runs.append((start, "Succeeded", "NotNeeded", int(random() * 3), 0))
        if behind and random() < FAILED_INSTALL_SHARE:
            start = lacking + int(random() * max(0, min(8 * _DAY, latest - lacking)))
            if start >= window:
                installed = int(random() * 2)
                status = "CompletedWithWarnings" if installed else "Failed"
                runs.append((start, status, "NotNeeded", installed, 1))
        runs.sort()
        del runs[:-MAX_INSTALLATION_ROWS]
        last_success = 0
        for number, run in enumerate(runs, start=1):
            if reboot_pending and number == len(runs) and run[1] == "Succeeded":
                run = (run[0], run[1], "Required", run[3], run[4])  # noqa: PLW2901
            end = self.installation(target, run)
            if run[1] == "Succeeded":
                last_success = end
        return last_success

    def assessed_at(self, stale: bool, not_before: int) -> int:
        if stale:
            return self.now - self.between(int(STALE_AFTER.total_seconds()) + _HOUR, 21 * _DAY)
        earliest = max(self.now - _DAY, not_before + 60)
        return self.between(earliest, self.now - 30) if earliest < self.now - 30 else self.now - 30

    def windows_counts(self, behind: bool) -> dict[str, int]:
        random = self.random
        draw = random()
        # One draw for the rarer classes that can need a restart in a hotpatch month.
        rare = random()
        other_cut = OTHER_UPDATES_SHARE
        tools_cut = other_cut + TOOLS_SHARE
        feature_cut = tools_cut + FEATURE_PACK_SHARE
        return {
            "critical": 1 if behind and draw < CRITICAL_MISSING_SHARE else 0,
            "security": 1 if behind else 0,
            "updateRollup": 1 if random() < 0.2 else 0,
            "featurePack": 1 if tools_cut <= rare < feature_cut else 0,
            "servicePack": 1 if feature_cut <= rare < feature_cut + SERVICE_PACK_SHARE else 0,
            "definition": 1 if random() < 0.3 else 0,
            "tools": 1 if other_cut <= rare < tools_cut else 0,
            "updates": self.between(0, 3),
            "other": (1 + int(rare * 25)) if rare < other_cut else 0,
        }

    # -- categories -------------------------------------------------------------------------------

    def hotpatch_machine(
        self,
        index: int,
        place: _Place,
        *,
        scale_set: _FlexibleSet | None = None,
        preview: bool = False,
    ) -> None:
        """An Azure Edition VM on a hotpatch SKU (or a preview hotpatch offer)."""
        os = self.hotpatch_os.pick(self.random())
        track = self.tracks[os]
        if preview:
            offer, sku, preview_os = self.pick(PREVIEW_IMAGES)
            if preview_os in self.tracks:
                os, track = preview_os, self.tracks[preview_os]
            image = self.marketplace_image(sku, track)
            image["offer"] = offer
        else:
            sku = self.pick(HOTPATCH_SKUS[os])
            image = self.marketplace_image(sku, track)
        build = self.hotpatch_build(track)
        if scale_set is not None:
            name = f"{scale_set.name}_{(index * 2654435761) & 0xFFFFFFFF:08x}"
        else:
            name = self.name("vm", index)
        patch_mode = "AutomaticByPlatform"
        if self.random() < WRONG_PATCH_MODE_SHARE:
            patch_mode = self.pick(("AutomaticByOS", "Manual"))
        hotpatching = self.random() >= HOTPATCH_OFF_SHARE
        periodic = self.random() < PERIODIC_ASSESSMENT_SHARE
        patch_settings: dict[str, Any] = {
            "patchMode": patch_mode,
            "enableHotpatching": hotpatching,
            "assessmentMode": "AutomaticByPlatform" if periodic else "ImageDefault",
        }
        automatic_updates = patch_mode != "Manual"
        if patch_mode == "AutomaticByPlatform":
            patch_settings["automaticByPlatformSettings"] = {
                "rebootSetting": self.reboot_setting.pick(self.random()),
                "bypassPlatformSafetyChecksOnUserSchedule": self.random() < CUSTOMER_SCHEDULE_SHARE,
            }
            # AutomaticByPlatform needs enableAutomaticUpdates; some VMs have it off anyway.
            automatic_updates = self.random() >= AUTOMATIC_UPDATES_OFF_SHARE
        configuration = {
            "provisionVMAgent": True,
            "enableAutomaticUpdates": automatic_updates,
            "patchSettings": patch_settings,
        }
        power = self.power()
        os_version = None if self.random() < NO_OS_VERSION_SHARE else f"10.0.{build.build}"
        view = self.instance_view(power, _OS_NAMES[os], os_version)
        target = self.vm(
            place,
            name,
            image,
            configuration,
            view,
            scale_set_id=scale_set.id if scale_set is not None else None,
            started_by="Platform" if patch_mode == "AutomaticByPlatform" else "User",
        )
        reboot_pending = self.random() < REBOOT_PENDING_SHARE
        behind = self.behind(track, build)
        last_success = 0
        # Without the platform patching it, half of these machines were never patched here.
        if patch_mode == "AutomaticByPlatform" or self.random() < 0.5:
            last_success = self.install_history(
                target, track, build, behind=behind, reboot_pending=reboot_pending
            )
        if self.random() < NEVER_ASSESSED_SHARE:
            return
        # Deallocated machines stop assessing; their latest result is usually old.
        stale = self.random() < STALE_ASSESSMENT_SHARE or (
            power == "deallocated" and self.random() < 0.7
        )
        counts = self.windows_counts(behind)
        if behind and self.random() < MISSING_COUNTS_SHARE:
            del counts["critical"], counts["security"]
        self.assessment(
            target,
            when=self.assessed_at(stale, last_success),
            counts=counts,
            reboot_pending=reboot_pending,
            missing=track.in_force if behind else None,
        )

    def monthly_windows(
        self,
        index: int,
        place: _Place,
        image: dict[str, Any],
        track: _Track | None,
        os_name: str,
        *,
        hotpatching: bool = False,
    ) -> None:
        """A Windows VM that takes monthly cumulative updates (not on the hotpatch cycle)."""
        name = self.name("vm", index)
        build = self.restart_build(track)
        patch_mode = self.pick(("AutomaticByOS", "AutomaticByOS", "AutomaticByPlatform", "Manual"))
        configuration = {
            "provisionVMAgent": True,
            "enableAutomaticUpdates": patch_mode != "Manual",
            "patchSettings": {
                "patchMode": patch_mode,
                "enableHotpatching": hotpatching and patch_mode == "AutomaticByPlatform",
                "assessmentMode": "AutomaticByPlatform" if self.random() < 0.6 else "ImageDefault",
            },
        }
        power = self.power()
        view = self.instance_view(power, os_name, f"10.0.{build.build}" if build else None)
        target = self.vm(
            place,
            name,
            image,
            configuration,
            view,
            started_by="Platform" if patch_mode == "AutomaticByPlatform" else "User",
        )
        behind = track is not None and build is not None and self.behind(track, build)
        last_success = 0
        if track is not None and build is not None and self.random() < 0.6:
            last_success = self.install_history(
                target, track, build, behind=False, reboot_pending=False
            )
        if self.random() < 0.15:
            return
        self.assessment(
            target,
            when=self.assessed_at(self.random() < 0.1, last_success),
            counts=self.windows_counts(behind),
            reboot_pending=self.random() < 0.05,
            missing=track.in_force if behind and track is not None else None,
        )

    def desktop_vm(self, index: int, place: _Place) -> None:
        sku = self.pick(DESKTOP_SKUS)
        self.monthly_windows(
            index,
            place,
            self.marketplace_image(sku, self.ws2022),
            self.ws2022,
            _OS_NAMES[OsFamily.WS2022],
            hotpatching=self.random() < HOTPATCH_ON_UNSUPPORTED_IMAGE_SHARE,
        )

    def other_windows_vm(self, index: int, place: _Place) -> None:
        sku, os, os_name = self.pick(OTHER_WINDOWS_SKUS)
        track = self.tracks.get(os) if os is not None else None
        self.monthly_windows(index, place, self.marketplace_image(sku, track), track, os_name)

    def custom_image_vm(self, index: int, place: _Place) -> None:
        os = self.hotpatch_os.pick(self.random())
        version = "ws2025" if os is OsFamily.WS2025 else "ws2022"
        draw = self.random()
        images = f"{place.group.prefix}Microsoft.Compute/"
        image: dict[str, Any]
        if draw < 0.4:
            image = {"id": f"{images}images/{version}-golden-{self.between(1, 13):02d}"}
        elif draw < 0.75:
            image = {
                "id": f"{images}galleries/gal_platform/images/{version}-azure-edition-core"
                f"/versions/1.{self.between(0, 12)}.0"
            }
        else:
            image = {
                "sharedGalleryImageId": f"/SharedGalleries/{self.tenant}-GALSHARED/Images/"
                f"{version}-hardened/Versions/latest"
            }
        self.monthly_windows(
            index,
            place,
            image,
            self.tracks[os],
            _OS_NAMES[os],
            hotpatching=self.random() < HOTPATCH_ON_UNSUPPORTED_IMAGE_SHARE,
        )

    def linux_vm(self, index: int, place: _Place) -> None:
        offer, sku, version = self.pick(LINUX_IMAGES)
        name = self.name("vm", index)
        image = {"publisher": "Canonical", "offer": offer, "sku": sku, "version": "latest"}
        patch_mode = "AutomaticByPlatform" if self.random() < 0.5 else "ImageDefault"
        configuration = {
            "disablePasswordAuthentication": True,
            "provisionVMAgent": True,
            "patchSettings": {"patchMode": patch_mode, "assessmentMode": "AutomaticByPlatform"},
        }
        view = self.instance_view(self.power(), "ubuntu", version)
        target = self.vm(
            place,
            name,
            image,
            configuration,
            view,
            linux=True,
            started_by="Platform" if patch_mode == "AutomaticByPlatform" else "User",
        )
        if self.random() < 0.5:
            start = self.now - self.between(_HOUR, 25 * _DAY)
            self.installation(target, (start, "Succeeded", "NotNeeded", self.between(1, 40), 0))
        if self.random() < 0.15:
            return
        self.assessment(
            target,
            when=self.assessed_at(self.random() < 0.1, 0),
            counts={
                "critical": self.between(0, 2),
                "security": self.between(0, 6),
                "other": self.between(0, 20),
            },
            reboot_pending=self.random() < 0.05,
        )

    def scale_set_row(
        self, place: _Place, name: str, mode: str, capacity: int, image: dict[str, Any] | None
    ) -> dict[str, Any]:
        scale_set_id = f"{place.group.prefix}Microsoft.Compute/virtualMachineScaleSets/{name}"
        properties: dict[str, Any] = {
            "orchestrationMode": mode,
            "uniqueId": self.guid(),
            "platformFaultDomainCount": 1 if mode == "Flexible" else 5,
            "singlePlacementGroup": False,
        }
        if mode == "Uniform":
            properties["upgradePolicy"] = {"mode": self.pick(("Manual", "Automatic", "Rolling"))}
        if image is not None:
            properties["virtualMachineProfile"] = {
                "storageProfile": {
                    "imageReference": image,
                    "osDisk": {
                        "osType": "Windows",
                        "createOption": "FromImage",
                        "caching": "ReadWrite",
                        "managedDisk": {"storageAccountType": "Premium_LRS"},
                    },
                },
                "osProfile": {
                    "computerNamePrefix": name[:9],
                    "adminUsername": "azureadmin",
                    "windowsConfiguration": {
                        "provisionVMAgent": True,
                        "enableAutomaticUpdates": True,
                        "patchSettings": {
                            "patchMode": "AutomaticByPlatform",
                            "enableHotpatching": self.random() < 0.7,
                            "assessmentMode": "AutomaticByPlatform",
                        },
                    },
                },
            }
        properties["provisioningState"] = "Succeeded"
        properties["timeCreated"] = self.iso(self.now - self.between(30 * _DAY, 700 * _DAY))
        row = self.row(scale_set_id, name, SCALE_SET, place, properties)
        row["tags"] = self.tags()
        row["sku"] = {"name": self.pick(VM_SIZES), "tier": "Standard", "capacity": capacity}
        self.resources.append(row)
        return row

    def uniform_scale_set(self, index: int, place: _Place) -> None:
        """A Uniform scale set entry: a new scale set, or the next instance of the current one."""
        scale_set = self.uniform
        if scale_set is not None and scale_set.remaining > 0:
            scale_set.remaining -= 1
            self.uniform_instance(scale_set)
            return
        os = self.hotpatch_os.pick(self.random())
        track = self.tracks[os]
        if self.random() < 0.7:
            image = self.marketplace_image(self.pick(HOTPATCH_SKUS[os]), track)
        else:
            image = self.marketplace_image("2022-datacenter-g2", self.ws2022)
        size = self.between(UNIFORM_SCALE_SET_SIZE[0], UNIFORM_SCALE_SET_SIZE[1] + 1)
        name = self.name("vmss", index)
        row = self.scale_set_row(place, name, "Uniform", size, image)
        self.uniform = _UniformSet(row["id"], name, place, size, row)

    def uniform_instance(self, scale_set: _UniformSet) -> None:
        """An instance of a Uniform scale set: a `computeresources` row built from the set's model.

        Update Manager does not assess or patch Uniform instances, so they have no patch rows.
        The properties are those of a scale set VM in ARM (`latestModelApplied`, the model's
        storage and OS profiles).
        https://learn.microsoft.com/rest/api/compute/virtual-machine-scale-set-vms/get
        """
        number = scale_set.instance
        scale_set.instance += 1
        model = scale_set.row["properties"]["virtualMachineProfile"]
        profile = model["osProfile"]
        properties: dict[str, Any] = {
            "latestModelApplied": self.random() >= UNIFORM_OUTDATED_MODEL_SHARE,
            "vmId": self.guid(),
            "storageProfile": {
                "imageReference": model["storageProfile"]["imageReference"],
                "osDisk": {
                    "osType": "Windows",
                    "name": f"{scale_set.name}_{number}_OsDisk_1",
                    "createOption": "FromImage",
                },
            },
            "osProfile": {
                "computerName": f"{profile['computerNamePrefix']}{number:06d}",
                "windowsConfiguration": profile["windowsConfiguration"],
            },
            "provisioningState": "Succeeded",
        }
        row = self.row(
            f"{scale_set.id}/virtualMachines/{number}",
            f"{scale_set.name}_{number}",
            SCALE_SET_INSTANCE,
            scale_set.place,
            properties,
        )
        row["sku"] = {"name": scale_set.row["sku"]["name"], "tier": "Standard"}
        row["tags"] = scale_set.row["tags"]
        self.computeresources.append(row)

    def flexible_member(self, index: int, place: _Place) -> None:
        scale_set = self.flexible
        if scale_set is None or scale_set.remaining == 0:
            self.flexible_count += 1
            size = self.between(FLEXIBLE_SCALE_SET_SIZE[0], FLEXIBLE_SCALE_SET_SIZE[1] + 1)
            name = f"vmss-flex-{self.flexible_count:03d}"
            os = self.hotpatch_os.pick(self.random())
            image = (
                self.marketplace_image(self.pick(HOTPATCH_SKUS[os]), self.tracks[os])
                if self.random() < 0.7
                else None
            )
            scale_set_id = self.scale_set_row(place, name, "Flexible", size, image)["id"]
            scale_set = self.flexible = _FlexibleSet(scale_set_id, name, place, size)
        scale_set.remaining -= 1
        self.hotpatch_machine(index, scale_set.place, scale_set=scale_set)

    def arc_machine(self, index: int, place: _Place) -> None:
        kind = self.arc_kind.pick(self.random())
        if self.ws2025 is None:
            kind = ARC_WS2022
        track = self.ws2025 if kind != ARC_WS2022 else self.ws2022
        name = self.name("arc", index)
        machine_id = f"{place.group.prefix}Microsoft.HybridCompute/machines/{name}"
        datacenter = self.random() < 0.6
        year = "2022" if kind == ARC_WS2022 else "2025"
        connected = self.random() >= ARC_DISCONNECTED_SHARE
        build: Release | None = None
        behind = False
        patch_settings: dict[str, Any] = {
            "assessmentMode": "AutomaticByPlatform",
            "patchMode": "AutomaticByPlatform",
        }
        features: list[dict[str, str]] | None = None
        if kind == ARC_WS2025_ENROLLED and track is not None:
            build = self.hotpatch_build(track)
            behind = self.behind(track, build)
            patch_settings["enableHotpatching"] = True
            patch_settings["status"] = {"hotpatchEnablementStatus": "Enabled"}
            features = [{"name": "Hotpatch", "subscriptionStatus": "Enabled"}]
        elif kind == ARC_WS2025_NOT_ENROLLED:
            build = self.restart_build(track)
            variant = self.between(0, 4)
            if variant == 0:
                patch_settings["enableHotpatching"] = False
                patch_settings["status"] = {"hotpatchEnablementStatus": "Disabled"}
                features = [{"name": "Hotpatch", "subscriptionStatus": "Disabled"}]
            elif variant == 1:
                # Licensed, but VBS is off: the agent asks for action.
                patch_settings["enableHotpatching"] = True
                patch_settings["status"] = {"hotpatchEnablementStatus": "ActionRequired"}
                features = [{"name": "Hotpatch", "subscriptionStatus": "Enabled"}]
            elif variant == 2:
                patch_settings["enableHotpatching"] = True
                patch_settings["status"] = {"hotpatchEnablementStatus": "PendingEvaluation"}
                features = [{"name": "Hotpatch", "subscriptionStatus": "Enabling"}]
            # variant 3: the Hotpatch feature was never added.
        elif kind == ARC_WS2025_TOO_OLD:
            patch_settings["enableHotpatching"] = True
            patch_settings["status"] = {"hotpatchEnablementStatus": "ActionRequired"}
            features = [{"name": "Hotpatch", "subscriptionStatus": "Enabled"}]
        else:
            build = self.restart_build(track)
        if kind == ARC_WS2025_TOO_OLD:
            os_version: str | None = f"10.0.{ARC_TOO_OLD_BUILD}"
        else:
            os_version = f"10.0.{build.build}" if build is not None else None
        properties: dict[str, Any] = {
            "provisioningState": "Succeeded",
            "status": "Connected" if connected else "Disconnected",
            "lastStatusChange": self.iso(
                self.now
                - (
                    self.between(_HOUR, 5 * _DAY)
                    if connected
                    else self.between(4 * _DAY, 60 * _DAY)
                )
            ),
            "vmId": self.guid(),
            "machineFqdn": f"{name}.corp.contoso.com",
            "osType": "windows",
            "osName": "windows",
        }
        if os_version is not None:
            properties["osVersion"] = os_version
        edition = "Datacenter" if datacenter else "Standard"
        properties["osSku"] = f"Windows Server {year} {edition}"
        properties["osEdition"] = f"server{edition.lower()}"
        properties["osProfile"] = {
            "computerName": name,
            "windowsConfiguration": {"patchSettings": patch_settings},
        }
        if features is not None:
            properties["licenseProfile"] = {"productProfile": {"productFeatures": features}}
        properties["cloudMetadata"] = {"provider": self.pick(("N/A", "N/A", "AWS", "GCP"))}
        self.add_arc(
            machine_id,
            name,
            place,
            properties,
            arc_kind="",
            build=build,
            track=track,
            connected=connected,
            behind=behind,
            missing_updates=behind or kind != ARC_WS2025_ENROLLED,
        )

    def add_arc(
        self,
        machine_id: str,
        name: str,
        place: _Place,
        properties: dict[str, Any],
        *,
        arc_kind: str,
        build: Release | None,
        track: _Track | None,
        connected: bool,
        behind: bool,
        missing_updates: bool,
    ) -> None:
        """An Arc machine's row (its `kind` column says where it runs), install history and
        latest assessment."""
        row = self.row(machine_id, name, ARC_MACHINE, place, properties)
        if arc_kind:
            row["kind"] = arc_kind
        row["tags"] = self.tags()
        row["identity"] = {
            "type": "SystemAssigned",
            "principalId": self.guid(),
            "tenantId": self.tenant,
        }
        self.resources.append(row)
        target = _Target(machine_id, place, ARC_MACHINE, False, "Platform")
        last_success = 0
        if build is not None and track is not None and connected and self.random() < 0.8:
            last_success = self.install_history(
                target, track, build, behind=behind, reboot_pending=False
            )
        if self.random() < 0.1:
            return
        self.assessment(
            target,
            when=self.assessed_at(not connected or self.random() < 0.05, last_success),
            counts=self.windows_counts(missing_updates),
            reboot_pending=self.random() < REBOOT_PENDING_SHARE,
            missing=track.in_force if behind and track is not None else None,
        )

    def azure_local_machine(self, index: int, place: _Place) -> None:
        """A Windows Server guest on Azure Local, seen through Azure Arc (`kind` "HCI").

        Azure Edition guests take hotpatches as Azure Edition VMs do; the others take monthly
        cumulative updates. https://learn.microsoft.com/windows-server/get-started/hotpatch
        """
        variant = self.local_kind.pick(self.random())
        os = OsFamily.WS2022 if variant == LOCAL_WS2022_AZURE_EDITION else OsFamily.WS2025
        if variant == LOCAL_OTHER:
            os = self.hotpatch_os.pick(self.random())
        if os not in self.tracks:
            os = OsFamily.WS2022
        track = self.tracks.get(os)
        azure_edition = variant != LOCAL_OTHER
        name = self.name("hci", index)
        machine_id = f"{place.group.prefix}Microsoft.HybridCompute/machines/{name}"
        connected = self.random() >= ARC_DISCONNECTED_SHARE / 2  # on-premises, yet managed
        patch_settings: dict[str, Any] = {
            "assessmentMode": (
                "AutomaticByPlatform"
                if self.random() < PERIODIC_ASSESSMENT_SHARE
                else "ImageDefault"
            ),
            "patchMode": "AutomaticByPlatform",
        }
        build: Release | None
        if azure_edition and track is not None:
            build = self.hotpatch_build(track)
            behind = self.behind(track, build)
            patch_settings["enableHotpatching"] = self.random() >= HOTPATCH_OFF_SHARE
        else:
            build = self.restart_build(track)
            behind = track is not None and build is not None and self.behind(track, build)
        year = "2022" if os is OsFamily.WS2022 else "2025"
        edition = "Datacenter" if azure_edition or self.random() < 0.6 else "Standard"
        properties: dict[str, Any] = {
            "provisioningState": "Succeeded",
            "status": "Connected" if connected else "Disconnected",
            "lastStatusChange": self.iso(
                self.now
                - (
                    self.between(_HOUR, 5 * _DAY)
                    if connected
                    else self.between(4 * _DAY, 30 * _DAY)
                )
            ),
            "vmId": self.guid(),
            "machineFqdn": f"{name}.corp.contoso.com",
            "osType": "windows",
            "osName": "windows",
        }
        if build is not None:
            properties["osVersion"] = f"10.0.{build.build}"
        if azure_edition:
            properties["osSku"] = f"Windows Server {year} Datacenter: Azure Edition"
            properties["osEdition"] = AZURE_EDITION_EDITION_ID
        else:
            properties["osSku"] = f"Windows Server {year} {edition}"
            properties["osEdition"] = f"server{edition.lower()}"
        properties["osProfile"] = {
            "computerName": name,
            "windowsConfiguration": {"patchSettings": patch_settings},
        }
        self.add_arc(
            machine_id,
            name,
            place,
            properties,
            arc_kind="HCI",
            build=build,
            track=track,
            connected=connected,
            behind=behind,
            missing_updates=behind,
        )

    def run(self) -> Estate:
        categories = _deal(self.spec.machines, CATEGORY_SHARES)
        self.rng.shuffle(categories)
        makers: dict[str, Callable[[int, _Place], None]] = {
            HOTPATCH_VM: self.hotpatch_machine,
            AZURE_EDITION_DESKTOP: self.desktop_vm,
            OTHER_WINDOWS: self.other_windows_vm,
            CUSTOM_IMAGE: self.custom_image_vm,
            PREVIEW_IMAGE: lambda index, place: self.hotpatch_machine(index, place, preview=True),
            LINUX: self.linux_vm,
            FLEXIBLE_MEMBER: self.flexible_member,
            UNIFORM_SCALE_SET: self.uniform_scale_set,
            ARC: self.arc_machine,
            AZURE_LOCAL: self.azure_local_machine,
        }
        for index, category in enumerate(categories, start=1):
            makers[category](index, self.place())
        return Estate(self.resources, self.assessments, self.installations, self.computeresources)
