"""The estate's mix: what share of machines has each image, setting, build and fault."""

from __future__ import annotations

from bisect import bisect
from collections.abc import Sequence
from datetime import timedelta
from typing import Generic, TypeVar

from hotpatch.core.models import OsFamily

# ---------------------------------------------------------------------------------------------
# The mix. Shares are targets: categories are dealt exactly (largest remainder, then shuffled),
# attributes inside a category are drawn per machine.
# ---------------------------------------------------------------------------------------------

HOTPATCH_VM = "hotpatch_vm"  # Azure Edition VM on one of the 8 hotpatch SKUs
AZURE_EDITION_DESKTOP = "azure_edition_desktop"  # WS2022 Azure Edition with Desktop Experience
OTHER_WINDOWS = "other_windows"  # marketplace Windows Server that is not Azure Edition
CUSTOM_IMAGE = "custom_image"  # managed image or Azure Compute Gallery image
PREVIEW_IMAGE = "preview_image"  # hotpatch preview offers, not in the documented list
LINUX = "linux"
FLEXIBLE_MEMBER = "flexible_member"  # VM in a Flexible scale set, on a hotpatch SKU
#: A Uniform scale set (in `resources`) or one of its instances (in `computeresources`): each
#: set takes one entry, then its instances the next ones.
UNIFORM_SCALE_SET = "uniform_scale_set"
ARC = "arc"  # Azure Arc-enabled server
#: An Arc machine on Azure Local (the row's `kind` column is "HCI"): Windows Server Azure Edition
#: guests, which take hotpatches as Azure Edition does, and other Windows Server guests.
#: https://learn.microsoft.com/windows-server/get-started/hotpatch (Azure, Azure Local, Arc)
AZURE_LOCAL = "azure_local"

#: Share of the machine entries (VMs, Arc machines, Uniform scale sets and their instances; these
#: are what `EstateSpec.machines` counts). Flexible scale set rows come on top: they only inform
#: their members.
CATEGORY_SHARES: tuple[tuple[str, float], ...] = (
    (HOTPATCH_VM, 0.57),
    (AZURE_EDITION_DESKTOP, 0.06),
    (OTHER_WINDOWS, 0.08),
    (CUSTOM_IMAGE, 0.04),
    (PREVIEW_IMAGE, 0.005),
    (LINUX, 0.09),
    (FLEXIBLE_MEMBER, 0.03),
    (UNIFORM_SCALE_SET, 0.02),
    (ARC, 0.08),
    (AZURE_LOCAL, 0.025),
)

#: OS of the Azure Edition hotpatch machines (VMs and Flexible members).
HOTPATCH_OS_SHARES: tuple[tuple[OsFamily, float], ...] = (
    (OsFamily.WS2022, 0.55),
    (OsFamily.WS2025, 0.45),
)
#: DOMAIN.md §2: the only images that take hotpatches.
HOTPATCH_SKUS: dict[OsFamily, tuple[str, ...]] = {
    OsFamily.WS2022: (
        "2022-datacenter-azure-edition-core",
        "2022-datacenter-azure-edition-core-smalldisk",
        "2022-datacenter-azure-edition-hotpatch",
        "2022-datacenter-azure-edition-hotpatch-smalldisk",
    ),
    OsFamily.WS2025: (
        "2025-datacenter-azure-edition",
        "2025-datacenter-azure-edition-smalldisk",
        "2025-datacenter-azure-edition-core",
        "2025-datacenter-azure-edition-core-smalldisk",
    ),
}
#: WS2022 Azure Edition with Desktop Experience: Azure Edition, yet not hotpatchable.
DESKTOP_SKUS: tuple[str, ...] = (
    "2022-datacenter-azure-edition",
    "2022-datacenter-azure-edition-smalldisk",
)
#: Marketplace Windows Server that is not Azure Edition. OS None: a WS2019 build, which the
#: catalog does not list, so these report no osVersion rather than an invented one.
OTHER_WINDOWS_SKUS: tuple[tuple[str, OsFamily | None, str], ...] = (
    ("2019-datacenter", None, "Windows Server 2019 Datacenter"),
    ("2019-datacenter-gensecond", None, "Windows Server 2019 Datacenter"),
    ("2022-datacenter-g2", OsFamily.WS2022, "Windows Server 2022 Datacenter"),
    ("2022-datacenter", OsFamily.WS2022, "Windows Server 2022 Datacenter"),
)
#: Offers and SKUs that carry hotpatch in preview (a policy switch in the service, off by default).
PREVIEW_IMAGES: tuple[tuple[str, str, OsFamily], ...] = (
    (
        "WindowsServerHotpatch-previews",
        "Windows-Server-2022-Azure-Edition-Hotpatch",
        OsFamily.WS2022,
    ),
    (
        "microsoftserveroperatingsystems-previews",
        "windows-server-2025-azure-edition-hotpatch",
        OsFamily.WS2025,
    ),
)
LINUX_IMAGES: tuple[tuple[str, str, str], ...] = (
    ("0001-com-ubuntu-server-jammy", "22_04-lts-gen2", "22.04"),
    ("ubuntu-24_04-lts", "server", "24.04"),
    ("0001-com-ubuntu-server-focal", "20_04-lts-gen2", "20.04"),
)
#: Real inventories spell the marketplace names both ways; the service must compare them
#: case-insensitively, so the estate mixes them.
PUBLISHER_SPELLINGS: tuple[tuple[str, float], ...] = (
    ("MicrosoftWindowsServer", 0.7),
    ("microsoftwindowsserver", 0.3),
)
OFFER_SPELLINGS: tuple[tuple[str, float], ...] = (("WindowsServer", 0.75), ("windowsserver", 0.25))
SKU_TITLE_CASE_SHARE = 0.2  # "2022-Datacenter-Azure-Edition-Core"

# Among hotpatch machines (Azure Edition VMs and Flexible members); independent draws.
HOTPATCH_OFF_SHARE = 0.05  # enableHotpatching false on an eligible image
WRONG_PATCH_MODE_SHARE = 0.04  # AutomaticByOS or Manual
DEALLOCATED_SHARE = 0.04
STOPPED_SHARE = 0.01
NEVER_ASSESSED_SHARE = 0.05  # no assessment row at all
STALE_ASSESSMENT_SHARE = 0.06  # latest assessment older than STALE_AFTER
REBOOT_PENDING_SHARE = 0.03
NO_OS_VERSION_SHARE = 0.02  # instance view without osVersion (besides deallocated machines)
#: Of the assessments of machines behind, those that carry no critical/security counts at all.
MISSING_COUNTS_SHARE = 0.03
FAILED_ASSESSMENT_SHARE = 0.01
WARNING_ASSESSMENT_SHARE = 0.02
#: Of the desktop Azure Edition and custom-image VMs, those with enableHotpatching true anyway:
#: the image gate must win over the setting.
HOTPATCH_ON_UNSUPPORTED_IMAGE_SHARE = 0.1
#: Which catalog build a hotpatch machine runs, relative to the release in force at as_of.
#: "off_cycle" is behind the current baseline: a build 3-9 months older than it. "regular" took
#: the month's regular cumulative update (or a regular out-of-band one) instead of the hotpatch:
#: a catalog row of the regular channel, current on security yet off the hotpatch track.
#: Past the catalog's horizon "in_force" and the months before it are builds newer than every
#: build the catalog knows (the generator makes them up: Microsoft published them, the catalog
#: does not say which).
IN_FORCE, ONE_BEHIND, TWO_BEHIND, OFF_CYCLE = "in_force", "one_behind", "two_behind", "off_cycle"
REGULAR = "regular"
BUILD_POSITION_SHARES: tuple[tuple[str, float], ...] = (
    (IN_FORCE, 0.59),
    (ONE_BEHIND, 0.155),
    (TWO_BEHIND, 0.115),
    (OFF_CYCLE, 0.08),
    (REGULAR, 0.06),
)
#: How far apart the made-up builds of the months past the catalog are (revisions per month).
BEYOND_CATALOG_STEP = 90
#: Of the Windows machines outside the hotpatch program (monthly cumulative updates), those on
#: this month's regular update, when the catalog lists it; the rest on earlier restart builds.
MONTHLY_UPDATE_SHARE = 0.6
#: Of the machines in force, those that also took an out-of-band release published since.
OUT_OF_BAND_SHARE = 0.3
#: Of the machines behind, those with a recent failed installation attempt.
FAILED_INSTALL_SHARE = 0.4
#: Of the machines behind, those whose assessment also counts a missing critical update.
CRITICAL_MISSING_SHARE = 0.25
#: `hotpatch-ring` tag values; None = no ring tag.
RING_TAG = "hotpatch-ring"
RING_SHARES: tuple[tuple[str | None, float], ...] = (
    ("ring0", 0.05),
    ("ring1", 0.25),
    (None, 0.08),
    ("ring2", 0.62),
)

# Azure Arc.
ARC_WS2025_ENROLLED, ARC_WS2025_NOT_ENROLLED = "ws2025_enrolled", "ws2025_not_enrolled"
ARC_WS2025_TOO_OLD, ARC_WS2022 = "ws2025_too_old", "ws2022"
ARC_SHARES: tuple[tuple[str, float], ...] = (
    (ARC_WS2025_ENROLLED, 0.55),
    (ARC_WS2025_NOT_ENROLLED, 0.20),
    (ARC_WS2025_TOO_OLD, 0.08),
    (ARC_WS2022, 0.17),
)
ARC_DISCONNECTED_SHARE = 0.08
#: Azure Local guests: Azure Edition of each OS, and Windows Server that is not Azure Edition.
LOCAL_WS2025_AZURE_EDITION, LOCAL_WS2022_AZURE_EDITION = (
    "ws2025_azure_edition",
    "ws2022_azure_edition",
)
LOCAL_OTHER = "not_azure_edition"
AZURE_LOCAL_SHARES: tuple[tuple[str, float], ...] = (
    (LOCAL_WS2025_AZURE_EDITION, 0.4),
    (LOCAL_WS2022_AZURE_EDITION, 0.3),
    (LOCAL_OTHER, 0.3),
)
#: `properties.osSku` of an Arc machine is the OS's product name ("Windows Server 2022
#: Datacenter", and for Azure Edition guests on Azure Local "Windows Server 2022 Datacenter: Azure
#: Edition": https://github.com/MicrosoftDocs/azure-stack-docs/blob/main/azure-stack/hci/manage/windows-server-azure-edition.md).
#: `osEdition` is the lower-cased Windows edition id, "serverturbine" for Azure Edition: the id is
#: Windows' own, that Arc reports it so is not documented by Microsoft (the parser keys on osSku).
AZURE_EDITION_EDITION_ID = "serverturbine"
#: A WS2025 build older than the Arc hotpatch minimum (26100.1742); besides the builds past the
#: catalog's horizon, the only build in the estate that is not from the release catalog, on
#: purpose: it predates the catalog.
ARC_TOO_OLD_BUILD = "26100.1000"

STALE_AFTER = timedelta(hours=72)
#: Resource Graph keeps 30 days of installation history.
INSTALLATION_HISTORY = timedelta(days=30)
MAX_INSTALLATION_ROWS = 3
FLEXIBLE_SCALE_SET_SIZE = (2, 12)
#: Instances of a Uniform scale set (the set itself takes one more entry).
UNIFORM_SCALE_SET_SIZE = (2, 9)
UNIFORM_OUTDATED_MODEL_SHARE = 0.1  # instances not on the scale set's latest model

# Platform settings of hotpatch machines (DOMAIN.md §3), drawn independently.
#: `enableAutomaticUpdates` false although patchMode is AutomaticByPlatform, which needs it.
AUTOMATIC_UPDATES_OFF_SHARE = 0.03
#: `patchSettings.assessmentMode` AutomaticByPlatform (periodic, every 24 h); the rest ImageDefault.
PERIODIC_ASSESSMENT_SHARE = 0.85
#: `automaticByPlatformSettings.bypassPlatformSafetyChecksOnUserSchedule`: customer schedules.
CUSTOMER_SCHEDULE_SHARE = 0.3
REBOOT_SETTING_SHARES: tuple[tuple[str, float], ...] = (
    ("IfRequired", 0.78),
    ("Never", 0.12),
    ("Always", 0.06),
    ("Unknown", 0.04),
)
#: `securityProfile.securityType` of VMs; None: absent (Standard).
SECURITY_TYPE_SHARES: tuple[tuple[str | None, float], ...] = (
    ("TrustedLaunch", 0.62),
    ("ConfidentialVM", 0.03),
    ("Standard", 0.05),
    (None, 0.30),
)
#: Of Windows assessments, those that also count non-security updates that can need a restart
#: in a hotpatch month (.NET and the like in `other`, `tools`, feature and service packs). The
#: classification names: https://learn.microsoft.com/javascript/api/@azure/arm-hybridcompute/availablepatchcountbyclassification
OTHER_UPDATES_SHARE = 0.08
TOOLS_SHARE = 0.02
FEATURE_PACK_SHARE = 0.01
SERVICE_PACK_SHARE = 0.005

LOCATIONS: tuple[tuple[str, float], ...] = (
    ("westeurope", 0.22),
    ("northeurope", 0.12),
    ("eastus", 0.16),
    ("eastus2", 0.1),
    ("westus2", 0.08),
    ("centralus", 0.05),
    ("uksouth", 0.08),
    ("germanywestcentral", 0.05),
    ("swedencentral", 0.04),
    ("southeastasia", 0.05),
    ("australiaeast", 0.05),
)
#: Most machines sit in their resource group's region; the rest anywhere.
HOME_LOCATION_SHARE = 0.85
VM_SIZES: tuple[str, ...] = (
    "Standard_D2s_v5",
    "Standard_D4s_v5",
    "Standard_D8s_v5",
    "Standard_E4s_v5",
    "Standard_B2ms",
    "Standard_D4as_v5",
    "Standard_F4s_v2",
)
ENVIRONMENTS: tuple[str, ...] = ("prod", "prod", "prod", "test", "dev")
OWNERS: tuple[str, ...] = ("platform", "payments", "identity", "data", "web", "erp")

_T = TypeVar("_T")


class _Mix(Generic[_T]):
    """A weighted choice driven by one uniform draw (bisect beats random.choices here)."""

    def __init__(self, shares: Sequence[tuple[_T, float]]) -> None:
        self.values = tuple(value for value, _ in shares)
        total, running = sum(share for _, share in shares), 0.0
        self.bounds: list[float] = []
        for _, share in shares:
            running += share / total
            self.bounds.append(running)
        self.bounds[-1] = 1.0

    def pick(self, draw: float) -> _T:
        # draw < 1.0 = bounds[-1], so bisect stays inside the list.
        return self.values[bisect(self.bounds, draw)]


def _deal(count: int, shares: Sequence[tuple[str, float]]) -> list[str]:
    """`count` labels in the given shares exactly (largest remainder), not yet shuffled."""
    total = sum(share for _, share in shares)
    exact = [count * share / total for _, share in shares]
    counts = [int(value) for value in exact]
    by_remainder = sorted(range(len(shares)), key=lambda i: (counts[i] - exact[i], i))
    for i in by_remainder[: count - sum(counts)]:
        counts[i] += 1
    return [label for (label, _), n in zip(shares, counts, strict=True) for _ in range(n)]
