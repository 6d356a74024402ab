"""`hotpatch history` and `hotpatch runs` read the store HOTPATCH_STORE names: tables that show
estate text as text, JSON that is only the document, and a one-line error for a bad setting."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hotpatch.cli import main
from hotpatch.fakes import InMemoryInventory
from hotpatch.ports import Clock, RawRow, Scope
from hotpatch.ports.store import JournalRecord, RunKind, RunRecord
from hotpatch.service import Recording, Rules, sweep
from hotpatch.settings import Settings
from hotpatch.store import open_store
from tests.builders import NOW, assessment_row, vm_id, vm_row

RULES = Rules.from_settings(Settings())
WALL = NOW + timedelta(days=1)
MARKUP = "[red]vm-x"
DEALLOCATED: dict[str, Any] = {
    "properties__extended__instanceView__powerState__code": "PowerState/deallocated"
}


def rows(*, deallocated: bool = False) -> list[RawRow]:
    marked = vm_row(MARKUP, **DEALLOCATED) if deallocated else vm_row(MARKUP)
    return [
        vm_row("vm-a"),
        assessment_row(vm_id("vm-a")),
        marked,
        assessment_row(vm_id(MARKUP)),
        # The same name in another resource group: a name alone does not say which.
        vm_row("twin", id=vm_id("twin")),
        vm_row("twin", id=vm_id("twin").replace("rg-hp", "rg-two")),
    ]


def stopped_at(moment: datetime) -> Clock:
    return lambda: moment


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    """A store holding two sweeps (vm-x deallocated in the second) and one operation."""
    directory = tmp_path / "store"
    store = open_store(str(directory))
    try:
        for hour, deallocated in enumerate((False, True)):
            started = WALL + timedelta(days=hour)
            sweep(
                InMemoryInventory(rows(deallocated=deallocated)),
                Scope(),
                RULES,
                now=NOW + timedelta(hours=hour),
                record=Recording(store, "[bold]alice@host", stopped_at(started)),
            )
        store.journal_start(
            JournalRecord.start(
                vm_id(MARKUP), "2026-02", "assess", client_request_id="req-1", now=WALL
            )
        )
        store.save_run(
            RunRecord(
                id="plan-1",
                kind=RunKind.PLAN,
                who="bob",
                started_at=WALL + timedelta(days=5),
                outcome="succeeded",
                figures={"actions": 3, "error": "[blink]careful"},
            )
        )
    finally:
        store.close()
    return directory


def run(capsys: pytest.CaptureFixture[str], store: Path | str, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv), environ={"HOTPATCH_STORE": str(store)})
    out, err = capsys.readouterr()
    return code, out, err


def test_runs_as_json_is_only_the_document_newest_first(
    capsys: pytest.CaptureFixture[str], store_dir: Path
) -> None:
    code, out, err = run(capsys, store_dir, "runs", "--format", "json")
    assert code == 0
    assert err == ""
    runs = json.loads(out)["runs"]
    assert [run["kind"] for run in runs] == ["plan", "sweep", "sweep"]
    newest_sweep = runs[1]
    assert newest_sweep["outcome"] == "succeeded"
    assert newest_sweep["who"] == "[bold]alice@host"
    assert newest_sweep["figures"]["machines"] == 4
    assert newest_sweep["started_at"] == "2026-02-16T12:00:00Z"


def test_runs_of_one_kind_and_at_most_a_limit(
    capsys: pytest.CaptureFixture[str], store_dir: Path
) -> None:
    _, out, _ = run(
        capsys, store_dir, "runs", "--kind", "sweep", "--limit", "1", "--format", "json"
    )
    (only,) = json.loads(out)["runs"]
    assert only["kind"] == "sweep"
    assert only["started_at"] == "2026-02-16T12:00:00Z"


def test_the_runs_table_shows_estate_and_operator_text_as_text(
    capsys: pytest.CaptureFixture[str], store_dir: Path
) -> None:
    code, out, _ = run(capsys, store_dir, "runs")
    assert code == 0
    flat = " ".join(out.split())
    assert "[bold]alice@host" in flat
    assert "[blink]careful" in flat
    assert "actions=3" in flat
    assert "4 machines" in flat


def test_no_runs_yet_is_said_on_stderr_and_is_not_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(capsys, tmp_path / "empty", "runs", "--kind", "remediation")
    assert code == 0
    assert out == ""
    assert "no remediation run yet" in err
    _, out, _ = run(capsys, tmp_path / "empty", "runs", "--format", "json")
    assert json.loads(out) == {"runs": []}


def test_history_by_arm_id_in_any_case_holds_verdict_transitions_and_operations(
    capsys: pytest.CaptureFixture[str], store_dir: Path
) -> None:
    shouted = vm_id(MARKUP).upper()
    code, out, err = run(capsys, store_dir, "history", shouted, "--format", "json")
    assert code == 0
    assert err == ""
    document = json.loads(out)
    assert document["known"] is True
    assert document["machine"].casefold() == vm_id(MARKUP).casefold()
    assert document["verdict"]["name"] == MARKUP
    assert document["verdict"]["state"] == "unknown"
    moves = [(t["from"], t["to"], t["at"]) for t in document["transitions"]]
    first_state = moves[0][1]
    assert moves == [
        (None, first_state, "2026-02-14T12:00:00Z"),
        (first_state, "unknown", "2026-02-14T13:00:00Z"),
    ]
    (operation,) = document["operations"]
    assert (operation["action"], operation["status"], operation["client_request_id"]) == (
        "assess",
        "started",
        "req-1",
    )
    assert "version" not in operation


def test_the_history_table_shows_the_machine_name_as_text_and_each_transition(
    capsys: pytest.CaptureFixture[str], store_dir: Path
) -> None:
    code, out, _ = run(capsys, store_dir, "history", MARKUP)  # one machine has this name
    assert code == 0
    flat = " ".join(out.split())
    assert f"virtualmachines/{MARKUP}".casefold() in flat.casefold()
    assert "State transitions (oldest first)" in flat
    assert flat.count("unknown") >= 2  # the verdict and the transition to it
    assert "(not swept)" in flat
    assert "req-1" not in flat  # the table shows the operation, not its request id
    assert "assess" in flat


def test_a_name_several_machines_share_is_a_usage_error_naming_them(
    capsys: pytest.CaptureFixture[str], store_dir: Path
) -> None:
    code, out, err = run(capsys, store_dir, "history", "TWIN")
    assert code == 2
    assert out == ""
    (line,) = err.strip().splitlines()
    assert "2 machines of the latest sweep are named 'TWIN'" in line
    assert "rg-two" in line


def test_a_machine_the_store_never_saw_is_said_on_stderr_with_an_empty_history(
    capsys: pytest.CaptureFixture[str], store_dir: Path
) -> None:
    code, out, err = run(capsys, store_dir, "history", vm_id("gone"), "--format", "json")
    assert code == 0
    assert json.loads(out) == {
        "machine": vm_id("gone"),
        "known": False,
        "latest_snapshot": json.loads(out)["latest_snapshot"],
        "verdict": None,
        "transitions": [],
        "operations": [],
    }
    assert json.loads(out)["latest_snapshot"]["taken_at"] == "2026-02-14T13:00:00Z"
    (line,) = err.strip().splitlines()
    assert f"the store holds no verdict, transition or operation of {vm_id('gone')}" in line


def test_an_empty_store_says_no_sweep_is_stored_yet(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(capsys, tmp_path / "empty", "history", "vm-a")
    assert code == 0
    assert "No sweep is stored yet." in out
    assert "no sweep is stored yet" in err


@pytest.mark.parametrize("machine", ["rg-hp/vm-a", "/resourceGroups/rg-hp", " "])
def test_a_machine_that_is_neither_an_arm_id_nor_a_name_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], store_dir: Path, machine: str
) -> None:
    code, _, err = run(capsys, store_dir, "history", machine)
    assert code == 2
    assert "give an ARM id" in err


@pytest.mark.parametrize("command", [("runs",), ("history", "vm-a")])
def test_a_setting_that_names_no_store_is_one_line_naming_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, command: tuple[str, ...]
) -> None:
    in_the_way = tmp_path / "a-file"
    in_the_way.write_text("not a directory")
    for setting in ("ftp://host/store", str(in_the_way / "store")):
        code, out, err = run(capsys, setting, *command)
        assert code == 2
        assert out == ""
        (line,) = err.strip().splitlines()
        assert line.startswith("hotpatch: error: HOTPATCH_STORE")
