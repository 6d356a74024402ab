"""Parse Resource Graph rows (a raw export or a sweep's pages) into typed machine records.

This is the boundary. Each row type has a model that *is* the record it becomes (a subclass that
only adds where each field sits in Azure's payload), so a row is validated once, by pydantic-core,
with no intermediate copies. A row that does not fit becomes a `MalformedMachine` naming the
field and the reason; nothing here raises on bad data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasPath,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    Field,
    TypeAdapter,
    ValidationError,
)

from hotpatch.core.models import (
    AssessmentSummary,
    Count,
    InstallationSummary,
    Machine,
    MachineKind,
    MalformedMachine,
    Profile,
    machine_profile,
    profile_fields,
)
from hotpatch.core.resource_types import (
    ARC_MACHINE,
    ASSESSMENT_RESULTS,
    INSTALLATION_RESULTS,
    SCALE_SET,
    SCALE_SET_INSTANCE,
    VIRTUAL_MACHINE,
    machine_id_of,
)

ASSESSMENT_MARK = f"/{ASSESSMENT_RESULTS}/"
INSTALLATION_MARK = f"/{INSTALLATION_RESULTS}/"


def _at(*path: str, default: Any = None) -> Any:
    """A field read from `properties.<path>`.

    Flat models validate about twice as fast as trees of nested models, and an error still names
    the full path (`properties.storageProfile.imageReference.sku`).
    """
    return Field(default=default, validation_alias=AliasPath("properties", *path))


def _hotpatch_feature(features: Any) -> Any:
    """`productFeatures[]` -> the subscription status of the item named Hotpatch."""
    if features is None:
        return None
    if not isinstance(features, list):
        raise ValueError("productFeatures must be a list")
    for feature in features:
        if isinstance(feature, dict) and str(feature.get("name", "")).casefold() == "hotpatch":
            return feature.get("subscriptionStatus")
    return None


#: Ids compare case-insensitively: kept case-folded (by the C method itself: no Python frame).
ResourceId = Annotated[str, Field(min_length=1), AfterValidator(str.casefold)]
#: A validation alias no Resource Graph column has: the field takes its default, whatever the row.
_NO_COLUMN = "\x00hotpatch"
_IMAGE = ("storageProfile", "imageReference")
_PATCH = ("osProfile", "windowsConfiguration", "patchSettings")


class _ResourceRow(Machine):
    """The columns every `resources` row has that the rules read.

    A real row carries every column of its table (`id, name, type, tenantId, kind, location,
    resourceGroup, subscriptionId, managedBy, sku, plan, properties, tags, identity, zones,
    extendedLocation`); the others are ignored. The row's `kind` column (usually "") is not the
    machine's kind, which the row's type decides: the field reads from no column.
    https://learn.microsoft.com/azure/governance/resource-graph/reference/supported-tables-resources
    """

    id: ResourceId
    name: str = ""
    subscription_id: str | None = Field(default=None, validation_alias="subscriptionId")
    tags: dict[str, str] | None = None
    kind: MachineKind = Field(default=MachineKind.VM, validation_alias=_NO_COLUMN)


class _VmRow(_ResourceRow):
    type: Literal["microsoft.compute/virtualmachines"]
    kind: MachineKind = Field(default=MachineKind.VM, validation_alias=_NO_COLUMN)
    os_type: str | None = _at("storageProfile", "osDisk", "osType")
    os_version: str | None = _at("extended", "instanceView", "osVersion")
    power_state: str | None = _at("extended", "instanceView", "powerState", "code")
    image_publisher: str | None = _at(*_IMAGE, "publisher")
    image_offer: str | None = _at(*_IMAGE, "offer")
    image_sku: str | None = _at(*_IMAGE, "sku")
    image_version: str | None = _at(*_IMAGE, "version")
    image_id: str | None = _at(*_IMAGE, "id")
    shared_gallery_image_id: str | None = _at(*_IMAGE, "sharedGalleryImageId")
    community_gallery_image_id: str | None = _at(*_IMAGE, "communityGalleryImageId")
    patch_mode: str | None = _at(*_PATCH, "patchMode")
    enable_hotpatching: bool | None = _at(*_PATCH, "enableHotpatching")
    provision_vm_agent: bool | None = _at("osProfile", "windowsConfiguration", "provisionVMAgent")
    enable_automatic_updates: bool | None = _at(
        "osProfile", "windowsConfiguration", "enableAutomaticUpdates"
    )
    assessment_mode: str | None = _at(*_PATCH, "assessmentMode")
    bypass_platform_safety_checks: bool | None = _at(
        *_PATCH, "automaticByPlatformSettings", "bypassPlatformSafetyChecksOnUserSchedule"
    )
    security_type: str | None = _at("securityProfile", "securityType")


class _UniformVmRow(_VmRow):
    """An instance of a Uniform scale set (Flexible members are ordinary VM rows)."""

    type: Literal["microsoft.compute/virtualmachinescalesets/virtualmachines"]  # type: ignore[assignment]
    orchestration_mode: str | None = "Uniform"


class _ScaleSetRow(_ResourceRow):
    type: Literal["microsoft.compute/virtualmachinescalesets"]
    kind: MachineKind = Field(default=MachineKind.SCALE_SET, validation_alias=_NO_COLUMN)
    orchestration_mode: str | None = _at("orchestrationMode")
    image_publisher: str | None = _at("virtualMachineProfile", *_IMAGE, "publisher")
    image_offer: str | None = _at("virtualMachineProfile", *_IMAGE, "offer")
    image_sku: str | None = _at("virtualMachineProfile", *_IMAGE, "sku")
    image_id: str | None = _at("virtualMachineProfile", *_IMAGE, "id")


class _ArcRow(_ResourceRow):
    type: Literal["microsoft.hybridcompute/machines"]
    kind: MachineKind = Field(default=MachineKind.ARC, validation_alias=_NO_COLUMN)
    #: Here the `kind` column means something: where the machine runs ("HCI": Azure Local).
    arc_kind: str | None = Field(default=None, validation_alias="kind")
    arc_status: str | None = _at("status")
    os_type: str | None = _at("osType")
    os_version: str | None = _at("osVersion")
    arc_os_sku: str | None = _at("osSku")
    patch_mode: str | None = _at(*_PATCH, "patchMode")
    enable_hotpatching: bool | None = _at(*_PATCH, "enableHotpatching")
    hotpatch_enablement_status: str | None = _at(*_PATCH, "status", "hotpatchEnablementStatus")
    hotpatch_subscription_status: Annotated[str | None, BeforeValidator(_hotpatch_feature)] = _at(
        "licenseProfile", "productProfile", "productFeatures"
    )


_COUNTS = "availablePatchCountByClassification"
#: Classifications that can need a restart in any month; critical and security are counted on
#: their own, and definition updates (Defender signatures) never restart.
_NOT_RESTART_CAPABLE = frozenset({"critical", "security", "definition"})
#: CPython's one int 0 (small ints are shared): `value is _ZERO` is the cheapest test for it.
_ZERO = 0


def _restart_capable(counts: Any) -> Any:
    """`availablePatchCountByClassification` -> the sum of the restart-capable classes."""
    if counts is None:
        return 0
    if not isinstance(counts, dict):
        raise ValueError("availablePatchCountByClassification must be an object")
    total = 0
    for name, value in counts.items():
        # Most classes have no update: a zero adds nothing and is a count, whatever its class.
        if value is _ZERO or value is None or name in _NOT_RESTART_CAPABLE:
            continue
        if type(value) is not int or value < 0:
            raise ValueError(f"{name} must be a count, not {value!r}")
        total += value
    return total


class _AssessmentRow(AssessmentSummary):
    type: Literal[
        "microsoft.compute/virtualmachines/patchassessmentresults",
        "microsoft.hybridcompute/machines/patchassessmentresults",
    ]
    #: The row's own id, `<machine id>/patchAssessmentResults/latest`: the parse loop takes the
    #: machine's id from it (a validator would cost a call back into Python per row).
    row_id: str = Field(validation_alias="id")
    status: str | None = _at("status")
    last_modified: AwareDatetime | None = _at("lastModifiedDateTime")
    reboot_pending: bool | None = _at("rebootPending")
    critical: Count = _at(_COUNTS, "critical", default=0)
    security: Count = _at(_COUNTS, "security", default=0)
    restart_capable: Annotated[Count, BeforeValidator(_restart_capable)] = _at(_COUNTS, default=0)


class _InstallationRow(InstallationSummary):
    type: Literal[
        "microsoft.compute/virtualmachines/patchinstallationresults",
        "microsoft.hybridcompute/machines/patchinstallationresults",
    ]
    #: `<machine id>/patchInstallationResults/<operation id>`.
    row_id: str = Field(validation_alias="id")
    last_modified: AwareDatetime | None = _at("lastModifiedDateTime")
    reboot_status: str | None = _at("rebootStatus")


_MODELS: dict[str, type[BaseModel]] = {
    VIRTUAL_MACHINE: _VmRow,
    SCALE_SET_INSTANCE: _UniformVmRow,
    SCALE_SET: _ScaleSetRow,
    ARC_MACHINE: _ArcRow,
    f"{VIRTUAL_MACHINE}/patchassessmentresults": _AssessmentRow,
    f"{ARC_MACHINE}/patchassessmentresults": _AssessmentRow,
    f"{VIRTUAL_MACHINE}/patchinstallationresults": _InstallationRow,
    f"{ARC_MACHINE}/patchinstallationresults": _InstallationRow,
}
_Row = Annotated[
    _VmRow | _UniformVmRow | _ScaleSetRow | _ArcRow | _AssessmentRow | _InstallationRow,
    Field(discriminator="type"),
]
#: One pass over every row in pydantic-core, dispatched on `type` without calling back into
#: Python. A row that fails (or has a type it does not know, or in another case) comes back
#: raw through the `Any` arm and takes the slow path alone: one bad row costs only itself.
_ROWS: TypeAdapter[list[Any]] = TypeAdapter(
    list[Annotated[_Row | Any, Field(union_mode="left_to_right")]]
)


@dataclass(frozen=True, slots=True)
class ParsedInventory:
    """Machines (well-formed or not) and their latest patch summaries, keyed by machine id."""

    machines: list[Machine | MalformedMachine]
    assessments: Mapping[str, AssessmentSummary] = field(default_factory=dict)
    installations: Mapping[str, InstallationSummary] = field(default_factory=dict)
    rows: int = 0
    ignored: int = 0
    #: Ids of machine rows that repeated an earlier machine (ids compare case-insensitively):
    #: the first row counts, the repeats are reported and never judged twice.
    duplicates: tuple[str, ...] = ()
    #: `machine_profile` of each machine, in the same order (None for a malformed one); machines
    #: with equal profiles share one tuple. Taken here when the caller did not give them.
    profiles: list[Profile | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        if len(self.profiles) != len(self.machines):
            profiles = [
                machine_profile(m) if isinstance(m, Machine) else None for m in self.machines
            ]
            object.__setattr__(self, "profiles", profiles)


def parse_rows(rows: Iterable[Any]) -> ParsedInventory:
    """Join resources, assessment and installation rows by machine id (case-insensitively).

    For large inventories, call it inside `hotpatch.bulk.collector_paused()`.
    """
    return _parse(rows)


def _parse(rows: Iterable[Any]) -> ParsedInventory:
    batch = rows if isinstance(rows, list) else list(rows)
    machines: list[Machine | MalformedMachine] = []
    ids: list[str] = []
    # Each machine's profile, interned: the evaluator keys its decisions on one shared tuple per
    # profile, found by identity (evaluating 100,000 machines took 0.25 s less than with keys
    # built from each record's fields).
    profiles: list[Profile | None] = []
    known: dict[Profile, Profile] = {}
    assessments: dict[str, Any] = {}
    installations: dict[str, Any] = {}
    broken: dict[str, str] = {}
    malformed: list[MalformedMachine] = []
    ignored = 0
    # The hot loop of a large parse: one branch per row, on type() (pydantic models have an ABC
    # metaclass, so isinstance is slow), reading the raw row again only when it looks wrong.
    for index, validated in enumerate(_ROWS.validate_python(batch)):
        result: Any = validated
        kind = type(result)
        if kind not in _USUAL_ROWS:
            result = _slow_path(result, batch[index], index, broken, malformed)
            kind = type(result)
            if result is _BROKEN:
                continue
            if result is _IGNORED or (
                # A Flexible scale set is not a machine: its members are VM rows.
                kind is _ScaleSetRow and (result.orchestration_mode or "").casefold() != "uniform"
            ):
                ignored += 1
                continue
        if kind is _InstallationRow or kind is _AssessmentRow:
            # The machine's id: the row's, case-folded, up to the last segment of the row's own
            # kind. `resource_types.machine_id_of` says the same for either kind; this is inline
            # (a call, or a validator calling back into Python, per row cost more).
            if kind is _InstallationRow:
                table, mark = installations, INSTALLATION_MARK
            else:
                table, mark = assessments, ASSESSMENT_MARK
            # Its fields read from `__dict__`: attribute reads on pydantic models are slow.
            fields = result.__dict__
            last = fields["last_modified"]
            # The id before its last mark: empty without one, or when it starts the id.
            # `rpartition` rather than `rfind` and a slice: it takes its one argument without
            # parsing an argument tuple.
            key = fields["row_id"].casefold().rpartition(mark)[0]
            if not key or (last is None and _properties_broken(batch[index])):
                _explain(batch[index], index, broken, malformed)
                continue
            # Installation history holds many rows per machine: the newest counts (a row
            # without a time counts as the oldest).
            current = table.setdefault(key, result)
            if current is not result and last is not None:
                newest = current.last_modified
                if newest is None or last > newest:
                    table[key] = result
        else:
            fields = result.__dict__
            if fields["os_type"] is None and _properties_broken(batch[index]):
                _explain(batch[index], index, broken, malformed)
                continue
            machines.append(result)
            ids.append(fields["id"])
            # `machine_profile`, inline: a call per machine cost more than building it.
            profile = (profile_fields(fields), fields["image_version"] is None)
            profiles.append(known.setdefault(profile, profile))
    found, profiles, seen, duplicates = _first_of_each(machines, ids, profiles, broken)
    for bad in malformed:
        if bad.id in seen:
            duplicates.append(bad.id)
            continue
        seen.add(bad.id)
        found.append(bad)
    # Patch rows whose machine is not in the export: reported, not silently dropped.
    for key, error in broken.items():
        if key not in seen:  # a machine already malformed keeps its one verdict
            found.append(MalformedMachine(key, key.rsplit("/", 1)[-1], error))
    profiles.extend(None for _ in range(len(found) - len(profiles)))
    return ParsedInventory(
        found,
        assessments,
        installations,
        len(batch),
        ignored,
        duplicates=tuple(duplicates),
        profiles=profiles,
    )


def _first_of_each(
    machines: list[Machine | MalformedMachine],
    ids: list[str],
    profiles: list[Profile | None],
    broken: dict[str, str],
) -> tuple[list[Machine | MalformedMachine], list[Profile | None], set[str], list[str]]:
    """The first row of each machine (the repeats' ids in order), a machine with a broken patch
    row made malformed (its entry taken out of `broken`), their profiles, and the ids seen.

    `ids` are the machines' ids; `machines` and `profiles` may be changed in place."""
    seen = set(ids)
    if len(seen) == len(ids):
        # No machine repeats (the usual case): every machine stays where it is, and only those
        # with a broken patch row are looked at again.
        found, kept = machines, profiles
        hit = broken.keys() & seen
        if hit:
            for index, key in enumerate(ids):
                if key in hit:
                    machine = machines[index]
                    found[index] = MalformedMachine(
                        key, machine.name, broken.pop(key), machine.subscription_id
                    )
                    kept[index] = None
        return found, kept, seen, []
    found, kept, seen, duplicates = [], [], set(), []
    for index, machine in enumerate(machines):
        if machine.id in seen:
            duplicates.append(machine.id)
            continue
        seen.add(machine.id)
        error = broken.pop(machine.id, None)
        if error is None:
            found.append(machine)
            kept.append(profiles[index])
        else:
            found.append(MalformedMachine(machine.id, machine.name, error, machine.subscription_id))
            kept.append(None)
    return found, kept, seen, duplicates


def _properties_broken(row: dict[str, Any]) -> bool:
    """Whether a row's `properties` is there but not an object.

    A flat model reads every field of such a row as absent, so the loop asks only about rows that
    lack the one property every real row of their type has (`osType`, `lastModifiedDateTime`).
    """
    properties = row.get("properties")
    return properties is not None and type(properties) is not dict


_IGNORED = "ignored"
_BROKEN = "broken"
_ROW_MODELS = frozenset(_MODELS.values())
#: Rows `_parse` takes without the slow path: Resource Graph's own (lower-case) types.
_USUAL_ROWS = frozenset({_VmRow, _UniformVmRow, _ArcRow, _AssessmentRow, _InstallationRow})
_MARKS: dict[type[BaseModel], str] = {
    _AssessmentRow: ASSESSMENT_MARK,
    _InstallationRow: INSTALLATION_MARK,
}


def _slow_path(
    result: Any, row: Any, index: int, broken: dict[str, str], malformed: list[MalformedMachine]
) -> BaseModel | str:
    """A row the fast loop does not take: another type, a type in other case, a bad field, or
    a (rare) scale set row.

    Returns the parsed row, `_IGNORED` when it is not a machine or patch summary, or `_BROKEN`
    once the reason is recorded.
    """
    if type(result) in _ROW_MODELS:
        parsed: BaseModel = result
    else:
        if not isinstance(row, dict):
            _explain(row, index, broken, malformed)
            return _BROKEN
        row_type = row.get("type")
        model = _MODELS.get(row_type.casefold()) if isinstance(row_type, str) else None
        if model is None:
            return _IGNORED  # software patch rows and other resource types
        try:
            # Resource Graph answers in lower case; an export edited by hand may not.
            parsed = model.model_validate({**row, "type": row_type.casefold()})  # type: ignore[union-attr]
        except ValidationError:
            _explain(row, index, broken, malformed)
            return _BROKEN
    if _properties_broken(row):
        _explain(row, index, broken, malformed)
        return _BROKEN
    return parsed


def _explain(
    row: Any, index: int, broken: dict[str, str], malformed: list[MalformedMachine]
) -> None:
    """A row that failed validation: validate it alone to say which field is wrong and why."""
    if not isinstance(row, dict):
        key = f"(row {index})"
        malformed.append(
            MalformedMachine(key, key, f"row is a {type(row).__name__}, not an object")
        )
        return
    row_type = row.get("type")
    folded = row_type.casefold() if isinstance(row_type, str) else ""
    model = _MODELS.get(folded, _VmRow)
    what = {_AssessmentRow: "assessment row", _InstallationRow: "installation row"}.get(
        model, "resource row"
    )
    properties = row.get("properties")
    if properties is not None and not isinstance(properties, dict):
        problem = f"{what}: properties: not an object ({type(properties).__name__})"
    else:
        try:
            model.model_validate({**row, "type": folded})
            mark = _MARKS.get(model)
            if mark is None:  # pragma: no cover - failed in the batch
                problem = f"{what}: could not be read"
            else:  # the one check of a patch row that `_parse` makes itself
                problem = f"{what}: id: not of the form <machine id>{mark}…"
        except ValidationError as error:
            problem = _first_error(error, what)
    if model is _AssessmentRow or model is _InstallationRow:
        raw = row.get("id")
        broken[(machine_id_of(raw) if isinstance(raw, str) else None) or _row_key(row, index)] = (
            problem
        )
        return
    key = _row_key(row, index)
    name = row.get("name") if isinstance(row.get("name"), str) else key.rsplit("/", 1)[-1]
    subscription = row.get("subscriptionId")
    malformed.append(
        MalformedMachine(
            key, str(name), problem, subscription if isinstance(subscription, str) else None
        )
    )


def _row_key(row: dict[str, Any], index: int) -> str:
    value = row.get("id")
    return value.casefold() if isinstance(value, str) and value else f"(row {index})"


def _first_error(error: ValidationError, what: str) -> str:
    item = error.errors()[0]
    where = ".".join(str(part) for part in item["loc"]) or "(row)"
    more = f" (+{error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{what}: {where}: {item['msg']}{more}"
