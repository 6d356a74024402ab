"""A sweep's report written page by page is the report written whole, byte for byte; the table
keeps only the machines it shows."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from hotpatch.core.models import State
from hotpatch.data import shipped_release_catalog
from hotpatch.report import ActionList, StreamedReport, report_csv, report_json
from hotpatch.sandbox.estate import EstateSpec, generate_estate
from hotpatch.service import Evaluation, Rules, evaluate_rows
from hotpatch.settings import Settings
from tests.builders import LATER, vm_row

RULES = Rules.from_settings(Settings())


@pytest.fixture(scope="module")
def evaluation() -> Evaluation:
    spec = EstateSpec(machines=120, subscriptions=2, seed=5, as_of=LATER)
    rows = generate_estate(spec, shipped_release_catalog()).rows()
    # Text from the estate that JSON and CSV must carry as it is.
    odd = vm_row("=cmd|' /C calc'!A0", tags={"hotpatch-ring": "ring \u00e9\n[red]x"})
    return evaluate_rows([*rows, odd], RULES, LATER)


def streamed(evaluation: Evaluation, directory: Path, pages: int = 7) -> StreamedReport:
    report = StreamedReport(directory, csv=True)
    verdicts = evaluation.verdicts
    for start in range(0, len(verdicts), pages):
        report.add(verdicts[start : start + pages])
    return report


def test_the_streamed_report_is_the_json_document_written_whole(
    evaluation: Evaluation, tmp_path: Path
) -> None:
    extra = {"sweep": {"scope": "the tenant", "run_id": None}, "duplicate_rows": 0}
    whole = json.dumps(
        report_json(evaluation.verdicts, evaluation.summary, evaluation.now, **extra), indent=1
    )
    header = report_json((), evaluation.summary, evaluation.now, **extra)
    out = io.StringIO()
    with streamed(evaluation, tmp_path) as report:
        report.write_json(out, header)
        assert report.machines == len(evaluation.verdicts)
        again = io.StringIO()
        report.write_json(again, header)  # a second reader (stdout after the file) sees it all
    assert out.getvalue() == whole == again.getvalue()


def test_a_report_of_no_machine_is_the_empty_document(
    evaluation: Evaluation, tmp_path: Path
) -> None:
    header = report_json((), evaluation.summary, evaluation.now)
    out = io.StringIO()
    with StreamedReport(tmp_path) as report:
        report.write_json(out, header)
    assert out.getvalue() == json.dumps(header, indent=1)


def test_the_streamed_csv_is_the_csv_written_whole(evaluation: Evaluation, tmp_path: Path) -> None:
    out = io.StringIO()
    with streamed(evaluation, tmp_path) as report:
        report.write_csv(out, evaluation.summary)
    assert out.getvalue() == report_csv(evaluation.verdicts, evaluation.summary)


def test_the_spools_leave_no_file_behind(evaluation: Evaluation, tmp_path: Path) -> None:
    with streamed(evaluation, tmp_path):
        assert list(tmp_path.iterdir()) == []  # nameless temporary files


def test_a_report_not_spooled_for_csv_refuses_to_write_one(
    evaluation: Evaluation, tmp_path: Path
) -> None:
    with StreamedReport(tmp_path) as report, pytest.raises(ValueError, match="csv=True"):
        report.write_csv(io.StringIO(), evaluation.summary)


def test_the_action_list_counts_every_machine_needing_action_and_keeps_the_first_few(
    evaluation: Evaluation,
) -> None:
    needing = [v for v in evaluation.verdicts if v.state is not State.COMPLIANT and v.eligible]
    assert len(needing) > 5
    listed = ActionList(5)
    for start in range(0, len(evaluation.verdicts), 10):
        listed.add(evaluation.verdicts[start : start + 10])
    assert listed.total == len(needing)
    assert listed.shown == needing[:5]
