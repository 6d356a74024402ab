"""Every reason code, declared once: the state it implies, its actions and its meaning."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from hotpatch.core.models import Action, State


class ReasonCode(StrEnum):
    """Stable machine-readable codes. `rule` gives each one's state, actions and meaning."""

    # availability
    DEALLOCATED = "deallocated"
    STOPPED = "stopped"
    ARC_DISCONNECTED = "arc_disconnected"
    MALFORMED_RECORD = "malformed_record"
    MISSING_IMAGE_DATA = "missing_image_data"
    BUILD_NOT_RECOGNISED = "build_not_recognised"
    # eligibility
    NOT_WINDOWS = "not_windows"
    CUSTOM_IMAGE = "custom_image"
    SKU_NOT_HOTPATCHABLE = "sku_not_hotpatchable"
    AZURE_EDITION_DESKTOP_2022 = "azure_edition_desktop_2022"
    PREVIEW_OFFER = "preview_offer"
    UNIFORM_SCALE_SET = "uniform_scale_set"
    ARC_BUILD_TOO_OLD = "arc_build_too_old"
    HOTPATCH_PROGRAM_ENDED = "hotpatch_program_ended"
    # configuration
    HOTPATCH_DISABLED = "hotpatch_disabled"
    PATCH_MODE_NOT_PLATFORM = "patch_mode_not_platform"
    VM_AGENT_NOT_PROVISIONED = "vm_agent_not_provisioned"
    AUTOMATIC_UPDATES_DISABLED = "automatic_updates_disabled"
    ARC_NOT_ENROLLED = "arc_not_enrolled"
    REGULAR_CHANNEL_BUILD = "regular_channel_build"
    # assessment
    NEVER_ASSESSED = "never_assessed"
    ASSESSMENT_STALE = "assessment_stale"
    ASSESSMENT_FAILED = "assessment_failed"
    # updates
    OFF_CYCLE = "off_cycle"
    BUILD_BEHIND = "build_behind"
    MISSING_SECURITY_UPDATES = "missing_security_updates"
    REBOOT_PENDING = "reboot_pending"
    UPDATE_AVAILABLE = "update_available"
    UPDATES_PENDING = "updates_pending"
    BUILD_NOT_IN_CATALOG = "build_not_in_catalog"
    # signals: shown beside the verdict, never change it
    PERIODIC_ASSESSMENT_OFF = "periodic_assessment_off"
    CUSTOMER_MANAGED_SCHEDULE = "customer_managed_schedule"
    SECURITY_TYPE = "security_type"
    AZURE_LOCAL = "azure_local"
    RESTART_CAPABLE_UPDATES = "restart_capable_updates"

    @property
    def rule(self) -> ReasonRule:
        return RULES[self]

    @property
    def state(self) -> State | None:
        """The state this reason implies; None for a signal."""
        return RULES[self].state


@dataclass(frozen=True, slots=True)
class ReasonRule:
    #: The state the reason implies (COMPLIANT: noted, changes nothing); None: a signal.
    state: State | None
    #: The next actions it can lead to; the first is the usual one.
    actions: tuple[Action, ...]
    meaning: str

    @property
    def signal(self) -> bool:
        return self.state is None


_S, _A = State, Action
_INSTALL = (_A.INSTALL_HOTPATCH, _A.INSTALL_BASELINE)

RULES: dict[ReasonCode, ReasonRule] = {
    ReasonCode.DEALLOCATED: ReasonRule(
        _S.UNKNOWN, (_A.NONE,), "the VM is deallocated; judged again when it runs"
    ),
    ReasonCode.STOPPED: ReasonRule(
        _S.UNKNOWN, (_A.NONE,), "the VM is stopped (allocated, not running)"
    ),
    ReasonCode.ARC_DISCONNECTED: ReasonRule(
        _S.UNKNOWN, (_A.INVESTIGATE,), "the Arc agent is not connected; its data may be old"
    ),
    ReasonCode.MALFORMED_RECORD: ReasonRule(
        _S.UNKNOWN, (_A.INVESTIGATE,), "a row could not be read; the message names the field"
    ),
    ReasonCode.MISSING_IMAGE_DATA: ReasonRule(
        _S.UNKNOWN, (_A.INVESTIGATE,), "the inventory does not say which image or release it is"
    ),
    ReasonCode.BUILD_NOT_RECOGNISED: ReasonRule(
        _S.UNKNOWN, (_A.INVESTIGATE,), "the reported OS version is not a build of its release"
    ),
    ReasonCode.NOT_WINDOWS: ReasonRule(_S.NOT_ELIGIBLE, (_A.NONE,), "not a Windows machine"),
    ReasonCode.CUSTOM_IMAGE: ReasonRule(
        _S.NOT_ELIGIBLE, (_A.NONE,), "built from a custom, gallery or community image"
    ),
    ReasonCode.SKU_NOT_HOTPATCHABLE: ReasonRule(
        _S.NOT_ELIGIBLE, (_A.NONE,), "the image or edition cannot take hotpatches"
    ),
    ReasonCode.AZURE_EDITION_DESKTOP_2022: ReasonRule(
        _S.NOT_ELIGIBLE,
        (_A.NONE,),
        "WS2022 Azure Edition with Desktop Experience: use the -hotpatch SKUs",
    ),
    ReasonCode.PREVIEW_OFFER: ReasonRule(
        _S.NOT_ELIGIBLE, (_A.NONE,), "a preview offer, counted only when the policy allows it"
    ),
    ReasonCode.UNIFORM_SCALE_SET: ReasonRule(
        _S.NOT_ELIGIBLE, (_A.NONE,), "Uniform scale sets cannot be hotpatched (Flexible can)"
    ),
    ReasonCode.ARC_BUILD_TOO_OLD: ReasonRule(
        _S.NOT_ELIGIBLE, (_A.NONE,), "an Arc machine below build 26100.1742"
    ),
    ReasonCode.HOTPATCH_PROGRAM_ENDED: ReasonRule(
        _S.NOT_ELIGIBLE,
        (_A.NONE,),
        "Microsoft's hotpatch program for this release has ended (or not yet begun)",
    ),
    ReasonCode.HOTPATCH_DISABLED: ReasonRule(
        _S.MISCONFIGURED, (_A.FIX_CONFIGURATION,), "a hotpatch image with enableHotpatching off"
    ),
    ReasonCode.PATCH_MODE_NOT_PLATFORM: ReasonRule(
        _S.MISCONFIGURED, (_A.FIX_CONFIGURATION,), "patchMode is not AutomaticByPlatform"
    ),
    ReasonCode.VM_AGENT_NOT_PROVISIONED: ReasonRule(
        _S.MISCONFIGURED, (_A.FIX_CONFIGURATION,), "provisionVMAgent is false"
    ),
    ReasonCode.AUTOMATIC_UPDATES_DISABLED: ReasonRule(
        _S.MISCONFIGURED,
        (_A.FIX_CONFIGURATION,),
        "enableAutomaticUpdates is false; AutomaticByPlatform needs it",
    ),
    ReasonCode.ARC_NOT_ENROLLED: ReasonRule(
        _S.MISCONFIGURED, (_A.FIX_CONFIGURATION,), "an Arc machine not enrolled in hotpatch"
    ),
    ReasonCode.REGULAR_CHANNEL_BUILD: ReasonRule(
        _S.MISCONFIGURED,
        (_A.INVESTIGATE,),
        "on a regular cumulative (or out-of-band) update build: off the hotpatch track until "
        "the next baseline; something outside the hotpatch process installs updates",
    ),
    ReasonCode.NEVER_ASSESSED: ReasonRule(
        _S.ASSESSMENT_DUE, (_A.ASSESS,), "no patch assessment on record"
    ),
    ReasonCode.ASSESSMENT_STALE: ReasonRule(
        _S.ASSESSMENT_DUE, (_A.ASSESS,), "the latest assessment is older than the maximum age"
    ),
    ReasonCode.ASSESSMENT_FAILED: ReasonRule(
        _S.ASSESSMENT_DUE, (_A.ASSESS,), "the latest assessment failed"
    ),
    ReasonCode.OFF_CYCLE: ReasonRule(
        _S.NON_COMPLIANT,
        (_A.INSTALL_BASELINE,),
        "behind the current baseline: it cannot take hotpatches until it is back on one",
    ),
    ReasonCode.BUILD_BEHIND: ReasonRule(
        _S.NON_COMPLIANT, _INSTALL, "behind the release in force, past the grace period"
    ),
    ReasonCode.MISSING_SECURITY_UPDATES: ReasonRule(
        _S.NON_COMPLIANT, _INSTALL, "critical or security updates missing past the grace period"
    ),
    ReasonCode.REBOOT_PENDING: ReasonRule(
        _S.REBOOT_PENDING,
        (_A.INSTALL_BASELINE,),
        "installed updates wait for a restart (a restart-permitting install in the window)",
    ),
    ReasonCode.UPDATE_AVAILABLE: ReasonRule(
        _S.PENDING, _INSTALL, "the release in force is not installed yet, inside the grace period"
    ),
    ReasonCode.UPDATES_PENDING: ReasonRule(
        _S.PENDING, _INSTALL, "critical or security updates missing, inside the grace period"
    ),
    ReasonCode.BUILD_NOT_IN_CATALOG: ReasonRule(
        _S.COMPLIANT,
        (_A.NONE,),
        "a build newer than the release catalog knows: judged on its assessment alone",
    ),
    ReasonCode.PERIODIC_ASSESSMENT_OFF: ReasonRule(
        None, (), "assessmentMode is not AutomaticByPlatform: assessments go stale unless started"
    ),
    ReasonCode.CUSTOMER_MANAGED_SCHEDULE: ReasonRule(
        None, (), "installs run only on the customer's Update Manager schedule"
    ),
    ReasonCode.SECURITY_TYPE: ReasonRule(
        None, (), "the VM's security type (Trusted Launch): reported, not a requirement"
    ),
    ReasonCode.AZURE_LOCAL: ReasonRule(
        None, (), "Azure Edition on Azure Local (through Arc), judged by the Azure Edition rules"
    ),
    ReasonCode.RESTART_CAPABLE_UPDATES: ReasonRule(
        None, (), "non-security updates (.NET, drivers, rollups) available that can restart it"
    ),
}
