"""A row that cannot be read becomes a malformed machine that says which machine, which field and
why: its key, name, subscription and error are what an operator uses to find and fix it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from hotpatch.core.inventory import parse_rows
from hotpatch.core.models import Machine, MalformedMachine
from hotpatch.core.resource_types import machine_id_of
from tests.builders import (
    NOW,
    SUBSCRIPTION,
    assessment_row,
    installation_row,
    vm_id,
    vm_row,
)

BAD_SKU = {"properties.storageProfile.imageReference.sku": 42}
SKU_ERROR = (
    "resource row: properties.storageProfile.imageReference.sku: Input should be a valid string"
)


def malformed(rows: list[Any]) -> list[MalformedMachine]:
    found = parse_rows(rows).machines
    assert all(isinstance(m, MalformedMachine) for m in found), found
    return [m for m in found if isinstance(m, MalformedMachine)]


def test_a_malformed_resource_row_keeps_its_id_name_and_subscription() -> None:
    (machine,) = malformed([vm_row("bad", **BAD_SKU)])
    assert machine == MalformedMachine(vm_id("bad").casefold(), "bad", SKU_ERROR, SUBSCRIPTION)


def test_a_row_type_in_another_case_still_names_the_field_that_is_wrong() -> None:
    row = vm_row("bad", **BAD_SKU)
    row["type"] = "Microsoft.Compute/virtualMachines"
    (machine,) = malformed([row])
    assert machine.error == SKU_ERROR


def test_without_a_name_the_last_segment_of_the_id_names_it() -> None:
    row = vm_row("bad", id=vm_id("BadVM"), **BAD_SKU)
    del row["name"]
    (machine,) = malformed([row])
    assert (machine.id, machine.name) == (vm_id("BadVM").casefold(), "badvm")


def test_a_subscription_that_is_not_text_is_left_out_and_every_error_is_counted() -> None:
    row = vm_row("bad", subscriptionId=7, **BAD_SKU)
    (machine,) = malformed([row])
    assert machine.subscription_id is None
    # The first error is shown; the others are counted.
    assert machine.error == "resource row: subscriptionId: Input should be a valid string (+1 more)"


def test_a_single_error_is_shown_without_a_count() -> None:
    (machine,) = malformed([vm_row("bad", **BAD_SKU)])
    assert not machine.error.endswith("more)")


@pytest.mark.parametrize(
    ("identity", "error"),
    [
        (None, "resource row: id: Field required"),
        ("", "resource row: id: String should have at least 1 character"),
    ],
    ids=["no id", "an empty id"],
)
def test_a_row_without_a_usable_id_is_keyed_by_its_position(
    identity: str | None, error: str
) -> None:
    row = vm_row("x")
    if identity is None:
        del row["id"]
    else:
        row["id"] = identity
    good, broken = parse_rows([vm_row("a"), row]).machines
    assert isinstance(good, Machine)
    assert broken == MalformedMachine("(row 1)", "x", error, SUBSCRIPTION)


def test_rows_that_are_not_objects_are_keyed_and_named_by_their_position() -> None:
    assert malformed([[1], "s"]) == [
        MalformedMachine("(row 0)", "(row 0)", "row is a list, not an object"),
        MalformedMachine("(row 1)", "(row 1)", "row is a str, not an object"),
    ]


def test_a_broken_installation_row_makes_its_machine_unknown_not_a_machine_of_its_own() -> None:
    installation = installation_row(vm_id("vm1"), NOW)
    installation["properties"] = "garbage"
    (machine,) = malformed([vm_row("vm1"), installation])
    assert machine == MalformedMachine(
        vm_id("vm1").casefold(),
        "vm1",
        "installation row: properties: not an object (str)",
        SUBSCRIPTION,
    )


def test_a_broken_patch_row_that_names_no_machine_is_reported_under_its_own_id() -> None:
    row = assessment_row(vm_id("vm1"))
    row["id"] = "/subscriptions/s/Other/latest"
    row["properties"]["lastModifiedDateTime"] = "yesterday"
    (machine,) = malformed([row])
    assert (machine.id, machine.name, machine.subscription_id) == (
        "/subscriptions/s/other/latest",
        "latest",
        None,
    )
    assert machine.error.startswith("assessment row: properties.lastModifiedDateTime: ")


def test_a_broken_patch_row_is_reported_under_whatever_id_comes_before_its_segment() -> None:
    row = assessment_row(vm_id("vm1"))
    row["id"] = "a/patchAssessmentResults/latest"
    row["properties"]["lastModifiedDateTime"] = "yesterday"
    (machine,) = malformed([row])
    assert (machine.id, machine.name) == ("a", "a")


@pytest.mark.parametrize(
    ("make", "row_id", "error"),
    [
        (
            assessment_row,
            "/subscriptions/s/Other/latest",
            "assessment row: id: not of the form <machine id>/patchassessmentresults/…",
        ),
        (
            lambda machine: installation_row(machine, NOW),
            f"{vm_id('vm1')}/patchAssessmentResults/latest",
            "installation row: id: not of the form <machine id>/patchinstallationresults/…",
        ),
    ],
    ids=["no segment", "the other kind's segment"],
)
@pytest.mark.parametrize("type_case", [str.lower, str.upper], ids=["as Azure", "other case"])
def test_a_patch_row_whose_id_names_no_machine_of_its_kind_is_reported_saying_so(
    make: Any, row_id: str, error: str, type_case: Any
) -> None:
    row = make(vm_id("vm1"))
    row["id"] = row_id
    row["type"] = type_case(row["type"])
    (machine,) = malformed([row])
    assert machine.error == error


@pytest.mark.parametrize(
    ("row_id", "machine"),
    [
        ("a/patchAssessmentResults/latest", "a"),
        (f"{vm_id('vm1')}/patchInstallationResults/x", vm_id("vm1").casefold()),
        ("/patchAssessmentResults/latest", None),
        (vm_id("vm1"), None),
    ],
)
def test_the_machine_of_a_patch_row_is_whatever_comes_before_its_segment(
    row_id: str, machine: str | None
) -> None:
    assert machine_id_of(row_id) == machine


# -- counts the rules read ---------------------------------------------------------------------


def _assessment_with(counts: object) -> dict[str, Any]:
    row = assessment_row(vm_id("vm1"))
    row["properties"]["availablePatchCountByClassification"] = counts
    return row


@pytest.mark.parametrize(
    ("counts", "restart_capable"),
    [
        ({"critical": 1, "security": 2, "definition": 5}, 0),
        ({"critical": 1, "other": 1, "updateRollUp": 2, "featurePack": None}, 3),
        ({"other": 0}, 0),
        ({"critical": 3, "other": 2}, 2),
        ({"security": 1, "definition": 4, "tools": 5}, 5),
        ({"definition": 4, "updateRollUp": 1, "other": 1}, 2),
        ({"updateRollUp": 1, "other": 1}, 2),
        ({}, 0),
        (None, 0),
    ],
    ids=[
        "critical, security, definitions",
        "the others add up",
        "zero",
        "without security or definitions",
        "without critical",
        "without critical or security",
        "only the others",
        "empty",
        "absent",
    ],
)
def test_restart_capable_updates_are_the_classes_other_than_critical_security_definitions(
    counts: object, restart_capable: int
) -> None:
    (assessment,) = parse_rows([vm_row("vm1"), _assessment_with(counts)]).assessments.values()
    assert assessment.restart_capable == restart_capable


@pytest.mark.parametrize(
    ("counts", "error"),
    [
        ({"other": -1}, "other must be a count, not -1"),
        ({"updateRollUp": "2"}, "updateRollUp must be a count, not '2'"),
        ({"tools": True}, "tools must be a count, not True"),
        (["other", 1], "availablePatchCountByClassification must be an object"),
    ],
)
def test_counts_that_are_not_counts_make_the_machine_unknown_saying_which(
    counts: object, error: str
) -> None:
    (machine,) = malformed([vm_row("vm1"), _assessment_with(counts)])
    assert machine.error == (
        f"assessment row: properties.availablePatchCountByClassification: Value error, {error}"
    )


# -- which row counts ---------------------------------------------------------------------------


def test_of_two_installation_rows_with_the_same_time_the_first_read_counts() -> None:
    rows = [
        vm_row("vm1"),
        installation_row(vm_id("vm1"), NOW, "a", reboot_status="Required"),
        installation_row(vm_id("vm1"), NOW, "b", reboot_status="NotNeeded"),
    ]
    (installation,) = parse_rows(rows).installations.values()
    assert installation.reboot_status == "Required"


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 1, 0), (1, 2, 0)])
def test_the_newest_installation_row_counts_whatever_the_order_and_a_row_without_time_never(
    order: tuple[int, int, int],
) -> None:
    timeless = installation_row(vm_id("vm1"), NOW, "none", reboot_status="Failed")
    del timeless["properties"]["lastModifiedDateTime"]
    candidates = [
        installation_row(vm_id("vm1"), NOW - timedelta(days=1), "old", reboot_status="Required"),
        installation_row(vm_id("vm1"), NOW, "new", reboot_status="NotNeeded"),
        timeless,
    ]
    rows = [vm_row("vm1"), *(candidates[i] for i in order)]
    (installation,) = parse_rows(rows).installations.values()
    assert installation.reboot_status == "NotNeeded"


def test_a_row_whose_type_is_not_text_is_passed_over_and_counted() -> None:
    inventory = parse_rows([{"id": "x", "type": 5}, vm_row("vm1")])
    assert (len(inventory.machines), inventory.ignored) == (1, 1)


def test_a_row_of_a_type_in_another_case_without_an_id_is_keyed_by_its_position() -> None:
    row = vm_row("x", **BAD_SKU)
    row["type"] = "Microsoft.Compute/virtualMachines"
    del row["id"]
    (machine,) = malformed([row])
    assert machine.id == "(row 0)"


def test_a_patch_row_of_a_type_in_another_case_with_broken_properties_marks_its_machine() -> None:
    installation = installation_row(vm_id("vm1"), NOW)
    installation["type"] = "Microsoft.Compute/virtualMachines/patchInstallationResults"
    installation["properties"] = [1]
    (machine,) = malformed([vm_row("vm1"), installation])
    assert (machine.id, machine.error) == (
        vm_id("vm1").casefold(),
        "installation row: properties: not an object (list)",
    )


def test_a_broken_row_without_id_or_name_is_named_by_its_position() -> None:
    row = vm_row("x", **BAD_SKU)
    row["type"] = "Microsoft.Compute/virtualMachines"
    del row["id"]
    del row["name"]
    (machine,) = malformed([row])
    assert (machine.id, machine.name) == ("(row 0)", "(row 0)")


def test_a_broken_row_of_a_type_in_another_case_without_an_id_is_keyed_by_its_position() -> None:
    row = vm_row("x")
    row["type"] = "Microsoft.Compute/virtualMachines"
    row["properties"] = "garbage"
    del row["id"]
    (machine,) = malformed([row])
    assert machine.id == "(row 0)"


def test_a_broken_patch_row_without_an_id_is_keyed_by_its_position() -> None:
    row = assessment_row(vm_id("vm1"))
    del row["id"]
    row["properties"]["lastModifiedDateTime"] = "yesterday"
    (machine,) = malformed([row])
    assert machine.id == "(row 0)"


# -- one bad row costs only itself --------------------------------------------------------------


def test_rows_after_a_broken_row_are_all_read() -> None:
    broken_vm = vm_row("b1")
    broken_vm["properties"] = "garbage"
    broken_patch = assessment_row(vm_id("b2"))
    broken_patch["properties"] = "garbage"
    rows = [broken_patch, vm_row("b2"), broken_vm, vm_row("a"), assessment_row(vm_id("a"))]
    inventory = parse_rows(rows)
    read = {m.name: isinstance(m, Machine) for m in inventory.machines}
    assert read == {"b2": False, "b1": False, "a": True}
    assert list(inventory.assessments) == [vm_id("a").casefold()]


def test_a_repeated_machine_is_judged_once_and_reported_and_the_rest_still_read() -> None:
    bad = {"properties.storageProfile.imageReference.sku": 42}
    rows = [
        vm_row("a"),
        vm_row("a"),
        vm_row("x", **bad),
        vm_row("x", **bad),
        vm_row("b"),
        vm_row("y", **bad),
    ]
    inventory = parse_rows(rows)
    assert [m.name for m in inventory.machines] == ["a", "b", "x", "y"]
    assert inventory.duplicates == (vm_id("a").casefold(), vm_id("x").casefold())


def test_an_assessment_without_a_time_is_an_assessment_never_made_not_a_broken_row() -> None:
    row = assessment_row(vm_id("vm1"))
    del row["properties"]["lastModifiedDateTime"]
    inventory = parse_rows([vm_row("vm1"), row])
    (machine,) = inventory.machines
    assert isinstance(machine, Machine)
    (assessment,) = inventory.assessments.values()
    assert assessment.last_modified is None


def test_rows_of_types_in_another_case_are_read_like_any_other() -> None:
    installation = installation_row(vm_id("a"), NOW, reboot_status="Required")
    installation["type"] = "Microsoft.Compute/virtualMachines/patchInstallationResults"
    plain = vm_row("a")
    plain["type"] = "Microsoft.Compute/virtualMachines"
    off = vm_row(
        "b", **{"properties.osProfile.windowsConfiguration.patchSettings.patchMode": "Manual"}
    )
    off["type"] = "Microsoft.Compute/virtualMachines"
    inventory = parse_rows(iter([installation, plain, off]))  # any iterable of rows
    assert [m.name for m in inventory.machines] == ["a", "b"]
    assert [i.reboot_status for i in inventory.installations.values()] == ["Required"]
    first, second = inventory.profiles
    assert first is not None
    assert second is not None
    assert first != second


def test_a_vm_row_that_does_not_say_its_os_type_is_still_a_machine() -> None:
    row = vm_row("vm1", **{"properties.storageProfile.osDisk": {}})
    (machine,) = parse_rows([row]).machines
    assert isinstance(machine, Machine)
    assert machine.os_type is None
