"""Scope settings are checked when read: a subscription is a GUID, a management group an ARM id."""

from __future__ import annotations

import pytest

from hotpatch.errors import ConfigurationError
from hotpatch.settings import MAX_ASSESSMENT_AGE_HOURS, Settings


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("HOTPATCH_SUBSCRIPTIONS", "prod", "'prod' is not a subscription id"),
        (
            "HOTPATCH_SUBSCRIPTIONS",
            "11111111-1111-1111-1111-111111111111,1111",
            "'1111' is not a subscription id",
        ),
        ("HOTPATCH_MANAGEMENT_GROUPS", "root/child", "'root/child' is not a management group id"),
        ("HOTPATCH_MANAGEMENT_GROUPS", "ends-with-a-period.", "not a management group id"),
        ("HOTPATCH_MANAGEMENT_GROUPS", "x" * 91, "not a management group id"),
        (
            "HOTPATCH_ASSESSMENT_MAX_AGE_HOURS",
            "99999999999999999999",
            f"less than or equal to {MAX_ASSESSMENT_AGE_HOURS}",
        ),
    ],
)
def test_a_bad_scope_or_an_oversized_number_is_refused_naming_the_variable(
    variable: str, value: str, named: str
) -> None:
    with pytest.raises(ConfigurationError, match=variable) as refused:
        Settings.from_env({variable: value})
    assert named in str(refused.value)


def test_real_ids_are_accepted_as_written() -> None:
    settings = Settings.from_env(
        {"HOTPATCH_MANAGEMENT_GROUPS": "Contoso-Root, mg_(prod).eu", "HOTPATCH_RING_TAG": "ring"}
    )
    assert settings.management_groups == ("Contoso-Root", "mg_(prod).eu")
    upper = Settings.from_env({"HOTPATCH_SUBSCRIPTIONS": "AAAAAAAA-1111-1111-1111-111111111111"})
    assert upper.subscriptions == ("AAAAAAAA-1111-1111-1111-111111111111",)
