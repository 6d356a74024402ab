"""The policy file: the example reads as written, and every bad field says where and why."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest

from hotpatch.core.calendar import YearMonth
from hotpatch.core.plan import BlockedKb, Mode, RemediationPolicy, RingPolicy, Window
from hotpatch.errors import ConfigurationError
from hotpatch.policy_file import MAX_BYTES, load_policy, parse_duration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "policy.yaml"
LONDON_22 = Window(2, time(22, 0), "Europe/London", timedelta(hours=3))


def write(tmp_path: Path, text: str, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(path: Path) -> str:
    with pytest.raises(ConfigurationError) as raised:
        load_policy(path)
    message = str(raised.value)
    assert "\n" not in message, "an error is one line"
    return message


def test_the_example_reads_as_three_rings_a_block_and_a_window_after_patch_tuesday() -> None:
    policy = load_policy(EXAMPLE)
    assert policy.mode is Mode.REMEDIATE
    assert [ring.name for ring in policy.rings] == ["ring0", "ring1", "ring2"]
    assert policy.rings[0] == RingPolicy("ring0", timedelta(days=3), 0.05, 10, 20, None)
    assert policy.rings[1].window == Window(6, time(22, 0), "Europe/London", timedelta(hours=3))
    (block,) = policy.blocked_kbs
    assert (block.kb, block.expires) == ("KB5062557", datetime(2026, 12, 31, tzinfo=UTC))
    assert "failover-cluster services restart in a loop" in block.reason
    assert policy.default_window == LONDON_22
    assert policy.default_window.occurrence(YearMonth(2026, 2))[0] == datetime(
        2026, 2, 12, 22, 0, tzinfo=UTC
    )
    assert policy.windows[0].tag == "patch-window"
    assert policy.maximum_duration == timedelta(hours=2)


def test_the_examples_soaks_end_before_the_next_rings_window_opens() -> None:
    policy = load_policy(EXAMPLE)
    assert policy.default_window is not None
    month = YearMonth(2026, 2)
    closes = policy.default_window.occurrence(month)[1]
    for before, after in zip(policy.rings, policy.rings[1:], strict=False):
        assert after.window is not None
        opens, next_closes = after.window.occurrence(month)
        assert closes + before.soak <= opens, f"{after.name} opens before {before.name} soaked"
        closes = next_closes


def test_no_file_means_the_defaults_which_start_nothing() -> None:
    assert load_policy(None) == RemediationPolicy()
    assert load_policy(None).mode is Mode.REPORT


def test_json_reads_like_yaml(tmp_path: Path) -> None:
    body = {
        "mode": "assess",
        "rings": [{"name": "ring0", "soak": "P2DT12H"}],
        "blocked_kbs": [{"kb": "5062557", "reason": "bad", "expires": "2026-09-01"}],
        "default_window": {
            "offset_days": 2,
            "start": "22:00",
            "time_zone": "Europe/London",
            "duration": "PT3H",
        },
    }
    policy = load_policy(write(tmp_path, json.dumps(body), "policy.json"))
    assert policy.mode is Mode.ASSESS
    assert policy.rings[0].soak == timedelta(days=2, hours=12)
    assert policy.blocked_kbs == (BlockedKb("KB5062557", "bad", datetime(2026, 9, 1, tzinfo=UTC)),)
    assert policy.default_window == LONDON_22
    assert load_policy(write(tmp_path, json.dumps(body), "policy.conf")) == policy


def test_an_unquoted_time_and_date_in_yaml_are_read_as_written(tmp_path: Path) -> None:
    text = """
default_window: {offset_days: 2, start: 22:00, time_zone: Europe/London, duration: 3h}
blocked_kbs: [{kb: 5062557, reason: bad, expires: 2026-09-01}]
"""
    policy = load_policy(write(tmp_path, text))
    assert policy.default_window == LONDON_22
    assert policy.blocked_kbs[0].expires == datetime(2026, 9, 1, tzinfo=UTC)
    assert policy.blocked_kbs[0].kb == "KB5062557"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P3D", timedelta(days=3)),
        ("PT2H", timedelta(hours=2)),
        ("PT1H30M", timedelta(hours=1, minutes=30)),
        ("P1DT6H", timedelta(days=1, hours=6)),
        ("pt45s", timedelta(seconds=45)),
        ("3d", timedelta(days=3)),
        ("2h", timedelta(hours=2)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        (" 90m ", timedelta(minutes=90)),
    ],
)
def test_a_duration_is_iso_8601_or_numbers_with_units(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["P", "PT", "3", "2 h", "h", "P1W", "P1M", "1.5h", "2h3d", ""])
def test_anything_else_is_not_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "where", "why"),
    [
        ("mode: fix-everything", "mode", "Input should be 'report', 'assess' or 'remediate'"),
        ("rings: [{name: ring0, sook: 1d}]", "rings[0].sook", "did you mean 'soak'?"),
        ("ringz: []", "ringz", "did you mean 'rings'?"),
        ("rings: [{name: a}, {name: b, soak: soon}]", "rings[1].soak", "'soon' is not a duration"),
        ("rings: [{name: a, error_budget: 1.5}]", "rings[0].error_budget", "less than or equal"),
        ("rings: [{name: a, error_budget: '5%'}]", "rings[0].error_budget", "valid number"),
        ("rings: [{name: a, max_per_run: -1}]", "rings[0].max_per_run", "greater than or equal"),
        ("rings: [{name: a, max_per_run: '10'}]", "rings[0].max_per_run", "valid integer"),
        ("rings: [{soak: 1d}]", "rings[0].name", "required, and missing"),
        ("rings: [{name: '  '}]", "rings[0].name", "expected non-empty text"),
        ("rings: [{name: a}, {name: A}]", "rings[1].name", "listed twice"),
        (
            "rings: [{name: a, window: {offset_days: 2, start: '22:00', time_zone: Europe/London,"
            " duration: 4h}}]",
            "rings[0].window.duration",
            "less than 3h55m",
        ),
        (
            "default_window: {offset_days: 28, start: '22:00', time_zone: UTC, duration: 1h}",
            "default_window.offset_days",
            "less than or equal to 27",
        ),
        (
            "default_window: {offset_days: 2, start: '25:00', time_zone: UTC, duration: 1h}",
            "default_window.start",
            "HH:MM",
        ),
        (
            "default_window: {offset_days: 2, start: '22:00', time_zone: Europe/Londn,"
            " duration: 1h}",
            "default_window.time_zone",
            "unknown time zone 'Europe/Londn'",
        ),
        (
            "default_window: {offset_days: 2, start: '22:00', time_zone: UTC}",
            "default_window.duration",
            "required, and missing",
        ),
        (
            "windows: [{tag: t, value: v, window: {offset_days: 2, start: '22:00', "
            "time_zone: UTC, duration: 1h, zone: UTC}}]",
            "windows[0].window.zone",
            "unknown field",
        ),
        ("blocked_kbs: [{kb: Q123, reason: bad}]", "blocked_kbs[0].kb", "KB5062557 or 5062557"),
        ("blocked_kbs: [{kb: KB5062557}]", "blocked_kbs[0].reason", "required, and missing"),
        (
            "blocked_kbs: [{kb: KB5062557, reason: bad, expires: next week}]",
            "blocked_kbs[0].expires",
            "ISO 8601",
        ),
        ("maximum_duration: 5m", "maximum_duration", "at least 15 minutes"),
        ("maximum_duration: 4h", "maximum_duration", "less than 3h55m"),
        ("assess_anytime: 'maybe'", "assess_anytime", "valid boolean"),
        ("max_starts_per_run: 1.5", "max_starts_per_run", "valid integer"),
        ("exclude_tag: ''", "exclude_tag", "expected non-empty text"),
    ],
)
def test_a_bad_field_is_named_with_its_path_and_why(
    tmp_path: Path, text: str, where: str, why: str
) -> None:
    path = write(tmp_path, text)
    message = error_of(path)
    assert message.startswith(f"{path}: {where}: "), message
    assert why in message


def test_several_problems_name_the_first_and_count_the_rest(tmp_path: Path) -> None:
    message = error_of(write(tmp_path, "mode: x\nringz: []\nassess_anytime: maybe\n"))
    assert message.endswith("(and 2 more problem(s))")


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("- mode: report\n", "must be a mapping of fields, not a list"),
        ("mode: [unclosed\n", "not YAML"),
        ("mode: report\nmode: remediate\n", "the key 'mode' is repeated"),
        ("a: &x {b: 1}\nc: *x\n", "anchors and aliases are not accepted"),
        ("rings: " + "[" * 20 + "]" * 20 + "\n", "nested deeper than 8 levels"),
    ],
    ids=["empty", "a list", "broken", "a repeated key", "aliases", "deep"],
)
def test_a_file_that_is_no_policy_is_one_line_naming_the_file(
    tmp_path: Path, text: str, why: str
) -> None:
    path = write(tmp_path, text)
    message = error_of(path)
    assert message.startswith(f"{path}: ")
    assert why in message


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"mode": "report", "mode": "assess"}', "the key 'mode' is repeated"),
        ('{"mode": ', "not JSON"),
        ('{"rings": ' + "[" * 5000 + "]" * 5000 + "}", "nested"),
    ],
    ids=["a repeated key", "broken", "deep"],
)
def test_json_that_is_no_policy_is_one_line_naming_the_file(
    tmp_path: Path, text: str, why: str
) -> None:
    path = write(tmp_path, text, "policy.json")
    assert why in error_of(path)


def test_a_missing_file_a_folder_and_a_huge_file_are_one_line_each(tmp_path: Path) -> None:
    assert "cannot read the policy file" in error_of(tmp_path / "absent.yaml")
    assert "cannot read the policy file" in error_of(tmp_path)
    huge = write(tmp_path, "# " + "x" * MAX_BYTES + "\nmode: report\n")
    assert f"larger than {MAX_BYTES} bytes" in error_of(huge)


def test_a_file_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_bytes(b"mode: \xff\xfe\n")
    assert "not UTF-8 text" in error_of(path)


def test_the_readmes_example_is_the_examples_policy(tmp_path: Path) -> None:
    readme = (EXAMPLE.parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Remediation policy", 1)[1]
    snippet = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    shown, example = load_policy(write(tmp_path, snippet)), load_policy(EXAMPLE)
    assert shown.rings == example.rings
    assert shown.default_window == example.default_window
    assert [(b.kb, b.expires) for b in shown.blocked_kbs] == [
        (b.kb, b.expires) for b in example.blocked_kbs
    ]
