"""Parsing raw exports: any order, joins by id, and malformed rows that never stop a run."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hotpatch.core.calendar import Calendar
from hotpatch.core.compliance import Evaluator
from hotpatch.core.inventory import parse_rows
from hotpatch.core.models import Machine, MachineKind, MalformedMachine, State, machine_profile
from hotpatch.core.policy import Policy
from hotpatch.core.resource_types import ARC_MACHINE, VIRTUAL_MACHINE
from hotpatch.data import shipped_image_catalog, shipped_release_catalog
from tests.builders import (
    NOW,
    arc_row,
    assessment_row,
    copy_row,
    installation_row,
    scale_set_row,
    vm_id,
    vm_row,
)

EVALUATOR = Evaluator(shipped_image_catalog(), Calendar(shipped_release_catalog()), Policy(), NOW)


def verdicts_of(rows: list[Any]) -> dict[str, Any]:
    return {v.id: v for v in EVALUATOR.evaluate_all(parse_rows(rows))}


def test_rows_join_by_machine_id_in_any_order() -> None:
    machine = vm_id("vm1")
    rows = [
        installation_row(machine, NOW),
        assessment_row(machine),
        vm_row("vm1"),
    ]
    inventory = parse_rows(rows)
    (parsed,) = inventory.machines
    assert isinstance(parsed, Machine)
    assert parsed.id == machine.casefold()
    assert inventory.assessments[parsed.id].status == "Succeeded"
    assert inventory.installations[parsed.id].last_modified == NOW.replace(microsecond=0)


def test_software_patch_rows_and_other_resource_types_are_passed_over_and_counted() -> None:
    machine = vm_id("vm1")
    rows = [
        vm_row("vm1"),
        {
            "id": f"{machine}/patchAssessmentResults/latest/softwarePatches/abc",
            "type": "microsoft.compute/virtualmachines/patchassessmentresults/softwarepatches",
            "properties": {"kbId": "5075943"},
        },
        {
            "id": "/subscriptions/s/resourceGroups/r/providers/Microsoft.Network/vnets/v",
            "type": "microsoft.network/virtualnetworks",
        },
    ]
    inventory = parse_rows(rows)
    assert (len(inventory.machines), inventory.rows, inventory.ignored) == (1, 3, 2)


def test_a_flexible_scale_set_row_is_not_a_machine() -> None:
    row = scale_set_row(mode="Flexible")
    assert parse_rows([row]).machines == []


def test_arc_rows_become_arc_machines_with_their_enrolment() -> None:
    (machine,) = parse_rows([arc_row()]).machines
    assert isinstance(machine, Machine)
    assert machine.kind is MachineKind.ARC
    assert machine.hotpatch_subscription_status == "Enabled"
    assert machine.hotpatch_enablement_status == "Enabled"
    assert machine.os_version == "10.0.26100.32313"


def test_a_time_without_a_zone_is_a_malformed_row_that_says_so() -> None:
    # Resource Graph always writes "Z"; guessing a zone for a hand-edited export could move a
    # machine across a grace deadline, so it is reported instead.
    row = assessment_row(vm_id("vm1"))
    row["properties"]["lastModifiedDateTime"] = "2026-02-14T03:00:00"
    (machine,) = parse_rows([vm_row("vm1"), row]).machines
    assert isinstance(machine, MalformedMachine)
    assert "lastModifiedDateTime: Input should have timezone info" in machine.error


def test_a_time_with_an_offset_keeps_its_instant() -> None:
    row = assessment_row(vm_id("vm1"))
    row["properties"]["lastModifiedDateTime"] = "2026-02-14T05:00:00+02:00"
    (summary,) = parse_rows([vm_row("vm1"), row]).assessments.values()
    assert summary.last_modified == datetime(2026, 2, 14, 3, 0, tzinfo=UTC)


def test_a_malformed_resource_row_is_unknown_with_the_field_and_the_reason() -> None:
    bad = vm_row("bad", **{"properties.storageProfile.imageReference.sku": 42})
    verdicts = verdicts_of([bad, vm_row("good"), assessment_row(vm_id("good"))])
    broken = verdicts[vm_id("bad").casefold()]
    assert broken.state is State.UNKNOWN
    assert [r.code for r in broken.reasons] == ["malformed_record"]
    assert "properties.storageProfile.imageReference.sku" in broken.reasons[0].message
    assert verdicts[vm_id("good").casefold()].state is State.COMPLIANT


def test_a_malformed_assessment_row_makes_its_machine_unknown() -> None:
    row = assessment_row(vm_id("vm1"))
    row["properties"]["lastModifiedDateTime"] = "yesterday"
    (verdict,) = verdicts_of([vm_row("vm1"), row]).values()
    assert verdict.state is State.UNKNOWN
    assert "assessment row: properties.lastModifiedDateTime" in verdict.reasons[0].message


@pytest.mark.parametrize("properties", ["garbage", [1, 2], 42, True])
@pytest.mark.parametrize(
    "row",
    [
        vm_row("vm1"),
        arc_row("vm1"),
        scale_set_row("vm1"),
        assessment_row(vm_id("vm1")),
        installation_row(vm_id("vm1"), NOW),
    ],
    ids=["vm", "arc", "scale set", "assessment", "installation"],
)
def test_properties_that_are_not_an_object_are_malformed_not_empty(
    row: dict[str, Any], properties: Any
) -> None:
    row = copy_row(row)
    row["properties"] = properties
    (machine,) = parse_rows([row]).machines
    assert isinstance(machine, MalformedMachine)
    assert "properties: not an object" in machine.error


def test_negative_counts_are_malformed() -> None:
    row = assessment_row(vm_id("vm1"), critical=-1)
    (machine,) = parse_rows([vm_row("vm1"), row]).machines
    assert isinstance(machine, MalformedMachine)


def test_a_patch_row_for_a_machine_missing_from_the_export_is_reported() -> None:
    row = assessment_row(vm_id("ghost"))
    row["properties"]["rebootPending"] = "perhaps"
    (machine,) = parse_rows([row]).machines
    assert isinstance(machine, MalformedMachine)
    assert machine.id.endswith("/virtualmachines/ghost")


def test_rows_that_are_not_objects_are_malformed() -> None:
    inventory = parse_rows([1, "two", None, [3]])
    assert [type(m) for m in inventory.machines] == [MalformedMachine] * 4


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
TYPES = st.sampled_from(
    [
        "microsoft.compute/virtualmachines",
        "Microsoft.Compute/virtualMachines",
        "microsoft.hybridcompute/machines",
        "microsoft.compute/virtualmachinescalesets",
        "microsoft.compute/virtualmachines/patchassessmentresults",
        "microsoft.hybridcompute/machines/patchinstallationresults",
        "something/else",
    ]
)


def _mutate(row: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    node: Any = row
    for part in path[:-1]:
        if not isinstance(node, dict) or not isinstance(node.get(part), dict):
            break
        node = node[part]
    if isinstance(node, dict) and path:
        node[path[-1]] = value
    return row


@st.composite
def rows(draw: st.DrawFn) -> Any:
    """Realistic rows with one field replaced by arbitrary JSON, or arbitrary JSON outright."""
    if draw(st.booleans()):
        return draw(
            JSON | st.dictionaries(st.sampled_from(["id", "type", "properties", "name"]), JSON)
        )
    base = draw(
        st.sampled_from(
            [
                vm_row("h"),
                arc_row("h"),
                assessment_row(vm_id("h")),
                installation_row(vm_id("h"), NOW),
            ]
        )
    )
    path = draw(
        st.sampled_from(
            [
                ["type"],
                ["id"],
                ["tags"],
                ["properties"],
                ["properties", "storageProfile"],
                ["properties", "storageProfile", "imageReference", "sku"],
                ["properties", "osProfile", "windowsConfiguration", "patchSettings"],
                ["properties", "extended", "instanceView", "osVersion"],
                ["properties", "lastModifiedDateTime"],
                ["properties", "availablePatchCountByClassification", "critical"],
                ["properties", "licenseProfile", "productProfile", "productFeatures"],
                ["properties", "osVersion"],
                ["properties", "rebootStatus"],
            ]
        )
    )
    value = draw(JSON | TYPES)
    return _mutate(base, path, value)


def _verdict_key(index: int, row: Any) -> str | None:
    """The verdict id a VM or Arc row must get (its id, case-folded, or its position when it has
    no usable id); None for any other row."""
    if not isinstance(row, dict) or not isinstance(row.get("type"), str):
        return None
    if row["type"].casefold() not in {VIRTUAL_MACHINE, ARC_MACHINE}:
        return None
    value = row.get("id")
    return value.casefold() if isinstance(value, str) and value else f"(row {index})"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(rows(), max_size=6))
def test_arbitrary_rows_never_raise_and_each_machine_row_gets_exactly_one_verdict(
    batch: list[Any],
) -> None:
    verdicts = EVALUATOR.evaluate_all(parse_rows(batch))
    per_id = Counter(verdict.id for verdict in verdicts)
    for index, row in enumerate(batch):
        key = _verdict_key(index, row)
        if key is not None:
            assert per_id[key] == 1, (key, row)
    # Malformed ones say why.
    for verdict in verdicts:
        if verdict.state is State.UNKNOWN:
            assert verdict.reasons


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.lists(rows(), max_size=6))
def test_the_parse_profiles_each_machine_as_machine_profile_does(batch: list[Any]) -> None:
    """The parse builds profiles inline (for speed); the evaluator shares decisions by them."""
    inventory = parse_rows([*batch, vm_row("usual"), arc_row("usual arc"), scale_set_row("u")])
    assert inventory.profiles == [
        machine_profile(machine) if isinstance(machine, Machine) else None
        for machine in inventory.machines
    ]


def test_a_malformed_machine_with_a_malformed_patch_row_gets_one_verdict() -> None:
    """Found by the property above: the patch row's error was once a second machine."""
    machine = vm_row("vm1", tags="not an object")
    assessment = assessment_row(vm_id("vm1"))
    assessment["properties"]["lastModifiedDateTime"] = "yesterday"
    verdicts = EVALUATOR.evaluate_all(parse_rows([machine, assessment]))
    assert [verdict.id for verdict in verdicts] == [vm_id("vm1").casefold()]


def test_row_types_in_another_case_are_read_all_the_same() -> None:
    row = vm_row("vm1")
    row["type"] = "Microsoft.Compute/virtualMachines"
    assessment = assessment_row(vm_id("vm1"))
    assessment["type"] = "Microsoft.Compute/virtualMachines/patchAssessmentResults"
    inventory = parse_rows([row, assessment])
    (machine,) = inventory.machines
    assert isinstance(machine, Machine)
    assert machine.kind is MachineKind.VM
    assert list(inventory.assessments) == [machine.id]


def test_a_vm_named_like_the_patch_segment_still_gets_its_assessment() -> None:
    name = "patchAssessmentResults"
    inventory = parse_rows([vm_row(name), assessment_row(vm_id(name))])
    (machine,) = inventory.machines
    assert isinstance(machine, Machine)
    assert list(inventory.assessments) == [machine.id]
