"""Settings: one object from HOTPATCH_* variables; errors name the variable."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from hotpatch.core.calendar import MonthOverride, YearMonth
from hotpatch.core.models import MonthKind, OsFamily
from hotpatch.errors import ConfigurationError
from hotpatch.settings import PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_the_documented_policy() -> None:
    policy = Settings.from_env({}).policy()
    assert policy.assessment_max_age == timedelta(hours=72)
    assert policy.hotpatch_grace == timedelta(days=7)
    assert policy.baseline_grace == timedelta(days=14)
    assert policy.allow_preview_images is False
    assert policy.ring_tag == "hotpatch-ring"


def test_variables_are_read_and_typed() -> None:
    settings = Settings.from_env(
        {
            "HOTPATCH_ASSESSMENT_MAX_AGE_HOURS": "24",
            "HOTPATCH_ALLOW_PREVIEW_IMAGES": "true",
            "HOTPATCH_MONTH_OVERRIDES": "ws2022:2026-08=unplanned_baseline, 2026-09=baseline",
            "UNRELATED": "x",
        }
    )
    assert settings.assessment_max_age_hours == 24
    assert settings.allow_preview_images is True
    assert settings.month_overrides == (
        MonthOverride(YearMonth(2026, 8), MonthKind.UNPLANNED_BASELINE, OsFamily.WS2022),
        MonthOverride(YearMonth(2026, 9), MonthKind.BASELINE, None),
    )


def test_empty_values_mean_the_default() -> None:
    assert Settings.from_env({"HOTPATCH_RING_TAG": ""}).ring_tag == "hotpatch-ring"


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("HOTPATCH_ASSESSMENT_MAX_AGE_HOURS", "soon", "valid integer"),
        ("HOTPATCH_ASSESSMENT_MAX_AGE_HOURS", "0", "greater than 0"),
        ("HOTPATCH_HOTPATCH_GRACE_DAYS", "40", "less than or equal to 27"),
        ("HOTPATCH_ALLOW_PREVIEW_IMAGES", "maybe", "valid boolean"),
        ("HOTPATCH_MONTH_OVERRIDES", "2026-13=baseline", "month must be 1-12"),
        ("HOTPATCH_MONTH_OVERRIDES", "26-08=baseline", "YYYY-MM"),
        ("HOTPATCH_MONTH_OVERRIDES", "2026-08=restart", "kinds:"),
        ("HOTPATCH_MONTH_OVERRIDES", "ws2019:2026-08=baseline", "os:"),
    ],
)
def test_a_bad_value_names_the_variable_and_the_reason(
    variable: str, value: str, words: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({variable: value})
    assert variable in str(caught.value)
    assert words in str(caught.value)


def test_every_setting_appears_in_local_settings_example() -> None:
    example = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    documented = {name for name in example if name.startswith(PREFIX)}
    expected = {PREFIX + name.upper() for name in Settings.model_fields}
    assert documented == expected


def test_the_example_values_are_valid_settings() -> None:
    example = json.loads((ROOT / "local.settings.example.json").read_text())["Values"]
    assert Settings.from_env(example) == Settings.from_env({})


SUB_A = "11111111-1111-1111-1111-111111111111"
SUB_B = "22222222-2222-2222-2222-222222222222"
SUB_C = "33333333-3333-3333-3333-333333333333"


def test_scopes_are_comma_separated_lists() -> None:
    settings = Settings.from_env({"HOTPATCH_SUBSCRIPTIONS": f"{SUB_A}, {SUB_B},,{SUB_C}"})
    assert settings.subscriptions == (SUB_A, SUB_B, SUB_C)


def test_subscriptions_and_management_groups_together_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        Settings.from_env({"HOTPATCH_SUBSCRIPTIONS": SUB_A, "HOTPATCH_MANAGEMENT_GROUPS": "m"})


def test_an_unknown_setting_is_refused_with_the_likely_one() -> None:
    with pytest.raises(
        ConfigurationError,
        match="HOTPATCH_SUBSCRIPTION: not a hotpatch setting; did you mean HOTPATCH_SUBSCRIPTIONS",
    ):
        Settings.from_env({"HOTPATCH_SUBSCRIPTION": "abc"})
