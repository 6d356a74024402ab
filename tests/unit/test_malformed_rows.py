"""A row that cannot be read becomes a malformed machine that says which machine, which field and
why: its key, name, subscription and error are what an operator uses to find and fix it."""

from __future__ import annotations

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
