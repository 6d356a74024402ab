"""A year past the release catalog's horizon, every output says the catalog is stale."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hotpatch.cli import main
from hotpatch.data import shipped_release_catalog
from hotpatch.export import write_rows
from hotpatch.sandbox.estate import EstateSpec, generate_estate

#: A year past the shipped catalog (it covers releases through 2026-05).
A_YEAR_ON = "2027-06-01T12:00Z"
NOTICE = "Stale release catalog"
STALE_SINCE = "2026-06-09"


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    as_of = datetime(2027, 5, 28, 12, 0, tzinfo=UTC)
    estate = generate_estate(
        EstateSpec(machines=600, seed=5, as_of=as_of), shipped_release_catalog()
    )
    path = tmp_path_factory.mktemp("stale") / "estate.json"
    write_rows(path, estate.rows())
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), environ={})
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_table_says_the_catalog_is_stale(
    capsys: pytest.CaptureFixture[str], export: Path
) -> None:
    code, out, _ = run(capsys, "evaluate", "--inventory", str(export), "--now", A_YEAR_ON)
    assert code == 0
    flat = " ".join(out.split())
    assert NOTICE in flat
    assert "12 Patch Tuesday release(s) have shipped since 2026-06-09" in flat


def test_json_carries_the_catalog_block_and_only_the_document_on_stdout(
    capsys: pytest.CaptureFixture[str], export: Path
) -> None:
    code, out, err = run(
        capsys, "evaluate", "--inventory", str(export), "--now", A_YEAR_ON, "--format", "json"
    )
    assert code == 0
    document = json.loads(out)
    catalog = document["catalog"]
    assert (catalog["stale"], catalog["covers_through"], catalog["releases_missing"]) == (
        True,
        "2026-05",
        12,
    )
    assert catalog["since"].startswith(STALE_SINCE)
    assert NOTICE in " ".join(err.split())
    # Machines on builds newer than the catalog are judged on their assessment, never behind.
    beyond = [
        m
        for m in document["machines"]
        if "build_not_in_catalog" in [r["code"] for r in m["reasons"]]
    ]
    assert beyond, "the estate a year on has machines on builds the catalog does not know"
    for machine in beyond:
        codes = {r["code"] for r in machine["reasons"]}
        assert not codes & {"build_behind", "off_cycle", "update_available"}, machine["name"]
        assert machine["releases_behind"] is None


def test_csv_states_the_notice_on_every_row(
    capsys: pytest.CaptureFixture[str], export: Path
) -> None:
    code, out, err = run(
        capsys, "evaluate", "--inventory", str(export), "--now", A_YEAR_ON, "--format", "csv"
    )
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) > 500
    assert {row["catalog_notice"] for row in rows} == {rows[0]["catalog_notice"]}
    assert rows[0]["catalog_notice"].startswith("the release catalog covers releases through")
    assert NOTICE in " ".join(err.split())


def test_a_fresh_catalog_says_nothing(capsys: pytest.CaptureFixture[str], export: Path) -> None:
    code, out, err = run(
        capsys,
        "evaluate",
        "--inventory",
        str(export),
        "--now",
        "2026-05-20T12:00Z",
        "--format",
        "json",
    )
    assert code == 0
    assert json.loads(out)["catalog"] == {"stale": False}
    assert NOTICE not in err


@pytest.mark.sandbox
def test_the_sweep_summary_and_its_report_say_the_catalog_is_stale(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = run(
        capsys,
        "sweep",
        "--sandbox",
        "--machines",
        "300",
        "--as-of",
        "2027-05-28T12:00Z",
        "--now",
        A_YEAR_ON,
        "--report-dir",
        str(tmp_path),
    )
    assert code == 0
    assert NOTICE in " ".join(out.split())
    (report,) = tmp_path.glob("sweep-*.json")
    assert json.loads(report.read_text())["catalog"]["stale"] is True
