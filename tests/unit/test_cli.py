"""The `hotpatch` command: calendar, check-image and evaluate, in every output format."""

from __future__ import annotations

import csv
import gc
import io
import json
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hotpatch.cli import main
from hotpatch.data import shipped_release_catalog
from hotpatch.export import write_rows
from hotpatch.sandbox.estate import EstateSpec, generate_estate
from tests.builders import NOW, assessment_row, vm_id, vm_row

AS_OF = datetime(2026, 5, 19, 12, 0, tzinfo=UTC)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), environ={})
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def estate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A 10,000-machine raw export on disk, and how many machine entries it holds."""
    generated = generate_estate(
        EstateSpec(machines=10_000, seed=11, as_of=AS_OF), shipped_release_catalog()
    )
    path = tmp_path_factory.mktemp("export") / "estate.json"
    write_rows(path, generated.rows())
    return path, len(generated.machine_ids())


def test_calendar_json_lists_each_month_with_its_kind_and_release(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(
        capsys,
        "calendar",
        "--os",
        "ws2022",
        "--from",
        "2024-07",
        "--months",
        "3",
        "--format",
        "json",
    )
    assert code == 0
    assert json.loads(out) == [
        {
            "month": "2024-07",
            "kind": "baseline",
            "patch_tuesday": "2024-07-09",
            "release_utc": "2024-07-09T17:00:00Z",
            "kb": "KB5040437",
            "build": "20348.2582",
            "restart": True,
            "status": "published",
        },
        {
            "month": "2024-08",
            "kind": "unplanned_baseline",
            "patch_tuesday": "2024-08-13",
            "release_utc": "2024-08-13T17:00:00Z",
            "kb": "KB5041160",
            "build": "20348.2655",
            "restart": True,
            "status": "published",
        },
        {
            "month": "2024-09",
            "kind": "hotpatch",
            "patch_tuesday": "2024-09-10",
            "release_utc": "2024-09-10T17:00:00Z",
            "kb": "KB5042880",
            "build": "20348.2695",
            "restart": False,
            "status": "published",
        },
    ]


def test_calendar_says_not_known_yet_for_months_microsoft_has_not_published(
    capsys: pytest.CaptureFixture[str],
) -> None:
    _, out, _ = run(
        capsys,
        "calendar",
        "--os",
        "ws2025",
        "--from",
        "2026-12",
        "--months",
        "2",
        "--format",
        "json",
    )
    months = json.loads(out)
    assert [(m["month"], m["kind"], m["kb"], m["build"]) for m in months] == [
        ("2026-12", "hotpatch", None, None),
        ("2027-01", "baseline", None, None),
    ]


def test_an_operator_override_changes_the_calendar(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        ["calendar", "--os", "ws2025", "--from", "2026-08", "--months", "1", "--format", "json"],
        environ={"HOTPATCH_MONTH_OVERRIDES": "ws2025:2026-08=unplanned_baseline"},
    )
    out, _ = capsys.readouterr()
    assert code == 0
    assert json.loads(out)[0]["kind"] == "unplanned_baseline"


def test_calendar_table_is_readable(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "calendar", "--os", "ws2022", "--from", "2026-04", "--months", "2")
    assert code == 0
    assert "KB5082142" in out
    assert "baseline" in out


def test_check_image_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "check-image",
        "MicrosoftWindowsServer",
        "WindowsServer",
        "2025-Datacenter-Azure-Edition-Core",
        "--format",
        "json",
    )
    assert code == 0
    assert json.loads(out) == {"eligible": True, "os": "ws2025", "reasons": []}


def test_check_image_explains_the_desktop_mistake(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(
        capsys,
        "check-image",
        "MicrosoftWindowsServer",
        "WindowsServer",
        "2022-datacenter-azure-edition",
    )
    assert "not eligible" in out
    assert "azure_edition_desktop_2022" in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["calendar", "--os", "ws2019"], "invalid choice"),
        (["calendar", "--os", "ws2022", "--from", "2026/01"], "YYYY-MM"),
        (["calendar", "--os", "ws2022", "--months", "0"], "at least 1"),
        (["evaluate", "--inventory", "x.json", "--now", "tuesday"], "ISO-8601"),
        (["evaluate"], "--inventory"),
    ],
)
def test_bad_usage_exits_2_with_one_line_naming_the_problem(
    capsys: pytest.CaptureFixture[str], argv: list[str], words: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv, environ={})
    _, err = capsys.readouterr()
    assert exited.value.code == 2
    assert words in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "cannot read"),
        (b"{not json", "not valid JSON at line 1"),
        (b'{"rows": []}', "expected a JSON list of rows"),
        (b'{"data": {"columns": [], "rows": []}}', "table format"),
        (b"\xff\xfe", "not valid JSON"),
    ],
)
def test_unreadable_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes | None, words: str
) -> None:
    path = tmp_path / "export.json"
    if content is not None:
        path.write_bytes(content)
    code, _, err = run(capsys, "evaluate", "--inventory", str(path))
    assert code == 2
    assert words in err
    assert str(path) in err
    assert len(err.strip().splitlines()) == 1


def test_a_bad_setting_exits_2_naming_the_variable(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["calendar", "--os", "ws2022"], environ={"HOTPATCH_RING_TAG": ""}) or main(
        ["calendar", "--os", "ws2022"], environ={"HOTPATCH_HOTPATCH_GRACE_DAYS": "x"}
    )
    _, err = capsys.readouterr()
    assert code == 2
    assert "HOTPATCH_HOTPATCH_GRACE_DAYS" in err


def test_evaluate_json_has_machines_and_summary(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "small.json"
    path.write_text(json.dumps([vm_row("vm1"), assessment_row(vm_id("vm1"), security=1)]))
    code, out, _ = run(
        capsys, "evaluate", "--inventory", str(path), "--now", NOW.isoformat(), "--format", "json"
    )
    report = json.loads(out)
    assert code == 0
    (machine,) = report["machines"]
    assert machine["state"] == "pending"
    assert machine["action"] == "install_hotpatch"
    assert machine["reasons"][0]["code"] == "updates_pending"
    assert machine["eligible"] is True
    assert report["summary"]["by_state"]["pending"] == 1
    assert report["evaluated_at"] == "2026-02-14T12:00:00Z"


def _table_counts(text: str) -> dict[str, int]:
    """The state table's rows: `│ state │ machines │ share │`."""
    counts = {}
    for line in text.splitlines():
        match = re.match(r"^│ (\w+)\s+│\s+(\d+) │", line)
        if match and match.group(1) == "total":
            break  # the roll-up tables follow
        if match:
            counts[match.group(1)] = int(match.group(2))
    return counts


def test_evaluate_gives_the_same_summary_in_table_json_and_csv(
    capsys: pytest.CaptureFixture[str], estate: tuple[Path, int]
) -> None:
    estate_file, machines = estate
    common = ["evaluate", "--inventory", str(estate_file), "--now", AS_OF.isoformat()]
    _, table, _ = run(capsys, *common, "--format", "table")
    _, as_json, _ = run(capsys, *common, "--format", "json")
    _, as_csv, _ = run(capsys, *common, "--format", "csv")

    from_json = json.loads(as_json)["summary"]["by_state"]
    rows = list(csv.DictReader(io.StringIO(as_csv)))
    from_csv = Counter(row["state"] for row in rows)
    from_table = _table_counts(table)

    assert sum(from_json.values()) == len(rows) == machines
    assert {k: v for k, v in from_json.items() if v} == dict(from_csv)
    assert from_table == from_json
    # The estate's mix shows up: every state is present in a 10,000-machine estate.
    assert all(from_json[state] > 0 for state in from_json), from_json


def test_evaluate_runs_without_the_cyclic_collector_as_a_one_shot_command(
    capsys: pytest.CaptureFixture[str], estate: tuple[Path, int]
) -> None:
    estate_file, _ = estate
    gc.enable()
    code, _, _ = run(capsys, "evaluate", "--inventory", str(estate_file), "--format", "csv")
    assert code == 0
    assert not gc.isenabled()  # tests/conftest.py switches it back on


def test_evaluate_writes_the_report_to_a_file_when_asked(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, estate: tuple[Path, int]
) -> None:
    estate_file, _ = estate
    out_file = tmp_path / "report" / "verdicts.csv"
    code, out, _ = run(
        capsys,
        "evaluate",
        "--inventory",
        str(estate_file),
        "--now",
        AS_OF.isoformat(),
        "--format",
        "csv",
        "--output",
        str(out_file),
    )
    assert code == 0
    assert f"to {out_file}" in out
    header = out_file.read_text().splitlines()[0]
    assert header.startswith("id,name,kind,state,eligible,action,reason_codes")
